package benchsuite

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Repetition counts and the wall time one repetition of Rate aims for.
const (
	quickRuns   = 3
	normalRuns  = 7
	quickTarget = 50 * time.Millisecond
	// normalTarget keeps a Rate benchmark to about 2.5 s: calibration plus
	// normalRuns repetitions.
	normalTarget = 300 * time.Millisecond
	// maxGrowth bounds how much Rate's calibration grows n in one step.
	maxGrowth = 100
	// maxN bounds n so that a body that does nothing cannot overflow it.
	maxN = 1 << 40
)

func runsFor(cfg Config) int {
	if cfg.Quick {
		return quickRuns
	}
	return normalRuns
}

func targetFor(cfg Config) time.Duration {
	if cfg.Quick {
		return quickTarget
	}
	return normalTarget
}

// Median returns the median of xs: the middle value, or the mean of the two
// middle values when len(xs) is even. It returns 0 for an empty slice and
// does not modify xs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// Runs is how many repetitions a median is over, and how far they were
// from it.
type Runs struct {
	N      int    // repetitions
	Spread Spread // the lowest and highest of them, relative to their median
}

// Spread is how far the repetitions of a measurement were from their
// median: the lowest and the highest, as fractions of it (Min 0.97 and Max
// 1.05: from 3 % under it to 5 % over it). A figure derived from the
// measurement by a constant factor (bytes/s from items/s) has the same
// spread.
type Spread struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// spreadOf returns the spread of xs around median (zero if median is 0).
func spreadOf(xs []float64, median float64) Spread {
	if len(xs) == 0 || median == 0 {
		return Spread{}
	}
	return Spread{Min: slices.Min(xs) / median, Max: slices.Max(xs) / median}
}

// Repeat runs measure a number of times that depends on cfg (fewer when
// cfg.Quick) and returns the median of the values it returned, how many
// runs that median is over and their spread. It stops at measure's first
// error.
func Repeat(cfg Config, measure func() (float64, error)) (median float64, runs Runs, err error) {
	n := runsFor(cfg)
	xs := make([]float64, 0, n)
	for i := range n {
		x, err := measure()
		if err != nil {
			return 0, Runs{}, fmt.Errorf("repetition %d of %d: %w", i+1, n, err)
		}
		xs = append(xs, x)
	}
	median = Median(xs)
	return median, Runs{N: len(xs), Spread: spreadOf(xs, median)}, nil
}

// Rate measures a throughput. body(n) must process n units of work; Rate
// first calibrates n, growing it from 1, until one call of body takes
// roughly the target time for cfg (about 50 ms quick, 300 ms otherwise),
// then times body(n) as many times as Repeat does and returns the median
// rate in units per second, with the runs as Repeat does. The calibration
// calls double as a warm-up. Rate checks ctx between calls of body.
func Rate(ctx context.Context, cfg Config, body func(n int) error) (perSec float64, runs Runs, err error) {
	target := targetFor(cfg)
	n := 1
	for {
		if err := ctx.Err(); err != nil {
			return 0, Runs{}, fmt.Errorf("calibrating: %w", err)
		}
		d, err := timeBody(body, n)
		if err != nil {
			return 0, Runs{}, fmt.Errorf("calibrating: %w", err)
		}
		if d >= target/4 || n >= maxN {
			n = scaleN(n, d, target, 1)
			break
		}
		// Aim a little past the target so that the next call is likely
		// the last one of the calibration.
		n = scaleN(n, d, target*6/5, n+1)
	}
	return Repeat(cfg, func() (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d, err := timeBody(body, n)
		if err != nil {
			return 0, err
		}
		return float64(n) / max(d, time.Nanosecond).Seconds(), nil
	})
}

// timeBody times one call of body(n).
func timeBody(body func(n int) error, n int) (time.Duration, error) {
	start := time.Now()
	if err := body(n); err != nil {
		return 0, fmt.Errorf("n=%d: %w", n, err)
	}
	return time.Since(start), nil
}

// scaleN predicts the n for which body takes target, given that n took d,
// and clamps it to [lo, min(n*maxGrowth, maxN)].
func scaleN(n int, d, target time.Duration, lo int) int {
	hi := min(n*maxGrowth, maxN)
	if d <= 0 {
		return max(lo, hi)
	}
	next := float64(n) * float64(target) / float64(d)
	if math.IsNaN(next) || next > float64(hi) {
		return max(lo, hi)
	}
	return max(lo, min(hi, int(next)))
}
