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
)

// Version is the protocol version carried by the Init message.
const Version = 1

// HeaderSize is the size of a frame header: length, type, id.
const HeaderSize = 4 + 1 + 8

// MaxBody is the largest body a reader accepts.
const MaxBody = 1 << 30

// Type is the kind of a message.
type Type uint8

// Message types. Parent to worker: Init … Shutdown. Worker to parent:
// Ready … StatsReply.
const (
	Init     Type = 1 // id 0; body: JSON InitMsg
	Start    Type = 2 // id: pass; body: 4-byte credit count
	Credit   Type = 3 // id: pass; body: 4-byte credit count
	Stop     Type = 4 // id: pass; no body
	Call     Type = 5 // id: call; body: encoded input
	Stats    Type = 6 // id: request; no body
	Shutdown Type = 7 // id 0; no body

	Ready        Type = 64 // id 0; no body
	InitFailed   Type = 65 // id 0; body: JSON ErrorMsg
	IterStarted  Type = 66 // id: pass; no body
	Item         Type = 67 // id: pass; body: encoded item
	ItemFailed   Type = 68 // id: pass; body: JSON ErrorMsg
	IterFinished Type = 69 // id: pass; body: empty, or JSON ErrorMsg if the pass failed as a whole
	Result       Type = 70 // id: call; body: encoded output
	CallFailed   Type = 71 // id: call; body: JSON ErrorMsg
	StatsReply   Type = 72 // id: request; body: JSON
)

var typeNames = map[Type]string{
	Init: "Init", Start: "Start", Credit: "Credit", Stop: "Stop", Call: "Call", Stats: "Stats", Shutdown: "Shutdown",
	Ready: "Ready", InitFailed: "InitFailed", IterStarted: "IterStarted", Item: "Item", ItemFailed: "ItemFailed",
	IterFinished: "IterFinished", Result: "Result", CallFailed: "CallFailed", StatsReply: "StatsReply",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// InitMsg configures a worker: what to run and with which arguments.
type InitMsg struct {
	Version      int      `json:"version"`
	Kind         string   `json:"kind"` // "func", "iter" or "pipeline"
	Name         string   `json:"name"` // registered name
	Args         []byte   `json:"args,omitempty"`
	Initializers []string `json:"initializers,omitempty"`
	Concurrency  int      `json:"concurrency,omitempty"` // calls served at once (func)
}

// ErrorMsg is an error raised in a worker.
type ErrorMsg struct {
	Type    string `json:"type"`            // Go type of the error, or "panic"
	Message string `json:"message"`         // err.Error()
	Stack   string `json:"stack,omitempty"` // for panics
	Index   int64  `json:"index"`           // item index within its pass, or -1
}

// ErrClosed is returned by a Writer after Close.
var ErrClosed = errors.New("wire: writer closed")

// bigBody is the size above which a body is written from its own slice
// instead of being copied into the batch buffer.
const bigBody = 32 << 10

// maxPending bounds the bytes queued in a Writer before Send waits.
const maxPending = 4 << 20

// Writer sends frames on a connection. Send queues a frame and returns; one
// goroutine writes whatever has queued in one vectored write, so frames
// sent while a write is under way share the next system call.
type Writer struct {
	w      io.Writer
	mu     sync.Mutex
	cond   *sync.Cond
	queue  net.Buffers
	small  bool // the last queued buffer collects small frames
	size   int
	err    error
	closed bool
	done   chan struct{}
}

// NewWriter starts the writing goroutine; Close stops it.
func NewWriter(w io.Writer) *Writer {
	wr := &Writer{w: w, done: make(chan struct{})}
	wr.cond = sync.NewCond(&wr.mu)
	go wr.loop()
	return wr
}

// Send queues one frame. A body larger than 32 KiB is retained, not copied,
// until it is written: the caller must not change it afterwards. Send waits
// while more than 4 MiB are queued, and returns the first write error.
func (w *Writer) Send(t Type, id uint64, body []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.size > maxPending && w.err == nil && !w.closed {
		w.cond.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	var hdr [HeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(1+8+len(body)))
	hdr[4] = byte(t)
	binary.LittleEndian.PutUint64(hdr[5:], id)
	wake := len(w.queue) == 0 // the writing goroutine waits only on an empty queue
	if !w.small {
		w.queue = append(w.queue, make([]byte, 0, 64<<10))
		w.small = true
	}
	last := &w.queue[len(w.queue)-1]
	*last = append(*last, hdr[:]...)
	if len(body) > bigBody {
		w.queue = append(w.queue, body)
		w.small = false
	} else {
		*last = append(*last, body...)
	}
	w.size += HeaderSize + len(body)
	if wake {
		w.cond.Broadcast()
	}
	return nil
}

func (w *Writer) loop() {
	defer close(w.done)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closed && w.err == nil {
			w.cond.Wait()
		}
		if w.err != nil || (w.closed && len(w.queue) == 0) {
			w.mu.Unlock()
			return
		}
		q := w.queue
		w.queue, w.small = nil, false
		w.mu.Unlock()

		n := 0
		for _, b := range q {
			n += len(b)
		}
		_, err := q.WriteTo(w.w)

		w.mu.Lock()
		w.size -= n
		if err != nil && w.err == nil {
			w.err = err
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// Close writes what is queued, stops the writing goroutine and returns the
// first write error. It does not close the underlying connection.
func (w *Writer) Close() error {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
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
	w.cond.Broadcast()
}

// Reader reads frames from a connection.
type Reader struct {
	r    *bufio.Reader
	slab []byte
}

// NewReader returns a Reader with a 256 KiB buffer.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 256<<10)} }

// Buffered reports how many bytes can be read without a system call: when
// it is 0, the next Next may block.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// Next reads one frame. The body belongs to the caller. It returns io.EOF
// at a clean end of stream and io.ErrUnexpectedEOF inside a frame.
func (r *Reader) Next() (Type, uint64, []byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
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
