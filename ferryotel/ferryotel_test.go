package ferryotel_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferrypipe/ferry/ferryotel"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// spanIDs are what a worker reports of the span it made.
type spanIDs struct {
	Trace, Span, Parent string
	Remote              bool // its parent came from another process
	PID                 int
}

// childSpan starts and ends a span in the worker, with a tracer provider of
// the worker's own, and reports its ids and its parent's.
var childSpan = proc.Func("ferryotel.test/child", func(ctx context.Context, _ int) (spanIDs, error) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	_, span := tp.Tracer("worker").Start(ctx, "worker work")
	span.End()
	got := exp.GetSpans()[0]
	return spanIDs{Trace: got.SpanContext.TraceID().String(), Span: got.SpanContext.SpanID().String(),
		Parent: got.Parent.SpanID().String(), Remote: got.Parent.IsRemote(), PID: os.Getpid()}, nil
})

// TestSpanInWorkerIsChildOfCall: a span that worker code starts is the
// child of the call's span, itself the child of the caller's span — one
// trace across the process boundary.
func TestSpanInWorkerIsChildOfCall(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	for _, placement := range []struct {
		name string
		opts []proc.PoolOption
	}{{"process", nil}, {"in-process", []proc.PoolOption{proc.InProcess()}}} {
		t.Run(placement.name, func(t *testing.T) {
			exp.Reset()
			opts := append([]proc.PoolOption{proc.Workers(1), proc.WithCallHook(ferryotel.CallHook(ferryotel.WithTracerProvider(tp)))}, placement.opts...)
			pool, err := proc.NewPool(t.Context(), childSpan, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			ctx, root := tp.Tracer("test").Start(t.Context(), "request")
			got, err := pool.Call(ctx, 1)
			root.End()
			if err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			var call tracetest.SpanStub
			for _, s := range spans {
				if s.Name == "ferry.call ferryotel.test/child" {
					call = s
				}
			}
			if call.Name == "" {
				t.Fatalf("no call span among %d spans", len(spans))
			}
			if call.Parent.SpanID() != root.SpanContext().SpanID() {
				t.Errorf("the call span's parent is %s, want the caller's span %s", call.Parent.SpanID(), root.SpanContext().SpanID())
			}
			if got.Trace != root.SpanContext().TraceID().String() {
				t.Errorf("the worker's span is in trace %s, want %s", got.Trace, root.SpanContext().TraceID())
			}
			if got.Parent != call.SpanContext.SpanID().String() || !got.Remote {
				t.Errorf("the worker's span has parent %s (remote %v), want the call span %s, remote", got.Parent, got.Remote, call.SpanContext.SpanID())
			}
			attrs := map[attribute.Key]attribute.Value{}
			for _, a := range call.Attributes {
				attrs[a.Key] = a.Value
			}
			if attrs["ferry.worker.pid"].AsInt64() != int64(got.PID) || attrs["ferry.call.attempts"].AsInt64() != 1 || attrs["ferry.pool"].AsString() != "ferryotel.test/child" {
				t.Errorf("the call span's attributes: %v (worker pid %d)", call.Attributes, got.PID)
			}
		})
	}
}

// TestStageSpans: a stage call's span is the parent of the worker call it
// makes, whose span is the parent of the span made in the worker; a
// failed item's span has an error status; a skipped one does not.
func TestStageSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	pool, err := proc.NewPool(t.Context(), childSpan, proc.Workers(1), proc.WithCallHook(ferryotel.CallHook(ferryotel.WithTracerProvider(tp))))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	calls := pipeline.Pipe(pipeline.FromSlice([]int{1}), pool.Call, pipeline.Name("work"))
	checked := pipeline.Pipe(calls, func(_ context.Context, ids spanIDs) (spanIDs, error) {
		return ids, nil
	}, pipeline.Name("check"))
	p, err := pipeline.Build(pipeline.Sink(checked, 1), pipeline.WithHooks(ferryotel.Hooks("train", ferryotel.WithTracerProvider(tp))))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var got spanIDs
	for ids, err := range p.Epoch(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		got = ids
	}
	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	stage, call := byName["ferry.stage work"], byName["ferry.call ferryotel.test/child"]
	if stage.Name == "" || call.Name == "" {
		t.Fatalf("spans: %v", exp.GetSpans())
	}
	if call.Parent.SpanID() != stage.SpanContext.SpanID() {
		t.Errorf("the call's parent is %s, want the stage call's span %s", call.Parent.SpanID(), stage.SpanContext.SpanID())
	}
	if got.Parent != call.SpanContext.SpanID().String() || got.Trace != stage.SpanContext.TraceID().String() {
		t.Errorf("the worker's span: %+v, want the child of %s in trace %s", got, call.SpanContext.SpanID(), stage.SpanContext.TraceID())
	}

	// Failed and skipped items.
	exp.Reset()
	s := pipeline.Pipe(pipeline.FromSlice([]int{1, 2}), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, pipeline.ErrSkip
		}
		return 0, errors.New("bad item")
	}, pipeline.Name("judge"))
	p2, err := pipeline.Build(pipeline.Sink(s, 1), pipeline.WithHooks(ferryotel.Hooks("p2", ferryotel.WithTracerProvider(tp))),
		pipeline.MaxFailures(pipeline.Count(1)), pipeline.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for range p2.Epoch(t.Context()) {
	}
	var errs, skipped int
	for _, s := range exp.GetSpans() {
		if s.Status.Code == codes.Error {
			errs++
		}
		for _, e := range s.Events {
			if e.Name == "skipped" {
				skipped++
			}
		}
	}
	if errs != 1 || skipped != 1 {
		t.Errorf("%d spans with an error status and %d skipped, want 1 and 1", errs, skipped)
	}
}
