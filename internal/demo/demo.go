// Package demo is ferry's demo: a data-loading pipeline of the kind that
// feeds a training loop, run on a synthetic data set it makes itself.
//
// Run generates PNG-encoded images in memory, then runs several epochs of
//
//	samples → collect (batches of samples) → load (worker processes: decode,
//	crop and resize, normalize, collate) → batches through shared memory →
//	training step
//
// on one warm pipeline (pipeline.Continuous), checking that every sample
// comes through exactly once per epoch, and returns a Summary with the
// pipeline's stats. The heavy stage, LoadBatch, runs in a pool of worker
// processes (see LoadBatchFunc), and each batch's tensors cross back to the
// parent through a shm.SegmentPool instead of the socket; the program that
// runs the demo must call proc.Main first. Samples corrupted on purpose
// (Config.Corrupt) fail in the worker, are reported with the batch and
// dropped, within a failure budget (Config.MaxFailures).
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrypipe/ferry/ferryprom"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Config is what Run does. Start from DefaultConfig.
type Config struct {
	Samples     int        // size of the data set
	Epochs      int        // passes over the data set
	BatchSize   int        // samples per batch; the last batch of an epoch, and batches with failed samples, are smaller
	Workers     int        // worker processes of the load stage
	Seed        uint64     // seed of the data set; the same seed makes the same data
	Corrupt     int        // samples whose PNG bytes are damaged on purpose
	MaxFailures int        // failed samples tolerated per epoch; the run fails in the first epoch with more
	Progress    Progress   // how progress is shown
	LogLevel    slog.Level // the least level of the log records shown (DefaultConfig: warn)

	// OnBatch, if not nil, is called with each batch after its training
	// step, from the goroutine that called Run. Epochs count from 1.
	OnBatch func(epoch int, batch Batch)

	// Metrics, if not nil, collects the run's figures while it runs: the
	// pipeline's (with call durations), the load pool's and the arena's.
	Metrics *ferryprom.Collector
	// CPUProfileDir, if set, is where each load worker writes its CPU
	// profile (proc.CPUProfile).
	CPUProfileDir string
}

// DefaultConfig returns the configuration of `ferry demo` without flags:
// a run of several seconds on a small machine.
func DefaultConfig() Config {
	return Config{
		Samples:     3000,
		Epochs:      5,
		BatchSize:   32,
		Workers:     runtime.GOMAXPROCS(0),
		Seed:        1,
		MaxFailures: 10,
		Progress:    ProgressLines,
		LogLevel:    slog.LevelWarn,
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
	DatasetBytes  int64             // encoded size of the data set
	Generate      time.Duration     // time to generate the data set
	Corrupted     []int             // samples corrupted on purpose, sorted
	Epochs        []EpochSummary    // the epochs that ended
	Items         int64             // samples delivered, in all epochs
	Batches       int64             // batches delivered, in all epochs
	Failed        int64             // samples that did not come through, in all epochs
	FailedSamples []int             // samples missing from the first epoch, sorted
	Wall          time.Duration     // time for the epochs, from the first request to the last end
	Mean          [Channels]float64 // the training step's result: mean normalized value per channel
	Stats         pipeline.Stats    // the pipeline's stats at the end
	Pool          proc.PoolStats    // the load workers' stats at the end
	PoolStart     time.Duration     // time to start the load workers, until all were ready
	Arena         shm.Stats         // the shared memory the batches came through, at the end
}

// ItemsPerSec is the throughput over all epochs.
func (s Summary) ItemsPerSec() float64 { return rate(s.Items, s.Wall) }

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// String renders the summary and the pipeline's stats for people.
func (s Summary) String() string {
	var b strings.Builder
	c := s.Config
	fmt.Fprintf(&b, "summary\n")
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "  data set\t%d samples of %dx%d RGBA PNG, %s, generated in %v\n",
		c.Samples, ImageSize, ImageSize, megabytes(s.DatasetBytes), s.Generate.Round(time.Millisecond))
	fmt.Fprintf(w, "  pipeline\tbatches of %d → load in %d worker processes (decode, crop, resize, normalize to %dx%dx%d float32) → training step\n",
		c.BatchSize, c.Workers, Channels, TensorSize, TensorSize)
	fmt.Fprintf(w, "  load workers\t%s\n", poolLine(s.Pool, s.PoolStart))
	fmt.Fprintf(w, "  shared memory\t%s\n", arenaLine(s.Arena))
	fmt.Fprintf(w, "  epochs\t%d of %d\n", len(s.Epochs), c.Epochs)
	fmt.Fprintf(w, "  items\t%d\n", s.Items)
	fmt.Fprintf(w, "  batches\t%d\n", s.Batches)
	fmt.Fprintf(w, "  failed\t%d", s.Failed)
	if s.Failed > 0 || c.Corrupt > 0 {
		fmt.Fprintf(w, " (%d corrupted on purpose: %s; budget %d per epoch)", c.Corrupt, list(s.Corrupted, 10), c.MaxFailures)
	}
	fmt.Fprintf(w, "\n")
	if len(s.FailedSamples) > 0 {
		fmt.Fprintf(w, "  failed samples\t%s\n", list(s.FailedSamples, 10))
	}
	fmt.Fprintf(w, "  wall time\t%v\n", s.Wall.Round(time.Millisecond))
	fmt.Fprintf(w, "  throughput\t%.0f items/s\n", s.ItemsPerSec())
	fmt.Fprintf(w, "  mean value\tR %+.4f  G %+.4f  B %+.4f\n", s.Mean[0], s.Mean[1], s.Mean[2])
	w.Flush()
	fmt.Fprintf(&b, "\nstages and queues\n%s", s.Stats)
	return b.String()
}

// arenaLine describes the arena, e.g. "6 segments of 1.6 MB; 480
// batches came through it, 0 segments held at the end".
func arenaLine(st shm.Stats) string {
	return fmt.Sprintf("%d segments of %s; %d batches came through it, %d segments held at the end",
		st.Count, megabytes(int64(st.SegmentSize)), st.Published, st.Count-st.Free)
}

// poolLine describes the load workers, e.g. "pids 101, 102, ready in
// 8ms; 600 calls, 0 restarts, 0 timeouts".
func poolLine(st proc.PoolStats, start time.Duration) string {
	pids := make([]int, 0, len(st.Workers))
	for _, w := range st.Workers {
		pids = append(pids, w.PID)
	}
	return fmt.Sprintf("pids %s, ready in %v; %d calls, %d restarts, %d timeouts",
		list(pids, 16), start.Round(time.Millisecond), st.Calls, st.Restarts, st.Timeouts)
}

// list formats at most n numbers, e.g. "3, 17, 42" or "3, 17, … (12 in all)".
func list(xs []int, n int) string {
	if len(xs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, x := range xs[:min(n, len(xs))] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, x)
	}
	if len(xs) > n {
		fmt.Fprintf(&b, ", … (%d in all)", len(xs))
	}
	return b.String()
}

// Run generates the data set, runs cfg.Epochs epochs through the pipeline,
// shows progress on w as cfg.Progress says, and prints the summary to w.
// Failed samples are logged to w as they happen. Cancelling ctx stops the
// run; Run then returns an error that wraps ctx's error. Run returns an
// error when more samples fail than the budget allows (a *BudgetError),
// when a sample comes through twice in one epoch, or when the pipeline
// fails, and prints no summary.
func Run(ctx context.Context, w io.Writer, cfg Config) (Summary, error) {
	sum := Summary{Config: cfg}
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	rep, err := newReporter(cfg.Progress, w, cfg.Epochs, cfg.Samples)
	if err != nil {
		return sum, err
	}
	err = run(ctx, rep, cfg, &sum)
	rep.stop()
	if err != nil {
		return sum, err
	}
	if cfg.Progress != ProgressNone {
		fmt.Fprintln(w)
	}
	if _, err := io.WriteString(w, sum.String()); err != nil {
		return sum, fmt.Errorf("demo: writing the summary: %w", err)
	}
	return sum, nil
}

// run does the work of Run, filling in sum as it goes.
func run(ctx context.Context, rep reporter, cfg Config, sum *Summary) error {
	logger := newLogger(rep.logs(), cfg.LogLevel)
	// Batches come back through shared memory: a segment per batch in
	// flight (two calls per worker) and two to spare. The parent copies
	// each batch out as it arrives, so segments are held only briefly.
	arena, err := shm.NewSegmentPool(cfg.BatchSize*TensorLen*4, 2*cfg.Workers+2, shm.Logger(logger))
	if err != nil {
		return fmt.Errorf("demo: making the shared-memory arena: %w", err)
	}
	defer func() {
		sum.Arena = arena.Stats()
		arena.Close()
	}()
	// The load stage runs in worker processes, started first so that they
	// are ready long before the data set is.
	t0 := time.Now()
	pool, err := proc.NewPool(ctx, LoadBatchFunc,
		proc.Workers(cfg.Workers),
		proc.GOMAXPROCS(1),
		proc.Arena(arena),
		proc.ArenaThreshold(TensorLen*4), // a batch of one tensor goes through the arena too
		proc.Logger(logger),
		proc.CPUProfile(cfg.CPUProfileDir))
	if err != nil {
		return fmt.Errorf("demo: starting the load workers: %w", err)
	}
	defer pool.Close()
	sum.PoolStart = time.Since(t0)

	t0 = time.Now()
	ds, err := Generate(ctx, cfg.Samples, cfg.Corrupt, runtime.GOMAXPROCS(0), cfg.Seed, rep.generating(cfg.Samples))
	if err != nil {
		return err
	}
	sum.Generate = time.Since(t0)
	sum.DatasetBytes = ds.Bytes
	sum.Corrupted = ds.Corrupted
	rep.generated(ds, sum.Generate)

	samples := pipeline.FromSlice(ds.Samples, pipeline.Name("samples"))
	groups := pipeline.Aggregate(samples, cfg.BatchSize, pipeline.Name("collect"))
	// Two calls per worker process, so that none idles between calls.
	batches := pipeline.Pipe(groups, pool.Call, pipeline.Name("load"), pipeline.Concurrency(2*cfg.Workers))
	// A batch that fails as a whole (a worker that died, say) fails the
	// run: the failure budget is for samples, which fail one by one in
	// LoadBatch.
	hooks := []pipeline.Hooks{rep.hooks()}
	if cfg.Metrics != nil {
		hooks = append(hooks, cfg.Metrics.Hooks("demo"))
	}
	p, err := pipeline.Build(pipeline.Sink(batches, 4),
		pipeline.Continuous(),
		pipeline.Epochs(cfg.Epochs),
		pipeline.Logger(logger),
		pipeline.WithHooks(hooks...))
	if err != nil {
		return fmt.Errorf("demo: building the pipeline: %w", err)
	}
	if m := cfg.Metrics; m != nil {
		defer m.Pipeline("demo", p.Stats)()
		defer m.Pool("load", pool.Stats)()
		defer m.Arena("batches", arena)()
	}
	rep.watch(p)
	defer func() {
		p.Close()
		sum.Stats = p.Stats()
		sum.Pool = pool.Stats()
	}()

	var values float64 // values summed into sums, per channel
	var sums [Channels]float64
	seen := make([]bool, cfg.Samples)
	start := time.Now()
	for e := 1; e <= cfg.Epochs; e++ {
		clear(seen)
		rep.epochStarted(e)
		es := EpochSummary{Epoch: e}
		var failures []*SampleError // of this epoch: the budget is per epoch
		t := time.Now()
		for batch, err := range p.Epoch(ctx) {
			if err != nil {
				return epochError(ctx, e, err)
			}
			for _, f := range batch.Failed {
				se := &SampleError{Epoch: e, Index: f.Index, Worker: batch.Worker, Err: f.Err}
				failures = append(failures, se)
				logger.Warn("sample failed", "err", se)
				if len(failures) > cfg.MaxFailures {
					return epochError(ctx, e, &BudgetError{PerEpoch: cfg.MaxFailures, Epoch: e, Failures: failures})
				}
			}
			if batch.Len() == 0 {
				continue // every sample of it failed
			}
			for _, i := range batch.Indices {
				if seen[i] {
					return fmt.Errorf("demo: epoch %d: sample %d came through twice", e, i)
				}
				seen[i] = true
			}
			trainStep(batch, &sums)
			values += float64(batch.Len() * TensorSize * TensorSize)
			es.Items += batch.Len()
			es.Batches++
			rep.progressed(batch.Len())
			if cfg.OnBatch != nil {
				cfg.OnBatch(e, batch)
			}
		}
		es.Duration = time.Since(t)
		es.Failed = cfg.Samples - es.Items
		if e == 1 {
			for i, ok := range seen {
				if !ok {
					sum.FailedSamples = append(sum.FailedSamples, i)
				}
			}
		}
		sum.Epochs = append(sum.Epochs, es)
		sum.Items += int64(es.Items)
		sum.Batches += int64(es.Batches)
		sum.Failed += int64(es.Failed)
		sum.Wall = time.Since(start)
		for c := range sums {
			sum.Mean[c] = sums[c] / values
		}
		rep.epochEnded(es)
	}
	return nil
}

// SampleError is a sample that failed to load in a worker process.
type SampleError struct {
	Epoch  int    // from 1
	Index  int    // the sample
	Worker int    // pid of the worker process
	Err    string // what went wrong, as the worker reported it
}

func (e *SampleError) Error() string {
	return fmt.Sprintf("epoch %d, worker pid %d: %s", e.Epoch, e.Worker, e.Err)
}

// BudgetError is the error of a run in which more samples failed in one
// epoch than Config.MaxFailures allows.
type BudgetError struct {
	PerEpoch int            // failed samples tolerated per epoch
	Epoch    int            // the epoch that went over, from 1
	Failures []*SampleError // the failures of that epoch, in order; the last one went over the budget
}

func (e *BudgetError) Error() string {
	last := e.Failures[len(e.Failures)-1]
	return fmt.Sprintf("too many samples failed: %d in epoch %d, and the budget is %d per epoch; failure %d: %v",
		len(e.Failures), e.Epoch, e.PerEpoch, len(e.Failures), last)
}

// Unwrap returns the failures, for errors.As.
func (e *BudgetError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f
	}
	return errs
}

// epochError explains why epoch e stopped with err.
func epochError(ctx context.Context, e int, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("demo: interrupted in epoch %d: %w", e, err)
	}
	return fmt.Errorf("demo: epoch %d: %w", e, err)
}

// trainStep is the demo's stand-in for a training step: it adds up the
// values of each channel of the batch into sums.
func trainStep(b Batch, sums *[Channels]float64) {
	const plane = TensorSize * TensorSize
	for i := range b.Len() {
		t := b.Data[i*TensorLen : (i+1)*TensorLen]
		for c := range Channels {
			var s float32
			for _, v := range t[c*plane : (c+1)*plane] {
				s += v
			}
			sums[c] += float64(s)
		}
	}
}
