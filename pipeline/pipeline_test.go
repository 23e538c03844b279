package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrypipe/ferry/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build builds cfg and closes the pipeline at the end of the test, checking
// that no goroutine of it is left.
func build[T any](t *testing.T, cfg *pipeline.Config[T], opts ...pipeline.Option) *pipeline.Pipeline[T] {
	t.Helper()
	p, err := pipeline.Build(cfg, opts...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		p.Close()
		goleak.VerifyNone(t, goleak.IgnoreCurrent())
	})
	return p
}

// collect consumes one epoch and fails the test on an error.
func collect[T any](t *testing.T, p *pipeline.Pipeline[T]) []T {
	t.Helper()
	var out []T
	for v, err := range p.Epoch(t.Context()) {
		if err != nil {
			t.Fatalf("epoch: %v", err)
		}
		out = append(out, v)
	}
	return out
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// jitter makes a stage finish items in a scrambled order.
func jitter(_ context.Context, v int) (int, error) {
	time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
	return v, nil
}

func TestOrderedKeepsInputOrderUnderRandomDelays(t *testing.T) {
	for _, c := range []int{1, 2, 8, 32} {
		t.Run(fmt.Sprint("concurrency", c), func(t *testing.T) {
			src := pipeline.FromSlice(seq(500))
			s := pipeline.Pipe(src, jitter, pipeline.Concurrency(c), pipeline.Ordered())
			s = pipeline.Pipe(s, func(_ context.Context, v int) (int, error) { return v * 2, nil })
			p := build(t, pipeline.Sink(s, 3))
			got := collect(t, p)
			want := seq(500)
			for i := range want {
				want[i] *= 2
			}
			if !slices.Equal(got, want) {
				t.Fatalf("order lost: got %v…", got[:min(len(got), 20)])
			}
		})
	}
}

func TestUnorderedDeliversEveryItemExactlyOnce(t *testing.T) {
	src := pipeline.FromSlice(seq(2000))
	s := pipeline.Pipe(src, jitter, pipeline.Concurrency(16))
	s = pipeline.FlatPipe(s, func(_ context.Context, v int) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			_ = yield(2*v, nil) && yield(2*v+1, nil)
		}
	}, pipeline.Concurrency(3))
	s = pipeline.Filter(s, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, pipeline.Concurrency(2))
	s = pipeline.Disaggregate(pipeline.Aggregate(s, 7))
	s = pipeline.Pipe(s, func(_ context.Context, v int) (int, error) { return v / 2, nil })
	p := build(t, pipeline.Sink(s, 10))
	for range 3 {
		got := collect(t, p)
		slices.Sort(got)
		if !slices.Equal(got, seq(2000)) {
			t.Fatalf("got %d items, want every one of 0..1999 once", len(got))
		}
	}
	st := p.Stats()
	if st.Failures != 0 {
		t.Fatalf("failures = %d", st.Failures)
	}
	filter := st.Stages[3]
	if filter.Skipped != 3*2000 || filter.Invocations != 3*4000 {
		t.Fatalf("filter stats = %+v, want 6000 skipped of 12000", filter)
	}
}

func TestSources(t *testing.T) {
	seqSrc := func(yield func(int) bool) {
		for i := range 5 {
			if !yield(i) {
				return
			}
		}
	}
	seq2Src := func(yield func(int, error) bool) {
		for i := range 5 {
			if !yield(i, nil) {
				return
			}
		}
	}
	ch := make(chan int, 5)
	for i := range 5 {
		ch <- i
	}
	close(ch)
	custom := pipeline.SourceFunc[int](func(ctx context.Context) iter.Seq2[int, error] { return seq2Src })
	for name, src := range map[string]*pipeline.Stage[int]{
		"slice": pipeline.FromSlice(seq(5)),
		"seq":   pipeline.FromSeq(iter.Seq[int](seqSrc)),
		"seq2":  pipeline.FromSeq2(iter.Seq2[int, error](seq2Src)),
		"chan":  pipeline.FromChan(ch),
		"src":   pipeline.From[int](custom),
	} {
		t.Run(name, func(t *testing.T) {
			p := build(t, pipeline.Sink(src, 1))
			if got := collect(t, p); !slices.Equal(got, seq(5)) {
				t.Fatalf("first pass = %v", got)
			}
			got := collect(t, p)
			if name == "chan" {
				if len(got) != 0 {
					t.Fatalf("second pass over a drained channel = %v, want empty", got)
				}
			} else if !slices.Equal(got, seq(5)) {
				t.Fatalf("second pass = %v", got)
			}
		})
	}
}

func TestContinuousEpochsAreCompleteAfterEarlyBreaks(t *testing.T) {
	const n = 300
	src := pipeline.FromSlice(seq(n))
	s := pipeline.Pipe(src, jitter, pipeline.Concurrency(4), pipeline.Buffer(8))
	p := build(t, pipeline.Sink(s, 4), pipeline.Continuous())
	for epoch := range 12 {
		if epoch%3 == 1 {
			// Break out at a different point each time.
			k := 0
			for _, err := range p.Epoch(t.Context()) {
				if err != nil {
					t.Fatal(err)
				}
				if k++; k == epoch*20 {
					break
				}
			}
			continue
		}
		got := collect(t, p)
		slices.Sort(got)
		if !slices.Equal(got, seq(n)) {
			t.Fatalf("epoch %d has %d items, want each of %d once", epoch, len(got), n)
		}
	}
}

func TestNextReportsEpochEnd(t *testing.T) {
	p := build(t, pipeline.Sink(pipeline.FromSlice([]string{"a", "b"}), 1))
	ctx := t.Context()
	for range 2 {
		var got []string
		for {
			v, err := p.Next(ctx)
			if errors.Is(err, pipeline.ErrEpochEnd) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("got %v", got)
		}
	}
}

func TestMergeHoldsEpochBoundaryAcrossInputs(t *testing.T) {
	a := pipeline.FromSlice(seq(50))
	b := pipeline.Pipe(pipeline.FromSlice(seq(7)), func(_ context.Context, v int) (int, error) { return 1000 + v, nil })
	p := build(t, pipeline.Sink(pipeline.Merge(a, b), 2), pipeline.Continuous())
	want := append(seq(50), 1000, 1001, 1002, 1003, 1004, 1005, 1006)
	for epoch := range 10 {
		got := collect(t, p)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("epoch %d: %d items, want %d, each once", epoch, len(got), len(want))
		}
	}
}

func TestRouteSendsEachItemToItsBranch(t *testing.T) {
	src := pipeline.FromSlice(seq(100))
	double := func(s *pipeline.Stage[int]) *pipeline.Stage[string] {
		return pipeline.Pipe(s, func(_ context.Context, v int) (string, error) { return fmt.Sprint("even", v), nil })
	}
	odd := func(s *pipeline.Stage[int]) *pipeline.Stage[string] {
		s = pipeline.Pipe(s, jitter, pipeline.Concurrency(4))
		return pipeline.Pipe(s, func(_ context.Context, v int) (string, error) { return fmt.Sprint("odd", v), nil })
	}
	r := pipeline.Route(src, func(v int) int { return v % 2 }, []func(*pipeline.Stage[int]) *pipeline.Stage[string]{double, odd})
	p := build(t, pipeline.Sink(r, 5), pipeline.Continuous())
	var want []string
	for i := range 100 {
		if i%2 == 0 {
			want = append(want, fmt.Sprint("even", i))
		} else {
			want = append(want, fmt.Sprint("odd", i))
		}
	}
	slices.Sort(want)
	for range 3 {
		got := collect(t, p)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("got %d items, want %d", len(got), len(want))
		}
	}
}

func TestAggregateBatchesPerEpoch(t *testing.T) {
	for _, dropLast := range []bool{false, true} {
		t.Run(fmt.Sprint("dropLast=", dropLast), func(t *testing.T) {
			var opts []pipeline.StageOption
			if dropLast {
				opts = append(opts, pipeline.DropLast())
			}
			b := pipeline.Aggregate(pipeline.FromSlice(seq(10)), 4, opts...)
			p := build(t, pipeline.Sink(b, 1), pipeline.Continuous())
			want := [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}
			if dropLast {
				want = want[:2]
			}
			for range 3 {
				got := collect(t, p)
				if !slices.EqualFunc(got, want, slices.Equal) {
					t.Fatalf("batches = %v, want %v", got, want)
				}
			}
		})
	}
}

// sumAgg sums items in groups of three.
type sumAgg struct{ sum, n int }

func (a *sumAgg) Add(v int) (int, bool) {
	a.sum += v
	a.n++
	if a.n < 3 {
		return 0, false
	}
	s := a.sum
	*a = sumAgg{}
	return s, true
}

func (a *sumAgg) Flush() (int, bool) {
	s, n := a.sum, a.n
	*a = sumAgg{}
	return s, n > 0
}

func TestAggregateWithCustomAggregator(t *testing.T) {
	p := build(t, pipeline.Sink(pipeline.AggregateWith(pipeline.FromSlice(seq(7)), &sumAgg{}), 1))
	if got := collect(t, p); !slices.Equal(got, []int{0 + 1 + 2, 3 + 4 + 5, 6}) {
		t.Fatalf("sums = %v", got)
	}
}

func TestBuildErrors(t *testing.T) {
	src := pipeline.FromSlice(seq(3))
	used := pipeline.Pipe(src, identity)
	cases := map[string]*pipeline.Config[int]{
		"reused stage":  pipeline.Sink(pipeline.Merge(used, pipeline.Pipe(src, identity)), 1),
		"concurrency 0": pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(1)), identity, pipeline.Concurrency(0)), 1),
		"nil function":  pipeline.Sink(pipeline.Pipe[int, int](pipeline.FromSlice(seq(1)), nil), 1),
		"sink buffer 0": pipeline.Sink(pipeline.FromSlice(seq(1)), 0),
		"aggregate 0":   pipeline.Sink(pipeline.Disaggregate(pipeline.Aggregate(pipeline.FromSlice(seq(1)), 0)), 1),
		"merge nothing": pipeline.Sink(pipeline.Merge[int](), 1),
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := pipeline.Build(cfg)
			if err == nil {
				p.Close()
				t.Fatal("Build succeeded")
			}
			t.Log(err)
		})
	}
}
