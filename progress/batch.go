package progress

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferrypipe/ferry/batch"
)

// Batch renders the progress of a batch job's runs: pass it to Run with
// batch.Events.
//
//	res, err := job.Run(ctx, params, batch.Events(progress.NewBatch(os.Stderr)))
//
// On a terminal it draws an overall bar with the count, the rate and the
// estimated time left, and one line per worker with the index it took last
// and what it did. Elsewhere it writes a line every 5 seconds, like
//
//	batch convert: 1200/5000 done, 3 failed, 2 retried, 410/s, eta 9s
//
// Either way it ends with a summary line. The counts mean the same on
// every line: "done" and "failed" count indices (failed: for good, after
// its last attempt), "retried" counts failed attempts that ran again; a
// worker's line counts what ran on it, and the worker lines add up to the
// overall one (resumed indices aside).
//
// Event only folds the event into counters (under a mutex held for a few
// instructions), so it never waits for the output; one goroutine, from
// Begin to End, renders what the counters say at its own pace, however fast
// events come. A Batch serves one run at a time; Begin starts a new one.
type Batch struct {
	w   io.Writer
	cfg config
	scr *screen

	mu   sync.Mutex // guards st and wake
	st   batchState
	wake chan struct{} // a worker appeared (bar mode)

	run  sync.Mutex    // serializes Begin and End, guards stop and done
	stop chan struct{} // closed by End
	done chan struct{} // closed when the renderer has ended
}

var _ batch.Observer = (*Batch)(nil)

// batchState is what the events say so far.
type batchState struct {
	name     string
	total    int
	resumed  int
	done     int // indices done in this run
	failed   int // indices failed for good
	retried  int // failed attempts that run again
	start    time.Time
	ended    time.Duration // set by End: the run is over
	seq      uint64        // events so far
	workers  map[string]*workerState
	newNames []string // workers not yet given a line (bar mode)
}

// workerState is what the events say about one worker; its counts mean
// what the run's do.
type workerState struct {
	last                  int // the index it started last, -1 before any
	done, failed, retried int
	seq                   uint64
}

// NewBatch returns a Batch that writes to w. Nothing is written, and no
// goroutine runs, until Begin.
func NewBatch(w io.Writer, opts ...Option) *Batch {
	cfg := newConfig(w, opts)
	return &Batch{w: w, cfg: cfg, scr: &screen{out: w, cfg: cfg}}
}

// LogWriter returns a writer for log lines, e.g. for slog.NewTextHandler:
// while the bars are drawn each line goes above them, on the display's
// output; at other times (and with no bars) it goes to fallback, unchanged.
// Writing log lines to the terminal any other way while bars are drawn
// tears them.
func (b *Batch) LogWriter(fallback io.Writer) io.Writer { return b.scr.logWriter(fallback) }

// Begin starts rendering the run of job, resumed of whose indices come
// from a checkpoint. A run still rendered is ended first.
func (b *Batch) Begin(job batch.JobInfo, resumed int) {
	b.run.Lock()
	defer b.run.Unlock()
	b.end()
	wake := make(chan struct{}, 1)
	b.mu.Lock()
	b.st = batchState{name: job.Name, total: job.Len, resumed: resumed, start: time.Now(), workers: map[string]*workerState{}}
	b.wake = wake
	b.mu.Unlock()
	b.stop = make(chan struct{})
	b.done = make(chan struct{})
	if b.cfg.bars {
		// Started here, so that log lines go above the bars once Begin
		// returns.
		go b.renderBars(b.scr.startBars(), wake, b.stop, b.done)
	} else {
		go b.renderLines(b.stop, b.done)
	}
}

// Event counts e. It returns at once.
func (b *Batch) Event(e batch.Event) {
	if e.Kind == batch.EventStart && e.Worker == "" {
		// A worker not known yet has no line of its own: the index's
		// outcome names the worker that ran it.
		return
	}
	b.mu.Lock()
	st := &b.st
	st.seq++
	if st.workers == nil {
		st.workers = map[string]*workerState{}
	}
	w := st.workers[e.Worker]
	fresh := w == nil
	if fresh {
		w = &workerState{last: -1}
		st.workers[e.Worker] = w
		st.newNames = append(st.newNames, e.Worker)
	}
	w.seq = st.seq
	switch e.Kind {
	case batch.EventStart:
		w.last = e.Index
	case batch.EventDone:
		st.done++
		w.done++
	case batch.EventFailed:
		if e.Final {
			st.failed++
			w.failed++
		} else {
			st.retried++
			w.retried++
		}
	}
	wake := b.wake
	b.mu.Unlock()
	if fresh && wake != nil {
		select {
		case wake <- struct{}{}:
		default: // already woken
		}
	}
}

// End stops the renderer once it has rendered the final state and written
// the summary line. It does nothing if no run is rendered.
func (b *Batch) End() {
	b.run.Lock()
	defer b.run.Unlock()
	b.end()
}

func (b *Batch) end() {
	if b.stop == nil {
		return
	}
	b.mu.Lock()
	b.st.ended = max(time.Since(b.st.start), time.Nanosecond)
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	b.stop, b.done = nil, nil
}

// batchSnapshot is a copy of the counters, and the derived figures.
type batchSnapshot struct {
	batchState
	elapsed time.Duration
	rate    float64 // indices ended per second in this run
	eta     time.Duration
	hasETA  bool
}

func (b *Batch) snapshot() batchSnapshot {
	b.mu.Lock()
	s := batchSnapshot{batchState: b.st}
	b.mu.Unlock()
	s.workers, s.newNames = nil, nil
	s.elapsed = time.Since(s.start)
	if s.ended > 0 {
		s.elapsed = s.ended
	}
	ended := s.done + s.failed
	if s.elapsed > 0 {
		s.rate = float64(ended) / s.elapsed.Seconds()
	}
	if left := s.notRun(); left >= 0 && s.rate > 0 {
		s.eta, s.hasETA = time.Duration(float64(left)/s.rate*float64(time.Second)).Round(time.Second), true
	}
	return s
}

// notRun is the number of indices that have not ended.
func (s batchSnapshot) notRun() int { return s.total - s.resumed - s.done - s.failed }

// counts is "5 done, 1 failed, 2 retried", the words of every line.
func counts(done, failed, retried int) string {
	s := fmt.Sprintf("%d done, %d failed", done, failed)
	if retried > 0 {
		s += fmt.Sprintf(", %d retried", retried)
	}
	return s
}

// count is "1200/5000 done (40 resumed), 3 failed, 2 retried".
func (s batchSnapshot) count() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d done", s.done+s.resumed, s.total)
	if s.resumed > 0 {
		fmt.Fprintf(&b, " (%d resumed)", s.resumed)
	}
	fmt.Fprintf(&b, ", %d failed", s.failed)
	if s.retried > 0 {
		fmt.Fprintf(&b, ", %d retried", s.retried)
	}
	return b.String()
}

// speed is "410/s, eta 9s".
func (s batchSnapshot) speed() string {
	if !s.hasETA {
		return fmt.Sprintf("%.0f/s", s.rate)
	}
	return fmt.Sprintf("%.0f/s, eta %v", s.rate, s.eta)
}

// outcome is what the bar says on its right once the run is over: how it
// ended, failures first.
func (s batchSnapshot) outcome() string {
	took := s.elapsed.Round(100 * time.Millisecond)
	switch n := s.notRun(); {
	case n > 0 && s.failed > 0:
		return fmt.Sprintf("stopped: %d failed, %d not run, %v", s.failed, n, took)
	case n > 0:
		return fmt.Sprintf("stopped: %d not run, %v", n, took)
	case s.failed > 0:
		return fmt.Sprintf("ended: %d failed, %v", s.failed, took)
	}
	return fmt.Sprintf("done in %v", took)
}

// line is the periodic line of the plain display.
func (s batchSnapshot) line() string {
	return fmt.Sprintf("batch %s: %s, %s\n", s.name, s.count(), s.speed())
}

// summary is the last line of both displays.
func (s batchSnapshot) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch %s: %s", s.name, s.count())
	if n := s.notRun(); n > 0 {
		fmt.Fprintf(&b, ", %d not run", n)
	}
	fmt.Fprintf(&b, "; %v, %.0f/s\n", s.elapsed.Round(100*time.Millisecond), s.rate)
	return b.String()
}

// renderLines is the renderer of the plain display.
func (b *Batch) renderLines(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(b.cfg.interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			io.WriteString(b.w, b.snapshot().line())
		case <-stop:
			io.WriteString(b.w, b.snapshot().summary())
			return
		}
	}
}

// workerLine is the line of one worker under the bar.
func (b *Batch) workerLine(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.st.workers[name]
	if w == nil {
		return name
	}
	last := "-"
	if w.last >= 0 {
		last = fmt.Sprint(w.last)
	}
	return fmt.Sprintf("  %s: index %s, %s", name, last, counts(w.done, w.failed, w.retried))
}

// renderBars is the renderer of the bar display.
func (b *Batch) renderBars(c *mpb.Progress, wake, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	s := b.snapshot()
	// Built with total 0, so that the bar is complete only when End says.
	overall := c.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			s := b.snapshot()
			return fmt.Sprintf("batch %s: %s", s.name, s.count())
		})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			s := b.snapshot()
			if s.ended > 0 {
				return s.outcome()
			}
			return s.speed()
		})))
	overall.SetTotal(int64(s.total), false)

	type line struct {
		name string
		bar  *mpb.Bar
	}
	var lines []line
	// seq says when a worker was last heard of.
	seq := func(name string) uint64 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.st.workers[name].seq
	}
	// update brings the bar up to date and gives new workers a line. It
	// never holds b.mu while it calls mpb, whose goroutines call the
	// decorators, which take b.mu.
	update := func() {
		s := b.snapshot()
		overall.SetCurrent(int64(s.resumed + s.done + s.failed))
		b.mu.Lock()
		names := b.st.newNames
		b.st.newNames = nil
		b.mu.Unlock()
		for _, name := range names {
			if b.cfg.workerLines == 0 {
				break
			}
			if len(lines) == b.cfg.workerLines {
				// Make room: the worker idle longest loses its line.
				k := 0
				for j := range lines {
					if seq(lines[j].name) < seq(lines[k].name) {
						k = j
					}
				}
				lines[k].bar.Abort(true)
				lines = slices.Delete(lines, k, k+1)
			}
			bar := c.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return b.workerLine(name) })))
			lines = append(lines, line{name, bar})
		}
	}
	tick := time.NewTicker(b.cfg.refresh)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			update()
		case <-wake:
			update()
		case <-stop:
			update()
			s := b.snapshot()
			if s.notRun() <= 0 {
				overall.SetTotal(-1, true)
			} else {
				overall.Abort(false)
			}
			for _, l := range lines {
				l.bar.SetTotal(-1, true)
			}
			b.scr.stopBars(c)
			io.WriteString(b.w, s.summary())
			return
		}
	}
}
