package proc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/shm"
)

// Iterable is an iterable running in a worker process, started by Iterate
// or RunPipeline. Each All is one pass in the same process; it implements
// pipeline.Source, so it can feed a pipeline directly. Close ends the
// worker.
type Iterable[T any] struct {
	w     *worker
	codec Codec[T]
	o     *options
	inbox *inbox
	// view turns an item received in the arena into a T (IterateShared);
	// nil: decode a copy of its bytes and release the view.
	view  func(*shm.View) T
	split *splitter[T] // for ItemSplit items

	mu   sync.Mutex // held during a pass
	pass uint64     // the next pass's id

	statsMu sync.Mutex // one PipelineStats request at a time

	shareMu  sync.Mutex      // one Share at a time
	names    map[string]bool // of the constants the worker has, from Constants and Share
	shareSeq uint64          // the id of the last Constant sent
}

// frame is one message from the worker.
type frame struct {
	t     wire.Type
	id    uint64
	body  []byte
	view  *shm.View // ItemRef: the item, viewed on arrival
	split splitMsg  // ItemSplit: the item, its parts viewed on arrival
	err   error     // ItemRef, ItemSplit: why it could not be viewed
}

// release releases the views of frames that were not handed to the
// consumer.
func release(frames []frame) {
	for i := range frames {
		if v := frames[i].view; v != nil {
			frames[i].view = nil
			v.Release()
		}
		frames[i].split.release()
	}
}

// inbox queues the worker's messages for the consumer. The reading
// goroutine never waits on it: credits bound what a worker can send.
type inbox struct {
	arena   *shm.SegmentPool
	pending []frame // being collected by the reading goroutine, which alone touches it

	mu     sync.Mutex
	ready  []frame // handed to the consumer
	notify chan struct{}
	stats  chan []byte // StatsReply bodies
	shared chan frame  // ConstantOK replies
}

func newInbox(arena *shm.SegmentPool) *inbox {
	return &inbox{arena: arena, notify: make(chan struct{}, 1), stats: make(chan []byte, 1), shared: make(chan frame, 1)}
}

func (b *inbox) frame(t wire.Type, id uint64, body []byte) {
	switch t {
	case wire.StatsReply:
		select {
		case b.stats <- body:
		default: // nobody asked: drop it
		}
		return
	case wire.ConstantOK:
		// Never wait: a reply already queued is for a Share that gave up
		// (Shares take turns, and replies come in order), so it goes.
		f := frame{t: t, id: id, body: body}
		for {
			select {
			case b.shared <- f:
				return
			default:
				select {
				case <-b.shared:
				default:
				}
			}
		}
	}
	f := frame{t: t, id: id, body: body}
	if t == wire.ItemRef {
		// Viewed at once, by this process: a view survives the worker's
		// death (which reclaims whatever the worker still owns).
		f.body = nil
		ref, err := shm.ParseRef(body)
		switch {
		case err != nil:
			f.err = err
		case b.arena == nil:
			f.err = errors.New("proc: an item in shared memory, but no arena")
		default:
			f.view, f.err = b.arena.View(ref)
		}
	}
	if t == wire.ItemSplit {
		f.split, f.err = viewSplit(b.arena, body)
	}
	b.pending = append(b.pending, f)
	if len(b.pending) >= 256 {
		b.publish()
	}
}

func (b *inbox) idle() { b.publish() }

// publish moves pending frames to the consumer.
func (b *inbox) publish() {
	if len(b.pending) == 0 {
		return
	}
	b.mu.Lock()
	b.ready = append(b.ready, b.pending...)
	b.mu.Unlock()
	clear(b.pending)
	b.pending = b.pending[:0]
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// drain releases every view still queued; call once the reading
// goroutine has ended.
func (b *inbox) drain() {
	release(b.pending)
	b.mu.Lock()
	defer b.mu.Unlock()
	release(b.ready)
}

// take returns everything ready, or nothing, in place of into, which the
// consumer is done with.
func (b *inbox) take(into []frame) []frame {
	clear(into)
	b.mu.Lock()
	defer b.mu.Unlock()
	into, b.ready = b.ready, into[:0]
	return into
}

// Iterate starts a worker process that runs the iterable registered as it,
// called with args, and returns it ready for its first pass. The worker is
// reused by every pass until Close.
func Iterate[A, T any](ctx context.Context, it *IterFunc[A, T], args A, opts ...Option) (*Iterable[T], error) {
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

func startIterable[T any](ctx context.Context, kind, name string, args []byte, codec Codec[T], opts []Option) (*Iterable[T], error) {
	o := newOptions(opts)
	if o.buffer < 1 {
		return nil, fmt.Errorf("proc: BufferSize %d, want ≥ 1", o.buffer)
	}
	in := newInbox(o.arena)
	w, err := startWorker(ctx, o, wire.InitMsg{Version: wire.Version, Kind: kind, Name: name, Args: args, Initializers: initNames(o)}, in)
	if err != nil {
		return nil, err
	}
	it := &Iterable[T]{w: w, codec: codec, o: o, inbox: in, split: newSplitter(codec), names: map[string]bool{}}
	for _, c := range o.constants {
		it.names[c.Name()] = true
	}
	return it, nil
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
	if err := ctx.Err(); err != nil {
		return err
	}
	it.shareMu.Lock()
	defer it.shareMu.Unlock()
	if err := checkShare("the worker", it.names, cs); err != nil {
		return fmt.Errorf("proc: worker %q: Share: %w", it.w.name, err)
	}
	for _, c := range cs {
		it.names[c.Name()] = true
		it.shareSeq++
		if err := it.w.w.SendFD(wire.Constant, it.shareSeq, []byte(c.Name()), c.FD()); err != nil {
			it.w.kill(fmt.Sprintf("sending shared constant %q failed: %v", c.Name(), err))
			<-it.w.dead
			return it.w.deadErr
		}
		if err := it.constantOK(ctx, it.shareSeq); err != nil {
			return err
		}
	}
	return nil
}

// constantOK waits for the worker's reply to the Constant with this id.
func (it *Iterable[T]) constantOK(ctx context.Context, id uint64) error {
	for {
		select {
		case f := <-it.inbox.shared:
			if f.id != id {
				continue // the reply to a Share that gave up waiting
			}
			if len(f.body) > 0 {
				return it.remote(f.body)
			}
			return nil
		case <-it.w.dead:
			return it.w.deadErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func initNames(o *options) []string {
	var names []string
	for _, i := range o.initializers {
		names = append(names, i.name)
	}
	return names
}

// PID returns the worker's process id.
func (it *Iterable[T]) PID() int { return it.w.pid }

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
		id := it.pass
		it.pass++
		if err := it.sendNow(wire.Start, id, wire.U32(uint32(it.o.buffer))); err != nil {
			yield(zero, it.deadOr(err))
			return
		}
		cr := credits{buffer: it.o.buffer, last: time.Now()}
		var batch []frame
		defer func() { release(batch) }() // what the pass did not hand over
		for {
			var err error
			if batch = it.inbox.take(batch); len(batch) == 0 {
				// Nothing to consume: the worker must not be kept
				// waiting for credits meanwhile.
				if cr.idle() {
					if err := it.sendNow(wire.Credit, id, cr.grant()); err != nil {
						yield(zero, it.deadOr(err))
						return
					}
				}
				t := time.Now()
				batch, err = it.wait(ctx, batch)
				cr.waited += time.Since(t)
			}
			if err != nil {
				_ = it.sendNow(wire.Stop, id, nil)
				yield(zero, err)
				return
			}
			for i := range batch {
				f := &batch[i]
				if f.id != id {
					release(batch[i : i+1])
					continue // left over from an abandoned pass
				}
				var v T
				var err error
				switch f.t {
				case wire.IterStarted:
					continue
				case wire.Item:
					if v, err = it.codec.Decode(f.body); err != nil {
						err = &CodecError{What: "item", Err: err}
					}
				case wire.ItemRef:
					switch view := f.view; {
					case f.err != nil:
						err = &CodecError{What: "item", Err: f.err}
					case it.view != nil:
						f.view = nil
						v = it.view(view)
					default:
						f.view = nil
						if v, err = it.codec.Decode(bytes.Clone(view.Bytes())); err != nil {
							err = &CodecError{What: "item", Err: err}
						}
						view.Release()
					}
				case wire.ItemSplit:
					if err = f.err; err == nil {
						v, err = it.split.decode(&f.split)
					}
					if err != nil {
						err = &CodecError{What: "item", Err: err}
					}
				case wire.ItemFailed:
					err = it.remote(f.body)
				case wire.IterFinished:
					if len(f.body) > 0 {
						yield(zero, it.remote(f.body))
					}
					return
				default:
					yield(zero, fmt.Errorf("proc: worker %q sent %v during a pass", it.w.name, f.t))
					return
				}
				if cr.consumed() {
					if err := it.sendNow(wire.Credit, id, cr.grant()); err != nil {
						yield(zero, it.deadOr(err))
						return
					}
				}
				if !yield(v, err) {
					_ = it.sendNow(wire.Stop, id, nil)
					return
				}
			}
		}
	}
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

// sendNow sends a small message to the worker, written by the calling
// goroutine when the connection is idle (see wire.Writer.SendNow): the
// messages of a pass are on its critical path, where waking the writing
// goroutine would add a thread wake-up to every round trip. A connection
// that broke means a worker that is dying: sendNow reports its death,
// which the reading goroutine establishes promptly.
func (it *Iterable[T]) sendNow(t wire.Type, id uint64, body []byte) error {
	err := it.w.w.SendNow(t, id, body)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, wire.ErrClosed):
		return ErrClosed
	}
	<-it.w.dead
	return it.w.deadErr
}

// wait returns the next frames from the worker. Frames that arrived before
// the worker died are delivered before its death is reported.
func (it *Iterable[T]) wait(ctx context.Context, into []frame) ([]frame, error) {
	var timeout <-chan time.Time
	if it.o.inactivity > 0 {
		t := time.NewTimer(it.o.inactivity)
		defer t.Stop()
		timeout = t.C
	}
	for {
		if into = it.inbox.take(into); len(into) > 0 {
			return into, nil
		}
		select {
		case <-it.inbox.notify:
		case <-it.w.dead:
			if into = it.inbox.take(into); len(into) > 0 {
				return into, nil
			}
			return nil, it.w.deadErr
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, &TimeoutError{Name: it.w.name, What: "inactivity", Limit: it.o.inactivity.String()}
		}
	}
}

func (it *Iterable[T]) remote(body []byte) error {
	var m wire.ErrorMsg
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("proc: worker %q sent an unreadable error: %w", it.w.name, err)
	}
	return remoteError(it.w.name, it.w.pid, m)
}

func (it *Iterable[T]) deadOr(err error) error {
	select {
	case <-it.w.dead:
		return it.w.deadErr
	default:
		return err
	}
}

// Close stops the worker (see Grace) and releases everything it held.
func (it *Iterable[T]) Close() error {
	it.w.close()
	it.inbox.drain()
	return nil
}

var _ pipeline.Source[int] = (*Iterable[int])(nil)
