package jetstream_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/jetstream"
	"github.com/ferrypipe/ferry/meta"
)

// tenantJob's sink returns the "tenant" of its context's metadata.
var tenantJob = batch.Define("jetstream.test/tenant", func(n int) (*batch.Job[int, string], error) {
	return &batch.Job[int, string]{
		Source: batch.FromFunc(n, func(ctx context.Context, i int) (int, error) { return i, nil }),
		Sink: batch.SinkFunc[int, string](func(ctx context.Context, _ int, _ []int) (string, error) {
			v, _ := meta.Get(ctx, "tenant")
			return v, nil
		}),
	}, nil
})

// TestMetadataReachesWorkers: the metadata of Run's context travels with
// each unit to the worker processes, into the context of every index.
func TestMetadataReachesWorkers(t *testing.T) {
	ctx := meta.With(t.Context(), "tenant", "acme")
	res, err := tenantJob.Run(ctx, 50, batch.WithBackend(jetstream.Local(2)))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res.Indices {
		if x.Output != "acme" {
			t.Fatalf("index %d (on %s): tenant %q, want acme", x.Index, x.Worker, x.Output)
		}
	}
}
