//go:build linux && !ferrynolinux

package graph_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

var benchInc = graph.RegisterTransform("test.bench.inc", func(struct{}) (graph.Transform[int, int], error) {
	return graph.Map(func(_ context.Context, v int) (int, error) { return v + 1, nil }), nil
})

// benchChain runs b.N frames through source → inc → sink, inc placed as p.
func benchChain(b *testing.B, p graph.Placement) {
	g := graph.New(graph.BufferSize(256))
	src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		for i := range b.N {
			if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
				return err
			}
		}
		return nil
	}))
	inc := graph.AddTransform(g, "inc", benchInc.New(struct{}{}), graph.Place(p))
	n := 0
	snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[int]) error {
		if f.Data != n+1 {
			b.Errorf("frame %d is %d", n, f.Data)
		}
		n++
		return nil
	}))
	graph.Connect(g, src.Out(""), inc.In(""))
	graph.Connect(g, inc.Out(""), snk.In(""))
	b.ResetTimer()
	if _, err := g.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if n != b.N {
		b.Fatalf("%d frames reached the sink, want %d", n, b.N)
	}
}

func BenchmarkChain3(b *testing.B)           { benchChain(b, graph.Goroutine) }
func BenchmarkProcessTransform(b *testing.B) { benchChain(b, graph.Process) }

var benchTouch = graph.RegisterTransform("test.bench.touch", func(struct{}) (graph.Transform[[]byte, []byte], error) {
	return graph.Map(func(_ context.Context, b []byte) ([]byte, error) {
		b[0]++
		return b, nil
	}), nil
})

// BenchmarkProcessTransform1MiB runs 1 MiB frames through a transform in
// a worker process, both ways through the arena.
func BenchmarkProcessTransform1MiB(b *testing.B) {
	arena, err := shm.NewSegmentPool(1<<20+4096, 32)
	if err != nil {
		b.Fatal(err)
	}
	defer arena.Close()
	blob := make([]byte, 1<<20)
	g := graph.New(graph.BufferSize(4), graph.WorkerOptions(proc.Arena(arena)))
	src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[[]byte]) error {
		for range b.N {
			if err := out.Emit("", graph.Frame[[]byte]{Data: blob}); err != nil {
				return err
			}
		}
		return nil
	}))
	tr := graph.AddTransform(g, "touch", benchTouch.New(struct{}{}), graph.Place(graph.Process))
	snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[[]byte]) error {
		if len(f.Data) != 1<<20 || f.Data[0] != 1 {
			b.Errorf("a frame of %d bytes, first %d", len(f.Data), f.Data[0])
		}
		return nil
	}))
	graph.Connect(g, src.Out(""), tr.In(""))
	graph.Connect(g, tr.Out(""), snk.In(""))
	b.SetBytes(1 << 20)
	b.ResetTimer()
	if _, err := g.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
}

var benchTouchBuffer = graph.RegisterTransform("test.bench.touch-buffer", func(struct{}) (graph.Transform[*shm.Buffer, *shm.Buffer], error) {
	return graph.Map(func(_ context.Context, b *shm.Buffer) (*shm.Buffer, error) {
		b.Bytes()[0]++
		return b, nil
	}), nil
})

// BenchmarkProcessTransformBuffer1MiB runs 1 MiB frames of *shm.Buffer
// through a transform in a worker process: written once into the arena by
// the source, then passed on without a copy.
func BenchmarkProcessTransformBuffer1MiB(b *testing.B) {
	arena, err := shm.NewSegmentPool(1<<20, 32)
	if err != nil {
		b.Fatal(err)
	}
	defer arena.Close()
	blob := make([]byte, 1<<20)
	g := graph.New(graph.BufferSize(benchBuf), graph.Arena(arena))
	src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[*shm.Buffer]) error {
		for range b.N {
			buf, err := graph.NewBuffer(ctx, len(blob))
			if err != nil {
				return err
			}
			copy(buf.Bytes(), blob)
			if err := out.Emit("", graph.Frame[*shm.Buffer]{Data: buf}); err != nil {
				return err
			}
		}
		return nil
	}))
	tr := graph.AddTransform(g, "touch", benchTouchBuffer.New(struct{}{}), graph.Place(graph.Process))
	snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
		if d := f.Data.Bytes(); len(d) != 1<<20 || d[0] != 1 {
			b.Errorf("a frame of %d bytes, first %d", len(d), d[0])
		}
		return nil
	}))
	graph.Connect(g, src.Out(""), tr.In(""))
	graph.Connect(g, tr.Out(""), snk.In(""))
	b.SetBytes(1 << 20)
	b.ResetTimer()
	if _, err := g.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
}

var benchBuf = 8
