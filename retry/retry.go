// Package retry is the retry policy shared by ferry's worker pools (proc)
// and batch jobs (batch): how long to wait before each retry (Backoff), and
// which errors no retry can cure (Permanent).
//
//	pool, err := proc.NewPool(ctx, Fetch, proc.Retries(3), proc.RetryBackoff(retry.DefaultBackoff()))
//	res, err := Job.Run(ctx, params, batch.Retries(2), batch.RetryBackoff(retry.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.5}))
//
// and in the code that fails:
//
//	if !utf8.Valid(data) {
//		return retry.Permanent(fmt.Errorf("%s: not UTF-8", path)) // the same bytes will fail again
//	}
package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Backoff says how long to wait before each retry: Initial before the
// first, Multiplier times longer before each next one, up to Max; of each
// wait, a random part of at most Jitter is left out, so that the retries of
// many calls that failed together (a service that went away for a moment)
// spread out instead of arriving together again.
//
// The zero Backoff retries at once.
type Backoff struct {
	Initial    time.Duration // the wait before the first retry, before jitter; ≥ 0
	Max        time.Duration // the longest wait, before jitter; 0: no limit
	Multiplier float64       // growth of the wait from one retry to the next; ≥ 1, or 0 for 1 (a constant wait)
	Jitter     float64       // the random fraction of each wait, 0..1: 0 none, 0.5 half, 1 all of it
}

// DefaultBackoff is the policy proc and batch use unless told otherwise:
// 10 ms before the first retry, doubling up to 1 s, with half of each wait
// drawn at random (waits of 5–10 ms, 10–20 ms, … 0.5–1 s). See
// docs/decisions for why.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5}
}

// Validate reports what makes b unusable, naming the field and its value.
func (b Backoff) Validate() error {
	var errs []error
	if b.Initial < 0 {
		errs = append(errs, fmt.Errorf("retry: Backoff.Initial %v, want ≥ 0", b.Initial))
	}
	if b.Max < 0 {
		errs = append(errs, fmt.Errorf("retry: Backoff.Max %v, want ≥ 0 (0: no limit)", b.Max))
	}
	if b.Multiplier != 0 && !(b.Multiplier >= 1) || math.IsInf(b.Multiplier, 0) {
		errs = append(errs, fmt.Errorf("retry: Backoff.Multiplier %v, want ≥ 1 (or 0 for a constant wait)", b.Multiplier))
	}
	if !(b.Jitter >= 0 && b.Jitter <= 1) {
		errs = append(errs, fmt.Errorf("retry: Backoff.Jitter %v, want between 0 and 1", b.Jitter))
	}
	return errors.Join(errs...)
}

// Delay is the wait before retry n (1 for the first retry), jitter drawn.
// It is 0 for n < 1.
func (b Backoff) Delay(n int) time.Duration { return b.delay(n, rand.Float64()) }

// delay is Delay with the random draw u in [0, 1) given.
func (b Backoff) delay(n int, u float64) time.Duration {
	if n < 1 || b.Initial <= 0 {
		return 0
	}
	m := b.Multiplier
	if m < 1 {
		m = 1
	}
	d := float64(b.Initial) * math.Pow(m, float64(n-1))
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	d = min(d, math.MaxInt64/2) // no limit, and a large n: still a Duration
	return time.Duration(d - b.Jitter*u*d)
}

// Wait waits before retry n (see Delay), or until ctx ends: then it returns
// ctx's error.
func (b Backoff) Wait(ctx context.Context, n int) error {
	d := b.Delay(n)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrPermanent is what a permanent error matches with errors.Is: wrap it
// (fmt.Errorf("…: %w", retry.ErrPermanent)) or call Permanent to mark an
// error that retrying cannot cure. It crosses from a worker process to the
// parent like proc's other registered errors.
var ErrPermanent = errors.New("retry: permanent error")

// Permanent marks err as permanent: proc and batch do not retry it,
// whatever their Retries. The result's message is err's and it unwraps to
// err, so errors.Is and errors.As see what they saw before. Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked
// permanent (errors.Is(err, ErrPermanent)).
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }
