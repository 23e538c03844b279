package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/retry"
)

// Run builds the job for params and runs it with the backend and the
// failure policy of opts, and returns the Result: one entry per index, in
// index order. The error is non-nil when the run was stopped: an
// *IndexError under FailFast, or the context's error (wrapped) when ctx
// ended; the partial Result comes with it. Invalid input (a job without a
// source or sink, a negative length, bad options, a checkpoint that cannot
// begin) returns a nil Result.
func (d *Definition[P, T, R]) Run(ctx context.Context, params P, opts ...Option) (*Result[R], error) {
	o := newOptions(opts)
	if d == nil {
		return nil, errors.New("batch: Run on a nil Definition")
	}
	if len(o.errs) > 0 {
		return nil, fmt.Errorf("batch: job %q: %w", d.name, errors.Join(o.errs...))
	}
	if o.resume && o.checkpoint == nil {
		return nil, fmt.Errorf("batch: job %q: Resume needs WithCheckpoint", d.name)
	}
	j, err := d.compile(params)
	if err != nil {
		if o.checkpoint != nil {
			err = errors.Join(err, o.checkpoint.Close())
		}
		return nil, err
	}
	start := time.Now()
	dr, runErr := dispatch(ctx, j, o)
	if dr == nil {
		return nil, runErr
	}
	res := &Result[R]{Job: d.name, ID: j.id, Indices: make([]IndexResult[R], len(dr.st)), states: map[string]any{}}
	for i := range dr.st {
		s := &dr.st[i]
		x := IndexResult[R]{Index: i, OK: s.ok, Attempts: s.attempts, Worker: s.worker, Resumed: s.resumed, Started: s.started, Finished: s.finished}
		switch {
		case s.ok:
			x.Output, _ = s.value.(R)
			res.Done++
			if s.resumed {
				res.Resumed++
			}
		case s.notRun:
			x.Err = &IndexError{Job: d.name, Index: i, Attempts: s.attempts, Worker: s.worker, Err: s.err}
			res.NotRun++
		default:
			x.Err = &IndexError{Job: d.name, Index: i, Attempts: s.attempts, Worker: s.worker, Err: s.err}
			res.Failed++
		}
		res.Indices[i] = x
	}
	for k, name := range j.names {
		res.states[name] = dr.merged[k]
	}
	res.Duration = time.Since(start)
	return res, runErr
}

// indexState is the dispatcher's record of one index.
type indexState struct {
	terminal          bool // ok, failed for good, or not run
	ok, notRun        bool
	resumed           bool
	value             any
	states            []any
	err               error
	attempts          int
	worker            string
	started, finished time.Time
	retryAt           time.Time // a retry waits until then (RetryBackoff)
}

// unit is work waiting for dispatch: indices to run in one task.
type unit struct {
	indices []int
	ordered bool
}

// taskRun is one task in flight, and then its result.
type taskRun struct {
	task    Task
	attempt []int    // attempt number of each index
	workers []string // set by started
	begun   []bool   // set by started
	started func(int, string)
	outs    []Outcome
	err     error
}

func (t *taskRun) pos(i int) int {
	k, ok := slices.BinarySearch(t.task.Indices, i)
	if !ok {
		return -1
	}
	return k
}

const (
	maxChunk   = 64                   // indices per task, at most
	targetTask = 2 * time.Millisecond // the work a chunk should hold
)

// dispatcher runs one job: the single place where tasks are formed, and
// where retries, the failure policy, results, the checkpoint and events
// are decided, whatever the backend.
type dispatcher struct {
	job    erasedJob
	spec   JobSpec
	o      *options
	log    *slog.Logger
	target time.Duration // the work a chunk should hold

	st     []indexState
	plain  []int  // ungrouped indices, ascending
	groups []unit // partition groups, by first index
	retry  []unit // failed attempts to run again, first come first served
	// suspects were lost with a worker along with other indices; each
	// runs alone, so that a loss says who caused it.
	suspects      []unit
	aloneInFlight bool
	perIndex      time.Duration // moving average of the time per index

	exec     Executor
	slots    int
	inflight int
	tasks    chan *taskRun
	results  chan *taskRun
	execCtx  context.Context
	cancel   context.CancelFunc
	stopping bool
	stopErr  error // why the run stopped, for Run to return

	evMu sync.Mutex // serializes observer calls
	obs  Observer

	merged []any
}

func dispatch(ctx context.Context, j erasedJob, o *options) (dr *dispatcher, err error) {
	n := j.length()
	d := &dispatcher{job: j, o: o, obs: o.observer, st: make([]indexState, n),
		log: o.logger.With("job", j.jobName(), "backend", o.backend.String())}
	d.spec = JobSpec{Name: j.jobName(), ID: j.jobID(), Params: j.paramsJSON(), Len: n, Timeout: o.timeout, Logger: o.logger, local: j}
	info := JobInfo{Name: j.jobName(), ID: j.jobID(), Len: n, Spec: j.specJSON()}

	if cp := o.checkpoint; cp != nil {
		defer func() {
			if cerr := cp.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("batch: job %q: checkpoint: %w", j.jobName(), cerr))
			}
		}()
		recs, berr := cp.Begin(ctx, info, o.resume)
		var changed *JobChangedError
		if o.restart && errors.As(berr, &changed) {
			d.log.Warn("batch: the job changed since the checkpoint was written; starting afresh",
				"changed", strings.Join(changed.Changed(), ","), "recorded", changed.Recorded.ID, "id", info.ID)
			recs, berr = cp.Begin(ctx, info, false)
		}
		if berr != nil {
			return nil, fmt.Errorf("batch: job %q: checkpoint: %w", j.jobName(), berr)
		}
		if o.resume && changed == nil {
			if len(recs) == 0 {
				d.log.Info("batch: nothing to resume: the checkpoint holds no finished index of this job; every index runs", "id", info.ID)
			}
			d.resume(recs)
		}
	}
	resumed := 0
	for i := range d.st {
		if d.st[i].resumed {
			resumed++
		}
	}
	if d.obs != nil {
		d.obs.Begin(info, resumed)
		defer d.obs.End()
	}
	if err := d.plan(); err != nil {
		return nil, err
	}
	d.log.Debug("batch: run starts", "id", j.jobID(), "indices", n, "resumed", resumed)

	if resumed < n {
		exec, err := o.backend.Open(ctx, d.spec)
		if err != nil {
			return nil, fmt.Errorf("batch: job %q: starting backend %s: %w", j.jobName(), o.backend, err)
		}
		d.exec = exec
		d.slots = max(exec.Slots(), 1)
		d.target = targetTask
		if ts, ok := exec.(TaskSizer); ok {
			d.target = max(ts.TaskDuration(), targetTask)
		}
		d.loop(ctx)
		if err := exec.Close(); err != nil {
			d.log.Warn("batch: closing the backend failed", "err", err)
		}
	}
	d.finish()
	return d, d.stopErr
}

// resume marks the indices that recs say succeeded.
func (d *dispatcher) resume(recs []Record) {
	for _, r := range recs {
		if !r.OK || r.Index < 0 || r.Index >= len(d.st) {
			if r.OK {
				d.log.Warn("batch: ignoring a checkpoint record for an index out of range", "index", r.Index, "len", len(d.st))
			}
			continue
		}
		v, err := d.job.decodeOutput(r.Output)
		var states []any
		if err == nil {
			states, err = d.job.decodeStates(r.State)
		}
		if err != nil {
			d.log.Warn("batch: a checkpoint record cannot be decoded; running the index again", "index", r.Index, "err", err)
			continue
		}
		d.st[r.Index] = indexState{terminal: true, ok: true, resumed: true, value: v, states: states,
			attempts: r.Attempts, worker: r.Worker, started: r.Started, finished: r.Finished}
	}
}

// plan sorts the indices to run into partition groups and the rest.
func (d *dispatcher) plan() error {
	p := d.job.partitioner()
	byKey := map[int]int{} // key → position in d.groups
	for i := range d.st {
		if d.st[i].terminal {
			continue
		}
		key := -1
		if p != nil {
			key = p.Partition(i)
		}
		if key < 0 {
			d.plain = append(d.plain, i)
			continue
		}
		g, ok := byKey[key]
		if !ok {
			g = len(d.groups)
			byKey[key] = g
			d.groups = append(d.groups, unit{ordered: true})
		}
		d.groups[g].indices = append(d.groups[g].indices, i)
	}
	return nil
}

func (d *dispatcher) loop(ctx context.Context) {
	d.execCtx, d.cancel = context.WithCancel(ctx)
	defer d.cancel()
	d.tasks = make(chan *taskRun, d.slots)
	d.results = make(chan *taskRun, d.slots)
	var wg sync.WaitGroup
	for range d.slots {
		wg.Go(func() {
			for t := range d.tasks {
				t.outs, t.err = d.exec.Execute(d.execCtx, t.task, t.started)
				d.results <- t
			}
		})
	}
	defer func() {
		close(d.tasks)
		wg.Wait()
	}()
	done := ctx.Done()
	backoff := time.NewTimer(time.Hour)
	backoff.Stop()
	defer backoff.Stop()
	for {
		d.fill()
		wake, waiting := d.nextRetry()
		if d.inflight == 0 && !waiting {
			return
		}
		var retryDue <-chan time.Time
		if waiting {
			backoff.Reset(time.Until(wake))
			retryDue = backoff.C
		}
		select {
		case t := <-d.results:
			d.handle(t)
		case <-retryDue:
		case <-done:
			done = nil
			if d.stopErr == nil {
				d.stopErr = fmt.Errorf("batch: job %q: %w", d.job.jobName(), ctx.Err())
			}
			d.stop()
		}
	}
}

// fill dispatches work while there are free slots. Retries waiting for
// their backoff let other work go first.
func (d *dispatcher) fill() {
	now := time.Now()
	for !d.stopping && d.inflight < d.slots && !d.aloneInFlight {
		if k := d.due(d.suspects, now); k >= 0 {
			if d.inflight > 0 {
				return // wait until nothing else runs
			}
			u := d.suspects[k]
			d.suspects = slices.Delete(d.suspects, k, k+1)
			d.aloneInFlight = true
			d.send(u, true)
			return
		}
		u, ok := d.next(now)
		if !ok {
			return
		}
		d.send(u, false)
	}
}

// due returns the position of the first unit of us whose backoff is over
// at now, or -1.
func (d *dispatcher) due(us []unit, now time.Time) int {
	for k, u := range us {
		if !d.retryAt(u).After(now) {
			return k
		}
	}
	return -1
}

// retryAt is when u may run: once every index of it has waited its
// backoff.
func (d *dispatcher) retryAt(u unit) time.Time {
	var at time.Time
	for _, i := range u.indices {
		if t := d.st[i].retryAt; t.After(at) {
			at = t
		}
	}
	return at
}

// nextRetry returns the earliest time a retry waiting for its backoff may
// run, if one is waiting and the run goes on.
func (d *dispatcher) nextRetry() (at time.Time, waiting bool) {
	if d.stopping {
		return at, false
	}
	for _, us := range [][]unit{d.retry, d.suspects} {
		for _, u := range us {
			if t := d.retryAt(u); !waiting || t.Before(at) {
				at, waiting = t, true
			}
		}
	}
	return at, waiting
}

// next takes the next unit of work: retries whose backoff is over first,
// then groups and chunks of ungrouped indices, in the order of their first
// index.
func (d *dispatcher) next(now time.Time) (unit, bool) {
	if k := d.due(d.retry, now); k >= 0 {
		u := d.retry[k]
		d.retry = slices.Delete(d.retry, k, k+1)
		return u, true
	}
	switch {
	case len(d.groups) > 0 && (len(d.plain) == 0 || d.groups[0].indices[0] < d.plain[0]):
		u := d.groups[0]
		d.groups = d.groups[1:]
		return u, true
	case len(d.plain) > 0:
		k := 1
		if d.perIndex > 0 {
			k = int(d.target / d.perIndex)
		}
		k = min(max(k, 1), maxChunk, (len(d.plain)+d.slots-1)/d.slots)
		u := unit{indices: d.plain[:k:k]}
		d.plain = d.plain[k:]
		return u, true
	}
	return unit{}, false
}

// send dispatches u as one task.
func (d *dispatcher) send(u unit, alone bool) {
	n := len(u.indices)
	t := &taskRun{
		task:    Task{Indices: u.indices, Ordered: u.ordered, StopOnError: u.ordered && d.o.retries > 0, Alone: alone},
		attempt: make([]int, n),
		workers: make([]string, n),
		begun:   make([]bool, n),
	}
	for k, i := range u.indices {
		t.attempt[k] = d.st[i].attempts + 1
	}
	t.started = func(i int, worker string) {
		k := t.pos(i)
		if k < 0 {
			return
		}
		t.workers[k], t.begun[k] = worker, true
		d.event(Event{Kind: EventStart, Index: i, Worker: worker, Attempt: t.attempt[k], Time: time.Now()})
	}
	d.inflight++
	d.tasks <- t
}

func (d *dispatcher) event(e Event) {
	if d.obs == nil {
		return
	}
	d.evMu.Lock()
	defer d.evMu.Unlock()
	d.obs.Event(e)
}

// handle takes the result of a task.
func (d *dispatcher) handle(t *taskRun) {
	d.inflight--
	if t.task.Alone {
		d.aloneInFlight = false
	}
	if t.err == nil && len(t.outs) > 0 {
		// The work per index, as the worker timed it: a backend whose
		// round trip is long (a message queue) must not be held to
		// one-index tasks by its own latency.
		var work time.Duration
		for _, o := range t.outs {
			work += o.Finished.Sub(o.Started)
		}
		per := max(work/time.Duration(len(t.outs)), time.Microsecond)
		if d.perIndex == 0 {
			d.perIndex = per
		} else {
			d.perIndex = (3*d.perIndex + per) / 4
		}
	}
	covered := make([]bool, len(t.task.Indices))
	retryHead := -1 // an ordered task stopped at this index, to be retried
	for _, o := range t.outs {
		k := t.pos(o.Index)
		if k < 0 || covered[k] {
			d.log.Error("batch: the backend returned an outcome for an index not in its task; ignored", "index", o.Index)
			continue
		}
		covered[k] = true
		if o.Worker == "" {
			o.Worker = t.workers[k]
		}
		if d.outcome(o, t.attempt[k]) {
			if t.task.Ordered {
				retryHead = o.Index // the last outcome: the task stopped there
			} else {
				d.queueRetry(unit{indices: []int{o.Index}}, false)
			}
		}
	}
	var rest []int // indices of the task without an outcome
	for k, i := range t.task.Indices {
		if !covered[k] {
			rest = append(rest, i)
		}
	}
	switch {
	case len(rest) == 0:
		if retryHead >= 0 {
			d.queueRetry(unit{indices: []int{retryHead}, ordered: true}, false)
		}
	case t.err == nil: // an ordered task that stopped at a failure
		if retryHead >= 0 {
			rest = append([]int{retryHead}, rest...)
		}
		d.queueRetry(unit{indices: rest, ordered: true}, false)
	case d.execCtx.Err() != nil:
		// The run is stopping: what was lost was not run, nor will
		// retryHead be retried.
	case t.task.Alone:
		d.lostAlone(t, rest)
	default:
		d.lostWithOthers(t, rest)
	}
}

// queueRetry queues u to run again (alone: as a suspect).
func (d *dispatcher) queueRetry(u unit, alone bool) {
	if d.stopping {
		return
	}
	if alone {
		d.suspects = append(d.suspects, u)
	} else {
		d.retry = append(d.retry, u)
	}
}

// outcome records the outcome of one attempt at an index, and reports
// whether it is to be retried.
func (d *dispatcher) outcome(o Outcome, attempt int) (again bool) {
	i := o.Index
	if o.OK && !o.local {
		v, err := d.job.decodeOutput(o.Output)
		var states []any
		if err == nil {
			states, err = d.job.decodeStates(o.State)
		}
		if err != nil {
			o.OK, o.Err = false, err
		} else {
			o.value, o.states = v, states
		}
	}
	var rec Record
	if o.OK && d.o.checkpoint != nil {
		out, err := o.Output, error(nil)
		state := o.State
		if o.local {
			out, err = d.job.encodeOutput(o.value)
			if err == nil {
				state, err = d.job.encodeStates(o.states)
			}
		}
		if err != nil {
			o.OK, o.Err = false, err
		} else {
			rec = Record{Index: i, OK: true, Output: out, State: state}
		}
	}
	s := &d.st[i]
	s.attempts, s.worker, s.started, s.finished = attempt, o.Worker, o.Started, o.Finished
	if !o.OK {
		return d.failed(i, o.Err, attempt, o.Worker)
	}
	s.terminal, s.ok, s.value, s.states, s.err = true, true, o.value, o.states, nil
	if d.o.checkpoint != nil {
		rec.Attempts, rec.Worker, rec.Started, rec.Finished = attempt, o.Worker, o.Started, o.Finished
		d.o.checkpoint.Record(rec)
	}
	d.event(Event{Kind: EventDone, Index: i, Worker: o.Worker, Attempt: attempt, Time: o.Finished})
	return false
}

// failed records a failed attempt at index i and reports whether it is to
// be retried; under FailFast, a final failure stops the run.
func (d *dispatcher) failed(i int, err error, attempt int, worker string) (again bool) {
	s := &d.st[i]
	s.attempts, s.worker, s.err = attempt, worker, err
	if d.execCtx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		// Interrupted by the end of the run, not a failure of its own.
		return false
	}
	permanent := retry.IsPermanent(err)
	final := d.stopping || attempt >= 1+d.o.retries || permanent
	d.event(Event{Kind: EventFailed, Index: i, Worker: worker, Attempt: attempt, Final: final, Err: err, Time: time.Now()})
	if !final {
		wait := d.o.backoff.Delay(attempt)
		s.retryAt = time.Now().Add(wait)
		d.log.Warn("batch: attempt failed; retrying", "index", i, "attempt", attempt, "worker", worker, "backoff", wait, "err", err)
		return true
	}
	s.terminal = true
	attrs := []any{"index", i, "attempts", attempt, "worker", worker, "err", err}
	if permanent {
		attrs = append(attrs, "permanent", true)
	}
	d.log.Error("batch: index failed", attrs...)
	if cp := d.o.checkpoint; cp != nil {
		cp.Record(Record{Index: i, Err: err.Error(), Attempts: attempt, Worker: worker, Started: s.started, Finished: s.finished})
	}
	if d.o.failFast && !d.stopping {
		d.stopErr = &IndexError{Job: d.job.jobName(), Index: i, Attempts: attempt, Worker: worker, Err: err}
		d.stop()
	}
	return false
}

// lostAlone handles a task that ran alone and was lost: its first index
// without an outcome was running, and is the cause.
func (d *dispatcher) lostAlone(t *taskRun, rest []int) {
	i := rest[0]
	k := t.pos(i)
	worker := t.workers[k]
	d.st[i].started, d.st[i].finished = time.Time{}, time.Now()
	again := d.failed(i, t.err, t.attempt[k], worker)
	switch {
	case again:
		d.queueRetry(unit{indices: rest, ordered: t.task.Ordered}, true)
	case len(rest) > 1:
		d.queueRetry(unit{indices: rest[1:], ordered: true}, false)
	}
}

// lostWithOthers handles a task lost with a worker that other tasks may
// have shared: its indices run again, alone, and this attempt does not
// count.
func (d *dispatcher) lostWithOthers(t *taskRun, rest []int) {
	d.log.Warn("batch: indices lost with their worker; running each again alone", "indices", len(rest), "first", rest[0], "err", t.err)
	for _, i := range rest {
		k := t.pos(i)
		if t.begun[k] {
			d.event(Event{Kind: EventFailed, Index: i, Worker: t.workers[k], Attempt: t.attempt[k], Err: t.err, Time: time.Now()})
		}
	}
	if t.task.Ordered {
		d.queueRetry(unit{indices: rest, ordered: true}, true)
		return
	}
	for _, i := range rest {
		d.queueRetry(unit{indices: []int{i}}, true)
	}
}

// stop stops the run: nothing more is dispatched, and what runs is
// cancelled.
func (d *dispatcher) stop() {
	d.stopping = true
	d.cancel()
}

// finish marks what did not end as not run, and merges the states.
func (d *dispatcher) finish() {
	var why error
	var ie *IndexError
	switch {
	case errors.As(d.stopErr, &ie):
		why = fmt.Errorf("%w: the run stopped after index %d failed", ErrNotRun, ie.Index)
	case d.stopErr != nil:
		why = fmt.Errorf("%w: %w", ErrNotRun, errors.Unwrap(d.stopErr))
	default:
		why = ErrNotRun
	}
	perIndex := make([][]any, len(d.st))
	for i := range d.st {
		s := &d.st[i]
		if !s.terminal {
			s.terminal, s.notRun, s.err = true, true, why
		}
		if s.ok {
			perIndex[i] = s.states
		}
	}
	d.merged = d.job.mergeStates(perIndex)
}
