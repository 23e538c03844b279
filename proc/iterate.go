package proc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/pipeline"
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

	mu   sync.Mutex // held during a pass
	pass uint64     // the next pass's id

	statsMu sync.Mutex // one PipelineStats request at a time
}

// frame is one message from the worker.
type frame struct {
	t    wire.Type
	id   uint64
	body []byte
}

// inbox queues the worker's messages for the consumer. The reading
// goroutine never waits on it: credits bound what a worker can send.
type inbox struct {
	mu      sync.Mutex
	pending []frame // being collected by the reader
	ready   []frame // handed to the consumer
	notify  chan struct{}
	stats   chan []byte // StatsReply bodies
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1), stats: make(chan []byte, 1)} }

func (b *inbox) frame(t wire.Type, id uint64, body []byte) {
	if t == wire.StatsReply {
		select {
		case b.stats <- body:
		default: // nobody asked: drop it
		}
		return
	}
	b.mu.Lock()
	b.pending = append(b.pending, frame{t, id, body})
	if len(b.pending) >= 256 {
		b.publish()
	}
	b.mu.Unlock()
}

func (b *inbox) idle() {
	b.mu.Lock()
	b.publish()
	b.mu.Unlock()
}

// publish moves pending frames to the consumer; b.mu is held.
func (b *inbox) publish() {
	if len(b.pending) == 0 {
		return
	}
	b.ready = append(b.ready, b.pending...)
	b.pending = b.pending[:0]
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// take returns everything ready, or nil.
func (b *inbox) take(into []frame) []frame {
	b.mu.Lock()
	defer b.mu.Unlock()
	into = append(into[:0], b.ready...)
	clear(b.ready)
	b.ready = b.ready[:0]
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
	in := newInbox()
	w, err := startWorker(ctx, o, wire.InitMsg{Version: wire.Version, Kind: kind, Name: name, Args: args, Initializers: initNames(o)}, in)
	if err != nil {
		return nil, err
	}
	return &Iterable[T]{w: w, codec: codec, o: o, inbox: in}, nil
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
		if err := it.w.send(wire.Start, id, wire.U32(uint32(it.o.buffer))); err != nil {
			yield(zero, it.deadOr(err))
			return
		}
		grant := max(1, it.o.buffer/2)
		used := 0
		var batch []frame
		for {
			var err error
			batch, err = it.wait(ctx, batch)
			if err != nil {
				_ = it.w.send(wire.Stop, id, nil)
				yield(zero, err)
				return
			}
			for _, f := range batch {
				if f.id != id {
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
				if used++; used == grant {
					used = 0
					if err := it.w.send(wire.Credit, id, wire.U32(uint32(grant))); err != nil {
						yield(zero, it.deadOr(err))
						return
					}
				}
				if !yield(v, err) {
					_ = it.w.send(wire.Stop, id, nil)
					return
				}
			}
		}
	}
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
	return nil
}

var _ pipeline.Source[int] = (*Iterable[int])(nil)
