package benchsuite

import (
	"math"
	"os"
	"slices"
	"testing"

	"github.com/ferrypipe/ferry/proc"
)

// TestMain makes the test binary its own worker process, so that the
// proc/ benchmarks can run.
func TestMain(m *testing.M) {
	proc.Main()
	ExitIfStartProbe()
	os.Exit(m.Run())
}

// TestWorkerBenchmarksQuick runs every benchmark that starts worker
// processes (proc/, shm/, batch/) quickly and checks that it reports the
// figure it is meant to.
func TestWorkerBenchmarksQuick(t *testing.T) {
	items := func(r Result) float64 { return r.ItemsPerSec }
	bytesAndCPU := func(r Result) float64 { return min(r.BytesPerSec, r.CPUSecPerGB) }
	want := map[string]func(Result) float64{
		"proc/iterate-small":                  items,
		"proc/iterate-1MiB":                   bytesAndCPU,
		"proc/iterate-8MiB":                   bytesAndCPU,
		"proc/start-first-item":               func(r Result) float64 { return r.Ns },
		"proc/epoch-gap":                      func(r Result) float64 { return r.Ns },
		"proc/pipeline-trivial":               items,
		"proc/pool-call-small":                items,
		"proc/pool-call-8MiB":                 func(r Result) float64 { return min(r.ItemsPerSec, r.BytesPerSec) },
		"shm/iterate-1MiB-copy":               bytesAndCPU,
		"shm/iterate-8MiB-copy":               bytesAndCPU,
		"shm/iterate-8MiB-alloc":              func(r Result) float64 { return min(r.ItemsPerSec, r.BytesPerSec, r.CPUSecPerGB) },
		"shm/pool-call-8MiB":                  func(r Result) float64 { return min(r.ItemsPerSec, r.BytesPerSec) },
		"batch/process-trivial":               items,
		"batch/process-trivial-checkpoint":    items,
		"batch/jetstream-trivial":             items,
		"batch/jetstream-1ms-2workers":        items,
		"batch/jetstream-1ms-4workers":        items,
		"graph/chain-3":                       items,
		"graph/process-transform":             items,
		"graph/process-transform-1MiB":        func(r Result) float64 { return r.BytesPerSec },
		"graph/process-transform-1MiB-slices": func(r Result) float64 { return r.BytesPerSec },
		"graph/drain":                         func(r Result) float64 { return r.Ns },
	}
	var got []string
	for _, group := range []string{"proc/", "shm/", "batch/", "graph/"} {
		for _, b := range Select(group) {
			got = append(got, b.Name)
			figure, ok := want[b.Name]
			if !ok {
				t.Errorf("unexpected benchmark %s", b.Name)
				continue
			}
			res, err := b.Run(t.Context(), Config{Quick: true})
			if err != nil {
				t.Errorf("%s: %v", b.Name, err)
				continue
			}
			if v := figure(res); !(v > 0) || math.IsInf(v, 0) {
				t.Errorf("%s: %+v, want positive figures", b.Name, res)
			}
			if res.Runs != quickRuns {
				t.Errorf("%s: %d runs, want %d", b.Name, res.Runs, quickRuns)
			}
		}
	}
	slices.Sort(got)
	if len(got) != len(want) {
		t.Errorf("benchmarks = %v, want the %d of %v", got, len(want), want)
	}
}
