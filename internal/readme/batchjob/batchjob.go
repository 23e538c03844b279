// Package batchjob is the README's example of a batch job.
package batchjob

//lint:file-ignore SA4006 a README snippet shows the calls, not what is done with every error

import (
	"context"
	"os"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
	"github.com/ferrypipe/ferry/batch/jetstream"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/progress"
)

// Params are the job's parameters.
type Params struct{ Inputs []string }

// Frame is one item of the job.
type Frame struct{ Values []float64 }

// Stats is the job's accumulated state.
type Stats struct{ Frames int }

func readInput(_ context.Context, i int) (Frame, error)              { return Frame{}, nil }
func calibrate(_ context.Context, f Frame) (Frame, error)            { return f, nil }
func nonEmpty(_ context.Context, f Frame) (bool, error)              { return len(f.Values) > 0, nil }
func newStats() Stats                                                { return Stats{} }
func addStats(s Stats, _ Frame) (Stats, error)                       { s.Frames++; return s, nil }
func mergeStats(a, b Stats) Stats                                    { return Stats{a.Frames + b.Frames} }
func writeFrame(_ context.Context, i int, _ []Frame) (string, error) { return "", nil }

// The example's context and parameters.
var ctx, params = context.Background(), Params{}

// readme:begin batch
var Convert = batch.Define("convert", func(p Params) (*batch.Job[Frame, string], error) {
	return &batch.Job[Frame, string]{
		Source:       batch.FromFunc(len(p.Inputs), readInput), // func(ctx, i) (Frame, error)
		Filters:      []batch.Filter[Frame]{batch.Map("calibrate", calibrate), batch.Keep("non-empty", nonEmpty)},
		Accumulators: []batch.Accumulator[Frame]{batch.Accumulate("stats", newStats, addStats, mergeStats)},
		Sink:         batch.SinkFunc[Frame, string](writeFrame), // returns the path it wrote
		Version:      "1",                                       // change it when the output changes
	}, nil
})

func main() {
	proc.Main()
	cp, err := checkpoint.Open("convert.ckpt") // SQLite; Run closes it
	res, err := Convert.Run(ctx, params,
		batch.WithBackend(batch.Processes(4)), // or batch.Goroutines(n), batch.Sequential()
		batch.Retries(2), batch.Timeout(time.Minute), batch.ContinueOnError(),
		batch.WithCheckpoint(cp), batch.Resume(), // skip what an earlier run finished
		batch.Events(progress.NewBatch(os.Stderr))) // bars on a terminal, lines otherwise
	stats, err := batch.State[Stats](res, "stats") // merged over every successful index
	// readme:hide
	_, _ = stats, err
}

// readme:end

func jetstreamLocal() error {
	// readme:begin jetstream-local
	res, err := Convert.Run(ctx, params, batch.WithBackend(jetstream.Local(4)))
	// readme:end
	_ = res
	return err
}

// Main and JetstreamLocal keep the examples from being dead code.
var (
	Main           = main
	JetstreamLocal = jetstreamLocal
)
