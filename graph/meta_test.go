//go:build linux && !ferrynolinux

package graph_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/meta"
)

// tenantKind emits, for each frame, its element's "tenant" metadata as
// the frame's Meta.
var tenantKind = graph.RegisterTransform("test.tenant", func(struct{}) (graph.Transform[int, int], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[int], out graph.Emitter[int]) error {
		v, _ := meta.Get(ctx, "tenant")
		return out.Emit("", graph.Frame[int]{Data: in.Data, Meta: map[string]string{"tenant": v}, EOS: in.EOS})
	}), nil
})

// TestMetadataReachesElements: the metadata of Run's context is in the
// context of every element call, in a goroutine and in a worker process.
func TestMetadataReachesElements(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		g := graph.New(graph.DefaultPlacement(p))
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 10}))
		tn := graph.AddTransform(g, "tenant", tenantKind.New(struct{}{}))
		sink := &collect{}
		snk := graph.AddSink(g, "collect", sink)
		graph.Connect(g, src.Out(""), tn.In(""))
		graph.Connect(g, tn.Out(""), snk.In(""))
		if _, err := g.Run(meta.With(t.Context(), "tenant", "acme")); err != nil {
			t.Fatal(err)
		}
		if len(sink.frames) != 10 {
			t.Fatalf("%d frames, want 10", len(sink.frames))
		}
		for _, f := range sink.frames {
			if f.Meta["tenant"] != "acme" {
				t.Fatalf("frame %d: tenant %q, want acme", f.Data, f.Meta["tenant"])
			}
		}
	})
}
