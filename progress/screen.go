package progress

import (
	"bytes"
	"io"
	"sync"

	"github.com/vbauerster/mpb/v8"
)

// screen is the output of a display: bars while they are drawn, and log
// lines that go above them meanwhile.
type screen struct {
	out io.Writer
	cfg config

	mu   sync.Mutex    // guards bars and logs; held while a log line is written
	bars *mpb.Progress // the bars being drawn, or nil
	logs []*logWriter
}

// plainWriter hides the *os.File under it from mpb, which would otherwise
// ask the terminal for its size at every frame and, on a pseudo-terminal
// whose size was never set, draw nothing (0 columns) or stop (an error).
// The display sizes its bars itself, once, when they start.
type plainWriter struct{ w io.Writer }

func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

// startBars returns a new container of bars drawn on the output; log lines
// go above them until stopBars.
func (s *screen) startBars() *mpb.Progress {
	c := mpb.New(mpb.WithOutput(plainWriter{s.out}), mpb.WithWidth(s.cfg.barWidth(s.out)),
		mpb.WithRefreshRate(s.cfg.refresh), mpb.WithAutoRefresh())
	s.mu.Lock()
	s.bars = c
	s.mu.Unlock()
	return c
}

// stopBars waits for c to draw its last frame (every bar must be complete
// or aborted); log lines then go to their fallback again. A log line that
// does not end with a newline yet goes there too.
func (s *screen) stopBars(c *mpb.Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Wait()
	s.bars = nil
	for _, l := range s.logs {
		if len(l.partial) > 0 {
			l.fallback.Write(l.partial)
			l.partial = nil
		}
	}
}

// logWriter returns a writer for log lines, see LogWriter.
func (s *screen) logWriter(fallback io.Writer) io.Writer {
	if fallback == nil {
		fallback = io.Discard
	}
	l := &logWriter{s: s, fallback: fallback}
	s.mu.Lock()
	s.logs = append(s.logs, l)
	s.mu.Unlock()
	return l
}

// logWriter writes log lines above the bars while they are drawn, and to
// fallback otherwise.
type logWriter struct {
	s        *screen
	fallback io.Writer
	partial  []byte // the start of a line not ended yet; guarded by s.mu
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	n := len(p)
	if l.s.bars == nil {
		if len(l.partial) > 0 {
			p = append(l.partial, p...)
			l.partial = nil
		}
		if _, err := l.fallback.Write(p); err != nil {
			return 0, err
		}
		return n, nil
	}
	// Only whole lines go above the bars: the bars are drawn after them,
	// at the start of a line.
	buf := append(l.partial, p...)
	k := bytes.LastIndexByte(buf, '\n')
	if k < 0 {
		l.partial = buf
		return n, nil
	}
	l.partial = append([]byte(nil), buf[k+1:]...)
	if _, err := l.s.bars.Write(buf[:k+1]); err != nil {
		return 0, err
	}
	return n, nil
}
