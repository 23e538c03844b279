package batchtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
	"github.com/ferrypipe/ferry/internal/leakcheck"
)

// Backend is a backend constructor with a name. KillResume runs the job in
// another process, the test binary re-executed, which finds its backend by
// this name (see Helper).
type Backend struct {
	Name string                           // unique among the backends passed to Helper
	New  func(t *testing.T) batch.Backend // makes the backend for one subtest
}

// RunNamed runs the whole suite for b: the properties of Run, and
// KillResume, which runs the job with b and a SQLite checkpoint
// (batch/checkpoint) in a process it kills with SIGKILL at a random point,
// then resumes the run in this process. The killed process is the test
// binary re-executed to run only the test function named helper, which
// must call Helper with b among its backends:
//
//	var backends = []batchtest.Backend{{Name: "mine", New: newMine}}
//
//	func TestMine(t *testing.T)         { batchtest.RunNamed(t, "TestKillHelper", backends[0]) }
//	func TestKillHelper(t *testing.T)   { batchtest.Helper(t, backends...) }
//
// The random point comes from a seed that the test logs; set
// FERRY_BATCHTEST_SEED to it to kill at the same point again.
func RunNamed(t *testing.T, helper string, b Backend) {
	t.Helper()
	Run(t, b.New)
	t.Run("KillResume", func(t *testing.T) { testKillResume(t, helper, b) })
}

// The environment of the process KillResume starts.
const (
	envBackend = "FERRY_BATCHTEST_KILL_BACKEND" // the backend's name; set only in that process
	envDir     = "FERRY_BATCHTEST_KILL_DIR"     // Params.Dir, where the checkpoint is too
	envN       = "FERRY_BATCHTEST_KILL_N"       // Params.N
	envSeed    = "FERRY_BATCHTEST_SEED"         // KillResume's seed, to reproduce a run
)

// killParams are the parameters of the job KillResume kills: its last
// index holds its worker while the file dir/hold exists, so that the
// killed run cannot finish.
func killParams(dir string, n int) Params {
	return Params{N: n, Dir: dir, Fail: map[int]string{n - 1: "hold"}}
}

func killCheckpointPath(dir string) string { return filepath.Join(dir, "checkpoint.db") }

// Helper is the body of the helper test named to RunNamed. In a normal
// run it returns at once. In the process KillResume starts, it runs the
// job with the backend the environment names, among backends, and a
// SQLite checkpoint, and prints "done <index> <worker>" on stdout as each
// index succeeds, until it is killed; it never returns.
func Helper(t *testing.T, backends ...Backend) {
	name := os.Getenv(envBackend)
	if name == "" {
		return
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "batchtest helper: "+format+"\n", args...)
		os.Exit(2)
	}
	var b *Backend
	for k := range backends {
		if backends[k].Name == name {
			b = &backends[k]
		}
	}
	if b == nil {
		fail("no backend is named %q", name)
	}
	dir := os.Getenv(envDir)
	n, err := strconv.Atoi(os.Getenv(envN))
	if err != nil || dir == "" {
		fail("%s=%q, %s=%q", envDir, dir, envN, os.Getenv(envN))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	db, err := checkpoint.Open(killCheckpointPath(dir), checkpoint.Logger(log))
	if err != nil {
		fail("%v", err)
	}
	out := bufio.NewWriter(os.Stdout)
	obs := batch.ObserverFunc(func(e batch.Event) {
		if e.Kind != batch.EventDone {
			return
		}
		fmt.Fprintf(out, "done %d %s\n", e.Index, e.Worker)
		if out.Flush() != nil {
			os.Exit(3) // the test is gone
		}
	})
	res, err := Job.Run(context.Background(), killParams(dir, n),
		batch.WithBackend(b.New(t)), batch.WithCheckpoint(db), batch.Events(obs), batch.Logger(log))
	fail("the run ended, but its last index holds until it is killed: %v, %v", res, err)
}

// spy is a Checkpointer that passes everything on to cp, and keeps what
// Begin returned and the indices Record was called for.
type spy struct {
	cp      batch.Checkpointer
	mu      sync.Mutex
	begun   []batch.Record
	records map[int]int
}

func (s *spy) Begin(ctx context.Context, job batch.JobInfo, resume bool) ([]batch.Record, error) {
	recs, err := s.cp.Begin(ctx, job, resume)
	s.mu.Lock()
	s.begun, s.records = recs, map[int]int{}
	s.mu.Unlock()
	return recs, err
}

func (s *spy) Record(r batch.Record) {
	s.mu.Lock()
	s.records[r.Index]++
	s.mu.Unlock()
	s.cp.Record(r)
}

func (s *spy) Close() error { return s.cp.Close() }

func openSpy(t *testing.T, dir string) *spy {
	t.Helper()
	db, err := checkpoint.Open(killCheckpointPath(dir), checkpoint.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	return &spy{cp: db}
}

// testKillResume kills a process running the job with b (SIGKILL, after a
// random number of indices succeeded) and resumes its run here.
func testKillResume(t *testing.T, helper string, b Backend) {
	const n = 2000
	backend := b.New(t) // first, so that leak checks see the whole test
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envSeed); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envSeed, s, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	killAfter := 1 + rng.IntN(n/2)
	t.Logf("%s=%d: SIGKILL after %d of %d indices reported done", envSeed, seed, killAfter, n)

	dir := t.TempDir()
	p := killParams(dir, n)
	if err := os.WriteFile(filepath.Join(dir, "hold"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	reported, workers := killParent(t, helper, b, dir, n, killAfter)

	// The kill must take the workers of the killed process with it: wait
	// for each to exit, for 10 s at most.
	for _, pid := range workers {
		if !awaitExit(t, pid, 10*time.Second) {
			t.Errorf("worker pid %d of the killed process is alive 10 s after the kill", pid)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every process that ran indices is gone: what the sink saw is final.
	before := sinkCalls(t, dir, n)
	sunk := 0
	for i, c := range before {
		if c > 1 {
			t.Errorf("index %d: sink called %d times by the killed run, which retries nothing", i, c)
		}
		sunk += c
	}
	for i := range reported {
		if before[i] != 1 {
			t.Errorf("index %d: reported done by the killed run, but its sink was called %d times", i, before[i])
		}
	}
	if err := os.Remove(filepath.Join(dir, "hold")); err != nil {
		t.Fatal(err)
	}

	// Resume.
	cp := openSpy(t, dir)
	rec := &recorder{}
	res, err := run(t, backend, p, batch.WithCheckpoint(cp), batch.Resume(), batch.Events(rec))
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	t.Logf("killed after %d reported, %d sunk, with %d worker processes (all gone); the checkpoint had %d; resumed run: %v",
		len(reported), sunk, len(workers), len(cp.begun), res)
	if res.Done != n || res.Failed != 0 || res.NotRun != 0 || res.Resumed != len(cp.begun) {
		t.Fatalf("resumed run: %v; the checkpoint had %d indices", res, len(cp.begun))
	}
	had := map[int]bool{}
	for _, r := range cp.begun {
		if had[r.Index] || !r.OK || r.Attempts != 1 {
			t.Errorf("the checkpoint returned %+v (twice: %v)", r, had[r.Index])
		}
		had[r.Index] = true
		if before[r.Index] != 1 {
			t.Errorf("index %d: in the checkpoint, but the killed run's sink was called %d times for it", r.Index, before[r.Index])
		}
	}
	after := sinkCalls(t, dir, n)
	for i, x := range res.Indices {
		if x.Resumed != had[i] {
			t.Errorf("index %d: Resumed %v, in the checkpoint %v", i, x.Resumed, had[i])
		}
		want := 1
		if had[i] {
			want = 0
		}
		if c := after[i] - before[i]; c != want {
			t.Errorf("index %d: sink called %d times by the resumed run, want %d (in the checkpoint: %v)", i, c, want, had[i])
		}
		if ev := rec.of(i); ev[batch.EventStart] != want || ev[batch.EventDone] != want || ev[batch.EventFailed] != 0 {
			t.Errorf("index %d: events %v in the resumed run (in the checkpoint: %v)", i, ev, had[i])
		}
		if c := cp.records[i]; c != want {
			t.Errorf("index %d: recorded %d times by the resumed run, want %d", i, c, want)
		}
	}
	got, err := batch.State[Stats](res, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if want := expectedStats(n); got != want {
		t.Errorf("merged state after resume %+v, want %+v", got, want)
	}

	// The checkpoint now holds every index: a second resume runs nothing.
	cp = openSpy(t, dir)
	res, err = run(t, backend, p, batch.WithCheckpoint(cp), batch.Resume())
	if err != nil || res.Resumed != n || len(cp.records) != 0 {
		t.Fatalf("second resume: %v, %v, %d records written; want all %d resumed", res, err, len(cp.records), n)
	}
	if again := sinkCalls(t, dir, n); !slices.Equal(again, after) {
		t.Error("the second resume called the sink")
	}
	if got, err := batch.State[Stats](res, "stats"); err != nil || got != expectedStats(n) {
		t.Errorf("merged state after the second resume %+v (%v), want %+v", got, err, expectedStats(n))
	}
}

// killParent starts the helper process with backend b and kills it
// (SIGKILL) once it has reported killAfter indices done. It returns the
// indices it reported, and the pids of its child processes (its workers)
// just before the kill.
func killParent(t *testing.T, helper string, b Backend, dir string, n, killAfter int) (reported map[int]bool, workers []int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envBackend+"="+b.Name, envDir+"="+dir, envN+"="+strconv.Itoa(n))
	cmd.SysProcAttr = helperProcAttr()
	cmd.WaitDelay = 10 * time.Second // a worker holding the pipes must not hang the test
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reported = map[int]bool{}
	pids := map[int]bool{}
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "done" {
			continue
		}
		i, err := strconv.Atoi(fields[1])
		if err != nil || i < 0 || i >= n || reported[i] {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the helper printed %q", sc.Text())
		}
		reported[i] = true
		if len(fields) == 4 && fields[2] == "pid" {
			if pid, err := strconv.Atoi(fields[3]); err == nil {
				pids[pid] = true
			}
		}
		if len(reported) == killAfter && !killed {
			// Its workers, all started before the first index ran.
			for _, pid := range leakcheck.ChildPIDs(cmd.Process.Pid) {
				pids[pid] = true
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
			// Read on: what it printed before it died is done too.
		}
	}
	err = cmd.Wait()
	if !killed || !endedByKill(err) {
		t.Fatalf("the helper ended with %v after reporting %d indices (killed: %v), want killed after %d; stderr:\n%s",
			err, len(reported), killed, killAfter, stderr.String())
	}
	for pid := range pids {
		workers = append(workers, pid)
	}
	return reported, workers
}

// endedByKill reports whether err is the end of a process that
// Process.Kill ended: SIGKILL, or on Windows (which has no signals) any
// failed exit.
func endedByKill(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal() == syscall.SIGKILL
	}
	return runtime.GOOS == "windows"
}
