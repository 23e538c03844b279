package graph

import (
	"context"
	"sync/atomic"
)

// link is a bounded queue of frames from one source pad to one sink pad:
// a ring with one producer and one consumer, which hand frames over with
// two atomic counters and wake each other only when one of them waits (the
// consumer for an empty ring, the producer for a full one). A channel
// would take a lock per frame, contended by both sides.
type link[T any] struct {
	_    [64]byte
	tail atomic.Uint64 // frames written, by the producer
	_    [56]byte
	head atomic.Uint64 // frames read, by the consumer
	_    [56]byte
	buf  []Frame[T]
	mask uint64
	size uint64 // the capacity, ≤ len(buf)

	consumer *waker // of the element that reads the link (shared by its links)
	producer *waker // of the element that writes it
	buffers  bool   // T is *shm.Buffer: each frame holds a reference
}

// waker parks one element's goroutine until a link it waits on changes.
// An element that finds nothing to do sets waiting, looks again, and only
// then parks; the other side, having changed a link, wakes it if waiting
// is set. Both are sequentially consistent, so one of them sees the other.
type waker struct {
	waiting atomic.Bool
	ch      chan struct{}
}

func newWaker() *waker { return &waker{ch: make(chan struct{}, 1)} }

func (w *waker) wake() {
	if w.waiting.Load() {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// park waits for a wake-up, unless ready (called with waiting set) says
// there is something to do; false: ctx ended.
func (w *waker) park(ctx context.Context, ready func() bool) bool {
	w.waiting.Store(true)
	defer w.waiting.Store(false)
	if ready() {
		return true
	}
	select {
	case <-w.ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func newLink[T any](size int) *link[T] {
	n := 1
	for n < size {
		n <<= 1
	}
	return &link[T]{buf: make([]Frame[T], n), mask: uint64(n - 1), size: uint64(size), buffers: isBuffer[T]()}
}

// discard releases what the frames left on the link hold, once nobody
// reads or writes it any more (the run has ended).
func (l *link[T]) discard() {
	var f Frame[T]
	for l.tryPop(&f) {
		releaseFrames(f)
	}
}

// tryPush adds f unless the link is full; on the producer's goroutine.
func (l *link[T]) tryPush(f *Frame[T]) bool {
	t := l.tail.Load()
	if t-l.head.Load() >= l.size {
		return false
	}
	l.buf[t&l.mask] = *f
	l.tail.Store(t + 1)
	l.consumer.wake()
	return true
}

// push adds f, waiting while the link is full; false: ctx ended.
func (l *link[T]) push(ctx context.Context, f *Frame[T]) bool {
	for !l.tryPush(f) {
		if !l.producer.park(ctx, func() bool { return l.tail.Load()-l.head.Load() < l.size }) {
			return false
		}
	}
	return true
}

// tryPop takes the next frame, if there is one; on the consumer's
// goroutine.
func (l *link[T]) tryPop(f *Frame[T]) bool {
	h := l.head.Load()
	if h == l.tail.Load() {
		return false
	}
	slot := &l.buf[h&l.mask]
	*f = *slot
	*slot = Frame[T]{} // the link must not keep what the frame holds alive
	l.head.Store(h + 1)
	l.producer.wake()
	return true
}

func (l *link[T]) empty() bool { return l.head.Load() == l.tail.Load() }

// occupancy reports the frames waiting and the capacity, for stats.
func (l *link[T]) occupancy() (int, int) {
	return int(l.tail.Load() - l.head.Load()), int(l.size)
}

// occupant is a link of any type, for stats and the end of a run.
type occupant interface {
	occupancy() (int, int)
	discard()
}
