package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrypipe/ferry/pipeline"
)

// topologies are the shapes of pipeline every lifecycle test runs on.
var topologies = map[string]func(*pipeline.Stage[int]) *pipeline.Stage[int]{
	"serial": func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return pipeline.Pipe(s, identity) },
	"ordered": func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Pipe(s, identity, pipeline.Concurrency(4), pipeline.Ordered())
	},
	"unordered": func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Pipe(s, identity, pipeline.Concurrency(4))
	},
	"aggregate": func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Disaggregate(pipeline.Aggregate(s, 5))
	},
	"route": func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
		return pipeline.Route(s, func(v int) int { return v % 2 }, []func(*pipeline.Stage[int]) *pipeline.Stage[int]{
			func(s *pipeline.Stage[int]) *pipeline.Stage[int] { return s },
			func(s *pipeline.Stage[int]) *pipeline.Stage[int] {
				return pipeline.Pipe(s, identity, pipeline.Concurrency(3))
			},
		})
	},
}

func TestCloseMidEpochLeaksNothing(t *testing.T) {
	for name, chain := range topologies {
		for _, continuous := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/continuous=%v", name, continuous), func(t *testing.T) {
				defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
				var opts []pipeline.Option
				if continuous {
					opts = append(opts, pipeline.Continuous())
				}
				p, err := pipeline.Build(pipeline.Sink(chain(pipeline.FromSlice(seq(10000))), 2), opts...)
				if err != nil {
					t.Fatal(err)
				}
				k := 0
				for _, err := range p.Epoch(t.Context()) {
					if err != nil {
						t.Fatal(err)
					}
					if k++; k == 100 {
						break
					}
				}
				// Close while the stages are busy filling every queue.
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				if err := p.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if _, err := drain(p, t.Context()); !errors.Is(err, pipeline.ErrClosed) {
					t.Fatalf("Epoch after Close: %v, want ErrClosed", err)
				}
			})
		}
	}
}

func TestBreakThenNextEpochIsComplete(t *testing.T) {
	for name, chain := range topologies {
		for _, continuous := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/continuous=%v", name, continuous), func(t *testing.T) {
				var opts []pipeline.Option
				if continuous {
					opts = append(opts, pipeline.Continuous())
				}
				p := build(t, pipeline.Sink(chain(pipeline.FromSlice(seq(500))), 3), opts...)
				for round := range 4 {
					ctx, cancel := context.WithCancel(t.Context())
					k := 0
					for _, err := range p.Epoch(ctx) {
						if k++; k == 1+round*37 {
							if round%2 == 0 {
								break
							}
							cancel()
						}
						if err != nil {
							if !errors.Is(err, context.Canceled) {
								t.Fatal(err)
							}
						}
					}
					cancel()
					got := collect(t, p)
					slices.Sort(got)
					if !slices.Equal(got, seq(500)) {
						t.Fatalf("round %d: epoch after an abandoned one has %d items, want all 500 once", round, len(got))
					}
				}
			})
		}
	}
}

// blockUntilCancelled is a stage that only returns when its context ends,
// and counts the calls that did.
type blockUntilCancelled struct{ started, returned atomic.Int64 }

func (b *blockUntilCancelled) call(ctx context.Context, v int) (int, error) {
	b.started.Add(1)
	<-ctx.Done()
	b.returned.Add(1)
	return 0, ctx.Err()
}

func TestCancelStopsBlockedCallsWithoutDelay(t *testing.T) {
	for _, c := range []int{1, 4} {
		t.Run(fmt.Sprint("concurrency", c), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var b blockUntilCancelled
				p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(10)), b.call, pipeline.Concurrency(c)), 1))
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				start := time.Now()
				_, err = drain(p, ctx)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want DeadlineExceeded", err)
				}
				// In the bubble, time moves only when every goroutine is
				// blocked: no extra wait may hide in the shutdown path.
				if d := time.Since(start); d != time.Second {
					t.Fatalf("epoch ended after %v, want exactly the 1s timeout", d)
				}
				synctest.Wait()
				if s, r := b.started.Load(), b.returned.Load(); s != int64(c) || r != s {
					t.Fatalf("%d calls started, %d returned; want %d and all", s, r, c)
				}
				// Abandoning the epoch is not a failure of its items.
				if f := p.Stats().Failures; f != 0 {
					t.Fatalf("failures = %d", f)
				}
				p.Close()
				if d := time.Since(start); d != time.Second {
					t.Fatalf("Close took until %v", d)
				}
			})
		})
	}
}

func TestCloseUnblocksAWaitingConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b blockUntilCancelled
		p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(3)), b.call), 1))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() {
			_, err := drain(p, context.Background())
			done <- err
		}()
		synctest.Wait() // the consumer and the stage are blocked
		p.Close()
		if err := <-done; !errors.Is(err, pipeline.ErrClosed) {
			t.Fatalf("consumer got %v, want ErrClosed", err)
		}
	})
}

func TestNextWithTimeoutKeepsTheEpoch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		gate := func(ctx context.Context, v int) (int, error) {
			select {
			case <-release:
				return v, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(2)), gate), 1))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if _, err := p.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next = %v, want DeadlineExceeded", err)
		}
		close(release)
		var got []int
		for {
			v, err := p.Next(t.Context())
			if errors.Is(err, pipeline.ErrEpochEnd) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, []int{0, 1}) {
			t.Fatalf("got %v after the timeout, want the whole epoch", got)
		}
	})
}

func TestReportStatsLogsPeriodically(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &recordHandler{}
		p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(5)), identity, pipeline.Name("double")), 1),
			pipeline.Logger(slog.New(h)), pipeline.ReportStats(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		collect(t, p)
		time.Sleep(2500 * time.Millisecond) // fake time: two reports are due
		synctest.Wait()
		if n := h.count("pipeline: stage stats", "double"); n != 2 {
			t.Fatalf("%d stage reports for double, want 2", n)
		}
		if n := h.count("pipeline: queue stats", "sink"); n != 2 {
			t.Fatalf("%d queue reports for the sink, want 2", n)
		}
	})
}

// recordHandler keeps every log record's message and string attributes.
type recordHandler struct {
	mu      sync.Mutex
	records [][]string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := []string{r.Message}
	r.Attrs(func(a slog.Attr) bool { rec = append(rec, a.Value.String()); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	return nil
}

func (h *recordHandler) count(msg, attr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r[0] == msg && slices.Contains(r[1:], attr) {
			n++
		}
	}
	return n
}

func TestHooksSeeEveryStageAndTask(t *testing.T) {
	var mu sync.Mutex
	running := map[string]int{}
	tasks := map[string]int{}
	var failed atomic.Int64
	hooks := pipeline.Hooks{
		Stage: func(stage string) func() {
			mu.Lock()
			running[stage]++
			mu.Unlock()
			return func() {
				mu.Lock()
				running[stage]--
				mu.Unlock()
			}
		},
		Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
			mu.Lock()
			tasks[stage]++
			mu.Unlock()
			return ctx, func(err error) {
				if err != nil {
					failed.Add(1)
				}
			}
		},
	}
	s := pipeline.Pipe(pipeline.FromSlice(seq(20)), failOn(3), pipeline.Name("a"), pipeline.Concurrency(3))
	s = pipeline.Pipe(s, identity, pipeline.Name("b"))
	p, err := pipeline.Build(pipeline.Sink(s, 1), pipeline.WithHooks(hooks), pipeline.MaxFailures(pipeline.Count(1)), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, p); len(got) != 19 {
		t.Fatalf("got %d items", len(got))
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if tasks["a"] != 20 || tasks["b"] != 19 || failed.Load() != 1 {
		t.Fatalf("tasks = %v, failed = %d; want a:20 b:19 and one failure", tasks, failed.Load())
	}
	for stage, n := range running {
		if n != 0 {
			t.Fatalf("stage %q: %d goroutines still running after Close", stage, n)
		}
	}
	if len(running) < 3 {
		t.Fatalf("stage hook saw %v, want the source, a, b and the sink", running)
	}
}

func TestStatsCountStagesAndQueues(t *testing.T) {
	s := pipeline.Pipe(pipeline.FromSlice(seq(100)), jitter, pipeline.Name("work"), pipeline.Concurrency(4))
	p := build(t, pipeline.Sink(s, 8))
	collect(t, p)
	st := p.Stats()
	var work pipeline.StageStats
	for _, s := range st.Stages {
		if s.Name == "work" {
			work = s
		}
	}
	if work.Invocations != 100 || work.Concurrency != 4 || work.Mean <= 0 || work.P90 < work.Mean/2 || work.P99 < work.P90 {
		t.Fatalf("work stats = %+v", work)
	}
	var sink pipeline.QueueStats
	for _, q := range st.Queues {
		if q.Name == "sink" {
			sink = q
		}
	}
	if sink.Items != 101 || sink.Rate <= 0 { // 100 items and the epoch marker
		t.Fatalf("sink queue = %+v", sink)
	}
	if s := st.String(); len(s) == 0 {
		t.Fatal("empty Stats.String")
	}
}

func TestConcurrentConsumersAreRefused(t *testing.T) {
	p := build(t, pipeline.Sink(pipeline.FromSlice(seq(3)), 1))
	for range p.Epoch(t.Context()) {
		if _, err := p.Next(t.Context()); !errors.Is(err, pipeline.ErrBusy) {
			t.Fatalf("Next inside Epoch: %v, want ErrBusy", err)
		}
	}
}

func TestStartPrefetches(t *testing.T) {
	produced := make(chan struct{})
	src := pipeline.FromSeq(func(yield func(int) bool) {
		close(produced)
		yield(1)
	})
	p := build(t, pipeline.Sink(src, 1))
	p.Start()
	p.Start()
	<-produced // the source runs before anyone asks for the epoch
	if got := collect(t, p); !slices.Equal(got, []int{1}) {
		t.Fatalf("got %v", got)
	}
}

func TestForgottenPipelineStops(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	func() {
		p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice(seq(1000)), identity, pipeline.Concurrency(2)), 1),
			pipeline.Continuous())
		if err != nil {
			t.Fatal(err)
		}
		p.Start()
	}()
	// Nothing refers to the pipeline any more: once it is collected, its
	// goroutines stop by themselves.
	runtime.GC()
	goleak.VerifyNone(t, ignore)
}

func TestStopDrainsWhatWasProduced(t *testing.T) {
	for _, continuous := range []bool{false, true} {
		t.Run(fmt.Sprint("continuous=", continuous), func(t *testing.T) {
			var opts []pipeline.Option
			if continuous {
				opts = append(opts, pipeline.Continuous())
			}
			s := pipeline.Pipe(pipeline.FromSlice(seq(100000)), identity, pipeline.Concurrency(3), pipeline.Ordered())
			p := build(t, pipeline.Sink(s, 4), opts...)
			// Every epoch consumed is a prefix of the source: Stop cuts a
			// pass short but loses nothing that was produced.
			var epochs [][]int
			cur := []int{}
			for {
				v, err := p.Next(t.Context())
				if errors.Is(err, pipeline.ErrStopped) {
					break
				}
				if errors.Is(err, pipeline.ErrEpochEnd) {
					epochs = append(epochs, cur)
					cur = []int{}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if cur = append(cur, v); len(epochs) == 0 && len(cur) == 10 {
					p.Stop()
					p.Stop()
				}
			}
			if len(cur) != 0 || len(epochs) == 0 || len(epochs) > 2 {
				t.Fatalf("%d epochs and %d loose items, want 1 or 2 epochs", len(epochs), len(cur))
			}
			for i, e := range epochs {
				if !slices.Equal(e, seq(len(e))) {
					t.Fatalf("epoch %d is not a prefix of the source", i)
				}
			}
			if len(epochs[0]) < 10 || len(epochs[len(epochs)-1]) == 100000 {
				t.Fatalf("epoch sizes %d…%d: want the last epoch cut short", len(epochs[0]), len(epochs[len(epochs)-1]))
			}
			if _, err := drain(p, t.Context()); !errors.Is(err, pipeline.ErrStopped) {
				t.Fatalf("Epoch after the drain: %v, want ErrStopped", err)
			}
		})
	}
}

func TestStopBeforeTheFirstEpoch(t *testing.T) {
	p := build(t, pipeline.Sink(pipeline.FromSlice(seq(10)), 1))
	p.Stop()
	if _, err := drain(p, t.Context()); !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("err = %v, want ErrStopped", err)
	}
}

func TestEpochsLimitsThePasses(t *testing.T) {
	s := pipeline.Pipe(pipeline.FromSlice(seq(50), pipeline.Name("src")), identity, pipeline.Concurrency(2))
	p := build(t, pipeline.Sink(s, 4), pipeline.Continuous(), pipeline.Epochs(3))
	for range 3 {
		if got := collect(t, p); len(got) != 50 {
			t.Fatalf("epoch has %d items, want 50", len(got))
		}
	}
	if _, err := drain(p, t.Context()); !errors.Is(err, pipeline.ErrStopped) {
		t.Fatalf("fourth epoch: %v, want ErrStopped", err)
	}
	if n := p.Stats().Stages[0].Invocations; n != 150 {
		t.Fatalf("source produced %d items, want 3 passes of 50", n)
	}
}

func TestCancelledContextStopsAtOnce(t *testing.T) {
	p := build(t, pipeline.Sink(pipeline.FromSlice(seq(10)), 16), pipeline.Continuous())
	p.Start()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// Items are queued, but a cancelled consumer gets none of them.
	if _, err := drain(p, ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}
