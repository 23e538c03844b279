package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
)

// failOn fails the items whose value is in bad.
func failOn(bad ...int) func(context.Context, int) (int, error) {
	return func(_ context.Context, v int) (int, error) {
		if slices.Contains(bad, v) {
			return 0, fmt.Errorf("bad item %d", v)
		}
		return v, nil
	}
}

// quiet discards the failure logs of a test.
func quiet() pipeline.Option {
	return pipeline.Logger(slog.New(slog.DiscardHandler))
}

// drain consumes one epoch, returning its items and the error that ended it.
func drain[T any](p *pipeline.Pipeline[T], ctx context.Context) ([]T, error) {
	var out []T
	for v, err := range p.Epoch(ctx) {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

func TestAnyFailureStopsThePipelineByDefault(t *testing.T) {
	s := pipeline.Pipe(pipeline.FromSlice(seq(100)), failOn(42), pipeline.Name("check"))
	p := build(t, pipeline.Sink(s, 1), quiet())
	_, err := drain(p, t.Context())
	var be *pipeline.BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *BudgetError", err)
	}
	if be.Stage != "check" || be.Failures != 1 {
		t.Fatalf("BudgetError = %+v", be)
	}
	var ie *pipeline.ItemError
	if !errors.As(err, &ie) || ie.Index != 42 || ie.Stage != "check" || !strings.Contains(ie.Error(), "bad item 42") {
		t.Fatalf("cause = %v, want item 42 of stage check", ie)
	}
	// The pipeline stays failed.
	if _, err := drain(p, t.Context()); !errors.As(err, &be) {
		t.Fatalf("next epoch: %v, want the same BudgetError", err)
	}
	if !errors.As(p.Err(), &be) {
		t.Fatalf("Err() = %v", p.Err())
	}
}

func TestCountBudget(t *testing.T) {
	bad := []int{3, 10, 77}
	for _, tc := range []struct {
		budget pipeline.Budget
		fails  bool
	}{
		{pipeline.Count(3), false},
		{pipeline.Count(2), true},
		{pipeline.Unlimited(), false},
	} {
		t.Run(tc.budget.String(), func(t *testing.T) {
			s := pipeline.Pipe(pipeline.FromSlice(seq(100)), failOn(bad...), pipeline.Concurrency(4), pipeline.StageMaxFailures(tc.budget))
			p := build(t, pipeline.Sink(s, 1), quiet())
			got, err := drain(p, t.Context())
			if tc.fails {
				var be *pipeline.BudgetError
				if !errors.As(err, &be) || be.Failures != 3 || len(be.Causes) != 3 {
					t.Fatalf("err = %v, want a BudgetError with 3 failures", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			want := slices.DeleteFunc(seq(100), func(v int) bool { return slices.Contains(bad, v) })
			if !slices.Equal(got, want) {
				t.Fatalf("got %d items, want the 97 good ones", len(got))
			}
			if st := p.Stats().Stages[1]; st.Failures != 3 || st.Invocations != 100 {
				t.Fatalf("stage stats = %+v", st)
			}
		})
	}
}

func TestFractionBudgetWaitsForProbation(t *testing.T) {
	// Item 0 fails: 1/1 is far over 1/10, but the budget is judged only
	// after 20 invocations, by when 1/20 is within it.
	s := pipeline.Pipe(pipeline.FromSlice(seq(100)), failOn(0, 50, 99))
	p := build(t, pipeline.Sink(s, 1), quiet(), pipeline.MaxFailures(pipeline.Fraction(1, 10).Probation(20)))
	got, err := drain(p, t.Context())
	if err != nil || len(got) != 97 {
		t.Fatalf("got %d items, err %v; want 97, nil", len(got), err)
	}

	// 1 in 3 fail: over 1/10 once judged.
	third := func(_ context.Context, v int) (int, error) {
		if v%3 == 0 {
			return 0, errors.New("third")
		}
		return v, nil
	}
	p2 := build(t, pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(100)), third), 1), quiet(), pipeline.MaxFailures(pipeline.Fraction(1, 10)))
	_, err = drain(p2, t.Context())
	var be *pipeline.BudgetError
	if !errors.As(err, &be) || be.Invocations < 10 {
		t.Fatalf("err = %v, want a BudgetError judged after probation", err)
	}
}

func TestPipelineBudgetSumsStages(t *testing.T) {
	// Each stage fails twice, within its own budget of 2; the pipeline
	// tolerates 3 in all, so the fourth failure stops it.
	a := pipeline.Pipe(pipeline.FromSlice(seq(100)), failOn(1, 2), pipeline.Name("a"), pipeline.StageMaxFailures(pipeline.Count(2)))
	b := pipeline.Pipe(a, failOn(5, 6), pipeline.Name("b"), pipeline.StageMaxFailures(pipeline.Count(2)))
	p := build(t, pipeline.Sink(b, 1), quiet(), pipeline.MaxFailures(pipeline.Count(3)))
	_, err := drain(p, t.Context())
	var be *pipeline.BudgetError
	if !errors.As(err, &be) || be.Stage != "" || be.Failures != 4 {
		t.Fatalf("err = %v, want the pipeline-wide budget exceeded at 4 failures", err)
	}
}

func TestSourceErrorsAreItemFailures(t *testing.T) {
	src := func(yield func(int, error) bool) {
		for i := range 10 {
			var err error
			if i == 4 {
				err = errors.New("unreadable record")
			}
			if !yield(i, err) {
				return
			}
		}
	}
	p := build(t, pipeline.Sink(pipeline.FromSeq2(src, pipeline.Name("records")), 1), quiet(), pipeline.MaxFailures(pipeline.Count(1)))
	got, err := drain(p, t.Context())
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 5, 6, 7, 8, 9}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if st := p.Stats().Stages[0]; st.Name != "records" || st.Failures != 1 {
		t.Fatalf("source stats = %+v", st)
	}
}

func TestSkipIsNotAFailure(t *testing.T) {
	odd := func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, fmt.Errorf("odd %d: %w", v, pipeline.ErrSkip)
		}
		return v, nil
	}
	p := build(t, pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(10)), odd), 1))
	got, err := drain(p, t.Context())
	if err != nil || !slices.Equal(got, []int{0, 2, 4, 6, 8}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if st := p.Stats(); st.Failures != 0 || st.Stages[1].Skipped != 5 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestPanicFailsTheItemWithItsStack(t *testing.T) {
	boom := func(_ context.Context, v int) (int, error) {
		if v == 7 {
			panic("boom at seven")
		}
		return v, nil
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	p := build(t, pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(10)), boom, pipeline.Concurrency(2), pipeline.Name("boom")), 1),
		pipeline.Logger(logger), pipeline.MaxFailures(pipeline.Count(0)))
	_, err := drain(p, t.Context())
	var pe *pipeline.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom at seven" || !bytes.Contains(pe.Stack, []byte("failure_test")) {
		t.Fatalf("err = %v, want a PanicError with the stack", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "stage=boom") || strings.Count(logs.String(), "item failed") != 1 {
		t.Fatalf("log = %q, want one line naming the stage", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestAggregatorAndRouterPanicsFailTheItem(t *testing.T) {
	r := pipeline.Route(pipeline.FromSlice(seq(10)), func(v int) int {
		if v == 3 {
			panic("router")
		}
		return v % 5 // 2, 3 and 4 are out of range for two branches
	}, []func(*pipeline.Stage[int]) *pipeline.Stage[int]{
		func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return s },
		func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return s },
	})
	p := build(t, pipeline.Sink(r, 1), quiet(), pipeline.MaxFailures(pipeline.Unlimited()))
	got, err := drain(p, t.Context())
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []int{0, 1, 5, 6}) {
		t.Fatalf("got %v, %v; want the items routed to branch 0 or 1", got, err)
	}
	if f := p.Stats().Failures; f != 6 {
		t.Fatalf("failures = %d, want 6 (one panic, five out of range)", f)
	}
}

func TestBackgroundTaskErrorFailsThePipeline(t *testing.T) {
	block := func(ctx context.Context, v int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	p := build(t, pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(3)), block), 1),
		pipeline.Background("watchdog", func(context.Context) error { return errors.New("disk full") }))
	_, err := drain(p, t.Context())
	if err == nil || !strings.Contains(err.Error(), `"watchdog"`) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the background task's error", err)
	}
}

// TestCrashOnPanic runs itself in a child process, where the panic must end
// the program instead of failing the item.
func TestCrashOnPanic(t *testing.T) {
	if os.Getenv("FERRY_CRASH_CHILD") == "1" {
		boom := func(context.Context, int) (int, error) { panic("crash requested") }
		p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(1)), boom), 1), pipeline.CrashOnPanic())
		if err != nil {
			t.Fatal(err)
		}
		for range p.Epoch(context.Background()) {
		}
		t.Fatal("the panic did not crash the program")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashOnPanic$")
	cmd.Env = append(os.Environ(), "FERRY_CRASH_CHILD=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "panic: crash requested") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
