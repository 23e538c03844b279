package proc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/retry"
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
// runs that stage in worker processes, with the results, errors and
// cancellation it has in a goroutine. Each call goes to the live worker
// with the fewest calls in flight; each worker holds up to InFlight calls
// (at least Concurrency), so that it never idles for a round trip, and runs
// Concurrency of them at once. A worker that dies, or that is killed
// because a call outlived CallTimeout, is replaced (see MaxRestarts): the
// calls it was running fail with its *WorkerError (or run again elsewhere
// with Retries), and those it held but had not started run elsewhere. A
// worker that has served MaxCallsPerWorker calls is recycled. A Pool is
// safe for concurrent use.
type Pool[In, Out any] struct {
	sup      *supervisor
	input    callInput[In]
	out      Codec[Out]
	outSplit *splitter[Out]

	calls, failures, retries atomic.Int64
}

// PoolStats describes a pool at one moment.
type PoolStats struct {
	Name          string        // the registered function
	Workers       []WorkerStats // the live workers, by slot, then those being recycled
	Calls         int64         // calls that returned, successful or not
	Failures      int64         // calls that returned an error, of any kind
	Timeouts      int64         // calls that outlived CallTimeout (their workers were killed)
	Lost          int64         // call attempts that were running at a worker that died
	Requeued      int64         // call attempts that had not started at a worker that died, run elsewhere
	Retries       int64         // attempts run again after a failure (see Retries)
	Restarts      int           // workers replaced after dying or being killed
	Recycled      int           // workers replaced after MaxCallsPerWorker calls
	StartFailures int64         // replacement workers that failed to start (each is tried again)
	Starting      int           // replacement workers being started
	Down          int           // slots left without a worker (MaxRestarts reached)
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
	return fmt.Sprintf("pool %q: %d workers (pids %v), %d starting, %d down; %d calls, %d failed, %d timed out, %d lost, %d requeued, %d retried; %d restarts, %d recycled",
		s.Name, len(s.Workers), pids, s.Starting, s.Down, s.Calls, s.Failures, s.Timeouts, s.Lost, s.Requeued, s.Retries, s.Restarts, s.Recycled)
}

// NewPool starts Workers worker processes serving fn, in parallel, and
// returns once all are ready. ctx bounds the start only: the pool lives
// until Close. If a worker fails to start, the others are stopped and the
// error is returned.
func NewPool[In, Out any](ctx context.Context, fn *Function[In, Out], opts ...PoolOption) (*Pool[In, Out], error) {
	if fn == nil {
		return nil, errors.New("proc: NewPool with a nil Function")
	}
	if _, err := lookup(fn.name, kindFunc); err != nil {
		return nil, err
	}
	sup, err := startPool(ctx, kindFunc, fn.name, poolOptions(opts))
	if err != nil {
		return nil, err
	}
	return &Pool[In, Out]{sup: sup, input: newCallInput(fn.in), out: fn.out, outSplit: newSplitter(fn.out)}, nil
}

// startPool checks the options of a pool and starts its supervisor.
func startPool(ctx context.Context, kind, name string, o *options) (*supervisor, error) {
	switch {
	case o.workers < 1:
		return nil, fmt.Errorf("proc: pool %q: Workers(%d), want ≥ 1", name, o.workers)
	case o.inFlight < 1:
		return nil, fmt.Errorf("proc: pool %q: InFlight(%d), want ≥ 1", name, o.inFlight)
	case o.concurrency < 1:
		return nil, fmt.Errorf("proc: pool %q: Concurrency(%d), want ≥ 1", name, o.concurrency)
	case o.maxCalls < 0:
		return nil, fmt.Errorf("proc: pool %q: MaxCallsPerWorker(%d), want ≥ 0", name, o.maxCalls)
	case o.callTimeout < 0:
		return nil, fmt.Errorf("proc: pool %q: CallTimeout(%v), want ≥ 0", name, o.callTimeout)
	case o.retries < 0:
		return nil, fmt.Errorf("proc: pool %q: Retries(%d), want ≥ 0", name, o.retries)
	case o.backoff.Validate() != nil:
		return nil, fmt.Errorf("proc: pool %q: RetryBackoff: %w", name, o.backoff.Validate())
	case o.buffer < 1:
		return nil, fmt.Errorf("proc: pool %q: BufferSize(%d), want ≥ 1", name, o.buffer)
	}
	// A worker cannot run more calls at once than it holds.
	o.inFlight = max(o.inFlight, o.concurrency)
	return newSupervisor(ctx, o, wire.Attach{Kind: kind, Name: name, Concurrency: o.concurrency})
}

// Call runs the function in a worker process and returns its result. It
// has the signature of a pipeline stage.
//
// The input is encoded first: if that fails, Call returns a *CodecError and
// nothing is sent. An error returned by the function comes back as a
// *RemoteError that matches what the function returned with errors.Is and
// errors.As (for registered errors: see RegisterErrors), so that
// pipeline.ErrSkip skips the item as it does in a goroutine; a panic comes
// back as a *RemoteError with its stack. The function's context ends when
// ctx does (its deadline travels with the call), within milliseconds,
// and Call returns ctx.Err() at once. A call that outlives CallTimeout
// fails with a *TimeoutError (its worker is killed and replaced); a call
// whose worker dies while running it fails with that worker's *WorkerError,
// unless Retries lets it run again. After Close, Call returns ErrClosed.
func (p *Pool[In, Out]) Call(ctx context.Context, in In) (Out, error) {
	var end func(CallEnd)
	if h := p.sup.o.callHook; h != nil {
		ctx, end = hook(h, ctx, p.sup.name)
	}
	var ce CallEnd
	out, err := p.call(ctx, in, &ce)
	p.calls.Add(1)
	if err != nil {
		p.failures.Add(1)
	}
	if end != nil {
		ce.Err = err
		end(ce)
	}
	return out, err
}

// hook runs a CallHook; a hook that returns no context leaves ctx as it was.
func hook(h CallHook, ctx context.Context, pool string) (context.Context, func(CallEnd)) {
	hctx, end := h(ctx, pool)
	if hctx == nil {
		hctx = ctx
	}
	return hctx, end
}

// deadline is ctx's deadline in Unix nanoseconds, or 0.
func deadline(ctx context.Context) int64 {
	if d, ok := ctx.Deadline(); ok {
		return max(d.UnixNano(), 1)
	}
	return 0
}

// call makes the call; ce learns its attempts and its last worker.
func (p *Pool[In, Out]) call(ctx context.Context, in In, ce *CallEnd) (Out, error) {
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	sup := p.sup
	arena := sup.o.arena
	md, err := meta.Outgoing(ctx)
	if err != nil {
		return zero, err
	}
	head := withHead(wire.Head{Op: wire.OpCall, Target: 1, Deadline: deadline(ctx), Meta: md})
	var body []byte
	for attempt := 0; ; {
		t, b, err := p.input.attempt(ctx, sup, head, in, body)
		if err != nil {
			return zero, err
		}
		body = b
		x := &exchange{reply: make(chan frame, 1), split: arena != nil}
		sup.send(t, x, wire.Request, body)
		ce.Attempts++
		ce.PID = t.m.w.pid
		var f frame
		select {
		case f = <-x.reply:
		case <-ctx.Done():
			if !sup.abandon(t) {
				f := <-x.reply // it came meanwhile: release what it holds
				f.release()
			}
			return zero, ctx.Err()
		}
		pid := t.m.w.pid
		switch {
		case f.lost:
			err, requeue := t.lostErr(f, sup.name, sup.o.callTimeout)
			if requeue && ctx.Err() == nil {
				continue
			}
			if again, werr := sup.retry(ctx, err, &attempt, &p.retries); again {
				continue
			} else if werr != nil {
				return zero, werr
			}
			return zero, err
		case f.t == wire.Reply:
			var out Out
			var err error
			switch {
			case arena == nil:
				out, err = p.out.Decode(f.body)
			case f.err != nil:
				err = f.err
			default:
				out, err = p.outSplit.decode(&f.split)
			}
			if err != nil {
				return zero, &CodecError{What: "output", Err: err}
			}
			return out, nil
		case f.t == wire.ReplyErr:
			err := decodeError(sup.name, pid, f.body)
			if again, werr := sup.retry(ctx, err, &attempt, &p.retries); again {
				continue
			} else if werr != nil {
				return zero, werr
			}
			return zero, err
		default:
			f.release()
			return zero, fmt.Errorf("proc: worker %q (pid %d) answered a call with %v", sup.name, pid, f.t)
		}
	}
}

// retry decides whether a call that failed with err runs again (see
// Retries) and, if so, counts the retry in *attempt and retries and waits
// as RetryBackoff says. If ctx ends during the wait, it returns ctx's
// error instead.
func (sup *supervisor) retry(ctx context.Context, err error, attempt *int, retries *atomic.Int64) (again bool, waitErr error) {
	if *attempt >= sup.o.retries || ctx.Err() != nil || !retryable(err) {
		return false, nil
	}
	*attempt++
	retries.Add(1)
	sup.o.logger.Info("proc: call failed; retrying", "name", sup.name, "retry", *attempt, "of", sup.o.retries, "err", err)
	if werr := sup.o.backoff.Wait(ctx, *attempt); werr != nil {
		return false, werr
	}
	return true, nil
}

// retryable reports whether a failure is one that Retries may repeat: the
// function's own error, a timeout or a dead worker, unless marked
// permanent or a skip.
func retryable(err error) bool {
	switch err.(type) {
	case *RemoteError, *TimeoutError, *WorkerError:
		return !retry.IsPermanent(err) && !errors.Is(err, pipeline.ErrSkip)
	}
	return false
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
	return p.sup.share(ctx, "the pool", cs)
}

// Stats returns the pool's counters and its workers.
func (p *Pool[In, Out]) Stats() PoolStats {
	st := p.sup.stats()
	st.Calls, st.Failures, st.Retries = p.calls.Load(), p.failures.Load(), p.retries.Load()
	return st
}

// stats returns the supervisor's part of PoolStats.
func (sup *supervisor) stats() PoolStats {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	st := PoolStats{
		Name:          sup.name,
		Timeouts:      sup.timeouts,
		Lost:          sup.lost,
		Requeued:      sup.requeued,
		Restarts:      sup.restarts,
		Recycled:      sup.recycled,
		StartFailures: sup.startErr,
		Waiting:       sup.waiters,
	}
	add := func(slot int, m *member) {
		st.InFlight += len(m.tasks)
		st.Workers = append(st.Workers, WorkerStats{Slot: slot, PID: m.w.pid, Calls: m.served, InFlight: len(m.tasks), Retiring: m.retired})
	}
	for _, s := range sup.slots {
		if s.m != nil {
			add(s.index, s.m)
		}
		if s.starting {
			st.Starting++
		}
		if s.down != nil {
			st.Down++
		}
	}
	for _, m := range sup.draining {
		add(-1, m)
	}
	return st
}

// Close fails the calls in progress and those waiting with ErrClosed, and
// stops every worker (see Grace). It returns when all of them have exited.
// Calling it again does nothing.
func (p *Pool[In, Out]) Close() error {
	p.sup.close()
	return nil
}

// FlatPool is a set of worker processes that serve a one-to-many function
// registered with FlatFunc. Its Call method has the signature of a
// pipeline.FlatPipe stage:
//
//	pool, err := proc.NewFlatPool(ctx, Split, proc.Workers(4))
//	...
//	pages := pipeline.FlatPipe(docs, pool.Call, pipeline.Concurrency(8))
//
// Each call streams its outputs from the worker as they are yielded, with
// credits (up to BufferSize outputs ahead of the consumer). Dispatch,
// supervision and options are those of Pool; CallTimeout bounds the
// worker's time to produce each output (see CallTimeout).
type FlatPool[In, Out any] struct {
	calls, failures, retries atomic.Int64

	sup   *supervisor
	input callInput[In]
	out   Codec[Out]
	split *splitter[Out]
}

// NewFlatPool starts Workers worker processes serving fn; see NewPool.
func NewFlatPool[In, Out any](ctx context.Context, fn *FlatFunction[In, Out], opts ...FlatPoolOption) (*FlatPool[In, Out], error) {
	if fn == nil {
		return nil, errors.New("proc: NewFlatPool with a nil FlatFunction")
	}
	if _, err := lookup(fn.name, kindFlat); err != nil {
		return nil, err
	}
	sup, err := startPool(ctx, kindFlat, fn.name, flatPoolOptions(opts))
	if err != nil {
		return nil, err
	}
	return &FlatPool[In, Out]{sup: sup, input: newCallInput(fn.in), out: fn.out, split: newSplitter(fn.out)}, nil
}

// Call runs the function in a worker process and yields its outputs as
// they come. An output the function failed is yielded as a *RemoteError
// and the call goes on; an error that ends the call (a panic, the death of
// the worker, ctx) is yielded last. A worker that dies before the call
// yielded anything runs it elsewhere as Pool does; once outputs have been
// yielded, the call fails instead of repeating them. Breaking out of the
// loop cancels the call in the worker.
func (p *FlatPool[In, Out]) Call(ctx context.Context, in In) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		ctx := ctx // each range of the sequence is a call of its own
		var ce CallEnd
		var end func(CallEnd)
		if h := p.sup.o.callHook; h != nil {
			ctx, end = hook(h, ctx, p.sup.name)
		}
		defer func() {
			p.calls.Add(1)
			if ce.Err != nil {
				p.failures.Add(1)
			}
			if end != nil {
				end(ce)
			}
		}()
		yield = func(y func(Out, error) bool) func(Out, error) bool {
			return func(v Out, err error) bool {
				if ce.Err == nil {
					ce.Err = err // the first error the call yields
				}
				return y(v, err)
			}
		}(yield)
		var zero Out
		if err := ctx.Err(); err != nil {
			yield(zero, err)
			return
		}
		sup := p.sup
		buffer := sup.o.buffer
		md, err := meta.Outgoing(ctx)
		if err != nil {
			yield(zero, err)
			return
		}
		head := withHead(wire.Head{Op: wire.OpCall, Target: 1, Deadline: deadline(ctx), Credits: uint32(buffer), Meta: md})
		var body []byte
		for attempt := 0; ; {
			t, b, err := p.input.attempt(ctx, sup, head, in, body)
			if err != nil {
				yield(zero, err)
				return
			}
			body = b
			x := &exchange{stream: newStreamInbox()}
			sup.send(t, x, wire.Open, body)
			ce.Attempts++
			ce.PID = t.m.w.pid
			c := consumer[Out]{sup: sup, t: t, x: x, codec: p.out, split: p.split, credits: credits{buffer: buffer, last: time.Now()}}
			yielded, f, stop := c.run(ctx, yield)
			if stop {
				return
			}
			if f.lost {
				err, requeue := t.lostErr(f, sup.name, sup.o.callTimeout)
				if yielded == 0 && ctx.Err() == nil {
					if requeue {
						continue
					}
					if again, werr := sup.retry(ctx, err, &attempt, &p.retries); again {
						continue
					} else if werr != nil {
						err = werr
					}
				}
				yield(zero, err)
				return
			}
			if len(f.body) > 0 {
				err := error(decodeError(sup.name, t.m.w.pid, f.body))
				if yielded == 0 {
					if again, werr := sup.retry(ctx, err, &attempt, &p.retries); again {
						continue
					} else if werr != nil {
						err = werr
					}
				}
				yield(zero, err)
			}
			return
		}
	}
}

// Close stops every worker; see Pool.Close.
func (p *FlatPool[In, Out]) Close() error {
	p.sup.close()
	return nil
}

// Stats returns the pool's counters and its workers. Calls counts the
// calls that ended, and Failures those that yielded an error.
func (p *FlatPool[In, Out]) Stats() PoolStats {
	st := p.sup.stats()
	st.Calls, st.Failures, st.Retries = p.calls.Load(), p.failures.Load(), p.retries.Load()
	return st
}

// callInput is the input side of a pool's calls: the input is encoded
// after the call's head, once for every attempt without an arena, and
// again for each attempt with one (the last attempt's segments are gone).
type callInput[In any] struct {
	codec Codec[In]
	split *splitter[In]
}

func newCallInput[In any](c Codec[In]) callInput[In] {
	return callInput[In]{codec: c, split: newSplitter(c)}
}

// attempt encodes the input if it must (body is the last attempt's, or
// nil) and dispatches an attempt; it returns the task and its body.
func (c callInput[In]) attempt(ctx context.Context, sup *supervisor, head []byte, in In, body []byte) (*task, []byte, error) {
	arena := sup.o.arena
	var refs []shm.Ref
	var err error
	switch {
	case arena != nil:
		// A call's input is lent, not given: every attempt sends a copy
		// of its Buffers, and the caller keeps them.
		c.split.eachBuffer(in, func(b *shm.Buffer) { b.Retain() })
		body, refs, err = c.split.encode(ctx, arena, sup.o.arenaThreshold(), head, in)
	case body == nil:
		body, err = c.codec.Append(head, in)
	}
	if err != nil {
		return nil, nil, &CodecError{What: "input", Err: err}
	}
	t, err := sup.dispatch(ctx, refs)
	if err != nil {
		if arena != nil {
			discardRefs(arena, refs)
		}
		return nil, nil, err
	}
	return t, body, nil
}
