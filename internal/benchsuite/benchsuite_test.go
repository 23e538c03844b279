package benchsuite

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func noop(context.Context, Config) (Result, error) { return Result{}, nil }

func names(bs []Benchmark) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func TestRegistryOrderLimitsFirst(t *testing.T) {
	var r registry
	for _, n := range []string{"pipeline/b", "limit/x", "other/a", "limit/a", "pipeline/a"} {
		r.register(Benchmark{Name: n, Run: noop})
	}
	want := []string{"limit/x", "limit/a", "pipeline/b", "other/a", "pipeline/a"}
	if got := names(r.all()); !slices.Equal(got, want) {
		t.Errorf("all() = %v, want %v", got, want)
	}
	if got, want := names(r.selectPrefix("pipeline/")), []string{"pipeline/b", "pipeline/a"}; !slices.Equal(got, want) {
		t.Errorf(`selectPrefix("pipeline/") = %v, want %v`, got, want)
	}
	if got := names(r.selectPrefix("")); !slices.Equal(got, want) {
		t.Errorf(`selectPrefix("") = %v, want %v`, got, want)
	}
	if got := r.selectPrefix("nope/"); len(got) != 0 {
		t.Errorf(`selectPrefix("nope/") = %v, want none`, names(got))
	}
}

func TestRegisterPanics(t *testing.T) {
	cases := []struct {
		name string
		b    Benchmark
		msg  string
	}{
		{"duplicate", Benchmark{Name: "limit/dup", Run: noop}, "duplicate"},
		{"empty name", Benchmark{Run: noop}, "empty"},
		{"nil run", Benchmark{Name: "x/nil"}, "no Run"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r registry
			r.register(Benchmark{Name: "limit/dup", Run: noop})
			defer func() {
				v := recover()
				s, _ := v.(string)
				if !strings.Contains(s, tc.msg) {
					t.Errorf("panic = %v, want one mentioning %q", v, tc.msg)
				}
			}()
			r.register(tc.b)
		})
	}
}

func TestLimitsRegistered(t *testing.T) {
	want := []string{"limit/chan-handoff", "limit/memcpy-8MiB", "limit/socket-stream", "limit/process-start"}
	if got := names(Select("limit/")); !slices.Equal(got, want) {
		t.Errorf(`Select("limit/") = %v, want %v`, got, want)
	}
	if got := names(All()); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("All() = %v, want it to start with %v", got, want)
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7, 7, 1, 100, 7}, 7},
	}
	for _, tc := range cases {
		in := slices.Clone(tc.xs)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
		if !slices.Equal(in, tc.xs) {
			t.Errorf("Median modified its input: %v, was %v", in, tc.xs)
		}
	}
}

func TestRepeat(t *testing.T) {
	for _, cfg := range []Config{{Quick: true}, {Quick: false}} {
		calls := 0
		med, r, err := Repeat(cfg, func() (float64, error) {
			calls++
			return float64(calls), nil
		})
		if err != nil {
			t.Fatalf("Repeat(%+v): %v", cfg, err)
		}
		runs := r.N
		if runs != calls || runs != runsFor(cfg) {
			t.Errorf("Repeat(%+v): runs = %d, calls = %d, want %d", cfg, runs, calls, runsFor(cfg))
		}
		if want := float64(runs+1) / 2; med != want {
			t.Errorf("Repeat(%+v): median = %v, want %v", cfg, med, want)
		}
		// 1 … runs around their median: from 1/med to runs/med.
		if want := (Spread{Min: 1 / med, Max: float64(runs) / med}); r.Spread != want {
			t.Errorf("Repeat(%+v): spread = %+v, want %+v", cfg, r.Spread, want)
		}
	}
	if quickRuns >= normalRuns {
		t.Errorf("quick runs %d not fewer than normal runs %d", quickRuns, normalRuns)
	}
}

func TestRepeatError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	_, _, err := Repeat(Config{}, func() (float64, error) {
		calls++
		if calls == 2 {
			return 0, boom
		}
		return 1, nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want it to wrap %v", err, boom)
	}
	if calls != 2 {
		t.Errorf("measure called %d times after failing on call 2", calls)
	}
}

// spin does a little work per unit so that Rate has something to time.
func spin(n int) error {
	x := 0
	for i := range n * 100 {
		x ^= i
	}
	if x == -1 {
		return errors.New("unreachable")
	}
	return nil
}

func TestRate(t *testing.T) {
	var ns []int
	perSec, r, err := Rate(context.Background(), Config{Quick: true}, func(n int) error {
		ns = append(ns, n)
		return spin(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	if perSec <= 0 {
		t.Errorf("perSec = %v, want > 0", perSec)
	}
	runs := r.N
	if r.Spread.Min > 1 || r.Spread.Max < 1 || r.Spread.Min <= 0 {
		t.Errorf("spread %+v: want min ≤ 1 ≤ max, min > 0", r.Spread)
	}
	if runs != quickRuns {
		t.Errorf("runs = %d, want %d", runs, quickRuns)
	}
	if ns[0] != 1 {
		t.Errorf("first n = %d, want 1", ns[0])
	}
	// The last runs calls are the timed ones, all with the calibrated n.
	timed := ns[len(ns)-runs:]
	for _, n := range timed {
		if n != timed[0] {
			t.Errorf("timed calls used different n: %v", timed)
			break
		}
	}
	for i := 1; i < len(ns)-runs; i++ {
		if ns[i] <= ns[i-1] {
			t.Errorf("calibration did not grow n: %v", ns)
			break
		}
	}
}

func TestRateErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, _, err := Rate(context.Background(), Config{Quick: true}, func(int) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("body error: err = %v, want it to wrap %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	_, _, err := Rate(ctx, Config{Quick: true}, func(int) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v, want context.Canceled", err)
	}
	if called {
		t.Error("body called with a cancelled ctx")
	}
}

func TestScaleN(t *testing.T) {
	cases := []struct {
		description string
		n, lo       int
		d, target   time.Duration
		want        int
	}{
		{"scales linearly", 10, 1, 100, 1000, 100},
		{"zero duration grows by maxGrowth", 10, 1, 0, 1000, 10 * maxGrowth},
		{"growth is capped", 10, 1, 1, time.Second, 10 * maxGrowth},
		{"never below lo", 10, 11, 1000, 100, 11},
		{"never above maxN", maxN, 1, 1, time.Second, maxN},
	}
	for _, tc := range cases {
		if got := scaleN(tc.n, tc.d, tc.target, tc.lo); got != tc.want {
			t.Errorf("%s: scaleN(%d, %v, %v, %d) = %d, want %d", tc.description, tc.n, tc.d, tc.target, tc.lo, got, tc.want)
		}
	}
}

func TestCPUTime(t *testing.T) {
	before := CPUTime()
	if before <= 0 {
		t.Fatalf("CPUTime() = %v, want > 0", before)
	}
	_ = spin(100000)
	if after := CPUTime(); after < before {
		t.Errorf("CPUTime went backwards: %v then %v", before, after)
	}
}

// TestLimitsNameLimits: every benchmark's Limit is a registered limit/
// benchmark.
func TestLimitsNameLimits(t *testing.T) {
	names := map[string]bool{}
	for _, b := range All() {
		names[b.Name] = true
	}
	n := 0
	for _, b := range All() {
		if b.Limit != "" {
			n++
			if !strings.HasPrefix(b.Limit, limitPrefix) || !names[b.Limit] {
				t.Errorf("%s: limit %q is not a registered limit benchmark", b.Name, b.Limit)
			}
		}
	}
	if n == 0 {
		t.Error("no benchmark names a limit")
	}
}

// TestRatioTo: the figure a ratio is taken of.
func TestRatioTo(t *testing.T) {
	for _, tc := range []struct {
		r, limit Result
		want     float64
		ok       bool
	}{
		{Result{ItemsPerSec: 5}, Result{ItemsPerSec: 20}, 0.25, true},
		{Result{BytesPerSec: 8, ItemsPerSec: 1}, Result{BytesPerSec: 10}, 0.8, true},
		{Result{BytesPerSec: 8, BytesImplied: true, ItemsPerSec: 1}, Result{BytesPerSec: 10}, 0, false},
		{Result{Ns: 3}, Result{Ns: 2}, 1.5, true},
		{Result{Ns: 3}, Result{ItemsPerSec: 2}, 0, false},
	} {
		if got, ok := tc.r.RatioTo(tc.limit); got != tc.want || ok != tc.ok {
			t.Errorf("%+v.RatioTo(%+v) = %v, %v; want %v, %v", tc.r, tc.limit, got, ok, tc.want, tc.ok)
		}
	}
}
