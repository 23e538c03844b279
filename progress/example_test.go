package progress_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/progress"
)

// Upper is a batch job: the upper-case version of each of its words.
var Upper = batch.Define("example.upper", func(words []string) (*batch.Job[string, string], error) {
	return &batch.Job[string, string]{
		Source: batch.FromFunc(len(words), func(_ context.Context, i int) (string, error) { return words[i], nil }),
		Filters: []batch.Filter[string]{batch.Map("upper", func(_ context.Context, w string) (string, error) {
			return strings.ToUpper(w), nil
		})},
		Sink: batch.SinkFunc[string, string](func(_ context.Context, _ int, out []string) (string, error) {
			return strings.Join(out, ""), nil
		}),
		Version: "1",
	}, nil
})

// A batch job's progress on standard error: bars on a terminal, with the
// run's log lines above them; a line every few seconds elsewhere.
func ExampleNewBatch() {
	display := progress.NewBatch(os.Stderr)
	logger := slog.New(slog.NewTextHandler(display.LogWriter(os.Stderr), nil))
	res, err := Upper.Run(context.Background(), []string{"a", "b", "c"},
		batch.WithBackend(batch.Goroutines(2)), batch.Events(display), batch.Logger(logger))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Done, "done")
	// Output: 3 done
}

// A pipeline drawn live on standard error: each stage's items/s, busy
// workers and input queue, the bottleneck marked.
func ExampleNewPipeline() {
	view := progress.NewPipeline(os.Stderr)
	logger := slog.New(slog.NewTextHandler(view.LogWriter(os.Stderr), nil))
	nums := pipeline.FromSlice([]int{1, 2, 3, 4, 5, 6})
	squares := pipeline.Pipe(nums, func(_ context.Context, n int) (int, error) { return n * n, nil },
		pipeline.Name("square"), pipeline.Concurrency(2))
	p, err := pipeline.Build(pipeline.Sink(squares, 4), pipeline.WithHooks(view.Hooks()), pipeline.Logger(logger))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	view.Watch(p)
	defer view.Stop()
	sum := 0
	for epoch := range 2 {
		view.SetStatus(fmt.Sprintf("epoch %d/2", epoch+1))
		for n, err := range p.Epoch(context.Background()) {
			if err != nil {
				fmt.Println(err)
				return
			}
			sum += n
		}
	}
	fmt.Println("sum", sum)
	// Output: sum 182
}
