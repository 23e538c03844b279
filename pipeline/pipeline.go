package pipeline

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// Config is a complete pipeline description, ready to Build.
type Config[T any] struct {
	last   *Stage[T]
	buffer int
	opts   []Option
}

// With returns a copy of the config that Build applies opts to, before the
// options given to Build itself. It lets code that only returns a Config
// (such as a pipeline factory run in a worker process) choose its options.
func (c *Config[T]) With(opts ...Option) *Config[T] {
	d := *c
	d.opts = append(append([]Option(nil), c.opts...), opts...)
	return &d
}

// Sink ends a pipeline description: the consumer receives the items of up
// through a queue of about buffer items.
func Sink[T any](up *Stage[T], buffer int) *Config[T] {
	return &Config[T]{last: up, buffer: buffer}
}

// Pipeline is a built, running pipeline. Its goroutines start at Build and
// wait for the first epoch to be asked for (or for Start). Consume it from
// one goroutine at a time; Close releases it.
type Pipeline[T any] struct {
	r   *run
	out *edge[T]

	mu   sync.Mutex // held while consuming
	buf  []envelope[T]
	pos  int
	cur  uint64 // the epoch being consumed, or the next one
	open bool   // epoch cur has been asked for and has not ended

	closeOnce sync.Once
}

// Build checks a pipeline description and starts its goroutines. A Pipeline
// that is neither consumed nor closed does not keep a program from exiting;
// once unreachable, its goroutines stop.
func Build[T any](cfg *Config[T], opts ...Option) (*Pipeline[T], error) {
	if cfg == nil || cfg.last == nil {
		return nil, errors.New("pipeline: Build needs a Sink with a stage")
	}
	o := &buildOptions{}
	for _, f := range append(append([]Option(nil), cfg.opts...), opts...) {
		f(o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	r := newRun(o)
	if o.budget != nil && o.budget.err != nil {
		r.buildError(fmt.Errorf("pipeline: MaxFailures: %w", o.budget.err))
	}
	last := input(r, cfg.last, "sink")
	if cfg.buffer < 1 {
		r.buildError(fmt.Errorf("pipeline: sink buffer %d, want ≥ 1", cfg.buffer))
	}
	out := newEdge[T](r, "sink", cfg.buffer)
	r.goStage("sink", func() {
		serial(r, last, out, func(env envelope[T], s *sender[T]) bool { return s.add(r.ctx, env, 0) }, nil)
	})
	if o.report < 0 {
		r.buildError(fmt.Errorf("pipeline: ReportStats interval %v, want > 0", o.report))
	}
	if r.buildErr != nil {
		r.cancel(r.buildErr)
		r.wg.Wait()
		return nil, r.buildErr
	}
	for _, b := range o.background {
		r.goStage(b.name, func() {
			if err := b.fn(r.ctx); err != nil && r.ctx.Err() == nil {
				r.fail(fmt.Errorf("pipeline: background task %q: %w", b.name, err))
			}
		})
	}
	if o.report > 0 {
		r.goStage("stats", func() { r.report(r.ctx, o.report) })
	}
	p := &Pipeline[T]{r: r, out: out}
	runtime.AddCleanup(p, func(r *run) { r.cancel(ErrClosed) }, r)
	return p, nil
}

// Start begins producing the first epoch before it is asked for. It is
// optional and idempotent.
func (p *Pipeline[T]) Start() {
	p.r.release()
	p.r.demand(0)
}

// Epoch returns the items of one epoch: one pass over the sources. Breaking
// out of the loop, or cancelling ctx, abandons the rest of the epoch (its
// in-flight calls see their context cancelled) and the next Epoch starts
// with a complete new one. A failure that stops the pipeline is yielded as
// the last error; failed items within the budget are not yielded.
func (p *Pipeline[T]) Epoch(ctx context.Context) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		if !p.mu.TryLock() {
			yield(zero, ErrBusy)
			return
		}
		defer p.mu.Unlock()
		for {
			v, err := p.next(ctx)
			switch {
			case err == nil:
				if !yield(v, nil) {
					p.abandon()
					return
				}
			case errors.Is(err, ErrEpochEnd):
				return
			default:
				if ctx.Err() != nil {
					p.abandon()
				}
				yield(zero, err)
				return
			}
		}
	}
}

// Next returns the next item of the current epoch, or ErrEpochEnd when the
// epoch is over; the call after that starts the next epoch. When ctx ends
// first (use context.WithTimeout for a timeout), Next returns ctx.Err() and
// the epoch goes on.
func (p *Pipeline[T]) Next(ctx context.Context) (T, error) {
	if !p.mu.TryLock() {
		var zero T
		return zero, ErrBusy
	}
	defer p.mu.Unlock()
	return p.next(ctx)
}

func (p *Pipeline[T]) next(ctx context.Context) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if !p.open {
		if err := p.Err(); err != nil {
			return zero, err
		}
		p.r.release()
		p.r.demand(p.cur)
		p.open = true
	}
	drained := p.r.sourcesDone
	for {
		for p.pos < len(p.buf) {
			env := p.buf[p.pos]
			p.buf[p.pos] = envelope[T]{}
			p.pos++
			if env.ep.n < p.cur { // left over from an abandoned epoch
				if env.end {
					p.r.finishEpoch(env.ep.n)
				}
				continue
			}
			if env.end {
				if err := p.Err(); err != nil {
					// The pipeline failed: the epoch may be incomplete.
					return zero, err
				}
				p.r.finishEpoch(p.cur)
				p.cur++
				p.open = false
				return zero, ErrEpochEnd
			}
			return env.v, nil
		}
		p.buf, p.pos = nil, 0
		select {
		case c := <-p.out.ch:
			p.buf = c
			continue
		default:
		}
		start := time.Now()
		select {
		case c := <-p.out.ch:
			p.out.stats.got(len(c), time.Since(start))
			p.buf = c
		case <-drained:
			// Stopped, and no source will start another pass: epoch
			// p.cur either started, and its end marker is on its way, or
			// never will.
			if p.cur >= p.r.passes.Load() {
				p.open = false
				return zero, ErrStopped
			}
			drained = nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-p.r.ctx.Done():
			return zero, p.Err()
		}
	}
}

// abandon gives up the rest of the current epoch.
func (p *Pipeline[T]) abandon() {
	if p.open {
		p.r.epoch(p.cur).abort()
		p.cur++
		p.open = false
	}
}

// Stop asks the sources to end the pass they are in and start no other;
// every item already produced still reaches the consumer, the current epoch
// ends early with its last item, and after it Epoch and Next report
// ErrStopped. It does not wait: call Close to release the goroutines.
// Stop is idempotent.
func (p *Pipeline[T]) Stop() { p.r.stop() }

// Err returns what stopped the pipeline: a *BudgetError, a background task's
// error, or ErrClosed; nil while it runs.
func (p *Pipeline[T]) Err() error {
	if p.r.ctx.Err() == nil {
		return nil
	}
	return context.Cause(p.r.ctx)
}

// Stats returns a snapshot of every stage and queue. It is safe to call at
// any time, from any goroutine. Once an epoch has ended for the consumer
// (its loop finished, or Next returned ErrEpochEnd), every item of that
// epoch and its end marker are counted in every queue and stage; with
// Continuous, items of the next epoch may already be counted too.
func (p *Pipeline[T]) Stats() Stats { return p.r.stats() }

// Close stops every goroutine of the pipeline and waits for them; stage
// functions see their context cancelled. It is idempotent and safe to call
// from any goroutine, also while an epoch is being consumed.
func (p *Pipeline[T]) Close() error {
	p.closeOnce.Do(func() {
		p.r.cancel(ErrClosed)
		p.r.wg.Wait()
	})
	return nil
}
