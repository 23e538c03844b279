package demo

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/progress"
)

// Progress is how Run shows its progress.
type Progress int

const (
	// ProgressLines prints one plain line when the data set is ready and
	// one at the end of each epoch: for logs and pipes.
	ProgressLines Progress = iota
	// ProgressBars draws the pipeline live (package progress: each stage's
	// items/s, busy workers and input queue, the bottleneck marked) under
	// the lines of ProgressLines, for a terminal.
	ProgressBars
	// ProgressNone shows no progress, only failures and the summary.
	ProgressNone
)

// String returns "lines", "bars" or "none".
func (p Progress) String() string {
	switch p {
	case ProgressLines:
		return "lines"
	case ProgressBars:
		return "bars"
	case ProgressNone:
		return "none"
	}
	return fmt.Sprintf("Progress(%d)", int(p))
}

// reporter shows the progress of a run. Its methods are called from the
// consuming goroutine, except the function generating returns and writes
// to logs, which may come from any goroutine.
type reporter interface {
	// logs is where log lines go while the run shows progress.
	logs() io.Writer
	// generating announces the data set; the function it returns is
	// called once per sample generated.
	generating(samples int) func()
	generated(ds *Dataset, took time.Duration)
	// hooks are the pipeline's hooks; watch shows the pipeline built with
	// them.
	hooks() pipeline.Hooks
	watch(p progress.StatsSource)
	epochStarted(epoch int)
	// progressed counts items delivered in the current epoch.
	progressed(items int)
	epochEnded(e EpochSummary)
	// stop ends the display. Nothing is written to logs after stop.
	stop()
}

func newReporter(mode Progress, w io.Writer, epochs, samples int) (reporter, error) {
	switch mode {
	case ProgressLines:
		return &lineReporter{w: &lockedWriter{w: w}, epochs: epochs}, nil
	case ProgressNone:
		return &lineReporter{w: &lockedWriter{w: w}, epochs: epochs, quiet: true}, nil
	case ProgressBars:
		return newViewReporter(w, epochs, samples), nil
	}
	return nil, fmt.Errorf("demo: unknown progress mode %v", mode)
}

// lockedWriter serializes writes from the consumer and the pipeline's
// logger.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lineReporter prints a line per step, or nothing when quiet.
type lineReporter struct {
	w      io.Writer
	epochs int
	quiet  bool
}

func (r *lineReporter) logs() io.Writer            { return r.w }
func (r *lineReporter) generating(int) func()      { return nil }
func (r *lineReporter) hooks() pipeline.Hooks      { return pipeline.Hooks{} }
func (r *lineReporter) watch(progress.StatsSource) {}
func (r *lineReporter) epochStarted(int)           {}
func (r *lineReporter) progressed(int)             {}
func (r *lineReporter) stop()                      {}
func (r *lineReporter) printf(f string, a ...any)  { fmt.Fprintf(r.w, f, a...) }

func (r *lineReporter) generated(ds *Dataset, took time.Duration) {
	if !r.quiet {
		r.printf("data set: %d samples, %s, generated in %v\n", len(ds.Samples), megabytes(ds.Bytes), took.Round(time.Millisecond))
	}
}

func (r *lineReporter) epochEnded(e EpochSummary) {
	if r.quiet {
		return
	}
	failed := ""
	if e.Failed > 0 {
		failed = fmt.Sprintf(", %d failed", e.Failed)
	}
	// One write per line: the pipeline may log a failure of the next epoch
	// meanwhile.
	r.printf("epoch %d/%d: %d items in %d batches%s, %v, %.0f items/s\n",
		e.Epoch, r.epochs, e.Items, e.Batches, failed, e.Duration.Round(time.Millisecond), e.ItemsPerSec())
}

// viewReporter draws the pipeline live (progress.Pipeline: each stage's
// items/s, busy workers and input queue, the bottleneck marked) under the
// lines of lineReporter, which go above it with the log lines.
type viewReporter struct {
	lineReporter
	view      *progress.Pipeline
	samples   int
	epoch     int
	delivered int
}

func newViewReporter(w io.Writer, epochs, samples int) *viewReporter {
	// Bars also when w is not a terminal, so that a caller who asks for
	// them gets them.
	view := progress.NewPipeline(w, progress.Bars(true))
	view.Start()
	return &viewReporter{lineReporter: lineReporter{w: view.LogWriter(w), epochs: epochs}, view: view, samples: samples}
}

func (r *viewReporter) generating(samples int) func() {
	var mu sync.Mutex // the count only goes up on the screen
	n := 0
	r.view.SetStatus(fmt.Sprintf("generating the data set: 0/%d samples", samples))
	return func() {
		mu.Lock()
		defer mu.Unlock()
		n++
		r.view.SetStatus(fmt.Sprintf("generating the data set: %d/%d samples", n, samples))
	}
}

func (r *viewReporter) hooks() pipeline.Hooks        { return r.view.Hooks() }
func (r *viewReporter) watch(p progress.StatsSource) { r.view.Watch(p) }
func (r *viewReporter) stop()                        { r.view.Stop() }

func (r *viewReporter) epochStarted(epoch int) {
	r.epoch, r.delivered = epoch, 0
	r.progressed(0)
}

func (r *viewReporter) progressed(items int) {
	r.delivered += items
	r.view.SetStatus(fmt.Sprintf("epoch %d/%d: %d/%d samples", r.epoch, r.epochs, r.delivered, r.samples))
}

// megabytes formats a byte count, e.g. "58.2 MB".
func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
