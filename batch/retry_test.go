package batch_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/retry"
)

// startTimes records when each attempt at an index started.
type startTimes struct {
	mu     sync.Mutex
	starts map[int][]time.Time
	failed func(batch.Event)
}

func (s *startTimes) Begin(batch.JobInfo, int) {}
func (s *startTimes) End()                     {}
func (s *startTimes) Event(e batch.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Kind == batch.EventStart {
		if s.starts == nil {
			s.starts = map[int][]time.Time{}
		}
		s.starts[e.Index] = append(s.starts[e.Index], e.Time)
	}
	if e.Kind == batch.EventFailed && s.failed != nil {
		s.failed(e)
	}
}

// TestRetryBackoffFollowsThePolicy checks, on a fake clock, that the
// retries of an index wait 1 s and then 3 s, and that the other indices
// do not wait with it.
func TestRetryBackoffFollowsThePolicy(t *testing.T) {
	for _, b := range []batch.Backend{batch.Sequential(), batch.Goroutines(2)} {
		t.Run(b.String(), func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				rec := &startTimes{}
				start := time.Now()
				p := batchtest.Params{N: 6, Dir: dir, Fail: map[int]string{0: "flaky"}}
				res, err := batchtest.Job.Run(t.Context(), p, batch.WithBackend(b), batch.Retries(2), batch.Events(rec),
					batch.RetryBackoff(retry.Backoff{Initial: time.Second, Multiplier: 3}), batch.Logger(testLogger(t)))
				if err != nil {
					t.Fatal(err)
				}
				if x := res.Indices[0]; !x.OK || x.Attempts != 3 {
					t.Fatalf("index 0: OK %v after %d attempts, want OK after 3", x.OK, x.Attempts)
				}
				var got []time.Duration
				for _, at := range rec.starts[0] {
					got = append(got, at.Sub(start))
				}
				if want := []time.Duration{0, time.Second, 4 * time.Second}; !equalDurations(got, want) {
					t.Fatalf("index 0's attempts started at %v, want %v", got, want)
				}
				for i := 1; i < p.N; i++ {
					if s := rec.starts[i]; len(s) != 1 || s[0].Sub(start) != 0 {
						t.Errorf("index %d started at %v, want once, at once", i, s)
					}
				}
				if d := time.Since(start); d != 4*time.Second {
					t.Errorf("the run took %v, want 4s", d)
				}
			})
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRetryBackoffEndsWithTheRun cancels a run while an index waits for
// its retry: the run ends at once, the index not run again.
func TestRetryBackoffEndsWithTheRun(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := &startTimes{failed: func(batch.Event) { cancel() }}
		start := time.Now()
		p := batchtest.Params{N: 3, Dir: dir, Fail: map[int]string{1: "flaky"}}
		res, err := batchtest.Job.Run(ctx, p, batch.Retries(2), batch.Events(rec),
			batch.RetryBackoff(retry.Backoff{Initial: time.Hour}), batch.Logger(testLogger(t)))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v, want context.Canceled", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("Run returned after %v, want at once", d)
		}
		if x := res.Indices[1]; x.OK || x.Attempts != 1 || !errors.Is(x.Err, batch.ErrNotRun) {
			t.Fatalf("index 1: %+v, want not run after 1 attempt", x)
		}
	})
}

func TestRetryBackoffInvalid(t *testing.T) {
	_, err := batchtest.Job.Run(t.Context(), batchtest.Params{N: 1, Dir: t.TempDir()}, batch.RetryBackoff(retry.Backoff{Multiplier: 0.5}))
	if err == nil || !strings.Contains(err.Error(), "RetryBackoff") || !strings.Contains(err.Error(), "Multiplier 0.5") {
		t.Fatalf("Run with Multiplier 0.5: %v", err)
	}
}
