package graph_test

import (
	"context"
	"fmt"

	"github.com/ferrypipe/ferry/graph"
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
