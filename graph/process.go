package graph

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/hist"
	"github.com/ferrypipe/ferry/proc"
)

// An element in a worker process is one duplex stream of the worker
// runtime (proc.Duplex): the parent sends it the frames of its sink pads
// (or aligned steps) and ends its input at the end of its pads; the worker
// runs the element with the same core as a goroutine would, and sends back
// the frames it emits, its failures and its stats.

// workerArgs is what a worker needs to make and run an element.
type workerArgs[A any] struct {
	Args        A
	Element     string
	Inputs      []string
	Outputs     []string
	MaxFailures int
}

// wireIn is a frame (or an aligned step) sent to a worker. Data is a field
// of its own so that a large numeric slice crosses through the arena.
type wireIn[T any] struct {
	Data T
	Seq  uint64
	EOS  bool
	Gap  bool
	Time int64
	Rate float64
	Meta map[string]string
	Pad  string
	Step []Frame[T]
}

func (m *wireIn[T]) frame() Frame[T] {
	return Frame[T]{Data: m.Data, Seq: m.Seq, EOS: m.EOS, Gap: m.Gap, Time: m.Time, Rate: m.Rate, Meta: m.Meta, Pad: m.Pad}
}

// inMsg is the message that sends f to a worker.
func inMsg[T any](f Frame[T]) wireIn[T] {
	return wireIn[T]{Data: f.Data, Seq: f.Seq, EOS: f.EOS, Gap: f.Gap, Time: f.Time, Rate: f.Rate, Meta: f.Meta, Pad: f.Pad}
}

// Kinds of wireOut.
const (
	outFrame   = iota // a frame emitted on source pad Pad
	outFailure        // a frame failed within the budget
	outFailed         // where the error that ends the element happened
	outStats          // durations so far
)

// wireOut is what a worker sends back.
type wireOut[T any] struct {
	Kind int
	Data T
	Pad  int
	Seq  uint64
	EOS  bool
	Gap  bool
	Time int64
	Rate float64
	Meta map[string]string
	// outFailure, outFailed: the Op, sink pad and Seq of the frame; the
	// failure's message.
	Op    string
	InPad string
	At    int64
	Msg   string
	Stats durationStats
}

// outMsg is the message that sends f, emitted on source pad pad, back to
// the parent.
func outMsg[T any](pad int, f Frame[T]) wireOut[T] {
	return wireOut[T]{Kind: outFrame, Pad: pad, Data: f.Data, Seq: f.Seq, EOS: f.EOS, Gap: f.Gap, Time: f.Time, Rate: f.Rate, Meta: f.Meta}
}

// frame is the frame of an outFrame message.
func (m *wireOut[T]) frame() Frame[T] {
	return Frame[T]{Data: m.Data, Seq: m.Seq, EOS: m.EOS, Gap: m.Gap, Time: m.Time, Rate: m.Rate, Meta: m.Meta}
}

// elementKind is what every registered kind shares: its name and how to
// start it in a worker.
type elementKind[A, In, Out any] struct {
	name   string
	duplex *proc.DuplexFunc[workerArgs[A], wireIn[In], wireOut[Out]]
	args   proc.Codec[A]
}

func newElementKind[A, In, Out any](name string, k kind, ctor func(A) (any, error)) *elementKind[A, In, Out] {
	ek := &elementKind[A, In, Out]{name: name, args: proc.CodecOf[A]()}
	registerWire[In, Out]()
	ek.duplex = proc.Duplex("graph."+name, serveElement[A, In, Out](k, ctor))
	return ek
}

// instance is an element made by a registered kind with its arguments.
type instance[A, In, Out any] struct {
	k    *elementKind[A, In, Out]
	args A
	ctor func(A) (any, error)
}

func (i *instance[A, In, Out]) kindName() string { return i.k.name }

func (i *instance[A, In, Out]) construct() (any, error) {
	b, err := i.k.args.Append(nil, i.args)
	if err != nil {
		return nil, &proc.CodecError{What: "argument", Err: err}
	}
	a, err := i.k.args.Decode(b)
	if err != nil {
		return nil, &proc.CodecError{What: "argument", Err: err}
	}
	return i.ctor(a)
}

func (i *instance[A, In, Out]) opener(n *node) func(r *Running) (closer, error) {
	return func(r *Running) (closer, error) {
		wa := workerArgs[A]{Args: i.args, Element: n.name, Inputs: n.inputs, Outputs: n.outputs, MaxFailures: n.maxFailures}
		opts := append([]proc.IterateOption{proc.BufferSize(n.buffer), proc.Logger(r.g.o.logger)}, r.g.o.worker...)
		return proc.OpenDuplex(r.ctx, i.k.duplex, wa, opts...)
	}
}

// SourceKind is a source registered to run in worker processes; see
// RegisterSource.
type SourceKind[A, Out any] struct {
	k    *elementKind[A, none, Out]
	ctor func(A) (any, error)
}

// RegisterSource registers a source under name: in a worker process, the
// source is made by ctor from the arguments given to New. Call it at
// package level (so that worker processes register it too); registering
// a name twice panics.
func RegisterSource[A, Out any](name string, ctor func(args A) (Source[Out], error)) *SourceKind[A, Out] {
	c := func(a A) (any, error) { return ctor(a) }
	return &SourceKind[A, Out]{k: newElementKind[A, none, Out](name, kindSource, c), ctor: c}
}

// New returns a source of this kind with args, for AddSource: it runs in
// a goroutine or in a worker process, as placed.
func (k *SourceKind[A, Out]) New(args A) Source[Out] {
	return &regSource[A, Out]{instance[A, none, Out]{k.k, args, k.ctor}}
}

type regSource[A, Out any] struct{ instance[A, none, Out] }

// Run makes the source and runs it (outside a graph, for tests).
func (s *regSource[A, Out]) Run(ctx context.Context, out Emitter[Out]) error {
	e, err := s.construct()
	if err != nil {
		return err
	}
	return e.(Source[Out]).Run(ctx, out)
}

// TransformKind is a transform registered to run in worker processes; see
// RegisterSource.
type TransformKind[A, In, Out any] struct {
	k    *elementKind[A, In, Out]
	ctor func(A) (any, error)
}

// RegisterTransform registers a transform under name; see RegisterSource.
// The element made by ctor keeps its state between frames, in a worker
// process as in a goroutine.
func RegisterTransform[A, In, Out any](name string, ctor func(args A) (Transform[In, Out], error)) *TransformKind[A, In, Out] {
	c := func(a A) (any, error) { return ctor(a) }
	return &TransformKind[A, In, Out]{k: newElementKind[A, In, Out](name, kindTransform, c), ctor: c}
}

// New returns a transform of this kind with args, for AddTransform.
func (k *TransformKind[A, In, Out]) New(args A) Transform[In, Out] {
	return &regTransform[A, In, Out]{instance[A, In, Out]{k.k, args, k.ctor}}
}

type regTransform[A, In, Out any] struct{ instance[A, In, Out] }

// Process is never called by a graph, which makes the element itself.
func (t *regTransform[A, In, Out]) Process(context.Context, Frame[In], Emitter[Out]) error {
	return fmt.Errorf("graph: a registered %q transform runs in a graph", t.k.name)
}

// AlignedKind is an aligned transform registered to run in worker
// processes; see RegisterSource.
type AlignedKind[A, In, Out any] struct {
	k    *elementKind[A, In, Out]
	ctor func(A) (any, error)
}

// RegisterAligned registers an aligned transform under name; see
// RegisterSource.
func RegisterAligned[A, In, Out any](name string, ctor func(args A) (AlignedTransform[In, Out], error)) *AlignedKind[A, In, Out] {
	c := func(a A) (any, error) { return ctor(a) }
	return &AlignedKind[A, In, Out]{k: newElementKind[A, In, Out](name, kindTransform, c), ctor: c}
}

// New returns an aligned transform of this kind with args, for AddAligned.
func (k *AlignedKind[A, In, Out]) New(args A) AlignedTransform[In, Out] {
	return &regAligned[A, In, Out]{instance[A, In, Out]{k.k, args, k.ctor}}
}

type regAligned[A, In, Out any] struct{ instance[A, In, Out] }

// ProcessStep is never called by a graph, which makes the element itself.
func (t *regAligned[A, In, Out]) ProcessStep(context.Context, []Frame[In], Emitter[Out]) error {
	return fmt.Errorf("graph: a registered %q aligned transform runs in a graph", t.k.name)
}

// SinkKind is a sink registered to run in worker processes; see
// RegisterSource.
type SinkKind[A, In any] struct {
	k    *elementKind[A, In, none]
	ctor func(A) (any, error)
}

// RegisterSink registers a sink under name; see RegisterSource.
func RegisterSink[A, In any](name string, ctor func(args A) (Sink[In], error)) *SinkKind[A, In] {
	c := func(a A) (any, error) { return ctor(a) }
	return &SinkKind[A, In]{k: newElementKind[A, In, none](name, kindSink, c), ctor: c}
}

// New returns a sink of this kind with args, for AddSink.
func (k *SinkKind[A, In]) New(args A) Sink[In] {
	return &regSink[A, In]{instance[A, In, none]{k.k, args, k.ctor}}
}

type regSink[A, In any] struct{ instance[A, In, none] }

// Consume is never called by a graph, which makes the element itself.
func (s *regSink[A, In]) Consume(context.Context, Frame[In]) error {
	return fmt.Errorf("graph: a registered %q sink runs in a graph", s.k.name)
}

// AlignedSinkKind is an aligned sink registered to run in worker
// processes; see RegisterSource.
type AlignedSinkKind[A, In any] struct {
	k    *elementKind[A, In, none]
	ctor func(A) (any, error)
}

// RegisterAlignedSink registers an aligned sink under name; see
// RegisterSource.
func RegisterAlignedSink[A, In any](name string, ctor func(args A) (AlignedSink[In], error)) *AlignedSinkKind[A, In] {
	c := func(a A) (any, error) { return ctor(a) }
	return &AlignedSinkKind[A, In]{k: newElementKind[A, In, none](name, kindSink, c), ctor: c}
}

// New returns an aligned sink of this kind with args, for AddAlignedSink.
func (k *AlignedSinkKind[A, In]) New(args A) AlignedSink[In] {
	return &regAlignedSink[A, In]{instance[A, In, none]{k.k, args, k.ctor}}
}

type regAlignedSink[A, In any] struct{ instance[A, In, none] }

// ConsumeStep is never called by a graph, which makes the element itself.
func (s *regAlignedSink[A, In]) ConsumeStep(context.Context, []Frame[In]) error {
	return fmt.Errorf("graph: a registered %q aligned sink runs in a graph", s.k.name)
}

// statsEvery is how often a worker reports its element's durations.
const statsEvery = time.Second

// serveElement runs an element in a worker process: the worker side of
// its duplex stream.
func serveElement[A, In, Out any](k kind, ctor func(A) (any, error)) func(context.Context, workerArgs[A], iter.Seq2[wireIn[In], error], func(wireOut[Out]) error) error {
	return func(ctx context.Context, wa workerArgs[A], in iter.Seq2[wireIn[In], error], out func(wireOut[Out]) error) (err error) {
		// The element's name as a pprof label in the worker too.
		pprof.Do(ctx, pprof.Labels(ProfileLabel, wa.Element), func(ctx context.Context) {
			err = runElement(ctx, k, ctor, wa, in, out)
		})
		return err
	}
}

// runElement makes the element of wa and runs it on the frames in, in a
// worker process.
func runElement[A, In, Out any](ctx context.Context, k kind, ctor func(A) (any, error), wa workerArgs[A], in iter.Seq2[wireIn[In], error], out func(wireOut[Out]) error) error {
	var durations hist.Histogram
	var failures int64
	sendStats := func() {
		_ = out(wireOut[Out]{Kind: outStats, Stats: durationStats{Mean: int64(durations.Mean()),
			P90: int64(durations.Quantile(0.9)), P99: int64(durations.Quantile(0.99)), Failures: failures}})
	}
	// fail reports where the element failed and returns its own
	// error, which crosses as a *proc.RemoteError.
	fail := func(err error) error {
		var ee *ElementError
		if errors.As(err, &ee) {
			_ = out(wireOut[Out]{Kind: outFailed, Op: ee.Op, InPad: ee.Pad, At: ee.Seq})
			err = ee.Err
		}
		sendStats()
		return err
	}
	elem, err := ctor(wa.Args)
	if err != nil {
		return fail(&ElementError{Element: wa.Element, Op: "setup", Seq: -1, Err: err})
	}
	c := newCore[In, Out](wa.Element, wa.Inputs, wa.Outputs, elem, wa.MaxFailures, &durations)
	c.hold = c.bufIn && c.bufOut
	var refusing atomic.Bool // a source's frames, once it is drained
	srcCtx := ctx
	c.emit = func(i int, f Frame[Out]) error {
		if refusing.Load() && srcCtx.Err() != nil {
			releaseFrames(f)
			return ErrDrained
		}
		if out(outMsg(i, f)) != nil {
			return ErrStopped
		}
		return nil
	}
	c.failed = func(ee *ElementError) {
		failures++
		_ = out(wireOut[Out]{Kind: outFailure, Op: ee.Op, InPad: ee.Pad, At: ee.Seq, Msg: ee.Err.Error()})
	}
	if err := c.setup(ctx); err != nil {
		return fail(err)
	}
	err = func() error {
		if k == kindSource {
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			srcCtx = sctx
			refusing.Store(true)
			go func() {
				for range in { // the parent ends the input to drain the source
				}
				cancel()
			}()
			err := c.runSource(sctx)
			refusing.Store(false)
			return err
		}
		last := time.Now()
		for m, err := range in {
			if err != nil {
				return &ElementError{Element: wa.Element, Op: "process", Seq: -1, Err: err}
			}
			if m.Step != nil {
				err = c.processStep(ctx, m.Step)
			} else {
				err = c.process(ctx, m.frame())
			}
			if err != nil {
				return err
			}
			if time.Since(last) > statsEvery {
				sendStats()
				last = time.Now()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return c.flush(ctx)
	}()
	if err == nil {
		err = c.endPads()
	}
	if terr := c.teardown(context.WithoutCancel(ctx)); err == nil {
		err = terr
	}
	if err != nil {
		return fail(err)
	}
	sendStats()
	return nil
}

// elementWorker is the parent's side of an element in a worker process.
type elementWorker[In, Out any] = proc.DuplexStream[wireIn[In], wireOut[Out]]

// runWorker runs an element in its worker process: it feeds the frames of
// the element's sink pads to the worker, and puts what the worker emits
// on the links of its source pads.
func runWorker[In, Out any](r *Running, n *node, st *elementStats, reader *waker, ins []any, outs [][]any) error {
	w := r.workers[n].(*elementWorker[In, Out])
	outputs := make(chan error, 1)
	go func() {
		err := workerOutputs(r, n, st, w, outs)
		if err != nil && !errors.Is(err, ErrStopped) {
			r.fail(err) // at once: the feeding side may be waiting for input
		}
		outputs <- err
	}()
	if n.kind == kindSource {
		select {
		case <-r.drain.Done(): // a drain, or a stop
			_ = w.CloseSend()
		case err := <-outputs:
			return err
		}
		return <-outputs
	}
	send := func(m wireIn[In]) error {
		err := w.Send(r.ctx, m)
		switch {
		case errors.Is(err, proc.ErrEnded):
			return errWorkerEnded
		case err != nil && r.ctx.Err() != nil:
			return ErrStopped
		case err != nil:
			// A frame the codec cannot carry: the same error, where the
			// core would have met it.
			return &ElementError{Element: n.name, Op: "process", Pad: m.Pad, Seq: int64(m.Seq), Err: err}
		}
		return nil
	}
	err := feed(r, n, st, reader, ins,
		func(f Frame[In]) error {
			return send(inMsg(f))
		},
		func(step []Frame[In]) error {
			// A step's frames go through the codec, copied: their Buffers
			// are released once sent.
			defer releaseFrames(step...)
			return send(wireIn[In]{Step: step})
		})
	switch {
	case err == nil, errors.Is(err, errWorkerEnded):
		_ = w.CloseSend()
		return <-outputs
	case !errors.Is(err, ErrStopped):
		r.fail(err) // stops the outputs too
	}
	if oerr := <-outputs; oerr != nil && !errors.Is(oerr, ErrStopped) {
		return oerr
	}
	return err
}

// workerOutputs puts the frames a worker emits on the links, until the
// element ends in the worker.
func workerOutputs[In, Out any](r *Running, n *node, st *elementStats, w *elementWorker[In, Out], outs [][]any) error {
	links := typedPads[Out](outs)
	var at *wireOut[Out] // where the element failed, as the worker said
	for m, err := range w.All(r.ctx) {
		if err != nil {
			if r.ctx.Err() != nil {
				return ErrStopped
			}
			if at != nil {
				return &ElementError{Element: n.name, Op: at.Op, Pad: at.InPad, Seq: at.At, Err: err}
			}
			return &ElementError{Element: n.name, Op: "worker", Seq: -1, Err: err}
		}
		switch m.Kind {
		case outFrame:
			if m.Pad < 0 || m.Pad >= len(outs) {
				return &ElementError{Element: n.name, Op: "worker", Seq: -1, Err: fmt.Errorf("a frame for source pad %d of %d", m.Pad, len(outs))}
			}
			f := m.frame()
			if err := sendFrame(r, st, m.Pad, links[m.Pad], &f, nil); err != nil {
				return err
			}
		case outFailure:
			st.failures.Add(1)
			r.g.o.logger.Warn("graph: a frame failed", "element", n.name, "pad", m.InPad, "seq", m.At, "err", m.Msg)
		case outFailed:
			at = &m
		case outStats:
			st.mu.Lock()
			st.remote = &m.Stats
			st.mu.Unlock()
		}
	}
	return nil
}
