package pipeline

import (
	"context"
	"sync/atomic"
	"time"
)

// maxChunk is the most items one channel operation carries between stages.
// Moving items in chunks makes the cost of a goroutine hand-off per chunk
// rather than per item; see docs/decisions/0002-pipeline-engine.md.
const maxChunk = 64

// envelope is one item travelling through the pipeline, or an epoch marker.
type envelope[T any] struct {
	v     T
	ep    *epoch
	index int64 // position of the originating item in its source pass
	end   bool  // epoch marker: every item of ep has passed
}

// edge is the bounded queue between two stages. It carries chunks of
// envelopes; its capacity in items is about chunk × cap(ch).
type edge[T any] struct {
	ch    chan []envelope[T]
	chunk int
	stats *queueStats
}

func newEdge[T any](r *run, name string, buffer int) *edge[T] {
	chunk := min(maxChunk, max(1, buffer))
	slots := max(1, buffer/chunk)
	q := &queueStats{name: name, capacity: chunk * slots, slots: slots}
	e := &edge[T]{ch: make(chan []envelope[T], slots), chunk: chunk, stats: q}
	q.queued = func() int { return len(e.ch) }
	r.addQueue(q)
	return e
}

// recv takes the next chunk, or returns false when ctx is done or the edge
// is closed.
func (e *edge[T]) recv(ctx context.Context) ([]envelope[T], bool) {
	select {
	case c, ok := <-e.ch:
		if ok {
			e.stats.got(len(c), 0)
		}
		return c, ok
	default:
	}
	start := time.Now()
	select {
	case c, ok := <-e.ch:
		if ok {
			e.stats.got(len(c), time.Since(start))
		}
		return c, ok
	case <-ctx.Done():
		return nil, false
	}
}

// recvUntil is recv with a time limit, timer, set by the caller: expired
// means that it fired first. The timer is stopped on return (since Go 1.23
// a stopped timer delivers nothing stale, so it can simply be Reset).
func (e *edge[T]) recvUntil(ctx context.Context, timer *time.Timer) (c []envelope[T], ok, expired bool) {
	select {
	case c, ok := <-e.ch:
		timer.Stop()
		if ok {
			e.stats.got(len(c), 0)
		}
		return c, ok, false
	default:
	}
	start := time.Now()
	select {
	case c, ok := <-e.ch:
		timer.Stop()
		if ok {
			e.stats.got(len(c), time.Since(start))
		}
		return c, ok, false
	case <-timer.C:
		return nil, true, true
	case <-ctx.Done():
		timer.Stop()
		return nil, false, false
	}
}

// flushDelay is how long a sender may hold items back to fill a chunk while
// its receiver has nothing queued.
const flushDelay = 20 * time.Microsecond

// clockZero anchors monotonic readings taken with now.
var clockZero = time.Now()

func now() time.Duration { return time.Since(clockZero) }

// sender accumulates envelopes for an edge and sends them in chunks. A chunk
// goes out when it is full, at an epoch marker, or, for producers that run
// user code between items and so pass the time of each add, when the
// receiver has nothing queued and either the chunk has waited flushDelay or
// items arrive more slowly than that (batching would then only add
// latency). Callers flush explicitly before they block on input.
type sender[T any] struct {
	e           *edge[T]
	buf         []envelope[T]
	first, last time.Duration
}

func newSender[T any](e *edge[T]) *sender[T] { return &sender[T]{e: e} }

// add queues env; t is the monotonic time (see now) or 0 when the caller
// flushes before every wait of its own. False means ctx ended.
func (s *sender[T]) add(ctx context.Context, env envelope[T], t time.Duration) bool {
	if s.buf == nil {
		s.buf = make([]envelope[T], 0, s.e.chunk)
	}
	s.buf = append(s.buf, env)
	if env.end || len(s.buf) >= s.e.chunk {
		return s.flush(ctx)
	}
	if t != 0 && len(s.e.ch) == 0 {
		slow := t-s.last >= flushDelay
		s.last = t
		if len(s.buf) == 1 {
			s.first = t
		}
		if slow || t-s.first >= flushDelay {
			return s.flush(ctx)
		}
	}
	return true
}

// flush sends what has accumulated; false means ctx ended first. The items
// are counted before the hand-off, so that whoever receives them — up to
// the consumer reading the end of an epoch — sees them counted in Stats.
func (s *sender[T]) flush(ctx context.Context) bool {
	if len(s.buf) == 0 {
		return true
	}
	c := s.buf
	s.buf = nil
	s.e.stats.sending(len(c))
	select {
	case s.e.ch <- c:
		s.e.stats.sent(len(s.e.ch), 0)
		return true
	default:
	}
	start := time.Now()
	select {
	case s.e.ch <- c:
		s.e.stats.sent(len(s.e.ch), time.Since(start))
		return true
	case <-ctx.Done():
		s.e.stats.unsent(len(c))
		return false
	}
}

// queueStats counts what passes through one edge.
type queueStats struct {
	name       string
	capacity   int // items
	slots      int // chunks
	items      atomic.Int64
	chunks     atomic.Int64
	putBlocked atomic.Int64 // ns
	getBlocked atomic.Int64 // ns
	fillSum    atomic.Int64 // sum of queued chunks seen after each put

	consumer string     // the stage that takes from the queue, set at build
	queued   func() int // chunks in the queue now
}

// sending counts a chunk of n items about to be put in the queue.
func (q *queueStats) sending(n int) {
	q.items.Add(int64(n))
	q.chunks.Add(1)
}

// sent records the queue's fill after a put, and how long it waited.
func (q *queueStats) sent(queued int, blocked time.Duration) {
	q.fillSum.Add(int64(queued))
	if blocked > 0 {
		q.putBlocked.Add(int64(blocked))
	}
}

// unsent takes back a chunk that was counted but never put.
func (q *queueStats) unsent(n int) {
	q.items.Add(-int64(n))
	q.chunks.Add(-1)
}

func (q *queueStats) got(_ int, blocked time.Duration) {
	if blocked > 0 {
		q.getBlocked.Add(int64(blocked))
	}
}
