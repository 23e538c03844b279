// Command pipeline is a short tour of ferry's in-process engine, the
// pipeline package: a source, a concurrent stage that keeps its outputs in
// order, batches, two epochs, a failure budget, and the stats.
//
//	go run ./examples/pipeline
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/pipeline"
)

func main() {
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	if err := run(context.Background(), os.Stdout); err != nil {
		logs.Fatal(err)
	}
}

// errBadRecord stands for an item that cannot be processed.
var errBadRecord = errors.New("bad record")

// square is the stage function. It takes longer for small numbers, so that
// its calls finish out of order, drops multiples of 7 on purpose (ErrSkip:
// not a failure), and fails on 13.
func square(ctx context.Context, n int) (int, error) {
	select {
	case <-time.After(time.Duration(20-n) * 100 * time.Microsecond):
	case <-ctx.Done(): // the epoch was abandoned or the pipeline closed
		return 0, ctx.Err()
	}
	switch {
	case n%7 == 0:
		return 0, pipeline.ErrSkip
	case n == 13:
		return 0, fmt.Errorf("item %d: %w", n, errBadRecord)
	}
	return n * n, nil
}

func run(ctx context.Context, w io.Writer) error {
	numbers := make([]int, 20)
	for i := range numbers {
		numbers[i] = i + 1
	}

	// Describe the pipeline: nothing runs yet.
	//   source → square (4 at once, outputs in input order) → batches of 5
	src := pipeline.FromSlice(numbers, pipeline.Name("numbers"))
	squares := pipeline.Pipe(src, square, pipeline.Name("square"), pipeline.Concurrency(4), pipeline.Ordered())
	batches := pipeline.Aggregate(squares, 5, pipeline.Name("batch"))

	// Build starts it. Item 13 fails once per epoch: a budget of 2
	// failures lets both epochs through; each failure is logged and the
	// item dropped. Without MaxFailures the first failure would stop the
	// pipeline.
	p, err := pipeline.Build(pipeline.Sink(batches, 4),
		pipeline.MaxFailures(pipeline.Count(2))) // failures are logged through slog's default logger

	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer p.Close()

	// Each Epoch is one pass over the source. A failure that stops the
	// pipeline would come as the last error of the loop.
	for epoch := 1; epoch <= 2; epoch++ {
		for batch, err := range p.Epoch(ctx) {
			if err != nil {
				return fmt.Errorf("epoch %d: %w", epoch, err)
			}
			fmt.Fprintf(w, "epoch %d: batch %v\n", epoch, batch)
		}
	}

	fmt.Fprintf(w, "\n%d items failed\n\n%s", p.Stats().Failures, p.Stats())
	return nil
}
