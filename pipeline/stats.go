package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// maxCauses is how many failures a stage keeps to explain a BudgetError.
const maxCauses = 5

// stageStats counts the work of one stage.
type stageStats struct {
	name        string
	concurrency int
	budget      Budget
	invocations atomic.Int64
	failures    atomic.Int64
	skipped     atomic.Int64
	durations   histogram

	mu     sync.Mutex
	causes []error
}

func (s *stageStats) addCause(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.causes) < maxCauses {
		s.causes = append(s.causes, err)
	}
}

func (s *stageStats) causeList() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.causes...)
}

// histogram is a lock-free log-linear histogram of durations: 8 buckets per
// power of two, so a percentile is exact to within 12.5 %.
type histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Int64
	sum     atomic.Int64
}

const histBuckets = 62 * 8

func histIndex(v uint64) int {
	if v < 8 {
		return int(v)
	}
	exp := bits.Len64(v) - 1
	return (exp-2)*8 + int((v>>(exp-3))&7)
}

// histValue returns the middle of bucket i.
func histValue(i int) uint64 {
	if i < 8 {
		return uint64(i)
	}
	exp := i/8 + 2
	width := uint64(1) << (exp - 3)
	return (8+uint64(i%8))*width + width/2
}

func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.buckets[histIndex(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(v))
}

func (h *histogram) mean() time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// quantile returns the q-quantile (0 < q ≤ 1) of the recorded durations.
func (h *histogram) quantile(q float64) time.Duration {
	var counts [histBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(histBuckets - 1))
}

// StageStats is a snapshot of one stage's work.
type StageStats struct {
	Name        string
	Concurrency int
	Invocations int64         // calls of the stage function that finished
	Failures    int64         // items that failed
	Skipped     int64         // items dropped on purpose (ErrSkip or a filter)
	Mean        time.Duration // mean duration of one call
	P90, P99    time.Duration // percentiles of call durations
}

// QueueStats is a snapshot of the queue after one stage.
type QueueStats struct {
	Name       string        // the stage that puts into the queue
	Capacity   int           // items it holds, about
	Items      int64         // items that passed through, counting each end-of-epoch marker as one
	PutBlocked time.Duration // total time producers waited for room
	GetBlocked time.Duration // total time consumers waited for items
	Occupancy  float64       // mean fill (0..1) seen after each put
	Rate       float64       // items per second since the pipeline started
}

// Stats is a snapshot of a running pipeline.
type Stats struct {
	Elapsed  time.Duration
	Failures int64 // failed items in every stage
	Stages   []StageStats
	Queues   []QueueStats
}

func (r *run) stats() Stats {
	r.mu.Lock()
	stages := append([]*stageStats(nil), r.stages...)
	queues := append([]*queueStats(nil), r.queues...)
	r.mu.Unlock()
	el := time.Since(r.start)
	s := Stats{Elapsed: el, Failures: r.failures.Load()}
	for _, st := range stages {
		s.Stages = append(s.Stages, StageStats{
			Name:        st.name,
			Concurrency: st.concurrency,
			Invocations: st.invocations.Load(),
			Failures:    st.failures.Load(),
			Skipped:     st.skipped.Load(),
			Mean:        st.durations.mean(),
			P90:         st.durations.quantile(0.90),
			P99:         st.durations.quantile(0.99),
		})
	}
	for _, q := range queues {
		qs := QueueStats{
			Name:       q.name,
			Capacity:   q.capacity,
			Items:      q.items.Load(),
			PutBlocked: time.Duration(q.putBlocked.Load()),
			GetBlocked: time.Duration(q.getBlocked.Load()),
		}
		if c := q.chunks.Load(); c > 0 {
			qs.Occupancy = float64(q.fillSum.Load()) / float64(c) / float64(q.slots)
		}
		if el > 0 {
			qs.Rate = float64(qs.Items) / el.Seconds()
		}
		s.Queues = append(s.Queues, qs)
	}
	return s
}

// String renders the snapshot as two aligned tables.
func (s Stats) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "stage\tconc\tcalls\tfailed\tskipped\tmean\tp90\tp99\t\n")
	for _, st := range s.Stages {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%v\t%v\t%v\t\n", st.Name, st.Concurrency, st.Invocations, st.Failures, st.Skipped,
			round(st.Mean), round(st.P90), round(st.P99))
	}
	w.Flush()
	b.WriteString("\n")
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "queue\tcap\titems\tput wait\tget wait\tfill\titems/s\t\n")
	for _, q := range s.Queues {
		fmt.Fprintf(w, "%s\t%d\t%d\t%v\t%v\t%.0f%%\t%.0f\t\n", q.Name, q.Capacity, q.Items, round(q.PutBlocked), round(q.GetBlocked), 100*q.Occupancy, q.Rate)
	}
	w.Flush()
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	}
	return d
}

// report logs a snapshot every interval until ctx ends.
func (r *run) report(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := r.stats()
		for _, st := range s.Stages {
			r.log.LogAttrs(ctx, slog.LevelInfo, "pipeline: stage stats",
				slog.String("stage", st.Name), slog.Int64("calls", st.Invocations), slog.Int64("failed", st.Failures),
				slog.Int64("skipped", st.Skipped), slog.Duration("mean", st.Mean), slog.Duration("p90", st.P90), slog.Duration("p99", st.P99))
		}
		for _, q := range s.Queues {
			r.log.LogAttrs(ctx, slog.LevelInfo, "pipeline: queue stats",
				slog.String("queue", q.Name), slog.Int64("items", q.Items), slog.Duration("put_wait", q.PutBlocked),
				slog.Duration("get_wait", q.GetBlocked), slog.Float64("fill", q.Occupancy), slog.Float64("items_per_sec", q.Rate))
		}
	}
}
