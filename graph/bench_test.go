package graph_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/graph"
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
