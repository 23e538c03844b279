package batch_test

import (
	"context"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
)

// trivial is a job whose indices do nothing: it measures what the batch
// machinery costs per index.
var trivial = batch.Define("ferry.batch.bench/trivial", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(n, func(_ context.Context, i int) (int, error) { return i, nil }),
		Sink:   batch.SinkFunc[int, int](func(_ context.Context, i int, items []int) (int, error) { return items[0], nil }),
	}, nil
})

// BenchmarkProcessTrivial runs b.N trivial indices through 2 worker
// processes (worker start included) and reports items/s.
func BenchmarkProcessTrivial(b *testing.B) { benchTrivial(b, batch.Processes(2)) }

// BenchmarkGoroutinesTrivial is the same in 2 goroutines.
func BenchmarkGoroutinesTrivial(b *testing.B) { benchTrivial(b, batch.Goroutines(2)) }

func benchTrivial(b *testing.B, backend batch.Backend, opts ...batch.Option) {
	b.ReportAllocs()
	res, err := trivial.Run(b.Context(), b.N, append([]batch.Option{batch.WithBackend(backend)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if res.Done != b.N {
		b.Fatalf("%v", res)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkProcessTrivialCheckpoint is BenchmarkProcessTrivial recording
// every index in an in-memory checkpoint (the cost of encoding and
// handing over records, not of a database).
func BenchmarkProcessTrivialCheckpoint(b *testing.B) {
	benchTrivial(b, batch.Processes(2), batch.WithCheckpoint(batchtest.NewCheckpoint()))
}
