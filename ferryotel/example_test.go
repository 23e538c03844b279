package ferryotel_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferrypipe/ferry/ferryotel"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// Spans for a pipeline whose stage calls a pool of worker processes: a
// span per stage call, its child per worker call, and the children that
// worker code starts (with the worker's own tracer provider).
func Example() {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter() // an OTLP exporter in a real program
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(ctx)

	pool, err := proc.NewPool(ctx, double, proc.Workers(1), proc.WithCallHook(ferryotel.CallHook(ferryotel.WithTracerProvider(tp))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	s := pipeline.Pipe(pipeline.FromSlice([]int{1, 2}), pool.Call, pipeline.Name("double"))
	p, err := pipeline.Build(pipeline.Sink(s, 2), pipeline.WithHooks(ferryotel.Hooks("example", ferryotel.WithTracerProvider(tp))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for range p.Epoch(ctx) {
	}
	stages, calls := 0, 0
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "ferry.stage double":
			stages++
		case "ferry.call ferryotel.test/double":
			calls++
		}
	}
	fmt.Println(stages, "stage spans,", calls, "call spans")
	// Output: 2 stage spans, 2 call spans
}
