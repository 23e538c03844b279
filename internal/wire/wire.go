// Package wire frames the messages between a ferry parent and its worker
// processes (see docs/protocol.md): a 4-byte little-endian length, a 1-byte
// type, an 8-byte little-endian id and a body. Writers batch many small
// frames into one system call; readers hand out bodies the caller owns.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/ferrypipe/ferry/internal/platform"
)

// Version is the protocol version, carried by Hello and Init.
const Version = 3

// Magic opens the Hello of every ferry worker, so that a parent tells a
// worker from a program that merely writes to its fd 3.
const Magic = "ferry-worker"

// HeaderSize is the size of a frame header: length, type, id.
const HeaderSize = 4 + 1 + 8

// MaxBody is the largest body a reader accepts.
const MaxBody = 1 << 30

// Type is the kind of a message.
type Type uint8

// Message types. The first five set a worker up; the others are the
// session layer, the same in both directions: requests matched by id, and
// streams with credits. The side that opens a request or a stream chooses
// its id; the other side answers with that id.
const (
	Hello      Type = 1 // worker → parent, first frame; id 0; body: JSON HelloMsg
	Init       Type = 2 // parent → worker; id 0; body: JSON InitMsg
	Ready      Type = 3 // worker → parent; id 0; no body
	InitFailed Type = 4 // worker → parent; id 0; body: an error
	Shutdown   Type = 5 // parent → worker; id 0; no body

	Request   Type = 16 // opens a request; body: Head, then the payload; may carry one fd (SCM_RIGHTS)
	Reply     Type = 17 // answers a request; body: the payload
	ReplyErr  Type = 18 // answers a request with an error; body: an error
	Open      Type = 19 // opens a stream towards its opener; body: Head (with credits), then the payload
	Data      Type = 20 // one item of a stream; body: the item
	DataRef   Type = 21 // one item of a stream, in the arena; body: an shm.Ref
	DataSplit Type = 22 // one item of a stream whose large slices are in the arena (see docs/protocol.md)
	DataErr   Type = 23 // one failed item of a stream (the stream goes on); body: an error
	Credit    Type = 24 // by a stream's opener: more items may come; body: 4-byte count
	End       Type = 25 // the last frame of a stream; body: empty (end of stream), or an error
	Cancel    Type = 26 // by the opener of a request or stream: give it up; no body

	// A duplex stream: its opener also sends items into it, with credits
	// granted by the side that serves it.
	In       Type = 27 // by the opener: one input item; body: the item (split like a Request's payload)
	InEnd    Type = 28 // by the opener: no more input; body: empty, or an error
	InCredit Type = 29 // by the server: more input items may come; body: 4-byte count
)

var typeNames = map[Type]string{
	Hello: "Hello", Init: "Init", Ready: "Ready", InitFailed: "InitFailed", Shutdown: "Shutdown",
	Request: "Request", Reply: "Reply", ReplyErr: "ReplyErr", Open: "Open", Data: "Data", DataRef: "DataRef",
	DataSplit: "DataSplit", DataErr: "DataErr", Credit: "Credit", End: "End", Cancel: "Cancel",
	In: "In", InEnd: "InEnd", InCredit: "InCredit",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// HelloMsg is the first thing a worker says: who it is.
type HelloMsg struct {
	Magic   string `json:"magic"`   // always Magic
	Version int    `json:"version"` // the protocol version it speaks
	PID     int    `json:"pid"`
}

// InitMsg sets a worker up: what to run first, and its first piece of
// work (more may be attached later with OpAttach requests).
type InitMsg struct {
	Version      int      `json:"version"`
	Initializers []string `json:"initializers,omitempty"`
	Attach       *Attach  `json:"attach,omitempty"` // becomes instance 1
}

// Attach names a registered piece of work and its arguments: a worker
// host makes an instance of it, which requests and streams then target.
type Attach struct {
	Kind        string `json:"kind"` // "func", "flat", "iter", "pipeline" or "duplex"
	Name        string `json:"name"` // registered name
	Args        []byte `json:"args,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"` // requests and streams served at once (func, flat)
}

// Ops of a Request or an Open: what the target should do.
const (
	OpCall     = 0 // run the instance with the payload (func: Request; flat, iter, pipeline, duplex: Open)
	OpStats    = 1 // Request: the instance's stats, as JSON
	OpAttach   = 2 // Request to instance 0 (the host): payload a JSON Attach; reply: the instance id (uvarint)
	OpConstant = 3 // Request to instance 0 with an fd: map the sealed memfd as the shared constant named by the payload
)

// Head starts the body of a Request or an Open.
type Head struct {
	Op       byte
	Target   uint64            // the instance, or 0 for the host itself
	Deadline int64             // Unix nanoseconds after which the work's context ends, or 0
	Credits  uint32            // Open: items the opener takes before its first Credit
	Meta     map[string]string // the caller's metadata (package meta), or nil
}

// maxMeta bounds the metadata entries of one head.
const maxMeta = 1024

// AppendHead appends h to dst.
func AppendHead(dst []byte, h Head) []byte {
	dst = append(dst, h.Op)
	dst = binary.AppendUvarint(dst, h.Target)
	dst = binary.AppendVarint(dst, h.Deadline)
	dst = binary.AppendUvarint(dst, uint64(h.Credits))
	dst = binary.AppendUvarint(dst, uint64(len(h.Meta)))
	for k, v := range h.Meta {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// ParseHead reads the Head at the start of b and returns the rest.
func ParseHead(b []byte) (Head, []byte, error) {
	var h Head
	bad := errors.New("wire: a malformed request head")
	if len(b) == 0 {
		return h, nil, bad
	}
	h.Op, b = b[0], b[1:]
	var n int
	if h.Target, n = binary.Uvarint(b); n <= 0 {
		return h, nil, bad
	}
	b = b[n:]
	if h.Deadline, n = binary.Varint(b); n <= 0 {
		return h, nil, bad
	}
	b = b[n:]
	c, n := binary.Uvarint(b)
	if n <= 0 || c > 1<<32-1 {
		return h, nil, bad
	}
	h.Credits = uint32(c)
	b = b[n:]
	m, n := binary.Uvarint(b)
	if n <= 0 || m > maxMeta {
		return h, nil, bad
	}
	b = b[n:]
	if m > 0 {
		h.Meta = make(map[string]string, m)
	}
	str := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	for range m {
		k, ok := str()
		if !ok {
			return h, nil, bad
		}
		v, ok := str()
		if !ok {
			return h, nil, bad
		}
		h.Meta[k] = v
	}
	return h, b, nil
}

// ErrClosed is returned by a Writer after Close.
var ErrClosed = errors.New("wire: writer closed")

// bigBody is the size above which a body is written from its own slice
// instead of being copied into a batch buffer.
const bigBody = 32 << 10

// batchSize is the capacity of a batch buffer, which collects the headers
// and small bodies of many frames; a header and a small body always fit.
const batchSize = 64 << 10

// maxPending bounds the bytes queued in a Writer before a sender waits.
const maxPending = 4 << 20

// maxSpare is how many empty batch buffers a Writer keeps for reuse.
const maxSpare = 4

// Writer sends frames on a connection. Frames are queued and written in
// order, many per system call, either by a writing goroutine (Send) or by
// the sending goroutine itself (SendNow, SendBorrowed). One write is under way
// at a time; the frames queued meanwhile share the next one.
type Writer struct {
	w   io.Writer
	raw syscall.RawConn // when w offers one: SendNow writes without blocking

	mu    sync.Mutex
	work  *sync.Cond // the writing goroutine waits here for frames
	space *sync.Cond // senders wait here for room, or for their frame to be written

	queue   net.Buffers // what is to be written, in order
	batches [][]byte    // the batch buffers queue holds (ours: reused once written)
	last    []byte      // the batch buffer frames are appended to, or nil
	spare   [][]byte    // empty batch buffers
	spareQ  net.Buffers // an empty queue slice, to reuse its array

	queued  int64 // bytes ever queued
	written int64 // bytes ever written, or dropped by a failed write
	writing bool  // a write is under way
	err     error
	closed  bool
	done    chan struct{}
}

// NewWriter starts the writing goroutine; Close stops it.
func NewWriter(w io.Writer) *Writer {
	wr := &Writer{w: w, done: make(chan struct{})}
	wr.raw = rawConn(w)
	wr.work = sync.NewCond(&wr.mu)
	wr.space = sync.NewCond(&wr.mu)
	go wr.loop()
	return wr
}

// Send queues one frame for the writing goroutine, which writes it with
// whatever else has queued. A body larger than 32 KiB is retained, not
// copied, until it is written: the caller must not change it afterwards.
// Send waits while more than 4 MiB are queued, and returns the first write
// error.
func (w *Writer) Send(t Type, id uint64, body []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.add(t, id, body); err != nil {
		return err
	}
	if !w.writing {
		w.work.Signal()
	}
	return nil
}

// SendNow is Send for a small frame that must leave at once, such as a
// credit or a command: when no write is under way, the calling goroutine
// writes what is queued itself, as far as the connection takes it without
// blocking, instead of waking the writing goroutine (a thread wake-up
// that would double the frame's latency). The writing goroutine writes
// what is left.
func (w *Writer) SendNow(t Type, id uint64, body []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.add(t, id, body); err != nil {
		return err
	}
	switch {
	case w.writing:
		// The write under way is followed by one that takes this frame.
	case w.raw == nil:
		w.work.Signal()
	default:
		q, batches := w.take()
		w.mu.Unlock()
		rest, n, err := w.tryWrite(q)
		w.mu.Lock()
		w.written += n
		if len(rest) > 0 && err == nil {
			// The connection is full: the writing goroutine waits for it.
			// What is left goes ahead of what was queued meanwhile.
			w.queue = append(rest, w.queue...)
			w.batches = append(batches, w.batches...)
			batches = nil
		}
		w.finish(q, batches, rest, err)
		if err != nil {
			return err
		}
	}
	return nil
}

// SendBorrowed is Send for a body that the caller changes or reuses as
// soon as SendBorrowed returns: a body of up to 32 KiB is copied, as Send
// does; a larger one is written before SendBorrowed returns, by the calling
// goroutine itself when no write is under way, so that it is neither
// copied nor retained.
func (w *Writer) SendBorrowed(t Type, id uint64, body []byte) error {
	if len(body) <= bigBody {
		return w.Send(t, id, body)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.add(t, id, body); err != nil {
		return err
	}
	return w.flush()
}

// Flush returns once every frame queued before it has been written to the
// connection (or the first write error).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush()
}

// flush writes what is queued, from this goroutine unless a write is under
// way, until all of it is written; w.mu is held.
func (w *Writer) flush() error {
	end := w.queued
	for w.written < end && w.err == nil {
		if w.writing {
			w.space.Wait()
			continue
		}
		w.writeQueue()
	}
	if w.written < end {
		return w.err
	}
	return nil
}

// SendFD writes one frame with an open file descriptor attached to it
// (SCM_RIGHTS), after everything queued before it, and returns once it is
// written; the receiver must read with NewFDReader. The connection must be
// a Unix socket. fd stays the caller's: the receiver gets a duplicate.
func (w *Writer) SendFD(t Type, id uint64, body []byte, fd int) error {
	if !platform.Supported {
		return fmt.Errorf("wire: SendFD: %w", platform.ErrUnsupported)
	}
	if w.raw == nil {
		return errors.New("wire: SendFD needs a Unix socket")
	}
	if len(body) > MaxBody {
		return fmt.Errorf("wire: a body of %d bytes is over the %d-byte limit", len(body), MaxBody)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		switch {
		case w.err != nil:
			return w.err
		case w.closed:
			return ErrClosed
		case w.writing:
			w.space.Wait()
			continue
		case len(w.queue) > 0:
			w.writeQueue()
			continue
		}
		break
	}
	frame := append(appendHeader(make([]byte, 0, HeaderSize+len(body)), t, id, len(body)), body...)
	w.writing = true // frames queued meanwhile wait for this one
	w.mu.Unlock()
	err := w.sendmsg(frame, unixRights(fd))
	w.mu.Lock()
	w.writing = false
	w.queued += int64(len(frame))
	w.written += int64(len(frame))
	if err != nil && w.err == nil {
		w.err = err
	}
	w.space.Broadcast()
	if len(w.queue) > 0 || w.closed || w.err != nil {
		w.work.Signal()
	}
	return err
}

// add queues one frame, waiting while too much is queued; w.mu is held.
func (w *Writer) add(t Type, id uint64, body []byte) error {
	for w.queued-w.written > maxPending && w.err == nil && !w.closed {
		w.space.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	if len(body) > MaxBody {
		return fmt.Errorf("wire: a body of %d bytes is over the %d-byte limit", len(body), MaxBody)
	}
	small := len(body) <= bigBody
	need := HeaderSize
	if small {
		need += len(body)
	}
	if w.last == nil || cap(w.last)-len(w.last) < need {
		w.newBatch()
	}
	w.last = appendHeader(w.last, t, id, len(body))
	if small {
		w.last = append(w.last, body...)
	}
	w.queue[len(w.queue)-1] = w.last
	if !small {
		w.queue = append(w.queue, body)
		w.last = nil // the next frame goes after the body
	}
	w.queued += int64(HeaderSize + len(body))
	return nil
}

// appendHeader appends the header of a frame with a body of n bytes.
func appendHeader(dst []byte, t Type, id uint64, n int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+8+n))
	dst = append(dst, byte(t))
	return binary.LittleEndian.AppendUint64(dst, id)
}

// newBatch starts a batch buffer at the end of the queue; w.mu is held.
func (w *Writer) newBatch() {
	var b []byte
	if n := len(w.spare); n > 0 {
		b, w.spare = w.spare[n-1], w.spare[:n-1]
	} else {
		b = make([]byte, 0, batchSize)
	}
	w.last = b
	w.queue = append(w.queue, b)
	w.batches = append(w.batches, b)
}

// take hands everything queued to the caller, which becomes the writer
// until it calls finish; w.mu is held.
func (w *Writer) take() (net.Buffers, [][]byte) {
	q, batches := w.queue, w.batches
	w.queue, w.spareQ = w.spareQ, nil
	w.batches, w.last = nil, nil
	w.writing = true
	return q, batches
}

// finish ends the write of a taken queue q: batches go back to the spares,
// and rest, what was not written, is dropped if err is set; w.mu is held.
func (w *Writer) finish(q net.Buffers, batches [][]byte, rest net.Buffers, err error) {
	w.writing = false
	if err != nil {
		for _, b := range rest {
			w.written += int64(len(b))
		}
		if w.err == nil {
			w.err = err
		}
	}
	for _, b := range batches {
		if len(w.spare) < maxSpare {
			w.spare = append(w.spare, b[:0])
		}
	}
	if len(rest) == 0 || err != nil {
		clear(q[:cap(q)])
		w.spareQ = q[:0]
	}
	w.space.Broadcast()
	if len(w.queue) > 0 || w.closed || w.err != nil {
		w.work.Signal()
	}
}

// writeQueue writes everything queued from the calling goroutine,
// blocking as long as the connection does; w.mu is held, and released
// during the write.
func (w *Writer) writeQueue() {
	q, batches := w.take()
	w.mu.Unlock()
	v := q // WriteTo consumes v
	n, err := v.WriteTo(w.w)
	w.mu.Lock()
	w.written += n
	w.finish(q, batches, v, err)
}

func (w *Writer) loop() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		switch {
		case w.err != nil:
			return
		case w.writing:
			w.work.Wait()
		case len(w.queue) > 0:
			w.writeQueue()
		case w.closed:
			return
		default:
			w.work.Wait()
		}
	}
}

// Close writes what is queued, stops the writing goroutine and returns the
// first write error. It does not close the underlying connection.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	w.work.Signal()
	w.space.Broadcast()
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Fail makes every later Send return err and stops writing; use it when the
// connection is known to be dead.
func (w *Writer) Fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	w.work.Signal()
	w.space.Broadcast()
}

// Reader reads frames from a connection.
type Reader struct {
	hdr  [HeaderSize]byte // the header being read (a field: no allocation per frame)
	r    *bufio.Reader
	slab []byte
	fds  *fdConn // with NewFDReader
}

// NewReader returns a Reader with a 256 KiB buffer.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 256<<10)} }

// NewFDReader returns a Reader that also receives the file descriptors
// sent with frames (Writer.SendFD); TakeFD hands them out in order.
func NewFDReader(c *net.UnixConn) *Reader {
	f := &fdConn{c: c, oob: make([]byte, oobSize)}
	r := NewReader(f)
	r.fds = f
	return r
}

// TakeFD returns the oldest file descriptor received and not yet taken,
// which the caller owns (it is close-on-exec). The descriptor sent with a
// frame has been received once Next has returned that frame.
func (r *Reader) TakeFD() (int, bool) {
	if r.fds == nil || len(r.fds.fds) == 0 {
		return -1, false
	}
	fd := r.fds.fds[0]
	r.fds.fds = r.fds.fds[1:]
	return fd, true
}

// fdConn reads a Unix socket, keeping the file descriptors that arrive.
type fdConn struct {
	c   *net.UnixConn
	oob []byte
	fds []int
}

func (f *fdConn) Read(p []byte) (int, error) {
	n, err := f.readMsg(p)
	if errors.Is(err, io.EOF) || n == 0 && err == nil && len(p) > 0 {
		err = io.EOF // the stream's end, which readers of Next look for as is
	}
	return n, err
}

// Buffered reports how many bytes can be read without a system call: when
// it is 0, the next Next may block.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// Next reads one frame. The body belongs to the caller. It returns io.EOF
// at a clean end of stream and io.ErrUnexpectedEOF inside a frame.
func (r *Reader) Next() (Type, uint64, []byte, error) {
	hdr := r.hdr[:]
	if _, err := io.ReadFull(r.r, hdr); err != nil {
		return 0, 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[0:])
	if n < 9 {
		return 0, 0, nil, fmt.Errorf("wire: frame length %d is shorter than its header", n)
	}
	size := int(n) - 9
	if size > MaxBody {
		return 0, 0, nil, fmt.Errorf("wire: frame body of %d bytes is over the %d-byte limit", size, MaxBody)
	}
	t := Type(hdr[4])
	id := binary.LittleEndian.Uint64(hdr[5:])
	var body []byte
	if size <= 4<<10 {
		// Small bodies are carved out of a shared slab: one allocation
		// per many frames.
		if cap(r.slab)-len(r.slab) < size {
			r.slab = make([]byte, 0, 64<<10)
		}
		body = r.slab[len(r.slab) : len(r.slab)+size : len(r.slab)+size]
		r.slab = r.slab[:len(r.slab)+size]
	} else {
		// Trust a claimed length only up to 64 MiB before bytes arrive,
		// so a corrupt header cannot make us allocate a gigabyte.
		body = make([]byte, min(size, 64<<20))
	}
	for got := 0; ; {
		k, err := io.ReadFull(r.r, body[got:])
		got += k
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, nil, err
		}
		if got == size {
			return t, id, body, nil
		}
		body = append(body, make([]byte, min(size-got, got))...)
	}
}

// U32 encodes a credit count.
func U32(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }

// ParseU32 decodes a credit count.
func ParseU32(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("wire: want a 4-byte count, got %d bytes", len(b))
	}
	return binary.LittleEndian.Uint32(b), nil
}

// AppendFrame appends a whole frame to dst, for a sender that writes it
// itself, without a Writer.
func AppendFrame(dst []byte, t Type, id uint64, body []byte) []byte {
	return append(appendHeader(dst, t, id, len(body)), body...)
}
