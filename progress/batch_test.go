package progress_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/progress"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in
// different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the complete lines written so far.
func (s *syncBuffer) lines() []string {
	out := strings.SplitAfter(s.String(), "\n")
	if out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

var errBoom = errors.New("boom")

func start(i int, w string) batch.Event {
	return batch.Event{Kind: batch.EventStart, Index: i, Worker: w, Attempt: 1}
}

func doneEv(i int, w string) batch.Event {
	return batch.Event{Kind: batch.EventDone, Index: i, Worker: w, Attempt: 1}
}

func failEv(i int, w string, attempt int, final bool) batch.Event {
	return batch.Event{Kind: batch.EventFailed, Index: i, Worker: w, Attempt: attempt, Final: final, Err: errBoom}
}

// The plain display writes a line every interval and a summary at End,
// with the rate and the time left computed from the events counted.
func TestBatchLines(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		p := progress.NewBatch(&out, progress.Bars(false), progress.Interval(5*time.Second))
		p.Begin(batch.JobInfo{Name: "convert", Len: 12}, 2)
		for i := 2; i < 6; i++ {
			p.Event(start(i, "goroutine 1"))
			p.Event(doneEv(i, "goroutine 1"))
		}
		p.Event(start(6, "goroutine 2"))
		p.Event(failEv(6, "goroutine 2", 1, false)) // will be retried: not a failure yet
		time.Sleep(5*time.Second - 1)
		synctest.Wait()
		if got := out.lines(); len(got) != 0 {
			t.Fatalf("before the first interval: %q", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		// 4 ended in 5 s: 0.8/s (printed rounded), 6 left: 7.5 s.
		want := []string{"batch convert: 6/12 done (2 resumed), 0 failed, 1 retried, 1/s, eta 8s\n"}
		if got := out.lines(); !equal(got, want) {
			t.Fatalf("after 5 s:\n%q\nwant\n%q", got, want)
		}

		p.Event(failEv(6, "goroutine 2", 2, true)) // final
		for i := 7; i < 10; i++ {
			p.Event(start(i, "goroutine 2"))
			p.Event(doneEv(i, "goroutine 2"))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		// 8 ended in 10 s, 2 left.
		want = append(want, "batch convert: 9/12 done (2 resumed), 1 failed, 1 retried, 1/s, eta 3s\n")
		if got := out.lines(); !equal(got, want) {
			t.Fatalf("after 10 s:\n%q\nwant\n%q", got, want)
		}

		time.Sleep(2500 * time.Millisecond)
		p.End()
		want = append(want, "batch convert: 9/12 done (2 resumed), 1 failed, 1 retried, 2 not run; 12.5s, 1/s\n")
		if got := out.lines(); !equal(got, want) {
			t.Fatalf("after End:\n%q\nwant\n%q", got, want)
		}
		p.End() // a no-op
		p.Event(doneEv(11, "goroutine 1"))
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := out.lines(); len(got) != len(want) {
			t.Errorf("lines after End: %q", got[len(want):])
		}
	})
}

func equal(a, b []string) bool { return strings.Join(a, "") == strings.Join(b, "") }

// Begin starts a new run: the counts start again, and a run that was not
// ended is ended first.
func TestBatchBeginAgain(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		p := progress.NewBatch(&out, progress.Bars(false))
		p.Begin(batch.JobInfo{Name: "a", Len: 1}, 0)
		p.Event(doneEv(0, "w"))
		time.Sleep(time.Second)
		p.Begin(batch.JobInfo{Name: "b", Len: 2}, 0)
		p.Event(doneEv(1, "w"))
		time.Sleep(2 * time.Second)
		p.End()
		want := []string{
			"batch a: 1/1 done, 0 failed; 1s, 1/s\n",
			"batch b: 1/2 done, 0 failed, 1 not run; 2s, 0/s\n",
		}
		if got := out.lines(); !equal(got, want) {
			t.Fatalf("got\n%q\nwant\n%q", got, want)
		}
	})
}

// NewBatch draws bars only on a terminal: a file is not one.
func TestBatchNotATerminal(t *testing.T) {
	noLeaks(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := progress.NewBatch(f)
	p.Begin(batch.JobInfo{Name: "convert", Len: 1}, 0)
	p.Event(doneEv(0, "w"))
	p.End()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^batch convert: 1/1 done, 0 failed; \S+, \d+/s\n$`).Match(b) {
		t.Errorf("output to a file: %q", b)
	}
}

// lastFrame returns what the bar display drew last (frames are separated
// by the escape sequence that erases the previous one), and the lines
// after it.
func lastFrame(s string) []string {
	if k := strings.LastIndex(s, "\x1b[J"); k >= 0 {
		s = s[k+len("\x1b[J"):]
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		out = append(out, strings.TrimRight(l, " "))
	}
	return out
}

// The bar display draws the overall bar and a line per worker; mpb draws
// the same to any writer when asked to (Bars(true)).
func TestBatchBars(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		p := progress.NewBatch(&out, progress.Bars(true), progress.Width(100))
		p.Begin(batch.JobInfo{Name: "convert", Len: 10}, 0)
		p.Event(start(0, "pid 10"))
		p.Event(start(1, "pid 11"))
		p.Event(doneEv(0, "pid 10"))
		p.Event(failEv(1, "pid 11", 1, false))
		p.Event(start(1, "pid 10"))
		p.Event(doneEv(1, "pid 10"))
		p.Event(start(2, "pid 11"))
		p.Event(failEv(2, "pid 11", 1, true))
		p.Event(start(3, "pid 10"))
		time.Sleep(4 * time.Second)
		synctest.Wait()
		frame := lastFrame(out.String())
		if len(frame) != 3 {
			t.Fatalf("frame %q, want the bar and 2 worker lines", frame)
		}
		if !strings.HasPrefix(frame[0], "batch convert: 2/10 done, 1 failed, 1 retried") || !strings.HasSuffix(frame[0], "1/s, eta 9s") {
			t.Errorf("bar %q", frame[0])
		}
		if frame[1] != "  pid 10: index 3, 2 done, 0 failed" || frame[2] != "  pid 11: index 2, 0 done, 1 failed, 1 retried" {
			t.Errorf("worker lines %q", frame[1:])
		}
		for i := 3; i < 10; i++ {
			p.Event(doneEv(i, "pid 10"))
		}
		time.Sleep(time.Second)
		p.End()
		frame = lastFrame(out.String())
		want := []string{
			"  pid 10: index 3, 9 done, 0 failed",
			"  pid 11: index 2, 0 done, 1 failed, 1 retried",
			"batch convert: 9/10 done, 1 failed, 1 retried; 5s, 2/s",
		}
		if len(frame) != 4 || !equal(frame[1:], want) {
			t.Fatalf("final frame %q, want the bar then %q", frame, want)
		}
		// The bar is complete, and says that the run ended with a failure.
		if !strings.HasPrefix(frame[0], "batch convert: 9/10 done, 1 failed, 1 retried [") || !strings.HasSuffix(frame[0], "=] ended: 1 failed, 5s") {
			t.Errorf("final bar %q", frame[0])
		}
	})
}

// With more workers than lines, the worker idle longest gives its line
// up; a run that stops early leaves its bar where it was.
func TestBatchBarsWorkerLines(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		p := progress.NewBatch(&out, progress.Bars(true), progress.WorkerLines(2))
		p.Begin(batch.JobInfo{Name: "convert", Len: 100}, 40)
		p.Event(start(40, "pid 1"))
		p.Event(start(41, "pid 2"))
		synctest.Wait()
		p.Event(doneEv(40, "pid 1")) // pid 2 is now the one idle longest
		p.Event(start(42, "pid 3"))
		time.Sleep(time.Second)
		p.End()
		frame := lastFrame(out.String())
		want := []string{
			"  pid 1: index 40, 1 done, 0 failed",
			"  pid 3: index 42, 0 done, 0 failed",
			"batch convert: 41/100 done (40 resumed), 0 failed, 59 not run; 1s, 1/s",
		}
		if len(frame) != 4 || !equal(frame[1:], want) {
			t.Fatalf("final frame %q, want the bar then %q", frame, want)
		}
	})
}

// TestBatchBarsUnknownWorker: a start on a worker not known yet (a
// replacement that is starting) makes no line; the outcome's worker does.
func TestBatchBarsUnknownWorker(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		p := progress.NewBatch(&out, progress.Bars(true))
		p.Begin(batch.JobInfo{Name: "convert", Len: 2}, 0)
		p.Event(start(0, "pid 1"))
		p.Event(doneEv(0, "pid 1"))
		p.Event(start(1, ""))
		p.Event(doneEv(1, "pid 2"))
		time.Sleep(time.Second)
		p.End()
		frame := lastFrame(out.String())
		want := []string{
			"  pid 1: index 0, 1 done, 0 failed",
			"  pid 2: index -, 1 done, 0 failed",
			"batch convert: 2/2 done, 0 failed; 1s, 2/s",
		}
		if len(frame) != 4 || !equal(frame[1:], want) {
			t.Fatalf("final frame %q, want the bar then %q", frame, want)
		}
	})
}

func TestBatchBarsNoWorkerLines(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		p := progress.NewBatch(&out, progress.Bars(true), progress.WorkerLines(0))
		p.Begin(batch.JobInfo{Name: "empty", Len: 0}, 0)
		p.End()
		frame := lastFrame(out.String())
		if len(frame) != 2 || frame[1] != "batch empty: 0/0 done, 0 failed; 0s, 0/s" {
			t.Fatalf("final frame %q", frame)
		}
	})
}

// Progress counts the events of a real run: retries are not failures, a
// failure is counted once, when it is final.
func TestBatchRun(t *testing.T) {
	noLeaks(t)
	var out syncBuffer
	p := progress.NewBatch(&out, progress.Bars(false))
	params := batchtest.Params{N: 20, Dir: t.TempDir(), Fail: map[int]string{3: "error", 5: "flaky"}}
	res, err := batchtest.Job.Run(context.Background(), params, batch.WithBackend(batch.Goroutines(2)),
		batch.Retries(2), batch.ContinueOnError(), batch.Events(p), batch.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 19 || res.Failed != 1 {
		t.Fatalf("done %d, failed %d", res.Done, res.Failed)
	}
	// 3 fails 3 times (2 retries), 5 fails twice then succeeds.
	want := regexp.MustCompile(`^batch ferry.batchtest/job: 19/20 done, 1 failed, 4 retried; \S+, \d+/s\n$`)
	if got := out.String(); !want.MatchString(got) {
		t.Errorf("output %q, want %v", got, want)
	}
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// Event must not wait for the output: a writer that blocks holds up the
// renderer, not the run.
func TestBatchEventNeverBlocks(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		r, w := io.Pipe()
		p := progress.NewBatch(w, progress.Bars(false), progress.Interval(time.Second))
		p.Begin(batch.JobInfo{Name: "stuck", Len: 1000}, 0)
		time.Sleep(time.Second) // the renderer is now stuck writing its first line
		synctest.Wait()
		for i := range 1000 {
			p.Event(start(i, fmt.Sprint("w", i%7)))
			p.Event(doneEv(i, fmt.Sprint("w", i%7)))
		}
		got := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			got <- string(b)
		}()
		p.End()
		w.Close()
		want := "batch stuck: 0/1000 done, 0 failed, 0/s\nbatch stuck: 1000/1000 done, 0 failed; 1s, 1000/s\n"
		if s := <-got; s != want {
			t.Errorf("got %q, want %q", s, want)
		}
	})
}

// noLeaks makes the test fail if, once it has ended, a goroutine or a file
// descriptor it started remains.
func noLeaks(t *testing.T) {
	t.Helper()
	leakcheck.Check(t)
}

// LogWriter passes log lines through the bars' output while they are
// drawn, and to its fallback otherwise; the start of a line not ended when
// the bars stop goes to the fallback then.
func TestBatchLogWriter(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out, fallback syncBuffer
		p := progress.NewBatch(&out, progress.Bars(true))
		logs := p.LogWriter(&fallback)
		io.WriteString(logs, "before\n")
		p.Begin(batch.JobInfo{Name: "convert", Len: 1}, 0)
		io.WriteString(logs, "during\nthe start of a line")
		p.Event(doneEv(0, "w"))
		time.Sleep(time.Second)
		p.End()
		io.WriteString(logs, ", its end\nafter\n")
		if got, want := fallback.String(), "before\nthe start of a line, its end\nafter\n"; got != want {
			t.Errorf("fallback got %q, want %q", got, want)
		}
		if got := out.String(); strings.Count(got, "during\n") != 1 || strings.Contains(got, "the start") ||
			strings.Index(got, "during\n") > strings.LastIndex(got, "batch convert: 1/1 done") {
			t.Errorf("output %q: want the line above the last frame", got)
		}
	})
}
