//go:build linux || darwin

package progress_test

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/progress"
)

// terminal is a pseudo-terminal: tty is the program's side, and what is
// written to it is read from the other side as it comes.
type terminal struct {
	tty      *os.File
	ptm      *os.File
	mu       sync.Mutex
	out      bytes.Buffer
	grew     chan struct{} // a token after each read
	readDone chan struct{}
}

// openTerminal opens a pseudo-terminal of cols × rows; 0 × 0 is one whose
// size nobody set.
func openTerminal(t *testing.T, cols, rows int) *terminal {
	t.Helper()
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	if cols > 0 {
		if err := pty.Setsize(tty, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)}); err != nil {
			t.Fatal(err)
		}
	}
	term := &terminal{tty: tty, ptm: ptm, grew: make(chan struct{}, 1), readDone: make(chan struct{})}
	go func() {
		defer close(term.readDone)
		b := make([]byte, 4096)
		for {
			n, err := ptm.Read(b)
			term.mu.Lock()
			term.out.Write(b[:n])
			term.mu.Unlock()
			select {
			case term.grew <- struct{}{}:
			default:
			}
			if err != nil { // EIO once the tty side is closed and read
				return
			}
		}
	}()
	t.Cleanup(func() { term.close() })
	return term
}

// waitFor waits until the output contains s.
func (term *terminal) waitFor(t *testing.T, s string) {
	t.Helper()
	for {
		term.mu.Lock()
		ok := strings.Contains(term.out.String(), s)
		term.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-term.grew:
		case <-term.readDone:
			t.Fatalf("the terminal closed before %q appeared", s)
		}
	}
}

// close closes the program's side and returns everything it wrote.
func (term *terminal) close() string {
	term.tty.Close()
	<-term.readDone
	term.ptm.Close()
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// screen replays out on a terminal cols wide, as a terminal emulator
// would (text, carriage return, line feed, cursor up, erase below), and
// returns the lines it ends with, scrolled-off ones included, a line that
// wrapped joined again, trailing blanks trimmed.
func screen(t *testing.T, out string, cols int) []string {
	t.Helper()
	type row struct {
		text    []rune
		wrapped bool // continues the row above
	}
	rows := []row{{}}
	r, c := 0, 0
	for len(out) > 0 {
		switch {
		case out[0] == '\r':
			c, out = 0, out[1:]
		case out[0] == '\n':
			r, out = r+1, out[1:]
			if r == len(rows) {
				rows = append(rows, row{})
			}
		case out[0] == '\x1b':
			m := regexp.MustCompile(`^\x1b\[(\d*)([A-Za-z])`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("unknown escape sequence at %q", out[:min(len(out), 10)])
			}
			out = out[len(m[0]):]
			switch m[2] {
			case "A": // cursor up
				n, _ := strconv.Atoi(m[1])
				r = max(r-max(n, 1), 0)
				c = min(c, cols-1)
			case "J": // erase below
				rows[r].text = rows[r].text[:min(c, len(rows[r].text))]
				rows = rows[:r+1]
			case "K": // erase to the end of the line
				rows[r].text = rows[r].text[:min(c, len(rows[r].text))]
			default:
				t.Fatalf("unexpected escape sequence %q", m[0])
			}
		default:
			ch, n := utf8.DecodeRuneInString(out)
			out = out[n:]
			if c == cols { // the line is full: wrap
				r, c = r+1, 0
				if r == len(rows) {
					rows = append(rows, row{})
				}
				rows[r].wrapped = true
			}
			for len(rows[r].text) <= c {
				rows[r].text = append(rows[r].text, ' ')
			}
			rows[r].text[c] = ch
			c++
		}
	}
	var lines []string
	for _, row := range rows {
		s := string(row.text)
		if row.wrapped && len(lines) > 0 {
			lines[len(lines)-1] += s
			continue
		}
		lines = append(lines, s)
	}
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// A log line written while a batch job's bars are drawn goes above them,
// whole, however long; the bars are as wide as the terminal; the final
// frame, under the log line, has the final counts, which agree.
func TestBatchTerminal(t *testing.T) {
	noLeaks(t)
	const cols = 100
	term := openTerminal(t, cols, 30)
	display := progress.NewBatch(term.tty)
	logger := slog.New(slog.NewTextHandler(display.LogWriter(term.tty), &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	display.Begin(batch.JobInfo{Name: "convert", Len: 6}, 0)
	display.Event(start(0, "pid 10"))
	display.Event(doneEv(0, "pid 10"))
	term.waitFor(t, "  pid 10: index 0, 1 done, 0 failed") // a frame is drawn
	display.Event(start(1, "pid 11"))
	display.Event(failEv(1, "pid 11", 1, false))
	display.Event(start(1, "pid 10"))
	display.Event(failEv(1, "pid 10", 2, true))
	cause := strings.Repeat("a long cause ", 20) // wraps on the terminal
	logger.Error("batch: index failed", "index", 1, "err", errors.New(cause))
	for i := 2; i < 6; i++ {
		display.Event(start(i, "pid 11"))
		display.Event(doneEv(i, "pid 11"))
	}
	display.End()
	logger.Info("after the run") // no bars: straight to the terminal

	lines := screen(t, term.close(), cols)
	wantLog := `level=ERROR msg="batch: index failed" index=1 err="` + cause + `"`
	want := []*regexp.Regexp{
		regexp.MustCompile("^" + regexp.QuoteMeta(wantLog) + "$"),
		regexp.MustCompile(`^batch convert: 5/6 done, 1 failed, 1 retried \[=+\] ended: 1 failed, \d+(\.\d+)?m?s$`),
		regexp.MustCompile(`^  pid 10: index 1, 1 done, 1 failed$`),
		regexp.MustCompile(`^  pid 11: index 5, 4 done, 0 failed, 1 retried$`),
		regexp.MustCompile(`^batch convert: 5/6 done, 1 failed, 1 retried; \S+, \d+/s$`),
		regexp.MustCompile(`^level=INFO msg="after the run"$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("screen:\n%s\nwant %d lines", strings.Join(lines, "\n"), len(want))
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d: %q, want %v", i, lines[i], re)
		}
	}
	if n := utf8.RuneCountInString(lines[1]); n != cols {
		t.Errorf("the bar is %d columns wide on a terminal of %d", n, cols)
	}
}

// On a pseudo-terminal whose size nobody set, bars are drawn 80 columns
// wide (or as Width says).
func TestTerminalSizeUnknown(t *testing.T) {
	noLeaks(t)
	for _, width := range []int{0, 60} {
		term := openTerminal(t, 0, 0)
		var opts []progress.Option
		if width > 0 {
			opts = append(opts, progress.Width(width))
		}
		display := progress.NewBatch(term.tty, opts...)
		display.Begin(batch.JobInfo{Name: "convert", Len: 2}, 0)
		display.Event(start(0, "pid 10"))
		display.Event(doneEv(0, "pid 10"))
		display.Event(start(1, "pid 10"))
		display.Event(doneEv(1, "pid 10"))
		display.End()
		lines := screen(t, term.close(), 1000)
		want := cmp.Or(width, 80)
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "batch convert: 2/2 done, 0 failed [") {
			t.Fatalf("width %d: screen\n%s", width, strings.Join(lines, "\n"))
		}
		if n := utf8.RuneCountInString(lines[0]); n != want {
			t.Errorf("Width(%d): the bar is %d columns wide, want %d", width, n, want)
		}
	}
}

// A pipeline's view under a terminal: a log line goes above it, whole.
func TestPipelineTerminal(t *testing.T) {
	noLeaks(t)
	const cols = 90
	term := openTerminal(t, cols, 30)
	view := progress.NewPipeline(term.tty)
	logs := view.LogWriter(term.tty)
	view.SetStatus("epoch 1/1")
	view.Watch(&fakeSource{start: time.Now(), perSec: 1000, consumer: 10, fill: map[string]float64{"read": 1, "parse": 1}})
	term.waitFor(t, "  consumer") // a frame is drawn
	long := "warning: " + strings.Repeat("x", 2*cols) + "\n"
	io.WriteString(logs, long[:50]) // a line in two writes
	io.WriteString(logs, long[50:])
	view.Stop()
	lines := screen(t, term.close(), cols)
	want := []*regexp.Regexp{
		regexp.MustCompile("^" + regexp.QuoteMeta(strings.TrimSuffix(long, "\n")) + "$"),
		regexp.MustCompile(`^pipeline: epoch 1/1; \S+$`),
		regexp.MustCompile(`^  stage +items/s +busy +input queue$`),
		regexp.MustCompile(`^  read +\S+ +-$`),
		regexp.MustCompile(`^  parse +\S+ +- +\[#{10}\] 100%$`),
		regexp.MustCompile(`^  batch +\S+ +- +\[#{10}\] 100%  <- bottleneck$`),
		regexp.MustCompile(`^  consumer +\S+ +- +\[\.{10}\]   0%$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("screen:\n%s\nwant %d lines", strings.Join(lines, "\n"), len(want))
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d: %q, want %v", i, lines[i], re)
		}
	}
}
