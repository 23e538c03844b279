package shm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"
)

// Acquire leases a free segment to the caller, who writes into it and then
// publishes it (Lease.Publish) or gives it back (Lease.Abandon).
//
// When every segment is in use, Acquire sleeps on the pool's futex (no CPU,
// no polling) until a segment is freed by any process, the pool is shut
// down, ctx is done, or the acquire timeout passes. It then fails with
// ErrShutdown, ErrClosed, ctx's error (wrapped) on cancellation, or an
// *AcquireError (which names how many segments the consumer holds) on a
// timeout or ctx's deadline. With AcquireTimeout(0) it fails at once.
func (p *SegmentPool) Acquire(ctx context.Context) (*Lease, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	i, w, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	return p.newLease(i, w), nil
}

// acquire leases a free segment, waiting as Acquire describes, and returns
// its index and its state word; p.mu is held shared.
func (p *SegmentPool) acquire(ctx context.Context) (uint32, uint64, error) {
	h := p.hdr
	var (
		start       time.Time
		deadline    time.Time // zero: no limit
		ctxDeadline bool      // deadline is ctx's
		stop        func() bool
	)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		if p.closed.Load() {
			return 0, 0, ErrClosed
		}
		// Read the sequence word before looking: whatever frees a segment
		// (or shuts down, or cancels) afterwards changes it, and then the
		// wait below returns at once.
		seq := h.seq.Load()
		if h.shutdown.Load() != 0 {
			return 0, 0, ErrShutdown
		}
		if err := ctx.Err(); err != nil {
			if !start.IsZero() && errors.Is(err, context.DeadlineExceeded) {
				return 0, 0, p.acquireError(time.Since(start), err)
			}
			return 0, 0, fmt.Errorf("shm: acquire: %w", err)
		}
		if i, w, ok := p.tryAcquire(); ok {
			return i, w, nil
		}
		if start.IsZero() {
			if p.opts.acquireTimeout == 0 {
				return 0, 0, p.acquireError(0, nil)
			}
			start = time.Now()
			if p.opts.acquireTimeout > 0 {
				deadline = start.Add(p.opts.acquireTimeout)
			}
			if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
				deadline, ctxDeadline = d, true
			}
			if ctx.Done() != nil {
				// A futex cannot wait on a channel: cancellation bumps the
				// sequence word and wakes every waiter (in every process;
				// the others look again and go back to sleep).
				stop = context.AfterFunc(ctx, p.wakeIfOpen)
			}
		}
		wait := time.Duration(-1)
		if !deadline.IsZero() {
			if wait = time.Until(deadline); wait <= 0 {
				var cause error
				if ctxDeadline {
					cause = context.DeadlineExceeded
				}
				return 0, 0, p.acquireError(time.Since(start), cause)
			}
		}
		h.waiters.Add(1)
		futexWait(&h.seq, seq, wait)
		h.waiters.Add(^uint32(0))
	}
}

// tryAcquire leases the first free segment, if there is one. Scanning from
// the start reuses the same few segments when the consumer keeps up, which
// keeps their pages mapped and warm in the caches.
func (p *SegmentPool) tryAcquire() (uint32, uint64, bool) {
	for i := range p.slots {
		s := &p.slots[i]
		w := s.state.Load()
		st, gen, _ := unpack(w)
		if st != stateFree {
			continue
		}
		nw := pack(stateLeased, gen+1, p.opts.owner)
		if s.state.CompareAndSwap(w, nw) {
			return uint32(i), nw, true
		}
	}
	return 0, 0, false
}

func (p *SegmentPool) acquireError(waited time.Duration, cause error) *AcquireError {
	e := &AcquireError{
		Count:       p.count,
		SegmentSize: p.segSize,
		Reclaimed:   p.hdr.reclaimed.Load(),
		Published:   p.hdr.published.Load(),
		Waited:      waited,
		Err:         cause,
	}
	for i := range p.slots {
		switch st, _, _ := unpack(p.slots[i].state.Load()); st {
		case stateLeased:
			e.Leased++
		case statePublished, stateViewed:
			e.Held++
		}
	}
	return e
}

func (p *SegmentPool) newLease(i uint32, w uint64) *Lease {
	_, gen, _ := unpack(w)
	seg := p.segment(i)
	if debug {
		protect(seg, protReadWrite)
	}
	l := &Lease{pool: p, buf: seg, index: i, gen: gen, word: w}
	l.cleanup = runtime.AddCleanup(l, leaseCollected, cleanupArg{p, i, w})
	return l
}

// PublishCopy acquires a segment, copies data into it and publishes it: the
// producer's side in one call. It fails with a *TooLargeError, without
// waiting, if data does not fit in a segment.
//
// It is Acquire, CopyIn and Publish without a Lease: no code but the copy
// runs while the segment is leased, so there is nothing to give back on an
// error path and no garbage-collection safety net to register (an
// allocation and a runtime cleanup per item, on the producer's critical
// path).
func (p *SegmentPool) PublishCopy(ctx context.Context, data []byte) (Ref, error) {
	if len(data) > p.segSize {
		return Ref{}, &TooLargeError{Len: len(data), SegmentSize: p.segSize}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	i, w, err := p.acquire(ctx)
	if err != nil {
		return Ref{}, err
	}
	seg := p.segment(i)
	if debug {
		protect(seg, protReadWrite)
	}
	copy(seg, data)
	return p.publishLeased(i, w, len(data), Raw, nil)
}

// A Lease is a segment leased to a producer by Acquire. The producer writes
// into Bytes (or copies in with CopyIn), then either publishes the segment
// with Publish or PublishTyped, which returns the Ref to send to the
// consumer, or gives it back with Abandon. Abandon after Publish does
// nothing, so
//
//	lease, err := pool.Acquire(ctx)
//	if err != nil { ... }
//	defer lease.Abandon()
//
// gives the segment back on every path that does not publish it.
//
// A Lease is not safe for concurrent use. A Lease that is dropped without
// Publish or Abandon is given back when it is garbage-collected, with a
// warning logged once per pool; keep the Lease reachable while Bytes is
// in use.
type Lease struct {
	pool    *SegmentPool
	buf     []byte
	index   uint32
	gen     uint32
	word    uint64 // the segment's state word while leased
	done    bool
	cleanup runtime.Cleanup
}

// Bytes returns the whole segment, writable, in place: write the item here
// to publish it without any copy. Its length is the pool's SegmentSize. In
// a ferrydebug build, Bytes panics after Publish or Abandon.
func (l *Lease) Bytes() []byte {
	if debug && l.done {
		panic(fmt.Sprintf("shm: Lease.Bytes of segment %d after Publish or Abandon", l.index))
	}
	return l.buf
}

// Segment returns the index of the leased segment.
func (l *Lease) Segment() int { return int(l.index) }

// CopyIn copies b to the start of the segment (one memmove). It fails with a
// *TooLargeError if b is longer than a segment.
func (l *Lease) CopyIn(b []byte) error {
	if len(b) > len(l.buf) {
		return &TooLargeError{Len: len(b), SegmentSize: len(l.buf)}
	}
	if l.done {
		return errLeaseDone
	}
	copy(l.buf, b)
	return nil
}

var errLeaseDone = errors.New("shm: lease already published or abandoned")

// Publish hands the segment, with its first n bytes valid, over to the
// consumer: it returns the Ref to send to it, which the consumer turns into
// a View. After Publish the producer must no longer touch the segment.
func (l *Lease) Publish(n int) (Ref, error) {
	return l.publish(n, Raw, nil)
}

// PublishTyped is Publish for an array of dtype elements with the given
// shape (row-major), stored from the start of the segment: the Ref carries
// dtype and shape, and the consumer reads them with View.Shape and a typed
// accessor such as View.Float32s. The number of bytes published is the
// product of shape times the size of dtype (an empty shape is one element).
func (l *Lease) PublishTyped(dtype DType, shape ...int) (Ref, error) {
	if dtype == Raw || dtype.Size() == 0 {
		return Ref{}, fmt.Errorf("shm: PublishTyped: invalid dtype %v", dtype)
	}
	if len(shape) > maxDims {
		return Ref{}, fmt.Errorf("shm: PublishTyped: %d dimensions, at most %d", len(shape), maxDims)
	}
	n, ok := elements(shape)
	if !ok {
		return Ref{}, fmt.Errorf("shm: PublishTyped: invalid shape %v", shape)
	}
	size := uint64(dtype.Size())
	if n > uint64(len(l.buf))/size {
		nbytes := math.MaxInt
		if n <= math.MaxInt/size {
			nbytes = int(n * size)
		}
		return Ref{}, &TooLargeError{Len: nbytes, SegmentSize: len(l.buf)}
	}
	return l.publish(int(n*size), dtype, append([]int(nil), shape...))
}

func (l *Lease) publish(n int, dtype DType, shape []int) (Ref, error) {
	if l.done {
		return Ref{}, errLeaseDone
	}
	if n < 0 {
		return Ref{}, fmt.Errorf("shm: Publish: negative length %d", n)
	}
	if n > len(l.buf) {
		return Ref{}, &TooLargeError{Len: n, SegmentSize: len(l.buf)}
	}
	l.done = true
	l.cleanup.Stop()
	p := l.pool
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.publishLeased(l.index, l.word, n, dtype, shape)
}

// publishLeased publishes segment i, leased by this mapping with the state
// word w, with its first n bytes valid; p.mu is held shared.
func (p *SegmentPool) publishLeased(i uint32, w uint64, n int, dtype DType, shape []int) (Ref, error) {
	if p.closed.Load() {
		return Ref{}, ErrClosed
	}
	_, gen, _ := unpack(w)
	s := &p.slots[i]
	s.length.Store(uint64(n))
	if debug {
		protect(p.segment(i), protNone)
	}
	if !s.state.CompareAndSwap(w, pack(statePublished, gen, p.opts.owner)) {
		return Ref{}, fmt.Errorf("shm: Publish: the lease of segment %d was reclaimed (ReclaimOwner)", i)
	}
	p.hdr.published.Add(1)
	return Ref{Pool: p.id, Segment: i, Gen: gen, Len: uint64(n), DType: dtype, Shape: shape}, nil
}

// Abandon gives the segment back unpublished. It does nothing after Publish
// or a previous Abandon.
func (l *Lease) Abandon() {
	if l.done {
		return
	}
	l.done = true
	l.cleanup.Stop()
	p := l.pool
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed.Load() {
		p.freeHeld(l.index, l.word)
	}
}

// elements returns the product of shape, and false if a dimension is
// negative or the product overflows.
func elements(shape []int) (uint64, bool) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxUint64/uint64(d) {
			return 0, false
		}
		n *= uint64(d)
	}
	return n, true
}
