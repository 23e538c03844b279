//go:build linux && !ferrynolinux

package graph_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/graph"
)

// TestProfileLabels: each element's goroutine carries its name as a pprof
// label, seen in a goroutine profile while it runs.
func TestProfileLabels(t *testing.T) {
	g := graph.New()
	inside := make(chan struct{})
	release := make(chan struct{})
	src := graph.AddSource(g, "numbers", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		return out.Emit("", graph.Frame[int]{Data: 1, EOS: true})
	}))
	snk := graph.AddSink(g, "slow-sink", graph.SinkFunc(func(ctx context.Context, in graph.Frame[int]) error {
		close(inside)
		<-release
		return nil
	}))
	graph.Connect(g, src.Out(""), snk.In(""))
	done := make(chan error, 1)
	go func() {
		_, err := g.Run(t.Context())
		done <- err
	}()
	<-inside
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := `"` + graph.ProfileLabel + `":"slow-sink"`; !strings.Contains(b.String(), want) {
		t.Fatalf("no goroutine labelled %s in the profile:\n%s", want, b.String())
	}
}

// labelKind emits, with each frame, the pprof label of its element as
// seen from the context it runs with.
var labelKind = graph.RegisterTransform("test.label", func(struct{}) (graph.Transform[int, int], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[int], out graph.Emitter[int]) error {
		v, _ := pprof.Label(ctx, graph.ProfileLabel)
		return out.Emit("", graph.Frame[int]{Data: in.Data, Meta: map[string]string{"label": v}, EOS: in.EOS})
	}), nil
})

// TestProfileLabelsInWorker: an element placed in a worker process runs
// under its name as a pprof label there too.
func TestProfileLabelsInWorker(t *testing.T) {
	g := graph.New()
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 3}))
	lb := graph.AddTransform(g, "labelled", labelKind.New(struct{}{}), graph.Place(graph.Process))
	sink := &collect{}
	snk := graph.AddSink(g, "collect", sink)
	graph.Connect(g, src.Out(""), lb.In(""))
	graph.Connect(g, lb.Out(""), snk.In(""))
	if _, err := g.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(sink.frames) == 0 {
		t.Fatal("no frames")
	}
	for _, f := range sink.frames {
		if f.Meta["label"] != "labelled" {
			t.Fatalf("frame %d ran with label %q, want the element's name", f.Data, f.Meta["label"])
		}
	}
}
