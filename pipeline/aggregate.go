package pipeline

import (
	"errors"
	"fmt"
	"time"
)

// Aggregator accumulates items into aggregates, such as batches. It is used
// by one goroutine at a time.
type Aggregator[T, A any] interface {
	// Add accumulates v and reports whether an aggregate is ready.
	Add(v T) (agg A, ready bool)
	// Flush returns what has accumulated, if anything, and starts afresh.
	// It is called at the end of each epoch and, with FlushAfter, when
	// the first item of an aggregate has waited long enough.
	Flush() (agg A, ok bool)
}

// Aggregate groups items into batches of n. At the end of an epoch the last,
// smaller batch is emitted, or dropped with DropLast. A batch never mixes
// items of two epochs. With FlushAfter(d), a batch whose first item has
// waited d is emitted as it is, however small (DropLast drops only what is
// left at the end of an epoch).
func Aggregate[T any](up *Stage[T], n int, opts ...StageOption) *Stage[[]T] {
	if n < 1 {
		return broken[[]T](fmt.Errorf("pipeline: Aggregate size %d, want ≥ 1", n))
	}
	o := stageOpts(opts)
	return AggregateWith(up, &batcher[T]{n: n, dropLast: o.dropLast}, append([]StageOption{defaultName("aggregate")}, opts...)...)
}

type batcher[T any] struct {
	n        int
	dropLast bool
	batch    []T
}

func (b *batcher[T]) Add(v T) ([]T, bool) {
	if b.batch == nil {
		b.batch = make([]T, 0, b.n)
	}
	b.batch = append(b.batch, v)
	if len(b.batch) < b.n {
		return nil, false
	}
	out := b.batch
	b.batch = nil
	return out, true
}

func (b *batcher[T]) Flush() ([]T, bool) {
	out := b.batch
	b.batch = nil
	return out, len(out) > 0 && !b.dropLast
}

// flushPartial is Flush for FlushAfter: the batch is not the epoch's last,
// so DropLast does not apply.
func (b *batcher[T]) flushPartial() ([]T, bool) {
	out := b.batch
	b.batch = nil
	return out, len(out) > 0
}

// AggregateWith runs a custom aggregator. Flush is called at the end of each
// epoch, so an aggregate never spans two epochs, and with FlushAfter when
// an aggregate's first item has waited long enough. A panic in the
// aggregator fails the item being added.
func AggregateWith[T, A any](up *Stage[T], agg Aggregator[T, A], opts ...StageOption) *Stage[A] {
	if up == nil || agg == nil {
		return broken[A](errors.New("pipeline: AggregateWith with a nil stage or aggregator"))
	}
	o := stageOpts(opts)
	partial := agg.Flush
	if b, ok := agg.(interface{ flushPartial() (A, bool) }); ok {
		partial = b.flushPartial
	}
	return &Stage[A]{build: func(r *run) *edge[A] {
		name := r.stageName(o, "aggregate")
		in := input(r, up, name)
		st, out := newStage[A](r, name, o)
		if o.flushAfter < 0 {
			r.buildError(fmt.Errorf("pipeline: stage %q: FlushAfter(%v), want ≥ 0", name, o.flushAfter))
		}
		first := int64(-1)    // source index of the first item of the aggregate being built
		var firstAt time.Time // when that item arrived, for FlushAfter
		var cur *epoch        // the epoch of that item
		var clock time.Duration
		handle := func(env envelope[T], s *sender[A]) bool {
			if env.end {
				v, ok := agg.Flush()
				if ok && !env.ep.aborted.Load() && !s.add(r.ctx, envelope[A]{v: v, ep: env.ep, index: first}, 0) {
					return false
				}
				first = -1
				return s.add(r.ctx, envelope[A]{ep: env.ep, end: true}, 0)
			}
			if env.ep.aborted.Load() {
				return true
			}
			if first < 0 {
				first, cur = env.index, env.ep
				if o.flushAfter > 0 {
					firstAt = time.Now()
				}
			}
			var v A
			var ready bool
			err := safely(r, func() error { v, ready = agg.Add(env.v); return nil })
			end := now()
			st.durations.Record(end - clock)
			clock = end
			st.invocations.Add(1)
			if err != nil {
				r.itemFailed(st, env.ep, env.index, err)
				return true
			}
			if !ready {
				return true
			}
			i := first
			first = -1
			ok := s.add(r.ctx, envelope[A]{v: v, ep: env.ep, index: i}, clock)
			if len(s.buf) == 0 {
				clock = now()
			}
			return ok
		}
		// expired emits the aggregate whose first item waited FlushAfter.
		expired := func(s *sender[A]) bool {
			v, ok := partial()
			i := first
			first = -1
			if ok && !cur.aborted.Load() && !s.add(r.ctx, envelope[A]{v: v, ep: cur, index: i}, 0) {
				return false
			}
			return s.flush(r.ctx)
		}
		r.goStage(name, func() {
			if o.flushAfter <= 0 {
				serial(r, in, out, handle, &clock)
				return
			}
			timer := time.NewTimer(o.flushAfter)
			defer timer.Stop()
			s := newSender(out)
			for {
				var chunk []envelope[T]
				ok := true
				if first < 0 {
					chunk, ok = in.recv(r.ctx)
				} else {
					var late bool
					timer.Reset(time.Until(firstAt.Add(o.flushAfter)))
					if chunk, ok, late = in.recvUntil(r.ctx, timer); late {
						if !expired(s) {
							return
						}
						continue
					}
				}
				if !ok {
					return
				}
				clock = now()
				for _, env := range chunk {
					if !handle(env, s) {
						return
					}
				}
				if len(in.ch) == 0 && !s.flush(r.ctx) {
					return
				}
			}
		})
		return out
	}}
}
