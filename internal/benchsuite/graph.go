package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Element graphs: frames through a chain of goroutines (compared with
// limit/chan-handoff), through an element in a worker process, 1 MiB
// frames through the arena (compared with limit/memcpy-8MiB), and the time
// a drain takes.
func init() {
	Register(Benchmark{Name: "graph/chain-3", Run: graphChain})
	Register(Benchmark{Name: "graph/process-transform", Run: graphProcessTransform})
	Register(Benchmark{Name: "graph/process-transform-1MiB", Limit: "limit/memcpy-8MiB", Run: graphProcessBuffers})
	Register(Benchmark{Name: "graph/process-transform-1MiB-slices", Limit: "limit/memcpy-8MiB", Run: graphProcessBlobs})
	Register(Benchmark{Name: "graph/drain", Run: graphDrain})
}

// graphInc adds one to each frame's data, in a worker process.
var graphInc = graph.RegisterTransform("bench.graph.inc", func(struct{}) (graph.Transform[int, int], error) {
	return graph.Map(func(_ context.Context, v int) (int, error) { return v + 1, nil }), nil
})

// graphTouch passes a []byte frame on, having changed its first byte.
var graphTouch = graph.RegisterTransform("bench.graph.touch", func(struct{}) (graph.Transform[[]byte, []byte], error) {
	return graph.Map(func(_ context.Context, b []byte) ([]byte, error) {
		b[0]++
		return b, nil
	}), nil
})

// graphTouchBuffer passes a Buffer frame on, having changed its first
// byte: in place when it holds the only reference, which it does unless
// the frame is fanned out.
var graphTouchBuffer = graph.RegisterTransform("bench.graph.touch-buffer", func(struct{}) (graph.Transform[*shm.Buffer, *shm.Buffer], error) {
	return graph.Map(func(ctx context.Context, b *shm.Buffer) (*shm.Buffer, error) {
		if !b.Unique() {
			c, err := graph.NewBuffer(ctx, b.Len())
			if err != nil {
				return nil, err
			}
			copy(c.Bytes(), b.Bytes())
			b = c
		}
		b.Bytes()[0]++
		return b, nil
	}), nil
})

// countTo is a source of the ints 0 … n-1.
func countTo(n int) graph.Source[int] {
	return graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		for i := range n {
			if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkInts is a sink that checks that it gets want(0), want(1), … and
// counts them.
func checkInts(got *int, want func(i int) int) graph.Sink[int] {
	return graph.SinkFunc(func(_ context.Context, f graph.Frame[int]) error {
		if f.Data != want(*got) {
			return fmt.Errorf("frame %d is %d, want %d", *got, f.Data, want(*got))
		}
		*got++
		return nil
	})
}

// runInts runs source → transform → sink for n frames.
func runInts(ctx context.Context, n int, t graph.Transform[int, int], want func(int) int, opts ...graph.ElementOption) error {
	g := graph.New(graph.BufferSize(256))
	src := graph.AddSource(g, "source", countTo(n))
	tr := graph.AddTransform(g, "transform", t, opts...)
	got := 0
	snk := graph.AddSink(g, "sink", checkInts(&got, want))
	graph.Connect(g, src.Out(""), tr.In(""))
	graph.Connect(g, tr.Out(""), snk.In(""))
	if _, err := g.Run(ctx); err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("%d frames reached the sink, want %d", got, n)
	}
	return nil
}

// graphChain measures frames/s through source → transform → sink, each a
// goroutine (SGN: about 5,600 frames/s, 178 µs per lockstep iteration).
func graphChain(ctx context.Context, cfg Config) (Result, error) {
	identity := graph.Map(func(_ context.Context, v int) (int, error) { return v, nil })
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		return runInts(ctx, n, identity, func(i int) int { return i })
	})
	return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, err
}

// graphProcessTransform measures frames/s through a transform in a worker
// process (SGN: 357 µs per frame). Each run starts the worker: the
// calibration makes runs long enough that the start weighs little.
func graphProcessTransform(ctx context.Context, cfg Config) (Result, error) {
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		return runInts(ctx, n, graphInc.New(struct{}{}), func(i int) int { return i + 1 }, graph.Place(graph.Process))
	})
	return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, err
}

// graphBlobSize is the size of the frames of graph/process-transform-1MiB.
const graphBlobSize = 1 << 20

// graphProcessBuffers measures bytes/s of 1 MiB frames of *shm.Buffer
// through a transform in a worker process: the source writes each frame
// into the arena (one memcpy), which then changes hands twice without a
// copy.
func graphProcessBuffers(ctx context.Context, cfg Config) (Result, error) {
	// Links of 8 frames keep both processes busy; the arena holds what
	// they can hold at once.
	arena, err := shm.NewSegmentPool(graphBlobSize, 48)
	if err != nil {
		return Result{}, err
	}
	defer arena.Close()
	blob := make([]byte, graphBlobSize)
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		g := graph.New(graph.BufferSize(8), graph.Arena(arena))
		src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[*shm.Buffer]) error {
			for range n {
				b, err := graph.NewBuffer(ctx, graphBlobSize)
				if err != nil {
					return err
				}
				copy(b.Bytes(), blob)
				if err := out.Emit("", graph.Frame[*shm.Buffer]{Data: b}); err != nil {
					return err
				}
			}
			return nil
		}))
		tr := graph.AddTransform(g, "touch", graphTouchBuffer.New(struct{}{}), graph.Place(graph.Process))
		got := 0
		snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
			if b := f.Data.Bytes(); len(b) != graphBlobSize || b[0] != 1 {
				return fmt.Errorf("frame %d: %d bytes, first %d", got, len(b), b[0])
			}
			got++
			return nil
		}))
		graph.Connect(g, src.Out(""), tr.In(""))
		graph.Connect(g, tr.Out(""), snk.In(""))
		if _, err := g.Run(ctx); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d frames reached the sink, want %d", got, n)
		}
		if st := arena.Stats(); st.Free != st.Count {
			return fmt.Errorf("after the run, %d of %d segments are not free", st.Count-st.Free, st.Count)
		}
		return nil
	})
	return Result{BytesPerSec: rate * graphBlobSize, Runs: runs.N, Spread: runs.Spread}, err
}

// graphProcessBlobs measures bytes/s of 1 MiB []byte frames through a
// transform in a worker process, both ways through the arena: a copy into
// it and one out of it each way, as for any numeric slice.
func graphProcessBlobs(ctx context.Context, cfg Config) (Result, error) {
	arena, err := shm.NewSegmentPool(graphBlobSize+4096, 32)
	if err != nil {
		return Result{}, err
	}
	defer arena.Close()
	blob := make([]byte, graphBlobSize)
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		g := graph.New(graph.BufferSize(4), graph.WorkerOptions(proc.Arena(arena)))
		src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[[]byte]) error {
			for range n {
				// The same bytes every frame, never changed: a frame is
				// shared, read-only, until every element is done with it.
				if err := out.Emit("", graph.Frame[[]byte]{Data: blob}); err != nil {
					return err
				}
			}
			return nil
		}))
		tr := graph.AddTransform(g, "touch", graphTouch.New(struct{}{}), graph.Place(graph.Process))
		got := 0
		snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[[]byte]) error {
			if len(f.Data) != graphBlobSize || f.Data[0] != 1 {
				return fmt.Errorf("frame %d: %d bytes, first %d", got, len(f.Data), f.Data[0])
			}
			got++
			return nil
		}))
		graph.Connect(g, src.Out(""), tr.In(""))
		graph.Connect(g, tr.Out(""), snk.In(""))
		if _, err := g.Run(ctx); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d frames reached the sink, want %d", got, n)
		}
		return nil
	})
	return Result{BytesPerSec: rate * graphBlobSize, Runs: runs.N, Spread: runs.Spread}, err
}

// graphDrain measures the time from a drain request to the end of a run
// whose endless source feeds a transform in a worker process through
// full links: what is in flight is processed and delivered first.
func graphDrain(ctx context.Context, cfg Config) (Result, error) {
	ns, runs, err := Repeat(cfg, func() (float64, error) {
		g := graph.New(graph.BufferSize(64))
		src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
			for i := 0; ; i++ {
				if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
					return err
				}
			}
		}))
		tr := graph.AddTransform(g, "transform", graphInc.New(struct{}{}), graph.Place(graph.Process))
		flowing := make(chan struct{})
		var once sync.Once
		got := 0
		snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[int]) error {
			if got++; got == 10000 {
				once.Do(func() { close(flowing) })
			}
			return nil
		}))
		graph.Connect(g, src.Out(""), tr.In(""))
		graph.Connect(g, tr.Out(""), snk.In(""))
		r, err := g.Start(ctx)
		if err != nil {
			return 0, err
		}
		select {
		case <-flowing:
		case <-r.Done():
			_, err := r.Wait()
			return 0, errors.Join(errors.New("the run ended before the drain"), err)
		}
		start := time.Now()
		r.Drain()
		st, err := r.Wait()
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if produced := st.Elements[0].FramesOut - 1; int64(got) != produced {
			return 0, fmt.Errorf("the source produced %d frames, the sink got %d", produced, got)
		}
		return float64(d), nil
	})
	return Result{Ns: ns, Runs: runs.N, Spread: runs.Spread}, err
}
