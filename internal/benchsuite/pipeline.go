package benchsuite

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
)

// The in-process engine, compared with limit/chan-handoff.
func init() {
	Register(Benchmark{Name: "pipeline/source-sink", Limit: "limit/chan-handoff", Run: pipelineRate(func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return s })})
	Register(Benchmark{Name: "pipeline/source-pipe-sink", Limit: "limit/chan-handoff", Run: pipelineRate(func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Pipe(s, identity)
	})})
	Register(Benchmark{Name: "pipeline/ordered-pipe-c8", Limit: "limit/chan-handoff", Run: pipelineRate(func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Pipe(s, identity, pipeline.Concurrency(8), pipeline.Ordered())
	})})
	// An I/O-bound stage: the ratio of the two shows how concurrency scales.
	for _, c := range []int{1, 16} {
		Register(Benchmark{Name: fmt.Sprintf("pipeline/sleep-1ms-c%d", c), Run: pipelineRate(func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
			return pipeline.Pipe(s, sleep1ms, pipeline.Concurrency(c))
		})})
	}
}

func identity(_ context.Context, v int) (int, error) { return v, nil }

func sleep1ms(ctx context.Context, v int) (int, error) {
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return v, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// pipelineRate measures items/s through a pipeline of n integers: a source,
// the stages chain adds, and a sink consumed by this goroutine.
func pipelineRate(chain func(*pipeline.Stage[int]) *pipeline.Stage[int]) func(context.Context, Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		rate, runs, err := Rate(ctx, cfg, func(n int) error {
			src := pipeline.FromSeq(func(yield func(int) bool) {
				for i := range n {
					if !yield(i) {
						return
					}
				}
			})
			p, err := pipeline.Build(pipeline.Sink(chain(src), 256))
			if err != nil {
				return err
			}
			defer p.Close()
			got := 0
			for _, err := range p.Epoch(ctx) {
				if err != nil {
					return err
				}
				got++
			}
			if got != n {
				return fmt.Errorf("received %d items, want %d", got, n)
			}
			return nil
		})
		return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, err
	}
}
