package ferryprom_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/ferryprom"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

var double = proc.Func("ferryprom.test/double", func(_ context.Context, v int) (int, error) { return 2 * v, nil })

var evens = batch.Define("ferryprom.test/evens", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(n, func(_ context.Context, i int) (int, error) {
			if i%5 == 4 {
				return 0, errors.New("every fifth index fails")
			}
			return i, nil
		}),
		Sink: batch.SinkFunc[int, int](func(_ context.Context, _ int, items []int) (int, error) { return items[0], nil }),
	}, nil
})

// scrape returns what /metrics serves for reg.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// TestScrape: a pipeline whose stage calls a worker pool, an arena and a
// batch run, all observed by one collector; a scrape shows their series
// with the right values.
func TestScrape(t *testing.T) {
	ctx := t.Context()
	c := ferryprom.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	pool, err := proc.NewPool(ctx, double, proc.Workers(2))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c.Pool("double", pool.Stats)

	src := pipeline.FromSlice(make([]int, 100))
	d := pipeline.Pipe(src, pool.Call, pipeline.Name("double"), pipeline.Concurrency(4))
	odd := pipeline.Pipe(d, func(_ context.Context, v int) (int, error) { return v, pipeline.ErrSkip }, pipeline.Name("drop"))
	p, err := pipeline.Build(pipeline.Sink(odd, 8), pipeline.WithHooks(c.Hooks("train")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	remove := c.Pipeline("train", p.Stats)
	for _, err := range p.Epoch(ctx) {
		if err != nil {
			t.Fatal(err)
		}
	}

	arena, err := shm.NewSegmentPool(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	c.Arena("frames", arena)

	if _, err := evens.Run(ctx, 10, batch.WithBackend(batch.Goroutines(2)), batch.ContinueOnError(), batch.Events(c.Batch())); err != nil {
		t.Fatal(err)
	}

	out := scrape(t, reg)
	for _, want := range []string{
		`ferry_stage_calls_total{pipeline="train",stage="double"} 100`,
		`ferry_stage_skipped_total{pipeline="train",stage="drop"} 100`,
		`ferry_stage_concurrency{pipeline="train",stage="double"} 4`,
		`ferry_stage_call_duration_seconds_count{pipeline="train",stage="double"} 100`,
		`ferry_stage_call_errors_total{pipeline="train",stage="drop"} 100`,
		`ferry_queue_occupancy_ratio{pipeline="train",stage="double"}`,
		`ferry_pool_calls_total{pool="double"} 100`,
		`ferry_pool_workers{pool="double"} 2`,
		`ferry_pool_timeouts_total{pool="double"} 0`,
		`ferry_arena_segments{arena="frames",state="free"} 3`,
		`ferry_arena_segment_bytes{arena="frames"} 4096`,
		`ferry_batch_indices{job="ferryprom.test/evens"} 10`,
		`ferry_batch_attempts_total{job="ferryprom.test/evens"} 10`,
		`ferry_batch_outcomes_total{job="ferryprom.test/evens",outcome="done"} 8`,
		`ferry_batch_outcomes_total{job="ferryprom.test/evens",outcome="failed"} 2`,
		`ferry_batch_running{job="ferryprom.test/evens"} 0`,
	} {
		line := want + "\n" // the whole line: a name, its labels and its value
		if strings.HasSuffix(want, "}") {
			line = want + " " // any value
		}
		if !strings.Contains(out, line) {
			t.Errorf("the scrape has no %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", out)
	}
	remove()
	if out := scrape(t, reg); strings.Contains(out, `ferry_stage_calls_total{pipeline="train"`) {
		t.Error("a removed pipeline is still scraped")
	}
	// The registry's own consistency check (descriptions match metrics).
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
