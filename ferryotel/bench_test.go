package ferryotel_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ferrypipe/ferry/ferryotel"
	"github.com/ferrypipe/ferry/pipeline"
)

// BenchmarkSourcePipeSink is ferry bench's pipeline/source-pipe-sink (one
// identity stage between a source and the consumer) without hooks, with
// ferryotel's hooks on an SDK tracer provider that samples nothing (the
// adapter's cost when tracing is off), and with one that samples
// everything (spans recorded, exported nowhere); and with SampleCalls(0)
// and SampleCalls(0.01), which decide before the SDK is called.
//
//	go test -run '^$' -bench SourcePipeSink -count 5 ./ferryotel/
func BenchmarkSourcePipeSink(b *testing.B) {
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	always := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer never.Shutdown(context.Background())
	defer always.Shutdown(context.Background())
	for _, c := range []struct {
		name string
		opts []pipeline.Option
	}{
		{"no-hooks", nil},
		{"otel-unsampled", []pipeline.Option{pipeline.WithHooks(ferryotel.Hooks("bench", ferryotel.WithTracerProvider(never)))}},
		{"otel-calls-sampled-off", []pipeline.Option{pipeline.WithHooks(ferryotel.Hooks("bench", ferryotel.WithTracerProvider(always), ferryotel.SampleCalls(0)))}},
		{"otel-calls-sampled-1pct", []pipeline.Option{pipeline.WithHooks(ferryotel.Hooks("bench", ferryotel.WithTracerProvider(always), ferryotel.SampleCalls(0.01)))}},
		{"otel-sampled", []pipeline.Option{pipeline.WithHooks(ferryotel.Hooks("bench", ferryotel.WithTracerProvider(always)))}},
	} {
		b.Run(c.name, func(b *testing.B) {
			src := pipeline.FromSeq(func(yield func(int) bool) {
				for i := range b.N {
					if !yield(i) {
						return
					}
				}
			})
			s := pipeline.Pipe(src, func(_ context.Context, v int) (int, error) { return v, nil })
			p, err := pipeline.Build(pipeline.Sink(s, 256), c.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			b.ResetTimer()
			n := 0
			for _, err := range p.Epoch(context.Background()) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != b.N {
				b.Fatalf("%d items, want %d", n, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
