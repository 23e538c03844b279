// Package tune measures how each stage of a pipeline scales with its
// concurrency, so that you can choose each stage's Concurrency from
// numbers rather than guesses (SPDL calls this profile_pipeline).
//
// Describe the stages on a sample of the real input, in order, as the
// pipeline does; Profile then runs each stage alone — on the outputs the
// stage before it made from the sample — at concurrency 1, 2, 4, … up to a
// limit, through ferry's own engine, and reports its throughput at each
// and where it saturates: the smallest concurrency within 10 % of the
// best. A stage bound by the CPU saturates near the number of cores; one
// that waits on I/O or on a remote service keeps climbing; one behind a
// lock or a connection pool stops at its size.
//
//	in := tune.Sample(paths)
//	img := tune.Stage(in, "decode", decode)
//	tune.Stage(img, "resize", resize)
//	report, err := tune.Profile(ctx, in)
//	fmt.Print(report) // a table; package tune/tuneplot draws it
package tune

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
)

// plan is the stages described on one sample, in order.
type plan struct {
	empty  func() bool // whether the sample is empty
	stages []stage
}

// stage is one stage, its types erased.
type stage interface {
	name() string
	// prepare makes the stage's outputs on its inputs, the next stage's
	// inputs; concurrency c.
	prepare(ctx context.Context, c int) error
	// measure runs the stage on its inputs at concurrency c for at least
	// d and returns its throughput.
	measure(ctx context.Context, c int, d time.Duration) (Point, error)
}

// Input is the input of a stage: the sample, or the outputs of the stage
// before.
type Input[T any] struct {
	plan  *plan
	items []T
}

// Sample starts a description on items, a sample of the real input (a few
// hundred to a few thousand items: each stage runs over it many times).
func Sample[T any](items []T) *Input[T] {
	return &Input[T]{plan: &plan{empty: func() bool { return len(items) == 0 }}, items: items}
}

// Stage adds a stage that runs fn on the items of in, and returns its
// outputs as the input of the next stage. Its name must not be "sink"
// (the engine's name for the consumer). Returning pipeline.ErrSkip (or
// an error) drops an item, as in a pipeline: it is counted in the
// throughput, and errors are reported in Point.Failed.
func Stage[In, Out any](in *Input[In], name string, fn func(ctx context.Context, in In) (Out, error)) *Input[Out] {
	out := &Input[Out]{plan: in.plan}
	in.plan.stages = append(in.plan.stages, &typedStage[In, Out]{label: name, in: in, out: out, fn: fn})
	return out
}

type typedStage[In, Out any] struct {
	label string
	in    *Input[In]
	out   *Input[Out]
	fn    func(ctx context.Context, in In) (Out, error)
}

func (s *typedStage[In, Out]) name() string { return s.label }

// run passes the stage's inputs through fn at concurrency c, once, with
// ferry's engine; keep receives the outputs.
func (s *typedStage[In, Out]) run(ctx context.Context, c int, failed *atomic.Int64, keep func(Out)) error {
	fn := func(ctx context.Context, v In) (Out, error) {
		out, err := s.fn(ctx, v)
		if err != nil && !errors.Is(err, pipeline.ErrSkip) {
			failed.Add(1)
			var zero Out
			return zero, pipeline.ErrSkip
		}
		return out, err
	}
	p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(s.in.items), fn,
		pipeline.Name(s.label), pipeline.Concurrency(c), pipeline.Ordered()), 2*c))
	if err != nil {
		return err
	}
	defer p.Close()
	for v, err := range p.Epoch(ctx) {
		if err != nil {
			return err
		}
		if keep != nil {
			keep(v)
		}
	}
	return nil
}

func (s *typedStage[In, Out]) prepare(ctx context.Context, c int) error {
	var failed atomic.Int64
	s.out.items = s.out.items[:0]
	if err := s.run(ctx, c, &failed, func(v Out) { s.out.items = append(s.out.items, v) }); err != nil {
		return err
	}
	if len(s.in.items) > 0 && len(s.out.items) == 0 {
		return fmt.Errorf("tune: stage %q made no output from %d inputs (%d failed)", s.label, len(s.in.items), failed.Load())
	}
	return nil
}

func (s *typedStage[In, Out]) measure(ctx context.Context, c int, d time.Duration) (Point, error) {
	var failed atomic.Int64
	items := 0
	start := time.Now()
	for items == 0 || time.Since(start) < d {
		if err := s.run(ctx, c, &failed, nil); err != nil {
			return Point{}, err
		}
		items += len(s.in.items)
	}
	return Point{Concurrency: c, ItemsPerSec: float64(items) / time.Since(start).Seconds(), Failed: int(failed.Load())}, nil
}

// Point is a stage's throughput at one concurrency.
type Point struct {
	Concurrency int
	ItemsPerSec float64
	Failed      int // calls that returned an error other than ErrSkip
}

// StageReport is how one stage scales.
type StageReport struct {
	Name   string
	Points []Point // by increasing concurrency
	// Saturation is the smallest concurrency whose throughput is within
	// the threshold (10 % by default) of the best: more buys little.
	Saturation int
	// Best is the highest throughput measured, items/s.
	Best float64
}

// Report is the result of Profile, one entry per stage in order.
type Report struct {
	Stages []StageReport
}

// Option configures Profile.
type Option func(*options)

type options struct {
	concurrencies []int
	minDuration   time.Duration
	threshold     float64
}

// Concurrencies sets the concurrencies tried (default 1, 2, 4, … up to
// 4 × GOMAXPROCS, at least 16).
func Concurrencies(cs ...int) Option { return func(o *options) { o.concurrencies = cs } }

// MinDuration sets how long each measurement runs at least (default
// 200 ms): the sample is passed through the stage as many times as that
// takes.
func MinDuration(d time.Duration) Option { return func(o *options) { o.minDuration = d } }

// Threshold sets how close to the best throughput the saturation point is
// (default 0.9: within 10 %).
func Threshold(f float64) Option { return func(o *options) { o.threshold = f } }

func defaultConcurrencies() []int {
	var cs []int
	for c := 1; c <= max(4*runtime.GOMAXPROCS(0), 16); c *= 2 {
		cs = append(cs, c)
	}
	return cs
}

// Profile measures every stage described on in's sample (in is the sample
// or any stage's output: the whole description is profiled), each alone
// at each concurrency, in order.
func Profile[T any](ctx context.Context, in *Input[T], opts ...Option) (*Report, error) {
	o := options{minDuration: 200 * time.Millisecond, threshold: 0.9}
	for _, opt := range opts {
		opt(&o)
	}
	if o.concurrencies == nil {
		o.concurrencies = defaultConcurrencies()
	}
	for _, c := range o.concurrencies {
		if c < 1 {
			return nil, fmt.Errorf("tune: concurrency %d: want at least 1", c)
		}
	}
	if !(o.threshold > 0 && o.threshold <= 1) {
		return nil, fmt.Errorf("tune: threshold %v: want a fraction in (0, 1]", o.threshold)
	}
	if len(in.plan.stages) == 0 {
		return nil, errors.New("tune: no stage to profile")
	}
	if in.plan.empty() {
		return nil, errors.New("tune: an empty sample: give Sample the items to profile on")
	}
	maxC := 1
	for _, c := range o.concurrencies {
		maxC = max(maxC, c)
	}
	r := &Report{}
	for i, s := range in.plan.stages {
		sr := StageReport{Name: s.name()}
		for _, c := range o.concurrencies {
			p, err := s.measure(ctx, c, o.minDuration)
			if err != nil {
				return nil, fmt.Errorf("tune: stage %q at concurrency %d: %w", s.name(), c, err)
			}
			sr.Points = append(sr.Points, p)
			sr.Best = max(sr.Best, p.ItemsPerSec)
		}
		slices.SortFunc(sr.Points, func(a, b Point) int { return cmp.Compare(a.Concurrency, b.Concurrency) })
		for _, p := range sr.Points {
			if p.ItemsPerSec >= o.threshold*sr.Best {
				sr.Saturation = p.Concurrency
				break
			}
		}
		r.Stages = append(r.Stages, sr)
		// The next stage's inputs: this stage's outputs on the sample.
		if i == len(in.plan.stages)-1 {
			break
		}
		if err := s.prepare(ctx, maxC); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// String is the report as a table: one row per stage, its throughput at
// each concurrency and its saturation point.
func (r *Report) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Stages) == 0 {
		return ""
	}
	fmt.Fprint(w, "stage\t")
	for _, p := range r.Stages[0].Points {
		fmt.Fprintf(w, "c=%d\t", p.Concurrency)
	}
	fmt.Fprintln(w, "saturates at\t")
	for _, s := range r.Stages {
		fmt.Fprintf(w, "%s\t", s.Name)
		for _, p := range s.Points {
			fmt.Fprintf(w, "%s/s\t", rate(p.ItemsPerSec))
		}
		fmt.Fprintf(w, "%d\t\n", s.Saturation)
	}
	_ = w.Flush()
	return b.String()
}

func rate(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
