package ferryotel

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/internal/sources"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Metrics reports ferry's figures as OpenTelemetry metrics. Pipelines,
// pools and arenas added to it are read at each collection (observable
// instruments over their Stats); stage call durations are a histogram fed
// by Hooks; batch runs are counted by the observer Batch returns. The
// instruments (attributes in brackets):
//
//	ferry.stage.calls          counter   calls of a stage function that finished [ferry.pipeline, ferry.stage]
//	ferry.stage.failures       counter   items that failed [ferry.pipeline, ferry.stage]
//	ferry.stage.skipped        counter   items dropped on purpose [ferry.pipeline, ferry.stage]
//	ferry.stage.call.duration  histogram call durations, s (with Hooks) [ferry.pipeline, ferry.stage]
//	ferry.queue.items          counter   items through the queue after a stage [ferry.pipeline, ferry.stage]
//	ferry.queue.occupancy      gauge     the queue's mean fill, 0 to 1 [ferry.pipeline, ferry.stage]
//	ferry.pool.calls, ferry.pool.failures, ferry.pool.timeouts, ferry.pool.restarts,
//	ferry.pool.retries         counters  [ferry.pool]
//	ferry.pool.workers, ferry.pool.in_flight  gauges [ferry.pool]
//	ferry.arena.segments       gauge     segments in each state [ferry.arena, state]
//	ferry.batch.attempts       counter   attempts started [ferry.job]
//	ferry.batch.outcomes       counter   attempts ended [ferry.job, outcome: done, failed, retried]
type Metrics struct {
	pipelines sources.Set[func() pipeline.Stats]
	pools     sources.Set[func() proc.PoolStats]
	arenas    sources.Set[*shm.SegmentPool]

	duration metric.Float64Histogram
	attempts metric.Int64Counter
	outcomes metric.Int64Counter
	reg      metric.Registration
}

// NewMetrics makes the instruments with the meter provider of opts
// (default otel's global one). Close unregisters the observable ones.
func NewMetrics(opts ...Option) (*Metrics, error) {
	meter := newConfig(opts).mp.Meter(ScopeName)
	m := &Metrics{}
	var err error
	if m.duration, err = meter.Float64Histogram("ferry.stage.call.duration", metric.WithUnit("s"),
		metric.WithDescription("Durations of the calls of a stage function.")); err != nil {
		return nil, fmt.Errorf("ferryotel: %w", err)
	}
	if m.attempts, err = meter.Int64Counter("ferry.batch.attempts", metric.WithDescription("Attempts at an index started.")); err != nil {
		return nil, fmt.Errorf("ferryotel: %w", err)
	}
	if m.outcomes, err = meter.Int64Counter("ferry.batch.outcomes", metric.WithDescription("Attempts at an index that ended: done, failed (for good) or retried.")); err != nil {
		return nil, fmt.Errorf("ferryotel: %w", err)
	}
	counters := map[string]*metric.Int64ObservableCounter{}
	gauges := map[string]*metric.Float64ObservableGauge{}
	var observables []metric.Observable
	for name, desc := range map[string]string{
		"ferry.stage.calls": "Calls of a stage function that finished.", "ferry.stage.failures": "Items that failed in a stage.",
		"ferry.stage.skipped": "Items a stage dropped on purpose.", "ferry.queue.items": "Items through the queue after a stage.",
		"ferry.pool.calls": "Calls that returned.", "ferry.pool.failures": "Calls that returned an error.",
		"ferry.pool.timeouts": "Calls that outlived the call timeout.", "ferry.pool.restarts": "Workers replaced after dying or being killed.",
		"ferry.pool.retries": "Calls run again.",
	} {
		c, err := meter.Int64ObservableCounter(name, metric.WithDescription(desc))
		if err != nil {
			return nil, fmt.Errorf("ferryotel: %w", err)
		}
		counters[name] = &c
		observables = append(observables, c)
	}
	for name, desc := range map[string]string{
		"ferry.queue.occupancy": "The queue's mean fill, 0 to 1, seen after each put.", "ferry.pool.workers": "Live workers.",
		"ferry.pool.in_flight": "Calls at workers now.", "ferry.arena.segments": "Segments of the arena in each state.",
	} {
		g, err := meter.Float64ObservableGauge(name, metric.WithDescription(desc))
		if err != nil {
			return nil, fmt.Errorf("ferryotel: %w", err)
		}
		gauges[name] = &g
		observables = append(observables, g)
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.observe(o, counters, gauges)
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("ferryotel: %w", err)
	}
	return m, nil
}

// Close unregisters the observable instruments.
func (m *Metrics) Close() error { return m.reg.Unregister() }

func (m *Metrics) observe(o metric.Observer, counters map[string]*metric.Int64ObservableCounter, gauges map[string]*metric.Float64ObservableGauge) {
	count := func(name string, v int64, attrs ...attribute.KeyValue) {
		o.ObserveInt64(*counters[name], v, metric.WithAttributes(attrs...))
	}
	gauge := func(name string, v float64, attrs ...attribute.KeyValue) {
		o.ObserveFloat64(*gauges[name], v, metric.WithAttributes(attrs...))
	}
	for name, stats := range m.pipelines.All() {
		st := stats()
		for _, s := range st.Stages {
			at := []attribute.KeyValue{attribute.String("ferry.pipeline", name), attribute.String("ferry.stage", s.Name)}
			count("ferry.stage.calls", s.Invocations, at...)
			count("ferry.stage.failures", s.Failures, at...)
			count("ferry.stage.skipped", s.Skipped, at...)
		}
		for _, q := range st.Queues {
			at := []attribute.KeyValue{attribute.String("ferry.pipeline", name), attribute.String("ferry.stage", q.Name)}
			count("ferry.queue.items", q.Items, at...)
			gauge("ferry.queue.occupancy", q.Occupancy, at...)
		}
	}
	for name, stats := range m.pools.All() {
		st := stats()
		at := attribute.String("ferry.pool", name)
		count("ferry.pool.calls", st.Calls, at)
		count("ferry.pool.failures", st.Failures, at)
		count("ferry.pool.timeouts", st.Timeouts, at)
		count("ferry.pool.restarts", int64(st.Restarts), at)
		count("ferry.pool.retries", st.Retries, at)
		gauge("ferry.pool.workers", float64(len(st.Workers)), at)
		gauge("ferry.pool.in_flight", float64(st.InFlight), at)
	}
	for name, a := range m.arenas.All() {
		st := a.Stats()
		for state, n := range map[string]int{"free": st.Free, "leased": st.Leased, "in_flight": st.InFlight, "viewed": st.Viewed} {
			gauge("ferry.arena.segments", float64(n), attribute.String("ferry.arena", name), attribute.String("state", state))
		}
	}
}

// Pipeline adds a pipeline, read with stats (its Stats method), under
// name; the function it returns removes it.
func (m *Metrics) Pipeline(name string, stats func() pipeline.Stats) (remove func()) {
	return m.pipelines.Add(name, stats)
}

// Pool adds a worker pool, read with stats (its Stats method), under name;
// the function it returns removes it.
func (m *Metrics) Pool(name string, stats func() proc.PoolStats) (remove func()) {
	return m.pools.Add(name, stats)
}

// Arena adds a shared-memory arena under name; the function it returns
// removes it.
func (m *Metrics) Arena(name string, a *shm.SegmentPool) (remove func()) {
	return m.arenas.Add(name, a)
}

// Hooks returns pipeline hooks that record the duration of every stage
// call of the pipeline called name in ferry.stage.call.duration.
func (m *Metrics) Hooks(name string) pipeline.Hooks {
	return pipeline.Hooks{Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
		start := time.Now()
		return ctx, func(error) {
			m.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(
				attribute.String("ferry.pipeline", name), attribute.String("ferry.stage", stage)))
		}
	}}
}

// Batch returns an observer of batch runs that counts their attempts and
// outcomes by job; pass it to batch.Events.
func (m *Metrics) Batch() batch.Observer { return &batchCounter{m: m} }

type batchCounter struct {
	m   *Metrics
	job attribute.KeyValue
}

func (b *batchCounter) Begin(job batch.JobInfo, _ int) {
	b.job = attribute.String("ferry.job", job.Name)
}
func (b *batchCounter) End() {}

func (b *batchCounter) Event(e batch.Event) {
	ctx := context.Background()
	switch e.Kind {
	case batch.EventStart:
		b.m.attempts.Add(ctx, 1, metric.WithAttributes(b.job))
	case batch.EventDone:
		b.m.outcomes.Add(ctx, 1, metric.WithAttributes(b.job, attribute.String("outcome", "done")))
	case batch.EventFailed:
		outcome := "retried"
		if e.Final {
			outcome = "failed"
		}
		b.m.outcomes.Add(ctx, 1, metric.WithAttributes(b.job, attribute.String("outcome", outcome)))
	}
}
