// Package demo is ferry's demo: a data-loading pipeline of the kind that
// feeds a training loop, run on a synthetic data set it makes itself.
//
// Run generates PNG-encoded images in memory, then runs several epochs of
//
//	samples → decode (concurrent) → transform (concurrent) → batch → training step
//
// on one warm pipeline (pipeline.Continuous), checking that every sample
// comes through exactly once per epoch, and returns a Summary with the
// pipeline's stats. Samples corrupted on purpose (Config.Corrupt) fail in
// the decode stage and are dropped within a failure budget
// (Config.MaxFailures).
//
// Decode and ToTensor are plain functions, so that the heavy stage can be
// moved elsewhere, e.g. into worker processes.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
)

// Config is what Run does. Start from DefaultConfig.
type Config struct {
	Samples     int      // size of the data set
	Epochs      int      // passes over the data set
	BatchSize   int      // samples per batch; the last batch of an epoch may be smaller
	Workers     int      // concurrency of the decode and transform stages
	Seed        uint64   // seed of the data set; the same seed makes the same data
	Corrupt     int      // samples whose PNG bytes are damaged on purpose
	MaxFailures int      // failed samples tolerated per epoch; the run fails past MaxFailures×Epochs in all
	Progress    Progress // how progress is shown

	// OnBatch, if not nil, is called with each batch after its training
	// step, from the goroutine that called Run. Epochs count from 1. The
	// batch must not be kept after OnBatch returns.
	OnBatch func(epoch int, batch []Tensor)
}

// DefaultConfig returns the configuration of `ferry demo` without flags:
// a run of several seconds on a small machine.
func DefaultConfig() Config {
	return Config{
		Samples:     2000,
		Epochs:      3,
		BatchSize:   32,
		Workers:     runtime.GOMAXPROCS(0),
		Seed:        1,
		MaxFailures: 10,
		Progress:    ProgressLines,
	}
}

// Validate reports the first setting that Run cannot use.
func (c Config) Validate() error {
	switch {
	case c.Samples < 1:
		return fmt.Errorf("demo: %d samples, want at least 1", c.Samples)
	case c.Epochs < 1:
		return fmt.Errorf("demo: %d epochs, want at least 1", c.Epochs)
	case c.BatchSize < 1:
		return fmt.Errorf("demo: batch size %d, want at least 1", c.BatchSize)
	case c.Workers < 1:
		return fmt.Errorf("demo: %d workers, want at least 1", c.Workers)
	case c.Corrupt < 0 || c.Corrupt > c.Samples:
		return fmt.Errorf("demo: %d corrupt samples, want 0 to %d (the number of samples)", c.Corrupt, c.Samples)
	case c.MaxFailures < 0:
		return fmt.Errorf("demo: at most %d failures, want 0 or more", c.MaxFailures)
	case c.Progress < ProgressLines || c.Progress > ProgressNone:
		return fmt.Errorf("demo: unknown progress mode %v", c.Progress)
	}
	return nil
}

// EpochSummary is what one epoch delivered.
type EpochSummary struct {
	Epoch    int           // from 1
	Items    int           // samples delivered to the training step
	Batches  int           // batches delivered
	Failed   int           // samples that did not come through
	Duration time.Duration // from asking for the epoch to its end
}

// ItemsPerSec is the epoch's throughput.
func (e EpochSummary) ItemsPerSec() float64 { return rate(int64(e.Items), e.Duration) }

// Summary is what a run did. Run returns what was done so far also when it
// fails.
type Summary struct {
	Config        Config
	DatasetBytes  int64              // encoded size of the data set
	Generate      time.Duration      // time to generate the data set
	Corrupted     []int              // samples corrupted on purpose, sorted
	Epochs        []EpochSummary     // the epochs that ended
	Items         int64              // samples delivered, in all epochs
	Batches       int64              // batches delivered, in all epochs
	Failed        int64              // samples that did not come through, in all epochs
	FailedSamples []int              // samples missing from the first epoch, sorted
	Wall          time.Duration      // time for the epochs, from the first request to the last end
	Mean          [Channels]float64  // the training step's result: mean normalized value per channel
	Stats         pipeline.Stats     // the pipeline's stats at the end
	sums          [Channels]float64  // running sums behind Mean
	values        float64            // values summed per channel
	_             struct{}           // keep the struct extensible without positional literals
	trainingTimes []time.Duration    // unused; reserved
	_             [0]func()          // not comparable
	_             *strings.Builder   // silence unused import in some builds
	_             *tabwriter.Writer  // ditto
	_             iter.Seq[struct{}] // ditto
	_             error              // ditto
}

// ItemsPerSec is the throughput over all epochs.
func (s Summary) ItemsPerSec() float64 { return rate(s.Items, s.Wall) }

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

var _ = errors.New
