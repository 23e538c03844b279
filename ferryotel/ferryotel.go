// Package ferryotel connects ferry to OpenTelemetry: spans around stage
// calls and worker calls, the W3C trace context carried into worker
// processes, and metrics from ferry's own stats. It is a package of its own
// so that ferry's core packages do not depend on OpenTelemetry.
//
// Importing it registers a meta.Propagator for the W3C trace context, in
// every process of the program (workers are the same binary): a span in the
// caller's context becomes the remote parent of the context worker code
// runs with, so spans that worker code starts are its children — in a Pool
// or FlatPool call, an Iterate or RunPipeline pass, a batch task (on every
// backend, JetStream included) and a graph element placed in a worker.
//
//	pool, err := proc.NewPool(ctx, Decode, proc.WithCallHook(ferryotel.CallHook()))
//	p, err := pipeline.Build(cfg, pipeline.WithHooks(ferryotel.Hooks("train")))
//	m, err := ferryotel.NewMetrics()
//	defer m.Pipeline("train", p.Stats)()
//
// Spans are named "ferry.stage STAGE" and "ferry.call POOL" and carry
// ferry.pipeline, ferry.stage, ferry.pool, ferry.worker.pid and
// ferry.call.attempts; a failed call or item sets the span's status to
// Error and records the error. Metric names are listed at NewMetrics.
package ferryotel

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// ScopeName is the instrumentation scope of ferry's spans and metrics.
const ScopeName = "github.com/ferrypipe/ferry/ferryotel"

func init() { meta.RegisterPropagator(traceContext{}) }

// traceContext carries the W3C trace context of a call's context in its
// metadata (traceparent, tracestate).
type traceContext struct{}

func (traceContext) Inject(ctx context.Context, md map[string]string) {
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(md))
}

func (traceContext) Extract(ctx context.Context, md map[string]string) context.Context {
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(md))
}

// Option configures the hooks and metrics of this package.
type Option func(*config)

type config struct {
	tp    trace.TracerProvider
	mp    metric.MeterProvider
	ratio float64
}

// sample draws whether a call without a sampled parent gets a span.
func (c *config) sample() bool {
	switch {
	case c.ratio >= 1:
		return true
	case c.ratio <= 0:
		return false
	}
	return rand.Float64() < c.ratio
}

// SampleCalls sets the fraction of stage calls without a sampled parent
// span that start a span (default 1: all of them, for the tracer
// provider's sampler to decide). The others cost a random draw and
// nothing more; SampleCalls(0) turns the stage spans off.
func SampleCalls(f float64) Option { return func(c *config) { c.ratio = f } }

// WithTracerProvider sets the tracer provider (default otel's global one).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets the meter provider (default otel's global one).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

func newConfig(opts []Option) config {
	c := config{ratio: 1}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	return c
}

// CallHook returns a proc.CallHook that makes a client span per Pool or
// FlatPool call, the parent of the spans its worker code starts.
func CallHook(opts ...Option) proc.CallHook {
	tracer := newConfig(opts).tp.Tracer(ScopeName)
	return func(ctx context.Context, pool string) (context.Context, func(proc.CallEnd)) {
		ctx, span := tracer.Start(ctx, "ferry.call "+pool, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("ferry.pool", pool)))
		return ctx, func(e proc.CallEnd) {
			span.SetAttributes(attribute.Int("ferry.worker.pid", e.PID), attribute.Int("ferry.call.attempts", e.Attempts))
			endSpan(span, e.Err)
		}
	}
}

// Hooks returns pipeline hooks that make a span per stage call of the
// pipeline called name, the parent of what the call does (a worker call
// made with pool.Call included). An item dropped on purpose
// (pipeline.ErrSkip) is not an error: its span gets the event "skipped".
//
// A call whose context carries a sampled span always gets a child span.
// Other calls start a root span, which the tracer provider's sampler may
// drop — but starting one costs about a microsecond even then, several
// times a trivial stage's own cost. SampleCalls(f) decides first, with a
// random draw: the calls it leaves out cost nothing.
func Hooks(name string, opts ...Option) pipeline.Hooks {
	c := newConfig(opts)
	tracer := c.tp.Tracer(ScopeName)
	var starts sync.Map // stage → its span name and start options, made once
	return pipeline.Hooks{Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
		if !trace.SpanContextFromContext(ctx).IsSampled() && !c.sample() {
			return ctx, nil
		}
		st, ok := starts.Load(stage)
		if !ok {
			st, _ = starts.LoadOrStore(stage, spanStart{name: "ferry.stage " + stage, opts: []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindInternal),
				trace.WithAttributes(attribute.String("ferry.pipeline", name), attribute.String("ferry.stage", stage))}})
		}
		s := st.(spanStart)
		ctx, span := tracer.Start(ctx, s.name, s.opts...)
		return ctx, func(err error) {
			if errors.Is(err, pipeline.ErrSkip) {
				span.AddEvent("skipped")
				err = nil
			}
			endSpan(span, err)
		}
	}}
}

// spanStart is how a stage's spans start.
type spanStart struct {
	name string
	opts []trace.SpanStartOption
}

// endSpan ends span with err's status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
