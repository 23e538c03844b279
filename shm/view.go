package shm

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// View returns a zero-copy view of the segment that ref designates. It
// validates ref against the pool (same pool, segment in range, length within
// a segment and equal to what was published, segment published at ref's
// generation and not yet viewed), and fails with a *RefError otherwise. The
// segment stays held until the View's Release.
func (p *SegmentPool) View(ref Ref) (*View, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return nil, ErrClosed
	}
	if err := p.checkRef(ref); err != nil {
		return nil, err
	}
	if ref.DType != Raw {
		if n, ok := elements(ref.Shape); ref.DType.Size() == 0 || !ok || n*uint64(ref.DType.Size()) != ref.Len {
			return nil, &RefError{Ref: ref, Reason: fmt.Sprintf("shape %v of %v does not make %d bytes", ref.Shape, ref.DType, ref.Len)}
		}
	}
	s := &p.slots[ref.Segment]
	w := s.state.Load()
	st, gen, _ := unpack(w)
	switch {
	case gen != ref.Gen:
		return nil, &RefError{Ref: ref, Reason: fmt.Sprintf("stale: the segment was released and reused (now %s at generation %d)", stateName(st), gen)}
	case st == stateFree:
		return nil, &RefError{Ref: ref, Reason: "stale: the segment was released"}
	case st == stateViewed:
		return nil, &RefError{Ref: ref, Reason: "the segment is already viewed"}
	case st == stateLeased:
		return nil, &RefError{Ref: ref, Reason: "the segment is leased, not published"}
	}
	if n := s.length.Load(); n != ref.Len {
		return nil, &RefError{Ref: ref, Reason: fmt.Sprintf("%d bytes were published", n)}
	}
	nw := pack(stateViewed, gen, p.opts.owner)
	if !s.state.CompareAndSwap(w, nw) {
		return nil, &RefError{Ref: ref, Reason: "the segment was viewed or discarded concurrently"}
	}
	seg := p.segment(ref.Segment)
	if debug {
		protect(seg, protReadWrite)
	}
	v := &View{pool: p, ref: ref, buf: seg[:ref.Len:ref.Len], word: nw}
	v.cleanup = runtime.AddCleanup(v, viewCollected, cleanupArg{p, ref.Segment, nw})
	return v, nil
}

// A View is the consumer's zero-copy access to a published segment: Bytes
// aliases the shared memory the producer wrote. The segment stays held (the
// producer cannot reuse it) until Release; views may be released in any
// order.
//
// Release every View. One that is dropped is released when it is
// garbage-collected, with a warning logged once per pool, but only then:
// keep the View reachable for as long as Bytes (or a typed slice of it) is
// in use, which calling Release after the last use does. In a ferrydebug
// build, Bytes after Release panics, and the segment is made inaccessible
// in this process on Release, so a slice kept past Release faults.
//
// A View's methods are safe for concurrent use.
type View struct {
	pool     *SegmentPool
	ref      Ref
	buf      []byte
	word     uint64 // the segment's state word while viewed
	released atomic.Bool
	cleanup  runtime.Cleanup
}

// Bytes returns the published bytes, in place in shared memory. They may be
// read and written until Release.
func (v *View) Bytes() []byte {
	if debug && v.released.Load() {
		panic(fmt.Sprintf("shm: View.Bytes of segment %d after Release", v.ref.Segment))
	}
	return v.buf
}

// Len returns the number of bytes published.
func (v *View) Len() int { return len(v.buf) }

// Ref returns the Ref the View was made from.
func (v *View) Ref() Ref { return v.ref }

// DType returns the element type the producer published (Raw for plain
// bytes).
func (v *View) DType() DType { return v.ref.DType }

// Shape returns the dimensions the producer published with PublishTyped
// (nil for plain bytes). The caller must not modify it.
func (v *View) Shape() []int { return v.ref.Shape }

// Release frees the segment for producers (in every process) and wakes
// those waiting for one. The View's bytes must no longer be used. Release is
// idempotent, and does nothing after the pool's Close.
func (v *View) Release() {
	if v.released.Swap(true) {
		return
	}
	v.cleanup.Stop()
	p := v.pool
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed.Load() {
		p.freeHeld(v.ref.Segment, v.word)
	}
}

// Elements returns v's bytes as a []T, in place. It panics if the producer
// published another element type (a Raw view can be read as any type whose
// size divides its length).
func Elements[T Element](v *View) []T {
	if want := DTypeOf[T](); v.ref.DType != Raw && v.ref.DType != want {
		panic(fmt.Sprintf("shm: view of %v%v read as %v", v.ref.DType, v.ref.Shape, want))
	}
	return Cast[T](v.Bytes())
}

// Uint8s is Elements[uint8](v).
func (v *View) Uint8s() []uint8 { return Elements[uint8](v) }

// Int8s is Elements[int8](v).
func (v *View) Int8s() []int8 { return Elements[int8](v) }

// Uint16s is Elements[uint16](v).
func (v *View) Uint16s() []uint16 { return Elements[uint16](v) }

// Int16s is Elements[int16](v).
func (v *View) Int16s() []int16 { return Elements[int16](v) }

// Uint32s is Elements[uint32](v).
func (v *View) Uint32s() []uint32 { return Elements[uint32](v) }

// Int32s is Elements[int32](v).
func (v *View) Int32s() []int32 { return Elements[int32](v) }

// Uint64s is Elements[uint64](v).
func (v *View) Uint64s() []uint64 { return Elements[uint64](v) }

// Int64s is Elements[int64](v).
func (v *View) Int64s() []int64 { return Elements[int64](v) }

// Float32s is Elements[float32](v).
func (v *View) Float32s() []float32 { return Elements[float32](v) }

// Float64s is Elements[float64](v).
func (v *View) Float64s() []float64 { return Elements[float64](v) }

// Forward publishes the viewed segment again, as it is, for another
// consumer: the producer's side of passing on what was received without
// copying it. It returns the new Ref (the segment's generation changes, so
// the old Ref can no longer be viewed); the View is released by it and
// this process owns the segment until the new consumer views it, as if it
// had published it. It fails with a *RefError if the segment was freed
// under the View (Discard, ReclaimOwner), and with ErrClosed after the
// pool's Close.
func (v *View) Forward() (Ref, error) {
	if v.released.Swap(true) {
		return Ref{}, &RefError{Ref: v.ref, Reason: "the view was released"}
	}
	v.cleanup.Stop()
	p := v.pool
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed.Load() {
		return Ref{}, ErrClosed
	}
	s := &p.slots[v.ref.Segment]
	_, gen, _ := unpack(v.word)
	gen = (gen + 1) & genMask
	if debug {
		protect(p.segment(v.ref.Segment), protNone)
	}
	if !s.state.CompareAndSwap(v.word, pack(statePublished, gen, p.opts.owner)) {
		return Ref{}, &RefError{Ref: v.ref, Reason: "the segment was freed under the view (discarded or reclaimed)"}
	}
	// One publication ended (as if released) and another began, so that
	// Held stays what it was.
	p.hdr.reclaimed.Add(1)
	p.hdr.published.Add(1)
	ref := v.ref
	ref.Gen = gen
	return ref, nil
}
