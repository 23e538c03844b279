// Command runpipeline builds a whole loading pipeline inside a worker
// process with proc.RunPipeline, keeps it warm across epochs, breaks out of
// one epoch early and shows that the next one is still complete, then
// prints the worker's own stage stats.
//
//	go run ./examples/runpipeline
package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// Loader builds, in the worker, a pipeline that "decodes" n samples and
// batches them.
var Loader = proc.Pipeline("examples.loader", func(n int) (*pipeline.Config[[]string], error) {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	src := pipeline.FromSlice(ids, pipeline.Name("ids"))
	dec := pipeline.Pipe(src, func(_ context.Context, id int) (string, error) {
		return strings.Repeat("#", id%7+1), nil
	}, pipeline.Name("decode"), pipeline.Concurrency(2))
	batches := pipeline.Aggregate(dec, 10, pipeline.Name("batch"))
	return pipeline.Sink(batches, 4).With(pipeline.Continuous()), nil
})

func main() {
	proc.Main()
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	ctx := context.Background()
	it, err := proc.RunPipeline(ctx, Loader, 1000)
	if err != nil {
		logs.Fatal(err)
	}
	defer it.Close()
	for epoch := range 4 {
		samples, batches := 0, 0
		for b, err := range it.All(ctx) {
			if err != nil {
				logs.Fatal(err)
			}
			samples += len(b)
			batches++
			if epoch == 1 && batches == 3 {
				break // abandon this epoch: the next one is complete anyway
			}
		}
		fmt.Printf("epoch %d: %d samples in %d batches\n", epoch, samples, batches)
	}
	st, err := it.PipelineStats(ctx)
	if err != nil {
		logs.Fatal(err)
	}
	fmt.Printf("stats of the pipeline in worker pid %d:\n%v", it.PID(), st)
}
