package proc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/shm"
)

// Pool is a set of worker processes that serve a function registered with
// Func. Its Call method has the signature of a pipeline stage, so
//
//	pool, err := proc.NewPool(ctx, Decode, proc.Workers(4))
//	...
//	defer pool.Close()
//	img := pipeline.Pipe(src, pool.Call, pipeline.Concurrency(8))
//
// runs that stage in worker processes. Each call goes to the live worker
// with the fewest calls in flight; each worker holds up to InFlight calls
// (at least Concurrency), so that it never idles for a round trip, and runs
// Concurrency of them at once. A worker that dies, or that is
// killed because a call outlived CallTimeout, is replaced (see
// MaxRestarts): the calls it held fail with its *WorkerError, or run again
// elsewhere with Retries. A worker that has served MaxCallsPerWorker calls
// is recycled. A Pool is safe for concurrent use.
type Pool[In, Out any] struct {
	fn *Function[In, Out]
	o  *options
	// With an Arena, inputs and outputs travel split (see splitter).
	inSplit  *splitter[In]
	outSplit *splitter[Out]
	init     wire.InitMsg
	ctx      context.Context // for starting replacements; ends at Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup // starters and supervisors

	calls, failures, retries atomic.Int64

	mu       sync.Mutex
	closed   bool
	slots    []*poolSlot
	draining []*poolWorker // recycled workers finishing their calls
	nextID   uint64
	waiters  int           // callers waiting for a free worker
	changed  chan struct{} // closed and replaced when waiters may proceed
	lastErr  error         // why the last slot went down
	restarts int           // workers replaced after dying
	recycled int           // workers replaced after MaxCallsPerWorker
	lost     int64         // call attempts lost with their worker
	timeouts int64         // calls that outlived CallTimeout
	startErr int64         // replacements that failed to start
	// shared are the constants added by Share, in order, which workers
	// started since inherit; sharedNames, every name given to the pool;
	// shareWait, the Share requests waiting for a ConstantOK.
	shared      []sharedConstant
	sharedSeq   uint64
	sharedNames map[string]bool
	shareWait   map[uint64]chan error

	closeOnce sync.Once
}

// poolSlot is one of the pool's Workers places: it holds a live worker, or
// one starting, or is down for good.
type poolSlot struct {
	index    int
	w        *poolWorker
	starting bool
	down     error // the slot will get no more workers
}

// poolWorker is one worker process of a pool. Its fields are guarded by
// the pool's mu, except sendMu and what it guards.
type poolWorker struct {
	w         *worker
	calls     map[uint64]*poolCall // sent or about to be
	queue     []*poolCall          // sent, in the order they were sent
	served    int64                // calls dispatched to it
	retired   bool                 // takes no more calls: recycled
	doomed    bool                 // takes no more calls: being killed
	gone      bool                 // its death has been handled
	drained   chan struct{}        // closed to make its supervisor close it
	drainMu   sync.Once
	sharedSeq uint64 // it has the pool's shared constants up to this one

	// sendMu orders sends to the worker with the queue, so that the
	// queue's order is the order in which the worker takes calls.
	sendMu sync.Mutex
}

// poolCall is one attempt of a call at a worker.
type poolCall struct {
	id     uint64
	pw     *poolWorker
	done   chan poolReply // receives exactly one reply
	timer  *time.Timer
	queued bool // in pw.queue
	// inRefs are the segments of the input in the arena, discarded
	// when the attempt ends (the worker has copied them, or died).
	inRefs []shm.Ref
	// abandoned: the caller has gone, and finish releases the reply.
	abandoned bool
}

// poolReply is the outcome of one attempt.
type poolReply struct {
	t    wire.Type // Result or CallFailed, or 0 with err
	body []byte
	pid  int
	err  error
	lost bool // err is the *WorkerError of a worker that died with the call
	// split is a Result with an Arena, its parts viewed on arrival, or
	// splitErr why they could not be.
	split    splitMsg
	splitErr error
}

// PoolStats describes a pool at one moment.
type PoolStats struct {
	Name          string        // the registered function
	Workers       []WorkerStats // the live workers, by slot, then those being recycled
	Calls         int64         // calls that returned, successful or not
	Failures      int64         // calls that returned an error, of any kind
	Timeouts      int64         // calls that outlived CallTimeout (their workers were killed)
	Lost          int64         // call attempts lost with a worker that died
	Retries       int64         // attempts run again after their worker died (see Retries)
	Restarts      int           // workers replaced after dying or being killed
	Recycled      int           // workers replaced after MaxCallsPerWorker calls
	StartFailures int64         // replacement workers that failed to start
	Starting      int           // replacement workers being started
	Down          int           // slots left without a worker (MaxRestarts reached, or a failed start)
	InFlight      int           // calls at workers now
	Waiting       int           // callers waiting for a worker with room
}

// WorkerStats describes one worker process of a pool.
type WorkerStats struct {
	Slot     int   // its place in the pool, from 0, or -1 while it is being recycled
	PID      int   // its process id
	Calls    int64 // calls sent to it
	InFlight int   // calls it holds now
	Retiring bool  // it takes no more calls and exits once they are done
}

// String renders the stats on one line, e.g. for logs.
func (s PoolStats) String() string {
	pids := make([]int, 0, len(s.Workers))
	for _, w := range s.Workers {
		pids = append(pids, w.PID)
	}
	return fmt.Sprintf("pool %q: %d workers (pids %v), %d starting, %d down; %d calls, %d failed, %d timed out, %d lost, %d retried; %d restarts, %d recycled",
		s.Name, len(s.Workers), pids, s.Starting, s.Down, s.Calls, s.Failures, s.Timeouts, s.Lost, s.Retries, s.Restarts, s.Recycled)
}

// NewPool starts Workers worker processes serving fn, in parallel, and
// returns once all are ready. ctx bounds the start only: the pool lives
// until Close. If a worker fails to start, the others are stopped and the
// error is returned.
func NewPool[In, Out any](ctx context.Context, fn *Function[In, Out], opts ...Option) (*Pool[In, Out], error) {
	if fn == nil {
		return nil, errors.New("proc: NewPool with a nil Function")
	}
	if _, err := lookup(fn.name, kindFunc); err != nil {
		return nil, err
	}
	o := newOptions(opts)
	switch {
	case o.workers < 1:
		return nil, fmt.Errorf("proc: pool %q: Workers(%d), want ≥ 1", fn.name, o.workers)
	case o.inFlight < 1:
		return nil, fmt.Errorf("proc: pool %q: InFlight(%d), want ≥ 1", fn.name, o.inFlight)
	case o.concurrency < 1:
		return nil, fmt.Errorf("proc: pool %q: Concurrency(%d), want ≥ 1", fn.name, o.concurrency)
	case o.maxCalls < 0:
		return nil, fmt.Errorf("proc: pool %q: MaxCallsPerWorker(%d), want ≥ 0", fn.name, o.maxCalls)
	case o.callTimeout < 0:
		return nil, fmt.Errorf("proc: pool %q: CallTimeout(%v), want ≥ 0", fn.name, o.callTimeout)
	case o.retries < 0:
		return nil, fmt.Errorf("proc: pool %q: Retries(%d), want ≥ 0", fn.name, o.retries)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A worker cannot run more calls at once than it holds.
	o.inFlight = max(o.inFlight, o.concurrency)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &Pool[In, Out]{
		fn:        fn,
		o:         o,
		inSplit:   newSplitter(fn.in),
		outSplit:  newSplitter(fn.out),
		init:      wire.InitMsg{Version: wire.Version, Kind: kindFunc, Name: fn.name, Initializers: initNames(o), Concurrency: o.concurrency},
		ctx:       pctx,
		cancel:    cancel,
		changed:   make(chan struct{}),
		shareWait: map[uint64]chan error{},
	}
	p.sharedNames = map[string]bool{}
	for _, c := range o.constants {
		if c != nil {
			p.sharedNames[c.Name()] = true
		}
	}

	// Start every worker at once; the first failure cancels the others.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	workers := make([]*poolWorker, o.workers)
	errs := make([]error, o.workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			workers[i], errs[i] = p.start(sctx)
			if errs[i] != nil {
				scancel()
			}
		})
	}
	wg.Wait()
	if err := firstError(ctx, errs); err != nil {
		var cwg sync.WaitGroup
		for _, pw := range workers {
			if pw != nil {
				cwg.Go(pw.w.close)
			}
		}
		cwg.Wait()
		cancel()
		return nil, err
	}
	for i, pw := range workers {
		p.slots = append(p.slots, &poolSlot{index: i, w: pw})
	}
	for _, pw := range workers { // once the slots are complete: supervisors use them
		p.supervise(pw)
	}
	return p, nil
}

// firstError picks the error to report for a failed start: the cause, not
// the cancellations it made.
func firstError(ctx context.Context, errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		if !errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return err
		}
	}
	return first
}

// sharedConstant is a constant given to the pool by Share.
type sharedConstant struct {
	c   *shm.Constant
	seq uint64 // its place among the pool's shared constants, from 1
}

// liveShared returns the shared constants after seq that are still open,
// and forgets those closed: workers started from now on do not get them;
// p.mu is held.
func (p *Pool[In, Out]) liveShared(seq uint64) []sharedConstant {
	p.shared = slices.DeleteFunc(p.shared, func(sc sharedConstant) bool { return !isOpen(sc.c) })
	i, _ := slices.BinarySearchFunc(p.shared, seq+1, func(sc sharedConstant, seq uint64) int { return cmp.Compare(sc.seq, seq) })
	return p.shared[i:]
}

// start starts one worker process, which inherits the constants of the
// options and the shared constants still open.
func (p *Pool[In, Out]) start(ctx context.Context) (*poolWorker, error) {
	p.mu.Lock()
	o := *p.o
	o.constants = slices.Clip(o.constants)
	for _, sc := range p.liveShared(0) {
		o.constants = append(o.constants, sc.c)
	}
	pw := &poolWorker{calls: map[uint64]*poolCall{}, drained: make(chan struct{}), sharedSeq: p.sharedSeq}
	p.mu.Unlock()
	w, err := startWorker(ctx, &o, p.init, &poolHandler[In, Out]{p: p, pw: pw})
	if err != nil {
		return nil, err
	}
	pw.w = w
	return pw, nil
}

// supervise watches pw until it is gone; p.mu may be held.
func (p *Pool[In, Out]) supervise(pw *poolWorker) {
	p.wg.Go(func() {
		select {
		case <-pw.w.dead:
		case <-pw.drained:
			pw.w.close()
		}
		p.died(pw)
		pw.w.close() // releases the connection of a worker that died
	})
}

// replace starts a worker for slot s; p.mu is held.
func (p *Pool[In, Out]) replace(s *poolSlot) {
	s.w, s.starting = nil, true
	p.wg.Go(func() {
		pw, err := p.start(p.ctx)
		if err == nil {
			p.catchUp(pw, false)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		s.starting = false
		switch {
		case p.closed:
			if pw != nil {
				p.supervise(pw)
				pw.drain()
			}
		case err != nil:
			s.down = err
			p.lastErr = err
			p.startErr++
			p.o.logger.Error("proc: a replacement worker failed to start; the pool has one worker fewer", "pool", p.fn.name, "slot", s.index, "err", err)
		default:
			// What was shared since the catch-up above, before any call.
			p.catchUp(pw, true)
			s.w = pw
			p.supervise(pw)
		}
		p.wake()
	})
}

// drain makes the worker's supervisor close it.
func (pw *poolWorker) drain() { pw.drainMu.Do(func() { close(pw.drained) }) }

// died handles the end of pw: its calls fail (or are handed back to be
// retried) and its slot gets a replacement, as MaxRestarts allows.
func (p *Pool[In, Out]) died(pw *poolWorker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pw.gone {
		return
	}
	pw.gone = true
	err := pw.w.deadErr
	for _, c := range pw.calls {
		p.finish(c, poolReply{pid: pw.w.pid, err: err, lost: true})
		p.lost++
	}
	p.draining = slices.DeleteFunc(p.draining, func(x *poolWorker) bool { return x == pw })
	for _, s := range p.slots {
		if s.w != pw {
			continue
		}
		s.w = nil
		if p.closed {
			break
		}
		if p.o.maxRestarts >= 0 && p.restarts >= p.o.maxRestarts {
			s.down = err
			p.lastErr = err
			p.o.logger.Error("proc: pool worker died and is not replaced: MaxRestarts reached", "pool", p.fn.name, "slot", s.index, "restarts", p.restarts, "err", err)
			break
		}
		p.o.logger.Warn("proc: pool worker died; starting a replacement", "pool", p.fn.name, "slot", s.index, "err", err)
		p.restarts++
		p.replace(s)
	}
	p.wake()
}

// finish removes c from its worker and hands the caller its reply (which
// nobody reads if the caller has gone); p.mu is held.
func (p *Pool[In, Out]) finish(c *poolCall, r poolReply) {
	p.remove(c)
	p.discardInput(c)
	if c.abandoned {
		r.split.release()
		return
	}
	c.done <- r // buffered, and each call gets one reply
}

// discardInput frees the segments of c's input; p.mu is held, or c has
// been removed.
func (p *Pool[In, Out]) discardInput(c *poolCall) {
	if c.inRefs != nil {
		discardRefs(p.o.arena, c.inRefs)
		c.inRefs = nil
	}
}

// abandon marks c, whose caller has gone, so that its reply is released
// when it comes, and releases it if it came already.
func (p *Pool[In, Out]) abandon(c *poolCall) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.abandoned = true
	select {
	case r := <-c.done:
		r.split.release()
	default:
	}
}

// remove takes c off its worker; p.mu is held.
func (p *Pool[In, Out]) remove(c *poolCall) {
	pw := c.pw
	delete(pw.calls, c.id)
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.queued {
		pw.queue = slices.DeleteFunc(pw.queue, func(x *poolCall) bool { return x == c })
		p.arm(pw)
	}
	if pw.retired && len(pw.calls) == 0 {
		pw.drain()
	}
	p.wake()
}

// arm starts the timeout of the calls that pw is running: the first
// Concurrency calls of its queue, since it takes them in order. p.mu is held.
func (p *Pool[In, Out]) arm(pw *poolWorker) {
	if p.o.callTimeout <= 0 || pw.gone || pw.doomed || p.closed {
		return
	}
	for _, c := range pw.queue[:min(len(pw.queue), p.o.concurrency)] {
		if c.timer == nil {
			c.timer = time.AfterFunc(p.o.callTimeout, func() { p.timedOut(c) })
		}
	}
}

// timedOut kills the worker of c, a call that outlived CallTimeout, and
// fails c with a *TimeoutError once the worker is gone. The death of the
// worker fails or retries its other calls, and replaces it.
func (p *Pool[In, Out]) timedOut(c *poolCall) {
	p.mu.Lock()
	pw := c.pw
	if pw.calls[c.id] != c {
		p.mu.Unlock()
		return // answered meanwhile
	}
	pw.doomed = true
	p.remove(c) // its reply is sent below, once the worker is gone
	p.timeouts++
	p.mu.Unlock()

	reason := fmt.Sprintf("call %d exceeded the call timeout of %v", c.id, p.o.callTimeout)
	p.o.logger.Warn("proc: killing a pool worker", "pool", p.fn.name, "pid", pw.w.pid, "reason", reason)
	pw.w.kill(reason)
	// Once it is dead, not merely reaped: its connection has been read to
	// the end and what it held in the arena reclaimed, so the caller finds
	// those segments free.
	<-pw.w.dead
	p.mu.Lock()
	p.discardInput(c)
	p.mu.Unlock()
	c.done <- poolReply{pid: pw.w.pid, err: &TimeoutError{Name: p.fn.name, What: "call", Limit: p.o.callTimeout.String()}}
}

// wake lets waiting callers look for a worker again; p.mu is held.
func (p *Pool[In, Out]) wake() {
	if p.waiters > 0 {
		close(p.changed)
		p.changed = make(chan struct{})
		p.waiters = 0
	}
}

// Call runs the function in a worker process and returns its result. It
// has the signature of a pipeline stage.
//
// The input is encoded first: if that fails, Call returns a *CodecError and
// nothing is sent. An error returned or a panic raised by the function
// comes back as a *RemoteError. A call that outlives CallTimeout fails
// with a *TimeoutError (its worker is killed and replaced); a call whose
// worker dies fails with that worker's *WorkerError, unless Retries lets it
// run again. When ctx ends, Call returns ctx.Err() at once and the result,
// when it comes, is dropped. After Close, Call returns ErrClosed.
func (p *Pool[In, Out]) Call(ctx context.Context, in In) (Out, error) {
	out, err := p.call(ctx, in)
	p.calls.Add(1)
	if err != nil {
		p.failures.Add(1)
	}
	return out, err
}

func (p *Pool[In, Out]) call(ctx context.Context, in In) (Out, error) {
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	arena := p.o.arena
	var body []byte
	var err error
	if arena == nil {
		if body, err = p.fn.in.Append(nil, in); err != nil {
			return zero, &CodecError{What: "input", Err: err}
		}
	}
	for attempt := 0; ; attempt++ {
		var refs []shm.Ref
		if arena != nil { // again for each attempt: the last one's segments are gone
			if body, refs, err = p.inSplit.encode(ctx, arena, p.o.arenaThreshold(), nil, in); err != nil {
				return zero, &CodecError{What: "input", Err: err}
			}
		}
		c, err := p.dispatch(ctx, refs)
		if err != nil {
			if arena != nil {
				discardRefs(arena, refs)
			}
			return zero, err
		}
		p.send(c, body)
		var r poolReply
		select {
		case r = <-c.done:
		case <-ctx.Done():
			// The worker is still running the call, which stays counted
			// at it; its reply will go unread.
			p.abandon(c)
			return zero, ctx.Err()
		}
		switch {
		case r.lost && attempt < p.o.retries && ctx.Err() == nil:
			p.retries.Add(1)
			continue
		case r.err != nil:
			return zero, r.err
		case r.t == wire.Result:
			var out Out
			var err error
			switch {
			case arena == nil:
				out, err = p.fn.out.Decode(r.body)
			case r.splitErr != nil:
				err = r.splitErr
			default:
				out, err = p.outSplit.decode(&r.split)
			}
			if err != nil {
				return zero, &CodecError{What: "output", Err: err}
			}
			return out, nil
		case r.t == wire.CallFailed:
			var m wire.ErrorMsg
			if err := json.Unmarshal(r.body, &m); err != nil {
				return zero, fmt.Errorf("proc: worker %q (pid %d) sent an unreadable error: %w", p.fn.name, r.pid, err)
			}
			m.Index = -1
			return zero, remoteError(p.fn.name, r.pid, m)
		default:
			return zero, fmt.Errorf("proc: worker %q (pid %d) answered a call with %v", p.fn.name, r.pid, r.t)
		}
	}
}

// dispatch reserves room for a call at the live worker with the fewest
// calls in flight, waiting while every worker is full.
func (p *Pool[In, Out]) dispatch(ctx context.Context, inRefs []shm.Ref) (*poolCall, error) {
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		var best *poolWorker
		alive := false // a worker is live or starting
		for _, s := range p.slots {
			pw := s.w
			if s.starting || pw != nil {
				alive = true
			}
			if pw == nil || pw.retired || pw.doomed || len(pw.calls) >= p.o.inFlight {
				continue
			}
			if best == nil || len(pw.calls) < len(best.calls) {
				best = pw
			}
		}
		if best != nil {
			c := &poolCall{id: p.nextID, pw: best, done: make(chan poolReply, 1), inRefs: inRefs}
			p.nextID++
			best.calls[c.id] = c
			best.served++
			if p.o.maxCalls > 0 && best.served >= int64(p.o.maxCalls) {
				p.recycle(best)
			}
			p.mu.Unlock()
			return c, nil
		}
		if !alive {
			err := p.lastErr
			p.mu.Unlock()
			return nil, fmt.Errorf("proc: pool %q has no workers left: %w", p.fn.name, err)
		}
		p.waiters++
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			p.mu.Lock()
			if p.changed == ch { // still counted
				p.waiters--
			}
			p.mu.Unlock()
			return nil, ctx.Err()
		}
		p.mu.Lock()
	}
}

// recycle retires pw, which has served its calls, and starts its
// replacement; p.mu is held.
func (p *Pool[In, Out]) recycle(pw *poolWorker) {
	pw.retired = true
	p.recycled++
	p.draining = append(p.draining, pw)
	for _, s := range p.slots {
		if s.w == pw {
			p.replace(s)
		}
	}
}

// send queues c at its worker and writes the input to it.
func (p *Pool[In, Out]) send(c *poolCall, body []byte) {
	pw := c.pw
	pw.sendMu.Lock()
	defer pw.sendMu.Unlock()
	p.mu.Lock()
	if pw.calls[c.id] != c {
		p.mu.Unlock()
		return // the worker died, or the pool closed, meanwhile
	}
	c.queued = true
	pw.queue = append(pw.queue, c)
	p.arm(pw)
	p.mu.Unlock()
	if err := pw.w.send(wire.Call, c.id, body); err != nil && !errors.Is(err, ErrClosed) {
		// The worker is dead or its connection is broken: make sure it is
		// gone. Its death fails the call. (ErrClosed: the pool is closing
		// the worker, and Close has failed the call.)
		pw.w.kill(fmt.Sprintf("sending call %d failed: %v", c.id, err))
	}
}

// poolHandler routes the replies of one worker to their callers.
type poolHandler[In, Out any] struct {
	p  *Pool[In, Out]
	pw *poolWorker
}

func (h *poolHandler[In, Out]) frame(t wire.Type, id uint64, body []byte) {
	if t == wire.ConstantOK {
		h.p.constantOK(h.pw, id, body)
		return
	}
	if t != wire.Result && t != wire.CallFailed {
		return
	}
	p := h.p
	r := poolReply{t: t, body: body, pid: h.pw.w.pid}
	if t == wire.Result && p.o.arena != nil {
		// Viewed here, before this worker's death can reclaim them.
		r.split, r.splitErr = viewSplit(p.o.arena, body)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := h.pw.calls[id]
	if c == nil {
		r.split.release()
		return // a call failed meanwhile (the pool closed)
	}
	p.finish(c, r)
}

func (h *poolHandler[In, Out]) idle() {}

// catchUp sends a worker that was starting while Share ran the constants
// it was started without (id 0: nobody waits for the reply; a worker that
// cannot map one exits). locked says whether p.mu is held.
func (p *Pool[In, Out]) catchUp(pw *poolWorker, locked bool) {
	if !locked {
		p.mu.Lock()
	}
	missing := slices.Clone(p.liveShared(pw.sharedSeq))
	pw.sharedSeq = p.sharedSeq
	if !locked {
		p.mu.Unlock()
	}
	for _, sc := range missing {
		if err := pw.w.w.SendFD(wire.Constant, 0, []byte(sc.c.Name()), sc.c.FD()); err != nil {
			pw.w.kill(fmt.Sprintf("sending shared constant %q failed: %v", sc.c.Name(), err))
			return
		}
	}
}

// Share hands more shared constants (made with shm.Share) to the pool's
// workers while they run, for data that changes between epochs, such as
// the weights of a model being trained: each live worker receives the
// constant's memfd over its control socket (SCM_RIGHTS), maps it
// read-only and registers it for shm.Lookup before it reads anything sent
// after it, so that every call made once Share has returned finds it, and
// workers started later (replacements) inherit it like the Constants
// option's. A name must be new to the pool; to replace data, share it
// under a new name, and close the old constant once no call uses it:
// workers started after that do not get it (those that have it keep their
// mapping until they exit). Close the others after the pool.
//
// Share returns when every live worker has mapped the constants, or with
// the errors of those that could not (a *RemoteError naming the worker):
// such a worker exits, since it must not serve calls without them, and
// its replacement gets them at start. If ctx ends first, Share returns its
// error and the constants stay shared: the workers map them all the same.
func (p *Pool[In, Out]) Share(ctx context.Context, cs ...*shm.Constant) error {
	type request struct {
		pw   *poolWorker
		c    *shm.Constant
		id   uint64
		done chan error
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var reqs []request
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if err := checkShare("the pool", p.sharedNames, cs); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("proc: pool %q: Share: %w", p.fn.name, err)
	}
	for _, c := range cs {
		p.sharedNames[c.Name()] = true
		p.sharedSeq++
		p.shared = append(p.shared, sharedConstant{c: c, seq: p.sharedSeq})
	}
	for _, s := range p.slots {
		if s.w == nil || s.w.retired || s.w.doomed {
			continue // it takes no more calls
		}
		for _, c := range cs {
			p.nextID++
			r := request{pw: s.w, c: c, id: p.nextID, done: make(chan error, 1)}
			p.shareWait[r.id] = r.done
			reqs = append(reqs, r)
		}
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		for _, r := range reqs {
			delete(p.shareWait, r.id)
		}
		p.mu.Unlock()
	}()
	for _, r := range reqs {
		if err := r.pw.w.w.SendFD(wire.Constant, r.id, []byte(r.c.Name()), r.c.FD()); err != nil && !errors.Is(err, wire.ErrClosed) {
			// Its connection is broken: make sure it dies; its
			// replacement inherits c. (ErrClosed: the pool is closing it.)
			r.pw.w.kill(fmt.Sprintf("sending shared constant %q failed: %v", r.c.Name(), err))
		}
	}
	var errs []error
	for _, r := range reqs {
		select {
		case err := <-r.done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-r.pw.w.dead: // its replacement inherits c
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// constantOK hands a worker's reply to a Constant to the Share waiting for
// it, if any. A worker that could not map the constant exits by itself;
// an error nobody waits for is logged.
func (p *Pool[In, Out]) constantOK(pw *poolWorker, id uint64, body []byte) {
	var err error
	if len(body) > 0 {
		var m wire.ErrorMsg
		if json.Unmarshal(body, &m) != nil {
			m = wire.ErrorMsg{Message: string(body), Index: -1}
		}
		err = remoteError(p.fn.name, pw.w.pid, m)
	}
	p.mu.Lock()
	done := p.shareWait[id]
	delete(p.shareWait, id)
	p.mu.Unlock()
	switch {
	case done != nil:
		done <- err
	case err != nil:
		p.o.logger.Error("proc: a pool worker could not map a shared constant and exits", "pool", p.fn.name, "pid", pw.w.pid, "err", err)
	}
}

// Stats returns the pool's counters and its workers.
func (p *Pool[In, Out]) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStats{
		Name:          p.fn.name,
		Calls:         p.calls.Load(),
		Failures:      p.failures.Load(),
		Retries:       p.retries.Load(),
		Timeouts:      p.timeouts,
		Lost:          p.lost,
		Restarts:      p.restarts,
		Recycled:      p.recycled,
		StartFailures: p.startErr,
		Waiting:       p.waiters,
	}
	add := func(slot int, pw *poolWorker) {
		st.InFlight += len(pw.calls)
		st.Workers = append(st.Workers, WorkerStats{Slot: slot, PID: pw.w.pid, Calls: pw.served, InFlight: len(pw.calls), Retiring: pw.retired})
	}
	for _, s := range p.slots {
		if s.w != nil {
			add(s.index, s.w)
		}
		if s.starting {
			st.Starting++
		}
		if s.down != nil {
			st.Down++
		}
	}
	for _, pw := range p.draining {
		add(-1, pw)
	}
	return st
}

// Close fails the calls in progress and those waiting with ErrClosed, and
// stops every worker (see Grace). It returns when all of them have exited.
// Calling it again does nothing.
func (p *Pool[In, Out]) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.cancel() // stops replacements being started
		for _, pw := range p.workers() {
			for _, c := range pw.calls {
				p.finish(c, poolReply{err: ErrClosed})
			}
			pw.drain()
		}
		if p.waiters > 0 {
			close(p.changed)
			p.changed = make(chan struct{})
			p.waiters = 0
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return nil
}

// workers returns every worker of the pool; p.mu is held.
func (p *Pool[In, Out]) workers() []*poolWorker {
	var all []*poolWorker
	for _, s := range p.slots {
		if s.w != nil {
			all = append(all, s.w)
		}
	}
	return append(all, p.draining...)
}
