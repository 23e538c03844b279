// Package arena is the README's example of shared memory.
package arena

//lint:file-ignore SA4006 a README snippet shows the calls, not what is done with every error

import (
	"context"
	"iter"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

var (
	Samples = proc.Iter("readme.samples", func(_ context.Context, n int) iter.Seq2[Sample, error] {
		return func(yield func(Sample, error) bool) {
			for range n {
				if !yield(Sample{Name: "x", Pixels: make([]byte, 1<<20)}, nil) {
					return
				}
			}
		}
	})
	Augment = proc.Func("readme.augment", func(_ context.Context, s Sample) (Sample, error) { return s, nil })
	Images  = proc.Iter("readme.images", func(_ context.Context, n int) iter.Seq2[[]byte, error] {
		return func(yield func([]byte, error) bool) { yield(make([]byte, n), nil) }
	})
	Score = proc.Func("readme.score", func(_ context.Context, x []float32) (float32, error) { return 0, nil })

	LoadModel = proc.Init("readme.load-model", func(context.Context) error { return nil })
)

func use([]byte) {}

// readme:begin arena
type Sample struct { // no change to your types
	Name   string
	Pixels []byte // Pixels and Emb go through the arena
	Emb    []float32
}

func load(ctx context.Context, args int) error {
	arena, err := shm.NewSegmentPool(8<<20, 16, shm.AcquireTimeout(time.Minute)) // 16 segments of 8 MiB
	if err != nil {
		return err
	}
	defer arena.Close()

	it, err := proc.Iterate(ctx, Samples, args, proc.Arena(arena)) // Samples from the workers
	pool, err := proc.NewPool(ctx, Augment, proc.Arena(arena))     // inputs and outputs, both ways

	views, err := proc.IterateShared(ctx, Images, args, proc.Arena(arena)) // zero-copy: *shm.View items
	for v, err := range views.All(ctx) {
		if err != nil {
			return err
		}
		use(v.Bytes()) // or v.Float32s(), v.Shape()
		v.Release()
	}
	// readme:hide
	_, _ = it, pool
	// readme:hide
	return err
}

// readme:end

func constants(ctx context.Context, data []byte) error {
	// readme:begin constants
	weights, err := shm.Share("weights", data) // read-only in every process
	if err != nil {
		return err
	}
	defer weights.Close() // after the pool
	pool, err := proc.NewPool(ctx, Score, proc.Constants(weights), proc.Initializers(LoadModel))
	// in a worker: c, ok := shm.Lookup("weights"); w := shm.Float32s(c.Bytes())
	// readme:end
	_ = pool
	return err
}

// Load and Constants keep the examples from being dead code.
var (
	Load      = load
	Constants = constants
)
