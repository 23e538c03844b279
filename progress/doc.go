// Package progress draws the progress of ferry's batch jobs and pipelines
// on a terminal, and writes plain lines elsewhere.
//
// Batch is a batch.Observer: pass it to a run with batch.Events. Pipeline
// watches a running pipeline (through pipeline.WithHooks and its Stats) and
// shows, live, each stage's items per second, how busy its workers are and
// how full its input queue is, with the bottleneck marked.
//
// On a terminal both draw bars that stay at the bottom of the screen. Log
// lines written to the terminal directly would tear them: write logs
// through LogWriter instead, which puts each line above the bars while they
// are drawn, and passes it on unchanged otherwise:
//
//	display := progress.NewBatch(os.Stderr)
//	logger := slog.New(slog.NewTextHandler(display.LogWriter(os.Stderr), nil))
//	res, err := job.Run(ctx, params, batch.Events(display), batch.Logger(logger))
//
// The bars are as wide as the terminal, or 80 columns (see Width) when its
// size is unknown. Elsewhere (a file, a pipe, a CI log) a line is written
// every few seconds (see Interval).
//
// This package is apart from batch and pipeline so that a program that
// shows no progress does not link the terminal libraries it uses.
package progress
