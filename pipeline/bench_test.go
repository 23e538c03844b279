package pipeline_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
)

func identity(_ context.Context, v int) (int, error) { return v, nil }

// benchPipeline consumes b.N items from a continuous pipeline built on src.
func benchPipeline(b *testing.B, build func(*pipeline.Stage[int]) *pipeline.Stage[int]) {
	items := make([]int, 1<<16)
	p, err := pipeline.Build(pipeline.Sink(build(pipeline.FromSlice(items)), 256), pipeline.Continuous())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ResetTimer()
	n := 0
	for n < b.N {
		for range p.Epoch(ctx) {
			n++
			if n == b.N {
				break
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

func BenchmarkSourceSink(b *testing.B) {
	benchPipeline(b, func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return s })
}

func BenchmarkSourcePipeSink(b *testing.B) {
	benchPipeline(b, func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return pipeline.Pipe(s, identity) })
}

func BenchmarkOrderedPipeC8(b *testing.B) {
	benchPipeline(b, func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Pipe(s, identity, pipeline.Concurrency(8), pipeline.Ordered())
	})
}

func BenchmarkUnorderedPipeC8(b *testing.B) {
	benchPipeline(b, func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Pipe(s, identity, pipeline.Concurrency(8))
	})
}

func BenchmarkChanHandoff(b *testing.B) {
	ch := make(chan int, 64)
	go func() {
		for i := range b.N {
			ch <- i
		}
		close(ch)
	}()
	for range ch {
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}
