package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/shm"
)

// Iterable is an iterable running in a worker process, started by Iterate
// or RunPipeline. Each All is one pass in the same process: a stream of
// the session, opened with BufferSize credits. It implements
// pipeline.Source, so it can feed a pipeline directly. Close ends the
// worker.
type Iterable[T any] struct {
	sup   *supervisor
	m     *member // its one worker
	codec Codec[T]
	// view turns an item received in the arena into a T (IterateShared);
	// nil: decode a copy of its bytes and release the view.
	view  func(*shm.View) T
	split *splitter[T] // for DataSplit items

	mu sync.Mutex // held during a pass
}

// Iterate starts a worker process that runs the iterable registered as it,
// called with args, and returns it ready for its first pass. The worker is
// reused by every pass until Close.
func Iterate[A, T any](ctx context.Context, it *IterFunc[A, T], args A, opts ...IterateOption) (*Iterable[T], error) {
	if it == nil {
		return nil, errors.New("proc: Iterate with a nil IterFunc")
	}
	if _, err := lookup(it.name, kindIter); err != nil {
		return nil, err
	}
	raw, err := it.args.Append(nil, args)
	if err != nil {
		return nil, &CodecError{What: "argument", Err: err}
	}
	return startIterable(ctx, kindIter, it.name, raw, it.item, opts)
}

func startIterable[T any](ctx context.Context, kind, name string, args []byte, codec Codec[T], opts []IterateOption) (*Iterable[T], error) {
	o := iterateOptions(opts)
	if o.buffer < 1 {
		return nil, fmt.Errorf("proc: BufferSize %d, want ≥ 1", o.buffer)
	}
	o.workers, o.inFlight = 1, 1<<30
	sup, err := newSupervisor(ctx, o, wire.Attach{Kind: kind, Name: name, Args: args})
	if err != nil {
		return nil, err
	}
	return &Iterable[T]{sup: sup, m: sup.slots[0].m, codec: codec, split: newSplitter(codec)}, nil
}

// Share hands more shared constants (made with shm.Share) to the worker
// while it runs, as Pool.Share does: it receives each constant's memfd
// over its control socket (SCM_RIGHTS), maps it read-only and registers
// it for shm.Lookup before it reads anything sent after it, so that a pass
// started once Share has returned finds it (a pass under way finds it in
// what it produces from then on). A name must be new to the worker. A
// worker that cannot map a constant exits, and Share returns its
// *RemoteError; later passes fail with its *WorkerError. The caller keeps
// the constants and closes them after the iterable.
func (it *Iterable[T]) Share(ctx context.Context, cs ...*shm.Constant) error {
	return it.sup.share(ctx, "the worker", cs)
}

func initNames(o *options) []string {
	var names []string
	for _, i := range o.initializers {
		names = append(names, i.name)
	}
	return names
}

// PID returns the worker's process id.
func (it *Iterable[T]) PID() int { return it.m.w.pid }

// All returns one pass over the iterable, run in the worker. Items failed
// by the worker (an error yielded, a value that could not be encoded) are
// yielded as a *RemoteError and the pass goes on; the death of the worker
// ends the pass with a *WorkerError. Breaking out of the loop stops the
// pass in the worker; the next pass starts clean.
func (it *Iterable[T]) All(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		if !it.mu.TryLock() {
			yield(zero, ErrBusy)
			return
		}
		defer it.mu.Unlock()
		if err := ctx.Err(); err != nil {
			yield(zero, err)
			return
		}
		md, err := meta.Outgoing(ctx)
		if err != nil {
			yield(zero, err)
			return
		}
		t, err := it.sup.dispatch(ctx, nil)
		if err != nil {
			yield(zero, err)
			return
		}
		x := &exchange{stream: newStreamInbox()}
		o := it.sup.o
		it.sup.send(t, x, wire.Open, withHead(wire.Head{Op: wire.OpCall, Target: 1, Credits: uint32(o.buffer), Meta: md}))
		c := consumer[T]{sup: it.sup, t: t, x: x, codec: it.codec, split: it.split, view: it.view, inactivity: o.inactivity,
			credits: credits{buffer: o.buffer, last: time.Now()}}
		_, f, stop := c.run(ctx, yield)
		switch {
		case stop:
		case f.lost:
			err, _ := t.lostErr(f, it.sup.name, 0)
			yield(zero, err)
		case len(f.body) > 0:
			yield(zero, decodeError(it.sup.name, t.m.w.pid, f.body))
		}
	}
}

// consumer reads the frames of a stream task for its caller: it decodes
// items, yields them, and grants credits as they are consumed.
type consumer[T any] struct {
	sup        *supervisor
	t          *task
	x          *exchange
	codec      Codec[T]
	split      *splitter[T]
	view       func(*shm.View) T
	inactivity time.Duration
	credits    credits
}

// run yields the stream's items until its last frame, which it returns
// (End, or the lost frame of the worker's death), unless it stopped
// early: the consumer broke out of the loop, or ctx ended (then it yields
// ctx's error), or the inactivity timeout passed. A stream it stops is
// cancelled in the worker.
func (c *consumer[T]) run(ctx context.Context, yield func(T, error) bool) (yielded int, last frame, stopped bool) {
	var zero T
	var batch []frame
	defer func() {
		for i := range batch {
			batch[i].release()
		}
		if stopped {
			c.x.stream.drain()
			c.sup.abandon(c.t)
		}
	}()
	timed := c.sup.o.callTimeout > 0
	for {
		err := ctx.Err() // a busy consumer notices ctx between batches
		if err == nil {
			if batch = c.x.stream.take(batch); len(batch) == 0 {
				// Nothing to consume: the worker must not be kept waiting
				// for credits meanwhile.
				if c.credits.idle() {
					_ = c.sup.sendCredit(c.t, c.credits.grant())
				}
				// The deadline runs while the consumer waits for the
				// worker, not while it consumes.
				if timed {
					c.sup.rearm(c.t)
				}
				t := time.Now()
				batch, err = c.wait(ctx, batch)
				c.credits.waited += time.Since(t)
				if timed {
					c.sup.pause(c.t)
				}
			} else if timed {
				// Outputs came without a wait (the deadline armed at the
				// start may still run): the consumer's time is its own.
				c.sup.pause(c.t)
			}
		}
		if err != nil {
			yield(zero, err)
			return yielded, frame{}, true
		}
		for i := range batch {
			f := &batch[i]
			var v T
			var err error
			switch f.t {
			case wire.Data:
				if v, err = c.codec.Decode(f.body); err != nil {
					err = &CodecError{What: "item", Err: err}
				}
			case wire.DataRef:
				switch view := f.view; {
				case f.err != nil:
					err = &CodecError{What: "item", Err: f.err}
				case c.view != nil:
					f.view = nil
					v = c.view(view)
				default:
					f.view = nil
					if v, err = c.codec.Decode(bytes.Clone(view.Bytes())); err != nil {
						err = &CodecError{What: "item", Err: err}
					}
					view.Release()
				}
			case wire.DataSplit:
				if err = f.err; err == nil {
					v, err = c.split.decode(&f.split)
				}
				if err != nil {
					err = &CodecError{What: "item", Err: err}
				}
			case wire.DataErr:
				err = decodeError(c.sup.name, c.t.m.w.pid, f.body)
			default: // End, or the worker's death
				last = *f
				f.body = nil
				for j := range batch[i+1:] {
					batch[i+1+j].release()
				}
				batch = batch[:0]
				return yielded, last, false
			}
			if c.credits.consumed() {
				_ = c.sup.sendCredit(c.t, c.credits.grant())
			}
			yielded++
			if !yield(v, err) {
				return yielded, frame{}, true
			}
		}
	}
}

// wait returns the next frames of the stream.
func (c *consumer[T]) wait(ctx context.Context, into []frame) ([]frame, error) {
	var timeout <-chan time.Time
	if c.inactivity > 0 {
		t := time.NewTimer(c.inactivity)
		defer t.Stop()
		timeout = t.C
	}
	for {
		if into = c.x.stream.take(into); len(into) > 0 {
			return into, nil
		}
		select {
		case <-c.x.stream.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, &TimeoutError{Name: c.sup.name, What: "inactivity", Limit: c.inactivity.String()}
		}
	}
}

// sendCredit grants a stream task more items. A broken connection is a
// dying worker, whose death ends the stream.
func (sup *supervisor) sendCredit(t *task, body []byte) error {
	return t.m.w.s.w.SendNow(wire.Credit, t.x.id, body)
}

// credits decides when the consumer of a pass gives credits back to the
// worker. The worker may run up to buffer items ahead of the consumer, and
// gets a credit back for each item consumed. Every grant costs a round trip
// of wake-ups in both processes, so credits go back in as few grants as
// keep the worker busy. A slow consumer (half the buffer took it longer
// than creditDelay since the last grant, not counting its waits for items)
// grants as soon as it has consumed half the buffer, so that the worker
// refills it while the other half is consumed. A fast one grants when it
// runs out of items or has consumed the whole buffer: it would drain the
// other half before an early grant could bear fruit.
type credits struct {
	buffer int           // items the worker may send ahead
	used   int           // consumed items not yet granted back
	last   time.Time     // of the last grant
	waited time.Duration // waiting for items since then
}

// creditDelay is how long consuming half the buffer must take for the
// consumer to count as slow: about one round trip of wake-ups between two
// processes.
const creditDelay = 20 * time.Microsecond

// consumed counts one consumed item and reports whether to grant now.
func (c *credits) consumed() bool {
	c.used++
	switch {
	case c.used >= c.buffer:
		return true
	case 2*c.used < c.buffer:
		return false
	default:
		return time.Since(c.last)-c.waited >= creditDelay
	}
}

// idle reports whether to grant before waiting for items: the worker is
// short of credits.
func (c *credits) idle() bool { return c.used > 0 && 2*c.used >= c.buffer }

// grant returns the body of a Credit message for the items consumed since
// the last grant.
func (c *credits) grant() []byte {
	n := c.used
	c.used = 0
	c.last, c.waited = time.Now(), 0
	return wire.U32(uint32(n))
}

// Close stops the worker (see Grace) and releases everything it held.
func (it *Iterable[T]) Close() error {
	it.sup.close()
	return nil
}

var _ pipeline.Source[int] = (*Iterable[int])(nil)
