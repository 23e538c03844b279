package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ferrypipe/ferry/internal/platform"
)

// SegmentPool is one process's mapping of a pool of fixed-size shared-memory
// segments. The pool lives in a memfd: one process creates it with
// NewSegmentPool, sends FD to the others (SCM_RIGHTS, or exec's ExtraFiles),
// and they map it with OpenSegmentPool. Every mapping can produce (Acquire,
// then Publish a Lease) and consume (View a Ref, then Release the View).
//
// A segment is free, leased to a producer, published (its Ref on the way to
// the consumer) or viewed by the consumer; the state of every segment lives
// in the shared control block, so the pool works the same across processes
// as within one. All methods are safe for concurrent use.
type SegmentPool struct {
	opts     options
	fd       int
	mem      []byte // the whole mapping: control block, then the segments
	hdr      *header
	slots    []slot
	ctrlSize int
	segSize  int
	count    int
	id       uint64

	// mu is held shared by every operation that touches the mapping, and
	// exclusively by Close while it unmaps it.
	mu     sync.RWMutex
	closed atomic.Bool

	loggedView  atomic.Bool // a garbage-collected View was reported
	loggedLease atomic.Bool // a garbage-collected Lease was reported
}

// NewSegmentPool creates a pool of count segments of segmentSize bytes each
// (rounded up to a multiple of the page size) in a new memfd, and maps it.
// Nothing is created in /dev/shm and there is nothing to unlink: the memory
// is freed when the last process that maps the pool or holds its fd closes
// it or exits.
func NewSegmentPool(segmentSize, count int, opts ...Option) (*SegmentPool, error) {
	if !platform.Supported {
		return nil, fmt.Errorf("shm: NewSegmentPool: %w", ErrUnsupported)
	}
	o := buildOptions(opts)
	page := os.Getpagesize()
	if segmentSize <= 0 || segmentSize > math.MaxInt64/2 {
		return nil, fmt.Errorf("shm: invalid segment size %d", segmentSize)
	}
	if count <= 0 || count > maxCount {
		return nil, fmt.Errorf("shm: invalid segment count %d (1 to %d)", count, maxCount)
	}
	segSize := roundUp(segmentSize, page)
	ctrl := ctrlSizeFor(count, page)
	if segSize > (math.MaxInt64-ctrl)/count {
		return nil, fmt.Errorf("shm: %d segments of %s are too large a pool", count, sizeString(segSize))
	}
	total := ctrl + count*segSize

	fd, err := memfdCreate(o.name)
	if err != nil {
		return nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	if err := ftruncate(fd, int64(total)); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("shm: sizing the pool to %s: %w", sizeString(total), err)
	}
	// The size is final: no process can shrink the file under another's
	// mapping (which would turn its accesses into SIGBUS).
	if err := addSeals(fd, sealShrink|sealGrow|sealSeal); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("shm: sealing the pool: %w", err)
	}
	mem, err := mmapShared(fd, total, protReadWrite)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("shm: mapping the pool (%s): %w", sizeString(total), err)
	}
	h := (*header)(unsafe.Pointer(&mem[0]))
	h.version.Store(layoutVersion)
	h.ctrlSize.Store(uint32(ctrl))
	h.segSize.Store(uint64(segSize))
	h.count.Store(uint32(count))
	h.poolID.Store(rand.Uint64())
	h.magic.Store(magic)
	return newPool(o, fd, mem, ctrl, segSize, count), nil
}

// OpenSegmentPool maps a pool created by NewSegmentPool, usually in another
// process, from its fd. It validates the control block (magic, layout
// version, sizes against the file's size, seals) and duplicates fd: the
// caller keeps ownership of fd and may close it at once. The Name option is
// ignored (the memfd is already named).
func OpenSegmentPool(fd int, opts ...Option) (*SegmentPool, error) {
	if !platform.Supported {
		return nil, fmt.Errorf("shm: OpenSegmentPool: %w", ErrUnsupported)
	}
	o := buildOptions(opts)
	page := os.Getpagesize()
	nfd, err := dupFD(fd)
	if err != nil {
		return nil, fmt.Errorf("shm: open pool: dup fd %d: %w", fd, err)
	}
	ctrl, segSize, count, err := checkPoolFile(nfd, page)
	if err != nil {
		closeFD(nfd)
		return nil, fmt.Errorf("shm: open pool from fd %d: %w", fd, err)
	}
	mem, err := mmapShared(nfd, ctrl+count*segSize, protReadWrite)
	if err != nil {
		closeFD(nfd)
		return nil, fmt.Errorf("shm: open pool: mapping %s: %w", sizeString(ctrl+count*segSize), err)
	}
	return newPool(o, nfd, mem, ctrl, segSize, count), nil
}

// checkPoolFile validates the header and size of a pool's file before it is
// mapped.
func checkPoolFile(fd, page int) (ctrl, segSize, count int, err error) {
	var buf [headerSize]byte
	n, err := pread(fd, buf[:], 0)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("reading the control block: %w", err)
	}
	if n < headerSize {
		return 0, 0, 0, errors.New("not a segment pool (file too short)")
	}
	le := binary.LittleEndian
	if m := le.Uint64(buf[0:]); m != magic {
		return 0, 0, 0, fmt.Errorf("not a segment pool (magic %#x)", m)
	}
	if v := le.Uint32(buf[8:]); v != layoutVersion {
		return 0, 0, 0, fmt.Errorf("segment pool layout version %d, this build speaks %d", v, layoutVersion)
	}
	ctrl = int(le.Uint32(buf[12:]))
	seg := le.Uint64(buf[16:])
	count = int(le.Uint32(buf[24:]))
	if count <= 0 || count > maxCount {
		return 0, 0, 0, fmt.Errorf("corrupt control block: %d segments", count)
	}
	if ctrl != ctrlSizeFor(count, page) {
		return 0, 0, 0, fmt.Errorf("corrupt control block: control size %d for %d segments", ctrl, count)
	}
	if seg == 0 || seg%uint64(page) != 0 || seg > uint64((math.MaxInt64-ctrl)/count) {
		return 0, 0, 0, fmt.Errorf("corrupt control block: segment size %d", seg)
	}
	segSize = int(seg)
	size, err := fileSize(fd)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("fstat: %w", err)
	}
	if want := int64(ctrl + count*segSize); size != want {
		return 0, 0, 0, fmt.Errorf("file is %d bytes, its control block describes %d", size, want)
	}
	seals, err := getSeals(fd)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("reading seals: %w", err)
	}
	if seals&sealShrink == 0 {
		return 0, 0, 0, errors.New("pool file is not sealed against shrinking")
	}
	return ctrl, segSize, count, nil
}

func newPool(o options, fd int, mem []byte, ctrl, segSize, count int) *SegmentPool {
	p := &SegmentPool{
		opts:     o,
		fd:       fd,
		mem:      mem,
		hdr:      (*header)(unsafe.Pointer(&mem[0])),
		slots:    unsafe.Slice((*slot)(unsafe.Pointer(&mem[headerSize])), count),
		ctrlSize: ctrl,
		segSize:  segSize,
		count:    count,
	}
	p.id = p.hdr.poolID.Load()
	if debug {
		protect(mem[ctrl:], protNone)
	}
	return p
}

// segment returns segment i of this mapping.
func (p *SegmentPool) segment(i uint32) []byte {
	off := p.ctrlSize + int(i)*p.segSize
	return p.mem[off : off+p.segSize : off+p.segSize]
}

// FD returns the pool's file descriptor, to send to another process, which
// maps the pool with OpenSegmentPool. It remains owned by the pool: it is
// closed by Close. It is close-on-exec; to hand it to a child with
// os/exec, wrap a dup of it in an *os.File in ExtraFiles.
func (p *SegmentPool) FD() int { return p.fd }

// AcquireTimeout returns the acquire timeout of this mapping (see the
// AcquireTimeout option).
func (p *SegmentPool) AcquireTimeout() time.Duration { return p.opts.acquireTimeout }

// ID returns the pool's random identity. Every Ref carries it, so that a Ref
// from another pool is rejected by View.
func (p *SegmentPool) ID() uint64 { return p.id }

// Count returns the number of segments.
func (p *SegmentPool) Count() int { return p.count }

// SegmentSize returns the size of a segment in bytes (the size given to
// NewSegmentPool rounded up to a multiple of the page size).
func (p *SegmentPool) SegmentSize() int { return p.segSize }

// Published returns how many segments have ever been published, by every
// process.
func (p *SegmentPool) Published() uint64 {
	return p.counter(func(h *header) uint64 { return h.published.Load() })
}

// Reclaimed returns how many published segments have ever been freed again
// (released, discarded or reclaimed), by every process.
func (p *SegmentPool) Reclaimed() uint64 {
	return p.counter(func(h *header) uint64 { return h.reclaimed.Load() })
}

// Held returns how many segments are published and not yet freed: held by
// the consumer, or on their way to it.
func (p *SegmentPool) Held() int {
	held := p.counter(func(h *header) uint64 {
		// Read reclaimed first: it never runs ahead of published (but for a
		// moment around a ReclaimOwner).
		r := h.reclaimed.Load()
		if pub := h.published.Load(); pub > r {
			return pub - r
		}
		return 0
	})
	return int(held)
}

func (p *SegmentPool) counter(f func(*header) uint64) uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return 0
	}
	return f(p.hdr)
}

// Stats is a snapshot of a pool's state, shared by every process that maps
// it.
type Stats struct {
	Count       int    // segments in the pool
	SegmentSize int    // bytes per segment
	Free        int    // segments free now
	Leased      int    // segments leased by producers now
	InFlight    int    // segments published and not yet viewed
	Viewed      int    // segments held by a consumer's View
	Waiters     int    // producers waiting in Acquire now (one too many per process killed while waiting)
	Published   uint64 // segments ever published
	Reclaimed   uint64 // published segments ever freed again
	Abandoned   uint64 // leases ever given back unpublished (Abandon, ReclaimOwner)
	Shutdown    bool   // Shutdown was called
}

// Stats returns a snapshot of the pool's state. It reads every segment's
// state word; the snapshot is not atomic as a whole. It returns the zero
// Stats after Close.
func (p *SegmentPool) Stats() Stats {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return Stats{}
	}
	h := p.hdr
	s := Stats{
		Count:       p.count,
		SegmentSize: p.segSize,
		Waiters:     int(h.waiters.Load()),
		Published:   h.published.Load(),
		Reclaimed:   h.reclaimed.Load(),
		Abandoned:   h.abandoned.Load(),
		Shutdown:    h.shutdown.Load() != 0,
	}
	for i := range p.slots {
		st, _, _ := unpack(p.slots[i].state.Load())
		switch st {
		case stateFree:
			s.Free++
		case stateLeased:
			s.Leased++
		case statePublished:
			s.InFlight++
		case stateViewed:
			s.Viewed++
		}
	}
	return s
}

// Shutdown marks the pool as shut down, for every process that maps it, and
// wakes every producer waiting in Acquire: they, and every later Acquire,
// fail with ErrShutdown. Leases already acquired can still be published, and
// views still be taken and released, so that a consumer can drain. Shutdown
// cannot be undone.
func (p *SegmentPool) Shutdown() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return
	}
	p.hdr.shutdown.Store(1)
	p.wakeAll()
}

// Close unmaps the pool from this process and closes its fd. Producers
// waiting in this mapping's Acquire return ErrClosed. Other processes are
// not affected; the memory is freed when the last one closes it or exits.
// Leases and views of this mapping must not be used after Close (their
// Bytes would fault); their Release and Abandon become no-ops, so whatever
// segments they held stay held in the shared pool unless another process
// reclaims them (ReclaimOwner). Close is idempotent.
func (p *SegmentPool) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Wake this mapping's waiters (and, harmlessly, everyone else's) so
	// that they notice closed and give up their read lock.
	p.wakeAll()
	p.mu.Lock()
	defer p.mu.Unlock()
	err := munmap(p.mem)
	if cerr := closeFD(p.fd); err == nil {
		err = cerr
	}
	p.mem, p.hdr, p.slots = nil, nil, nil
	if err != nil {
		return fmt.Errorf("shm: close pool: %w", err)
	}
	return nil
}

// wakeAll bumps the sequence word and wakes every waiter, in every process.
func (p *SegmentPool) wakeAll() {
	p.hdr.seq.Add(1)
	futexWakeAll(&p.hdr.seq)
}

// wakeIfOpen is wakeAll for callers that do not hold mu: a context's
// AfterFunc, which may run after its Acquire returned and the pool closed.
func (p *SegmentPool) wakeIfOpen() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed.Load() {
		p.wakeAll()
	}
}

// signal bumps the sequence word after a segment became free, and wakes the
// waiters if there are any. A producer increments waiters before it sleeps
// and sleeps only while the sequence word holds the value it read before it
// last looked for a free segment, so either it sees the bump or we see it.
func (p *SegmentPool) signal() {
	p.hdr.seq.Add(1)
	if p.hdr.waiters.Load() != 0 {
		futexWakeAll(&p.hdr.seq)
	}
}

// free moves segment i from the exact state word w to free, keeping its
// generation. It reports whether it did; it fails when someone else already
// changed the segment (a Discard or ReclaimOwner got there first).
func (p *SegmentPool) free(i uint32, w uint64) bool {
	st, gen, _ := unpack(w)
	if !p.slots[i].state.CompareAndSwap(w, pack(stateFree, gen, 0)) {
		return false
	}
	switch st {
	case statePublished, stateViewed:
		p.hdr.reclaimed.Add(1)
	case stateLeased:
		p.hdr.abandoned.Add(1)
	}
	p.signal()
	return true
}

// Discard frees the segment of a published Ref without viewing it: for a
// consumer that drops an item (an abandoned pass, a late result), or a
// producer whose Ref was sent to a consumer that died. It also frees the
// segment if a View of the Ref exists (in any process): that View's Release
// then does nothing. Discarding a Ref whose segment was already freed and
// reused returns a *RefError and changes nothing.
func (p *SegmentPool) Discard(ref Ref) error {
	return p.freeRef(ref, true, "already released")
}

// Withdraw frees the segment of a published Ref that no consumer has
// viewed: for a producer whose Ref may or may not have been taken (a call
// that ended, a stream given up). A segment already viewed is left to its
// consumer (who may keep it: a shm.Buffer it retained), and to
// ReclaimOwner if the consumer dies; Withdraw then returns a *RefError
// and changes nothing, as it does for a segment already freed.
func (p *SegmentPool) Withdraw(ref Ref) error {
	return p.freeRef(ref, false, "taken or released")
}

// freeRef frees the segment of ref if it is published at ref's generation
// (or viewed, with viewed); otherwise it returns a *RefError ending with
// why.
func (p *SegmentPool) freeRef(ref Ref, viewed bool, why string) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if err := p.checkRef(ref); err != nil {
		return err
	}
	s := &p.slots[ref.Segment]
	for {
		w := s.state.Load()
		st, gen, _ := unpack(w)
		if gen != ref.Gen || (st != statePublished && !(viewed && st == stateViewed)) {
			return &RefError{Ref: ref, Reason: fmt.Sprintf("segment is %s at generation %d: %s", stateName(st), gen, why)}
		}
		if p.free(ref.Segment, w) {
			return nil
		}
	}
}

// ReclaimOwner frees every segment that owner holds: the leases of a
// producer and the views of a consumer that died, and the segments that
// producer published that no consumer has viewed yet. It returns how many
// segments it freed. owner is the Owner option of the dead process's mapping
// (by default its pid).
//
// Call it once the dead process's messages have all been read and their Refs
// viewed or discarded (for a worker: after end of file on its connection),
// so that a published Ref still in a message is not freed under its
// consumer. Calling it early is still safe: a View of a Ref whose segment was
// freed fails with a *RefError instead of showing reused memory.
func (p *SegmentPool) ReclaimOwner(owner uint32) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return 0
	}
	n := 0
	for i := range p.slots {
		for {
			w := p.slots[i].state.Load()
			st, _, o := unpack(w)
			if st == stateFree || o != owner {
				break
			}
			if p.free(uint32(i), w) {
				n++
				break
			}
		}
	}
	return n
}

// checkRef validates the parts of a Ref that do not depend on the segment's
// current state.
func (p *SegmentPool) checkRef(ref Ref) error {
	if ref.Pool != p.id {
		return &RefError{Ref: ref, Reason: fmt.Sprintf("it belongs to pool %#x, not %#x", ref.Pool, p.id)}
	}
	if int64(ref.Segment) >= int64(p.count) {
		return &RefError{Ref: ref, Reason: fmt.Sprintf("the pool has %d segments", p.count)}
	}
	if ref.Len > uint64(p.segSize) {
		return &RefError{Ref: ref, Reason: fmt.Sprintf("longer than a segment (%s)", sizeString(p.segSize))}
	}
	return nil
}

// cleanupArg identifies a lease or view for the garbage-collection safety
// net: the segment and the exact state word it holds.
type cleanupArg struct {
	pool  *SegmentPool
	index uint32
	word  uint64
}

// leaseCollected runs when a Lease was garbage-collected without Publish or
// Abandon: it gives the segment back, and logs the first time.
func leaseCollected(a cleanupArg) {
	if a.pool.collected(a) && !a.pool.loggedLease.Swap(true) {
		a.pool.opts.logger.Warn("shm: a lease was garbage-collected without Publish or Abandon; its segment was freed (this is logged once per pool)",
			"segment", a.index, "pool", fmt.Sprintf("%#x", a.pool.id))
	}
}

// viewCollected runs when a View was garbage-collected without Release: it
// releases the segment, and logs the first time.
func viewCollected(a cleanupArg) {
	if a.pool.collected(a) && !a.pool.loggedView.Swap(true) {
		a.pool.opts.logger.Warn("shm: a view was garbage-collected without Release; its segment was freed (this is logged once per pool)",
			"segment", a.index, "pool", fmt.Sprintf("%#x", a.pool.id))
	}
}

func (p *SegmentPool) collected(a cleanupArg) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return !p.closed.Load() && p.freeHeld(a.index, a.word)
}

// freeHeld is free for the holder of the segment (a Lease or View of this
// mapping). In debug builds it first makes the segment inaccessible in this
// mapping, so that a slice kept after Release faults instead of reading
// memory that another producer is rewriting.
func (p *SegmentPool) freeHeld(i uint32, w uint64) bool {
	if p.slots[i].state.Load() != w {
		return false // freed by Discard or ReclaimOwner
	}
	if debug {
		protect(p.segment(i), protNone)
	}
	return p.free(i, w)
}

// protect changes the protection of b in this mapping (debug builds only).
func protect(b []byte, prot int) {
	if len(b) == 0 {
		return
	}
	if err := mprotect(b, prot); err != nil {
		panic(fmt.Sprintf("shm: mprotect: %v", err))
	}
}
