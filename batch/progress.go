package batch

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Progress renders the progress of a run: pass it to Run with Events.
//
//	res, err := job.Run(ctx, params, batch.Events(batch.NewProgress(os.Stderr)))
//
// On a terminal it draws an overall bar with the count, the rate and the
// estimated time left, and one line per worker with the index it took
// last and how many indices it finished and failed. Elsewhere (a file, a
// pipe, a CI log) it writes a line every 5 seconds, like
//
//	batch convert: 1200/5000 done, 3 failed, 410/s, eta 9s
//
// Either way it ends with a summary line. Event only folds the event into
// counters (under a mutex held for a few instructions), so it never waits
// for the output; one goroutine, from Begin to End, renders what the
// counters say at its own pace, however fast events come.
//
// A Progress serves one run at a time; Begin starts a new one.
type Progress struct {
	w   io.Writer
	cfg progressConfig

	mu sync.Mutex // guards st
	st progressState

	wake chan struct{} // a worker appeared (bar mode); guarded by mu

	run  sync.Mutex    // serializes Begin and End, guards stop and done
	stop chan struct{} // closed by End
	done chan struct{} // closed when the renderer has ended
}

// progressState is what the events say so far.
type progressState struct {
	name     string
	total    int
	resumed  int
	done     int // successes in this run
	failed   int // final failures
	retried  int // failed attempts that run again
	start    time.Time
	seq      uint64 // events so far
	workers  map[string]*workerProgress
	newNames []string // workers not yet given a line (bar mode)
}

// workerProgress is what the events say about one worker.
type workerProgress struct {
	last         int // the index it started last, -1 before any
	done, failed int // indices it finished, attempts that failed on it
	seq          uint64
}

// A ProgressOption configures NewProgress.
type ProgressOption func(*progressConfig)

type progressConfig struct {
	bars         bool
	interval     time.Duration
	refresh      time.Duration
	workerLines  int
	width        int
	forcedLayout bool
}

// ProgressInterval sets how often a line is written when the output is
// not a terminal (default 5 s).
func ProgressInterval(d time.Duration) ProgressOption {
	return func(c *progressConfig) {
		if d > 0 {
			c.interval = d
		}
	}
}

// ProgressBars chooses the display whatever the output is: bars (true)
// or periodic lines (false). By default bars are drawn when the output is
// an *os.File that is a terminal.
func ProgressBars(on bool) ProgressOption {
	return func(c *progressConfig) { c.bars, c.forcedLayout = on, true }
}

// ProgressWorkerLines limits the number of worker lines under the bar
// (default 16): when a new worker appears beyond it, the line of the
// worker that has been idle longest makes room. 0 shows none.
func ProgressWorkerLines(n int) ProgressOption {
	return func(c *progressConfig) {
		if n >= 0 {
			c.workerLines = n
		}
	}
}

// ProgressWidth sets the width of the bars when the output is not a
// terminal whose width can be read (default 80).
func ProgressWidth(n int) ProgressOption {
	return func(c *progressConfig) {
		if n > 0 {
			c.width = n
		}
	}
}

// NewProgress returns a Progress that writes to w. Nothing is written,
// and no goroutine runs, until Begin.
func NewProgress(w io.Writer, opts ...ProgressOption) *Progress {
	cfg := progressConfig{interval: 5 * time.Second, refresh: 150 * time.Millisecond, workerLines: 16, width: 80}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if !cfg.forcedLayout {
		f, ok := w.(*os.File)
		cfg.bars = ok && term.IsTerminal(int(f.Fd()))
	}
	return &Progress{w: w, cfg: cfg}
}

// Begin starts rendering the run of job, resumed of whose indices come
// from a checkpoint. A run still rendered is ended first.
func (p *Progress) Begin(job JobInfo, resumed int) {
	p.run.Lock()
	defer p.run.Unlock()
	p.end()
	wake := make(chan struct{}, 1)
	p.mu.Lock()
	p.st = progressState{name: job.Name, total: job.Len, resumed: resumed, start: time.Now(), workers: map[string]*workerProgress{}}
	p.wake = wake
	p.mu.Unlock()
	p.stop = make(chan struct{})
	p.done = make(chan struct{})
	if p.cfg.bars {
		go p.renderBars(wake, p.stop, p.done)
	} else {
		go p.renderLines(p.stop, p.done)
	}
}

// Event counts e. It returns at once.
func (p *Progress) Event(e Event) {
	if e.Kind == EventStart && e.Worker == "" {
		// A worker not known yet has no line of its own: the index's
		// outcome names the worker that ran it.
		return
	}
	p.mu.Lock()
	st := &p.st
	st.seq++
	if st.workers == nil {
		st.workers = map[string]*workerProgress{}
	}
	w := st.workers[e.Worker]
	fresh := w == nil
	if fresh {
		w = &workerProgress{last: -1}
		st.workers[e.Worker] = w
		st.newNames = append(st.newNames, e.Worker)
	}
	w.seq = st.seq
	switch e.Kind {
	case EventStart:
		w.last = e.Index
	case EventDone:
		st.done++
		w.done++
	case EventFailed:
		w.failed++
		if e.Final {
			st.failed++
		} else {
			st.retried++
		}
	}
	wake := p.wake
	p.mu.Unlock()
	if fresh && wake != nil {
		select {
		case wake <- struct{}{}:
		default: // already woken
		}
	}
}

// End stops the renderer once it has rendered the final state and
// written the summary line. It does nothing if no run is rendered.
func (p *Progress) End() {
	p.run.Lock()
	defer p.run.Unlock()
	p.end()
}

func (p *Progress) end() {
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.stop, p.done = nil, nil
}

var _ Observer = (*Progress)(nil)

// snapshot is a copy of the counters, and the derived figures.
type snapshot struct {
	progressState
	elapsed time.Duration
	rate    float64 // indices ended per second in this run
	eta     time.Duration
	hasETA  bool
}

func (p *Progress) snapshot() snapshot {
	p.mu.Lock()
	s := snapshot{progressState: p.st}
	p.mu.Unlock()
	s.workers, s.newNames = nil, nil
	s.elapsed = time.Since(s.start)
	ended := s.done + s.failed
	if s.elapsed > 0 {
		s.rate = float64(ended) / s.elapsed.Seconds()
	}
	if left := s.total - s.resumed - ended; left >= 0 && s.rate > 0 {
		s.eta, s.hasETA = time.Duration(float64(left)/s.rate*float64(time.Second)).Round(time.Second), true
	}
	return s
}

// count is "1200/5000 done, 3 failed".
func (s snapshot) count() string {
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
func (s snapshot) speed() string {
	if !s.hasETA {
		return fmt.Sprintf("%.0f/s", s.rate)
	}
	return fmt.Sprintf("%.0f/s, eta %v", s.rate, s.eta)
}

// line is the periodic line of the plain display.
func (s snapshot) line() string {
	return fmt.Sprintf("batch %s: %s, %s\n", s.name, s.count(), s.speed())
}

// summary is the last line of both displays.
func (s snapshot) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch %s: %s", s.name, s.count())
	if notRun := s.total - s.resumed - s.done - s.failed; notRun > 0 {
		fmt.Fprintf(&b, ", %d not run", notRun)
	}
	fmt.Fprintf(&b, "; %v, %.0f/s\n", s.elapsed.Round(100*time.Millisecond), s.rate)
	return b.String()
}

// renderLines is the renderer of the plain display.
func (p *Progress) renderLines(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(p.cfg.interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			io.WriteString(p.w, p.snapshot().line())
		case <-stop:
			io.WriteString(p.w, p.snapshot().summary())
			return
		}
	}
}

// workerLine is the line of one worker under the bar.
func (p *Progress) workerLine(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.st.workers[name]
	if w == nil {
		return name
	}
	last := "-"
	if w.last >= 0 {
		last = fmt.Sprint(w.last)
	}
	return fmt.Sprintf("  %s: index %s, %d done, %d failed", name, last, w.done, w.failed)
}

// renderBars is the renderer of the bar display.
func (p *Progress) renderBars(wake, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	c := mpb.New(mpb.WithOutput(p.w), mpb.WithWidth(p.cfg.width), mpb.WithRefreshRate(p.cfg.refresh), mpb.WithAutoRefresh())
	s := p.snapshot()
	// Built with total 0, so that the bar is complete only when End says.
	overall := c.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			s := p.snapshot()
			return fmt.Sprintf("batch %s: %s", s.name, s.count())
		})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return p.snapshot().speed() })))
	overall.SetTotal(int64(s.total), false)

	type line struct {
		name string
		bar  *mpb.Bar
	}
	var lines []line
	// seq says when a worker was last heard of.
	seq := func(name string) uint64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.st.workers[name].seq
	}
	// update brings the bar up to date and gives new workers a line. It
	// never holds p.mu while it calls mpb, whose goroutines call the
	// decorators, which take p.mu.
	update := func() {
		s := p.snapshot()
		overall.SetCurrent(int64(s.resumed + s.done + s.failed))
		p.mu.Lock()
		names := p.st.newNames
		p.st.newNames = nil
		p.mu.Unlock()
		for _, name := range names {
			if p.cfg.workerLines == 0 {
				break
			}
			if len(lines) == p.cfg.workerLines {
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
			bar := c.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return p.workerLine(name) })))
			lines = append(lines, line{name, bar})
		}
	}
	tick := time.NewTicker(p.cfg.refresh)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			update()
		case <-wake:
			update()
		case <-stop:
			update()
			s := p.snapshot()
			if s.resumed+s.done+s.failed >= s.total {
				overall.SetTotal(-1, true)
			} else {
				overall.Abort(false)
			}
			for _, l := range lines {
				l.bar.SetTotal(-1, true)
			}
			c.Wait()
			io.WriteString(p.w, s.summary())
			return
		}
	}
}
