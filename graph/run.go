package graph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrypipe/ferry/shm"
)

// Running is a graph being run, returned by Start.
type Running struct {
	g     *Graph
	ctx   context.Context // ends at a hard stop
	stop  context.CancelCauseFunc
	drain context.Context // the sources' context: ends at a drain
	start time.Time

	draining    atomic.Bool
	interrupted atomic.Bool
	drainOnce   sync.Once
	drainFn     context.CancelFunc
	closeOnce   sync.Once

	stats   []*elementStats
	workers map[*node]closer

	mu  sync.Mutex
	err error // the first error

	wg   sync.WaitGroup
	done chan struct{}
	end  time.Time
}

// Run runs the graph until every sink has seen the end of all its pads,
// an element fails, or ctx ends, and returns the stats of every element.
// Its error is an *ElementError naming the element (and the pad and frame)
// that failed, ctx's error, or ErrInterrupted (see HandleSignals).
func (g *Graph) Run(ctx context.Context) (Stats, error) {
	r, err := g.Start(ctx)
	if err != nil {
		return Stats{}, err
	}
	return r.Wait()
}

// Start validates the graph, starts the worker processes of its Process
// elements (in parallel) and every element, and returns at once. ctx ends
// the run hard when it ends.
func (g *Graph) Start(ctx context.Context) (*Running, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancelCause(withArena(ctx, g.o.arena))
	drain, drainFn := context.WithCancel(rctx)
	r := &Running{g: g, ctx: rctx, stop: stop, drain: drain, drainFn: drainFn, start: time.Now(),
		workers: map[*node]closer{}, done: make(chan struct{})}
	// Worker processes first: a run whose workers cannot start does not
	// start at all.
	var wg sync.WaitGroup
	var wmu sync.Mutex
	var errs []error
	for _, n := range g.nodes {
		if n.place != Process {
			continue
		}
		wg.Go(func() {
			w, err := n.open(r)
			wmu.Lock()
			defer wmu.Unlock()
			if err != nil {
				errs = append(errs, &ElementError{Element: n.name, Op: "start", Seq: -1, Err: err})
				return
			}
			r.workers[n] = w
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range r.workers {
			w.Close()
		}
		drainFn()
		stop(err)
		return nil, err
	}
	// One link per sink pad, made by the source pad's element; each
	// element has a waker for the links it reads and one for those it
	// writes.
	ins := map[*node][]any{}
	outs := map[*node][][]any{}
	readers, writers := map[*node]*waker{}, map[*node]*waker{}
	for _, n := range g.nodes {
		ins[n] = make([]any, len(n.inputs))
		outs[n] = make([][]any, len(n.outputs))
		readers[n], writers[n] = newWaker(), newWaker()
	}
	for _, n := range g.nodes { // in the order of the elements, for stable fan-out
		for i, p := range n.inputs {
			from := g.links[padRef{n, p}]
			l := from.n.newLink(from.n.buffer, writers[from.n], readers[n])
			ins[n][i] = l
			j := indexOf(from.n.outputs, from.pad)
			outs[from.n][j] = append(outs[from.n][j], l)
		}
	}
	for _, n := range g.nodes {
		st := newElementStats(n)
		if w, ok := r.workers[n].(interface{ PID() int }); ok {
			st.pid.Store(int64(w.PID()))
		}
		for i, l := range ins[n] {
			st.inLinks[i] = l.(occupant)
		}
		r.stats = append(r.stats, st)
		fn := n.launch(r, st, readers[n], ins[n], outs[n])
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			// Labelled, so that a CPU profile splits by element (the
			// goroutines the element starts inherit the label).
			pprof.Do(context.Background(), pprof.Labels(ProfileLabel, n.name), func(context.Context) {
				if err := fn(); err != nil {
					r.fail(err)
				}
			})
		}()
	}
	var sigs chan os.Signal
	if g.o.signals {
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	}
	go r.watch(sigs)
	return r, nil
}

func indexOf(pads []string, pad string) int {
	for i, p := range pads {
		if p == pad {
			return i
		}
	}
	return -1
}

// watch ends the run: at the end of every element, it closes the workers;
// it turns signals into a drain and a stop, and stops a drain that takes
// too long.
func (r *Running) watch(sigs chan os.Signal) {
	elements := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(elements)
	}()
	var deadline <-chan time.Time
	drainStarted := r.drain.Done()
	stopped := r.ctx.Done()
	signals := 0
loop:
	for {
		select {
		case <-elements:
			break loop
		case <-stopped:
			// A hard stop kills the workers at once: an element stuck in
			// a goroutine must not keep them alive.
			stopped = nil
			r.closeWorkers()
		case <-drainStarted:
			drainStarted = nil
			if r.draining.Load() {
				t := time.NewTimer(r.g.o.drainTimeout)
				defer t.Stop()
				deadline = t.C
			}
		case <-deadline:
			r.fail(fmt.Errorf("graph: the drain did not finish within %v: %w", r.g.o.drainTimeout, ErrStopped))
		case <-sigs:
			if signals++; signals == 1 {
				r.interrupted.Store(true)
				r.Drain()
			} else {
				r.fail(fmt.Errorf("graph: a second signal: %w", ErrStopped))
			}
		}
	}
	if sigs != nil {
		signal.Stop(sigs)
	}
	r.closeWorkers()
	for _, st := range r.stats {
		for _, l := range st.inLinks {
			l.discard()
		}
	}
	r.end = time.Now()
	r.drainFn()
	r.stop(nil)
	close(r.done)
}

// closeWorkers kills the worker processes of the run, once.
func (r *Running) closeWorkers() {
	r.closeOnce.Do(func() {
		for _, w := range r.workers {
			w.Close()
		}
	})
}

// fail records the first error and stops the run hard; once the run has
// ended, it does nothing.
func (r *Running) fail(err error) {
	select {
	case <-r.done:
		return
	default:
	}
	r.mu.Lock()
	if r.err == nil {
		r.err = err
		if errors.Is(err, ErrStopped) && r.ctx.Err() != nil {
			// An element that saw the stop: the cause is what stopped it
			// (the caller's context, or an error recorded already).
			r.err = context.Cause(r.ctx)
		}
	}
	r.mu.Unlock()
	r.stop(err)
}

// Drain stops the sources and lets every frame they produced flow through
// every element to the sinks; the run then ends as it does at the end of
// its sources. Past DrainTimeout the run stops hard.
func (r *Running) Drain() {
	select {
	case <-r.done:
		return // nothing to drain
	default:
	}
	r.drainOnce.Do(func() {
		r.draining.Store(true)
		r.drainFn()
	})
}

// Stop stops the run hard: frames in flight are lost, worker processes
// are killed. Wait then returns an error wrapping ErrStopped.
func (r *Running) Stop() { r.fail(fmt.Errorf("graph: stopped: %w", ErrStopped)) }

// Done is closed when the run has ended.
func (r *Running) Done() <-chan struct{} { return r.done }

// Wait waits for the end of the run and returns its stats and error (see
// Graph.Run).
func (r *Running) Wait() (Stats, error) {
	<-r.done
	st := r.Stats()
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if r.interrupted.Load() && !errors.Is(err, ErrInterrupted) {
		if err == nil {
			err = ErrInterrupted
		} else {
			err = fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
	}
	return st, err
}

// Stats returns the stats of every element now (during the run) or at its
// end.
func (r *Running) Stats() Stats {
	end := time.Now()
	select {
	case <-r.done:
		end = r.end // written before done was closed
	default:
	}
	st := Stats{Duration: end.Sub(r.start), Drained: r.draining.Load()}
	for _, s := range r.stats {
		st.Elements = append(st.Elements, s.snapshot())
	}
	return st
}

// typedLinks converts the links of an element's pads to their type.
func typedLinks[T any](ls []any) []*link[T] {
	out := make([]*link[T], len(ls))
	for i, l := range ls {
		out[i] = l.(*link[T])
	}
	return out
}

// typedPads converts the links of each of an element's source pads.
func typedPads[T any](pads [][]any) [][]*link[T] {
	out := make([][]*link[T], len(pads))
	for i, ls := range pads {
		out[i] = typedLinks[T](ls)
	}
	return out
}

// sendFrame puts f on every link of a source pad, counting the time the
// links kept it waiting. It gives up when the run stops, or when drain
// ends (a source being drained) before any link has taken the frame: a
// frame is on all of its links or on none.
//
// A frame of *shm.Buffer holds one reference per link: sendFrame takes
// the one f holds, sent or not, and adds the others.
func sendFrame[T any](r *Running, st *elementStats, i int, links []*link[T], f *Frame[T], drain context.Context) error {
	var b *shm.Buffer
	if len(links) > 0 && links[0].buffers {
		if b = bufferOf(f); b != nil {
			for range len(links) - 1 {
				b.Retain()
			}
		}
	}
	for j, l := range links {
		if l.tryPush(f) {
			continue
		}
		ctx := r.ctx
		if j == 0 && drain != nil {
			ctx = drain
		}
		t := time.Now()
		ok := l.push(ctx, f)
		st.outPads[i].blocked.Add(int64(time.Since(t)))
		if ok {
			continue
		}
		if b != nil {
			for range len(links) - j {
				b.Release()
			}
		}
		if r.ctx.Err() == nil {
			return ErrDrained
		}
		return ErrStopped
	}
	st.outPads[i].frames.Add(1)
	st.framesOut.Add(1)
	return nil
}

// feed receives the frames of an element's sink pads and delivers them, as
// they arrive or in aligned steps, until every pad has ended.
func feed[In any](r *Running, n *node, st *elementStats, w *waker, ins []any, deliver func(Frame[In]) error, deliverStep func([]Frame[In]) error) error {
	links := typedLinks[In](ins)
	arrived := func(i int, f *Frame[In]) {
		f.Pad = n.inputs[i]
		st.inPads[i].frames.Add(1)
		st.framesIn.Add(1)
		if f.Gap && !f.EOS {
			st.gaps.Add(1)
		}
	}
	// recv waits for the next frame of pad i.
	recv := func(i int) (Frame[In], error) {
		var f Frame[In]
		for !links[i].tryPop(&f) {
			if !w.park(r.ctx, func() bool { return !links[i].empty() }) {
				return f, ErrStopped
			}
		}
		arrived(i, &f)
		return f, nil
	}
	if n.aligned {
		return feedAligned(n, len(links), recv, deliverStep)
	}
	// As frames arrive: the pads in turn, a frame from each that has one.
	ended := make([]bool, len(links))
	open := len(links)
	ready := func() bool {
		for i, l := range links {
			if !ended[i] && !l.empty() {
				return true
			}
		}
		return false
	}
	var f Frame[In]
	for open > 0 {
		got := false
		for i, l := range links {
			if ended[i] || !l.tryPop(&f) {
				continue
			}
			got = true
			arrived(i, &f)
			if !(f.EOS && f.Gap) {
				if err := deliver(f); err != nil {
					return err
				}
			}
			if f.EOS {
				ended[i] = true
				open--
			}
		}
		if !got && open > 0 && !w.park(r.ctx, ready) {
			return ErrStopped
		}
	}
	return nil
}

// feedAligned delivers one step per frame of every pad: the n-th frames
// (AlignBySeq), or the frames of the earliest Time (AlignByTime). A pad
// that has no frame for a step contributes a Gap frame.
func feedAligned[In any](n *node, k int, recv func(int) (Frame[In], error), deliver func([]Frame[In]) error) error {
	ended := make([]bool, k)
	heads := make([]Frame[In], k)
	have := make([]bool, k)
	defer func() { // the frames of a step never delivered
		for i := range k {
			if have[i] {
				releaseFrames(heads[i])
			}
		}
	}()
	for step := uint64(0); ; step++ {
		for i := range k {
			if ended[i] || have[i] {
				continue
			}
			f, err := recv(i)
			if err != nil {
				return err
			}
			if f.EOS && f.Gap {
				ended[i] = true
				continue
			}
			heads[i], have[i] = f, true
		}
		live := false
		var t int64
		for i := range k {
			if have[i] && (!live || heads[i].Time < t) {
				t, live = heads[i].Time, true
			}
		}
		if !live {
			return nil
		}
		frames := make([]Frame[In], k)
		for i := range k {
			match := have[i] && (n.align == AlignBySeq || heads[i].Time == t)
			if match {
				frames[i], have[i] = heads[i], false
				if heads[i].EOS {
					ended[i] = true
				}
				continue
			}
			frames[i] = Frame[In]{Gap: true, Pad: n.inputs[i], Seq: step, EOS: ended[i]}
			if n.align == AlignByTime {
				frames[i].Time = t
			}
		}
		if err := deliver(frames); err != nil {
			return err
		}
	}
}
