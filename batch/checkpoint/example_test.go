package checkpoint_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
)

// SquareParams are the parameters of Square: its inputs are the files
// Dir/0 … Dir/N-1, each holding a number.
type SquareParams struct {
	Dir string
	N   int
}

// Square reads each input file and "writes" the square of its number.
var Square = batch.Define("checkpoint-example.square", func(p SquareParams) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(p.N, func(_ context.Context, i int) (int, error) {
			b, err := os.ReadFile(filepath.Join(p.Dir, strconv.Itoa(i)))
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(string(b))
		}),
		Sink: batch.SinkFunc[int, int](func(_ context.Context, i int, items []int) (int, error) {
			return items[0] * items[0], nil
		}),
	}, nil
})

// A run records every finished index in the checkpoint; after a failure
// (or a crash, or Ctrl+C), a run with Resume runs only what did not
// succeed. Here an input is corrupt, gets fixed, and the second run
// processes it alone.
func Example() {
	dir, err := os.MkdirTemp("", "checkpoint-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	for i, s := range []string{"0", "1", "two", "3", "4"} {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte(s), 0o644); err != nil {
			fmt.Println(err)
			return
		}
	}
	params := SquareParams{Dir: dir, N: 5}
	path := filepath.Join(dir, "square.ckpt")

	run := func(opts ...batch.Option) {
		cp, err := checkpoint.Open(path)
		if err != nil {
			fmt.Println(err)
			return
		}
		// Run closes the checkpoint when it ends.
		opts = append(opts, batch.WithCheckpoint(cp), batch.ContinueOnError(), batch.Logger(slog.New(slog.DiscardHandler)))
		res, err := Square.Run(context.Background(), params, opts...)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("done %d (resumed %d), failed %d:", res.Done, res.Resumed, res.Failed)
		for _, x := range res.Indices {
			fmt.Printf(" %d", x.Output)
		}
		fmt.Println()
	}
	run()
	if err := os.WriteFile(filepath.Join(dir, "2"), []byte("2"), 0o644); err != nil {
		fmt.Println(err)
		return
	}
	run(batch.Resume())
	// Output:
	// done 4 (resumed 0), failed 1: 0 1 0 9 16
	// done 5 (resumed 4), failed 0: 0 1 4 9 16
}
