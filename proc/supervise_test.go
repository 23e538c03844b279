//go:build linux && !ferrynolinux

package proc_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrypipe/ferry/internal/crash"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// How a test worker should fail after yielding some items.
const (
	dieExit     = "exit"
	dieKill     = "sigkill"
	diePanic    = "goroutine-panic"
	dieSegfault = "segfault"
)

type dieArgs struct {
	After int    // items to yield first
	How   string // one of the die… constants
}

var dying = proc.Iter("sv.dying", func(ctx context.Context, a dieArgs) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := range a.After {
			if !yield(i, nil) {
				return
			}
		}
		fmt.Fprintf(os.Stderr, "about to die by %s\n", a.How)
		switch a.How {
		case dieExit:
			os.Exit(3)
		case dieKill:
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case diePanic:
			go panic("unrecovered in a goroutine")
		case dieSegfault:
			crash.Segfault()
		}
		select {}
	}
})

// picky is an item whose codec cannot encode 3.
type picky int

type pickyCodec struct{}

func (pickyCodec) Append(dst []byte, v picky) ([]byte, error) {
	if v == 3 {
		return dst, errors.New("picky: 3 cannot be encoded")
	}
	return strconv.AppendInt(dst, int64(v), 10), nil
}

func (pickyCodec) Decode(src []byte) (picky, error) {
	n, err := strconv.Atoi(string(src))
	return picky(n), err
}

func init() { proc.RegisterCodec[picky](pickyCodec{}) }

var faulty = proc.Iter("sv.faulty", func(ctx context.Context, n int) iter.Seq2[picky, error] {
	return func(yield func(picky, error) bool) {
		for i := range n {
			v := picky(i)
			var err error
			switch i {
			case 2:
				err = &os.PathError{Op: "open", Path: "/data/2", Err: os.ErrNotExist}
			case 3: // cannot be encoded
			case 5:
				panic("iterator panicked at 5")
			}
			if !yield(v, err) {
				return
			}
		}
	}
})

var blocking = proc.Iter("sv.blocking", func(ctx context.Context, _ struct{}) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		<-ctx.Done()
	}
})

var bigItems = proc.Iter("sv.big", func(ctx context.Context, n int) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		b := make([]byte, 8<<20)
		for range n {
			if !yield(b, nil) {
				return
			}
		}
	}
})

var envProbe = proc.Iter("sv.env", func(ctx context.Context, keys []string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for _, k := range keys {
			v := os.Getenv(k)
			switch k {
			case "initialized":
				v = initialized
			case "memlimit":
				v = strconv.FormatInt(debug.SetMemoryLimit(-1), 10)
			}
			if !yield(v, nil) {
				return
			}
		}
	}
})

var initialized string

var warm = proc.Init("sv.warm", func(context.Context) error {
	initialized = "warm"
	return nil
})

var brokenInit = proc.Init("sv.broken", func(context.Context) error { return errors.New("no model file") })

var hangingInit = proc.Init("sv.hang", func(ctx context.Context) error { select {} })

var squares = proc.Pipeline("sv.squares", func(n int) (*pipeline.Config[int], error) {
	src := pipeline.FromSlice(seqN(n), pipeline.Name("numbers"))
	sq := pipeline.Pipe(src, func(_ context.Context, v int) (int, error) { return v * v, nil }, pipeline.Name("square"), pipeline.Concurrency(2), pipeline.Ordered())
	return pipeline.Sink(sq, 8).With(pipeline.Continuous()), nil
})

func seqN(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// svGone waits up to limit for a process that is not our child to exit.
func svGone(t *testing.T, pid int, limit time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(limit/time.Millisecond))
	if err != nil || n != 1 {
		t.Fatalf("process %d still running after %v (%v)", pid, limit, err)
	}
}

func TestWorkerDeathIsReportedWithItsCause(t *testing.T) {
	cases := []struct {
		how    string
		code   int
		signal string
		stderr string
	}{
		{dieExit, 3, "", "about to die by exit"},
		{dieKill, -1, "killed", "about to die by sigkill"},
		{diePanic, 2, "", "unrecovered in a goroutine"},
		{dieSegfault, 2, "", "SIGSEGV"},
	}
	for _, tc := range cases {
		t.Run(tc.how, func(t *testing.T) {
			noLeaks(t)
			it, err := proc.Iterate(t.Context(), dying, dieArgs{After: 5, How: tc.how}, proc.Logger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			var got []int
			var werr *proc.WorkerError
			for v, err := range it.All(t.Context()) {
				if err != nil {
					if !errors.As(err, &werr) {
						t.Fatalf("err = %v, want a *WorkerError", err)
					}
					continue
				}
				got = append(got, v)
			}
			// Items still queued in the worker die with it; those that
			// arrive are in order and the death is reported after them.
			if !slices.Equal(got, seqN(len(got))) || len(got) > 5 {
				t.Fatalf("items before the death = %v, want a prefix of 0..4", got)
			}
			if werr == nil {
				t.Fatal("the pass ended without reporting the death")
			}
			if werr.Name != "sv.dying" || werr.PID != it.PID() || werr.ExitCode != tc.code || werr.Signal != tc.signal || !strings.Contains(werr.Stderr, tc.stderr) {
				t.Fatalf("WorkerError = %+v\nwant exit %d, signal %q, stderr with %q", werr, tc.code, tc.signal, tc.stderr)
			}
			// The next pass reports the same death at once.
			for _, err := range it.All(t.Context()) {
				if !errors.As(err, &werr) {
					t.Fatalf("next pass: %v, want the *WorkerError", err)
				}
			}
		})
	}
}

func TestDeathBetweenPassesIsReported(t *testing.T) {
	noLeaks(t)
	it, err := proc.Iterate(t.Context(), count, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for _, err := range it.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(it.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var werr *proc.WorkerError
	for _, err := range it.All(t.Context()) {
		if !errors.As(err, &werr) || werr.Signal != "killed" {
			t.Fatalf("err = %v, want a *WorkerError for SIGKILL", err)
		}
	}
	if werr == nil {
		t.Fatal("no error after the worker was killed")
	}
}

func TestWorkerErrorsReachTheCaller(t *testing.T) {
	noLeaks(t)
	it, err := proc.Iterate(t.Context(), faulty, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var items []int
	var errs []*proc.RemoteError
	for v, err := range it.All(t.Context()) {
		var re *proc.RemoteError
		switch {
		case errors.As(err, &re):
			errs = append(errs, re)
		case err != nil:
			t.Fatal(err)
		default:
			items = append(items, int(v))
		}
	}
	if !slices.Equal(items, []int{0, 1, 4}) {
		t.Fatalf("items = %v, want 0, 1, 4 (2 and 3 fail, 5 panics)", items)
	}
	if len(errs) != 3 {
		t.Fatalf("%d errors, want 3: %v", len(errs), errs)
	}
	if e := errs[0]; e.Type != "*fs.PathError" || e.Index != 2 || !strings.Contains(e.Message, "/data/2") {
		t.Errorf("returned error = %+v", e)
	}
	if e := errs[1]; e.Type != "*proc.CodecError" || e.Index != 3 || !strings.Contains(e.Message, "3 cannot be encoded") {
		t.Errorf("encoding error = %+v", e)
	}
	if e := errs[2]; e.Type != "panic" || e.Message != "iterator panicked at 5" || !strings.Contains(e.Stack, "supervise_test.go") {
		t.Errorf("panic = %+v", e)
	}
}

func TestBreakThenNextPassIsClean(t *testing.T) {
	noLeaks(t)
	it, err := proc.Iterate(t.Context(), count, 5000, proc.BufferSize(16))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for round := range 5 {
		k := 0
		for v, err := range it.All(t.Context()) {
			if err != nil || v != k {
				t.Fatalf("round %d item %d: %v, %v", round, k, v, err)
			}
			if k++; k == 10+round*100 {
				break
			}
		}
		var got []int
		for v, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, seqN(5000)) {
			t.Fatalf("round %d: full pass has %d items, want 0..4999 in order", round, len(got))
		}
	}
}

func TestPerWorkerEnvironmentAndInitializers(t *testing.T) {
	noLeaks(t)
	it, err := proc.Iterate(t.Context(), envProbe, []string{"GOMAXPROCS", "FERRY_TEST", "initialized", "memlimit"},
		proc.GOMAXPROCS(1), proc.GOMEMLIMIT(256<<20), proc.Env("FERRY_TEST=yes"), proc.Initializers(warm))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var got []string
	for v, err := range it.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if want := []string{"1", "yes", "warm", strconv.Itoa(256 << 20)}; !slices.Equal(got, want) {
		t.Fatalf("worker saw %q, want %q", got, want)
	}
}

func TestStartFailures(t *testing.T) {
	noLeaks(t)
	_, err := proc.Iterate(t.Context(), count, 1, proc.Initializers(brokenInit))
	var re *proc.RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "no model file") {
		t.Fatalf("failed initializer: %v", err)
	}
	_, err = proc.Iterate(t.Context(), count, 1, proc.Initializers(hangingInit), proc.StartTimeout(200*time.Millisecond))
	var te *proc.TimeoutError
	if !errors.As(err, &te) || te.What != "start" {
		t.Fatalf("hanging initializer: %v, want a start *TimeoutError", err)
	}
	_, err = proc.Iterate(t.Context(), count, 1, proc.Binary("/nonexistent/worker"))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/worker") {
		t.Fatalf("missing binary: %v", err)
	}
}

func TestDuplicateRegistrationPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "sv.env") {
			t.Fatalf("recovered %v, want a panic naming the duplicate", r)
		}
	}()
	proc.Iter("sv.env", func(context.Context, int) iter.Seq2[int, error] { return nil })
}

func TestInactivityTimeout(t *testing.T) {
	noLeaks(t)
	it, err := proc.Iterate(t.Context(), blocking, struct{}{}, proc.InactivityTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for _, err := range it.All(t.Context()) {
		var te *proc.TimeoutError
		if !errors.As(err, &te) || te.What != "inactivity" {
			t.Fatalf("err = %v, want an inactivity *TimeoutError", err)
		}
	}
}

func TestStderrIsForwardedToTheLog(t *testing.T) {
	noLeaks(t)
	h := &lines{}
	it, err := proc.Iterate(t.Context(), dying, dieArgs{How: dieExit}, proc.Logger(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	pid := it.PID()
	for range it.All(t.Context()) {
	}
	it.Close()
	if !h.has(fmt.Sprintf("worker: about to die by exit worker=sv.dying pid=%d", pid)) {
		t.Fatalf("log = %q", h.all())
	}
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (h *lines) Enabled(context.Context, slog.Level) bool { return true }
func (h *lines) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{h, as}
}
func (h *lines) WithGroup(string) slog.Handler { return h }
func (h *lines) Handle(_ context.Context, r slog.Record) error {
	return (&withAttrs{h, nil}).Handle(context.Background(), r)
}
func (h *lines) has(s string) bool { return slices.Contains(h.all(), s) }
func (h *lines) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.l)
}

type withAttrs struct {
	h  *lines
	as []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{w.h, append(slices.Clone(w.as), as...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }
func (w *withAttrs) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	for _, a := range w.as {
		s += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	w.h.l = append(w.h.l, s)
	return nil
}

func TestCloseIsBoundedWhileTheWorkerIsBlockedWriting(t *testing.T) {
	noLeaks(t)
	it, err := proc.Iterate(t.Context(), bigItems, 100, proc.BufferSize(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range it.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		break // the worker goes on writing 8 MiB items nobody reads
	}
	start := time.Now()
	it.Close()
	// The teardown budget is part of the contract: abort, grace, SIGTERM,
	// SIGKILL, all within 2 s.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

func TestRunPipelineEpochsStayCompleteAcrossBreaks(t *testing.T) {
	noLeaks(t)
	it, err := proc.RunPipeline(t.Context(), squares, 300, proc.BufferSize(8))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	want := make([]int, 300)
	for i := range want {
		want[i] = i * i
	}
	for round := range 6 {
		if round%2 == 1 {
			k := 0
			for _, err := range it.All(t.Context()) {
				if err != nil {
					t.Fatal(err)
				}
				if k++; k == round*20 {
					break
				}
			}
			continue
		}
		var got []int
		for v, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: epoch of %d items, want the 300 squares in order", round, len(got))
		}
	}
	st, err := it.PipelineStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Stages) != 2 || st.Stages[1].Name != "square" || st.Stages[1].Invocations < 900 {
		t.Fatalf("worker stats = %+v", st.Stages)
	}
}

// TestParentKilledWorkersExit runs a parent in a child process, kills it
// with SIGKILL and checks that its workers exit within a second.
func TestParentKilledWorkersExit(t *testing.T) {
	if os.Getenv("FERRY_SV_PARENT") == "1" {
		var its []*proc.Iterable[int]
		for range 2 {
			it, err := proc.Iterate(context.Background(), blocking, struct{}{})
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			its = append(its, it)
			fmt.Println(it.PID())
		}
		for _, err := range its[0].All(context.Background()) {
			fmt.Println("error", err)
		}
		select {}
	}
	noLeaks(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestParentKilledWorkersExit$")
	cmd.Env = append(os.Environ(), "FERRY_SV_PARENT=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var pids []int
	for len(pids) < 2 && sc.Scan() {
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("parent said %q", sc.Text())
		}
		pids = append(pids, pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range pids {
		svGone(t, pid, time.Second)
	}
}
