package proc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/shm"
)

// Kinds of registered work. A kind is what the worker host can make an
// instance of; requests and streams then target the instance.
const (
	kindFunc     = "func"     // one request, one reply (Func)
	kindFlat     = "flat"     // one request, a stream of replies (FlatFunc)
	kindIter     = "iter"     // a stream per pass (Iter)
	kindPipeline = "pipeline" // a stream per epoch (Pipeline)
	kindInit     = "init"     // run before the worker reports ready (Init)
	kindDuplex   = "duplex"   // a stream of inputs in, a stream of outputs back (Duplex)
)

// entry is one registered name. The worker host calls attach, whose
// closure captures the generic types of the registration.
type entry struct {
	name   string
	kind   string
	attach func(h *host, args []byte) (instance, error)
	init   func(ctx context.Context) error // kindInit
}

// instance is registered work made for one worker, as the host serves it.
type instance interface {
	// call serves a request (func).
	call(ctx context.Context, in []byte) ([]byte, error)
	// stream serves a stream (flat, iter, pipeline): what it yields goes
	// to out; an error it returns ends the stream with that error.
	stream(ctx context.Context, in []byte, out *outStream) error
	// stats describes the instance as JSON (pipeline stats), or nil.
	stats() ([]byte, error)
}

// noStream and noCall refuse what a kind does not serve.
type noStream struct{ kind string }

func (n noStream) stream(context.Context, []byte, *outStream) error {
	return fmt.Errorf("a %s serves calls, not streams", n.kind)
}

func (n noStream) stats() ([]byte, error) { return nil, nil }

type noCall struct{ kind string }

func (n noCall) call(context.Context, []byte) ([]byte, error) {
	return nil, fmt.Errorf("a %s serves streams, not calls", n.kind)
}

var (
	registryMu sync.Mutex
	registry   = map[string]*entry{}
)

func register(e *entry) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[e.name]; dup {
		panic(fmt.Sprintf("proc: %q is registered twice", e.name))
	}
	registry[e.name] = e
}

// lookup finds a registered name of the given kind.
func lookup(name, kind string) (*entry, error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	e := registry[name]
	switch {
	case e == nil:
		return nil, fmt.Errorf("proc: nothing is registered as %q (register it at package level with proc.Func, proc.FlatFunc, proc.Iter, proc.Pipeline, proc.Duplex or proc.Init)", name)
	case e.kind != kind:
		return nil, fmt.Errorf("proc: %q is registered as a %s, not a %s", name, e.kind, kind)
	}
	return e, nil
}

// CodecError is an item, argument or result that could not be encoded or
// decoded.
type CodecError struct {
	What string // "item 3", "argument", "input", "output"
	Err  error
}

func (e *CodecError) Error() string {
	return fmt.Sprintf("proc: cannot encode or decode the %s: %v", e.What, e.Err)
}

func (e *CodecError) Unwrap() error { return e.Err }

// Function is a function registered to run in worker processes; see Func.
type Function[In, Out any] struct {
	name string
	in   Codec[In]
	out  Codec[Out]
}

// Name returns the registered name.
func (f *Function[In, Out]) Name() string { return f.name }

// Func registers fn under name so that worker processes can run it (see
// NewPool). Call it at package level: registering a name twice panics.
func Func[In, Out any](name string, fn func(ctx context.Context, in In) (Out, error)) *Function[In, Out] {
	f := &Function[In, Out]{name: name, in: lazyCodec[In](), out: lazyCodec[Out]()}
	inSplit, outSplit := newSplitter(f.in), newSplitter(f.out)
	register(&entry{name: name, kind: kindFunc, attach: func(h *host, _ []byte) (instance, error) {
		return &funcInstance[In, Out]{h: h, fn: fn, f: f, inSplit: inSplit, outSplit: outSplit}, nil
	}})
	return f
}

type funcInstance[In, Out any] struct {
	noStream
	h        *host
	fn       func(context.Context, In) (Out, error)
	f        *Function[In, Out]
	inSplit  *splitter[In]
	outSplit *splitter[Out]
}

func (fi *funcInstance[In, Out]) call(ctx context.Context, body []byte) ([]byte, error) {
	var out Out
	in, err := decodeInput(fi.h, fi.f.in, fi.inSplit, body)
	if err != nil {
		return nil, err
	}
	// The call holds its input's Buffers, and gives back those it did not
	// return once its result is encoded (which gives those away).
	defer func() {
		fi.inSplit.eachBuffer(in, func(b *shm.Buffer) {
			returned := false
			fi.outSplit.eachBuffer(out, func(o *shm.Buffer) { returned = returned || o == b })
			if !returned {
				b.Release()
			}
		})
	}()
	if out, err = fi.fn(ctx, in); err != nil {
		var zero Out
		out = zero // not sent: its Buffers are not the input's
		return nil, err
	}
	var b []byte
	if fi.h.arena != nil {
		// The parent views the parts when it reads the result; if it never
		// does, it discards them, or reclaims them at this worker's death.
		b, _, err = fi.outSplit.encode(ctx, fi.h.arena, fi.h.threshold, nil, out)
	} else {
		b, err = fi.f.out.Append(nil, out)
		fi.outSplit.giveAway(out)
	}
	if err != nil {
		return nil, &CodecError{What: "output", Err: err}
	}
	return b, nil
}

// decodeInput decodes a call's input, whose large parts are in the arena
// when the worker has one.
func decodeInput[In any](h *host, c Codec[In], split *splitter[In], body []byte) (In, error) {
	var in In
	var err error
	if h.arena != nil {
		var m splitMsg
		if m, err = viewSplit(h.arena, body); err == nil {
			in, err = split.decode(&m)
		}
	} else {
		in, err = c.Decode(body)
	}
	if err != nil {
		return in, &CodecError{What: "input", Err: err}
	}
	return in, nil
}

// FlatFunction is a one-to-many function registered to run in worker
// processes; see FlatFunc.
type FlatFunction[In, Out any] struct {
	name string
	in   Codec[In]
	out  Codec[Out]
}

// Name returns the registered name.
func (f *FlatFunction[In, Out]) Name() string { return f.name }

// FlatFunc registers a one-to-many function under name, the shape of
// pipeline.FlatPipe: in a worker, each call streams what fn yields back
// to the caller as it is yielded, with credits (see NewFlatPool). An error
// fn yields fails that output and the call goes on. Call it at package
// level: registering a name twice panics.
func FlatFunc[In, Out any](name string, fn func(ctx context.Context, in In) iter.Seq2[Out, error]) *FlatFunction[In, Out] {
	f := &FlatFunction[In, Out]{name: name, in: lazyCodec[In](), out: lazyCodec[Out]()}
	inSplit := newSplitter(f.in)
	register(&entry{name: name, kind: kindFlat, attach: func(h *host, _ []byte) (instance, error) {
		return &flatInstance[In, Out]{h: h, fn: fn, f: f, inSplit: inSplit, noCall: noCall{kindFlat}}, nil
	}})
	return f
}

type flatInstance[In, Out any] struct {
	noCall
	h       *host
	fn      func(context.Context, In) iter.Seq2[Out, error]
	f       *FlatFunction[In, Out]
	inSplit *splitter[In]
}

func (fi *flatInstance[In, Out]) stream(ctx context.Context, body []byte, out *outStream) error {
	in, err := decodeInput(fi.h, fi.f.in, fi.inSplit, body)
	if err != nil {
		return err
	}
	return streamItems(ctx, fi.h, fi.fn(ctx, in), fi.f.out, out)
}

func (fi *flatInstance[In, Out]) stats() ([]byte, error) { return nil, nil }

// IterFunc is an iterable factory registered to run in worker processes;
// see Iter.
type IterFunc[A, T any] struct {
	name string
	args Codec[A]
	item Codec[T]
}

// Name returns the registered name.
func (f *IterFunc[A, T]) Name() string { return f.name }

// Iter registers an iterable factory under name (see Iterate): in the
// worker, each pass calls fn with the arguments given to Iterate and streams
// what it yields. An error it yields fails that item; the pass goes on. Call
// it at package level: registering a name twice panics.
func Iter[A, T any](name string, fn func(ctx context.Context, args A) iter.Seq2[T, error]) *IterFunc[A, T] {
	f := &IterFunc[A, T]{name: name, args: lazyCodec[A](), item: lazyCodec[T]()}
	register(&entry{name: name, kind: kindIter, attach: func(h *host, raw []byte) (instance, error) {
		a, err := f.args.Decode(raw)
		if err != nil {
			return nil, &CodecError{What: "argument", Err: err}
		}
		return &iterInstance[T]{h: h, seq: func(ctx context.Context) iter.Seq2[T, error] { return fn(ctx, a) }, codec: f.item, noCall: noCall{kindIter}}, nil
	}})
	return f
}

type iterInstance[T any] struct {
	noCall
	h     *host
	seq   func(context.Context) iter.Seq2[T, error]
	codec Codec[T]
	p     *pipeline.Pipeline[T] // for a registered pipeline
}

func (in *iterInstance[T]) stream(ctx context.Context, _ []byte, out *outStream) error {
	return streamItems(ctx, in.h, in.seq(ctx), in.codec, out)
}

func (in *iterInstance[T]) stats() ([]byte, error) {
	if in.p == nil {
		return nil, errors.New("it runs no pipeline")
	}
	return json.Marshal(in.p.Stats())
}

// streamItems sends what seq yields on out (see itemSender).
func streamItems[T any](ctx context.Context, h *host, seq iter.Seq2[T, error], codec Codec[T], out *outStream) error {
	s := newItemSender(ctx, h, codec, out)
	for v, err := range seq {
		if !s.send(v, err) {
			return nil // cancelled: the opener has gone
		}
	}
	return nil
}

// itemSender encodes the items of a stream and sends them on out: through
// the arena when the worker has one and the type allows (Shared, []byte,
// large numeric slices), otherwise through the codec. An item that cannot
// be encoded fails alone.
type itemSender[T any] struct {
	ctx    context.Context
	h      *host
	out    *outStream
	enc    itemEncoder[T] // what it returns is sent before the next item
	shared bool
	parts  *splitter[T] // T's large parts: through the arena when there is one; its Buffers are given away either way
	buf    []byte
	i      int
}

func newItemSender[T any](ctx context.Context, h *host, codec Codec[T], out *outStream) *itemSender[T] {
	s := &itemSender[T]{ctx: ctx, h: h, out: out, enc: itemEncoder[T]{c: codec}}
	var zero T
	_, isBytes := any(zero).([]byte)
	_, isShared := any(zero).(Shared)
	s.shared = isShared || (isBytes && h.arena != nil)
	if p := newSplitter(codec); !s.shared && !p.getPlan().empty() {
		s.parts = p
	}
	return s
}

// send sends one item, or its error; false: the stream was cancelled.
func (s *itemSender[T]) send(v T, err error) bool {
	e := encoded{t: wire.Data}
	switch {
	case err != nil:
		// An item that comes with an error is not sent: its Buffers are
		// given away all the same.
		if s.parts != nil {
			s.parts.giveAway(v)
		}
	case s.shared:
		var ok bool
		if e, ok, err = encodeShared(s.ctx, s.h.arena, any(v), s.buf); ok && err == nil {
			s.buf = e.body
		} else if ok && err != nil {
			err = fmt.Errorf("item %d: %w", s.i, err)
		}
	case s.parts != nil && s.h.arena != nil:
		e.t = wire.DataSplit
		if e.body, e.refs, err = s.parts.encode(s.ctx, s.h.arena, s.h.threshold, s.buf[:0], v); err != nil {
			err = &CodecError{What: fmt.Sprintf("item %d", s.i), Err: err}
		} else if cap(e.body) <= maxReuse {
			s.buf = e.body
		}
	default:
		if e.body, err = s.enc.encode(v); err != nil {
			err = &CodecError{What: fmt.Sprintf("item %d", s.i), Err: err}
		}
		if s.parts != nil {
			s.parts.giveAway(v)
		}
	}
	s.i++
	return s.out.send(e, err)
}

// PipelineFunc is a pipeline factory registered to run in worker
// processes; see Pipeline.
type PipelineFunc[A, T any] struct {
	name string
	args Codec[A]
	item Codec[T]
}

// Name returns the registered name.
func (f *PipelineFunc[A, T]) Name() string { return f.name }

// Pipeline registers a pipeline factory under name (see RunPipeline): the
// worker builds the pipeline once and streams one epoch per pass. Build
// options travel with the config (pipeline.Config.With). Call it at package
// level: registering a name twice panics.
func Pipeline[A, T any](name string, fn func(args A) (*pipeline.Config[T], error)) *PipelineFunc[A, T] {
	f := &PipelineFunc[A, T]{name: name, args: lazyCodec[A](), item: lazyCodec[T]()}
	register(&entry{name: name, kind: kindPipeline, attach: func(h *host, raw []byte) (instance, error) {
		a, err := f.args.Decode(raw)
		if err != nil {
			return nil, &CodecError{What: "argument", Err: err}
		}
		cfg, err := fn(a)
		if err != nil {
			return nil, err
		}
		p, err := pipeline.Build(cfg)
		if err != nil {
			return nil, err
		}
		return &iterInstance[T]{h: h, seq: p.Epoch, codec: f.item, p: p, noCall: noCall{kindPipeline}}, nil
	}})
	return f
}

// Initializer is code registered to run in a worker before it reports
// ready; see Init and Initializers.
type Initializer struct{ name string }

// Init registers fn to run in a worker before it reports ready, when a
// pool or iterable is started with Initializers(...). An error fails the
// start. Call it at package level: registering a name twice panics.
func Init(name string, fn func(ctx context.Context) error) *Initializer {
	register(&entry{name: name, kind: kindInit, init: fn})
	return &Initializer{name: name}
}
