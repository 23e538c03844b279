package gwdemo

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// TestSearch runs a short search in each placement: the same triggers,
// most injections found, no false alarm, and the files written.
func TestSearch(t *testing.T) {
	var results [][]Trigger
	for _, p := range []graph.Placement{graph.Goroutine, graph.Process} {
		t.Run(p.String(), func(t *testing.T) {
			leakcheck.Check(t)
			cfg := DefaultConfig()
			cfg.Seconds, cfg.Speed, cfg.Placement, cfg.Dir = 96, 0, p, t.TempDir()
			sum, err := Run(context.Background(), io.Discard, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Seconds != cfg.Seconds || len(sum.Injections) != 6 {
				t.Fatalf("%d s searched, %d injections; want %d s, 6", sum.Seconds, len(sum.Injections), cfg.Seconds)
			}
			if sum.Found < 5 || len(sum.Triggers) != sum.Found {
				t.Fatalf("found %d of %d injections with %d triggers:\n%v", sum.Found, len(sum.Injections), len(sum.Triggers), sum)
			}
			b, err := os.ReadFile(cfg.Dir + "/triggers.txt")
			if err != nil || strings.Count(string(b), "\n") != len(sum.Triggers)+1 {
				t.Fatalf("triggers.txt: %v\n%s", err, b)
			}
			if dot, err := os.ReadFile(cfg.Dir + "/graph.dot"); err != nil || !strings.Contains(string(dot), `"filter-H1" -> "coincidence"`) {
				t.Fatalf("graph.dot: %v\n%s", err, dot)
			}
			results = append(results, sum.Triggers)
		})
	}
	if len(results) == 2 && !slices.Equal(results[0], results[1]) {
		t.Fatalf("the placements found different triggers:\n%v\n%v", results[0], results[1])
	}
}
