//go:build linux && !ferrynolinux

package proc_test

// A Pool with an arena whose worker dies in the middle of a call: killed by
// the parent, killing itself, or killed because the call outlived
// CallTimeout. Inputs and outputs go through the arena; once the callers
// are done, every segment is free again.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// vecJob is the input of pool.arena-vec. Vec, when it is long enough,
// travels through the arena, and so does the output's.
type vecJob struct {
	Vec  []float32
	Keep bool // keep a lease, and a published segment whose Ref is never sent
	Hang bool // never return
	// Hold names a FIFO: the worker opens it for reading and reads a
	// byte before it answers, and then, with Die, kills itself with
	// SIGKILL. With Marker, only if that file does not exist yet (it is
	// created): a retry of the call does not hold.
	Hold   string
	Marker string
	Die    bool
}

// vecOut is the output of pool.arena-vec: the worker's pid and Vec negated.
type vecOut struct {
	PID int
	Vec []float32
}

// keptLease is the lease a Keep call keeps, reachable so that the garbage
// collector's safety net does not give it back.
var keptLease *shm.Lease

var poolArenaVec = proc.Func("pool.arena-vec", func(ctx context.Context, j vecJob) (vecOut, error) {
	switch {
	case j.Keep:
		arena := proc.WorkerArena()
		l, err := arena.Acquire(ctx)
		if err != nil {
			return vecOut{}, err
		}
		keptLease = l
		if _, err := arena.PublishCopy(ctx, []byte("never sent")); err != nil {
			return vecOut{}, err
		}
	case j.Hang:
		select {}
	case j.Hold != "":
		if j.Marker != "" {
			f, err := os.OpenFile(j.Marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return vecOut{}, err
			}
			if err != nil {
				break // held before: answer this time
			}
			f.Close()
		}
		f, err := os.Open(j.Hold)
		if err != nil {
			return vecOut{}, err
		}
		_, err = f.Read(make([]byte, 1))
		f.Close()
		if err != nil {
			return vecOut{}, err
		}
		if j.Die {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	out := vecOut{PID: os.Getpid(), Vec: make([]float32, len(j.Vec))}
	for i, v := range j.Vec {
		out.Vec[i] = -v
	}
	return out, nil
})

// vecLen makes vectors of 256 KiB: above the default ArenaThreshold.
const vecLen = 64 << 10

func makeVec(seed int) []float32 {
	v := make([]float32, vecLen)
	for i := range v {
		v[i] = float32(seed*vecLen + i)
	}
	return v
}

// checkVecOut checks that out is the answer to makeVec(seed).
func checkVecOut(t *testing.T, what string, out vecOut, seed int) {
	t.Helper()
	in := makeVec(seed)
	if len(out.Vec) != len(in) {
		t.Fatalf("%s: %d floats, want %d", what, len(out.Vec), len(in))
	}
	for i := range in {
		if out.Vec[i] != -in[i] {
			t.Fatalf("%s: float %d is %v, want %v", what, i, out.Vec[i], -in[i])
		}
	}
}

// arenaAllFree fails t unless every segment of arena is free.
func arenaAllFree(t *testing.T, what string, arena *shm.SegmentPool) {
	t.Helper()
	st := arena.Stats()
	if st.Free != st.Count || st.Leased != 0 || st.InFlight != 0 || st.Viewed != 0 || arena.Held() != 0 {
		t.Errorf("%s: segments not all free: %+v", what, st)
	}
}

// workerCalls returns the calls that the worker with the given pid holds,
// and whether it is a worker of the pool.
func workerCalls(st proc.PoolStats, pid int) (int, bool) {
	for _, w := range st.Workers {
		if w.PID == pid {
			return w.InFlight, true
		}
	}
	return 0, false
}

type vecResult struct {
	out vecOut
	err error
}

func callVec(ctx context.Context, pool *proc.Pool[vecJob, vecOut], j vecJob) <-chan vecResult {
	ch := make(chan vecResult, 1)
	go func() {
		out, err := pool.Call(ctx, j)
		ch <- vecResult{out, err}
	}()
	return ch
}

// TestPoolArenaWorkerKilled kills a pool's only worker while it runs a
// call A whose input it has taken from the arena, holds a call B whose
// input it has not viewed yet, and keeps a lease and a published segment
// that it never sent. The worker is killed by the parent or kills itself.
// With Retries(1), A and B run again on the replacement and return the
// right outputs; without, both fail with the worker's *WorkerError. Either
// way every segment is free once the callers are done: B's input by the
// parent's Discard, what the worker kept by ReclaimOwner.
func TestPoolArenaWorkerKilled(t *testing.T) {
	for _, how := range []string{"killed", "kills-itself"} {
		for _, retries := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/retries=%d", how, retries), func(t *testing.T) {
				noLeaks(t)
				testPoolArenaWorkerKilled(t, how == "kills-itself", retries)
			})
		}
	}
}

func testPoolArenaWorkerKilled(t *testing.T, die bool, retries int) {
	// The deadline only turns a hang into a failure.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	arena := newArena(t, 512<<10, 8, shm.AcquireTimeout(10*time.Second))
	pool := newTestPool(t, poolArenaVec, proc.Workers(1), proc.Concurrency(1), proc.InFlight(2),
		proc.Retries(retries), proc.Arena(arena))
	victim := poolPIDs(pool.Stats())[0]

	if _, err := pool.Call(ctx, vecJob{Keep: true}); err != nil {
		t.Fatalf("keep: %v", err)
	}
	if st := arena.Stats(); st.Leased != 1 || st.InFlight != 1 || st.Viewed != 0 {
		t.Fatalf("with the worker keeping a lease and a published segment: %+v", st)
	}
	published := arena.Published()

	dir := t.TempDir()
	fifo := filepath.Join(dir, "hold")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	a := callVec(ctx, pool, vecJob{Vec: makeVec(1), Hold: fifo, Marker: filepath.Join(dir, "held"), Die: die})
	// Opening the FIFO for writing returns once A has opened it for
	// reading: A is running, its input copied out of the arena.
	w := openFIFOWriter(t, fifo, a)
	defer w.Close()
	b := callVec(ctx, pool, vecJob{Vec: makeVec(2)})
	// B is dispatched to the worker once the worker holds two calls; it
	// runs one at a time, so B's input stays unviewed in the arena.
	for {
		n, ok := workerCalls(pool.Stats(), victim)
		if !ok {
			t.Fatalf("worker %d is gone before the kill: %+v", victim, pool.Stats())
		}
		if n == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("call B never reached the worker: %+v", pool.Stats())
		}
		runtime.Gosched()
	}
	// The kept lease; the kept segment and B's input, published.
	if st := arena.Stats(); st.Leased != 1 || st.InFlight != 2 || st.Viewed != 0 {
		t.Fatalf("before the kill: %+v", st)
	}

	if die {
		if _, err := w.Write([]byte{1}); err != nil { // A reads it and kills its worker
			t.Fatal(err)
		}
	} else if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ra, rb := <-a, <-b

	// B had not started: it runs on the replacement, whatever Retries
	// says. A was running: it fails, or runs again with a retry.
	if rb.err != nil || rb.out.PID == victim {
		t.Errorf("call B, which had not started: %v (pid %d), want a result from the replacement", rb.err, rb.out.PID)
	} else {
		checkVecOut(t, "call B", rb.out, 2)
	}
	if retries == 0 {
		var we *proc.WorkerError
		if !errors.As(ra.err, &we) || we.PID != victim || we.Signal != "killed" {
			t.Errorf("call A: %v, want the *WorkerError of worker %d, killed", ra.err, victim)
		}
	} else {
		for name, r := range map[string]vecResult{"A": ra} {
			if r.err != nil {
				t.Fatalf("call %s with a retry: %v", name, r.err)
			}
			if r.out.PID == victim {
				t.Errorf("call %s: answered by the killed worker %d", name, victim)
			}
		}
		checkVecOut(t, "call A", ra.out, 1)
	}
	if !poolGone(victim) {
		t.Errorf("worker %d is still there", victim)
	}
	arenaAllFree(t, "once the callers are done", arena)
	// Each attempt published its input (A's first one was viewed, B's
	// was not); B ran again, publishing its input and output, and so did
	// A with a retry.
	wantPub := uint64(2 + 2)
	if retries > 0 {
		wantPub += 2
	}
	if got := arena.Published() - published; got != wantPub {
		t.Errorf("%d segments published by the calls, want %d", got, wantPub)
	}
	if st := pool.Stats(); st.Restarts != 1 || st.Lost != 1 || st.Requeued != 1 || st.Retries != int64(retries) {
		t.Errorf("pool stats: %+v", st)
	}

	// The replacement serves arena calls, and gives their segments back.
	out, err := pool.Call(ctx, vecJob{Vec: makeVec(3)})
	if err != nil {
		t.Fatalf("a call after the death: %v", err)
	}
	if out.PID == victim {
		t.Errorf("a call after the death: answered by the killed worker %d", victim)
	}
	checkVecOut(t, "a call after the death", out, 3)
	arenaAllFree(t, "after a call to the replacement", arena)
	if st := pool.Stats(); st.Restarts != 1 || len(st.Workers) != 1 || slices.Contains(poolPIDs(st), victim) {
		t.Errorf("pool stats after a call to the replacement: %+v", st)
	}
}

// openFIFOWriter opens fifo for writing, which returns once a worker has
// opened it for reading; it fails t if the call whose result comes on
// done ends first.
func openFIFOWriter[R any](t *testing.T, fifo string, done <-chan R) *os.File {
	t.Helper()
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	select {
	case f := <-opened:
		return f
	case r := <-done:
		// Unblock the opener before failing.
		if f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			if w := <-opened; w != nil {
				w.Close()
			}
			f.Close()
		}
		t.Fatalf("the call ended before it opened the FIFO: %+v", r)
		return nil
	}
}

// TestPoolArenaCallTimeout: an arena call that outlives CallTimeout kills
// its worker, which keeps a lease and a published segment; the call fails
// with a *TimeoutError, the worker is replaced, and every segment is free
// once the call has returned.
func TestPoolArenaCallTimeout(t *testing.T) {
	noLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	arena := newArena(t, 512<<10, 4, shm.AcquireTimeout(10*time.Second))
	pool := newTestPool(t, poolArenaVec, proc.Workers(1), proc.CallTimeout(time.Second), proc.Arena(arena))
	victim := poolPIDs(pool.Stats())[0]
	if _, err := pool.Call(ctx, vecJob{Keep: true}); err != nil {
		t.Fatalf("keep: %v", err)
	}
	if st := arena.Stats(); st.Leased != 1 || st.InFlight != 1 {
		t.Fatalf("with the worker keeping a lease and a published segment: %+v", st)
	}
	published := arena.Published()

	_, err := pool.Call(ctx, vecJob{Vec: makeVec(1), Hang: true})
	var te *proc.TimeoutError
	if !errors.As(err, &te) || te.What != "call" || te.Name != "pool.arena-vec" {
		t.Fatalf("hung call: %v (%T), want a *TimeoutError", err, err)
	}
	if !poolGone(victim) {
		t.Errorf("the hung worker (pid %d) is still there", victim)
	}
	arenaAllFree(t, "once the timed-out call has returned", arena)
	if got := arena.Published() - published; got != 1 {
		t.Errorf("%d segments published by the hung call, want 1 (its input)", got)
	}

	out, err := pool.Call(ctx, vecJob{Vec: makeVec(2)})
	if err != nil {
		t.Fatalf("call after the timeout: %v", err)
	}
	if out.PID == victim {
		t.Errorf("served by the killed worker %d", victim)
	}
	checkVecOut(t, "call after the timeout", out, 2)
	arenaAllFree(t, "after a call to the replacement", arena)
	if st := pool.Stats(); st.Timeouts != 1 || st.Restarts != 1 || st.Failures != 1 || len(st.Workers) != 1 {
		t.Errorf("pool stats: %+v", st)
	}
}
