package proc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/shm"
)

// ErrEnded is returned by DuplexStream.Send once the worker's side of the
// stream has ended (its function returned, failed, or the worker died):
// the stream's outputs (All) say why.
var ErrEnded = errors.New("proc: the stream has ended")

// DuplexFunc is a stateful stream function registered to run in worker
// processes; see Duplex.
type DuplexFunc[A, In, Out any] struct {
	name string
	args Codec[A]
	in   Codec[In]
	out  Codec[Out]
}

// Name returns the registered name.
func (f *DuplexFunc[A, In, Out]) Name() string { return f.name }

// Duplex registers a function that consumes a stream of inputs and
// produces a stream of outputs in a worker process (see OpenDuplex): fn is
// called once per stream with the arguments given to OpenDuplex, ranges
// over in (which ends when the caller calls CloseSend) and calls out for
// each output, which waits while the caller is BufferSize outputs behind
// and returns an error once the stream is cancelled. State kept by fn
// lives as long as the stream: this is the shape of a stateful stream
// element (a graph element in a worker process is one). An input that
// cannot be decoded is yielded by in as a *CodecError. The error fn
// returns ends the stream with it. Call it at package level: registering
// a name twice panics.
func Duplex[A, In, Out any](name string, fn func(ctx context.Context, args A, in iter.Seq2[In, error], out func(Out) error) error) *DuplexFunc[A, In, Out] {
	f := &DuplexFunc[A, In, Out]{name: name, args: lazyCodec[A](), in: lazyCodec[In](), out: lazyCodec[Out]()}
	inSplit, outSplit := newSplitter(f.in), newSplitter(f.out)
	register(&entry{name: name, kind: kindDuplex, attach: func(h *host, raw []byte) (instance, error) {
		a, err := f.args.Decode(raw)
		if err != nil {
			return nil, &CodecError{What: "argument", Err: err}
		}
		return &duplexInstance[A, In, Out]{noCall: noCall{kindDuplex}, h: h, f: f, fn: fn, args: a, inSplit: inSplit, outSplit: outSplit}, nil
	}})
	return f
}

type duplexInstance[A, In, Out any] struct {
	noCall
	h        *host
	f        *DuplexFunc[A, In, Out]
	fn       func(context.Context, A, iter.Seq2[In, error], func(Out) error) error
	args     A
	inSplit  *splitter[In]
	outSplit *splitter[Out]
}

func (d *duplexInstance[A, In, Out]) stats() ([]byte, error) { return nil, nil }

func (d *duplexInstance[A, In, Out]) stream(ctx context.Context, _ []byte, out *outStream) error {
	if out.in == nil {
		return errors.New("a duplex stream opened without its input")
	}
	s := newItemSender(ctx, d.h, d.f.out, out)
	cancelled := false
	emit := func(v Out) error {
		if cancelled {
			d.outSplit.giveAway(v) // an output is given away, sent or not
		}
		if cancelled || !s.send(v, nil) {
			cancelled = true
			return fmt.Errorf("proc: duplex %q: the stream was cancelled: %w", d.f.name, context.Canceled)
		}
		return nil
	}
	var index int
	inputs := func(yield func(In, error) bool) {
		for {
			f, ok := out.in.next(ctx)
			if !ok {
				return
			}
			var v In
			var err error
			switch {
			case f.err != nil:
				f.release()
				err = f.err
			case d.h.arena != nil:
				v, err = d.inSplit.decode(&f.split)
			default:
				v, err = d.f.in.Decode(f.body)
			}
			if err != nil {
				err = &CodecError{What: fmt.Sprintf("input %d", index), Err: err}
			}
			index++
			if !yield(v, err) {
				return
			}
		}
	}
	err := d.fn(ctx, d.args, inputs, emit)
	if cancelled {
		return nil // nobody reads what would end it
	}
	return err
}

// inStream is the input of a duplex stream as its server reads it: the
// opener may send window inputs ahead, and gets credits back as they are
// taken.
type inStream struct {
	h      *host
	id     uint64
	inbox  *streamInbox
	window int
	used   int // taken, not granted back yet
	batch  []frame
	pos    int
	ended  bool
}

func newInStream(h *host, id uint64, window int) *inStream {
	return &inStream{h: h, id: id, inbox: newStreamInbox(), window: max(window, 1)}
}

// next returns the next input; false at the end of the input, or when ctx
// has ended.
func (s *inStream) next(ctx context.Context) (frame, bool) {
	if s.ended {
		return frame{}, false
	}
	for s.pos >= len(s.batch) {
		if s.batch = s.inbox.take(s.batch); len(s.batch) > 0 {
			s.pos = 0
			break
		}
		s.grant(true) // about to wait: the opener must not wait for credits meanwhile
		select {
		case <-s.inbox.notify:
		case <-ctx.Done():
			return frame{}, false
		}
	}
	f := s.batch[s.pos]
	s.batch[s.pos] = frame{}
	s.pos++
	if f.t == wire.InEnd {
		s.ended = true
		return frame{}, false
	}
	if s.used++; 2*s.used >= s.window {
		s.grant(s.pos >= len(s.batch))
	}
	return f, true
}

// grant gives the inputs taken back to the opener as credits; now: write
// at once (this goroutine is about to wait).
func (s *inStream) grant(now bool) {
	if s.used == 0 {
		return
	}
	body := wire.U32(uint32(s.used))
	s.used = 0
	var err error
	if now {
		err = s.h.s.w.SendNow(wire.InCredit, s.id, body)
	} else {
		err = s.h.s.w.Send(wire.InCredit, s.id, body)
	}
	if err != nil {
		s.h.exit(0) // the parent is gone
	}
}

// DuplexStream is a stream of inputs to a function registered with Duplex
// running in a worker process, and of its outputs back, opened by
// OpenDuplex. Send and CloseSend feed it from one goroutine while All
// consumes its outputs in another; both directions have BufferSize
// credits, so a slow consumer holds the worker back, and the worker holds
// Send back. Close ends the worker.
type DuplexStream[In, Out any] struct {
	sup      *supervisor
	t        *task
	x        *exchange
	in       callInput[In]
	consumer consumer[Out]

	avail  atomic.Int64  // inputs Send may send before more credits come
	credit chan struct{} // signalled when credits come
	ended  chan struct{} // closed at the last frame of the outputs (or the worker's death)

	sendMu    sync.Mutex
	closeSent bool

	refsMu sync.Mutex
	refs   [][]shm.Ref // the arena parts of the inputs sent last, discarded if the worker dies
	nrefs  int
	lost   bool // the stream has ended: parts are discarded as they are made

	recvMu   sync.Mutex
	received bool
}

// OpenDuplex starts a worker process, makes it call the function
// registered as fn with args, and returns the stream, ready for Send and
// All. ctx bounds the start, not the stream: the stream lives until
// CloseSend and the end of its outputs, or until Close.
func OpenDuplex[A, In, Out any](ctx context.Context, fn *DuplexFunc[A, In, Out], args A, opts ...IterateOption) (*DuplexStream[In, Out], error) {
	if fn == nil {
		return nil, errors.New("proc: OpenDuplex with a nil DuplexFunc")
	}
	if _, err := lookup(fn.name, kindDuplex); err != nil {
		return nil, err
	}
	raw, err := fn.args.Append(nil, args)
	if err != nil {
		return nil, &CodecError{What: "argument", Err: err}
	}
	o := iterateOptions(opts)
	if o.buffer < 1 {
		return nil, fmt.Errorf("proc: BufferSize %d, want ≥ 1", o.buffer)
	}
	o.workers, o.inFlight = 1, 1<<30
	md, err := meta.Outgoing(ctx)
	if err != nil {
		return nil, err
	}
	sup, err := newSupervisor(ctx, o, wire.Attach{Kind: kindDuplex, Name: fn.name, Args: raw})
	if err != nil {
		return nil, err
	}
	t, err := sup.dispatch(ctx, nil)
	if err != nil {
		sup.close()
		return nil, err
	}
	d := &DuplexStream[In, Out]{sup: sup, t: t, in: newCallInput(fn.in), credit: make(chan struct{}, 1), ended: make(chan struct{})}
	d.avail.Store(int64(o.buffer))
	d.refs = make([][]shm.Ref, o.buffer+1)
	d.x = &exchange{stream: newStreamInbox(), inCredit: d.addCredit, onEnd: d.end}
	d.consumer = consumer[Out]{sup: sup, t: t, x: d.x, codec: fn.out, split: newSplitter(fn.out), inactivity: o.inactivity,
		credits: credits{buffer: o.buffer, last: time.Now()}}
	sup.send(t, d.x, wire.Open, withHead(wire.Head{Op: wire.OpCall, Target: 1, Credits: uint32(o.buffer), Meta: md}))
	return d, nil
}

// addCredit is told of input credits, on the session's reading goroutine.
func (d *DuplexStream[In, Out]) addCredit(n int) {
	d.avail.Add(int64(n))
	select {
	case d.credit <- struct{}{}:
	default:
	}
}

// end is told of the last frame of the outputs, on the session's reading
// goroutine: Send stops waiting. The function in the worker has returned
// (or the worker died): the parts of the inputs it did not take go back to
// the arena (a part it took and released is not freed twice: Discard
// checks the segment's generation).
func (d *DuplexStream[In, Out]) end(f frame) {
	close(d.ended)
	if d.sup.o.arena != nil {
		d.refsMu.Lock()
		d.lost = true
		for i, refs := range d.refs {
			discardRefs(d.sup.o.arena, refs)
			d.refs[i] = nil
		}
		d.refsMu.Unlock()
	}
}

// PID returns the worker's process id.
func (d *DuplexStream[In, Out]) PID() int { return d.t.m.w.pid }

// Send sends one input to the worker, waiting while it is BufferSize
// inputs behind. It returns a *CodecError for an input it cannot encode
// (the stream goes on), ctx's error, or an error wrapping ErrEnded once
// the worker's side has ended. A *shm.Buffer in v is given away, sent or
// not (see shm.Buffer).
func (d *DuplexStream[In, Out]) Send(ctx context.Context, v In) (err error) {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	encoded := false
	defer func() {
		if !encoded {
			d.in.split.giveAway(v)
		}
	}()
	if d.closeSent {
		return fmt.Errorf("proc: duplex %q: Send after CloseSend", d.sup.name)
	}
	for d.avail.Load() <= 0 {
		select {
		case <-d.credit:
		case <-d.ended:
			return d.endedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-d.ended:
		return d.endedErr()
	default:
	}
	var body []byte
	var refs []shm.Ref
	encoded = true // whatever happens now, the encoding gives its Buffers away
	if arena := d.sup.o.arena; arena != nil {
		body, refs, err = d.in.split.encode(ctx, arena, d.sup.o.arenaThreshold(), nil, v)
	} else {
		body, err = d.in.codec.Append(nil, v)
		d.in.split.giveAway(v)
	}
	if err != nil {
		return &CodecError{What: "input", Err: err}
	}
	d.avail.Add(-1)
	if refs != nil {
		// Kept until BufferSize more inputs have been sent: by then the
		// worker has taken this one (its credit came back).
		d.refsMu.Lock()
		if d.lost { // the stream ended while the input was encoded
			d.refsMu.Unlock()
			discardRefs(d.sup.o.arena, refs)
			return d.endedErr()
		}
		d.refs[d.nrefs%len(d.refs)] = refs
		d.nrefs++
		d.refsMu.Unlock()
	}
	if err := d.t.m.w.s.w.Send(wire.In, d.x.id, body); err != nil {
		return d.endedErr() // a dying worker: its death ends the outputs
	}
	return nil
}

func (d *DuplexStream[In, Out]) endedErr() error {
	return fmt.Errorf("proc: duplex %q (pid %d): %w (its outputs say why)", d.sup.name, d.t.m.w.pid, ErrEnded)
}

// CloseSend ends the input: the worker's function sees the end of its
// input stream, and the outputs end when it returns. Calling it again does
// nothing.
func (d *DuplexStream[In, Out]) CloseSend() error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	if d.closeSent {
		return nil
	}
	d.closeSent = true
	if err := d.t.m.w.s.w.SendNow(wire.InEnd, d.x.id, nil); err != nil {
		return d.endedErr()
	}
	return nil
}

// All yields the stream's outputs as the worker produces them, until its
// function returns (after CloseSend, or by itself). An error the function
// returns, a panic, or the worker's death is yielded last as a
// *RemoteError or a *WorkerError. Breaking out of the loop, or ctx ending,
// cancels the stream in the worker (the function's context ends). All can
// be ranged over once.
func (d *DuplexStream[In, Out]) All(ctx context.Context) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		var zero Out
		d.recvMu.Lock()
		defer d.recvMu.Unlock()
		if d.received {
			yield(zero, fmt.Errorf("proc: duplex %q: All called twice", d.sup.name))
			return
		}
		d.received = true
		_, f, stop := d.consumer.run(ctx, yield)
		switch {
		case stop:
		case f.lost:
			err, _ := d.t.lostErr(f, d.sup.name, 0)
			yield(zero, err)
		case len(f.body) > 0:
			yield(zero, decodeError(d.sup.name, d.t.m.w.pid, f.body))
		}
	}
}

// Close stops the worker (see Grace) and releases everything it held.
func (d *DuplexStream[In, Out]) Close() error {
	d.sup.close()
	return nil
}
