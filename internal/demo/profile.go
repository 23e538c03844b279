package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/tune"
	"github.com/ferrypipe/ferry/tune/tuneplot"
)

// ProfileConfig is what Profile measures.
type ProfileConfig struct {
	Samples       int           // size of the sample the stages run on
	BatchSize     int           // samples per batch of the load stage
	Workers       int           // worker processes of the load stage's pool
	Seed          uint64        // seed of the synthetic data set
	Concurrencies []int         // concurrencies tried (nil: tune's default)
	MinDuration   time.Duration // each measurement's least duration (0: tune's default)
}

// Profile measures how the demo's stages scale with their concurrency,
// each alone (package tune): decoding a PNG and making its tensor in this
// process, and loading a whole batch in a pool of worker processes (what
// `ferry demo` runs). It writes the table to w and to dir/profile.txt, and
// the plot to dir/profile.svg, and returns the report.
func Profile(ctx context.Context, w io.Writer, dir string, cfg ProfileConfig) (*tune.Report, error) {
	if cfg.Samples < 1 || cfg.BatchSize < 1 || cfg.Workers < 1 {
		return nil, fmt.Errorf("demo: profile: samples %d, batch %d and workers %d must be at least 1", cfg.Samples, cfg.BatchSize, cfg.Workers)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: profile: %w", err)
	}
	ds, err := Generate(ctx, cfg.Samples, 0, runtime.GOMAXPROCS(0), cfg.Seed, nil)
	if err != nil {
		return nil, err
	}
	var opts []tune.Option
	if cfg.Concurrencies != nil {
		opts = append(opts, tune.Concurrencies(cfg.Concurrencies...))
	}
	if cfg.MinDuration > 0 {
		opts = append(opts, tune.MinDuration(cfg.MinDuration))
	}

	// In this process, sample by sample.
	in := tune.Sample(ds.Samples)
	tune.Stage(tune.Stage(in, "decode", Decode), "to-tensor", ToTensor)
	report, err := tune.Profile(ctx, in, opts...)
	if err != nil {
		return nil, err
	}

	// In worker processes, batch by batch: the load stage of the demo.
	pool, err := proc.NewPool(ctx, LoadBatchFunc, proc.Workers(cfg.Workers), proc.GOMAXPROCS(1))
	if err != nil {
		return nil, fmt.Errorf("demo: profile: starting the load workers: %w", err)
	}
	defer pool.Close()
	var groups [][]Sample
	for i := 0; i < len(ds.Samples); i += cfg.BatchSize {
		groups = append(groups, ds.Samples[i:min(i+cfg.BatchSize, len(ds.Samples))])
	}
	name := fmt.Sprintf("load (batches of %d, %d workers)", cfg.BatchSize, cfg.Workers)
	batches := tune.Sample(groups)
	tune.Stage(batches, name, pool.Call)
	loads, err := tune.Profile(ctx, batches, opts...)
	if err != nil {
		return nil, err
	}
	report.Stages = append(report.Stages, loads.Stages...)

	table := report.String()
	if _, err := io.WriteString(w, table); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "profile.txt"), []byte(table), 0o644); err != nil {
		return nil, fmt.Errorf("demo: profile: %w", err)
	}
	if err := tuneplot.Save(report, filepath.Join(dir, "profile.svg")); err != nil {
		return nil, err
	}
	return report, nil
}
