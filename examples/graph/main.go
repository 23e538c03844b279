// Command graph is SGN's subprocess tutorial as a ferry element graph: a
// source of numbers in a goroutine, a transform that squares them in a
// worker process of its own, and a logging sink in a goroutine. Ctrl+C
// drains the graph: what the source produced still reaches the sink.
//
//	go run ./examples/graph
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/proc"
)

// Square squares the numbers of its frames and counts them: its state
// lives in the element, in the worker process, between frames. It is
// registered at package level so that the worker process (this program,
// run again) can make it by name.
var Square = graph.RegisterTransform("examples.square", func(struct{}) (graph.Transform[int, int], error) {
	return &square{}, nil
})

type square struct{ frames int }

func (s *square) Process(ctx context.Context, in graph.Frame[int], out graph.Emitter[int]) error {
	s.frames++
	return out.Emit("", graph.Frame[int]{Data: in.Data * in.Data, EOS: in.EOS})
}

// Flush runs at the end of the input, in the worker: it reports the count.
func (s *square) Flush(ctx context.Context, out graph.Emitter[int]) error {
	fmt.Printf("square (pid %d): %d frames\n", os.Getpid(), s.frames)
	return nil
}

func main() {
	proc.Main()  // a worker process serves Square here and never returns
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	if err := run(context.Background()); err != nil {
		if errors.Is(err, graph.ErrInterrupted) {
			os.Exit(130)
		}
		logs.Fatal(err)
	}
}

func run(ctx context.Context) error {
	g := graph.New(graph.HandleSignals())
	graph.AddSource(g, "numbers", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		for i := 1; i <= 10; i++ {
			if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
				return err
			}
		}
		return nil
	}), graph.Outputs("numbers"))
	graph.AddTransform(g, "square", Square.New(struct{}{}),
		graph.Inputs("input"), graph.Outputs("output"), graph.Place(graph.Process))
	graph.AddSink(g, "log", graph.SinkFunc(func(ctx context.Context, in graph.Frame[int]) error {
		fmt.Printf("sink received on %s: %d\n", in.Pad, in.Data)
		return nil
	}), graph.Inputs("result"))
	// SGN's link map: sink pad ← source pad.
	g.Link(map[string]string{
		"square:input": "numbers:numbers",
		"log:result":   "square:output",
	})
	fmt.Printf("main process %d\n%s", os.Getpid(), g.Dot())
	stats, err := g.Run(ctx)
	fmt.Println(stats)
	return err
}
