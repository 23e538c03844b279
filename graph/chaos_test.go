//go:build linux && !ferrynolinux

package graph_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/proc"
)

// TestChaos runs endless graphs with an element in a worker process and,
// at a random frame, does one thing a production run meets: the worker
// killed with SIGKILL, Stop, Drain, the caller's context cancelled. Every
// run ends with the error that says what happened, and nothing is left
// behind. GRAPH_SOAK=N runs N rounds (default 8).
func TestChaos(t *testing.T) {
	leakcheck.Check(t)
	rounds := 8
	if n, err := strconv.Atoi(os.Getenv("GRAPH_SOAK")); err == nil && n > 0 {
		rounds = n
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	for round := range rounds {
		action := rng.IntN(4)
		at := 1 + rng.IntN(300)
		ctx, cancel := context.WithCancel(context.Background())
		g := graph.New(graph.BufferSize(1 + rng.IntN(16)))
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}), graph.Place(graph.Placement(rng.IntN(2))))
		sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Place(graph.Process))
		reached := make(chan struct{})
		var once sync.Once
		n := 0
		snk := graph.AddSink(g, "count", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
			if n++; n == at {
				once.Do(func() { close(reached) })
			}
			return nil
		}))
		graph.Connect(g, src.Out(""), sq.In(""))
		graph.Connect(g, sq.Out(""), snk.In(""))
		r, err := g.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		<-reached
		switch action {
		case 0:
			if err := syscall.Kill(r.Stats().Elements[1].PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		case 1:
			r.Stop()
		case 2:
			r.Drain()
		case 3:
			cancel()
		}
		st, err := r.Wait()
		cancel()
		var we *proc.WorkerError
		switch {
		case action == 0 && (!errors.As(err, &we) || we.Signal != "killed"):
			t.Fatalf("round %d: the worker killed at frame %d: %v; want its *WorkerError", round, at, err)
		case action == 1 && !errors.Is(err, graph.ErrStopped):
			t.Fatalf("round %d: Stop at frame %d: %v", round, at, err)
		case action == 2 && (err != nil || st.Elements[0].FramesOut-1 != int64(n)):
			t.Fatalf("round %d: Drain at frame %d: %v; %d frames produced, %d consumed", round, at, err, st.Elements[0].FramesOut-1, n)
		case action == 3 && !errors.Is(err, context.Canceled):
			t.Fatalf("round %d: cancel at frame %d: %v", round, at, err)
		}
	}
}
