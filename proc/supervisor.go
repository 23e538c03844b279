package proc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/internal/platform"
	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/shm"
)

// supervisor is the one supervision core of the parent side: it keeps a
// number of slots filled with live workers serving one piece of work,
// starts them in parallel, replaces those that die (MaxRestarts, with
// backoff after failed starts), recycles them (MaxCallsPerWorker), kills
// those that outlive a deadline, hands them the constants shared while
// they run, and dispatches tasks — requests and streams of the session —
// to the live worker with the most room. Pool, FlatPool and Iterable are
// layers on it.
type supervisor struct {
	name   string
	o      *options
	attach wire.Attach
	ctx    context.Context // for starting replacements; ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup // starters and watchers

	mu       sync.Mutex
	closed   bool
	slots    []*slot
	draining []*member     // recycled workers finishing their tasks
	waiters  int           // callers waiting for a worker with room
	changed  chan struct{} // closed and replaced when waiters may proceed
	lastErr  error         // why the last slot went down, or the last start failed
	restarts int           // workers replaced after dying
	recycled int           // workers replaced after MaxCallsPerWorker
	lost     int64         // tasks that were running at a worker that died
	requeued int64         // tasks that had not started at a worker that died, run elsewhere
	timeouts int64         // tasks that outlived their deadline (their workers were killed)
	startErr int64         // replacements that failed to start
	shared   []sharedConstant
	sharedN  uint64
	names    map[string]bool // of every constant the workers have

	closeOnce sync.Once
}

// slot is one of the supervisor's places: it holds a live worker, or one
// starting, or is down for good.
type slot struct {
	index    int
	m        *member
	starting bool
	failures int   // consecutive failed starts
	down     error // the slot will get no more workers
}

// member is one worker of a supervisor. Its fields are guarded by the
// supervisor's mu, except sendMu.
type member struct {
	w         *worker
	tasks     map[*task]bool // dispatched to it, not finished
	queue     []*task        // sent, in the order they were sent
	served    int64          // tasks dispatched to it
	sent      int64          // tasks sent to it: the seq of the next
	retired   bool           // takes no more tasks: recycled
	doomed    bool           // takes no more tasks: being killed
	gone      bool           // its death has been handled
	marked    bool           // the tasks it was running have been marked
	drained   chan struct{}  // closed to make its watcher close it
	drainOnce sync.Once
	sharedN   uint64 // it has the shared constants up to this one

	// sendMu orders sends to the worker with the queue, so that the
	// queue's order is the order in which the worker takes tasks.
	sendMu sync.Mutex
}

// task is one attempt of a request or a stream at a member.
type task struct {
	sup       *supervisor
	m         *member
	x         *exchange
	timer     *time.Timer
	queued    bool      // in m.queue
	inRefs    []shm.Ref // the input's parts in the arena, discarded when the attempt ends
	abandoned bool      // the caller has gone: what comes is released
	seq       int64     // its place among the tasks sent to its worker, from 0
	started   bool      // the worker had started it (set when it died)
	due       time.Time // when its timer, if armed and not paused, fires
	paused    bool      // its timer is stopped while its caller consumes (FlatPool)
	timedOut  bool      // its deadline killed the worker
	closed    bool      // the supervisor was closed under it
}

func newSupervisor(ctx context.Context, o *options, attach wire.Attach) (*supervisor, error) {
	if !platform.Supported {
		return nil, fmt.Errorf("proc: starting workers for %q: %w", attach.Name, ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sup := &supervisor{name: attach.Name, o: o, attach: attach, ctx: sctx, cancel: cancel, changed: make(chan struct{}), names: map[string]bool{}}
	for _, c := range o.constants {
		if c != nil {
			sup.names[c.Name()] = true
		}
	}
	// Start every worker at once; the first failure cancels the others.
	startCtx, stop := context.WithCancel(ctx)
	defer stop()
	members := make([]*member, o.workers)
	errs := make([]error, o.workers)
	var wg sync.WaitGroup
	for i := range members {
		start := func() {
			members[i], errs[i] = sup.start(startCtx)
			if errs[i] != nil {
				stop()
			}
		}
		if len(members) == 1 {
			start() // no goroutine to wait for
			break
		}
		wg.Go(start)
	}
	wg.Wait()
	if err := firstError(ctx, errs); err != nil {
		var cwg sync.WaitGroup
		for _, m := range members {
			if m != nil {
				cwg.Go(m.w.close)
			}
		}
		cwg.Wait()
		cancel()
		return nil, err
	}
	for i, m := range members {
		sup.slots = append(sup.slots, &slot{index: i, m: m})
	}
	for _, m := range members { // once the slots are complete: watchers use them
		sup.watch(m)
	}
	return sup, nil
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

// sharedConstant is a constant given to the workers by Share.
type sharedConstant struct {
	c *shm.Constant
	n uint64 // its place among the shared constants, from 1
}

// liveShared returns the shared constants after n that are still open, and
// forgets those closed: workers started from now on do not get them;
// sup.mu is held.
func (sup *supervisor) liveShared(n uint64) []sharedConstant {
	sup.shared = slices.DeleteFunc(sup.shared, func(sc sharedConstant) bool { return !isOpen(sc.c) })
	i, _ := slices.BinarySearchFunc(sup.shared, n+1, func(sc sharedConstant, n uint64) int { return cmp.Compare(sc.n, n) })
	return sup.shared[i:]
}

// start starts one worker, which inherits the constants of the options
// and the shared constants still open.
func (sup *supervisor) start(ctx context.Context) (*member, error) {
	sup.mu.Lock()
	o := *sup.o
	o.constants = slices.Clip(o.constants)
	for _, sc := range sup.liveShared(0) {
		o.constants = append(o.constants, sc.c)
	}
	m := &member{tasks: map[*task]bool{}, drained: make(chan struct{}), sharedN: sup.sharedN}
	sup.mu.Unlock()
	attach := sup.attach
	w, err := startWorker(ctx, &o, &attach)
	if err != nil {
		return nil, err
	}
	m.w = w
	return m, nil
}

// watch waits for m's end; sup.mu may be held.
func (sup *supervisor) watch(m *member) {
	sup.wg.Go(func() {
		select {
		case <-m.w.dead():
		case <-m.drained:
			m.w.close()
		}
		sup.died(m)
		m.w.close() // releases the connection of a worker that died
	})
}

// drain makes the member's watcher close it.
func (m *member) drain() { m.drainOnce.Do(func() { close(m.drained) }) }

// Backoff of the starts of a slot after failed ones.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// replace starts a worker for slot s, again and again with backoff while
// starts fail; sup.mu is held.
func (sup *supervisor) replace(s *slot) {
	s.m, s.starting = nil, true
	sup.wg.Go(func() {
		for {
			m, err := sup.start(sup.ctx)
			if err == nil {
				sup.install(s, m)
				return
			}
			sup.mu.Lock()
			if sup.closed {
				s.starting = false
				sup.wake()
				sup.mu.Unlock()
				return
			}
			s.failures++
			sup.lastErr = err
			sup.startErr++
			backoff := min(firstBackoff<<min(s.failures-1, 10), maxBackoff)
			sup.wake() // callers with no live worker fail now
			sup.mu.Unlock()
			sup.o.logger.Error("proc: a replacement worker failed to start; trying again", "name", sup.name, "slot", s.index, "failures", s.failures, "backoff", backoff, "err", err)
			select {
			case <-time.After(backoff):
			case <-sup.ctx.Done():
			}
		}
	})
}

// install puts m, just started, in slot s once it has every constant
// shared so far (sent outside the lock), or closes it if the supervisor
// was closed meanwhile.
func (sup *supervisor) install(s *slot, m *member) {
	for {
		sup.mu.Lock()
		if sup.closed {
			s.starting = false
			sup.watch(m)
			m.drain()
			sup.wake()
			sup.mu.Unlock()
			return
		}
		missing := slices.Clone(sup.liveShared(m.sharedN))
		if len(missing) == 0 {
			s.starting, s.failures = false, 0
			s.m = m
			sup.watch(m)
			sup.wake()
			sup.mu.Unlock()
			return
		}
		m.sharedN = sup.sharedN
		sup.mu.Unlock()
		sup.sendConstants(m, missing)
	}
}

// died handles the end of m: its slot gets a replacement, as MaxRestarts
// allows. (Its tasks have had their lost frames from the session.)
func (sup *supervisor) died(m *member) {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	sup.diedLocked(m)
}

// diedLocked is died with sup.mu held. It runs at the first lost frame of
// m's tasks too, so that a caller that sees its task lost sees the
// supervisor's stats and replacement already under way.
func (sup *supervisor) diedLocked(m *member) {
	if m.gone {
		return
	}
	m.gone = true
	err := m.w.deadErr
	sup.draining = slices.DeleteFunc(sup.draining, func(x *member) bool { return x == m })
	for _, s := range sup.slots {
		if s.m != m {
			continue
		}
		s.m = nil
		if sup.closed {
			break
		}
		if sup.o.maxRestarts >= 0 && sup.restarts >= sup.o.maxRestarts {
			s.down = err
			sup.lastErr = err
			if sup.o.maxRestarts > 0 {
				sup.o.logger.Error("proc: a worker died and is not replaced: MaxRestarts reached", "name", sup.name, "slot", s.index, "restarts", sup.restarts, "err", err)
			}
			break
		}
		sup.o.logger.Warn("proc: a worker died; starting a replacement", "name", sup.name, "slot", s.index, "err", err)
		sup.restarts++
		sup.replace(s)
	}
	sup.wake()
}

// wake lets waiting callers look for a worker again; sup.mu is held.
func (sup *supervisor) wake() {
	if sup.waiters > 0 {
		close(sup.changed)
		sup.changed = make(chan struct{})
		sup.waiters = 0
	}
}

// dispatch reserves room for a task at the live worker with the fewest
// tasks, waiting while every worker is full, or starting for the first
// time. It fails when no worker is left, or when none is live and the last
// start failed (starts go on in the background).
func (sup *supervisor) dispatch(ctx context.Context, inRefs []shm.Ref) (*task, error) {
	sup.mu.Lock()
	for {
		if sup.closed {
			sup.mu.Unlock()
			return nil, ErrClosed
		}
		var best *member
		// A worker is live, or starting without having failed, or being
		// recycled or killed (its tasks may come back to run elsewhere).
		waitable := len(sup.draining) > 0
		for _, s := range sup.slots {
			m := s.m
			if m != nil || s.starting && s.failures == 0 {
				waitable = true
			}
			if m == nil || m.retired || m.doomed || len(m.tasks) >= sup.o.inFlight {
				continue
			}
			if best == nil || len(m.tasks) < len(best.tasks) {
				best = m
			}
		}
		if best != nil {
			t := &task{m: best, inRefs: inRefs}
			best.tasks[t] = true
			best.served++
			if sup.o.maxCalls > 0 && best.served >= int64(sup.o.maxCalls) {
				sup.recycle(best)
			}
			sup.mu.Unlock()
			return t, nil
		}
		if !waitable {
			err := sup.lastErr
			down := true
			for _, s := range sup.slots {
				down = down && s.down != nil
			}
			sup.mu.Unlock()
			if down {
				return nil, fmt.Errorf("proc: %q has no workers left: %w", sup.name, err)
			}
			return nil, fmt.Errorf("proc: %q has no live worker (starting one failed; trying again): %w", sup.name, err)
		}
		sup.waiters++
		ch := sup.changed
		sup.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			sup.mu.Lock()
			if sup.changed == ch { // still counted
				sup.waiters--
			}
			sup.mu.Unlock()
			return nil, ctx.Err()
		}
		sup.mu.Lock()
	}
}

// recycle retires m, which has served its tasks, and starts its
// replacement; sup.mu is held.
func (sup *supervisor) recycle(m *member) {
	m.retired = true
	sup.recycled++
	sup.draining = append(sup.draining, m)
	for _, s := range sup.slots {
		if s.m == m {
			sup.replace(s)
		}
	}
}

// send opens t's exchange x at its worker with a frame of type typ (a
// Request or an Open) whose body is a head and the payload (see
// withHead), and writes it. A worker that cannot be written to is dying:
// x then gets the lost frame of its death, like every exchange.
func (sup *supervisor) send(t *task, x *exchange, typ wire.Type, body []byte) {
	m := t.m
	t.x, t.sup = x, sup
	x.owner = t
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	sup.mu.Lock()
	if !m.tasks[t] {
		sup.mu.Unlock()
		x.deliver(frame{err: ErrClosed, lost: true})
		return
	}
	if err := m.w.s.open(x); err != nil {
		sup.mu.Unlock()
		x.deliver(frame{err: err, lost: true})
		return
	}
	t.queued = true
	t.seq = m.sent
	m.sent++
	m.queue = append(m.queue, t)
	alone := len(m.queue) == 1
	sup.arm(m)
	sup.mu.Unlock()
	// The only task at its worker is written by this goroutine: no hop to
	// the writing goroutine on the way out. Others are queued for it, to
	// go out many per system call. A failed write means a dying worker,
	// whose death the session reports to x.
	if alone {
		_ = m.w.s.w.SendNow(typ, x.id, body)
	} else {
		_ = m.w.s.w.Send(typ, x.id, body)
	}
}

// withHead starts the body of a Request or an Open with its head, with
// room for a small payload to be appended.
func withHead(h wire.Head) []byte { return wire.AppendHead(make([]byte, 0, 64), h) }

// ended is the last frame of t's exchange.
func (t *task) ended(f frame) frame {
	t.sup.finished(t, &f)
	return f
}

// finished takes t off its worker when its last frame has come (or its
// worker's death); on the session's reading goroutine.
func (sup *supervisor) finished(t *task, f *frame) {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	m := t.m
	if f.lost {
		// Its connection is gone: no more tasks for it, until its
		// watcher replaces it.
		m.doomed = true
		sup.markRunning(m)
		if m.w.deadErr != nil { // the session ended (not a task refused before it was sent)
			sup.diedLocked(m)
		}
		t.closed = sup.closed
		switch {
		case t.timedOut: // counted as a timeout
		case t.started:
			sup.lost++
		default:
			sup.requeued++
		}
	}
	delete(m.tasks, t)
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.queued {
		m.queue = slices.DeleteFunc(m.queue, func(x *task) bool { return x == t })
		sup.arm(m)
	}
	if t.inRefs != nil {
		discardRefs(sup.o.arena, t.inRefs)
		t.inRefs = nil
	}
	if t.abandoned {
		f.release()
	}
	if m.retired && len(m.tasks) == 0 {
		m.drain()
	}
	sup.wake()
}

// markRunning marks the tasks m had started when it died: the worker
// counts what it starts in the order it arrived (startCounter), and the
// tasks were sent in the order of their seq. The others had not started,
// and run elsewhere. sup.mu is held.
func (sup *supervisor) markRunning(m *member) {
	if m.marked {
		return
	}
	m.marked = true
	started := m.w.started.n.Load()
	for _, t := range m.queue {
		t.started = t.seq < started
	}
}

// arm starts the deadline of the tasks that m is running: the first
// Concurrency of its queue. sup.mu is held.
func (sup *supervisor) arm(m *member) {
	if sup.o.callTimeout <= 0 || m.gone || m.doomed || sup.closed {
		return
	}
	for _, t := range m.queue[:min(len(m.queue), sup.o.concurrency)] {
		if t.timer == nil {
			t.due = time.Now().Add(sup.o.callTimeout)
			t.timer = time.AfterFunc(sup.o.callTimeout, func() { sup.timedOut(t) })
		}
	}
}

// rearm restarts the deadline of a stream task whose caller waits for
// its next output (FlatPool: the limit is per output).
func (sup *supervisor) rearm(t *task) {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	if t.timer != nil && !t.m.doomed {
		t.paused = false
		t.due = time.Now().Add(sup.o.callTimeout)
		t.timer.Reset(sup.o.callTimeout)
	}
}

// pause stops the deadline of a stream task while its caller consumes
// what came: the worker has made progress.
func (sup *supervisor) pause(t *task) {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	if t.timer != nil {
		t.paused = true
		t.timer.Stop()
	}
}

// timedOut kills the worker of t, which outlived its deadline. Its tasks
// end with the worker's death: t with a *TimeoutError, those it was
// running as lost, the others run elsewhere.
func (sup *supervisor) timedOut(t *task) {
	sup.mu.Lock()
	m := t.m
	if !m.tasks[t] || m.doomed || t.paused || time.Now().Before(t.due) {
		sup.mu.Unlock()
		return // answered, dying already, or re-armed after this timer fired
	}
	// The tasks it was running are marked when it is dead, once every
	// reply it sent has been read.
	m.doomed = true
	t.timedOut = true
	sup.timeouts++
	sup.wake() // no more tasks for it
	sup.mu.Unlock()
	reason := fmt.Sprintf("a call exceeded the call timeout of %v", sup.o.callTimeout)
	sup.o.logger.Warn("proc: killing a worker", "name", sup.name, "pid", m.w.pid, "reason", reason)
	m.w.kill(reason)
}

// abandon marks t, whose caller has gone, so that what comes for it is
// released, and cancels it in the worker: the function's context ends. It
// reports whether t was still live: if not, its last frame has been taken
// by finished, and is on its way to the caller, who must release it.
func (sup *supervisor) abandon(t *task) bool {
	sup.mu.Lock()
	t.abandoned = true
	live := t.m.tasks[t]
	sup.mu.Unlock()
	if live && t.x != nil {
		_ = t.m.w.s.w.SendNow(wire.Cancel, t.x.id, nil)
	}
	return live
}

// sendConstants sends a worker that was starting while Share ran the
// constants it was started without (nobody waits for the replies; a
// worker that cannot map one exits).
func (sup *supervisor) sendConstants(m *member, cs []sharedConstant) {
	for _, sc := range cs {
		x := &exchange{reply: make(chan frame, 1)}
		if err := m.w.s.open(x); err != nil {
			return
		}
		sendConstant(m, x, sc.c)
	}
}

// sendConstant writes the request x that hands c to m's worker. A failed
// write is a dying worker: x gets its death.
func sendConstant(m *member, x *exchange, c *shm.Constant) {
	head := wire.AppendHead(nil, wire.Head{Op: wire.OpConstant})
	_ = m.w.s.w.SendFD(wire.Request, x.id, append(head, c.Name()...), c.FD())
}

// share hands constants to every live worker; see Pool.Share.
func (sup *supervisor) share(ctx context.Context, owner string, cs []*shm.Constant) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	type request struct {
		m *member
		c *shm.Constant
		x *exchange
	}
	var reqs []request
	sup.mu.Lock()
	if sup.closed {
		sup.mu.Unlock()
		return ErrClosed
	}
	if err := checkShare(owner, sup.names, cs); err != nil {
		sup.mu.Unlock()
		return fmt.Errorf("proc: %q: Share: %w", sup.name, err)
	}
	for _, c := range cs {
		sup.names[c.Name()] = true
		sup.sharedN++
		sup.shared = append(sup.shared, sharedConstant{c: c, n: sup.sharedN})
	}
	for _, s := range sup.slots {
		if s.m == nil || s.m.retired || s.m.doomed {
			continue // it takes no more tasks
		}
		s.m.sharedN = sup.sharedN
		for _, c := range cs {
			reqs = append(reqs, request{m: s.m, c: c, x: &exchange{reply: make(chan frame, 1)}})
		}
	}
	sup.mu.Unlock()
	var errs []error
	for _, r := range reqs {
		if err := r.m.w.s.open(r.x); err != nil {
			continue // it died: its replacement inherits c
		}
		sendConstant(r.m, r.x, r.c)
	}
	for _, r := range reqs {
		if r.x.id == 0 {
			continue
		}
		select {
		case f := <-r.x.reply:
			// Every request gets exactly one frame: its reply, or the
			// worker's death, after any reply it sent.
			if f.t == wire.ReplyErr {
				errs = append(errs, decodeError(sup.name, r.m.w.pid, f.body))
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// request sends a host or instance request to m and waits for its reply.
func (sup *supervisor) request(ctx context.Context, m *member, head wire.Head, payload []byte) ([]byte, error) {
	sup.mu.Lock()
	closed := sup.closed
	sup.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	x := &exchange{reply: make(chan frame, 1)}
	if err := m.w.s.open(x); err != nil {
		return nil, err
	}
	_ = m.w.s.w.SendNow(wire.Request, x.id, append(wire.AppendHead(nil, head), payload...))
	select {
	case f := <-x.reply:
		switch {
		case f.lost:
			return nil, f.err
		case f.t == wire.ReplyErr:
			return nil, decodeError(sup.name, m.w.pid, f.body)
		}
		return f.body, nil
	case <-ctx.Done():
		_ = m.w.s.w.SendNow(wire.Cancel, x.id, nil)
		return nil, ctx.Err()
	}
}

// close stops every worker; what is in progress ends with ErrClosed.
func (sup *supervisor) close() {
	sup.closeOnce.Do(func() {
		sup.mu.Lock()
		sup.closed = true
		sup.cancel() // stops replacements being started
		for _, m := range sup.members() {
			m.drain()
		}
		if sup.waiters > 0 {
			close(sup.changed)
			sup.changed = make(chan struct{})
			sup.waiters = 0
		}
		sup.mu.Unlock()
		sup.wg.Wait()
	})
}

// members returns every worker; sup.mu is held.
func (sup *supervisor) members() []*member {
	var all []*member
	for _, s := range sup.slots {
		if s.m != nil {
			all = append(all, s.m)
		}
	}
	return append(all, sup.draining...)
}

// lostErr turns the lost frame of a task into the error its caller gets,
// and says whether the task may run again elsewhere without using a retry.
func (t *task) lostErr(f frame, name string, limit time.Duration) (err error, requeue bool) {
	switch {
	case t.closed:
		return ErrClosed, false
	case t.timedOut:
		return &TimeoutError{Name: name, What: "call", Limit: limit.String()}, false
	case !t.started:
		return f.err, true
	}
	return f.err, false
}
