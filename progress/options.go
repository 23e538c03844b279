package progress

import (
	"io"
	"os"
	"time"

	"golang.org/x/term"
)

// An Option configures NewBatch and NewPipeline.
type Option func(*config)

type config struct {
	bars        bool
	forced      bool // bars was chosen with Bars
	interval    time.Duration
	refresh     time.Duration
	workerLines int
	width       int
}

func newConfig(w io.Writer, opts []Option) config {
	cfg := config{interval: 5 * time.Second, refresh: 150 * time.Millisecond, workerLines: 16, width: 80}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if !cfg.forced {
		cfg.bars = IsTerminal(w)
	}
	return cfg
}

// Interval sets how often a line is written when the output is not a
// terminal (default 5 s).
func Interval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.interval = d
		}
	}
}

// Bars chooses the display whatever the output is: bars (true) or periodic
// lines (false). By default bars are drawn when the output is a terminal
// (see IsTerminal).
func Bars(on bool) Option {
	return func(c *config) { c.bars, c.forced = on, true }
}

// WorkerLines limits the number of worker lines under a batch job's bar
// (default 16): when a new worker appears beyond it, the line of the worker
// that has been idle longest makes room. 0 shows none. Pipeline ignores it.
func WorkerLines(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.workerLines = n
		}
	}
}

// Width sets the width of the bars when the output is not a terminal whose
// width can be read: a file, a buffer, or a pseudo-terminal whose size was
// never set (default 80).
func Width(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.width = n
		}
	}
}

// IsTerminal reports whether w is a terminal (an *os.File on one), where
// NewBatch and NewPipeline draw bars by default.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// barWidth is the width of the terminal w is on, or the configured width
// when w is not one or its size is unknown (0 columns, as on a
// pseudo-terminal nobody sized).
func (c config) barWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return c.width
}
