//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/retry"
)

// flakyArgs is the input of pool.flaky and pool.flaky-flat: each attempt
// leaves a file in Dir, so that the test counts attempts across processes.
type flakyArgs struct {
	Dir       string
	Fail      int    // the first Fail attempts fail
	Permanent bool   // and their error is marked permanent
	Skip      bool   // or is pipeline.ErrSkip
	Out       string // what a successful attempt returns
}

func (a flakyArgs) attempt() error {
	f, err := os.CreateTemp(a.Dir, "attempt-*")
	if err != nil {
		return err
	}
	f.Close()
	n := attempts(a.Dir)
	switch {
	case n > a.Fail:
		return nil
	case a.Skip:
		return fmt.Errorf("attempt %d: %w", n, pipeline.ErrSkip)
	case a.Permanent:
		return fmt.Errorf("attempt %d: %w", n, retry.Permanent(errors.New("not UTF-8")))
	}
	return fmt.Errorf("attempt %d: flaky", n)
}

func attempts(dir string) int {
	es, _ := os.ReadDir(dir)
	return len(es)
}

var (
	poolFlaky = proc.Func("pool.flaky", func(_ context.Context, a flakyArgs) (string, error) {
		if err := a.attempt(); err != nil {
			return "", err
		}
		return a.Out, nil
	})
	poolFlakyFlat = proc.FlatFunc("pool.flaky-flat", func(_ context.Context, a flakyArgs) iter.Seq2[string, error] {
		return func(yield func(string, error) bool) {
			// An error yielded is an output, and the call goes on: a
			// flat call fails, and may run again, when it panics.
			if err := a.attempt(); err != nil {
				panic(err)
			}
			yield(a.Out, nil)
		}
	})
)

// placements run each retry test in worker processes and in-process.
var placements = map[string][]proc.PoolOption{"process": nil, "in-process": {proc.InProcess()}}

func TestPoolRetriesFailedCalls(t *testing.T) {
	for name, place := range placements {
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			pool := newTestPool(t, poolFlaky, append(place, proc.Workers(1), proc.Retries(2), proc.RetryBackoff(retry.Backoff{}))...)
			dir := t.TempDir()
			out, err := pool.Call(t.Context(), flakyArgs{Dir: dir, Fail: 2, Out: "ok"})
			if err != nil || out != "ok" {
				t.Fatalf("a call that fails twice, with two retries: %q, %v", out, err)
			}
			if n, st := attempts(dir), pool.Stats(); n != 3 || st.Retries != 2 || st.Failures != 0 {
				t.Fatalf("%d attempts, stats %+v; want 3 attempts, 2 retries", n, st)
			}
			// Out of retries: the last attempt's error.
			dir = t.TempDir()
			_, err = pool.Call(t.Context(), flakyArgs{Dir: dir, Fail: 5})
			var re *proc.RemoteError
			if !errors.As(err, &re) || re.Message != "attempt 3: flaky" || attempts(dir) != 3 {
				t.Fatalf("a call that always fails: %v after %d attempts; want attempt 3's error", err, attempts(dir))
			}
		})
	}
}

func TestPoolDoesNotRetryPermanentErrors(t *testing.T) {
	for name, place := range placements {
		t.Run(name, func(t *testing.T) {
			noLeaks(t)
			pool := newTestPool(t, poolFlaky, append(place, proc.Workers(1), proc.Retries(3))...)
			dir := t.TempDir()
			_, err := pool.Call(t.Context(), flakyArgs{Dir: dir, Fail: 5, Permanent: true})
			if n := attempts(dir); n != 1 {
				t.Fatalf("a permanent error was tried %d times, want 1", n)
			}
			// Marked in the worker, still permanent in the parent.
			var re *proc.RemoteError
			if !retry.IsPermanent(err) || !errors.As(err, &re) || re.Message != "attempt 1: not UTF-8" {
				t.Fatalf("err = %v (%T), want a permanent *RemoteError", err, err)
			}
			dir = t.TempDir()
			_, err = pool.Call(t.Context(), flakyArgs{Dir: dir, Fail: 5, Skip: true})
			if n := attempts(dir); n != 1 || !errors.Is(err, pipeline.ErrSkip) {
				t.Fatalf("a skip: %v after %d attempts, want ErrSkip after 1", err, n)
			}
			if st := pool.Stats(); st.Retries != 0 {
				t.Fatalf("stats: %+v, want no retries", st)
			}
		})
	}
}

func TestFlatPoolRetries(t *testing.T) {
	noLeaks(t)
	pool, err := proc.NewFlatPool(t.Context(), poolFlakyFlat, poolQuiet, proc.Workers(1), proc.Retries(2), proc.RetryBackoff(retry.Backoff{}))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	collect := func(a flakyArgs) (outs []string, errs []error) {
		for v, err := range pool.Call(t.Context(), a) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			outs = append(outs, v)
		}
		return outs, errs
	}
	dir := t.TempDir()
	if outs, errs := collect(flakyArgs{Dir: dir, Fail: 2, Out: "ok"}); len(outs) != 1 || len(errs) != 0 || attempts(dir) != 3 {
		t.Fatalf("fails twice, two retries: %q, %v after %d attempts", outs, errs, attempts(dir))
	}
	dir = t.TempDir()
	if _, errs := collect(flakyArgs{Dir: dir, Fail: 5, Permanent: true}); len(errs) != 1 || !retry.IsPermanent(errs[0]) || attempts(dir) != 1 {
		t.Fatalf("permanent: %v after %d attempts, want one permanent error after 1", errs, attempts(dir))
	}
}

// TestPoolRetryBackoff checks that retries wait as the policy says: at
// least 20 + 40 ms before the third attempt.
func TestPoolRetryBackoff(t *testing.T) {
	noLeaks(t)
	b := retry.Backoff{Initial: 20 * time.Millisecond, Multiplier: 2}
	pool := newTestPool(t, poolFlaky, proc.Workers(1), proc.Retries(2), proc.RetryBackoff(b))
	dir := t.TempDir()
	start := time.Now()
	if _, err := pool.Call(t.Context(), flakyArgs{Dir: dir, Fail: 2}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Fatalf("two retries took %v, want at least 60ms of backoff", d)
	}
}

// retryLogged cancels a context when a pool logs that it will retry a call.
type retryLogged struct {
	slog.Handler
	cancel context.CancelFunc
}

func (h retryLogged) Enabled(context.Context, slog.Level) bool { return true }

func (h retryLogged) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "proc: call failed; retrying" {
		h.cancel()
	}
	return nil
}

func TestPoolRetryBackoffEndsWithTheCall(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	log := slog.New(retryLogged{slog.DiscardHandler, cancel})
	pool := newTestPool(t, poolFlaky, proc.Workers(1), proc.Retries(1), proc.RetryBackoff(retry.Backoff{Initial: time.Hour}), proc.Logger(log))
	dir := t.TempDir()
	_, err := pool.Call(ctx, flakyArgs{Dir: dir, Fail: 5})
	if !errors.Is(err, context.Canceled) || attempts(dir) != 1 {
		t.Fatalf("cancelled during the backoff: %v after %d attempts, want context.Canceled after 1", err, attempts(dir))
	}
}

func TestPoolRetryBackoffInvalid(t *testing.T) {
	_, err := proc.NewPool(t.Context(), poolFlaky, poolQuiet, proc.RetryBackoff(retry.Backoff{Jitter: 2}))
	if err == nil || !contains(err.Error(), `pool "pool.flaky": RetryBackoff`, "Jitter 2") {
		t.Fatalf("NewPool with Jitter 2: %v", err)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
