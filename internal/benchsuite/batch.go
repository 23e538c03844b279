package benchsuite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
	"github.com/ferrypipe/ferry/batch/jetstream"
)

// Indexed batch jobs of trivial items through 2 worker processes, without
// and with a SQLite checkpoint.
func init() {
	Register(Benchmark{Name: "batch/process-trivial", Run: batchTrivial(false)})
	Register(Benchmark{Name: "batch/process-trivial-checkpoint", Run: batchTrivial(true)})
	Register(Benchmark{Name: "batch/jetstream-trivial", Run: batchJetStream})
	Register(Benchmark{Name: "batch/jetstream-1ms-2workers", Run: batchJetStreamSleep(2)})
	Register(Benchmark{Name: "batch/jetstream-1ms-4workers", Run: batchJetStreamSleep(4)})
}

// SleepJob is a job whose indices each wait a millisecond (an I/O-bound
// item), to measure how a backend scales with its workers.
var SleepJob = batch.Define("bench.batch-sleep", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(n, func(ctx context.Context, i int) (int, error) {
			t := time.NewTimer(time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return i, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}),
		Sink: batch.SinkFunc[int, int](func(_ context.Context, i int, items []int) (int, error) { return items[0], nil }),
	}, nil
})

// batchJetStreamSleep runs SleepJob through the JetStream backend with
// the given number of local workers, each running one unit at a time.
func batchJetStreamSleep(workers int) func(context.Context, Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		return jobRate(cfg, 2000, 400, func(n int) (*batch.Result[int], error) {
			return SleepJob.Run(ctx, n, batch.WithBackend(jetstream.Local(workers, jetstream.Concurrency(1))))
		})
	}
}

// batchJetStream is batch/process-trivial through the JetStream backend:
// an embedded server and 2 worker processes, started and stopped by each
// run, as the process backend's workers are.
func batchJetStream(ctx context.Context, cfg Config) (Result, error) {
	return jobRate(cfg, 200_000, 20_000, func(n int) (*batch.Result[int], error) {
		return TrivialJob.Run(ctx, n, batch.WithBackend(jetstream.Local(2)))
	})
}

// jobRate measures items/s of whole runs of a job of n indices (quick in
// a quick run), each of which must succeed.
func jobRate(cfg Config, n, quick int, run func(n int) (*batch.Result[int], error)) (Result, error) {
	if cfg.Quick {
		n = quick
	}
	rate, runs, err := Repeat(cfg, func() (float64, error) {
		start := time.Now()
		res, err := run(n)
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if res.Done != n {
			return 0, fmt.Errorf("%v", res)
		}
		return float64(n) / d.Seconds(), nil
	})
	return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, err
}

// TrivialJob is a job whose indices do nothing (its parameter is the
// number of indices), also served by "ferry worker": what it measures is
// the cost per index of dispatch, the worker round trips, results and
// (with a checkpoint) the database.
var TrivialJob = batch.Define("bench.batch-trivial", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(n, func(_ context.Context, i int) (int, error) { return i, nil }),
		Sink:   batch.SinkFunc[int, int](func(_ context.Context, i int, items []int) (int, error) { return items[0], nil }),
	}, nil
})

// batchTrivial measures items/s of whole runs of the trivial job (worker
// start and, with a checkpoint, opening and closing the database included).
func batchTrivial(withCheckpoint bool) func(context.Context, Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		n := 200_000
		if cfg.Quick {
			n = 20_000
		}
		dir, err := os.MkdirTemp("", "ferry-bench-batch-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
		run := 0
		rate, runs, err := Repeat(cfg, func() (float64, error) {
			opts := []batch.Option{batch.WithBackend(batch.Processes(2))}
			var db *checkpoint.DB
			start := time.Now()
			if withCheckpoint {
				run++
				if db, err = checkpoint.Open(filepath.Join(dir, fmt.Sprintf("run%d.db", run))); err != nil {
					return 0, err
				}
				opts = append(opts, batch.WithCheckpoint(db))
			}
			res, err := TrivialJob.Run(ctx, n, opts...)
			if db != nil {
				if cerr := db.Close(); err == nil {
					err = cerr
				}
			}
			d := time.Since(start)
			if err != nil {
				return 0, err
			}
			if res.Done != n {
				return 0, fmt.Errorf("%v", res)
			}
			return float64(n) / d.Seconds(), nil
		})
		return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, err
	}
}
