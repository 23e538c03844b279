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
		{"Timeout", testTimeout},
		{"Crash", testCrash},
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
	p := Params{N: 60, Dir: t.TempDir(), Group: 4}
	res, err := run(t, b, p)
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

	// A group with a failing member keeps its order: the retry and the rest
	// of the group run after the failed attempt, in order.
	p = Params{N: 20, Dir: t.TempDir(), Group: 4, Fail: map[int]string{5: "flaky"}}
	res, err = run(t, b, p, batch.Retries(2))
	if err != nil {
		t.Fatal(err)
	}
	if x := res.Indices[5]; x.Attempts != 3 {
		t.Errorf("index 5: %d attempts, want 3", x.Attempts)
	}
	if groups, err = groupOrder(p.Dir); err != nil {
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
	// Large enough that the run cannot have dispatched everything when
	// index 10 fails (at most Slots tasks of 64 are in flight).
	p := Params{N: 1500, Dir: t.TempDir(), Fail: map[int]string{10: "error"}}
	res, err := run(t, b, p)
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
	p := Params{N: 30, Dir: t.TempDir(), Fail: map[int]string{5: "flaky"}}
	rec := &recorder{}
	res, err := run(t, b, p, batch.Retries(2), batch.Events(rec))
	if err != nil {
		t.Fatal(err)
	}
	if x := res.Indices[5]; !x.OK || x.Attempts != 3 {
		t.Fatalf("index 5: OK %v after %d attempts (%v), want OK after 3", x.OK, x.Attempts, x.Err)
	}
	if ev := rec.of(5); ev[batch.EventStart] != 3 || ev[batch.EventFailed] != 2 || ev[batch.EventDone] != 1 {
		t.Errorf("index 5: events %v", ev)
	}
	for _, e := range rec.events {
		if e.Kind == batch.EventFailed && (e.Final || e.Index != 5 || e.Err == nil) {
			t.Errorf("unexpected failure event %+v", e)
		}
	}
	// Without retries the same index fails on its first attempt.
	p.Dir = t.TempDir()
	res, err = run(t, b, p, batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	if x := res.Indices[5]; x.OK || x.Attempts != 1 || res.Failed != 1 {
		t.Fatalf("index 5 without retries: %+v", x)
	}
}

func testTimeout(t *testing.T, b batch.Backend) {
	const limit = 400 * time.Millisecond
	p := Params{N: 12, Dir: t.TempDir(), Fail: map[int]string{2: "block"}}
	res, err := run(t, b, p, batch.Timeout(limit), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	x := res.Indices[2]
	var te *batch.TimeoutError
	if x.OK || !errors.As(x.Err, &te) || te.Index != 2 || te.Limit != limit || x.Attempts != 1 {
		t.Fatalf("index 2: %+v, want a *TimeoutError after one attempt", x)
	}
	if res.Done != p.N-1 {
		t.Fatalf("%v: the other indices must succeed", res)
	}
	var pt *proc.TimeoutError
	if errors.As(x.Err, &pt) {
		// A worker process was killed and replaced: indices after it ran on
		// another worker.
		replaced := false
		for _, y := range res.Indices[3:] {
			if y.Worker != x.Worker {
				replaced = true
			}
		}
		if !replaced {
			t.Errorf("every index after the timeout ran on %s, the killed worker", x.Worker)
		}
	}
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
}

func testState(t *testing.T, b batch.Backend) {
	p := Params{N: 300, Dir: t.TempDir(), Fail: map[int]string{7: "error"}}
	res, err := run(t, b, p, batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	got, err := batch.State[Stats](res, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if want := expectedStats(p.N, 7); got != want {
		t.Errorf("merged state %+v, want %+v", got, want)
	}
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
