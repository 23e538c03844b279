// Package ferryprom exposes ferry's figures to Prometheus: a Collector that
// reads the stats of the pipelines, worker pools and shared-memory arenas
// you give it at each scrape, counts the events of batch runs, and records
// every stage call's duration in a histogram through pipeline hooks. It is
// a package of its own so that ferry's core packages do not depend on the
// Prometheus client.
//
//	c := ferryprom.New()
//	prometheus.MustRegister(c)
//	p, err := pipeline.Build(cfg, pipeline.WithHooks(c.Hooks("train")))
//	c.Pipeline("train", p.Stats)
//	c.Pool("decode", pool.Stats)
//	res, err := job.Run(ctx, params, batch.Events(c.Batch()))
//	http.Handle("/metrics", promhttp.Handler())
//
// # Metrics
//
// The names and labels are stable. Counters end in _total; durations are
// in seconds.
//
// Pipelines (labels pipeline, stage):
//
//	ferry_stage_calls_total            calls of the stage function that finished
//	ferry_stage_failures_total         items that failed
//	ferry_stage_skipped_total          items dropped on purpose
//	ferry_stage_concurrency            the stage's concurrency
//	ferry_stage_call_duration_seconds  histogram of call durations (with Hooks)
//	ferry_stage_call_errors_total      calls that returned an error, ErrSkip included (with Hooks)
//	ferry_queue_items_total            items through the queue after the stage
//	ferry_queue_occupancy_ratio        the queue's mean fill (0 to 1) seen after each put
//	ferry_queue_capacity               the queue's capacity
//	ferry_queue_put_blocked_seconds_total  time producers waited for room
//	ferry_queue_get_blocked_seconds_total  time consumers waited for items
//
// Worker pools (label pool):
//
//	ferry_pool_calls_total, ferry_pool_failures_total, ferry_pool_timeouts_total,
//	ferry_pool_lost_total, ferry_pool_requeued_total, ferry_pool_retries_total,
//	ferry_pool_restarts_total, ferry_pool_recycled_total, ferry_pool_start_failures_total
//	ferry_pool_workers                 live workers
//	ferry_pool_in_flight               calls at workers now
//	ferry_pool_waiting                 callers waiting for a worker with room
//	ferry_pool_down                    slots left without a worker
//
// Shared-memory arenas (labels arena, and state: free, leased, in_flight, viewed):
//
//	ferry_arena_segments               segments in each state
//	ferry_arena_segment_bytes          bytes per segment
//	ferry_arena_published_total        segments ever published
//
// Batch runs (label job; outcome: done, failed, retried):
//
//	ferry_batch_indices                indices of the runs begun
//	ferry_batch_resumed_total          indices resumed from a checkpoint
//	ferry_batch_attempts_total         attempts started
//	ferry_batch_outcomes_total         attempts that ended, by outcome (failed: for good; retried: another attempt follows)
//	ferry_batch_running                attempts running now
package ferryprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/internal/sources"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Collector is a prometheus.Collector of ferry's figures. Its methods are
// safe for concurrent use.
type Collector struct {
	pipelines sources.Set[func() pipeline.Stats]
	pools     sources.Set[func() proc.PoolStats]
	arenas    sources.Set[*shm.SegmentPool]

	callDuration *prometheus.HistogramVec
	callErrors   *prometheus.CounterVec

	batchIndices  *prometheus.GaugeVec
	batchResumed  *prometheus.CounterVec
	batchAttempts *prometheus.CounterVec
	batchOutcomes *prometheus.CounterVec
	batchRunning  *prometheus.GaugeVec
}

// Option configures a Collector.
type Option func(*config)

type config struct {
	buckets []float64
}

// Buckets sets the buckets of the call-duration histogram, in seconds
// (default: 10 µs to about 40 s, ×4 apart).
func Buckets(b ...float64) Option { return func(c *config) { c.buckets = b } }

// New returns a Collector; register it with a prometheus.Registerer.
func New(opts ...Option) *Collector {
	cfg := config{buckets: prometheus.ExponentialBuckets(10e-6, 4, 12)}
	for _, o := range opts {
		o(&cfg)
	}
	return &Collector{
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_stage_call_duration_seconds",
			Help: "Durations of the calls of a stage function.", Buckets: cfg.buckets}, []string{"pipeline", "stage"}),
		callErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_stage_call_errors_total",
			Help: "Calls of a stage function that returned an error (ErrSkip included)."}, []string{"pipeline", "stage"}),
		batchIndices: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_batch_indices",
			Help: "Indices of the job's runs begun."}, []string{"job"}),
		batchResumed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_batch_resumed_total",
			Help: "Indices resumed from a checkpoint."}, []string{"job"}),
		batchAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_batch_attempts_total",
			Help: "Attempts at an index started."}, []string{"job"}),
		batchOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_batch_outcomes_total",
			Help: "Attempts that ended: done, failed (for good) or retried (another attempt follows)."}, []string{"job", "outcome"}),
		batchRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_batch_running",
			Help: "Attempts running now."}, []string{"job"}),
	}
}

// Pipeline adds a pipeline, read with stats (its Stats method) at each
// scrape, under name; the function it returns removes it.
func (c *Collector) Pipeline(name string, stats func() pipeline.Stats) (remove func()) {
	return c.pipelines.Add(name, stats)
}

// Pool adds a worker pool, read with stats (its Stats method) at each
// scrape, under name; the function it returns removes it.
func (c *Collector) Pool(name string, stats func() proc.PoolStats) (remove func()) {
	return c.pools.Add(name, stats)
}

// Arena adds a shared-memory arena under name; the function it returns
// removes it.
func (c *Collector) Arena(name string, a *shm.SegmentPool) (remove func()) {
	return c.arenas.Add(name, a)
}

// Hooks returns pipeline hooks that record the duration and the errors of
// every stage call of the pipeline called name; pass them to
// pipeline.WithHooks.
func (c *Collector) Hooks(name string) pipeline.Hooks {
	return pipeline.Hooks{Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
		start := time.Now()
		return ctx, func(err error) {
			c.callDuration.WithLabelValues(name, stage).Observe(time.Since(start).Seconds())
			if err != nil {
				c.callErrors.WithLabelValues(name, stage).Inc()
			}
		}
	}}
}

// Batch returns an observer of batch runs that counts their events by job;
// pass it to batch.Events (with others: batch.Events takes several).
func (c *Collector) Batch() batch.Observer { return &batchObserver{c: c} }

type batchObserver struct {
	c   *Collector
	job string
}

func (o *batchObserver) Begin(job batch.JobInfo, resumed int) {
	o.job = job.Name
	o.c.batchIndices.WithLabelValues(o.job).Set(float64(job.Len))
	o.c.batchResumed.WithLabelValues(o.job).Add(float64(resumed))
}

func (o *batchObserver) Event(e batch.Event) {
	switch e.Kind {
	case batch.EventStart:
		o.c.batchAttempts.WithLabelValues(o.job).Inc()
		o.c.batchRunning.WithLabelValues(o.job).Inc()
	case batch.EventDone:
		o.c.batchRunning.WithLabelValues(o.job).Dec()
		o.c.batchOutcomes.WithLabelValues(o.job, "done").Inc()
	case batch.EventFailed:
		o.c.batchRunning.WithLabelValues(o.job).Dec()
		outcome := "retried"
		if e.Final {
			outcome = "failed"
		}
		o.c.batchOutcomes.WithLabelValues(o.job, outcome).Inc()
	}
}

func (o *batchObserver) End() {}

// The descriptions of the metrics read at each scrape.
var (
	stageLabels = []string{"pipeline", "stage"}
	poolLabels  = []string{"pool"}

	descStageCalls       = prometheus.NewDesc("ferry_stage_calls_total", "Calls of the stage function that finished.", stageLabels, nil)
	descStageFailures    = prometheus.NewDesc("ferry_stage_failures_total", "Items that failed in the stage.", stageLabels, nil)
	descStageSkipped     = prometheus.NewDesc("ferry_stage_skipped_total", "Items the stage dropped on purpose.", stageLabels, nil)
	descStageConcurrency = prometheus.NewDesc("ferry_stage_concurrency", "The stage's concurrency.", stageLabels, nil)
	descQueueItems       = prometheus.NewDesc("ferry_queue_items_total", "Items through the queue after the stage.", stageLabels, nil)
	descQueueOccupancy   = prometheus.NewDesc("ferry_queue_occupancy_ratio", "The queue's mean fill, 0 to 1, seen after each put.", stageLabels, nil)
	descQueueCapacity    = prometheus.NewDesc("ferry_queue_capacity", "The queue's capacity, items.", stageLabels, nil)
	descQueuePutBlocked  = prometheus.NewDesc("ferry_queue_put_blocked_seconds_total", "Time producers waited for room in the queue.", stageLabels, nil)
	descQueueGetBlocked  = prometheus.NewDesc("ferry_queue_get_blocked_seconds_total", "Time consumers waited for items in the queue.", stageLabels, nil)

	poolCounters = []struct {
		desc *prometheus.Desc
		get  func(proc.PoolStats) float64
	}{
		{prometheus.NewDesc("ferry_pool_calls_total", "Calls that returned, successful or not.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Calls) }},
		{prometheus.NewDesc("ferry_pool_failures_total", "Calls that returned an error.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Failures) }},
		{prometheus.NewDesc("ferry_pool_timeouts_total", "Calls that outlived the call timeout (their workers were killed).", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Timeouts) }},
		{prometheus.NewDesc("ferry_pool_lost_total", "Call attempts running at a worker that died.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Lost) }},
		{prometheus.NewDesc("ferry_pool_requeued_total", "Call attempts not started at a worker that died, run elsewhere.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Requeued) }},
		{prometheus.NewDesc("ferry_pool_retries_total", "Attempts run again after their worker died.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Retries) }},
		{prometheus.NewDesc("ferry_pool_restarts_total", "Workers replaced after dying or being killed.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Restarts) }},
		{prometheus.NewDesc("ferry_pool_recycled_total", "Workers replaced after their maximum number of calls.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Recycled) }},
		{prometheus.NewDesc("ferry_pool_start_failures_total", "Replacement workers that failed to start.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.StartFailures) }},
	}
	poolGauges = []struct {
		desc *prometheus.Desc
		get  func(proc.PoolStats) float64
	}{
		{prometheus.NewDesc("ferry_pool_workers", "Live workers.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(len(s.Workers)) }},
		{prometheus.NewDesc("ferry_pool_in_flight", "Calls at workers now.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.InFlight) }},
		{prometheus.NewDesc("ferry_pool_waiting", "Callers waiting for a worker with room.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Waiting) }},
		{prometheus.NewDesc("ferry_pool_down", "Slots left without a worker.", poolLabels, nil), func(s proc.PoolStats) float64 { return float64(s.Down) }},
	}

	descArenaSegments  = prometheus.NewDesc("ferry_arena_segments", "Segments of the arena in each state.", []string{"arena", "state"}, nil)
	descArenaSegBytes  = prometheus.NewDesc("ferry_arena_segment_bytes", "Bytes per segment of the arena.", []string{"arena"}, nil)
	descArenaPublished = prometheus.NewDesc("ferry_arena_published_total", "Segments of the arena ever published.", []string{"arena"}, nil)
)

// Describe sends the descriptions of every metric c can collect.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStageCalls, descStageFailures, descStageSkipped, descStageConcurrency,
		descQueueItems, descQueueOccupancy, descQueueCapacity, descQueuePutBlocked, descQueueGetBlocked,
		descArenaSegments, descArenaSegBytes, descArenaPublished} {
		ch <- d
	}
	for _, m := range poolCounters {
		ch <- m.desc
	}
	for _, m := range poolGauges {
		ch <- m.desc
	}
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
}

func (c *Collector) vecs() []prometheus.Collector {
	return []prometheus.Collector{c.callDuration, c.callErrors, c.batchIndices, c.batchResumed, c.batchAttempts, c.batchOutcomes, c.batchRunning}
}

// Collect reads the stats of everything added and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	pipelines, pools, arenas := c.pipelines.All(), c.pools.All(), c.arenas.All()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for name, stats := range pipelines {
		st := stats()
		for _, s := range st.Stages {
			counter(descStageCalls, float64(s.Invocations), name, s.Name)
			counter(descStageFailures, float64(s.Failures), name, s.Name)
			counter(descStageSkipped, float64(s.Skipped), name, s.Name)
			gauge(descStageConcurrency, float64(s.Concurrency), name, s.Name)
		}
		for _, q := range st.Queues {
			counter(descQueueItems, float64(q.Items), name, q.Name)
			gauge(descQueueOccupancy, q.Occupancy, name, q.Name)
			gauge(descQueueCapacity, float64(q.Capacity), name, q.Name)
			counter(descQueuePutBlocked, q.PutBlocked.Seconds(), name, q.Name)
			counter(descQueueGetBlocked, q.GetBlocked.Seconds(), name, q.Name)
		}
	}
	for name, stats := range pools {
		st := stats()
		for _, m := range poolCounters {
			counter(m.desc, m.get(st), name)
		}
		for _, m := range poolGauges {
			gauge(m.desc, m.get(st), name)
		}
	}
	for name, a := range arenas {
		st := a.Stats()
		for state, n := range map[string]int{"free": st.Free, "leased": st.Leased, "in_flight": st.InFlight, "viewed": st.Viewed} {
			gauge(descArenaSegments, float64(n), name, state)
		}
		gauge(descArenaSegBytes, float64(st.SegmentSize), name)
		counter(descArenaPublished, float64(st.Published), name)
	}
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
}
