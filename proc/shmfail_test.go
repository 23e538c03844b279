//go:build linux && !ferrynolinux

package proc_test

// Failures around the shared-memory arena, through the public API: the
// parent killed at any point, a worker killed at any point, thousands of
// passes, values larger than a segment.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// The parent process of TestShmParentKilled: this test binary re-executed
// with shmParentEnv set to the point at which it will be killed, and the
// name of its arena's memfd in shmNameEnv.
const (
	shmParentEnv = "FERRY_SHMFAIL_PARENT"
	shmNameEnv   = "FERRY_SHMFAIL_NAME"
)

// Points at which the parent is killed.
const (
	killStarted = "started" // workers ready, nothing consumed
	killMidPass = "midpass" // in a pass, holding a view
	killAcquire = "acquire" // holding every segment, the worker waiting in Acquire
)

// runShmParent is the parent process: it starts an IterateShared and a
// Pool of 2 workers on one arena, prints "pid N" for each worker, gets to
// its point, prints "ready" and waits to be killed.
func runShmParent(point string) error {
	ctx := context.Background()
	quiet := poolQuiet
	arena, err := shm.NewSegmentPool(1<<20, 2, shm.Name(os.Getenv(shmNameEnv)), shm.AcquireTimeout(-1))
	if err != nil {
		return err
	}
	it, err := proc.IterateShared(ctx, arenaCopy, arenaArgs{N: 1 << 30, Size: 4096, BigAt: -1}, proc.Arena(arena), proc.BufferSize(3), quiet)
	if err != nil {
		return err
	}
	pool, err := proc.NewPool(ctx, splitEcho, proc.Workers(2), proc.Arena(arena), quiet)
	if err != nil {
		return err
	}
	// One call that goes through the arena both ways.
	in := make([]byte, 100<<10)
	in[len(in)-1] = 7
	if out, err := pool.Call(ctx, in); err != nil || len(out) != len("echo:")+len(in) || out[len(out)-1] != 7 {
		return fmt.Errorf("pool call: %d bytes, %v", len(out), err)
	}
	fmt.Println("pid", it.PID())
	for _, w := range pool.Stats().Workers {
		fmt.Println("pid", w.PID)
	}
	ready := func() {
		fmt.Println("ready")
		select {} // until killed
	}
	if point == killStarted {
		ready()
	}
	var held []*shm.View
	for v, err := range it.All(ctx) {
		if err != nil {
			return err
		}
		switch point {
		case killMidPass:
			// Release two, hold the third.
			if len(held) == 2 {
				ready()
			}
			v.Release()
			held = append(held, nil)
		case killAcquire:
			held = append(held, v)
			if len(held) == arena.Count() {
				// The worker's next item waits for a segment.
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := waitForWaiter(wctx, arena, 0)
				cancel()
				if err != nil {
					return err
				}
				ready()
			}
		default:
			return fmt.Errorf("unknown point %q", point)
		}
	}
	return errors.New("the pass ended")
}

// waitForWaiter yields until more than n producers wait in Acquire on
// arena (the waiters counter of its control block), or ctx ends.
func waitForWaiter(ctx context.Context, arena *shm.SegmentPool, n int) error {
	for arena.Stats().Waiters <= n {
		if ctx.Err() != nil {
			return fmt.Errorf("no producer waits in Acquire: %+v", arena.Stats())
		}
		runtime.Gosched()
	}
	return nil
}

// memfdHolders lists the processes visible to this one that hold memfd
// (a "/memfd:NAME " prefix) open or mapped, as "pid fd N" or "pid maps".
func memfdHolders(t *testing.T, memfd string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, dir := range dirs {
		pid := filepath.Base(dir)
		fds, _ := os.ReadDir(dir + "/fd") // another user's, or gone
		for _, fd := range fds {
			if target, _ := os.Readlink(dir + "/fd/" + fd.Name()); strings.HasPrefix(target+" ", memfd) {
				out = append(out, pid+" fd "+fd.Name())
			}
		}
		if maps, err := os.ReadFile(dir + "/maps"); err == nil && strings.Contains(string(maps), memfd) {
			out = append(out, pid+" maps")
		}
	}
	return out
}

// devShmNames returns the names in /dev/shm.
func devShmNames(t *testing.T) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/dev/shm")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	return names
}

// noNewFerryShm fails t if /dev/shm has an entry that was not in before
// and whose name mentions ferry, as anything ferry created there would:
// the memfds it uses instead are named ferry-…. Other processes on the
// machine may come and go in /dev/shm meanwhile.
func noNewFerryShm(t *testing.T, before map[string]bool) {
	t.Helper()
	for name := range devShmNames(t) {
		if !before[name] && strings.Contains(strings.ToLower(name), "ferry") {
			t.Errorf("new in /dev/shm: %s", name)
		}
	}
}

// TestShmParentKilled kills, with SIGKILL, a parent whose workers share an
// arena with it, at several points, and checks that every worker exits
// within a second and that no process holds the arena's memory afterwards
// (no fd, no mapping, nothing in /dev/shm).
func TestShmParentKilled(t *testing.T) {
	if point := os.Getenv(shmParentEnv); point != "" {
		err := runShmParent(point)
		fmt.Println("error", err)
		os.Exit(1)
	}
	for _, point := range []string{killStarted, killMidPass, killAcquire} {
		t.Run(point, func(t *testing.T) {
			noLeaks(t)
			devShm := devShmNames(t)
			name := fmt.Sprintf("ferry-test-parent-killed-%d-%s", os.Getpid(), point)
			memfd := "/memfd:" + name + " "
			// The deadline only turns a parent that never gets ready into
			// a failure instead of a hang.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestShmParentKilled$")
			cmd.Env = append(os.Environ(), shmParentEnv+"="+point, shmNameEnv+"="+name)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			sc := bufio.NewScanner(stdout)
			for sc.Scan() && sc.Text() != "ready" {
				f, ok := strings.CutPrefix(sc.Text(), "pid ")
				pid, err := strconv.Atoi(f)
				if !ok || err != nil {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("parent said %q\n%s", sc.Text(), stderr.String())
				}
				pids = append(pids, pid)
			}
			if len(pids) != 3 || sc.Text() != "ready" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("parent did not get ready (workers %v)\n%s", pids, stderr.String())
			}
			// The check below would see the arena where it is.
			holders := memfdHolders(t, memfd)
			for _, pid := range append([]int{cmd.Process.Pid}, pids...) {
				if !slices.Contains(holders, fmt.Sprintf("%d maps", pid)) {
					t.Errorf("before the kill, process %d does not map the arena: %v", pid, holders)
				}
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			for _, pid := range pids {
				svGone(t, pid, time.Second)
			}
			if h := memfdHolders(t, memfd); len(h) > 0 {
				t.Errorf("the arena is still held: %v", h)
			}
			noNewFerryShm(t, devShm)
		})
	}
}

// shmHolder leases a segment and keeps it; then it yields one item written
// in place in another segment, and waits until its pass is stopped.
var shmHolder = proc.Iter("shmfail.holder", func(ctx context.Context, _ struct{}) iter.Seq2[proc.Shared, error] {
	return func(yield func(proc.Shared, error) bool) {
		arena := proc.WorkerArena()
		kept, err := arena.Acquire(ctx)
		if err != nil {
			yield(proc.Shared{}, err)
			return
		}
		defer kept.Abandon()
		lease, err := arena.Acquire(ctx)
		if err != nil {
			yield(proc.Shared{}, err)
			return
		}
		defer lease.Abandon()
		b := lease.Bytes()[:4096]
		b[0], b[len(b)-1] = 0, 0
		ref, err := lease.Publish(len(b))
		if !yield(proc.Shared{Ref: ref}, err) {
			return
		}
		<-ctx.Done()
	}
})

// TestShmWorkerKilled kills the worker while it holds a lease, and while
// it waits in Acquire because the consumer holds every segment: the pass
// reports a *WorkerError, every segment is free again once the consumer
// has released its views, and a new IterateShared on the same arena works.
func TestShmWorkerKilled(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 64<<10, 2, shm.AcquireTimeout(-1))
	for _, point := range []string{"lease", "acquire"} {
		ok := t.Run(point, func(t *testing.T) {
			// The deadline only turns a hang into a failure.
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var it *proc.Iterable[*shm.View]
			var err error
			if point == "lease" {
				it, err = proc.IterateShared(t.Context(), shmHolder, struct{}{}, proc.Arena(arena), proc.BufferSize(3), poolQuiet)
			} else {
				it, err = proc.IterateShared(t.Context(), arenaCopy, arenaArgs{N: 1 << 30, Size: 4096, BigAt: -1}, proc.Arena(arena), proc.BufferSize(3), poolQuiet)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			waiters := arena.Stats().Waiters // one too many per process killed while waiting
			var held []*shm.View
			var werr error
			for v, err := range it.All(ctx) {
				if err != nil {
					werr = err
					break
				}
				checkView(t, v, len(held), 4096)
				held = append(held, v)
				switch {
				case point == "lease":
					if st := arena.Stats(); st.Leased != 1 || st.Viewed != 1 {
						t.Fatalf("with the worker holding a lease: %+v", st)
					}
				case len(held) < arena.Count():
					continue
				default:
					if err := waitForWaiter(ctx, arena, waiters); err != nil {
						t.Fatal(err)
					}
				}
				if err := syscall.Kill(it.PID(), syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			var we *proc.WorkerError
			if !errors.As(werr, &we) || we.PID != it.PID() || we.Signal != "killed" {
				t.Fatalf("after %d items: %v, want the worker's *WorkerError", len(held), werr)
			}
			// Views survive the worker; what it held is free.
			if st := arena.Stats(); st.Leased != 0 || st.InFlight != 0 || st.Viewed != len(held) {
				t.Errorf("after the death, holding %d views: %+v", len(held), st)
			}
			for i, v := range held {
				checkView(t, v, i, 4096)
				v.Release()
			}
			if st := arena.Stats(); st.Free != st.Count {
				t.Fatalf("after releasing the views: %+v", st)
			}
		})
		if !ok {
			return // the arena is not what the next case expects
		}
	}
	// The arena works with a new worker.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	it, err := proc.IterateShared(ctx, arenaCopy, arenaArgs{N: 6, Size: 4096, BigAt: -1}, proc.Arena(arena), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	i := 0
	for v, err := range it.All(ctx) {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		checkView(t, v, i, 4096)
		v.Release()
		i++
	}
	if i != 6 {
		t.Fatalf("%d items, want 6", i)
	}
	if st := arena.Stats(); st.Free != st.Count {
		t.Errorf("after a pass with a new worker: %+v", st)
	}
}

// procCounts counts the open fds of a process ("self" or a pid), its
// mappings of files (memfds included) and its mappings of memfd. Anonymous
// mappings are the Go runtime's (heap, stacks, the race detector's
// shadow), which grows and splits them as it likes; shared memory, files
// and memfds are all named.
func procCounts(t *testing.T, pid, memfd string) (c mapCounts) {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	c.fds = len(ents)
	b, err := os.ReadFile("/proc/" + pid + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		// address perms offset dev inode [path]
		if f := strings.Fields(l); len(f) >= 6 {
			c.files++
		} else {
			c.anon++
		}
		if strings.Contains(l, memfd) {
			c.arena++
		}
	}
	return c
}

// mapCounts is what procCounts counts.
type mapCounts struct {
	fds   int // open fds
	files int // mappings of files
	arena int // mappings of the arena's memfd
	anon  int // anonymous mappings (not compared)
}

// TestShmManyPasses runs passes in a row over one IterateShared with a
// small arena (2 segments, buffer 3), breaking out after a few items on
// odd passes: the fds and the mappings of files of the parent and of the
// worker are the same at the end as at pass 100. 500 passes; 10,000 with
// FERRY_SOAK=1.
func TestShmManyPasses(t *testing.T) {
	noLeaks(t)
	passes := 500
	if os.Getenv("FERRY_SOAK") == "1" {
		passes = 10_000
	}
	name := fmt.Sprintf("ferry-test-passes-%d", os.Getpid())
	memfd := "/memfd:" + name + " "
	arena := newArena(t, 64<<10, 2, shm.Name(name), shm.AcquireTimeout(10*time.Second))
	const n = 6
	it, err := proc.IterateShared(t.Context(), arenaCopy, arenaArgs{N: n, Size: 64 << 10, BigAt: -1}, proc.Arena(arena), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	worker := strconv.Itoa(it.PID())
	var parentAt100, workerAt100 mapCounts
	start := time.Now()
	for pass := range passes + 1 { // the last one complete
		stop := n
		if pass%2 == 1 && pass < passes {
			stop = 1 + pass/2%3
		}
		got := 0
		for v, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatalf("pass %d item %d: %v", pass, got, err)
			}
			checkView(t, v, got, 64<<10)
			v.Release()
			if got++; got == stop {
				break
			}
		}
		if got != stop {
			t.Fatalf("pass %d: %d items, want %d", pass, got, stop)
		}
		if pass == 99 {
			parentAt100, workerAt100 = procCounts(t, "self", memfd), procCounts(t, worker, memfd)
		}
	}
	parent, work := procCounts(t, "self", memfd), procCounts(t, worker, memfd)
	t.Logf("%d passes in %v; parent %+v, worker %+v at pass 100; parent %+v, worker %+v at the end",
		passes, time.Since(start), parentAt100, workerAt100, parent, work)
	parent.anon, parentAt100.anon, work.anon, workerAt100.anon = 0, 0, 0, 0
	if parent != parentAt100 || parent.arena != 1 {
		t.Errorf("parent: %+v after %d passes, %+v at pass 100", parent, passes, parentAt100)
	}
	if work != workerAt100 || work.arena != 1 {
		t.Errorf("worker: %+v after %d passes, %+v at pass 100", work, passes, workerAt100)
	}
	if st := arena.Stats(); st.Free != st.Count {
		t.Errorf("after a complete pass: %+v", st)
	}
}

// pair is an item with two slices that travel through the arena.
type pair struct {
	Name   string
	Bytes  []byte
	Floats []float32
}

// shmPairs yields 4 pairs of 100 KiB of bytes and 128 KiB of floats,
// except item 1, whose floats take 512 KiB.
var shmPairs = proc.Iter("shmfail.pairs", func(ctx context.Context, _ struct{}) iter.Seq2[pair, error] {
	return func(yield func(pair, error) bool) {
		for i := range 4 {
			p := pair{Name: strconv.Itoa(i), Bytes: make([]byte, 100<<10), Floats: make([]float32, 32<<10)}
			if i == 1 {
				p.Floats = make([]float32, 128<<10)
			}
			p.Bytes[0], p.Floats[0] = byte(i), float32(i)
			if !yield(p, nil) {
				return
			}
		}
	}
})

// TestShmSplitItemTooLarge: an item whose second large field does not fit
// in a segment fails, with both sizes, after its first field was put in a
// segment; that segment comes back, and the worker lives on.
func TestShmSplitItemTooLarge(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 256<<10, 2, shm.AcquireTimeout(10*time.Second))
	it, err := proc.Iterate(t.Context(), shmPairs, struct{}{}, proc.Arena(arena), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for pass := range 2 {
		i := 0
		for p, err := range it.All(t.Context()) {
			if i == 1 {
				var re *proc.RemoteError
				if !errors.As(err, &re) || re.Index != 1 || !strings.Contains(err.Error(), "512 KiB") || !strings.Contains(err.Error(), "256 KiB") {
					t.Fatalf("pass %d item 1: %v, want an error naming 512 KiB and 256 KiB", pass, err)
				}
			} else if err != nil || p.Name != strconv.Itoa(i) || len(p.Bytes) != 100<<10 || p.Bytes[0] != byte(i) || len(p.Floats) != 32<<10 || p.Floats[0] != float32(i) {
				t.Fatalf("pass %d item %d: %q, %d bytes, %d floats, %v", pass, i, p.Name, len(p.Bytes), len(p.Floats), err)
			}
			i++
		}
		if i != 4 {
			t.Fatalf("pass %d: %d items, want 4", pass, i)
		}
		if st := arena.Stats(); st.Free != st.Count {
			t.Errorf("pass %d: segments not all free: %+v", pass, st)
		}
	}
}
