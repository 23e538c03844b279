package pipeline

import (
	"context"
	"fmt"
	"github.com/ferrypipe/ferry/internal/hist"
	"log/slog"
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
	durations   hist.Histogram

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
	Fill       float64       // fill (0..1) when the snapshot was taken
	Consumer   string        // the stage that takes from it; "" for the queue the pipeline's consumer reads
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
			Mean:        st.durations.Mean(),
			P90:         st.durations.Quantile(0.90),
			P99:         st.durations.Quantile(0.99),
		})
	}
	for _, q := range queues {
		qs := QueueStats{
			Name:       q.name,
			Capacity:   q.capacity,
			Items:      q.items.Load(),
			PutBlocked: time.Duration(q.putBlocked.Load()),
			GetBlocked: time.Duration(q.getBlocked.Load()),
			Fill:       float64(q.queued()) / float64(q.slots),
			Consumer:   q.consumer,
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
