package batch_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/meta"
)

// tenantJob's sink returns the "tenant" of its context's metadata.
var tenantJob = batch.Define("ferry.batch_test/tenant", func(n int) (*batch.Job[int, string], error) {
	return &batch.Job[int, string]{
		Source: batch.FromFunc(n, func(ctx context.Context, i int) (int, error) { return i, nil }),
		Sink: batch.SinkFunc[int, string](func(ctx context.Context, _ int, _ []int) (string, error) {
			v, _ := meta.Get(ctx, "tenant")
			return v, nil
		}),
	}, nil
})

// TestMetadataReachesIndices: the metadata of Run's context is in the
// context of every index, whatever the backend (in worker processes too).
func TestMetadataReachesIndices(t *testing.T) {
	for _, b := range []batch.Backend{batch.Sequential(), batch.Goroutines(2), batch.Processes(2)} {
		t.Run(b.String(), func(t *testing.T) {
			if b.String() == batch.Processes(2).String() {
				needsLinux(t)
			}
			ctx := meta.With(t.Context(), "tenant", "acme")
			res, err := tenantJob.Run(ctx, 20, batch.WithBackend(b))
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range res.Indices {
				if x.Output != "acme" {
					t.Fatalf("index %d: tenant %q, want acme", x.Index, x.Output)
				}
			}
		})
	}
}
