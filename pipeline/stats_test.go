package pipeline_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
)

// TestStatsExactAfterEachEpoch reads Stats as soon as each epoch ends: every
// item, and the end-of-epoch marker, must already be counted in every
// queue, however the last chunk raced the consumer.
func TestStatsExactAfterEachEpoch(t *testing.T) {
	const items, epochs = 100, 300
	for name, topology := range topologies {
		t.Run(name, func(t *testing.T) {
			s := topology(pipeline.FromSlice(seq(items)))
			p := build(t, pipeline.Sink(s, 1))
			ctx := context.Background()
			for e := int64(1); e <= epochs; e++ {
				n := 0
				for _, err := range p.Epoch(ctx) {
					if err != nil {
						t.Fatal(err)
					}
					n++
				}
				if n != items {
					t.Fatalf("epoch %d: %d items, want %d", e, n, items)
				}
				st := p.Stats()
				src, out := st.Queues[0], st.Queues[len(st.Queues)-1]
				if want := e * (items + 1); src.Items != want || out.Items != want {
					t.Fatalf("after epoch %d: queue %q counted %d items and queue %q %d, want %d each (%d items and a marker per epoch)",
						e, src.Name, src.Items, out.Name, out.Items, want, items)
				}
				if inv := st.Stages[0].Invocations; inv != e*items {
					t.Fatalf("after epoch %d: source invocations %d, want %d", e, inv, e*items)
				}
			}
		})
	}
}
