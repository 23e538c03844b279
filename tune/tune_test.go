package tune_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/tune"
)

// TestProfileFindsSaturation: in a bubble of fake time, a stage that holds
// a semaphore of 2 for a millisecond per item saturates at concurrency 2,
// and one that only waits a millisecond keeps scaling to the largest
// concurrency tried; the second runs on the first's outputs.
func TestProfileFindsSaturation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sem := make(chan struct{}, 2)
		in := tune.Sample([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		locked := tune.Stage(in, "locked", func(ctx context.Context, v int) (int, error) {
			sem <- struct{}{}
			defer func() { <-sem }()
			time.Sleep(time.Millisecond)
			return 2 * v, nil
		})
		var odd error
		tune.Stage(locked, "waits", func(ctx context.Context, v int) (string, error) {
			if v%2 != 0 {
				odd = fmt.Errorf("input %d is not an output of the stage before", v)
			}
			time.Sleep(time.Millisecond)
			return fmt.Sprint(v), nil
		})
		r, err := tune.Profile(t.Context(), in, tune.Concurrencies(8, 1, 2, 4), tune.MinDuration(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if odd != nil {
			t.Fatal(odd)
		}
		if len(r.Stages) != 2 {
			t.Fatalf("%d stages reported, want 2", len(r.Stages))
		}
		want := map[string][]float64{"locked": {1000, 2000, 2000, 2000}, "waits": {1000, 2000, 4000, 8000}}
		for _, s := range r.Stages {
			for i, p := range s.Points {
				if c := []int{1, 2, 4, 8}[i]; p.Concurrency != c {
					t.Fatalf("%s: point %d at concurrency %d, want %d", s.Name, i, p.Concurrency, c)
				}
				if w := want[s.Name][i]; p.ItemsPerSec < 0.95*w || p.ItemsPerSec > 1.05*w {
					t.Errorf("%s at %d: %.0f items/s, want %.0f", s.Name, p.Concurrency, p.ItemsPerSec, w)
				}
			}
		}
		if got := r.Stages[0].Saturation; got != 2 {
			t.Errorf("locked saturates at %d, want 2\n%s", got, r)
		}
		if got := r.Stages[1].Saturation; got != 8 {
			t.Errorf("waits saturates at %d, want 8\n%s", got, r)
		}
		if s := r.String(); !strings.Contains(s, "locked") || !strings.Contains(s, "saturates at") {
			t.Errorf("the table:\n%s", s)
		}
	})
}

func TestProfileErrors(t *testing.T) {
	in := tune.Sample([]int{1, 2, 3})
	if _, err := tune.Profile(t.Context(), in); err == nil {
		t.Error("a profile without stages: no error")
	}
	tune.Stage(in, "fails", func(ctx context.Context, v int) (int, error) { return 0, errors.New("bad input") })
	tune.Stage(tune.Stage(in, "x", func(ctx context.Context, v int) (int, error) { return v, nil }), "y",
		func(ctx context.Context, v int) (int, error) { return v, nil })
	if _, err := tune.Profile(t.Context(), in, tune.Concurrencies(0)); err == nil || !strings.Contains(err.Error(), "concurrency 0") {
		t.Errorf("concurrency 0: %v", err)
	}
	_, err := tune.Profile(t.Context(), in, tune.Concurrencies(1), tune.MinDuration(time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), `"fails" made no output from 3 inputs (3 failed)`) {
		t.Errorf("a stage whose every call fails: %v", err)
	}
}

// TestProfileEdges: an empty sample is an error at once; a last stage that
// drops everything is measured, not refused.
func TestProfileEdges(t *testing.T) {
	empty := tune.Sample([]int{})
	tune.Stage(empty, "x", func(ctx context.Context, v int) (int, error) { return v, nil })
	if _, err := tune.Profile(t.Context(), empty); err == nil || !strings.Contains(err.Error(), "empty sample") {
		t.Errorf("an empty sample: %v", err)
	}
	in := tune.Sample([]int{1, 2, 3})
	tune.Stage(in, "drop-all", func(ctx context.Context, v int) (int, error) { return 0, pipeline.ErrSkip })
	r, err := tune.Profile(t.Context(), in, tune.Concurrencies(1), tune.MinDuration(time.Millisecond))
	if err != nil || len(r.Stages) != 1 || r.Stages[0].Points[0].ItemsPerSec <= 0 {
		t.Errorf("a last stage that drops everything: %v, %v", r, err)
	}
}
