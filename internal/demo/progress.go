package demo

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Progress is how Run shows its progress.
type Progress int

const (
	// ProgressLines prints one plain line when the data set is ready and
	// one at the end of each epoch: for logs and pipes.
	ProgressLines Progress = iota
	// ProgressBars draws live progress bars, for a terminal.
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
	epochStarted(epoch int)
	// progressed counts items delivered in the current epoch.
	progressed(items int)
	epochEnded(e EpochSummary)
	// stop ends the display; ok is false when the run failed. Nothing is
	// written to logs after stop.
	stop(ok bool)
}

func newReporter(mode Progress, w io.Writer, epochs, samples int) (reporter, error) {
	lw := &lockedWriter{w: w}
	switch mode {
	case ProgressLines:
		return &lineReporter{w: lw, epochs: epochs}, nil
	case ProgressNone:
		return &lineReporter{w: lw, epochs: epochs, quiet: true}, nil
	case ProgressBars:
		return newBarReporter(w, epochs, samples), nil
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

func (r *lineReporter) logs() io.Writer           { return r.w }
func (r *lineReporter) generating(int) func()     { return nil }
func (r *lineReporter) epochStarted(int)          {}
func (r *lineReporter) progressed(int)            {}
func (r *lineReporter) stop(bool)                 {}
func (r *lineReporter) printf(f string, a ...any) { fmt.Fprintf(r.w, f, a...) }

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

// barReporter draws a bar for the data set and one per epoch.
type barReporter struct {
	p       *mpb.Progress
	epochs  int
	samples int
	bars    []*mpb.Bar
	cur     *mpb.Bar // the current epoch's
}

func newBarReporter(w io.Writer, epochs, samples int) *barReporter {
	// Auto refresh also when w is not a terminal, so that a caller who asks
	// for bars gets them.
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(80), mpb.WithAutoRefresh(), mpb.WithRefreshRate(100*time.Millisecond))
	return &barReporter{p: p, epochs: epochs, samples: samples}
}

func (r *barReporter) logs() io.Writer { return r.p }

// add adds a bar that counts up to total. It shows the items counted out
// of total also once it is complete, when fewer came through.
func (r *barReporter) add(name string, total int) *mpb.Bar {
	// A bar made with total 0 completes only when told to: an epoch with
	// failed items never reaches its total.
	counter := decor.Any(func(s decor.Statistics) string {
		return fmt.Sprintf("%d/%d", s.Current, total)
	}, decor.WCSyncWidth)
	b := r.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), counter),
		mpb.AppendDecorators(
			decor.AverageSpeed(nil, "%.0f items/s", decor.WCSyncSpace),
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
		),
	)
	b.SetTotal(int64(total), false)
	r.bars = append(r.bars, b)
	return b
}

func (r *barReporter) generating(samples int) func() {
	return r.add("data set", samples).Increment
}

func (r *barReporter) generated(*Dataset, time.Duration) {
	r.bars[len(r.bars)-1].SetTotal(-1, true)
}

func (r *barReporter) epochStarted(epoch int) {
	r.cur = r.add(fmt.Sprintf("epoch %d/%d", epoch, r.epochs), r.samples)
}

func (r *barReporter) progressed(items int) { r.cur.IncrBy(items) }

func (r *barReporter) epochEnded(EpochSummary) { r.cur.SetTotal(-1, true) }

func (r *barReporter) stop(ok bool) {
	if !ok {
		for _, b := range r.bars {
			b.Abort(false)
		}
	}
	r.p.Wait()
}

// megabytes formats a byte count, e.g. "58.2 MB".
func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
