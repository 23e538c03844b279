package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrypipe/ferry/retry"
)

func TestDelayFollowsThePolicy(t *testing.T) {
	b := retry.Backoff{Initial: 10 * time.Millisecond, Max: 70 * time.Millisecond, Multiplier: 2}
	want := []time.Duration{0, 10, 20, 40, 70, 70}
	for n, w := range want {
		if got := b.Delay(n); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", n, got, w*time.Millisecond)
		}
	}
	constant := retry.Backoff{Initial: time.Second}
	if d := constant.Delay(5); d != time.Second {
		t.Errorf("Multiplier 0: Delay(5) = %v, want 1s", d)
	}
	if d := (retry.Backoff{}).Delay(3); d != 0 {
		t.Errorf("the zero Backoff: Delay(3) = %v, want 0", d)
	}
	unbounded := retry.Backoff{Initial: time.Second, Multiplier: 10}
	if d := unbounded.Delay(1000); d <= 0 {
		t.Errorf("no Max, retry 1000: Delay = %v, want a long positive wait", d)
	}
}

func TestDelayJitterStaysInItsRange(t *testing.T) {
	for _, jitter := range []float64{0.5, 1} {
		b := retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: jitter}
		for n := 1; n <= 6; n++ {
			full := min(100*time.Millisecond<<(n-1), time.Second)
			lo := full - time.Duration(jitter*float64(full))
			for range 200 {
				if d := b.Delay(n); d < lo || d > full {
					t.Fatalf("Jitter %v: Delay(%d) = %v, want within [%v, %v]", jitter, n, d, lo, full)
				}
			}
		}
	}
}

func TestDefaultBackoff(t *testing.T) {
	b := retry.DefaultBackoff()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	for n, r := range [][2]time.Duration{1: {5, 10}, 2: {10, 20}, 8: {500, 1000}, 20: {500, 1000}} {
		if r[1] == 0 {
			continue
		}
		if d := b.Delay(n); d < r[0]*time.Millisecond || d > r[1]*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v–%v ms", n, d, r[0], r[1])
		}
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		b    retry.Backoff
		want string
	}{
		"negative initial":  {retry.Backoff{Initial: -time.Second}, "Initial -1s"},
		"negative max":      {retry.Backoff{Max: -1}, "Max -1ns"},
		"shrinking":         {retry.Backoff{Multiplier: 0.5}, "Multiplier 0.5"},
		"NaN multiplier":    {retry.Backoff{Multiplier: math.NaN()}, "Multiplier NaN"},
		"infinite":          {retry.Backoff{Multiplier: math.Inf(1)}, "Multiplier +Inf"},
		"jitter over one":   {retry.Backoff{Jitter: 1.5}, "Jitter 1.5"},
		"negative jitter":   {retry.Backoff{Jitter: -0.1}, "Jitter -0.1"},
		"several at a time": {retry.Backoff{Initial: -1, Jitter: 2}, "Jitter 2"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.b.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	for _, b := range []retry.Backoff{{}, {Initial: time.Second}, {Multiplier: 1, Jitter: 1}} {
		if err := b.Validate(); err != nil {
			t.Errorf("%+v: %v", b, err)
		}
	}
}

func TestWaitTakesTheDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := retry.Backoff{Initial: time.Second, Multiplier: 3}
		start := time.Now()
		if err := b.Wait(t.Context(), 3); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 9*time.Second {
			t.Fatalf("Wait(3) took %v, want 9s", d)
		}
	})
}

func TestWaitStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := retry.Backoff{Initial: time.Hour}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		if err := b.Wait(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Wait returned after %v, want 1s, when its context ended", d)
		}
		// A context that has ended fails even a wait of nothing.
		if err := (retry.Backoff{}).Wait(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Fatalf("zero Backoff, ended context: Wait = %v", err)
		}
	})
}

func TestPermanent(t *testing.T) {
	if retry.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
	cause := &fs.PathError{Op: "read", Path: "a.txt", Err: fs.ErrInvalid}
	err := retry.Permanent(cause)
	if err.Error() != cause.Error() {
		t.Errorf("message %q, want the cause's %q", err, cause)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("the cause is lost: %v", err)
	}
	wrapped := fmt.Errorf("index 3: %w", err)
	if !retry.IsPermanent(err) || !retry.IsPermanent(wrapped) || !errors.Is(wrapped, retry.ErrPermanent) {
		t.Errorf("not permanent once wrapped: %v", wrapped)
	}
	if retry.Permanent(err) != err {
		t.Error("Permanent of a permanent error wraps it again")
	}
	if retry.IsPermanent(cause) || retry.IsPermanent(nil) {
		t.Error("an unmarked error is permanent")
	}
	if !retry.IsPermanent(fmt.Errorf("bad input: %w", retry.ErrPermanent)) {
		t.Error("an error wrapping ErrPermanent is not permanent")
	}
	if !retry.IsPermanent(errors.Join(errors.New("a"), retry.Permanent(errors.New("b")))) {
		t.Error("a join holding a permanent error is not permanent")
	}
}
