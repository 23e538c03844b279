package pipeline

import (
	"context"
	"errors"
	"iter"
	"runtime/debug"
	"sync"
)

// Source is anything that can be iterated in passes. Each call to All is one
// pass (one epoch); the pass should stop early when ctx is done. An error
// yielded by the sequence fails that item (see MaxFailures); yield ErrSkip to
// drop an item on purpose.
type Source[T any] interface {
	All(ctx context.Context) iter.Seq2[T, error]
}

// SourceFunc adapts a function to Source.
type SourceFunc[T any] func(ctx context.Context) iter.Seq2[T, error]

// All calls f.
func (f SourceFunc[T]) All(ctx context.Context) iter.Seq2[T, error] { return f(ctx) }

// FromSlice is a source that yields the items of a slice in order, every pass.
func FromSlice[T any](items []T, opts ...StageOption) *Stage[T] {
	return From[T](SourceFunc[T](func(context.Context) iter.Seq2[T, error] {
		return func(yield func(T, error) bool) {
			for _, v := range items {
				if !yield(v, nil) {
					return
				}
			}
		}
	}), append([]StageOption{defaultName("slice")}, opts...)...)
}

// FromSeq is a source that iterates seq once per pass.
func FromSeq[T any](seq iter.Seq[T], opts ...StageOption) *Stage[T] {
	return From[T](SourceFunc[T](func(context.Context) iter.Seq2[T, error] {
		return func(yield func(T, error) bool) {
			for v := range seq {
				if !yield(v, nil) {
					return
				}
			}
		}
	}), opts...)
}

// FromSeq2 is a source that iterates seq once per pass; errors it yields fail
// their item.
func FromSeq2[T any](seq iter.Seq2[T, error], opts ...StageOption) *Stage[T] {
	return From[T](SourceFunc[T](func(context.Context) iter.Seq2[T, error] { return seq }), opts...)
}

// FromChan is a source that receives from ch until it is closed. A channel
// can be drained only once: after it is closed, later passes are empty.
// Whenever ch has nothing ready, what the source holds back to fill a
// chunk goes on first, so that no item waits for the next one.
func FromChan[T any](ch <-chan T, opts ...StageOption) *Stage[T] {
	return From[T](SourceFunc[T](func(ctx context.Context) iter.Seq2[T, error] {
		flush, _ := ctx.Value(flushKey{}).(func())
		return func(yield func(T, error) bool) {
			for {
				select {
				case v, ok := <-ch:
					if !ok || !yield(v, nil) {
						return
					}
					continue
				default:
				}
				if flush != nil {
					flush()
				}
				select {
				case v, ok := <-ch:
					if !ok || !yield(v, nil) {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}
	}), append([]StageOption{defaultName("chan")}, opts...)...)
}

// From is a stage that produces the items of src, one pass per epoch. With
// Continuous, the next pass starts as soon as one ends; otherwise a pass
// starts when the consumer asks for the next epoch.
func From[T any](src Source[T], opts ...StageOption) *Stage[T] {
	if src == nil {
		return broken[T](errors.New("pipeline: From with a nil source"))
	}
	o := stageOpts(opts)
	return &Stage[T]{build: func(r *run) *edge[T] {
		name := r.stageName(o, "source")
		st, out := newStage[T](r, name, o)
		r.liveSources.Add(1)
		r.goStage(name, func() {
			defer r.sourceExited()
			runSource(r, src, st, out)
		})
		return out
	}}
}

func runSource[T any](r *run, src Source[T], st *stageStats, out *edge[T]) {
	s := newSender(out)
	for n := uint64(0); ; n++ {
		if !r.waitPass(n) {
			return
		}
		r.passStarted(n)
		ep := r.epoch(n)
		if !ep.aborted.Load() {
			if err := pass(r, src, st, ep, s); err != nil {
				r.itemFailed(st, ep, st.invocations.Load(), err)
			}
		}
		if r.ctx.Err() != nil || !s.add(r.ctx, envelope[T]{ep: ep, end: true}, 0) || r.stopped.Load() {
			return
		}
	}
}

// flushKey keys, in the context of a pass, a function that sends what the
// source's sender holds: a source about to wait for input (FromChan) calls
// it, from the goroutine of the pass, since nothing else would until the
// next item.
type flushKey struct{}

// pass sends one pass of src. A panic in the source ends the pass and is
// returned as a *PanicError.
func pass[T any](r *run, src Source[T], st *stageStats, ep *epoch, s *sender[T]) (err error) {
	if !r.opts.crashOnPanic {
		defer func() {
			if p := recover(); p != nil {
				err = &PanicError{Value: p, Stack: debug.Stack()}
			}
		}()
	}
	var index int64
	last := now()
	ctx := context.WithValue(ep.ctx, flushKey{}, func() { s.flush(r.ctx) })
	for v, err := range src.All(ctx) {
		if ep.aborted.Load() || r.stopped.Load() || r.ctx.Err() != nil {
			return nil
		}
		t := now()
		st.durations.Record(t - last)
		last = t
		i := index
		index++
		st.invocations.Add(1)
		r.sourced.Add(1)
		switch {
		case errors.Is(err, ErrSkip):
			st.skipped.Add(1)
		case err != nil:
			r.itemFailed(st, ep, i, err)
		default:
			if !s.add(r.ctx, envelope[T]{v: v, ep: ep, index: i}, t) {
				return nil
			}
			if len(s.buf) == 0 { // sent, maybe after waiting
				last = now()
			}
		}
	}
	return nil
}

// Merge combines several streams into one. Items leave in arrival order; an
// epoch ends once it has ended in every input, and no input runs ahead into
// the next epoch before that.
func Merge[T any](inputs ...*Stage[T]) *Stage[T] {
	return mergeStage("merge", nil, inputs)
}

func mergeStage[T any](defName string, opts []StageOption, inputs []*Stage[T]) *Stage[T] {
	if len(inputs) == 0 {
		return broken[T](errors.New("pipeline: " + defName + " needs at least one input"))
	}
	for _, in := range inputs {
		if in == nil {
			return broken[T](errors.New("pipeline: " + defName + " with a nil input"))
		}
	}
	o := stageOpts(opts)
	return &Stage[T]{build: func(r *run) *edge[T] {
		name := r.stageName(o, defName)
		ins := make([]*edge[T], len(inputs))
		for i, up := range inputs {
			ins[i] = input(r, up, name)
		}
		_, out := newStage[T](r, name, o)
		b := &barrier{n: len(ins), release: make(chan struct{})}
		for _, in := range ins {
			r.goStage(name, func() {
				serial(r, in, out, func(env envelope[T], s *sender[T]) bool {
					if !env.end {
						return s.add(r.ctx, env, 0)
					}
					// Everything before the marker is out; the last input
					// to reach the end of the epoch sends the marker and
					// lets the others go on.
					if !s.flush(r.ctx) {
						return false
					}
					last, wait := b.arrive()
					if !last {
						select {
						case <-wait:
							return true
						case <-r.ctx.Done():
							return false
						}
					}
					ok := s.add(r.ctx, env, 0)
					b.open()
					return ok
				}, nil)
			})
		}
		return out
	}}
}

// barrier holds the inputs of a merge at an epoch boundary until all of
// them reach it.
type barrier struct {
	mu      sync.Mutex
	n, seen int
	release chan struct{}
}

// arrive reports whether the caller is the last to arrive; if not it
// returns the channel that opens when the last one has passed.
func (b *barrier) arrive() (last bool, wait <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen++
	return b.seen == b.n, b.release
}

// open lets the waiting inputs go and resets the barrier for the next epoch.
func (b *barrier) open() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = 0
	close(b.release)
	b.release = make(chan struct{})
}
