//go:build linux && !ferrynolinux

package proc_test

// Tests of the worker runtime through its public API: that where a function
// runs does not change what it gives (results, errors, cancellation), and
// that the runtime keeps its promises about processes (nothing escapes,
// nothing cascades, one binary), failures (honest reasons, bounded output,
// memory limits) and hung calls.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// ---- registered work ----

// errRtNotFound is a user sentinel registered with RegisterErrors.
var errRtNotFound = errors.New("rt: not found")

// rtError is a user error type registered with RegisterErrorType.
type rtError struct {
	Code  int
	Field string
}

func (e *rtError) Error() string { return fmt.Sprintf("rt: field %s: code %d", e.Field, e.Code) }

func init() {
	proc.RegisterErrors(errRtNotFound)
	proc.RegisterErrorType[*rtError]()
}

// rtIn is the input of rt.classify.
type rtIn struct {
	Kind   string // "value", "sentinel", "typed", "canceled", "wait"
	V      int
	Marker string // "wait": created once the function runs
}

// rtClassifyFn returns V² for an even V and skips an odd one; fails with a
// registered sentinel, a registered error type or context.Canceled; or
// waits for its context to end and returns its error.
func rtClassifyFn(ctx context.Context, in rtIn) (int, error) {
	switch in.Kind {
	case "value":
		if in.V%2 != 0 {
			return 0, fmt.Errorf("odd %d: %w", in.V, pipeline.ErrSkip)
		}
		return in.V * in.V, nil
	case "sentinel":
		return 0, fmt.Errorf("lookup %d: %w", in.V, errRtNotFound)
	case "typed":
		return 0, fmt.Errorf("validate: %w", &rtError{Code: in.V, Field: "name"})
	case "canceled":
		return 0, fmt.Errorf("gave up: %w", context.Canceled)
	case "wait":
		if err := os.WriteFile(in.Marker, nil, 0o600); err != nil {
			return 0, err
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return 0, fmt.Errorf("unknown kind %q", in.Kind)
}

var rtClassify = proc.Func("rt.classify", rtClassifyFn)

// rtSquare has the name testdata/nomain registers.
var rtSquare = proc.Func("rt.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

// rtWaitIn is the input of rt.wait.
type rtWaitIn struct {
	Mode    string // "block", "deadline", "quick"
	Started string // "block": created once it runs
	Marker  string // "block": receives ctx.Err() once the context has ended
}

var rtWait = proc.Func("rt.wait", func(ctx context.Context, in rtWaitIn) (string, error) {
	switch in.Mode {
	case "block":
		if err := os.WriteFile(in.Started, nil, 0o600); err != nil {
			return "", err
		}
		<-ctx.Done()
		if err := rtWriteAtomic(in.Marker, ctx.Err().Error()); err != nil {
			return "", err
		}
		return "", ctx.Err()
	case "deadline":
		d, ok := ctx.Deadline()
		if !ok {
			return "none", nil
		}
		return strconv.FormatInt(d.UnixNano(), 10), nil
	case "quick":
		return "quick " + strconv.Itoa(os.Getpid()), nil
	}
	return "", fmt.Errorf("unknown mode %q", in.Mode)
})

// rtFlatIn is the input of rt.flat.
type rtFlatIn struct {
	N      int
	Hold   bool   // yield one output, then wait for the context to end
	Marker string // Hold: receives ctx.Err() once the context has ended
}

var rtFlat = proc.FlatFunc("rt.flat", func(ctx context.Context, in rtFlatIn) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		if in.Hold {
			if !yield(in.N*10, nil) {
				return
			}
			<-ctx.Done()
			_ = rtWriteAtomic(in.Marker, ctx.Err().Error())
			return
		}
		if !yield(in.N*10, nil) {
			return
		}
		if !yield(0, fmt.Errorf("output 1 of %d: %w", in.N, errRtNotFound)) {
			return
		}
		yield(in.N*10+2, nil)
	}
})

// rtSpawn starts processes that outlive the call ("sleep": returns the pid
// of a `sleep 1000`; "hang": writes that pid to the file named by Pidfile
// and never returns; "escape": returns the pid of a `sleep 1000` that left
// the worker's process group) or ends the worker ("exit": status 3).
type rtSpawnIn struct {
	Mode    string
	Pidfile string
}

var rtSpawn = proc.Func("rt.spawn", func(ctx context.Context, in rtSpawnIn) (int, error) {
	switch in.Mode {
	case "escape":
		// A `sleep 1000` that leaves the worker's process group (its own
		// session, as a daemon would) but writes to the worker's stderr.
		cmd := exec.Command("sleep", "1000")
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	case "sleep", "hang":
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		pid := cmd.Process.Pid
		if in.Mode == "sleep" {
			return pid, nil
		}
		if err := rtWriteAtomic(in.Pidfile, strconv.Itoa(pid)); err != nil {
			return 0, err
		}
		select {}
	case "exit":
		os.Exit(3)
	}
	return 0, fmt.Errorf("unknown mode %q", in.Mode)
})

// rtEnv returns the FERRY_WORKER* variables of the worker's environment,
// and of the environment of a program it starts.
var rtEnv = proc.Func("rt.env", func(ctx context.Context, _ int) ([]string, error) {
	var found []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FERRY_WORKER") {
			found = append(found, "worker: "+kv)
		}
	}
	out, err := exec.CommandContext(ctx, "env").Output()
	if err != nil {
		return nil, err
	}
	for _, kv := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(kv, "FERRY_WORKER") {
			found = append(found, "env: "+kv)
		}
	}
	return found, nil
})

// rtHangIn is the input of rt.hang.
type rtHangIn struct {
	V       int
	Hang    bool   // never return, whatever the context
	Started string // Hang: created once it runs
}

var rtHang = proc.Func("rt.hang", func(_ context.Context, in rtHangIn) (int, error) {
	if in.Hang {
		if err := os.WriteFile(in.Started, nil, 0o600); err != nil {
			return 0, err
		}
		select {}
	}
	return in.V, nil
})

// rtNoisy writes 20 MB to stderr without a newline, then exits with
// status 7.
var rtNoisy = proc.Func("rt.noisy", func(context.Context, int) (int, error) {
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	for range 20 {
		if _, err := os.Stderr.Write(chunk); err != nil {
			return 0, err
		}
	}
	os.Exit(7)
	return 0, nil
})

// rtLog logs an error record through slog's default logger.
var rtLog = proc.Func("rt.log", func(context.Context, int) (int, error) {
	slog.Error("boom", "k", 42)
	return os.Getpid(), nil
})

// rtExeOut is what rt.exe reports about the worker's program.
type rtExeOut struct {
	Exe  string // readlink /proc/self/exe
	Arg0 string
	PID  int
}

var rtExe = proc.Func("rt.exe", func(context.Context, int) (rtExeOut, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return rtExeOut{}, err
	}
	return rtExeOut{Exe: exe, Arg0: os.Args[0], PID: os.Getpid()}, nil
})

// rtExit7 makes the worker exit with status 7 for 0, and returns its input
// otherwise.
var rtExit7 = proc.Func("rt.exit7", func(_ context.Context, v int) (int, error) {
	if v == 0 {
		os.Exit(7)
	}
	return v, nil
})

// rtAlloc allocates MiB mebibytes in 1 MiB slices, touching every page and
// keeping them all alive, and returns how many it allocated.
var rtAlloc = proc.Func("rt.alloc", func(_ context.Context, mib int) (int, error) {
	var keep [][]byte
	for range mib {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	n := 0
	for _, b := range keep {
		n += int(b[0])
	}
	return n, nil
})

// ---- helpers ----

// rtWriteAtomic writes a file that readers see whole or not at all.
func rtWriteAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// rtWaitFile polls for a file written by another process, up to limit,
// and returns its content.
func rtWaitFile(t *testing.T, path string, limit time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return string(b)
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not appear within %v", path, limit)
		case <-tick.C:
		}
	}
}

// rtDead reports whether process pid has exited: it no longer exists, or
// it is a zombie waiting to be reaped (by a parent that is not us, such as
// init, which may never reap it here).
func rtDead(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH)
	}
	// pid (comm) STATE ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return true
	}
	return false
}

// rtWaitDead waits up to limit for process pid to exit.
func rtWaitDead(t *testing.T, what string, pid int, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !rtDead(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("%s (pid %d) still runs %v later", what, pid, limit)
		case <-tick.C:
		}
	}
}

// rtRecorder is a slog.Handler that keeps every record with the attributes
// of its logger (WithAttrs) followed by its own.
type rtRecorder struct {
	mu   *sync.Mutex
	recs *[]rtRecord
	with []slog.Attr
}

type rtRecord struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

func newRTRecorder() *rtRecorder {
	return &rtRecorder{mu: new(sync.Mutex), recs: new([]rtRecord)}
}

func (h *rtRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *rtRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &rtRecorder{mu: h.mu, recs: h.recs, with: append(slices.Clone(h.with), as...)}
}
func (h *rtRecorder) WithGroup(string) slog.Handler { return h }
func (h *rtRecorder) Handle(_ context.Context, r slog.Record) error {
	as := slices.Clone(h.with)
	r.Attrs(func(a slog.Attr) bool { as = append(as, a); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rtRecord{level: r.Level, msg: r.Message, attrs: as})
	return nil
}

func (h *rtRecorder) records() []rtRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.recs)
}

// attr returns the value of the attribute key, and whether there is one.
func (r rtRecord) attr(key string) (slog.Value, bool) {
	for _, a := range r.attrs {
		if a.Key == key {
			return a.Value.Resolve(), true
		}
	}
	return slog.Value{}, false
}

// ---- 1. placement transparency ----

// rtPlacement runs rt.classify somewhere: its call has the signature of a
// pipeline stage.
type rtPlacement struct {
	name string
	call func(t *testing.T) func(context.Context, rtIn) (int, error)
}

var rtPlacements = []rtPlacement{
	{"goroutine", func(*testing.T) func(context.Context, rtIn) (int, error) {
		return func(ctx context.Context, in rtIn) (int, error) {
			type result struct {
				v   int
				err error
			}
			done := make(chan result, 1)
			go func() {
				v, err := rtClassifyFn(ctx, in)
				done <- result{v, err}
			}()
			r := <-done
			return r.v, r.err
		}
	}},
	{"in-process", func(t *testing.T) func(context.Context, rtIn) (int, error) {
		return newTestPool(t, rtClassify, proc.InProcess(), proc.Workers(2)).Call
	}},
	{"workers", func(t *testing.T) func(context.Context, rtIn) (int, error) {
		return newTestPool(t, rtClassify, proc.Workers(2)).Call
	}},
}

// rtAnswers is what errors.Is and errors.As say about an error.
type rtAnswers struct {
	Skip, NotFound, Canceled, Deadline, EOF bool
	Typed                                   bool
	Code                                    int
	Field                                   string
}

func rtAsk(err error) rtAnswers {
	a := rtAnswers{
		Skip:     errors.Is(err, pipeline.ErrSkip),
		NotFound: errors.Is(err, errRtNotFound),
		Canceled: errors.Is(err, context.Canceled),
		Deadline: errors.Is(err, context.DeadlineExceeded),
		EOF:      errors.Is(err, io.EOF),
	}
	var re *rtError
	if a.Typed = errors.As(err, &re); a.Typed {
		a.Code, a.Field = re.Code, re.Field
	}
	return a
}

// TestRuntimePlacementTransparency runs the same calls in a goroutine, in
// an InProcess pool and in a pool of worker processes: results, and the
// answers of errors.Is and errors.As about errors (a wrapped ErrSkip, a
// registered sentinel, a registered error type, context.Canceled returned
// or caused by the caller's cancellation) are the same everywhere, and a
// pipeline skips the odd items in every placement.
func TestRuntimePlacementTransparency(t *testing.T) {
	cases := []struct {
		in   rtIn
		want rtAnswers
		msg  string // in the error's text
	}{
		{rtIn{Kind: "value", V: 3}, rtAnswers{Skip: true}, "odd 3: pipeline: skip item"},
		{rtIn{Kind: "sentinel", V: 7}, rtAnswers{NotFound: true}, "lookup 7: rt: not found"},
		{rtIn{Kind: "typed", V: 42}, rtAnswers{Typed: true, Code: 42, Field: "name"}, "validate: rt: field name: code 42"},
		{rtIn{Kind: "canceled"}, rtAnswers{Canceled: true}, "gave up: context canceled"},
	}
	items := make([]rtIn, 20)
	for i := range items {
		items[i] = rtIn{Kind: "value", V: i}
	}
	var wantOut []int
	for i := 0; i < 20; i += 2 {
		wantOut = append(wantOut, i*i)
	}
	for _, pl := range rtPlacements {
		t.Run(pl.name, func(t *testing.T) {
			noLeaks(t)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			call := pl.call(t)
			if v, err := call(ctx, rtIn{Kind: "value", V: 6}); err != nil || v != 36 {
				t.Errorf("value 6: %v, %v; want 36", v, err)
			}
			for _, tc := range cases {
				_, err := call(ctx, tc.in)
				if err == nil {
					t.Errorf("%+v: no error", tc.in)
					continue
				}
				if got := rtAsk(err); got != tc.want {
					t.Errorf("%+v: error %q (%T):\n errors.Is/As say %+v\n want            %+v", tc.in, err, err, got, tc.want)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("%+v: error %q does not say %q", tc.in, err, tc.msg)
				}
			}

			// The caller cancels a running call: the function returns
			// ctx.Err() and the caller gets context.Canceled.
			marker := filepath.Join(t.TempDir(), "running")
			cctx, ccancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				_, err := call(cctx, rtIn{Kind: "wait", Marker: marker})
				done <- err
			}()
			rtWaitFile(t, marker, 30*time.Second)
			ccancel()
			select {
			case err := <-done:
				if got, want := rtAsk(err), (rtAnswers{Canceled: true}); got != want {
					t.Errorf("cancelled call: %v: errors.Is/As say %+v, want %+v", err, got, want)
				}
			case <-ctx.Done():
				t.Fatal("the cancelled call did not return")
			}

			// In a pipeline, ErrSkip skips the odd items.
			st := pipeline.Pipe(pipeline.FromSlice(items), call, pipeline.Name("classify"), pipeline.Concurrency(4))
			p, err := pipeline.Build(pipeline.Sink(st, 8), pipeline.Logger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var got []int
			for v, err := range p.Epoch(ctx) {
				if err != nil {
					t.Fatalf("pipeline: %v", err)
				}
				got = append(got, v)
			}
			slices.Sort(got)
			if !slices.Equal(got, wantOut) {
				t.Errorf("pipeline output %v, want %v", got, wantOut)
			}
			ps := p.Stats()
			if ps.Failures != 0 {
				t.Errorf("pipeline stats: %d failures, want 0", ps.Failures)
			}
			for _, s := range ps.Stages {
				if s.Name == "classify" && s.Skipped != 10 {
					t.Errorf("stage classify skipped %d items, want 10", s.Skipped)
				}
			}
		})
	}
}

// ---- 2. cancellation ----

// TestRuntimeCancellationReachesWorker checks that the caller's
// cancellation ends the function's context in the worker, that the next
// call on that worker runs (it is not stuck behind the cancelled one), and
// that the caller's deadline travels with the call.
func TestRuntimeCancellationReachesWorker(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool := newTestPool(t, rtWait, proc.Workers(1))
	pid := poolPIDs(pool.Stats())[0]
	dir := t.TempDir()
	in := rtWaitIn{Mode: "block", Started: filepath.Join(dir, "started"), Marker: filepath.Join(dir, "ended")}
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := pool.Call(cctx, in)
		done <- err
	}()
	rtWaitFile(t, in.Started, 30*time.Second)
	ccancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	// One worker, one call at a time: this call runs only once the
	// cancelled one has returned in the worker.
	qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
	defer qcancel()
	got, err := pool.Call(qctx, rtWaitIn{Mode: "quick"})
	if want := "quick " + strconv.Itoa(pid); err != nil || got != want {
		t.Fatalf("call after the cancelled one: %q, %v; want %q (the same worker, promptly)", got, err, want)
	}
	if msg := rtWaitFile(t, in.Marker, 10*time.Second); msg != context.Canceled.Error() {
		t.Errorf("the worker's function saw its context end with %q, want %q", msg, context.Canceled.Error())
	}

	// The deadline travels with the call.
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	deadline, _ := dctx.Deadline()
	got, err = pool.Call(dctx, rtWaitIn{Mode: "deadline"})
	if want := strconv.FormatInt(deadline.UnixNano(), 10); err != nil || got != want {
		t.Errorf("deadline in the worker: %q, %v; want %q", got, err, want)
	}
	if got, err := pool.Call(context.WithoutCancel(ctx), rtWaitIn{Mode: "deadline"}); err != nil || got != "none" {
		t.Errorf("deadline in the worker of a call without one: %q, %v; want none", got, err)
	}
	if st := pool.Stats(); st.Restarts != 0 || st.Timeouts != 0 || len(st.Workers) != 1 || st.Workers[0].PID != pid {
		t.Errorf("stats: %+v; want the first worker, never restarted", st)
	}
}

// ---- 3. FlatFunc ----

// TestRuntimeFlatPool checks that a flat call streams its outputs, a
// failed one among them as an error, and that breaking out of the loop
// cancels the call in the worker.
func TestRuntimeFlatPool(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool, err := proc.NewFlatPool(ctx, rtFlat, poolQuiet, proc.Workers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	pid := pool.Stats().Workers[0].PID

	check := func(n int) {
		t.Helper()
		var vals []int
		var errs []error
		for v, err := range pool.Call(ctx, rtFlatIn{N: n}) {
			if err != nil {
				errs = append(errs, err)
				vals = append(vals, -1)
				continue
			}
			vals = append(vals, v)
		}
		if want := []int{n * 10, -1, n*10 + 2}; !slices.Equal(vals, want) {
			t.Fatalf("call %d: outputs %v (errors %v), want %v", n, vals, errs, want)
		}
		var re *proc.RemoteError
		if !errors.Is(errs[0], errRtNotFound) || !errors.As(errs[0], &re) || re.Index != 1 || re.PID != pid ||
			!strings.Contains(errs[0].Error(), fmt.Sprintf("output 1 of %d: rt: not found", n)) {
			t.Errorf("call %d: failed output: %v (%+v)", n, errs[0], re)
		}
	}
	check(1)

	// Break after the first output: the function's context ends.
	marker := filepath.Join(t.TempDir(), "ended")
	n := 0
	for v, err := range pool.Call(ctx, rtFlatIn{N: 5, Hold: true, Marker: marker}) {
		if err != nil || v != 50 {
			t.Fatalf("first output: %v, %v", v, err)
		}
		n++
		break
	}
	if n != 1 {
		t.Fatalf("%d outputs before the break", n)
	}
	if msg := rtWaitFile(t, marker, 10*time.Second); msg != context.Canceled.Error() {
		t.Errorf("after the break, the worker's function saw its context end with %q, want %q", msg, context.Canceled.Error())
	}
	// The worker runs one call at a time: it is free again.
	check(2)
	if st := pool.Stats(); st.Restarts != 0 || st.Workers[0].PID != pid || st.InFlight != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// ---- 4. forgotten bootstrap ----

// TestRuntimeForgottenBootstrap starts workers from a program that
// registers the function but does not call proc.Main: one whose main
// starts a pool of its own (which would cascade), one whose main sleeps.
// Both fail the start with ErrNoBootstrap, in seconds, and only the first
// copy of the program runs main.
func TestRuntimeForgottenBootstrap(t *testing.T) {
	bin := nomainProgram(t)
	for _, tc := range []struct {
		mode, stderr string
	}{
		{"cascade", "a worker process tried to start workers of its own"},
		{"sleep", "main did not call proc.Main within 1.5s"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			// The bound is the test's: the pool's start timeout is longer.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			pool, err := proc.NewPool(ctx, rtSquare, poolQuiet, proc.Workers(1), proc.Binary(bin),
				proc.Env("RT_NOMAIN_MODE="+tc.mode, "RT_NOMAIN_DIR="+dir))
			if err == nil {
				pool.Close()
				t.Fatal("NewPool with a program that does not call proc.Main succeeded")
			}
			if !errors.Is(err, proc.ErrNoBootstrap) || !strings.Contains(err.Error(), "proc.Main") {
				t.Fatalf("NewPool: %v; want ErrNoBootstrap, mentioning proc.Main", err)
			}
			var we *proc.WorkerError
			if !errors.As(err, &we) || we.ExitCode != 3 || !strings.Contains(we.Stderr, tc.stderr) {
				t.Errorf("NewPool: %v; want the *WorkerError of an exit with status 3 saying %q", err, tc.stderr)
			}
			ran, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var pids []string
			for _, e := range ran {
				pids = append(pids, e.Name())
			}
			if we != nil && !slices.Equal(pids, []string{strconv.Itoa(we.PID)}) {
				t.Errorf("copies of the program that ran main: pids %v; want only the worker %d", pids, we.PID)
			}
		})
	}
}

// TestRuntimeSlowInitIsNoForgottenBootstrap checks that the bootstrap
// wait does not count package initialization: a program whose packages
// take longer than the wait to initialize, and whose main calls proc.Main
// first, serves.
func TestRuntimeSlowInitIsNoForgottenBootstrap(t *testing.T) {
	bin := nomainProgram(t)
	noLeaks(t)
	pool, err := proc.NewPool(t.Context(), rtSquare, poolQuiet, proc.Workers(1), proc.Binary(bin), proc.Env("RT_NOMAIN_MODE=slowinit"))
	if err != nil {
		t.Fatalf("NewPool with a program that initializes slowly: %v", err)
	}
	defer pool.Close()
	if v, err := pool.Call(t.Context(), 7); err != nil || v != 49 {
		t.Fatalf("call: %v %v", v, err)
	}
}

// nomain is testdata/nomain, built once for the tests that run it.
var nomain struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// nomainProgram builds testdata/nomain (once) and returns its path.
func nomainProgram(t *testing.T) string {
	t.Helper()
	nomain.once.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			nomain.err = fmt.Errorf("no go command: %w", err)
			return
		}
		if nomain.dir, err = os.MkdirTemp("", "ferry-nomain-"); err != nil {
			nomain.err = err
			return
		}
		nomain.bin = filepath.Join(nomain.dir, "nomain")
		if out, err := exec.Command(goCmd, "build", "-o", nomain.bin, "./testdata/nomain").CombinedOutput(); err != nil {
			nomain.err = fmt.Errorf("go build ./testdata/nomain: %w\n%s", err, out)
		}
	})
	if nomain.err != nil {
		t.Fatal(nomain.err)
	}
	return nomain.bin
}

// ---- 5. nothing escapes ----

// TestRuntimeNothingEscapes checks that a process started by worker code
// dies with its worker: at Close, when the worker crashes, when it is
// killed for a call timeout, and when the parent is killed; and that such
// a process does not inherit the worker's FERRY_WORKER* environment.
func TestRuntimeNothingEscapes(t *testing.T) {
	if os.Getenv("RT_ESCAPE_PARENT") == "1" {
		rtEscapeParent()
		return
	}
	const limit = 10 * time.Second
	t.Run("close", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtSpawn, proc.Workers(1))
		pid, err := pool.Call(t.Context(), rtSpawnIn{Mode: "sleep"})
		if err != nil {
			t.Fatal(err)
		}
		if rtDead(pid) {
			t.Fatalf("sleep (pid %d) is dead before Close", pid)
		}
		pool.Close()
		rtWaitDead(t, "sleep started by the worker, after Close", pid, limit)
	})
	t.Run("crash", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtSpawn, proc.Workers(1))
		pid, err := pool.Call(t.Context(), rtSpawnIn{Mode: "sleep"})
		if err != nil {
			t.Fatal(err)
		}
		var we *proc.WorkerError
		if _, err := pool.Call(t.Context(), rtSpawnIn{Mode: "exit"}); !errors.As(err, &we) || we.ExitCode != 3 {
			t.Fatalf("crashing call: %v, want a *WorkerError with status 3", err)
		}
		rtWaitDead(t, "sleep started by the worker, after the worker crashed", pid, limit)
	})
	t.Run("timeout", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtSpawn, proc.Workers(1), proc.CallTimeout(2*time.Second))
		pidfile := filepath.Join(t.TempDir(), "pid")
		_, err := pool.Call(t.Context(), rtSpawnIn{Mode: "hang", Pidfile: pidfile})
		var te *proc.TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("hung call: %v, want a *TimeoutError", err)
		}
		pid, err := strconv.Atoi(rtWaitFile(t, pidfile, limit))
		if err != nil {
			t.Fatal(err)
		}
		rtWaitDead(t, "sleep started by the worker, after its call timed out", pid, limit)
	})
	t.Run("parent-killed", func(t *testing.T) {
		noLeaks(t)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRuntimeNothingEscapes$")
		cmd.Env = append(os.Environ(), "RT_ESCAPE_PARENT=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var worker, sleep int
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "rt-escape %d %d", &worker, &sleep); err == nil {
				break
			}
		}
		if worker == 0 {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the parent did not report its worker\n%s", stderr.String())
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		rtWaitDead(t, "the worker of a parent killed by SIGKILL", worker, limit)
		rtWaitDead(t, "sleep started by the worker of a parent killed by SIGKILL", sleep, limit)
	})
	t.Run("environment", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtEnv, proc.Workers(1), proc.MemoryLimit(1<<30))
		found, err := pool.Call(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) > 0 {
			t.Errorf("FERRY_WORKER* variables left in the worker's environment and its children's: %q", found)
		}
	})
}

// rtEscapeParent is the parent process of the parent-killed case: it
// starts a worker that starts a sleep, says both pids, and waits to be
// killed.
func rtEscapeParent() {
	pool, err := proc.NewPool(context.Background(), rtSpawn, poolQuiet, proc.Workers(1))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	pid, err := pool.Call(context.Background(), rtSpawnIn{Mode: "sleep"})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Printf("rt-escape %d %d\n", pool.Stats().Workers[0].PID, pid)
	select {}
}

// TestRuntimeEscapedChildCannotHang checks that a process started by
// worker code that left the worker's process group (which ferry does not
// kill: see killGroup) but holds the worker's stderr cannot make the
// pool hang: Close, a call whose worker crashed and a call that outlived
// CallTimeout all return within a bounded time.
func TestRuntimeEscapedChildCannotHang(t *testing.T) {
	const limit = 15 * time.Second
	// bounded runs what must return within limit; if it does not, it
	// kills the escaped process, which releases it, and fails the test.
	bounded := func(t *testing.T, what string, escaped int, fn func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			fn()
		}()
		select {
		case <-done:
		case <-time.After(limit):
			t.Errorf("%s has not returned after %v: it waits for the end of the worker's output, held by pid %d, which left its process group", what, limit, escaped)
			_ = syscall.Kill(escaped, syscall.SIGKILL)
			<-done
		}
	}
	escape := func(t *testing.T, pool *proc.Pool[rtSpawnIn, int]) int {
		t.Helper()
		pid, err := pool.Call(t.Context(), rtSpawnIn{Mode: "escape"})
		if err != nil {
			t.Fatal(err)
		}
		// The pool does not kill it: the test does, before the pool's
		// own cleanup (cleanups run last first).
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		return pid
	}
	t.Run("close", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtSpawn, proc.Workers(1))
		escaped := escape(t, pool)
		bounded(t, "Close", escaped, func() { pool.Close() })
	})
	t.Run("crash", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtSpawn, proc.Workers(1))
		escaped := escape(t, pool)
		bounded(t, "a call whose worker exited", escaped, func() {
			var we *proc.WorkerError
			if _, err := pool.Call(t.Context(), rtSpawnIn{Mode: "exit"}); !errors.As(err, &we) || we.ExitCode != 3 {
				t.Errorf("crashing call: %v, want a *WorkerError with status 3", err)
			}
		})
	})
	t.Run("timeout", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtSpawn, proc.Workers(1), proc.CallTimeout(2*time.Second))
		escaped := escape(t, pool)
		bounded(t, "a call that outlived CallTimeout", escaped, func() {
			var te *proc.TimeoutError
			_, err := pool.Call(t.Context(), rtSpawnIn{Mode: "hang", Pidfile: filepath.Join(t.TempDir(), "pid")})
			if !errors.As(err, &te) {
				t.Errorf("hung call: %v, want a *TimeoutError", err)
			}
		})
	})
}

// ---- 6. a hung call ----

// TestRuntimeHungCallCostsOnlyItself checks that one call that never
// returns fails alone, with a *TimeoutError, while 30 short calls sent
// meanwhile, some of them queued behind it, all succeed.
func TestRuntimeHungCallCostsOnlyItself(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool := newTestPool(t, rtHang, proc.Workers(2), proc.CallTimeout(300*time.Millisecond), proc.InFlight(16))
	started := filepath.Join(t.TempDir(), "started")
	hung := make(chan error, 1)
	go func() {
		_, err := pool.Call(ctx, rtHangIn{Hang: true, Started: started})
		hung <- err
	}()
	rtWaitFile(t, started, 30*time.Second)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			v, err := pool.Call(ctx, rtHangIn{V: i + 1})
			if err != nil || v != i+1 {
				t.Errorf("short call %d: %v, %v", i+1, v, err)
			}
		})
	}
	wg.Wait()
	var te *proc.TimeoutError
	if err := <-hung; !errors.As(err, &te) || te.What != "call" || te.Name != "rt.hang" {
		t.Errorf("hung call: %v (%T), want a call *TimeoutError", err, err)
	}
	if st := pool.Stats(); st.Timeouts != 1 || st.Calls != 31 || st.Failures != 1 {
		t.Errorf("stats: %+v; want 1 timeout, 31 calls, 1 failure", st)
	}
}

// ---- 7. bounded output, structured logs ----

// TestRuntimeBoundedOutput checks that a worker that writes 20 MB to
// stderr without a newline and exits is reported with its status and a
// bounded tail of its output.
func TestRuntimeBoundedOutput(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, rtNoisy, proc.Workers(1))
	_, err := pool.Call(t.Context(), 0)
	var we *proc.WorkerError
	if !errors.As(err, &we) {
		t.Fatalf("noisy call: %v, want a *WorkerError", err)
	}
	if we.ExitCode != 7 || we.Reason != "" || we.Signal != "" || we.MemoryLimit != 0 {
		t.Errorf("worker error: exit %d, reason %q, signal %q, memory limit %d; want status 7 alone",
			we.ExitCode, we.Reason, we.Signal, we.MemoryLimit)
	}
	if n := len(we.Stderr); n > 70<<10 || !strings.Contains(we.Stderr, strings.Repeat("x", 1<<10)) {
		t.Errorf("stderr tail of %d bytes, want some of the x's, at most 70 KiB", n)
	}
	if n := len(err.Error()); n > 70<<10 {
		t.Errorf("error text of %d bytes, want at most 70 KiB", n)
	}
	if !strings.Contains(err.Error(), "exited with status 7") {
		t.Errorf("error text does not say %q: %.200q", "exited with status 7", err.Error())
	}
}

// TestRuntimeStructuredLogs checks that a record worker code logs through
// slog reaches the parent's logger as a record: level, message, attributes
// and the worker's name and pid.
func TestRuntimeStructuredLogs(t *testing.T) {
	noLeaks(t)
	rec := newRTRecorder()
	pool, err := proc.NewPool(t.Context(), rtLog, proc.Workers(1), proc.Logger(slog.New(rec)))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := pool.Call(t.Context(), 0)
	pool.Close() // its output has been read to the end
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range rec.records() {
		if r.msg != "boom" {
			continue
		}
		found = true
		k, _ := r.attr("k")
		w, _ := r.attr("worker")
		p, _ := r.attr("pid")
		if r.level != slog.LevelError || k.Kind() != slog.KindInt64 || k.Int64() != 42 ||
			w.String() != "rt.log" || p.Kind() != slog.KindInt64 || p.Int64() != int64(pid) {
			t.Errorf("record: level %v, attrs %v; want ERROR with k=42 worker=rt.log pid=%d", r.level, r.attrs, pid)
		}
	}
	if !found {
		t.Errorf("no record %q among %+v", "boom", rec.records())
	}
}

// ---- 8. one binary ----

// TestRuntimeOneBinary checks that workers run the parent's executable,
// with its argv[0], and that a replacement worker starts from the
// parent's executable even after its file has been deleted and another
// program put at its path.
func TestRuntimeOneBinary(t *testing.T) {
	if os.Getenv("RT_EXE_PARENT") == "1" {
		rtExeParent()
		return
	}
	t.Run("same", func(t *testing.T) {
		noLeaks(t)
		pool := newTestPool(t, rtExe, proc.Workers(1))
		got, err := pool.Call(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		exe, err := os.Readlink("/proc/self/exe")
		if err != nil {
			t.Fatal(err)
		}
		if got.Exe != exe || got.Arg0 != os.Args[0] || got.PID == os.Getpid() {
			t.Errorf("worker runs %q as %q (pid %d); want %q as %q", got.Exe, got.Arg0, got.PID, exe, os.Args[0])
		}
	})
	t.Run("deleted", func(t *testing.T) {
		noLeaks(t)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(t.TempDir(), "bin")
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestRuntimeOneBinary$")
		cmd.Env = append(os.Environ(), "RT_EXE_PARENT=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			stdin.Close()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}()
		sc := bufio.NewScanner(out)
		next := func() string {
			for sc.Scan() {
				if line, ok := strings.CutPrefix(sc.Text(), "rt-exe "); ok {
					return line
				}
			}
			t.Fatalf("the parent ended without a word\n%s", stderr.String())
			return ""
		}
		if line := next(); !strings.HasPrefix(line, "ready ") {
			t.Fatalf("parent: %q\n%s", line, stderr.String())
		}
		// Its executable is gone, and another program is at its path.
		if err := os.Remove(bin); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, []byte("#!/bin/sh\necho impostor >&2\nexit 9\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
		if line := next(); !strings.HasPrefix(line, "ok ") {
			t.Fatalf("parent: %q\n%s", line, stderr.String())
		}
	})
}

// rtExeParent is the parent process of TestRuntimeOneBinary/deleted: it
// starts a worker, says "ready", waits for a line on stdin, kills its
// worker and reports whether the replacement runs its own executable.
func rtExeParent() {
	say := func(format string, args ...any) { fmt.Printf("rt-exe "+format+"\n", args...) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := proc.NewPool(ctx, rtExe, poolQuiet, proc.Workers(1))
	if err != nil {
		say("error %v", err)
		os.Exit(1)
	}
	defer pool.Close()
	first, err := pool.Call(ctx, 0)
	if err != nil {
		say("error %v", err)
		os.Exit(1)
	}
	say("ready %d", first.PID)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		say("error reading stdin: %v", err)
		os.Exit(1)
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		say("error %v", err)
		os.Exit(1)
	}
	_ = syscall.Kill(first.PID, syscall.SIGKILL)
	var last error
	for ctx.Err() == nil {
		got, err := pool.Call(ctx, 0)
		switch {
		case err != nil:
			// A call that raced with the kill. The next one waits for the
			// replacement (a failed start would end the loop below).
			last = err
			if strings.Contains(err.Error(), "no live worker") {
				say("the replacement failed to start: %v", err)
				return
			}
		case got.PID == first.PID:
			// The death is not noticed yet.
		case got.Exe != exe || got.Arg0 != os.Args[0]:
			say("mismatch: the replacement %d runs %q as %q, the parent %q as %q", got.PID, got.Exe, got.Arg0, exe, os.Args[0])
			return
		default:
			say("ok %d %s", got.PID, got.Exe)
			return
		}
	}
	say("error no replacement served a call: %v (%v)", last, pool.Stats())
}

// ---- 9. honest reasons ----

// TestRuntimeHonestReasons checks that the calls that fail because a
// worker exited by itself with status 7 report that status, and no reason
// of ferry's: nothing killed it.
func TestRuntimeHonestReasons(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pool := newTestPool(t, rtExit7, proc.Workers(2), proc.InFlight(8))
	var mu sync.Mutex
	failed, exits := 0, 0
	var wg sync.WaitGroup
	for i := range 60 {
		v := i % 4 // 0: the worker exits
		if v == 0 {
			exits++
		}
		wg.Go(func() {
			got, err := pool.Call(ctx, v)
			if err == nil {
				if v == 0 || got != v {
					t.Errorf("call %d (%d): %d", i, v, got)
				}
				return
			}
			mu.Lock()
			failed++
			mu.Unlock()
			var we *proc.WorkerError
			if !errors.As(err, &we) || we.ExitCode != 7 || we.Reason != "" || we.Signal != "" ||
				!strings.Contains(err.Error(), "exited with status 7") {
				t.Errorf("call %d (%d): %v (%T); want a *WorkerError of an exit with status 7, without a reason", i, v, err, err)
			}
		})
	}
	wg.Wait()
	if failed < exits {
		t.Errorf("%d calls failed; want at least the %d that made their worker exit", failed, exits)
	}
	// Every call makes its worker exit: each fails with its own worker's
	// status, the calls queued behind it running on the replacements.
	for i := range 20 {
		wg.Go(func() {
			_, err := pool.Call(ctx, 0)
			var we *proc.WorkerError
			if !errors.As(err, &we) || we.ExitCode != 7 || we.Reason != "" || we.Signal != "" ||
				!strings.Contains(err.Error(), "exited with status 7") {
				t.Errorf("exiting call %d: %v (%T); want a *WorkerError of an exit with status 7, without a reason", i, err, err)
			}
		})
	}
	wg.Wait()
	if st := pool.Stats(); st.Timeouts != 0 || st.Down != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// ---- 11. memory limit ----

// TestRuntimeMemoryLimit checks that a worker that needs more than its
// MemoryLimit dies, is reported as such, and is replaced.
func TestRuntimeMemoryLimit(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const limit = 64 << 20
	pool := newTestPool(t, rtAlloc, proc.Workers(1), proc.MemoryLimit(limit))
	first := poolPIDs(pool.Stats())[0]
	if n, err := pool.Call(ctx, 8); err != nil || n != 8 {
		t.Fatalf("8 MiB within the limit: %v, %v", n, err)
	}
	_, err := pool.Call(ctx, 400)
	var we *proc.WorkerError
	if !errors.As(err, &we) {
		t.Fatalf("400 MiB with a limit of 64 MiB: %v (%T), want a *WorkerError", err, err)
	}
	if we.MemoryLimit != limit || we.PID != first || !strings.Contains(err.Error(), "MemoryLimit") ||
		!strings.Contains(err.Error(), "out of memory") {
		t.Errorf("worker error %q: memory limit %d, pid %d; want %d, %d, and a text naming the limit",
			err, we.MemoryLimit, we.PID, limit, first)
	}
	n, err := pool.Call(ctx, 1)
	if err != nil || n != 1 {
		t.Fatalf("small call after the replacement: %v, %v", n, err)
	}
	if st := pool.Stats(); st.Restarts != 1 || slices.Contains(poolPIDs(st), first) {
		t.Errorf("stats: %+v; want the worker replaced", st)
	}
}

// rtCountUntilDone yields 0, 1, 2, … until its context ends, and then
// returns without an error, as iterators commonly do.
var rtCountUntilDone = proc.FlatFunc("rt.count-until-done", func(ctx context.Context, limit int) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := 0; i < limit && ctx.Err() == nil; i++ {
			if !yield(i, nil) {
				return
			}
		}
	}
})

// TestRuntimeFlatCallEndedByDeadline checks that a FlatPool call whose
// context's deadline ends it early ends with that error, not as if its
// outputs were complete — also when the function in the worker returns
// quietly at its deadline.
func TestRuntimeFlatCallEndedByDeadline(t *testing.T) {
	noLeaks(t)
	pool, err := proc.NewFlatPool(t.Context(), rtCountUntilDone, poolQuiet, proc.Workers(1), proc.BufferSize(4))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	var last error
	n := 0
	for _, err := range pool.Call(ctx, 1<<62) {
		if err != nil {
			last = err
			continue
		}
		n++
	}
	if !errors.Is(last, context.DeadlineExceeded) {
		t.Fatalf("after %d outputs, the call ended with %v; want context.DeadlineExceeded", n, last)
	}
	// The worker serves the next call.
	n = 0
	for _, err := range pool.Call(t.Context(), 3) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("next call: %d outputs, want 3", n)
	}
}

// TestRuntimeFlatTimeoutIsTheWorkers checks that a FlatPool's CallTimeout
// bounds the worker's time to produce an output, not the consumer's time
// to take it: a slow consumer does not get a healthy worker killed.
func TestRuntimeFlatTimeoutIsTheWorkers(t *testing.T) {
	noLeaks(t)
	// The limit is far above what the worker takes for an output, even on
	// a loaded machine, and the consumer takes twice as long.
	const limit = 300 * time.Millisecond
	pool, err := proc.NewFlatPool(t.Context(), rtCountUntilDone, poolQuiet, proc.Workers(1), proc.CallTimeout(limit), proc.BufferSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	n := 0
	for _, err := range pool.Call(t.Context(), 3) {
		if err != nil {
			t.Fatalf("output %d: %v", n, err)
		}
		n++
		// A consumer slower than the limit, for each output: the worker
		// is not the one being slow. This sleep is the behaviour under
		// test (time passing in the consumer), not a synchronization.
		time.Sleep(2 * limit)
	}
	if st := pool.Stats(); n != 3 || st.Timeouts != 0 || st.Restarts != 0 {
		t.Fatalf("%d outputs, stats %+v; want 3 outputs and no timeout", n, st)
	}
}

// rtExitOrEcho echoes its input, or exits the worker with status 3 for -1.
var rtExitOrEcho = proc.Func("rt.exit-or-echo", func(_ context.Context, v int) (int, error) {
	if v == -1 {
		os.Exit(3)
	}
	return v, nil
})

// TestRuntimeACrashingCallIsNotRunAgain checks that a call that kills its
// worker, sent right behind another call, counts as started even when the
// other call's reply had not left the worker when it died: it fails with
// the worker's error instead of being run again on the replacement (which
// it would kill in turn).
func TestRuntimeACrashingCallIsNotRunAgain(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, rtExitOrEcho, proc.Workers(1), proc.Concurrency(1), proc.InFlight(2))
	for round := range 10 {
		before := pool.Stats().Restarts
		var wg sync.WaitGroup
		var crashErr error
		wg.Go(func() { _, _ = pool.Call(t.Context(), round) }) // its reply may die with the worker
		wg.Go(func() { _, crashErr = pool.Call(t.Context(), -1) })
		wg.Wait()
		var we *proc.WorkerError
		if !errors.As(crashErr, &we) || we.ExitCode != 3 {
			t.Fatalf("round %d: the crashing call: %v, want its worker's *WorkerError", round, crashErr)
		}
		if st := pool.Stats(); st.Restarts != before+1 {
			t.Fatalf("round %d: %d workers died, want 1: the crashing call ran again (%+v)", round, st.Restarts-before, st)
		}
	}
}
