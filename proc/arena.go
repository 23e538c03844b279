package proc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/shm"
)

// Shared is an item already in the worker's shared-memory arena: worker
// code acquires a segment from WorkerArena, writes into it in place,
// publishes it and yields Shared{Ref: ref}. The worker sends the Ref, not
// the bytes; the parent receives it as a *shm.View (see IterateShared).
type Shared struct {
	Ref shm.Ref
}

// processArena is the arena of this worker process's host, if any.
var processArena atomic.Pointer[shm.SegmentPool]

// WorkerArena returns the shared-memory arena of this worker process, or
// nil when it has none (it was not started with the Arena option, or this
// is not a worker). Worker code writes an item in place with it:
//
//	lease, err := proc.WorkerArena().Acquire(ctx)
//	if err != nil { ... }
//	defer lease.Abandon()
//	n := fill(lease.Bytes())
//	ref, err := lease.Publish(n)
//	yield(proc.Shared{Ref: ref}, err)
func WorkerArena() *shm.SegmentPool { return processArena.Load() }

// ArenaThreshold sets the size in bytes from which a slice travels through
// the arena instead of through the codec (default DefaultArenaThreshold):
// a numeric slice item or call value ([]byte, []float32, …), or such a
// slice in an exported field of a struct item or value. See Arena.
func ArenaThreshold(n int) Option { return option(func(o *options) { o.threshold = n }) }

func (o *options) arenaThreshold() int {
	if o.threshold > 0 {
		return o.threshold
	}
	return DefaultArenaThreshold
}

// openArena maps the arena the parent passed as fd v.
func openArena(v, timeout, threshold string) (*shm.SegmentPool, int, error) {
	size := DefaultArenaThreshold
	if threshold != "" {
		n, err := strconv.Atoi(threshold)
		if err != nil || n < 1 {
			return nil, 0, fmt.Errorf("bad %s %q", envArenaSize, threshold)
		}
		size = n
	}
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, 0, fmt.Errorf("bad %s %q", envArena, v)
	}
	var opts []shm.Option
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil {
			return nil, 0, fmt.Errorf("bad %s %q", envArenaWait, timeout)
		}
		opts = append(opts, shm.AcquireTimeout(d))
	}
	p, err := shm.OpenSegmentPool(fd, opts...)
	closeFD(fd) // OpenSegmentPool keeps its own duplicate
	if err != nil {
		return nil, 0, fmt.Errorf("opening the arena on fd %d: %v", fd, err)
	}
	return p, size, nil
}

// encoded is one item of a pass, encoded in a worker: the body of a frame
// of type t (Item, ItemRef or ItemSplit) and the segments it refers to.
type encoded struct {
	t    wire.Type
	body []byte
	refs []shm.Ref
}

// encodeShared puts v in the arena when it is a []byte or a Shared and
// the worker has an arena; ok is false for every other value.
func encodeShared(ctx context.Context, arena *shm.SegmentPool, v any, buf []byte) (e encoded, ok bool, err error) {
	switch x := v.(type) {
	case Shared:
		if arena == nil {
			return e, true, fmt.Errorf("proc: a proc.Shared item needs a shared-memory arena (proc.Arena)")
		}
		return encoded{wire.DataRef, x.Ref.Append(buf[:0]), []shm.Ref{x.Ref}}, true, nil
	case []byte:
		if arena == nil {
			return e, false, nil
		}
		ref, err := arena.PublishCopy(ctx, x)
		if err != nil {
			return e, true, err
		}
		return encoded{wire.DataRef, ref.Append(buf[:0]), []shm.Ref{ref}}, true, nil
	}
	return e, false, nil
}

// IterateShared is Iterate for items that travel through shared memory:
// its items are []byte (the worker copies each into a segment of the
// arena: one memcpy) or Shared (the worker wrote it in place: no copy),
// and opts must include Arena. The consumer receives each item as a
// *shm.View of the segment, without a copy, and must Release it when it is
// done with it: the segment goes back to the worker then. A view that is
// never released is freed when it is garbage-collected, with a warning,
// but until then it holds its segment, and a consumer that holds every
// segment makes the worker's next item fail after the pool's
// AcquireTimeout with an error saying that views are being held.
//
// Items the consumer never saw (a pass it broke out of, a worker that
// died) are released by the Iterable; Close releases the rest.
func IterateShared[A, T any](ctx context.Context, it *IterFunc[A, T], args A, opts ...IterateOption) (*Iterable[*shm.View], error) {
	if it == nil {
		return nil, errors.New("proc: IterateShared with a nil IterFunc")
	}
	if err := checkShared[T](opts); err != nil {
		return nil, err
	}
	if _, err := lookup(it.name, kindIter); err != nil {
		return nil, err
	}
	raw, err := it.args.Append(nil, args)
	if err != nil {
		return nil, &CodecError{What: "argument", Err: err}
	}
	return startShared(ctx, kindIter, it.name, raw, opts)
}

// RunPipelineShared is RunPipeline for a pipeline whose items travel
// through shared memory, as IterateShared.
func RunPipelineShared[A, T any](ctx context.Context, p *PipelineFunc[A, T], args A, opts ...IterateOption) (*Iterable[*shm.View], error) {
	if p == nil {
		return nil, errors.New("proc: RunPipelineShared with a nil PipelineFunc")
	}
	if err := checkShared[T](opts); err != nil {
		return nil, err
	}
	if _, err := lookup(p.name, kindPipeline); err != nil {
		return nil, err
	}
	raw, err := p.args.Append(nil, args)
	if err != nil {
		return nil, &CodecError{What: "argument", Err: err}
	}
	return startShared(ctx, kindPipeline, p.name, raw, opts)
}

func checkShared[T any](opts []IterateOption) error {
	var zero T
	switch any(zero).(type) {
	case []byte, Shared:
	default:
		return fmt.Errorf("proc: items of type %T cannot travel in shared memory: want []byte or proc.Shared", zero)
	}
	if iterateOptions(opts).arena == nil {
		return errors.New("proc: shared-memory items need an arena: add the proc.Arena option")
	}
	return nil
}

func startShared(ctx context.Context, kind, name string, args []byte, opts []IterateOption) (*Iterable[*shm.View], error) {
	it, err := startIterable(ctx, kind, name, args, Codec[*shm.View](viewCodec{}), opts)
	if err != nil {
		return nil, err
	}
	it.view = func(v *shm.View) *shm.View { return v }
	return it, nil
}

// viewCodec rejects items that did not come through the arena.
type viewCodec struct{}

func (viewCodec) Append(dst []byte, _ *shm.View) ([]byte, error) {
	return dst, errors.New("proc: a *shm.View cannot be encoded")
}

func (viewCodec) Decode([]byte) (*shm.View, error) {
	return nil, errors.New("proc: the worker sent an item outside the shared-memory arena")
}
