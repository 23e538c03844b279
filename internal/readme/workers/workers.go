// Package workers is the README's example of worker processes.
package workers

//lint:file-ignore SA4006 a README snippet shows the calls, not what is done with every error

import (
	"context"
	"iter"
	"strings"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

func decode(_ context.Context, path string) ([]byte, error) { return []byte(path), nil }

func split(_ context.Context, doc []byte) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, page := range strings.Fields(string(doc)) {
			if !yield(page, nil) {
				return
			}
		}
	}
}

func readShards(_ context.Context, dir string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) { yield(dir+"/0", nil) }
}

func buildLoader(dir string) (*pipeline.Config[string], error) {
	return pipeline.Sink(pipeline.FromSlice([]string{dir}), 1), nil
}

// The example's context and arguments.
var ctx, args = context.Background(), "shards"

// readme:begin workers
var Decode = proc.Func("decode", decode)          // func(ctx, In) (Out, error)
var Split = proc.FlatFunc("split", split)         // func(ctx, In) iter.Seq2[Out, error]
var Shards = proc.Iter("shards", readShards)      // func(ctx, Args) iter.Seq2[T, error]
var Loader = proc.Pipeline("loader", buildLoader) // func(Args) (*pipeline.Config[T], error)

func main() {
	proc.Main()
	it, err := proc.Iterate(ctx, Shards, args, proc.BufferSize(64)) // a pipeline.Source, one pass per epoch
	pool, err := proc.NewPool(ctx, Decode, proc.Workers(4), proc.CallTimeout(10*time.Second))
	dec := pipeline.Pipe(pipeline.From(it), pool.Call, pipeline.Concurrency(16))
	flat, err := proc.NewFlatPool(ctx, Split, proc.Workers(2), proc.MemoryLimit(1<<30))
	pages := pipeline.FlatPipe(dec, flat.Call)     // outputs stream back as yielded
	lp, err := proc.RunPipeline(ctx, Loader, args) // a whole pipeline, warm across epochs
	// readme:hide
	_, _, _ = pages, lp, err
}

// readme:end

// Main is main, so that the example is not dead code.
var Main = main
