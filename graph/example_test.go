//go:build linux && !ferrynolinux

package graph_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/shm"
)

// A source, a transform and a sink, each in a goroutine, linked by their
// default pads ("out" and "in").
func Example() {
	g := graph.New()
	numbers := graph.AddSource(g, "numbers", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		for i := 1; i <= 3; i++ {
			if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
				return err
			}
		}
		return nil
	}))
	double := graph.AddTransform(g, "double", graph.Map(func(_ context.Context, v int) (int, error) { return 2 * v, nil }))
	print := graph.AddSink(g, "print", graph.SinkFunc(func(_ context.Context, f graph.Frame[int]) error {
		fmt.Println(f.Seq, f.Data)
		return nil
	}))
	graph.Connect(g, numbers.Out(""), double.In(""))
	graph.Connect(g, double.Out(""), print.In(""))
	if _, err := g.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 0 2
	// 1 4
	// 2 6
}

// Cube is a transform registered at package level, so that a worker
// process can make it by name.
var Cube = graph.RegisterTransform("example.cube", func(struct{}) (graph.Transform[int, int], error) {
	return graph.Map(func(_ context.Context, v int) (int, error) { return v * v * v, nil }), nil
})

// The same element in a worker process: only its placement changes. The
// program (here, the test binary) calls proc.Main first in main (TestMain).
func Example_process() {
	g := graph.New()
	numbers := graph.AddSource(g, "numbers", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		for i := 1; i <= 3; i++ {
			if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
				return err
			}
		}
		return nil
	}))
	cube := graph.AddTransform(g, "cube", Cube.New(struct{}{}), graph.Place(graph.Process))
	print := graph.AddSink(g, "print", graph.SinkFunc(func(_ context.Context, f graph.Frame[int]) error {
		fmt.Println(f.Data)
		return nil
	}))
	graph.Connect(g, numbers.Out(""), cube.In(""))
	graph.Connect(g, cube.Out(""), print.In(""))
	st, err := g.Run(context.Background())
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(st.Elements[1].Placement, st.Elements[1].FramesOut)
	// Output:
	// 1
	// 8
	// 27
	// process 4
}

// Two detectors' streams, combined in steps matched by time: where one
// has no frame, the step holds a Gap.
func ExampleAddAligned() {
	g := graph.New()
	stream := func(times ...int64) graph.Source[float64] {
		return graph.SourceFunc(func(ctx context.Context, out graph.Emitter[float64]) error {
			for _, t := range times {
				if err := out.Emit("", graph.Frame[float64]{Data: float64(t), Time: t}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	h1 := graph.AddSource(g, "H1", stream(0, 10, 20))
	l1 := graph.AddSource(g, "L1", stream(0, 20))
	coinc := graph.AddAlignedSink(g, "coincidence", graph.AlignedSinkFunc(func(_ context.Context, step []graph.Frame[float64]) error {
		fmt.Printf("t=%d H1 gap=%v L1 gap=%v\n", step[0].Time, step[0].Gap, step[1].Gap)
		return nil
	}), graph.AlignByTime, graph.Inputs("H1", "L1"))
	graph.Connect(g, h1.Out(""), coinc.In("H1"))
	graph.Connect(g, l1.Out(""), coinc.In("L1"))
	if _, err := g.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// t=0 H1 gap=false L1 gap=false
	// t=10 H1 gap=false L1 gap=true
	// t=20 H1 gap=false L1 gap=false
}

// Upper changes a Buffer frame in place when it holds the only reference,
// and passes it on: in a worker process, the segment goes back to the
// parent as it is.
var Upper = graph.RegisterTransform("example.upper", func(struct{}) (graph.Transform[*shm.Buffer, *shm.Buffer], error) {
	return graph.Map(func(ctx context.Context, b *shm.Buffer) (*shm.Buffer, error) {
		if !b.Unique() { // fanned out: others read it too
			c, err := graph.NewBuffer(ctx, b.Len())
			if err != nil {
				return nil, err
			}
			copy(c.Bytes(), b.Bytes())
			b = c
		}
		copy(b.Bytes(), bytes.ToUpper(b.Bytes()))
		return b, nil
	}), nil
})

// Frames of *shm.Buffer through a transform in a worker process: each is
// written once into the graph's arena by the source, and crosses to the
// worker and back without a copy.
func ExampleNewBuffer() {
	arena, err := shm.NewSegmentPool(4096, 8)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer arena.Close()
	g := graph.New(graph.Arena(arena))
	words := graph.AddSource(g, "words", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[*shm.Buffer]) error {
		for _, w := range []string{"ferry", "moves", "bytes"} {
			b, err := graph.NewBuffer(ctx, len(w))
			if err != nil {
				return err
			}
			copy(b.Bytes(), w)
			if err := out.Emit("", graph.Frame[*shm.Buffer]{Data: b}); err != nil {
				return err
			}
		}
		return nil
	}))
	upper := graph.AddTransform(g, "upper", Upper.New(struct{}{}), graph.Place(graph.Process))
	print := graph.AddSink(g, "print", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
		fmt.Println(string(f.Data.Bytes())) // the graph releases it when Consume returns
		return nil
	}))
	graph.Connect(g, words.Out(""), upper.In(""))
	graph.Connect(g, upper.Out(""), print.In(""))
	if _, err := g.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	fmt.Println("segments free:", arena.Stats().Free == arena.Count())
	// Output:
	// FERRY
	// MOVES
	// BYTES
	// segments free: true
}
