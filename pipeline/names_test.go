package pipeline_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
)

type doubler struct{}

func (*doubler) Double(_ context.Context, v int) (int, error) { return 2 * v, nil }

type adder struct{ n int }

func (a adder) Add(_ context.Context, v int) (int, error) { return v + a.n, nil }

type box[T any] struct{}

func (*box[T]) Call(_ context.Context, v T) (T, error) { return v, nil }

func stageNames[T any](t *testing.T, cfg *pipeline.Config[T]) []string {
	t.Helper()
	p := build(t, cfg)
	var names []string
	for _, st := range p.Stats().Stages {
		names = append(names, st.Name)
	}
	return names
}

func TestDefaultStageNames(t *testing.T) {
	d := &doubler{}
	s := pipeline.Pipe(pipeline.FromSlice(seq(3)), d.Double)
	s = pipeline.Pipe(s, adder{n: 1}.Add)
	s = pipeline.Pipe(s, (&box[int]{}).Call)
	s = pipeline.Pipe(s, identity)
	s = pipeline.Pipe(s, func(_ context.Context, v int) (int, error) { return v, nil })
	got := stageNames(t, pipeline.Sink(s, 1))
	want := []string{"slice", "doubler.Double", "adder.Add", "box.Call", "identity", "pipe"}
	if !slices.Equal(got, want) {
		t.Fatalf("stage names %q, want %q", got, want)
	}
}

func TestDuplicateDefaultNamesAreNumbered(t *testing.T) {
	a := pipeline.Pipe(pipeline.FromSlice(seq(3)), identity)
	b := pipeline.Pipe(pipeline.FromSlice(seq(3)), identity)
	c := pipeline.Pipe(pipeline.Merge(a, b), sink) // a function named like the output queue
	got := stageNames(t, pipeline.Sink(c, 1))
	want := []string{"slice", "identity", "slice#2", "identity#2", "merge", "sink#2"}
	if !slices.Equal(got, want) {
		t.Fatalf("stage names %q, want %q", got, want)
	}
}

func sink(_ context.Context, v int) (int, error) { return v, nil }

func TestDuplicateNamesFailBuild(t *testing.T) {
	cases := map[string]struct {
		cfg  *pipeline.Config[int]
		want []string
	}{
		"two stages": {
			pipeline.Sink(pipeline.Pipe(pipeline.Pipe(pipeline.FromSlice(seq(3)), identity, pipeline.Name("parse")), identity, pipeline.Name("parse")), 1),
			[]string{`two stages are named "parse"`},
		},
		"a stage and a source": {
			pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(3), pipeline.Name("x")), identity, pipeline.Name("x")), 1),
			[]string{`"x"`},
		},
		"the output queue": {
			pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(3)), identity, pipeline.Name("sink")), 1),
			[]string{`"sink"`, "output queue"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := pipeline.Build(tc.cfg)
			if err == nil {
				p.Close()
				t.Fatal("Build accepted a duplicate stage name")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestInvalidBudgetsFailBuild(t *testing.T) {
	cases := map[string]struct {
		budget pipeline.Budget
		want   string
	}{
		"zero denominator":     {pipeline.Fraction(1, 0), "Fraction(1, 0): the denominator must be at least 1"},
		"negative denominator": {pipeline.Fraction(1, -5), "Fraction(1, -5)"},
		"negative numerator":   {pipeline.Fraction(-1, 10), "Fraction(-1, 10): the numerator must be 0 or more"},
		"more than one":        {pipeline.Fraction(11, 10), "Fraction(11, 10): more than 1"},
		"negative count":       {pipeline.Count(-1), "Count(-1)"},
		"negative probation":   {pipeline.Fraction(1, 10).Probation(-2), "Probation(-2)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.budget.Err() == nil {
				t.Fatalf("%v: Err() is nil", tc.budget)
			}
			// Pipeline-wide.
			p, err := pipeline.Build(pipeline.Sink(pipeline.FromSlice(seq(3)), 1), pipeline.MaxFailures(tc.budget))
			if err == nil {
				p.Close()
				t.Fatal("MaxFailures: Build accepted an invalid budget")
			}
			if !strings.Contains(err.Error(), "MaxFailures") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("MaxFailures: error %q, want it to name MaxFailures and say %q", err, tc.want)
			}
			// One stage's.
			s := pipeline.Pipe(pipeline.FromSlice(seq(3)), identity, pipeline.Name("parse"), pipeline.StageMaxFailures(tc.budget))
			p, err = pipeline.Build(pipeline.Sink(s, 1))
			if err == nil {
				p.Close()
				t.Fatal("StageMaxFailures: Build accepted an invalid budget")
			}
			if !strings.Contains(err.Error(), `stage "parse"`) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StageMaxFailures: error %q, want it to name the stage and say %q", err, tc.want)
			}
		})
	}
	for _, b := range []pipeline.Budget{pipeline.Fraction(0, 1), pipeline.Fraction(10, 10), pipeline.Count(0), pipeline.Fraction(1, 10).Probation(0), pipeline.Unlimited()} {
		if err := b.Err(); err != nil {
			t.Errorf("%v: %v", b, err)
		}
		build(t, pipeline.Sink(pipeline.FromSlice(seq(3)), 1), pipeline.MaxFailures(b))
	}
}
