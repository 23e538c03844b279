package pipeline

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Stage is one step of a pipeline description: a source, or a stage fed by
// the stage before it. It describes work; nothing runs until Build. Each
// stage feeds exactly one downstream stage (use Route to split a stream).
type Stage[T any] struct {
	build func(r *run) *edge[T]
}

// broken returns a stage that makes Build fail with err.
func broken[T any](err error) *Stage[T] {
	return &Stage[T]{build: func(r *run) *edge[T] {
		r.buildError(err)
		return newEdge[T](r, "invalid", 1)
	}}
}

// funcName names a stage after its function: "decode" for main.decode,
// "Pool.Call" for the method value pool.Call of a *proc.Pool[In, Out]
// (runtime name "proc.(*Pool[...]).Call-fm"). A function literal has no
// name of its own: it gets fallback.
func funcName(fn any, fallback string) string {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return fallback
	}
	name := f.Name()
	name = name[strings.LastIndex(name, "/")+1:] // drop the import path
	name = strings.TrimSuffix(name, "-fm")       // a method value's wrapper
	name = strings.ReplaceAll(name, "[...]", "") // type parameters
	name = strings.NewReplacer("(*", "", "(", "", ")", "").Replace(name)
	parts := strings.Split(name, ".")[1:] // drop the package name
	for _, p := range parts {
		if isClosure(p) {
			return fallback
		}
	}
	if len(parts) == 0 || parts[0] == "" {
		return fallback
	}
	return strings.Join(parts, ".")
}

// isClosure reports whether p is the runtime's name for a function
// literal or a wrapper of one: func1, gowrap2, deferwrap1.
func isClosure(p string) bool {
	for _, prefix := range []string{"func", "gowrap", "deferwrap"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return false
}

// input builds up as the one input of the stage named consumer.
func input[T any](r *run, up *Stage[T], consumer string) *edge[T] {
	if !r.claim(up, consumer) {
		return newEdge[T](r, "invalid", 1)
	}
	e := up.build(r)
	e.stats.consumer = consumer
	return e
}

// stageBudget is the budget a stage judges its failures by.
func (r *run) stageBudget(o stageOptions) Budget {
	switch {
	case o.budget != nil:
		return *o.budget
	case r.opts.budget != nil:
		return *r.opts.budget
	}
	return Count(0)
}

// newStage creates the stats and output edge of a stage.
func newStage[T any](r *run, name string, o stageOptions) (*stageStats, *edge[T]) {
	if o.buffer < 0 {
		r.buildError(fmt.Errorf("pipeline: stage %q: buffer %d, want ≥ 0", name, o.buffer))
	}
	return newStats(r, name, o), newEdge[T](r, name, o.buffer)
}

// newStats registers the stats of a stage, after checking its concurrency.
func newStats(r *run, name string, o stageOptions) *stageStats {
	if o.concurrency < 1 {
		r.buildError(fmt.Errorf("pipeline: stage %q: concurrency %d, want ≥ 1", name, o.concurrency))
	}
	if o.budget != nil && o.budget.err != nil {
		r.buildError(fmt.Errorf("pipeline: stage %q: StageMaxFailures: %w", name, o.budget.err))
	}
	st := &stageStats{name: name, concurrency: max(o.concurrency, 1), budget: r.stageBudget(o)}
	r.addStage(st)
	return st
}

// worker calls a stage function on one item at a time and collects what it
// emits. Each goroutine of a stage has its own worker.
type worker[In, Out any] struct {
	r       *run
	st      *stageStats
	process func(ctx context.Context, in In, emit func(Out)) error
	emitFn  func(Out)
	cur     envelope[In]
	out     []envelope[Out]
	clock   time.Duration // when the current call started: the end of the last one
}

func newWorker[In, Out any](r *run, st *stageStats, process func(context.Context, In, func(Out)) error) *worker[In, Out] {
	w := &worker[In, Out]{r: r, st: st, process: process}
	w.emitFn = func(v Out) {
		w.out = append(w.out, envelope[Out]{v: v, ep: w.cur.ep, index: w.cur.index})
	}
	return w
}

// invoke processes one item; its outputs are left in w.out. A failed item
// emits nothing. The call is timed from w.clock, which callers reset after
// anything that may block, so that one clock reading per item suffices.
func (w *worker[In, Out]) invoke(env envelope[In]) {
	w.cur = env
	w.out = w.out[:0]
	ctx := env.ep.ctx
	var done func(error)
	if h := w.r.opts.hooks.Task; h != nil {
		var hctx context.Context
		if hctx, done = h(ctx, w.st.name); hctx != nil { // no context: the call's own
			ctx = hctx
		}
	}
	err := w.call(ctx, env.v)
	end := now()
	w.st.durations.Record(end - w.clock)
	w.clock = end
	w.st.invocations.Add(1)
	if done != nil {
		done(err)
	}
	if err == nil {
		return
	}
	w.out = w.out[:0]
	switch {
	case errors.Is(err, ErrSkip):
		w.st.skipped.Add(1)
	case env.ep.aborted.Load() || w.r.ctx.Err() != nil:
		// The consumer abandoned this epoch or the pipeline is stopping:
		// the error is a consequence, not the item's fault.
	default:
		w.r.itemFailed(w.st, env.ep, env.index, err)
	}
}

func (w *worker[In, Out]) call(ctx context.Context, v In) (err error) {
	if !w.r.opts.crashOnPanic {
		defer func() {
			if p := recover(); p != nil {
				err = &PanicError{Value: p, Stack: debug.Stack()}
			}
		}()
	}
	return w.process(ctx, v, w.emitFn)
}

// Pipe adds a stage that maps each item through fn. Return ErrSkip to drop an
// item on purpose; any other error fails the item (see MaxFailures).
func Pipe[In, Out any](up *Stage[In], fn func(ctx context.Context, in In) (Out, error), opts ...StageOption) *Stage[Out] {
	if fn == nil {
		return broken[Out](errors.New("pipeline: Pipe with a nil function"))
	}
	return transform(up, funcName(fn, "pipe"), opts, func(ctx context.Context, in In, emit func(Out)) error {
		out, err := fn(ctx, in)
		if err != nil {
			return err
		}
		emit(out)
		return nil
	})
}

// FlatPipe adds a stage that turns each item into zero or more items. If the
// sequence yields an error the item fails and none of its outputs are kept.
func FlatPipe[In, Out any](up *Stage[In], fn func(ctx context.Context, in In) iter.Seq2[Out, error], opts ...StageOption) *Stage[Out] {
	if fn == nil {
		return broken[Out](errors.New("pipeline: FlatPipe with a nil function"))
	}
	return transform(up, funcName(fn, "flatpipe"), opts, func(ctx context.Context, in In, emit func(Out)) error {
		for out, err := range fn(ctx, in) {
			if err != nil {
				return err
			}
			emit(out)
		}
		return nil
	})
}

// Filter adds a stage that keeps the items for which keep returns true. A
// dropped item counts as skipped, not failed.
func Filter[T any](up *Stage[T], keep func(ctx context.Context, v T) (bool, error), opts ...StageOption) *Stage[T] {
	if keep == nil {
		return broken[T](errors.New("pipeline: Filter with a nil function"))
	}
	return transform(up, funcName(keep, "filter"), opts, func(ctx context.Context, v T, emit func(T)) error {
		ok, err := keep(ctx, v)
		switch {
		case err != nil:
			return err
		case !ok:
			return ErrSkip
		}
		emit(v)
		return nil
	})
}

// Disaggregate flattens batches back into items.
func Disaggregate[T any](up *Stage[[]T], opts ...StageOption) *Stage[T] {
	return transform(up, "disaggregate", opts, func(_ context.Context, batch []T, emit func(T)) error {
		for _, v := range batch {
			emit(v)
		}
		return nil
	})
}

// transform is the stage behind Pipe, FlatPipe, Filter and Disaggregate.
func transform[In, Out any](up *Stage[In], defName string, opts []StageOption, process func(context.Context, In, func(Out)) error) *Stage[Out] {
	if up == nil {
		return broken[Out](fmt.Errorf("pipeline: stage %q has a nil upstream stage", defName))
	}
	o := stageOpts(opts)
	s := &Stage[Out]{}
	s.build = func(r *run) *edge[Out] {
		name := r.stageName(o, defName)
		in := input(r, up, name)
		st, out := newStage[Out](r, name, o)
		if o.concurrency <= 1 {
			w := newWorker(r, st, process)
			r.goStage(name, func() { serial(r, in, out, w.handle, &w.clock) })
		} else {
			runConcurrent(r, name, st, o, in, out, process)
		}
		return out
	}
	return s
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// handle is the serial step of a one-goroutine transform.
func (w *worker[In, Out]) handle(env envelope[In], s *sender[Out]) bool {
	if env.end {
		return s.add(w.r.ctx, envelope[Out]{ep: env.ep, end: true}, 0)
	}
	if env.ep.aborted.Load() {
		return true
	}
	w.invoke(env)
	return w.send(s)
}

// send queues the outputs of the last call.
func (w *worker[In, Out]) send(s *sender[Out]) bool {
	for _, o := range w.out {
		if !s.add(w.r.ctx, o, w.clock) {
			return false
		}
		if len(s.buf) == 0 { // sent, maybe after waiting
			w.clock = now()
		}
	}
	return true
}

// serial runs a stage in one goroutine: every envelope of in goes through
// handle, which sends what it produces. It flushes before it would block.
// If clock is not nil it is set to the time each chunk arrives.
func serial[In, Out any](r *run, in *edge[In], out *edge[Out], handle func(envelope[In], *sender[Out]) bool, clock *time.Duration) {
	s := newSender(out)
	for {
		chunk, ok := in.recv(r.ctx)
		if !ok {
			return
		}
		if clock != nil {
			*clock = now()
		}
		for _, env := range chunk {
			if !handle(env, s) {
				return
			}
		}
		if len(in.ch) == 0 && !s.flush(r.ctx) {
			return
		}
	}
}

// task is a run of consecutive items given to one worker of a concurrent
// stage, or an epoch marker travelling in order among tasks.
type task[In, Out any] struct {
	items  []envelope[In]
	out    []envelope[Out]
	done   chan struct{} // ordered mode: closed when out is complete
	marker *epoch        // ordered mode: this task is the end of marker
}

// taskTarget is how long one task should take: long enough to amortize a
// hand-off, short enough to spread work over the workers.
const taskTarget = 20 * time.Microsecond

// runConcurrent runs a stage with several workers: a dispatcher cuts the
// input into tasks sized from the measured call time, workers run them, and
// in ordered mode a collector emits finished tasks in dispatch order. In
// unordered mode workers send their own outputs and the dispatcher holds
// each epoch marker until every task before it has been sent.
func runConcurrent[In, Out any](r *run, name string, st *stageStats, o stageOptions, in *edge[In], out *edge[Out], process func(context.Context, In, func(Out)) error) {
	c := o.concurrency
	ctx := r.ctx
	work := make(chan *task[In, Out], c)
	var order chan *task[In, Out]
	if o.ordered {
		order = make(chan *task[In, Out], c)
	}
	finished := make(chan struct{}, c) // unordered: one per task sent

	for range c {
		w := newWorker(r, st, process)
		r.goStage(name, func() {
			s := newSender(out)
			for {
				var t *task[In, Out]
				select {
				case t = <-work:
				case <-ctx.Done():
					return
				}
				w.clock = now()
				for _, env := range t.items {
					if env.ep.aborted.Load() {
						continue
					}
					w.invoke(env)
					t.out = append(t.out, w.out...)
				}
				if o.ordered {
					close(t.done)
					continue
				}
				for _, e := range t.out {
					if !s.add(ctx, e, 0) {
						return
					}
				}
				if !s.flush(ctx) {
					return
				}
				select {
				case finished <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		})
	}

	if o.ordered {
		r.goStage(name, func() {
			s := newSender(out)
			for {
				var t *task[In, Out]
				select {
				case t = <-order:
				case <-ctx.Done():
					return
				}
				select {
				case <-t.done:
				case <-ctx.Done():
					return
				}
				for _, e := range t.out {
					if !s.add(ctx, e, 0) {
						return
					}
				}
				if t.marker != nil && !s.add(ctx, envelope[Out]{ep: t.marker, end: true}, 0) {
					return
				}
				if len(order) == 0 && !s.flush(ctx) {
					return
				}
			}
		})
	}

	r.goStage(name, func() {
		s := newSender(out)
		inflight := 0
		send := func(t *task[In, Out]) bool {
			if o.ordered {
				select {
				case order <- t:
				case <-ctx.Done():
					return false
				}
				if t.marker != nil {
					return true
				}
			}
			// At most c unordered tasks are out at once, so the workers'
			// finished signals always fit in their channel.
			for ; !o.ordered && inflight >= c; inflight-- {
				select {
				case <-finished:
				case <-ctx.Done():
					return false
				}
			}
			select {
			case work <- t:
				inflight++
				return true
			case <-ctx.Done():
				return false
			}
		}
		dispatch := func(items []envelope[In]) bool {
			if len(items) == 0 {
				return true
			}
			t := &task[In, Out]{items: items}
			if o.ordered {
				t.done = make(chan struct{})
			}
			return send(t)
		}
		// endEpoch passes a marker on once every task before it is out.
		endEpoch := func(ep *epoch) bool {
			if o.ordered {
				done := make(chan struct{})
				close(done)
				return send(&task[In, Out]{marker: ep, done: done})
			}
			for ; inflight > 0; inflight-- {
				select {
				case <-finished:
				case <-ctx.Done():
					return false
				}
			}
			return s.add(ctx, envelope[Out]{ep: ep, end: true}, 0)
		}
		for {
			chunk, ok := in.recv(ctx)
			if !ok {
				return
			}
			size := taskSize(st)
			var cur []envelope[In]
			for _, env := range chunk {
				switch {
				case env.end:
					if !dispatch(cur) || !endEpoch(env.ep) {
						return
					}
					cur = nil
				case env.ep.aborted.Load():
				default:
					cur = append(cur, env)
					if len(cur) >= size {
						if !dispatch(cur) {
							return
						}
						cur = nil
					}
				}
			}
			if !dispatch(cur) {
				return
			}
		}
	})
}

// taskSize is how many items make one task, from the mean call time so far.
func taskSize(st *stageStats) int {
	mean := st.durations.Mean()
	if mean <= 0 {
		return 1
	}
	return int(min(max(int64(taskTarget/mean), 1), maxChunk))
}
