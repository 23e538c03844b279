package ferryotel_test

import (
	"context"
	"os"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferrypipe/ferry/ferryotel"
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
