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
	os.Exit(m.Run())
}

// TestProcQuick runs every proc/ benchmark quickly and checks that it
// reports the figure it is meant to.
func TestProcQuick(t *testing.T) {
	want := map[string]func(Result) float64{
		"proc/iterate-small":    func(r Result) float64 { return r.ItemsPerSec },
		"proc/iterate-1MiB":     func(r Result) float64 { return min(r.BytesPerSec, r.CPUSecPerGB) },
		"proc/iterate-8MiB":     func(r Result) float64 { return min(r.BytesPerSec, r.CPUSecPerGB) },
		"proc/start-first-item": func(r Result) float64 { return r.Ns },
		"proc/epoch-gap":        func(r Result) float64 { return r.Ns },
		"proc/pipeline-trivial": func(r Result) float64 { return r.ItemsPerSec },
		"proc/pool-call-small":  func(r Result) float64 { return r.ItemsPerSec },
	}
	var got []string
	for _, b := range Select("proc/") {
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
			t.Errorf("%s: %+v, want a positive figure", b.Name, res)
		}
		if res.Runs != quickRuns {
			t.Errorf("%s: %d runs, want %d", b.Name, res.Runs, quickRuns)
		}
	}
	slices.Sort(got)
	if len(got) != len(want) {
		t.Errorf("proc/ benchmarks = %v, want the %d of %v", got, len(want), want)
	}
}
