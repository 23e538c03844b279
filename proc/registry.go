package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"sync"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/pipeline"
)

// Kinds of registered code, as named in the protocol's Init message.
const (
	kindFunc     = "func"
	kindIter     = "iter"
	kindPipeline = "pipeline"
	kindInit     = "init"
)

// entry is one registered name. The worker side uses its closures, which
// capture the generic types of the registration.
type entry struct {
	name string
	kind string
	// func: decode the input, call, encode the output.
	call func(ctx context.Context, in []byte) ([]byte, error)
	// iter, pipeline: decode the arguments and prepare passes.
	open func(args []byte) (instance, error)
	// init: run before the worker reports ready.
	init func(ctx context.Context) error
}

// instance is an opened iterable in a worker: one pass per epoch.
type instance interface {
	// pass yields encoded items, each valid only until the next; an
	// error fails one item.
	pass(ctx context.Context) iter.Seq2[encoded, error]
	// stats describes the instance as JSON (pipeline stats), or nil.
	stats() ([]byte, error)
	close()
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
		return nil, fmt.Errorf("proc: nothing is registered as %q (register it at package level with proc.Func, proc.Iter, proc.Pipeline or proc.Init)", name)
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
	register(&entry{name: name, kind: kindFunc, call: func(ctx context.Context, body []byte) ([]byte, error) {
		var in In
		var err error
		if workerArena != nil {
			var m splitMsg
			if m, err = viewSplit(workerArena, body); err == nil {
				in, err = inSplit.decode(&m)
			}
		} else {
			in, err = f.in.Decode(body)
		}
		if err != nil {
			return nil, &CodecError{What: "input", Err: err}
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		var b []byte
		if workerArena != nil {
			// The parent views the parts when it reads the result; if it
			// never does, it discards them, or reclaims them at this
			// worker's death.
			b, _, err = outSplit.encode(ctx, workerArena, workerThreshold, nil, out)
		} else {
			b, err = f.out.Append(nil, out)
		}
		if err != nil {
			return nil, &CodecError{What: "output", Err: err}
		}
		return b, nil
	}})
	return f
}

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
	register(&entry{name: name, kind: kindIter, open: func(raw []byte) (instance, error) {
		a, err := f.args.Decode(raw)
		if err != nil {
			return nil, &CodecError{What: "argument", Err: err}
		}
		return &iterInstance[T]{seq: func(ctx context.Context) iter.Seq2[T, error] { return fn(ctx, a) }, codec: f.item}, nil
	}})
	return f
}

type iterInstance[T any] struct {
	seq   func(context.Context) iter.Seq2[T, error]
	codec Codec[T]
	p     *pipeline.Pipeline[T] // for a registered pipeline
}

func (in *iterInstance[T]) pass(ctx context.Context) iter.Seq2[encoded, error] {
	return func(yield func(encoded, error) bool) {
		i := 0
		enc := itemEncoder[T]{c: in.codec} // what it returns is sent before the next item
		var zero T
		_, isBytes := any(zero).([]byte)
		_, isShared := any(zero).(Shared)
		shared := isShared || (isBytes && workerArena != nil)
		var split *splitter[T]
		if workerArena != nil && !shared {
			if split = newSplitter(in.codec); split.getPlan().empty() {
				split = nil
			}
		}
		var buf []byte
		for v, err := range in.seq(ctx) {
			e := encoded{t: wire.Item}
			switch {
			case err != nil:
			case shared:
				var ok bool
				if e, ok, err = encodeShared(ctx, any(v), buf); ok && err == nil {
					buf = e.body
				} else if ok && err != nil {
					err = fmt.Errorf("item %d: %w", i, err)
				}
			case split != nil:
				e.t = wire.ItemSplit
				if e.body, e.refs, err = split.encode(ctx, workerArena, workerThreshold, buf[:0], v); err != nil {
					err = &CodecError{What: fmt.Sprintf("item %d", i), Err: err}
				} else if cap(e.body) <= maxReuse {
					buf = e.body
				}
			default:
				if e.body, err = enc.encode(v); err != nil {
					err = &CodecError{What: fmt.Sprintf("item %d", i), Err: err}
				}
			}
			i++
			if !yield(e, err) { // run discards an item it does not send
				return
			}
		}
	}
}

func (in *iterInstance[T]) stats() ([]byte, error) {
	if in.p == nil {
		return nil, nil
	}
	return json.Marshal(in.p.Stats())
}

func (in *iterInstance[T]) close() {
	if in.p != nil {
		in.p.Close()
	}
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
	register(&entry{name: name, kind: kindPipeline, open: func(raw []byte) (instance, error) {
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
		return &iterInstance[T]{seq: p.Epoch, codec: f.item, p: p}, nil
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
