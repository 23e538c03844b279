//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// Functions the pool tests run in worker processes.
var (
	poolSquare = proc.Func("pool.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

	poolPID = proc.Func("pool.pid", func(context.Context, int) (int, error) { return os.Getpid(), nil })

	poolFail = proc.Func("pool.fail", func(_ context.Context, path string) (string, error) {
		return "", &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	})

	poolPanic = proc.Func("pool.panic", func(_ context.Context, s string) (string, error) {
		panic("boom: " + s)
	})

	// poolChan's input cannot be encoded: it is never called.
	poolChan = proc.Func("pool.chan", func(_ context.Context, c chan int) (int, error) { return 0, nil })

	// poolHang returns 0 at once, and never returns for anything else.
	poolHang = proc.Func("pool.hang", func(_ context.Context, x int) (int, error) {
		if x != 0 {
			select {}
		}
		return os.Getpid(), nil
	})

	poolCrash = proc.Func("pool.crash", poolCrashFn)

	// poolBlock opens the FIFO it is given for writing, writes a byte to
	// say it is running, and never returns.
	poolBlock = proc.Func("pool.block", func(_ context.Context, fifo string) (int, error) {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		if _, err := f.Write([]byte{1}); err != nil {
			return 0, err
		}
		select {}
	})

	// poolWait returns its input, except for "fifo:PATH": it then waits
	// for a byte on that FIFO and returns "waited".
	poolWait = proc.Func("pool.wait", func(_ context.Context, s string) (string, error) {
		path, ok := strings.CutPrefix(s, "fifo:")
		if !ok {
			return s, nil
		}
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if _, err := f.Read(make([]byte, 1)); err != nil {
			return "", err
		}
		return "waited", nil
	})
)

// poolCrashArgs is the input of pool.crash.
type poolCrashArgs struct {
	How    string // "exit" (status 3) or "kill" (SIGKILL)
	Marker string // if set: crash only if this file does not exist, creating it
}

func poolCrashFn(_ context.Context, c poolCrashArgs) (int, error) {
	if c.Marker != "" {
		f, err := os.OpenFile(c.Marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return os.Getpid(), nil // crashed before: succeed this time
		}
		if err != nil {
			return 0, err
		}
		f.Close()
	}
	fmt.Fprintf(os.Stderr, "pool.crash: about to %s\n", c.How)
	switch c.How {
	case "exit":
		os.Exit(3)
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	return 0, fmt.Errorf("unknown way to crash: %q", c.How)
}

// poolQuiet keeps the workers' stderr and the supervision events out of the
// test output.
var poolQuiet = proc.Logger(slog.New(slog.DiscardHandler))

// poolGone reports whether no process has the given pid (reaped, not zombie).
func poolGone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func newTestPool[In, Out any](t *testing.T, fn *proc.Function[In, Out], opts ...proc.PoolOption) *proc.Pool[In, Out] {
	t.Helper()
	p, err := proc.NewPool(t.Context(), fn, append([]proc.PoolOption{poolQuiet}, opts...)...)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { p.Close() }) // before noLeaks's check: cleanups run last first
	return p
}

func poolPIDs(st proc.PoolStats) []int {
	var out []int
	for _, w := range st.Workers {
		out = append(out, w.PID)
	}
	return out
}

func TestPoolPipeline(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolSquare, proc.Workers(3), proc.InFlight(4))
	const n = 2000
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	src := pipeline.FromSlice(items)
	sq := pipeline.Pipe(src, pool.Call, pipeline.Concurrency(8))
	p, err := pipeline.Build(pipeline.Sink(sq, 16))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for epoch := range 2 {
		seen := make([]bool, n)
		count := 0
		for v, err := range p.Epoch(t.Context()) {
			if err != nil {
				t.Fatalf("epoch %d: %v", epoch, err)
			}
			i := 0
			for i*i < v {
				i++
			}
			if i*i != v || i >= n || seen[i] {
				t.Fatalf("epoch %d: unexpected result %d", epoch, v)
			}
			seen[i] = true
			count++
		}
		if count != n {
			t.Fatalf("epoch %d: %d results, want %d", epoch, count, n)
		}
	}
	st := pool.Stats()
	if st.Calls != 2*n || st.Failures != 0 || st.InFlight != 0 || len(st.Workers) != 3 {
		t.Errorf("stats after the pipeline: %+v", st)
	}
	var served int64
	for _, w := range st.Workers {
		if w.Calls == 0 {
			t.Errorf("worker %d (pid %d) served no call: %+v", w.Slot, w.PID, st)
		}
		served += w.Calls
	}
	if served != 2*n {
		t.Errorf("workers served %d calls, want %d", served, 2*n)
	}
	if s := st.String(); !strings.Contains(s, `pool "pool.square": 3 workers`) {
		t.Errorf("stats string %q", s)
	}
}

func TestPoolRemoteErrors(t *testing.T) {
	noLeaks(t)
	failing := newTestPool(t, poolFail, proc.Workers(1))
	_, err := failing.Call(t.Context(), "/nowhere")
	var re *proc.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RemoteError", err, err)
	}
	pid := poolPIDs(failing.Stats())[0]
	if re.Type != "*fs.PathError" || re.Worker != "pool.fail" || re.PID != pid || re.Index != -1 ||
		!strings.Contains(re.Message, "open /nowhere") || re.Stack != "" {
		t.Errorf("remote error %+v", re)
	}

	panicking := newTestPool(t, poolPanic, proc.Workers(1))
	_, err = panicking.Call(t.Context(), "x")
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RemoteError", err, err)
	}
	if re.Type != "panic" || re.Message != "boom: x" || !strings.Contains(re.Stack, "proc_test.init") {
		t.Errorf("remote panic %+v", re)
	}
	if !strings.Contains(err.Error(), "panic: boom: x") {
		t.Errorf("error text %q", err)
	}
	// The worker survives its panics.
	before := poolPIDs(panicking.Stats())
	if _, err := panicking.Call(t.Context(), "y"); !errors.As(err, &re) || re.Message != "boom: y" {
		t.Errorf("second call: %v", err)
	}
	st := panicking.Stats()
	if !slices.Equal(poolPIDs(st), before) || st.Restarts != 0 || st.Failures != 2 || st.Calls != 2 {
		t.Errorf("stats after two panics: %+v", st)
	}
}

func TestPoolCodecError(t *testing.T) {
	noLeaks(t)
	chans := newTestPool(t, poolChan, proc.Workers(1))
	_, err := chans.Call(t.Context(), make(chan int))
	var ce *proc.CodecError
	if !errors.As(err, &ce) || ce.What != "input" {
		t.Fatalf("error %v (%T), want a *CodecError for the input", err, err)
	}
	if st := chans.Stats(); st.InFlight != 0 || st.Workers[0].Calls != 0 {
		t.Errorf("an unencodable input reached a worker: %+v", st)
	}

	// Between good calls, a bad one fails alone.
	pool := newTestPool(t, poolSquare, proc.Workers(2))
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			v, err := pool.Call(t.Context(), i)
			if err != nil || v != i*i {
				t.Errorf("square(%d) = %d, %v", i, v, err)
			}
		})
	}
	wg.Wait()
	if st := pool.Stats(); st.Calls != 50 || st.Failures != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestPoolCallTimeout(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolHang, proc.Workers(1), proc.CallTimeout(200*time.Millisecond))
	hung := poolPIDs(pool.Stats())[0]
	_, err := pool.Call(t.Context(), 1)
	var te *proc.TimeoutError
	if !errors.As(err, &te) || te.What != "call" || te.Name != "pool.hang" {
		t.Fatalf("hung call: %v (%T), want a *TimeoutError", err, err)
	}
	if !poolGone(hung) {
		t.Errorf("the hung worker (pid %d) is still there", hung)
	}
	// The pool goes on with a fresh worker.
	for range 3 {
		pid, err := pool.Call(t.Context(), 0)
		if err != nil {
			t.Fatalf("call after the timeout: %v", err)
		}
		if pid == hung {
			t.Fatalf("served by the killed worker %d", pid)
		}
	}
	st := pool.Stats()
	if st.Timeouts != 1 || st.Restarts != 1 || st.Calls != 4 || st.Failures != 1 || len(st.Workers) != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// TestPoolCallTimeoutOthersFail checks that the calls queued behind a hung
// one fail with the killed worker's error, naming the reason, and that
// their timeout only starts when they would run.
func TestPoolCallTimeoutOthersFail(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolHang, proc.Workers(1), proc.InFlight(3), proc.CallTimeout(200*time.Millisecond))
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := pool.Call(t.Context(), 1)
			errs <- err
		}()
	}
	var timeouts, killed int
	for range 3 {
		err := <-errs
		var te *proc.TimeoutError
		var we *proc.WorkerError
		switch {
		case errors.As(err, &te):
			timeouts++
		case errors.As(err, &we) && strings.Contains(we.Reason, "exceeded the call timeout of 200ms") && we.Signal == "killed":
			killed++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	// Three calls that never return, one at a time: the first times out
	// and the others may reach the next worker and time out too, but
	// every call fails.
	if timeouts < 1 || timeouts+killed != 3 {
		t.Errorf("%d timeouts, %d lost with the worker", timeouts, killed)
	}
	if v, err := pool.Call(t.Context(), 0); err != nil || v == 0 {
		t.Errorf("call after the timeouts: %v %v", v, err)
	}
}

func TestPoolWorkerDies(t *testing.T) {
	for _, how := range []string{"exit", "kill"} {
		t.Run(how, func(t *testing.T) {
			noLeaks(t)
			// One worker: the calls after the crash wait for its replacement.
			pool := newTestPool(t, poolCrash, proc.Workers(1))
			before := poolPIDs(pool.Stats())
			_, err := pool.Call(t.Context(), poolCrashArgs{How: how})
			var we *proc.WorkerError
			if !errors.As(err, &we) {
				t.Fatalf("error %v (%T), want a *WorkerError", err, err)
			}
			if we.Name != "pool.crash" || !slices.Contains(before, we.PID) || we.Reason != "" ||
				!strings.Contains(we.Stderr, "pool.crash: about to "+how) {
				t.Errorf("worker error %+v", we)
			}
			switch how {
			case "exit":
				if we.ExitCode != 3 || we.Signal != "" {
					t.Errorf("exit code %d, signal %q; want 3 and none", we.ExitCode, we.Signal)
				}
			case "kill":
				if we.ExitCode != -1 || we.Signal != "killed" {
					t.Errorf("exit code %d, signal %q; want -1 and killed", we.ExitCode, we.Signal)
				}
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", we.PID)) {
				t.Errorf("error text %q does not name the pid", err)
			}
			// The pool keeps serving, with a replacement.
			marker := filepath.Join(t.TempDir(), "crashed")
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			for range 4 {
				if _, err := pool.Call(t.Context(), poolCrashArgs{How: how, Marker: marker}); err != nil {
					t.Fatalf("call after the poolCrashFn: %v", err)
				}
			}
			st := pool.Stats()
			if st.Restarts != 1 || st.Lost != 1 || len(st.Workers) != 1 || slices.Contains(poolPIDs(st), we.PID) {
				t.Errorf("stats after the crash: %+v", st)
			}
		})
	}
}

// TestPoolIdleWorkerKilled checks that a worker killed while it holds no
// call is replaced. A call sent to it before its death was noticed is
// retried.
func TestPoolIdleWorkerKilled(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolPID, proc.Workers(1), proc.Retries(1))
	victim := poolPIDs(pool.Stats())[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pid, err := pool.Call(t.Context(), 0)
	if err != nil {
		t.Fatalf("call after the worker was killed: %v", err)
	}
	if pid == victim {
		t.Fatalf("served by the killed worker %d", pid)
	}
	if st := pool.Stats(); st.Restarts != 1 || st.Failures != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestPoolRetries(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolCrash, proc.Workers(1), proc.Retries(1))
	first := poolPIDs(pool.Stats())[0]
	marker := filepath.Join(t.TempDir(), "crashed")
	pid, err := pool.Call(t.Context(), poolCrashArgs{How: "exit", Marker: marker})
	if err != nil {
		t.Fatalf("a call that crashes once, with one retry: %v", err)
	}
	if pid == first {
		t.Errorf("the retry ran in the worker that died (%d)", pid)
	}
	st := pool.Stats()
	if st.Retries != 1 || st.Lost != 1 || st.Restarts != 1 || st.Failures != 0 {
		t.Errorf("stats: %+v", st)
	}
	// A call that crashes every time fails after its retry.
	_, err = pool.Call(t.Context(), poolCrashArgs{How: "kill"})
	var we *proc.WorkerError
	if !errors.As(err, &we) || we.Signal != "killed" {
		t.Errorf("a call that always crashes: %v", err)
	}
	if st := pool.Stats(); st.Retries != 2 || st.Lost != 3 || st.Restarts != 3 {
		t.Errorf("stats: %+v", st)
	}
}

func TestPoolMaxRestarts(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolCrash, proc.Workers(1), proc.MaxRestarts(1))
	for range 2 {
		var we *proc.WorkerError
		if _, err := pool.Call(t.Context(), poolCrashArgs{How: "exit"}); !errors.As(err, &we) {
			t.Fatalf("crashing call: %v", err)
		}
	}
	// Both workers died and only one was replaced: nothing is left.
	_, err := pool.Call(t.Context(), poolCrashArgs{How: "exit", Marker: filepath.Join(t.TempDir(), "m")})
	var we *proc.WorkerError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "no workers left") {
		t.Errorf("call to a pool with no workers left: %v", err)
	}
	if st := pool.Stats(); st.Restarts != 1 || st.Down != 1 || len(st.Workers) != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestPoolMaxCallsPerWorker(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolPID, proc.Workers(1), proc.MaxCallsPerWorker(3))
	var seen []int
	for range 10 {
		pid, err := pool.Call(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != pid {
			seen = append(seen, pid)
		}
	}
	if len(seen) != 4 {
		t.Errorf("10 calls, at most 3 per worker, ran in workers %v; want 4 workers", seen)
	}
	st := pool.Stats()
	if st.Recycled != 3 || st.Restarts != 0 || st.Calls != 10 {
		t.Errorf("stats: %+v", st)
	}
	// Concurrent calls too are spread without a worker taking more than 3.
	pool2 := newTestPool(t, poolPID, proc.Workers(2), proc.MaxCallsPerWorker(3))
	count := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			pid, err := pool2.Call(t.Context(), 0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			count[pid]++
			mu.Unlock()
		})
	}
	wg.Wait()
	for pid, n := range count {
		if n > 3 {
			t.Errorf("worker %d served %d calls", pid, n)
		}
	}
	if len(count) < 14 {
		t.Errorf("40 calls in %d workers, want at least 14", len(count))
	}
}

func TestPoolCallerCancels(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolWait, proc.Workers(1), proc.InFlight(1))
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := pool.Call(ctx, "fifo:"+fifo)
		done <- err
	}()
	// Opening the FIFO for writing waits until the worker has opened it:
	// the call is running.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	// A caller waiting for room gives up when its context ends, too.
	ctx2, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if _, err := pool.Call(ctx2, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("call with a cancelled context: %v", err)
	}
	// Release the abandoned call: its result must not reach anyone else.
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		got, err := pool.Call(t.Context(), s)
		if err != nil || got != s {
			t.Fatalf("call(%q) = %q, %v", s, got, err)
		}
	}
}

func TestPoolClose(t *testing.T) {
	noLeaks(t)
	const workers = 3
	pool, err := proc.NewPool(t.Context(), poolBlock, poolQuiet, proc.Workers(workers), proc.InFlight(2))
	if err != nil {
		t.Fatal(err)
	}
	workerPIDs := poolPIDs(pool.Stats())
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Keep the FIFO open for reading (without waiting for a writer).
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// 3 calls run, 3 wait in the workers, 3 wait for room.
	errs := make(chan error, 3*workers)
	for range 3 * workers {
		go func() {
			_, err := pool.Call(t.Context(), fifo)
			errs <- err
		}()
	}
	// Each running call writes one byte.
	if err := poolWaitBytes(r, workers); err != nil {
		t.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 * workers {
		if err := <-errs; !errors.Is(err, proc.ErrClosed) {
			t.Errorf("pending call after Close: %v", err)
		}
	}
	for _, pid := range workerPIDs {
		if !poolGone(pid) {
			t.Errorf("worker %d is still there after Close", pid)
		}
	}
	if _, err := pool.Call(t.Context(), fifo); !errors.Is(err, proc.ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}
	if err := pool.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// poolWaitBytes reads n bytes from the non-blocking FIFO r, waiting for them
// with poll(2).
func poolWaitBytes(r *os.File, n int) error {
	raw, err := r.SyscallConn()
	if err != nil {
		return err
	}
	got := 0
	for got < n {
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			buf := make([]byte, n-got)
			k, err := syscall.Read(int(fd), buf)
			switch {
			case errors.Is(err, syscall.EAGAIN):
				return false // the runtime's poller waits for more
			case err != nil:
				rerr = err
			case k == 0:
				// No writer at the moment: wait for one.
				return false
			}
			got += max(k, 0)
			return true
		})
		if err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
	}
	return nil
}

func TestPoolStartErrors(t *testing.T) {
	noLeaks(t)
	ctx := t.Context()
	if _, err := proc.NewPool(ctx, poolSquare, poolQuiet, proc.Workers(0)); err == nil {
		t.Error("Workers(0) accepted")
	}
	if _, err := proc.NewPool(ctx, poolSquare, poolQuiet, proc.InFlight(0)); err == nil {
		t.Error("InFlight(0) accepted")
	}
	if _, err := proc.NewPool(ctx, poolSquare, poolQuiet, proc.Binary("/nonexistent/ferry")); err == nil {
		t.Error("a missing binary accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := proc.NewPool(cancelled, poolSquare, poolQuiet, proc.Workers(2)); !errors.Is(err, context.Canceled) {
		t.Errorf("NewPool with a cancelled context: %v", err)
	}
	if _, err := proc.NewPool(ctx, poolSquare, poolQuiet, proc.Workers(3), proc.Initializers(poolInitFails)); err == nil ||
		!strings.Contains(err.Error(), "no GPU here") {
		t.Errorf("NewPool with a failing initializer: %v", err)
	}
}

// TestPoolReplacementFailsToStart checks that a pool whose replacement
// worker cannot start fails calls with that cause instead of waiting.
func TestPoolReplacementFailsToStart(t *testing.T) {
	noLeaks(t)
	marker := filepath.Join(t.TempDir(), "no-more-workers")
	pool := newTestPool(t, poolCrash, proc.Workers(1), proc.Env("POOL_INIT_MARKER="+marker), proc.Initializers(poolInitUnlessMarked))
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var we *proc.WorkerError
	if _, err := pool.Call(t.Context(), poolCrashArgs{How: "exit"}); !errors.As(err, &we) {
		t.Fatalf("crashing call: %v", err)
	}
	// The replacement fails to start: calls fail, with the reason, while
	// no worker is live, and starts go on with backoff.
	for {
		_, err := pool.Call(t.Context(), poolCrashArgs{How: "exit"})
		if err == nil {
			t.Fatal("a call succeeded with no worker")
		}
		if strings.Contains(err.Error(), "no live worker") {
			if !strings.Contains(err.Error(), "marked: no more workers") {
				t.Fatalf("call once the replacement failed: %v", err)
			}
			break
		}
	}
	if st := pool.Stats(); st.StartFailures < 1 || st.Down != 0 || st.Restarts != 1 || len(st.Workers) != 0 {
		t.Errorf("stats: %+v", st)
	}
	// Once the cause is gone, a later start succeeds and calls work again.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(t.TempDir(), "crashed-before")
	if err := os.WriteFile(done, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := pool.Call(t.Context(), poolCrashArgs{How: "exit", Marker: done}) // succeeds
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "no live worker") {
			t.Fatalf("call while the slot recovers: %v", err)
		}
		waitForStarts(t, pool)
	}
}

// waitForStarts waits until the pool has tried one more start. The pool
// has no event for a start attempt, so it looks at the stats, on a short
// ticker: a poll of state, bounded by the test's context, not a guess of
// how long a start takes.
func waitForStarts(t *testing.T, pool *proc.Pool[poolCrashArgs, int]) {
	t.Helper()
	n := pool.Stats().StartFailures
	for pool.Stats().StartFailures == n && len(pool.Stats().Workers) == 0 {
		select {
		case <-t.Context().Done():
			t.Fatal("no further start")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// poolInitUnlessMarked fails once the file named by $POOL_INIT_MARKER
// exists.
var poolInitUnlessMarked = proc.Init("pool.init-unless-marked", func(context.Context) error {
	if _, err := os.Stat(os.Getenv("POOL_INIT_MARKER")); err == nil {
		return errors.New("marked: no more workers")
	}
	return nil
})

var poolInitFails = proc.Init("pool.init-fails", func(context.Context) error { return errors.New("no GPU here") })

// BenchmarkPoolCallSmall measures small calls through a pool of 2 workers,
// with as many callers as the pool holds calls.
func BenchmarkPoolCallSmall(b *testing.B) {
	for _, inFlight := range []int{4, 16, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inFlight), func(b *testing.B) {
			pool, err := proc.NewPool(b.Context(), poolSquare, poolQuiet, proc.Workers(2), proc.InFlight(inFlight))
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			b.SetParallelism(2 * inFlight)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if v, err := pool.Call(b.Context(), i); err != nil || v != i*i {
						b.Errorf("square(%d) = %d, %v", i, v, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}
