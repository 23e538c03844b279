package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// run is the live state of a built pipeline, shared by all its goroutines.
// Goroutines hold the run, never the Pipeline handle, so a forgotten
// Pipeline can be collected and its run cancelled.
type run struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	log    *slog.Logger
	opts   *buildOptions
	start  time.Time

	mu       sync.Mutex
	epochs   map[uint64]*epoch
	demanded uint64        // sources may run passes 0..demanded-1
	running  bool          // continuous mode: sources run freely
	wake     chan struct{} // closed and replaced when demanded or running change
	stages   []*stageStats
	queues   []*queueStats
	claimed  map[any]bool
	names    map[string]bool // stage names taken
	buildErr error

	failures atomic.Int64 // item failures in every stage
	sourced  atomic.Int64 // items produced by every source

	// Stop: sources end their pass and exit; once all have, sourcesDone
	// closes and passes is the number of passes that will ever exist.
	stopOnce    sync.Once
	stopCh      chan struct{}
	stopped     atomic.Bool
	liveSources atomic.Int64
	sourcesDone chan struct{}
	passes      atomic.Uint64
}

// epoch is one pass over the sources. Its context is cancelled when the
// consumer abandons the pass or the pipeline stops, which also cancels the
// stage calls still working on its items.
type epoch struct {
	n       uint64
	ctx     context.Context
	cancel  context.CancelFunc
	aborted atomic.Bool
}

func (e *epoch) abort() {
	e.aborted.Store(true)
	e.cancel()
}

func newRun(o *buildOptions) *run {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &run{
		ctx:     ctx,
		cancel:  cancel,
		log:     o.logger,
		opts:    o,
		start:   time.Now(),
		epochs:  map[uint64]*epoch{},
		wake:    make(chan struct{}),
		claimed: map[any]bool{},
		names:   map[string]bool{},
		stopCh:  make(chan struct{}),

		sourcesDone: make(chan struct{}),
	}
}

// stop asks every source to end its current pass and start no other.
func (r *run) stop() {
	r.stopOnce.Do(func() {
		r.stopped.Store(true)
		close(r.stopCh)
	})
}

// passStarted records that some source began pass n.
func (r *run) passStarted(n uint64) {
	for {
		p := r.passes.Load()
		if p > n || r.passes.CompareAndSwap(p, n+1) {
			return
		}
	}
}

// sourceExited is called by each source goroutine as it ends.
func (r *run) sourceExited() {
	if r.liveSources.Add(-1) == 0 {
		close(r.sourcesDone)
	}
}

// epoch returns the state of pass n, creating it on first use.
func (r *run) epoch(n uint64) *epoch {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.epochs[n]
	if e == nil {
		ctx, cancel := context.WithCancel(r.ctx)
		e = &epoch{n: n, ctx: ctx, cancel: cancel}
		r.epochs[n] = e
	}
	return e
}

// finishEpoch forgets pass n once its end marker reached the consumer: no
// item of it is left anywhere.
func (r *run) finishEpoch(n uint64) {
	r.mu.Lock()
	e := r.epochs[n]
	delete(r.epochs, n)
	r.mu.Unlock()
	if e != nil {
		e.cancel()
	}
}

// demand lets sources start passes up to and including n.
func (r *run) demand(n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n+1 > r.demanded {
		r.demanded = n + 1
		close(r.wake)
		r.wake = make(chan struct{})
	}
}

// release lets continuous sources run freely.
func (r *run) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		r.running = true
		close(r.wake)
		r.wake = make(chan struct{})
	}
}

// waitPass blocks a source until it may start pass n; false means the
// pipeline was stopped or closed.
func (r *run) waitPass(n uint64) bool {
	for {
		r.mu.Lock()
		ok := n < r.demanded || (r.running && r.opts.continuous)
		wake := r.wake
		r.mu.Unlock()
		if r.stopped.Load() || r.ctx.Err() != nil || (r.opts.epochs > 0 && n >= r.opts.epochs) {
			return false
		}
		if ok {
			return true
		}
		select {
		case <-wake:
		case <-r.stopCh:
		case <-r.ctx.Done():
		}
	}
}

// fail stops the pipeline with err; the first failure wins.
func (r *run) fail(err error) { r.cancel(err) }

// go starts a pipeline goroutine that Close waits for.
func (r *run) goStage(name string, fn func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if h := r.opts.hooks.Stage; h != nil {
			defer h(name)()
		}
		// Labelled, so that a CPU profile splits by stage.
		pprof.Do(context.Background(), pprof.Labels(ProfileLabel, name), func(context.Context) { fn() })
	}()
}

// claim records that s is consumed; a stage can feed only one downstream.
func (r *run) claim(s any, name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claimed[s] {
		r.buildFailed(fmt.Errorf("pipeline: the input of stage %q already feeds another stage (a stage feeds one downstream; use Route to split a stream)", name))
		return false
	}
	r.claimed[s] = true
	return true
}

// buildFailed records the first error found while building; r.mu is held.
func (r *run) buildFailed(err error) {
	if r.buildErr == nil {
		r.buildErr = err
	}
}

func (r *run) buildError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buildFailed(err)
}

// sinkName names the pipeline's output queue; no stage may take it.
const sinkName = "sink"

// stageName names a stage: its Name, which must be unique, or else its
// default name, made unique with a "#k" suffix when it is taken.
func (r *run) stageName(o stageOptions, def string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name := o.name; name != "" {
		switch {
		case name == sinkName:
			r.buildFailed(fmt.Errorf("pipeline: a stage is named %q, the name of the pipeline's output queue: choose another Name", name))
		case r.names[name]:
			r.buildFailed(fmt.Errorf("pipeline: two stages are named %q: give each a Name of its own", name))
		}
		r.names[name] = true
		return name
	}
	base := cmp(o.defName, def)
	name := base
	for k := 2; r.names[name] || name == sinkName; k++ {
		name = fmt.Sprintf("%s#%d", base, k)
	}
	r.names[name] = true
	return name
}

func (r *run) addQueue(q *queueStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queues = append(r.queues, q)
}

func (r *run) addStage(st *stageStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stages = append(r.stages, st)
}

// itemFailed counts, logs and judges one failed item. The item is dropped;
// past a budget the whole pipeline fails.
func (r *run) itemFailed(st *stageStats, ep *epoch, index int64, err error) {
	ie := &ItemError{Stage: st.name, Epoch: ep.n, Index: index, Err: err}
	f := st.failures.Add(1)
	total := r.failures.Add(1)
	st.addCause(ie)
	r.log.Warn("pipeline: item failed", "stage", st.name, "epoch", ep.n, "index", index, "err", err)
	if st.budget.exceeded(f, st.invocations.Load()) {
		r.fail(&BudgetError{Stage: st.name, Failures: f, Invocations: st.invocations.Load(), Budget: st.budget, Causes: st.causeList()})
		return
	}
	if b := r.opts.budget; b != nil && b.exceeded(total, r.sourced.Load()) {
		r.fail(&BudgetError{Failures: total, Invocations: r.sourced.Load(), Budget: *b, Causes: r.allCauses()})
	}
}

func (r *run) allCauses() []error {
	r.mu.Lock()
	stages := append([]*stageStats(nil), r.stages...)
	r.mu.Unlock()
	var all []error
	for _, st := range stages {
		all = append(all, st.causeList()...)
	}
	return all
}

// safely calls fn, turning a panic into a *PanicError unless the pipeline
// was built with CrashOnPanic.
func safely(r *run, fn func() error) (err error) {
	if r.opts.crashOnPanic {
		return fn()
	}
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}
