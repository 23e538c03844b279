// Package batchtest is the conformance suite of batch backends: every
// backend must pass it, through the public API of package batch only, so
// that a job behaves the same whatever runs it.
//
// A backend's tests call RunNamed with a named constructor, and define
// the helper test that KillResume re-executes the test binary to run (see
// RunNamed):
//
//	var mine = batchtest.Backend{Name: "mine", New: func(t *testing.T) batch.Backend { return mybackend.New(4) }}
//
//	func TestConformance(t *testing.T) { batchtest.RunNamed(t, "TestKillHelper", mine) }
//	func TestKillHelper(t *testing.T)  { batchtest.Helper(t, mine) }
//
// Run runs the properties that need no other process, with an unnamed
// constructor.
//
// The suite's job (Job) is defined in this package, so a backend that runs
// workers in other processes finds it there as long as the test binary
// imports batchtest (and, for worker processes, calls proc.Main first in
// TestMain). Its behaviours cross process boundaries through files in a
// scratch directory.
package batchtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/retry"
)

// Run runs the conformance suite, one subtest per property, each with a
// backend from newBackend (called once per subtest, so that it may set up
// leak checks with t.Cleanup).
func Run(t *testing.T, newBackend func(t *testing.T) batch.Backend) {
	t.Helper()
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, b batch.Backend)
	}{
		{"Order", testOrder},
		{"Partitions", testPartitions},
		{"FailFast", testFailFast},
		{"ContinueOnError", testContinue},
		{"Retries", testRetries},
		{"PermanentError", testPermanent},
		{"Timeout", testTimeout},
		{"TimeoutInGroup", testTimeoutInGroup},
		{"TimeoutRetryInGroup", testTimeoutRetryInGroup},
		{"Crash", testCrash},
		{"CrashInGroup", testCrashInGroup},
		{"StatefulMerge", testState},
		{"ResumeAfterFailFast", testResumeFailFast},
		{"ResumeAfterCancel", testResumeCancel},
		{"BadInput", testBadInput},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newBackend(t)) })
	}
}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	begun  int
	ended  int
	events []batch.Event
	onDone func(n int) // called with the number of EventDone so far
	done   int
}

func (r *recorder) Begin(batch.JobInfo, int) { r.mu.Lock(); r.begun++; r.mu.Unlock() }
func (r *recorder) End()                     { r.mu.Lock(); r.ended++; r.mu.Unlock() }
func (r *recorder) Event(e batch.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	if e.Kind == batch.EventDone {
		r.done++
		if r.onDone != nil {
			r.onDone(r.done)
		}
	}
	r.mu.Unlock()
}

// of returns the events of index i, by kind.
func (r *recorder) of(i int) map[batch.EventKind]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[batch.EventKind]int{}
	for _, e := range r.events {
		if e.Index == i {
			m[e.Kind]++
		}
	}
	return m
}

// taskRecorder is a Backend that keeps every task its executors were given.
type taskRecorder struct {
	batch.Backend
	mu    sync.Mutex
	tasks []batch.Task
}

func (r *taskRecorder) Open(ctx context.Context, job batch.JobSpec) (batch.Executor, error) {
	e, err := r.Backend.Open(ctx, job)
	if err != nil {
		return nil, err
	}
	return recordingExecutor{e, r}, nil
}

// ordered returns the indices of the ordered tasks, in no particular order.
func (r *taskRecorder) ordered() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]int
	for _, t := range r.tasks {
		if t.Ordered {
			out = append(out, slices.Clone(t.Indices))
		}
	}
	return out
}

// unordered returns the indices of the tasks that are not ordered.
func (r *taskRecorder) unordered() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, t := range r.tasks {
		if !t.Ordered {
			out = append(out, t.Indices...)
		}
	}
	return out
}

type recordingExecutor struct {
	batch.Executor
	r *taskRecorder
}

func (e recordingExecutor) Execute(ctx context.Context, t batch.Task, started func(int, string)) ([]batch.Outcome, error) {
	e.r.mu.Lock()
	e.r.tasks = append(e.r.tasks, batch.Task{Indices: slices.Clone(t.Indices), Ordered: t.Ordered, StopOnError: t.StopOnError, Alone: t.Alone})
	e.r.mu.Unlock()
	return e.Executor.Execute(ctx, t, started)
}

func run(t *testing.T, b batch.Backend, p Params, opts ...batch.Option) (*batch.Result[Out], error) {
	t.Helper()
	res, err := Job.Run(t.Context(), p, append([]batch.Option{batch.WithBackend(b), batch.Logger(testLogger(t))}, opts...)...)
	if res != nil {
		checkShape(t, res, p.N)
	}
	return res, err
}

// checkShape checks what holds for every result: one entry per index in
// order, consistent counts, every failure an *IndexError naming its index.
func checkShape(t *testing.T, res *batch.Result[Out], n int) {
	t.Helper()
	if len(res.Indices) != n {
		t.Fatalf("%d results, want %d", len(res.Indices), n)
	}
	done, failed := 0, 0
	for i, x := range res.Indices {
		if x.Index != i {
			t.Fatalf("result %d is for index %d", i, x.Index)
		}
		if x.OK {
			done++
			if x.Output.Index != i || !slices.Equal(x.Output.Items, Expected(i)) {
				t.Errorf("index %d: output %+v, want items %v", i, x.Output, Expected(i))
			}
			if x.Err != nil {
				t.Errorf("index %d: OK with error %v", i, x.Err)
			}
			continue
		}
		failed++
		var ie *batch.IndexError
		if !errors.As(x.Err, &ie) || ie.Index != i || ie.Job != Job.Name() {
			t.Errorf("index %d: error %v, want an *IndexError for it", i, x.Err)
		}
	}
	if res.Done != done || res.Failed+res.NotRun != failed {
		t.Errorf("counts: done %d failed %d not run %d; the entries say %d done, %d not", res.Done, res.Failed, res.NotRun, done, failed)
	}
	if (failed == 0) != (res.Err() == nil) {
		t.Errorf("Err() = %v with %d failures", res.Err(), failed)
	}
}

// sinkCalls counts the sink's calls for each index.
func sinkCalls(t *testing.T, dir string, n int) []int {
	t.Helper()
	lines, err := readLines(filepath.Join(dir, "sink.log"))
	if err != nil {
		t.Fatal(err)
	}
	calls := make([]int, n)
	for _, i := range lines {
		if i < 0 || i >= n {
			t.Fatalf("the sink was called for index %d of %d", i, n)
		}
		calls[i]++
	}
	return calls
}

func testOrder(t *testing.T, b batch.Backend) {
	p := Params{N: 200, Dir: t.TempDir()}
	rec := &recorder{}
	res, err := run(t, b, p, batch.Events(rec))
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != p.N || res.Failed != 0 || res.NotRun != 0 || res.Resumed != 0 {
		t.Fatalf("%v", res)
	}
	for i, x := range res.Indices {
		if x.Attempts != 1 || x.Worker == "" || x.Started.IsZero() || x.Finished.Before(x.Started) {
			t.Errorf("index %d: attempts %d, worker %q, started %v, finished %v", i, x.Attempts, x.Worker, x.Started, x.Finished)
		}
		if ev := rec.of(i); ev[batch.EventStart] != 1 || ev[batch.EventDone] != 1 || ev[batch.EventFailed] != 0 {
			t.Errorf("index %d: events %v, want one start and one done", i, ev)
		}
	}
	for i, n := range sinkCalls(t, p.Dir, p.N) {
		if n != 1 {
			t.Errorf("index %d: sink called %d times", i, n)
		}
	}
	if rec.begun != 1 || rec.ended != 1 {
		t.Errorf("observer: Begin %d times, End %d times", rec.begun, rec.ended)
	}
	if len(res.Outputs()) != p.N {
		t.Errorf("Outputs: %d", len(res.Outputs()))
	}
}

func testPartitions(t *testing.T, b batch.Backend) {
	// Groups declared by the source, by the sink, or by both (the source's
	// win): each group is one ordered task, run in order on one worker.
	for _, on := range []string{"source", "sink", "both"} {
		t.Run("On="+on, func(t *testing.T) {
			p := Params{N: 60, Dir: t.TempDir(), Group: 4, GroupOn: on}
			rec := &taskRecorder{Backend: b}
			res, err := run(t, rec, p)
			if err != nil {
				t.Fatal(err)
			}
			groups, err := groupOrder(p.Dir)
			if err != nil {
				t.Fatal(err)
			}
			want := wantGroups(p)
			if len(groups) != len(want) {
				t.Fatalf("%d groups ran, want %d", len(groups), len(want))
			}
			for g, members := range want {
				if !slices.Equal(groups[g], members) {
					t.Errorf("group %d ran %v, want %v in this order", g, groups[g], members)
				}
				for _, i := range members {
					if w := res.Indices[i].Worker; w != res.Indices[members[0]].Worker {
						t.Errorf("group %d: index %d ran on %q, index %d on %q", g, i, w, members[0], res.Indices[members[0]].Worker)
					}
				}
			}
			ordered := rec.ordered()
			slices.SortFunc(ordered, func(a, b []int) int { return a[0] - b[0] })
			var wantOrdered [][]int
			for g := range len(want) {
				wantOrdered = append(wantOrdered, want[g])
			}
			if !slices.EqualFunc(ordered, wantOrdered, slices.Equal[[]int]) {
				t.Errorf("ordered tasks %v, want one per group: %v", ordered, wantOrdered)
			}
			for _, i := range rec.unordered() {
				if i%10 < 8 {
					t.Errorf("index %d of group %d ran in a task that is not its group's", i, i/p.Group)
				}
			}
		})
	}

	// A group with a failing member keeps its order: the retry and the rest
	// of the group run after the failed attempt, in order.
	p := Params{N: 20, Dir: t.TempDir(), Group: 4, Fail: map[int]string{5: "flaky"}}
	res, err := run(t, b, p, batch.Retries(2))
	if err != nil {
		t.Fatal(err)
	}
	if x := res.Indices[5]; x.Attempts != 3 {
		t.Errorf("index 5: %d attempts, want 3", x.Attempts)
	}
	groups, err := groupOrder(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for g, members := range wantGroups(p) {
		if !slices.Equal(groups[g], members) {
			t.Errorf("group %d ran %v, want %v in this order", g, groups[g], members)
		}
	}
}

// wantGroups returns the members of each group of p, in order.
func wantGroups(p Params) map[int][]int {
	want := map[int][]int{}
	for i := range p.N {
		if i%10 < 8 {
			want[i/p.Group] = append(want[i/p.Group], i)
		}
	}
	return want
}

func testFailFast(t *testing.T, b batch.Backend) {
	// The default, and FailFast given explicitly (after ContinueOnError,
	// which it overrides).
	t.Run("Default", func(t *testing.T) { checkFailFast(t, b) })
	t.Run("Explicit", func(t *testing.T) { checkFailFast(t, b, batch.ContinueOnError(), batch.FailFast()) })
}

func checkFailFast(t *testing.T, b batch.Backend, opts ...batch.Option) {
	// Large enough that the run cannot have dispatched everything when
	// index 10 fails (at most Slots tasks of 64 are in flight).
	p := Params{N: 1500, Dir: t.TempDir(), Fail: map[int]string{10: "error"}}
	res, err := run(t, b, p, opts...)
	var ie *batch.IndexError
	if !errors.As(err, &ie) || ie.Index != 10 || ie.Attempts != 1 || !strings.Contains(err.Error(), "bad input at index 10") {
		t.Fatalf("Run: %v, want index 10's failure", err)
	}
	if res == nil {
		t.Fatal("no partial result")
	}
	if res.Failed != 1 || res.Indices[10].OK || res.Done+res.Failed+res.NotRun != p.N {
		t.Fatalf("%v", res)
	}
	calls := sinkCalls(t, p.Dir, p.N)
	for i, x := range res.Indices {
		switch {
		case x.OK:
			if calls[i] != 1 {
				t.Errorf("index %d: OK, sink called %d times", i, calls[i])
			}
		case i != 10:
			if !errors.Is(x.Err, batch.ErrNotRun) || !strings.Contains(x.Err.Error(), "index 10 failed") {
				t.Errorf("index %d: %v, want ErrNotRun naming index 10", i, x.Err)
			}
		}
	}
	if res.NotRun == 0 {
		t.Errorf("nothing was left unrun: %v", res)
	}
}

func testContinue(t *testing.T, b batch.Backend) {
	p := Params{N: 60, Dir: t.TempDir(), Fail: map[int]string{3: "error", 17: "panic"}}
	res, err := run(t, b, p, batch.ContinueOnError())
	if err != nil {
		t.Fatalf("Run: %v, want nil under ContinueOnError", err)
	}
	if res.Failed != 2 || res.Done != p.N-2 || res.NotRun != 0 {
		t.Fatalf("%v", res)
	}
	if msg := res.Indices[3].Err.Error(); !strings.Contains(msg, "bad input at index 3") || !strings.Contains(msg, "index 3") {
		t.Errorf("index 3: %v", msg)
	}
	var pe *batch.PanicError
	if !errors.As(res.Indices[17].Err, &pe) || !strings.Contains(fmt.Sprint(pe.Value), "index 17 is poisoned") || !strings.Contains(pe.Stack, "batchtest") {
		t.Errorf("index 17: %v, want a *PanicError with its stack", res.Indices[17].Err)
	}
	joined := res.Err().Error()
	if !strings.Contains(joined, "index 3") || !strings.Contains(joined, "index 17") {
		t.Errorf("Err(): %v", joined)
	}
}

func testRetries(t *testing.T, b batch.Backend) {
	// Index 5 fails in its source; index 8 in its sink, after its items
	// went through the accumulator, whose state for a failed attempt must
	// not count.
	p := Params{N: 30, Dir: t.TempDir(), Fail: map[int]string{5: "flaky", 8: "flaky-sink"}}
	rec := &recorder{}
	res, err := run(t, b, p, batch.Retries(2), batch.Events(rec))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{5, 8} {
		if x := res.Indices[i]; !x.OK || x.Attempts != 3 {
			t.Fatalf("index %d: OK %v after %d attempts (%v), want OK after 3", i, x.OK, x.Attempts, x.Err)
		}
		if ev := rec.of(i); ev[batch.EventStart] != 3 || ev[batch.EventFailed] != 2 || ev[batch.EventDone] != 1 {
			t.Errorf("index %d: events %v", i, ev)
		}
	}
	for _, e := range rec.events {
		if e.Kind == batch.EventFailed && (e.Final || (e.Index != 5 && e.Index != 8) || e.Err == nil) {
			t.Errorf("unexpected failure event %+v", e)
		}
	}
	checkStats(t, res, expectedStats(p.N))
	// Without retries the same index fails on its first attempt.
	p.Dir = t.TempDir()
	res, err = run(t, b, p, batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	if x := res.Indices[5]; x.OK || x.Attempts != 1 || res.Failed != 2 {
		t.Fatalf("index 5 without retries: %+v (%v)", x, res)
	}
	if x := res.Indices[8]; x.OK || x.Attempts != 1 || !strings.Contains(x.Err.Error(), "flaky failure 1 at index 8") {
		t.Fatalf("index 8 without retries: %+v", x)
	}
	checkStats(t, res, expectedStats(p.N, 5, 8))
}

// testPermanent checks that an error marked retry.Permanent is not
// retried, wherever the index ran, while a flaky one is.
func testPermanent(t *testing.T, b batch.Backend) {
	p := Params{N: 20, Dir: t.TempDir(), Fail: map[int]string{4: "permanent", 7: "flaky"}}
	rec := &recorder{}
	res, err := run(t, b, p, batch.Retries(2), batch.ContinueOnError(), batch.Events(rec),
		batch.RetryBackoff(retry.Backoff{Initial: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	x := res.Indices[4]
	if x.OK || x.Attempts != 1 || !retry.IsPermanent(x.Err) || !strings.Contains(x.Err.Error(), "index 4: not UTF-8") {
		t.Fatalf("index 4: OK %v after %d attempts: %v; want a permanent error after 1 attempt", x.OK, x.Attempts, x.Err)
	}
	if n := count(p.Dir, "attempt-4-"); n != 1 {
		t.Errorf("index 4 ran %d times, want once", n)
	}
	if ev := rec.of(4); ev[batch.EventStart] != 1 || ev[batch.EventFailed] != 1 {
		t.Errorf("index 4: events %v", ev)
	}
	for _, e := range rec.events {
		if e.Kind == batch.EventFailed && e.Index == 4 && (!e.Final || !retry.IsPermanent(e.Err)) {
			t.Errorf("index 4's failure: %+v, want final and permanent", e)
		}
	}
	if x := res.Indices[7]; !x.OK || x.Attempts != 3 {
		t.Errorf("index 7 (flaky): OK %v after %d attempts, want OK after 3", x.OK, x.Attempts)
	}
	if res.Failed != 1 || res.Done != p.N-1 {
		t.Errorf("%v", res)
	}
}

// checkStats checks the merged state of the suite's accumulator.
func checkStats(t *testing.T, res *batch.Result[Out], want Stats) {
	t.Helper()
	got, err := batch.State[Stats](res, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("merged state %+v, want %+v (the stats of the successful indices, each once)", got, want)
	}
}

// timeoutLimit is the per-index Timeout of the timeout tests: far more
// than an index that does not block takes. Each of these tests has one
// blocking index, so that in a backend with worker processes no other
// timeout kills the worker it runs on.
const timeoutLimit = 300 * time.Millisecond

func testTimeout(t *testing.T, b batch.Backend) {
	p := Params{N: 12, Dir: t.TempDir(), Fail: map[int]string{2: "block"}}
	res, err := run(t, b, p, batch.Timeout(timeoutLimit), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	x := res.Indices[2]
	var te *batch.TimeoutError
	if x.OK || !errors.As(x.Err, &te) || te.Index != 2 || te.Limit != timeoutLimit || x.Attempts != 1 {
		t.Fatalf("index 2: %+v, want a *TimeoutError after one attempt", x)
	}
	if res.Done != p.N-1 {
		t.Fatalf("%v: the other indices must succeed", res)
	}
	checkStats(t, res, expectedStats(p.N, 2))
}

func testTimeoutInGroup(t *testing.T, b batch.Backend) {
	// Index 5 blocks in group 1 (indices 4 to 7): it fails, and the rest of
	// the group runs after it, in order.
	p := Params{N: 8, Dir: t.TempDir(), Group: 4, Fail: map[int]string{5: "block"}}
	res, err := run(t, b, p, batch.Timeout(timeoutLimit), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	x := res.Indices[5]
	var te *batch.TimeoutError
	if x.OK || !errors.As(x.Err, &te) || te.Index != 5 || te.Limit != timeoutLimit || x.Attempts != 1 {
		t.Fatalf("index 5: %+v, want a *TimeoutError after one attempt", x)
	}
	if res.Done != p.N-1 || res.Failed != 1 {
		t.Fatalf("%v: the other indices must succeed", res)
	}
	groups, err := groupOrder(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]int{{0, 1, 2, 3}, {4, 6, 7}}; len(groups) != 2 || !slices.Equal(groups[0], want[0]) || !slices.Equal(groups[1], want[1]) {
		t.Errorf("the groups ran %v, want %v in this order", groups, want)
	}
	checkStats(t, res, expectedStats(p.N, 5))
	var pt *proc.TimeoutError
	if errors.As(x.Err, &pt) {
		// A worker process was killed and replaced. A group runs on one
		// worker slot: index 4 ran on the worker that index 5 then timed
		// out on, indices 6 and 7 on its replacement.
		w4, w5, w6, w7 := res.Indices[4].Worker, x.Worker, res.Indices[6].Worker, res.Indices[7].Worker
		if w4 == "" || w5 != w4 || w6 == "" || w6 != w7 {
			t.Errorf("group 1 ran on %q, %q (timed out), %q, %q: want indices 4 and 5 on one worker, 6 and 7 on one worker", w4, w5, w6, w7)
		}
		if w6 == w5 {
			t.Errorf("indices 6 and 7 ran on %s, the worker index 5 timed out on: it was not replaced", w6)
		}
	}
}

func testTimeoutRetryInGroup(t *testing.T, b batch.Backend) {
	// Index 5 blocks on its first attempt only: the group stops there, and
	// the retry and the rest of the group follow, in order.
	p := Params{N: 8, Dir: t.TempDir(), Group: 4, Fail: map[int]string{5: "block-once"}}
	rec := &recorder{}
	res, err := run(t, b, p, batch.Timeout(timeoutLimit), batch.Retries(1), batch.Events(rec))
	if err != nil {
		t.Fatal(err)
	}
	if x := res.Indices[5]; !x.OK || x.Attempts != 2 {
		t.Fatalf("index 5: OK %v after %d attempts (%v), want OK after 2", x.OK, x.Attempts, x.Err)
	}
	if res.Done != p.N {
		t.Fatalf("%v: every index must succeed", res)
	}
	var failures []batch.Event
	for _, e := range rec.events {
		if e.Kind == batch.EventFailed {
			failures = append(failures, e)
		}
	}
	var te *batch.TimeoutError
	if len(failures) != 1 || failures[0].Index != 5 || failures[0].Attempt != 1 || failures[0].Final || !errors.As(failures[0].Err, &te) || te.Index != 5 {
		t.Errorf("failure events %+v, want one, a *TimeoutError of index 5's first attempt", failures)
	}
	groups, err := groupOrder(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for g, members := range wantGroups(p) {
		if !slices.Equal(groups[g], members) {
			t.Errorf("group %d ran %v, want %v in this order", g, groups[g], members)
		}
	}
	checkStats(t, res, expectedStats(p.N))
}

func testCrash(t *testing.T, b batch.Backend) {
	p := Params{N: 40, Dir: t.TempDir(), Fail: map[int]string{4: "crash", 9: "crash-once"}}
	res, err := run(t, b, p, batch.Retries(1), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	x := res.Indices[4]
	var pe *batch.PanicError
	var we *proc.WorkerError
	switch {
	case x.OK || x.Attempts != 2:
		t.Fatalf("index 4: OK %v after %d attempts, want a failure after 2", x.OK, x.Attempts)
	case errors.As(x.Err, &we):
		if we.ExitCode != 3 {
			t.Errorf("index 4: %v, want exit status 3", we)
		}
	case errors.As(x.Err, &pe):
		if pe.Stack == "" {
			t.Errorf("index 4: a panic without its stack")
		}
	default:
		t.Errorf("index 4: %v, want a *proc.WorkerError or a *batch.PanicError", x.Err)
	}
	if y := res.Indices[9]; !y.OK || y.Attempts > 2 {
		t.Errorf("index 9 crashed once: OK %v after %d attempts (%v), want OK", y.OK, y.Attempts, y.Err)
	}
	if res.Done != p.N-1 || res.Failed != 1 {
		t.Errorf("%v: only index 4 may fail", res)
	}
	checkStats(t, res, expectedStats(p.N, 4))
}

func testCrashInGroup(t *testing.T, b batch.Backend) {
	// Index 5 crashes its worker once, in group 1 (indices 4 to 7); index
	// 13 crashes it on every attempt, in group 3 (12 to 15).
	p := Params{N: 20, Dir: t.TempDir(), Group: 4, Fail: map[int]string{5: "crash-once", 13: "crash"}}
	res, err := run(t, b, p, batch.Retries(1), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	if y := res.Indices[5]; !y.OK || y.Attempts > 2 {
		t.Errorf("index 5 crashed once: OK %v after %d attempts (%v), want OK", y.OK, y.Attempts, y.Err)
	}
	var pe *batch.PanicError
	var we *proc.WorkerError
	if x := res.Indices[13]; x.OK || x.Attempts != 2 || !(errors.As(x.Err, &we) || errors.As(x.Err, &pe)) {
		t.Errorf("index 13: OK %v after %d attempts (%v), want a crash after 2", x.OK, x.Attempts, x.Err)
	}
	if res.Done != p.N-1 || res.Failed != 1 {
		t.Errorf("%v: only index 13 may fail", res)
		for _, x := range res.Indices {
			if !x.OK {
				t.Logf("index %d: %v", x.Index, x.Err)
			}
		}
	}
	// The members from the crash on ran once each, in order, after every
	// run of the members before it (which may have run again, with the
	// group, after their worker died).
	groups, err := groupOrder(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for g, members := range wantGroups(p) {
		crash := slices.IndexFunc(members, func(i int) bool { return p.Fail[i] != "" })
		if crash < 0 {
			// A group lost with a worker that another index crashed may
			// have run, whole or in part, before it ran again.
			if !rerunsInOrder(groups[g], members) {
				t.Errorf("group %d ran %v, want %v in this order (after partial runs of it, if it was lost with its worker)", g, groups[g], members)
			}
			continue
		}
		ran := groups[g]
		var want []int
		for _, i := range members[crash:] {
			if p.Fail[i] != "crash" {
				want = append(want, i)
			}
		}
		k := len(ran) - len(want)
		if k < 0 || !slices.Equal(ran[k:], want) {
			t.Errorf("group %d ran %v, want it to end with %v", g, ran, want)
			continue
		}
		for _, i := range ran[:k] {
			if !slices.Contains(members[:crash], i) {
				t.Errorf("group %d ran %v: index %d ran before the retry of index %d", g, ran, i, members[crash])
			}
		}
		for _, i := range members[:crash] {
			if !slices.Contains(ran[:k], i) {
				t.Errorf("group %d ran %v: index %d did not", g, ran, i)
			}
		}
	}
	checkStats(t, res, expectedStats(p.N, 13))
}

// rerunsInOrder reports whether ran is runs of the group members, each
// in order from its first member, the last one whole: what a group's
// sink sees when its worker died under it (the parent cannot know how
// far it got) and it ran again.
func rerunsInOrder(ran, members []int) bool {
	for len(ran) > 0 {
		k := 1
		for k < len(ran) && ran[k] > ran[k-1] {
			k++
		}
		if !slices.Equal(ran[:k], members[:min(k, len(members))]) {
			return false
		}
		if k == len(ran) {
			return k == len(members)
		}
		ran = ran[k:]
	}
	return len(members) == 0
}

func testState(t *testing.T, b batch.Backend) {
	p := Params{N: 300, Dir: t.TempDir(), Fail: map[int]string{7: "error"}}
	res, err := run(t, b, p, batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, res, expectedStats(p.N, 7))
	if _, err := batch.State[int](res, "stats"); err == nil {
		t.Error("State with the wrong type: no error")
	}
	if _, err := batch.State[Stats](res, "nope"); err == nil {
		t.Error("State of an unknown accumulator: no error")
	}
}

// expectedStats is the sequential answer: the stats of every index but
// those in skip.
func expectedStats(n int, skip ...int) Stats {
	var s Stats
	for i := range n {
		if slices.Contains(skip, i) {
			continue
		}
		for _, v := range Expected(i) {
			s.Count++
			s.Sum += v
		}
	}
	return s
}

// checkResumed runs the job again with Resume after a first run that
// stopped, and checks that only the rest ran.
func checkResumed(t *testing.T, b batch.Backend, p Params, cp *Checkpoint, first *batch.Result[Out]) {
	t.Helper()
	before := sinkCalls(t, p.Dir, p.N)
	res, err := run(t, b, p, batch.WithCheckpoint(cp), batch.Resume())
	if err != nil {
		t.Fatal(err)
	}
	after := sinkCalls(t, p.Dir, p.N)
	if res.Done != p.N || res.Resumed != first.Done {
		t.Fatalf("%v; the first run did %d", res, first.Done)
	}
	for i, x := range res.Indices {
		if x.Resumed != first.Indices[i].OK {
			t.Errorf("index %d: Resumed %v, but OK %v in the first run", i, x.Resumed, first.Indices[i].OK)
		}
		want := 1
		if x.Resumed {
			want = 0
		}
		if n := after[i] - before[i]; n != want {
			t.Errorf("index %d: sink called %d times by the resumed run, want %d", i, n, want)
		}
	}
	got, err := batch.State[Stats](res, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if want := expectedStats(p.N); got != want {
		t.Errorf("merged state after resume %+v, want %+v", got, want)
	}
	for i, n := range cp.RecordCalls() {
		if n != 1 || res.Indices[i].Resumed {
			t.Errorf("index %d: recorded %d times by the resumed run (resumed %v)", i, n, res.Indices[i].Resumed)
		}
	}
	if rec := cp.Records(res.ID); len(rec) != p.N {
		t.Errorf("the checkpoint has %d records, want %d", len(rec), p.N)
	}
}

func testResumeFailFast(t *testing.T, b batch.Backend) {
	p := Params{N: 80, Dir: t.TempDir(), Fail: map[int]string{30: "poison"}}
	if err := os.WriteFile(filepath.Join(p.Dir, "poison"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cp := NewCheckpoint()
	first, err := run(t, b, p, batch.WithCheckpoint(cp))
	if err == nil || first == nil || first.Done == p.N {
		t.Fatalf("first run: %v, %v: want it stopped by index 30", first, err)
	}
	if begins, closes := cp.Counts(); begins != 1 || closes != 1 {
		t.Errorf("checkpoint: %d Begin, %d Close", begins, closes)
	}
	recs := cp.Records(first.ID)
	for i, x := range first.Indices {
		r, ok := recs[i]
		switch {
		case x.OK && (!ok || !r.OK || r.Attempts != 1 || len(r.Output) == 0):
			t.Errorf("index %d: OK but recorded as %+v", i, r)
		case !x.OK && !errors.Is(x.Err, batch.ErrNotRun) && (!ok || r.OK || r.Err == ""):
			t.Errorf("index %d: failed but recorded as %+v", i, r)
		case errors.Is(x.Err, batch.ErrNotRun) && ok:
			t.Errorf("index %d: not run but recorded as %+v", i, r)
		}
	}
	if err := os.Remove(filepath.Join(p.Dir, "poison")); err != nil {
		t.Fatal(err)
	}
	checkResumed(t, b, p, cp, first)
}

func testResumeCancel(t *testing.T, b batch.Backend) {
	p := Params{N: 2000, Dir: t.TempDir()} // more than can be in flight at the 20th index
	cp := NewCheckpoint()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rec := &recorder{onDone: func(n int) {
		if n == 20 {
			cancel()
		}
	}}
	first, err := Job.Run(ctx, p, batch.WithBackend(b), batch.WithCheckpoint(cp), batch.Events(rec), batch.Logger(testLogger(t)))
	if !errors.Is(err, context.Canceled) || first == nil {
		t.Fatalf("first run: %v, want context.Canceled with a partial result", err)
	}
	checkShape(t, first, p.N)
	if first.Done < 20 || first.Done == p.N || first.NotRun == 0 || first.Failed != 0 {
		t.Fatalf("first run: %v", first)
	}
	for _, x := range first.Indices {
		if !x.OK && !errors.Is(x.Err, batch.ErrNotRun) {
			t.Errorf("index %d: %v, want ErrNotRun", x.Index, x.Err)
		}
	}
	checkResumed(t, b, p, cp, first)
}

func testBadInput(t *testing.T, b batch.Backend) {
	dir := t.TempDir()
	for _, mode := range []string{"nil-source", "negative-len"} {
		res, err := run(t, b, Params{N: 3, Dir: dir, Mode: mode})
		if err == nil || res != nil || !strings.Contains(err.Error(), Job.Name()) {
			t.Errorf("%s: %v, %v: want an error naming the job", mode, res, err)
		}
	}
	if _, err := run(t, b, Params{N: 3, Dir: dir}, batch.Resume()); err == nil {
		t.Error("Resume without a checkpoint: no error")
	}
	if _, err := run(t, b, Params{N: 3, Dir: dir}, batch.Retries(-1)); err == nil {
		t.Error("Retries(-1): no error")
	}
	_, err := b.Open(t.Context(), batch.JobSpec{Name: "ferry.batchtest/undefined", Params: []byte("{}"), Len: 1})
	if !errors.Is(err, batch.ErrUnknownJob) || !strings.Contains(err.Error(), "ferry.batchtest/undefined") {
		t.Errorf("Open of an undefined job: %v, want ErrUnknownJob naming it", err)
	}
	// An empty job runs and returns an empty result.
	res, err := run(t, b, Params{N: 0, Dir: dir})
	if err != nil || res.Done != 0 || len(res.Indices) != 0 {
		t.Errorf("empty job: %v, %v", res, err)
	}
}
