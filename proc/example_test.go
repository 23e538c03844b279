//go:build linux && !ferrynolinux

package proc_test

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Words yields the words of a text; it runs in a worker process.
var Words = proc.Iter("example.words", func(_ context.Context, text string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, w := range strings.Fields(text) {
			if !yield(w, nil) {
				return
			}
		}
	}
})

// Iterate runs an iterable in a worker process; every pass reuses it.
func ExampleIterate() {
	ctx := context.Background()
	it, err := proc.Iterate(ctx, Words, "to be or not to be")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer it.Close()
	for epoch := range 2 {
		var words []string
		for w, err := range it.All(ctx) {
			if err != nil {
				fmt.Println(err)
				return
			}
			words = append(words, w)
		}
		fmt.Println(epoch, words)
	}
	// Output:
	// 0 [to be or not to be]
	// 1 [to be or not to be]
}

// Upper is a whole pipeline built and run in a worker process.
var Upper = proc.Pipeline("example.upper", func(words []string) (*pipeline.Config[string], error) {
	src := pipeline.FromSlice(words)
	up := pipeline.Pipe(src, func(_ context.Context, w string) (string, error) { return strings.ToUpper(w), nil })
	return pipeline.Sink(up, 16).With(pipeline.Continuous()), nil
})

// RunPipeline keeps a pipeline warm in a worker; each pass is one epoch.
func ExampleRunPipeline() {
	ctx := context.Background()
	it, err := proc.RunPipeline(ctx, Upper, []string{"ferry", "moves", "data"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer it.Close()
	for range 2 {
		var words []string
		for w, err := range it.All(ctx) {
			if err != nil {
				fmt.Println(err)
				return
			}
			words = append(words, w)
		}
		fmt.Println(strings.Join(words, " "))
	}
	// Output:
	// FERRY MOVES DATA
	// FERRY MOVES DATA
}

// RunningMean keeps a running mean of the numbers it is sent, in a worker
// process, and sends it back every Every numbers and at the end.
var RunningMean = proc.Duplex("example.mean", func(ctx context.Context, every int, in iter.Seq2[float64, error], out func(float64) error) error {
	var sum float64
	n := 0
	for v, err := range in {
		if err != nil {
			return err
		}
		sum += v
		if n++; n%every == 0 {
			if err := out(sum / float64(n)); err != nil {
				return err
			}
		}
	}
	return out(sum / float64(n))
})

func ExampleOpenDuplex() {
	ctx := context.Background()
	d, err := proc.OpenDuplex(ctx, RunningMean, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	go func() { // the inputs, from one goroutine; the outputs, from another
		for _, v := range []float64{1, 3, 5, 7, 9} {
			if d.Send(ctx, v) != nil {
				return
			}
		}
		d.CloseSend()
	}()
	for mean, err := range d.All(ctx) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(mean)
	}
	// Output:
	// 2
	// 4
	// 5
}

// WordLen is a function that worker processes of a Pool run.
var WordLen = proc.Func("example.word-len", func(_ context.Context, w string) (int, error) {
	if w == "" {
		return 0, fmt.Errorf("an empty word: %w", pipeline.ErrSkip) // skips the item, as in a goroutine
	}
	return len(w), nil
})

// NewPool starts worker processes that run a registered function; Call
// runs one call in one of them, and is itself a pipeline stage function.
func ExampleNewPool() {
	ctx := context.Background()
	pool, err := proc.NewPool(ctx, WordLen, proc.Workers(2), proc.CallTimeout(10*time.Second), proc.Retries(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	n, err := pool.Call(ctx, "ferry") // one call
	fmt.Println(n, err)

	lens := pipeline.Pipe(pipeline.FromSlice([]string{"to", "", "be"}), pool.Call, pipeline.Concurrency(4), pipeline.Ordered())
	p, err := pipeline.Build(pipeline.Sink(lens, 4))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for n, err := range p.Epoch(ctx) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(n)
	}
	// Output:
	// 5 <nil>
	// 2
	// 2
}

// Blobs yields n blocks of 1 MiB, each filled with its number; in a
// worker with an arena each is written into a segment of shared memory.
var Blobs = proc.Iter("example.blobs", func(_ context.Context, n int) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for i := range n {
			if !yield(bytes.Repeat([]byte{byte(i)}, 1<<20), nil) {
				return
			}
		}
	}
})

// IterateShared hands the consumer views of the arena's segments instead of
// copies: read each, then Release it so that the worker can reuse it.
func ExampleIterateShared() {
	ctx := context.Background()
	arena, err := shm.NewSegmentPool(1<<20, 4) // 4 segments of 1 MiB
	if err != nil {
		fmt.Println(err)
		return
	}
	defer arena.Close()
	views, err := proc.IterateShared(ctx, Blobs, 3, proc.Arena(arena))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer views.Close()
	for v, err := range views.All(ctx) {
		if err != nil {
			fmt.Println(err)
			return
		}
		b := v.Bytes() // valid until Release
		fmt.Println(len(b), b[0])
		v.Release()
	}
	// Output:
	// 1048576 0
	// 1048576 1
	// 1048576 2
}
