package progress

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferrypipe/ferry/pipeline"
)

// StatsSource is what a Pipeline display watches: a *pipeline.Pipeline.
type StatsSource interface {
	Stats() pipeline.Stats
}

// Pipeline shows a running pipeline live, so that its bottleneck can be
// seen while it runs: a line per stage with the items it takes per second,
// how many of its workers are busy in its function, and how full its input
// queue is, then a line for the pipeline's consumer (the loop that reads
// Epoch or Next). The stage that work waits for — its input queue full, its
// output queue not — is marked as the bottleneck:
//
//	pipeline: epoch 2/5; 4.1s
//	  stage      items/s   busy  input queue
//	  samples       3.0k      -
//	  collect       3.0k      -  [##########] 100%
//	  load            94  7.8/8  [##########] 100%  <- bottleneck
//	  consumer        94      -  [..........]   0%
//
// Install its hooks when building the pipeline and watch the result:
//
//	view := progress.NewPipeline(os.Stderr)
//	p, err := pipeline.Build(sink, pipeline.WithHooks(view.Hooks()))
//	...
//	view.Watch(p)
//	defer view.Stop()
//
// The figures are smoothed over about a second. Busy workers are known for
// stages that call a function per item (Pipe, FlatPipe, Filter; not
// sources or Aggregate). When the output is not a terminal, a line with
// the same figures is written every 5 seconds (see Interval) and at Stop.
type Pipeline struct {
	w   io.Writer
	cfg config
	scr *screen

	busy sync.Map // stage name → *atomic.Int64, calls in progress

	mu     sync.Mutex // guards src, watch, status and frame
	src    StatsSource
	watch  int // calls of Watch so far: which src a watcher samples
	status string
	frame  []string // bar mode: the lines to draw

	run  sync.Mutex    // serializes Start, Watch and Stop; guards stop and done
	stop chan struct{} // closed by Stop
	done chan struct{} // closed when the renderer has ended
}

// NewPipeline returns a Pipeline display that writes to w. Nothing is
// written, and no goroutine runs, until Start or Watch.
func NewPipeline(w io.Writer, opts ...Option) *Pipeline {
	cfg := newConfig(w, opts)
	return &Pipeline{w: w, cfg: cfg, scr: &screen{out: w, cfg: cfg}}
}

// Hooks returns the hooks that count the busy workers of each stage: pass
// them to pipeline.WithHooks. They cost an atomic addition per call.
func (v *Pipeline) Hooks() pipeline.Hooks {
	return pipeline.Hooks{Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
		n := v.calls(stage)
		n.Add(1)
		return ctx, func(error) { n.Add(-1) }
	}}
}

// calls returns the counter of calls in progress of stage.
func (v *Pipeline) calls(stage string) *atomic.Int64 {
	if n, ok := v.busy.Load(stage); ok {
		return n.(*atomic.Int64)
	}
	n, _ := v.busy.LoadOrStore(stage, new(atomic.Int64))
	return n.(*atomic.Int64)
}

// LogWriter returns a writer for log lines, e.g. for slog.NewTextHandler:
// while the bars are drawn each line goes above them, on the display's
// output; at other times (and with no bars) it goes to fallback, unchanged.
func (v *Pipeline) LogWriter(fallback io.Writer) io.Writer { return v.scr.logWriter(fallback) }

// SetStatus sets the text of the display's first line, e.g. the epoch
// being consumed. It returns at once.
func (v *Pipeline) SetStatus(s string) {
	v.mu.Lock()
	v.status = s
	v.mu.Unlock()
}

// Start starts the display, with its first line only until Watch. A
// display already running is stopped first.
func (v *Pipeline) Start() {
	v.run.Lock()
	defer v.run.Unlock()
	v.start()
}

func (v *Pipeline) start() {
	v.end()
	v.mu.Lock()
	v.src = nil
	v.frame = nil
	v.mu.Unlock()
	v.stop = make(chan struct{})
	v.done = make(chan struct{})
	var c *mpb.Progress
	if v.cfg.bars {
		// Started here, so that log lines go above the bars once Start
		// returns.
		c = v.scr.startBars()
	}
	go v.render(c, v.stop, v.done)
}

// Watch shows the stages of src, which is usually the pipeline built with
// Hooks, and starts the display if it is not running.
func (v *Pipeline) Watch(src StatsSource) {
	v.run.Lock()
	defer v.run.Unlock()
	if v.stop == nil {
		v.start()
	}
	v.mu.Lock()
	v.src = src
	v.watch++
	v.mu.Unlock()
}

// Stop draws the final state (or writes the last line) and stops the
// display. It does nothing if the display is not running.
func (v *Pipeline) Stop() {
	v.run.Lock()
	defer v.run.Unlock()
	v.end()
}

func (v *Pipeline) end() {
	if v.stop == nil {
		return
	}
	close(v.stop)
	<-v.done
	v.stop, v.done = nil, nil
}

// smoothing is the time constant of the figures shown.
const smoothing = time.Second

// stageRow is what the display knows of one stage, or of the consumer.
type stageRow struct {
	name     string
	conc     int
	inputs   []string      // queues it takes from; none for a source
	outputs  []string      // queues it puts into; none for the consumer
	consumer bool          // the pipeline's consumer, not a stage
	calls    *atomic.Int64 // its calls in progress, once Hooks has seen one

	sampled    bool    // items, in, out and busy are set
	hasRate    bool    // rate is set (from the second sample on)
	items      int64   // items it took, at the last sample
	rate       float64 // items per second
	busy       float64 // calls in progress
	in, out    float64 // fill of its input and output queues (0..1), the fullest of each
	bottleneck bool
}

// watcher turns successive snapshots into smoothed rows.
type watcher struct {
	v     *Pipeline
	src   StatsSource
	watch int // the call of Watch that gave src
	rows  []*stageRow
	last  time.Time // when the last sample was taken
}

func newWatcher(v *Pipeline, src StatsSource, watch int, now time.Time) *watcher {
	w := &watcher{v: v, src: src, watch: watch, last: now}
	st := src.Stats()
	for _, s := range st.Stages {
		r := &stageRow{name: s.Name, conc: s.Concurrency}
		for _, q := range st.Queues {
			if q.Consumer == s.Name {
				r.inputs = append(r.inputs, q.Name)
			}
			if q.Name == s.Name || strings.HasPrefix(q.Name, s.Name+"[") {
				r.outputs = append(r.outputs, q.Name)
			}
		}
		w.rows = append(w.rows, r)
	}
	c := &stageRow{name: "consumer", consumer: true}
	for _, q := range st.Queues {
		if q.Consumer == "" {
			c.inputs = append(c.inputs, q.Name)
		}
	}
	w.rows = append(w.rows, c)
	w.update(st, now)
	return w
}

// sample takes a snapshot and folds it in.
func (w *watcher) sample(now time.Time) { w.update(w.src.Stats(), now) }

func (w *watcher) update(st pipeline.Stats, now time.Time) {
	dt := now.Sub(w.last)
	w.last = now
	alpha := 1 - math.Exp(-dt.Seconds()/smoothing.Seconds())
	queues := make(map[string]pipeline.QueueStats, len(st.Queues))
	for _, q := range st.Queues {
		queues[q.Name] = q
	}
	stages := make(map[string]pipeline.StageStats, len(st.Stages))
	for _, s := range st.Stages {
		stages[s.Name] = s
	}
	fullest := func(names []string) float64 {
		f := 0.0
		for _, n := range names {
			f = max(f, queues[n].Fill)
		}
		return f
	}
	for _, r := range w.rows {
		var items int64
		if r.consumer {
			for _, n := range r.inputs {
				items += queues[n].Items
			}
		} else {
			items = stages[r.name].Invocations
		}
		in, out := fullest(r.inputs), fullest(r.outputs)
		if r.calls == nil && !r.consumer {
			if n, ok := w.v.busy.Load(r.name); ok {
				r.calls = n.(*atomic.Int64)
			}
		}
		var busy float64
		if r.calls != nil {
			busy = float64(r.calls.Load())
		}
		if !r.sampled {
			r.in, r.out, r.busy = in, out, busy
		} else {
			r.in += alpha * (in - r.in)
			r.out += alpha * (out - r.out)
			r.busy += alpha * (busy - r.busy)
			if dt > 0 {
				rate := float64(items-r.items) / dt.Seconds()
				if !r.hasRate {
					r.rate, r.hasRate = rate, true
				} else {
					r.rate += alpha * (rate - r.rate)
				}
			}
		}
		r.items, r.sampled = items, true
	}
	w.markBottleneck()
}

// markBottleneck marks the stage that the work waits for: its input queue
// is full (a source's input never runs dry) and its output queue is not.
// Nothing is marked while nothing moves, or when no stage stands out.
func (w *watcher) markBottleneck() {
	var best *stageRow
	bestScore, active := 0.5, false
	for _, r := range w.rows {
		r.bottleneck = false
		active = active || r.rate > 0 || r.busy > 0
		in := r.in
		if len(r.inputs) == 0 {
			in = 1
		}
		score := in - r.out
		switch {
		case score > bestScore:
			best, bestScore = r, score
		case score == bestScore && best != nil && r.busyFraction() > best.busyFraction():
			best = r
		}
	}
	if best != nil && active {
		best.bottleneck = true
	}
}

func (r *stageRow) busyFraction() float64 {
	if r.conc == 0 {
		return 0
	}
	return r.busy / float64(r.conc)
}

// si formats a rate: "94", "3.0k", "1.2M".
func si(x float64) string {
	switch {
	case x >= 999.5e3:
		return fmt.Sprintf("%.1fM", x/1e6)
	case x >= 999.5:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

// gauge is "[#####.....]  50%".
func gauge(f float64) string {
	const n = 10
	f = min(max(f, 0), 1)
	k := int(math.Round(f * n))
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", k), strings.Repeat(".", n-k), 100*f)
}

// fields are the columns of a row: name, items/s, busy, input queue.
func (r *stageRow) fields() (rate, busy, in string) {
	rate, busy = "-", "-"
	if r.hasRate {
		rate = si(r.rate)
	}
	if r.calls != nil {
		busy = fmt.Sprintf("%.1f/%d", r.busy, r.conc)
	}
	if len(r.inputs) > 0 {
		in = gauge(r.in)
	}
	return rate, busy, in
}

// header is the first line: the status and the time watched.
func header(status string, elapsed time.Duration) string {
	took := elapsed.Round(100 * time.Millisecond)
	if status == "" {
		return fmt.Sprintf("pipeline: %v", took)
	}
	return fmt.Sprintf("pipeline: %s; %v", status, took)
}

// table is the lines under the header: column titles, then one per row.
func (w *watcher) table() []string {
	nameW, rateW, busyW := len("stage"), len("items/s"), len("busy")
	type cells struct{ name, rate, busy, in string }
	var cs []cells
	for _, r := range w.rows {
		rate, busy, in := r.fields()
		c := cells{r.name, rate, busy, in}
		nameW, rateW, busyW = max(nameW, len(c.name)), max(rateW, len(c.rate)), max(busyW, len(c.busy))
		cs = append(cs, c)
	}
	lines := []string{strings.TrimRight(fmt.Sprintf("  %-*s  %*s  %*s  %s", nameW, "stage", rateW, "items/s", busyW, "busy", "input queue"), " ")}
	for i, c := range cs {
		l := fmt.Sprintf("  %-*s  %*s  %*s  %s", nameW, c.name, rateW, c.rate, busyW, c.busy, c.in)
		if w.rows[i].bottleneck {
			l += "  <- bottleneck"
		}
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines
}

// line is the plain display's line: the same figures on one line.
func (w *watcher) line(status string, elapsed time.Duration) string {
	var b strings.Builder
	b.WriteString(header(status, elapsed))
	if w == nil {
		b.WriteString("\n")
		return b.String()
	}
	for _, r := range w.rows {
		if r.bottleneck {
			fmt.Fprintf(&b, "; bottleneck: %s", r.name)
		}
	}
	for _, r := range w.rows {
		rate, busy, _ := r.fields()
		if r.hasRate {
			rate += "/s"
		}
		fmt.Fprintf(&b, "; %s %s", r.name, rate)
		if r.calls != nil {
			fmt.Fprintf(&b, ", busy %s", busy)
		}
		if len(r.inputs) > 0 {
			fmt.Fprintf(&b, ", input queue %.0f%%", 100*min(max(r.in, 0), 1))
		}
	}
	b.WriteString("\n")
	return b.String()
}

// render samples the source and draws on c (nil: writes lines), from
// Start to Stop.
func (v *Pipeline) render(c *mpb.Progress, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	start := time.Now()
	var w *watcher
	// step takes a sample of the source being watched, if any.
	step := func() {
		v.mu.Lock()
		src, watch := v.src, v.watch
		v.mu.Unlock()
		now := time.Now()
		switch {
		case src == nil:
			w = nil
		case w == nil || w.watch != watch:
			w = newWatcher(v, src, watch, now)
		default:
			w.sample(now)
		}
	}
	status := func() string {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.status
	}
	if c == nil {
		tick := time.NewTicker(v.cfg.interval)
		defer tick.Stop()
		sample := time.NewTicker(v.cfg.refresh)
		defer sample.Stop()
		for {
			select {
			case <-sample.C:
				step()
			case <-tick.C:
				step()
				io.WriteString(v.w, w.line(status(), time.Since(start)))
			case <-stop:
				step()
				io.WriteString(v.w, w.line(status(), time.Since(start)))
				return
			}
		}
	}

	var bars []*mpb.Bar
	// addLine adds the line that shows frame[i].
	addLine := func(i int) {
		bars = append(bars, c.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			v.mu.Lock()
			defer v.mu.Unlock()
			if i < len(v.frame) {
				return v.frame[i]
			}
			return ""
		}))))
	}
	// draw computes the frame, with a line per stage of the source being
	// watched. It never holds v.mu while it calls mpb, whose goroutines
	// call the decorators, which take v.mu.
	draw := func() {
		step()
		frame := []string{header(status(), time.Since(start))}
		if w != nil {
			frame = append(frame, w.table()...)
		}
		v.mu.Lock()
		v.frame = frame
		v.mu.Unlock()
		for len(bars) > len(frame) {
			bars[len(bars)-1].Abort(true)
			bars = bars[:len(bars)-1]
		}
		for len(bars) < len(frame) {
			addLine(len(bars))
		}
	}
	draw()
	tick := time.NewTicker(v.cfg.refresh)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			draw()
		case <-stop:
			draw()
			for _, b := range bars {
				b.SetTotal(-1, true)
			}
			v.scr.stopBars(c)
			return
		}
	}
}
