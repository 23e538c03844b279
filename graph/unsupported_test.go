//go:build !linux || ferrynolinux

package graph_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/proc"
)

var unsupportedSquare = graph.RegisterTransform("unsupported.square", func(struct{}) (graph.Transform[int, int], error) {
	return graph.Map(func(_ context.Context, v int) (int, error) { return v * v, nil }), nil
})

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// Without Linux, a graph runs its goroutine elements as usual, and one with
// an element placed in a worker process fails with proc.ErrUnsupported.
func TestUnsupportedPlatform(t *testing.T) {
	for _, place := range []graph.Placement{graph.Goroutine, graph.Process} {
		g := graph.New()
		numbers := graph.AddSource(g, "numbers", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
			for i := 1; i <= 3; i++ {
				if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
					return err
				}
			}
			return nil
		}))
		square := graph.AddTransform(g, "square", unsupportedSquare.New(struct{}{}), graph.Place(place))
		sum := 0
		total := graph.AddSink(g, "sum", graph.SinkFunc(func(_ context.Context, f graph.Frame[int]) error {
			sum += f.Data
			return nil
		}))
		graph.Connect(g, numbers.Out(""), square.In(""))
		graph.Connect(g, square.Out(""), total.In(""))
		_, err := g.Run(context.Background())
		switch place {
		case graph.Goroutine:
			if err != nil || sum != 14 {
				t.Errorf("in a goroutine: sum %d, %v; want 14", sum, err)
			}
		case graph.Process:
			if !errors.Is(err, proc.ErrUnsupported) || !strings.Contains(err.Error(), "square") {
				t.Errorf("in a process: %v, want proc.ErrUnsupported naming the element", err)
			}
		}
	}
}
