// Package graphs is the README's example of an element graph.
package graphs

import (
	"context"
	"fmt"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/proc"
)

type square struct{}

func (*square) Process(_ context.Context, in graph.Frame[int], out graph.Emitter[int]) error {
	return out.Emit("", graph.Frame[int]{Data: in.Data * in.Data, EOS: in.EOS})
}

func numbers(ctx context.Context, out graph.Emitter[int]) error {
	return out.Emit("", graph.Frame[int]{Data: 1, EOS: true})
}

func logFrame(_ context.Context, in graph.Frame[int]) error { return nil }

// The example's context.
var ctx = context.Background()

// readme:begin graph
var Square = graph.RegisterTransform("example.square",
	func(struct{}) (graph.Transform[int, int], error) { return &square{}, nil })

func main() {
	proc.Main()
	g := graph.New(graph.HandleSignals()) // Ctrl+C drains, a second one stops
	src := graph.AddSource(g, "numbers", graph.SourceFunc(numbers))
	sq := graph.AddTransform(g, "square", Square.New(struct{}{}), graph.Place(graph.Process))
	out := graph.AddSink(g, "log", graph.SinkFunc(logFrame))
	graph.Connect(g, src.Out(""), sq.In("")) // pad types checked by the compiler
	graph.Connect(g, sq.Out(""), out.In("")) // or g.Link(map[string]string{...}), g.LinkByName()
	stats, err := g.Run(ctx)                 // per-element stats; errors name element, pad, frame
	fmt.Println(stats, err, g.Dot())         // a table; the graph in Graphviz's DOT
}

// readme:end

// Main keeps the example from being dead code.
var Main = main
