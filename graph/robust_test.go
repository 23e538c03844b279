//go:build linux && !ferrynolinux

package graph_test

// Faults found by probing the graph as a user would: each of these once
// failed.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// idleSource emits one frame, then has nothing more to say until the run
// ends: a live source.
func idleSource() graph.Source[int] {
	return graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		if err := out.Emit("", graph.Frame[int]{Data: 3}); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
}

// TestFailureWhileUpstreamIdle: an element that fails (or whose worker
// dies) fails the run at once, even when nothing more comes its way.
func TestFailureWhileUpstreamIdle(t *testing.T) {
	for _, crash := range []bool{false, true} {
		forEachPlacement(t, func(t *testing.T, p graph.Placement) {
			a := squareArgs{FailAt: 3, Crash: -1}
			if crash {
				if p == graph.Goroutine {
					return // a crash takes a goroutine's process down
				}
				a = squareArgs{FailAt: -1, Crash: 3}
			}
			g := graph.New()
			src := graph.AddSource(g, "src", idleSource())
			sq := graph.AddTransform(g, "square", squareKind.New(a), graph.Place(p))
			snk := graph.AddSink(g, "snk", &collect{})
			graph.Connect(g, src.Out(""), sq.In(""))
			graph.Connect(g, sq.Out(""), snk.In(""))
			_, err := g.Run(context.Background())
			var ee *graph.ElementError
			var we *proc.WorkerError
			if !errors.As(err, &ee) || ee.Element != "square" || (!errors.Is(err, errOdd) && !errors.As(err, &we)) {
				t.Fatalf("crash=%v: Run: %v; want square's error", crash, err)
			}
		})
	}
}

// tailSource emits frames until it is drained, then a last frame that
// carries EOS.
type tailSource struct{ started chan struct{} }

func (s tailSource) Run(ctx context.Context, out graph.Emitter[int]) error {
	for i := 0; ctx.Err() == nil; i++ {
		if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
			break
		}
		if i == 10 && s.started != nil {
			close(s.started)
		}
	}
	return out.Emit("", graph.Frame[int]{Data: -1, EOS: true})
}

var tailKind = graph.RegisterSource("test.tail", func(struct{}) (graph.Source[int], error) { return tailSource{}, nil })

// TestEOSFrameAtDrain: a frame that Emit refuses at a drain does not end
// its pad, so the graph still ends it and the drain completes.
func TestEOSFrameAtDrain(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		g := graph.New()
		started := make(chan struct{})
		var once sync.Once
		src := graph.AddSource(g, "tail", tailKind.New(struct{}{}), graph.Place(p))
		snk := graph.AddSink(g, "snk", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
			if f.Data == 10 {
				once.Do(func() { close(started) })
			}
			return nil
		}))
		graph.Connect(g, src.Out(""), snk.In(""))
		r, err := g.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		<-started
		r.Drain()
		if _, err := r.Wait(); err != nil {
			t.Fatalf("Wait: %v", err)
		}
	})
}

// TestStatsWhileEnding reads the stats while a run ends (for -race).
func TestStatsWhileEnding(t *testing.T) {
	for range 20 {
		g := graph.New()
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 10}))
		snk := graph.AddSink(g, "snk", &collect{})
		graph.Connect(g, src.Out(""), snk.In(""))
		r, err := g.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for done := false; !done; {
			_ = r.Stats()
			select {
			case <-r.Done():
				done = true
			default:
			}
		}
		if _, err := r.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// anyVal holds an interface, which the codec cannot carry faithfully.
type anyVal struct{ V any }

var anyKind = graph.RegisterTransform("test.any", func(struct{}) (graph.Transform[int, anyVal], error) {
	return graph.Map(func(_ context.Context, v int) (anyVal, error) { return anyVal{V: v}, nil }), nil
})

// TestFramesTheCodecRefuses: an element whose frames cannot cross a
// process boundary is refused when placed in a worker, before it runs.
func TestFramesTheCodecRefuses(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		g := graph.New()
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 10}))
		b := graph.AddTransform(g, "any", anyKind.New(struct{}{}), graph.Place(p))
		snk := graph.AddSink(g, "snk", graph.SinkFunc(func(context.Context, graph.Frame[anyVal]) error { return nil }))
		graph.Connect(g, src.Out(""), b.In(""))
		graph.Connect(g, b.Out(""), snk.In(""))
		_, err := g.Run(context.Background())
		switch {
		case p == graph.Goroutine && err != nil:
			t.Fatalf("in a goroutine: %v", err)
		case p == graph.Process && (err == nil || !strings.Contains(err.Error(), `element "any" runs in a worker process, but its frames cannot cross`) ||
			!strings.Contains(err.Error(), "field .V is an interface")):
			t.Fatalf("in a worker process: %v; want the refusal, naming the field", err)
		}
	})
}

// TestStopAndDrainAfterTheEnd change nothing.
func TestStopAndDrainAfterTheEnd(t *testing.T) {
	g := graph.New()
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 10}))
	snk := graph.AddSink(g, "snk", &collect{})
	graph.Connect(g, src.Out(""), snk.In(""))
	r, err := g.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Drain()
	if st, err := r.Wait(); err != nil || st.Drained {
		t.Fatalf("Wait after Stop and Drain: %v, drained %v", err, st.Drained)
	}
}

// TestSmallLinks runs a fan-out into an aligned element through links of
// one to three frames, in each placement: the links' wake-ups never lose
// a frame or hang.
func TestSmallLinks(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		for _, buf := range []int{1, 2, 3} {
			n := 20000
			if p == graph.Process {
				n = 3000
			}
			g := graph.New(graph.BufferSize(buf))
			src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: n}))
			a := graph.AddTransform(g, "a", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Place(p))
			b := graph.AddTransform(g, "b", graph.Map(func(ctx context.Context, v int) (int, error) { return v, nil }))
			s := graph.AddAligned(g, "sum", sumKind.New(struct{}{}), graph.AlignBySeq, graph.Inputs("x", "y"), graph.Place(p))
			sink := &collect{}
			snk := graph.AddSink(g, "snk", sink)
			graph.Connect(g, src.Out(""), a.In(""), b.In(""))
			graph.Connect(g, a.Out(""), s.In("x"))
			graph.Connect(g, b.Out(""), s.In("y"))
			graph.Connect(g, s.Out(""), snk.In(""))
			if _, err := g.Run(context.Background()); err != nil {
				t.Fatalf("links of %d: %v", buf, err)
			}
			d := sink.data()
			if len(d) != n {
				t.Fatalf("links of %d: %d frames, want %d", buf, len(d), n)
			}
			for i, v := range d {
				if v != i*i+i {
					t.Fatalf("links of %d: frame %d = %d", buf, i, v)
				}
			}
		}
	})
}

type bigFailArgs struct{ FailAt, Crash int }

var bigFailKind = graph.RegisterTransform("test.bigfail", func(a bigFailArgs) (graph.Transform[[]byte, []byte], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[[]byte], out graph.Emitter[[]byte]) error {
		switch int(in.Seq) {
		case a.Crash:
			os.Exit(3)
		case a.FailAt:
			return errOdd
		}
		return out.Emit("", graph.Frame[[]byte]{Data: in.Data})
	}), nil
})

// TestArenaAfterAFailure: large frames in flight when a worker element
// fails or dies go back to the arena, every time.
func TestArenaAfterAFailure(t *testing.T) {
	leakcheck.Check(t)
	arena, err := shm.NewSegmentPool(300<<10, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	for i := range 20 {
		a := bigFailArgs{FailAt: 5, Crash: -1}
		if i%2 == 1 {
			a = bigFailArgs{FailAt: -1, Crash: 5}
		}
		g := graph.New(graph.BufferSize(4), graph.WorkerOptions(proc.Arena(arena)))
		src := graph.AddSource(g, "blobs", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[[]byte]) error {
			for i := 0; ; i++ {
				if err := out.Emit("", graph.Frame[[]byte]{Data: bytes.Repeat([]byte{byte(i)}, 256<<10)}); err != nil {
					return err
				}
			}
		}))
		sc := graph.AddTransform(g, "bigfail", bigFailKind.New(a), graph.Place(graph.Process))
		snk := graph.AddSink(g, "snk", graph.SinkFunc(func(ctx context.Context, f graph.Frame[[]byte]) error { return nil }))
		graph.Connect(g, src.Out(""), sc.In(""))
		graph.Connect(g, sc.Out(""), snk.In(""))
		if _, err := g.Run(context.Background()); err == nil {
			t.Fatal("the run did not fail")
		}
		if st := arena.Stats(); st.Free != st.Count {
			t.Fatalf("run %d (%+v): %d of %d segments free after it", i, a, st.Free, st.Count)
		}
	}
}

// TestStopKillsWorkersDespiteAStuckGoroutine: a hard stop kills the worker
// processes at once, even while an element in a goroutine ignores its
// context.
func TestStopKillsWorkersDespiteAStuckGoroutine(t *testing.T) {
	g := graph.New()
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}))
	sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Place(graph.Process))
	release, stuck := make(chan struct{}), make(chan struct{})
	var once sync.Once
	snk := graph.AddSink(g, "stuck", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
		once.Do(func() { close(stuck) })
		<-release // ignores ctx, as a blocking call would
		return nil
	}))
	graph.Connect(g, src.Out(""), sq.In(""))
	graph.Connect(g, sq.Out(""), snk.In(""))
	r, err := g.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-stuck
	pid := r.Stats().Elements[1].PID
	r.Stop()
	waitGone(t, pid, 10e9)
	close(release)
	if _, err := r.Wait(); !errors.Is(err, graph.ErrStopped) {
		t.Fatalf("Wait: %v", err)
	}
}

// TestConcurrentEmit: an element that emits from several goroutines loses
// and repeats nothing.
func TestConcurrentEmit(t *testing.T) {
	g := graph.New(graph.BufferSize(2))
	src := graph.AddSource(g, "multi", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 5000 {
					if out.Emit("", graph.Frame[int]{Data: w*5000 + i}) != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		return nil
	}))
	seen := map[int]int{}
	var seqs []uint64
	snk := graph.AddSink(g, "snk", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
		seen[f.Data]++
		seqs = append(seqs, f.Seq)
		return nil
	}))
	graph.Connect(g, src.Out(""), snk.In(""))
	if _, err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 20000 || len(seqs) != 20000 {
		t.Fatalf("%d distinct frames of %d, want 20000", len(seen), len(seqs))
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("frame %d has Seq %d", i, s)
		}
	}
}
