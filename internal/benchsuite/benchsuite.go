// Package benchsuite is ferry's benchmark suite: a registry of named
// measurements and the helpers they share to take repeated, median-of-N
// figures.
//
// Benchmarks register themselves from init functions in this package. The
// "limit/" benchmarks (limits.go) measure what the machine itself can do —
// a channel handoff, a memcpy, a Unix socket — in the same run as the
// pipeline benchmarks, so that every pipeline figure can be read against
// the ceiling it is measured under.
//
// The suite is Unix only: it reads CPU time with getrusage(2) and measures
// a socketpair(2).
package benchsuite

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Result holds the figures a benchmark reports; zero fields are omitted from output.
type Result struct {
	// Name is the benchmark's registered name.
	Name string `json:"name"`
	// ItemsPerSec is a throughput in items per second.
	ItemsPerSec float64 `json:"items_per_sec,omitempty"`
	// BytesPerSec is a throughput in bytes per second.
	BytesPerSec float64 `json:"bytes_per_sec,omitempty"`
	// BytesImplied says that BytesPerSec was not moved but is implied:
	// items/s times the size of an item that was written in place, never
	// copied. It is not comparable with the bytes/s of a copy.
	BytesImplied bool `json:"bytes_per_sec_implied,omitempty"`
	// Ns is a latency in nanoseconds, the median over Runs repetitions.
	Ns float64 `json:"ns,omitempty"`
	// CPUSecPerGB is the process CPU time (user+sys) spent per 1e9 bytes moved.
	CPUSecPerGB float64 `json:"cpu_sec_per_gb,omitempty"`
	// Runs is how many repetitions the median is over.
	Runs int `json:"runs"`
	// Spread is the lowest and highest of the runs relative to the median
	// (of every figure but CPUSecPerGB, which is measured apart).
	Spread Spread `json:"spread,omitzero"`
	// Limit is the "limit/" benchmark this one is to be read against
	// (Benchmark.Limit), and Ratio this one's figure over the limit's:
	// the first of items/s, bytes/s (not implied) and latency that both
	// report. Whoever runs the suite fills them in; Ratio is 0 when the
	// limit did not run.
	Limit string  `json:"limit,omitempty"`
	Ratio float64 `json:"ratio,omitempty"`
}

// RatioTo returns r's figure over limit's — items/s, else bytes/s (when
// r's are not implied), else latency, the first that both report — and
// whether there was one.
func (r Result) RatioTo(limit Result) (float64, bool) {
	switch {
	case r.ItemsPerSec > 0 && limit.ItemsPerSec > 0:
		return r.ItemsPerSec / limit.ItemsPerSec, true
	case r.BytesPerSec > 0 && !r.BytesImplied && limit.BytesPerSec > 0:
		return r.BytesPerSec / limit.BytesPerSec, true
	case r.Ns > 0 && limit.Ns > 0:
		return r.Ns / limit.Ns, true
	}
	return 0, false
}

// Config tells a benchmark how long to run.
type Config struct {
	// Quick asks for a short run (well under a second per benchmark), as
	// for CI, at the cost of noisier figures.
	Quick bool
}

// Benchmark is one named measurement.
type Benchmark struct {
	// Name identifies the benchmark; it is unique in the suite and
	// conventionally "group/name", e.g. "limit/chan-handoff".
	Name string
	// Run takes the measurement. It should stop early with ctx's error
	// when ctx is done. It may leave Result.Name empty: whoever runs the
	// suite sets it to Name.
	Run func(ctx context.Context, cfg Config) (Result, error)
	// Limit, if not empty, names the "limit/" benchmark whose figure
	// bounds this one (a pipeline stage against a channel handoff, a
	// shared-memory transfer against a memcpy), for a ratio.
	Limit string
}

// limitPrefix is the name prefix of the benchmarks that measure the
// machine's limits; All lists them first.
const limitPrefix = "limit/"

// registry holds benchmarks in registration order.
type registry struct {
	mu      sync.Mutex
	benches []Benchmark
	names   map[string]bool
}

// suite is the package's registry, filled by Register from init functions.
var suite registry

func (r *registry) register(b Benchmark) {
	if b.Name == "" {
		panic("benchsuite: Register: empty benchmark name")
	}
	if b.Run == nil {
		panic(fmt.Sprintf("benchsuite: Register: benchmark %q has no Run func", b.Name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[b.Name] {
		panic(fmt.Sprintf("benchsuite: Register: duplicate benchmark name %q", b.Name))
	}
	if b.Limit != "" && !strings.HasPrefix(b.Limit, limitPrefix) {
		panic(fmt.Sprintf("benchsuite: Register: benchmark %q: limit %q is not a %s benchmark", b.Name, b.Limit, limitPrefix))
	}
	if r.names == nil {
		r.names = make(map[string]bool)
	}
	r.names[b.Name] = true
	r.benches = append(r.benches, b)
}

func (r *registry) all() []Benchmark {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Benchmark, 0, len(r.benches))
	for _, b := range r.benches {
		if strings.HasPrefix(b.Name, limitPrefix) {
			out = append(out, b)
		}
	}
	for _, b := range r.benches {
		if !strings.HasPrefix(b.Name, limitPrefix) {
			out = append(out, b)
		}
	}
	return out
}

func (r *registry) selectPrefix(prefix string) []Benchmark {
	var out []Benchmark
	for _, b := range r.all() {
		if strings.HasPrefix(b.Name, prefix) {
			out = append(out, b)
		}
	}
	return out
}

// Register adds b to the suite. It is meant to be called from init
// functions and panics if b's name is empty or already registered, or if
// b.Run is nil.
func Register(b Benchmark) { suite.register(b) }

// All returns every registered benchmark in a stable order: the "limit/"
// ones first, then the rest, each group in registration order (which, for
// init functions in this package, is file name order). The slice is a copy.
func All() []Benchmark { return suite.all() }

// Select returns the benchmarks, in All's order, whose names start with
// prefix; an empty prefix selects all of them.
func Select(prefix string) []Benchmark { return suite.selectPrefix(prefix) }
