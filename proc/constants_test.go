//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// The worker side of the constants tests finds the constant's name in its
// environment.
const constEnv = "FERRY_TEST_CONSTANT"

// A worker started with FERRY_TEST_PRESHARE=name shares a constant of that
// name itself at package init, as a program that calls shm.Share in every
// process would: the constant the parent hands it under that name cannot
// be registered.
func init() {
	if name := os.Getenv("FERRY_TEST_PRESHARE"); name != "" && os.Getenv("FERRY_WORKER") != "" {
		if _, err := shm.Share(name, []byte("mine")); err != nil {
			panic(err)
		}
	}
}

// constReport is what a worker says about the constant it was given.
type constReport struct {
	PID      int
	InitSum  [32]byte // what the initializer saw
	CodeSum  [32]byte // what worker code saw
	Len      int
	MapLines []string // the lines of its /proc/self/maps that map the constant's memfd
	FDs      int      // its fds open on the constant's memfd
}

// initSum is the digest of the constant as the initializer saw it.
var initSum [32]byte

var constInit = proc.Init("const.init", func(context.Context) error {
	c, ok := shm.Lookup(os.Getenv(constEnv))
	if !ok {
		return fmt.Errorf("constant %q not found by the initializer", os.Getenv(constEnv))
	}
	initSum = sha256.Sum256(c.Bytes())
	return nil
})

// reportConstant describes the constant named in the environment, or
// name if it is set, from inside a worker.
func reportConstant(name string) (constReport, error) {
	if name == "" {
		name = os.Getenv(constEnv)
	}
	c, ok := shm.Lookup(name)
	if !ok {
		return constReport{}, fmt.Errorf("constant %q not found by worker code", name)
	}
	r := constReport{PID: os.Getpid(), InitSum: initSum, CodeSum: sha256.Sum256(c.Bytes()), Len: c.Len()}
	memfd := "/memfd:ferry-const:" + name + " "
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return r, err
	}
	for l := range strings.Lines(string(maps)) {
		if strings.Contains(l, memfd) {
			r.MapLines = append(r.MapLines, strings.TrimSpace(l))
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return r, err
	}
	for _, e := range ents {
		if target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); strings.HasPrefix(target+" ", memfd) {
			r.FDs++
		}
	}
	return r, nil
}

var constIter = proc.Iter("const.iter", func(ctx context.Context, n int) iter.Seq2[constReport, error] {
	return func(yield func(constReport, error) bool) {
		for range n {
			if !yield(reportConstant("")) {
				return
			}
		}
	}
})

// constArgs is the input of constCall.
type constArgs struct {
	FIFO string // if set, wait for it to be opened for writing and closed first, which keeps the call in flight at its worker
	Name string // the constant to report on, if not the environment's
}

// constCall reports on a constant.
var constCall = proc.Func("const.call", func(ctx context.Context, a constArgs) (constReport, error) {
	if a.FIFO != "" {
		if _, err := os.ReadFile(a.FIFO); err != nil {
			return constReport{}, err
		}
	}
	return reportConstant(a.Name)
})

// shareConstant shares 1 MiB of patterned bytes under name, for the length
// of the test, and returns the constant and their digest.
func shareConstant(t *testing.T, name string) (*shm.Constant, [32]byte) {
	t.Helper()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>10)
	}
	c, err := shm.Share(name, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, sha256.Sum256(data)
}

// fdsOn counts this process's fds whose target starts with prefix.
func fdsOn(t *testing.T, prefix string) int {
	t.Helper()
	n := 0
	for _, fd := range leakcheck.OpenFDs(t) {
		_, target, _ := strings.Cut(fd, "→")
		if strings.HasPrefix(target+" ", prefix) {
			n++
		}
	}
	return n
}

// checkParentFD checks that the parent holds one fd on the constant
// named name, its own, whatever it handed to workers (they get
// duplicates, closed in the parent once sent or inherited).
func checkParentFD(t *testing.T, name string) {
	t.Helper()
	if n := fdsOn(t, "/memfd:ferry-const:"+name+" "); n != 1 {
		t.Errorf("parent: %d fds on the constant %q with workers running, want 1", n, name)
	}
}

// checkReport checks that a worker saw the whole constant, from its
// initializer and from its code, mapped once, read-only, through one fd.
func checkReport(t *testing.T, r constReport, sum [32]byte) {
	t.Helper()
	if r.InitSum != sum {
		t.Errorf("worker %d: digest %x in the initializer, want %x", r.PID, r.InitSum[:4], sum[:4])
	}
	checkMapped(t, r, sum)
}

// checkMapped checks that worker code saw the whole constant, mapped once,
// read-only, through one fd.
func checkMapped(t *testing.T, r constReport, sum [32]byte) {
	t.Helper()
	if r.CodeSum != sum || r.Len != 1<<20 {
		t.Errorf("worker %d: saw %d bytes, digest %x in its code; want %x", r.PID, r.Len, r.CodeSum[:4], sum[:4])
	}
	if len(r.MapLines) != 1 {
		t.Fatalf("worker %d: the constant is mapped %d times: %q", r.PID, len(r.MapLines), r.MapLines)
	}
	if f := strings.Fields(r.MapLines[0]); len(f) < 2 || f[1] != "r--s" {
		t.Errorf("worker %d: the constant is mapped %q, want read-only and shared (r--s)", r.PID, r.MapLines[0])
	}
	if r.FDs != 1 {
		t.Errorf("worker %d: %d fds on the constant, want 1 (the inherited one closed)", r.PID, r.FDs)
	}
}

// checkPasses runs two passes over it, each of which must bring n reports
// of its worker on the constant whose digest is sum.
func checkPasses(t *testing.T, it *proc.Iterable[constReport], n int, sum [sha256.Size]byte) {
	t.Helper()
	for pass := range 2 {
		got := 0
		for r, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatalf("pass %d: %v", pass, err)
			}
			if r.PID != it.PID() {
				t.Fatalf("report from pid %d, worker is %d", r.PID, it.PID())
			}
			checkReport(t, r, sum)
			got++
		}
		if got != n {
			t.Fatalf("pass %d: %d reports, want %d", pass, got, n)
		}
	}
}

func TestConstantsIterate(t *testing.T) {
	noLeaks(t)
	c, sum := shareConstant(t, "const.weights.iter")
	it, err := proc.Iterate(t.Context(), constIter, 2, proc.Constants(c), proc.Initializers(constInit),
		proc.Env(constEnv+"="+c.Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	// The duplicate the worker inherited is closed in the parent, which
	// keeps its own.
	checkParentFD(t, c.Name())
	checkPasses(t, it, 2, sum)
	if got := sha256.Sum256(c.Bytes()); got != sum {
		t.Errorf("the parent's constant changed")
	}
}

// constPipeline is a pipeline of n reports on the constant, made by a
// stage in the worker; its builder, which runs in the worker too, looks
// the constant up first.
var constPipeline = proc.Pipeline("const.pipeline", func(n int) (*pipeline.Config[constReport], error) {
	if _, ok := shm.Lookup(os.Getenv(constEnv)); !ok {
		return nil, fmt.Errorf("constant %q not found by the pipeline's builder", os.Getenv(constEnv))
	}
	src := pipeline.FromSlice(seqN(n))
	reports := pipeline.Pipe(src, func(context.Context, int) (constReport, error) { return reportConstant("") })
	return pipeline.Sink(reports, 2).With(pipeline.Continuous()), nil
})

func TestConstantsRunPipeline(t *testing.T) {
	noLeaks(t)
	c, sum := shareConstant(t, "const.weights.pipeline")
	it, err := proc.RunPipeline(t.Context(), constPipeline, 3, proc.Constants(c), proc.Initializers(constInit),
		proc.Env(constEnv+"="+c.Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	checkParentFD(t, c.Name())
	checkPasses(t, it, 3, sum)
}

// TestConstantsPool checks both workers of a pool: a first call is held
// in flight at one worker (on a FIFO), so that the second goes to the
// other one.
func TestConstantsPool(t *testing.T) {
	noLeaks(t)
	c, sum := shareConstant(t, "const.weights.pool")
	// With an arena, which takes fd 4: the constant is fd 5.
	arena := newArena(t, 64<<10, 2)
	pool := newTestPool(t, constCall, proc.Workers(2), proc.InFlight(1), proc.Arena(arena), proc.Constants(c),
		proc.Initializers(constInit), proc.Env(constEnv+"="+c.Name()))
	for _, r := range reportsFromEach(t, pool, "") {
		checkReport(t, r, sum)
	}
}

// reportsFromEach returns a report from each of the two workers of pool
// (made with InFlight(1)): a first call is held in flight at one worker
// (on a FIFO), so that the second goes to the other one.
func reportsFromEach(t *testing.T, pool *proc.Pool[constArgs, constReport], name string) [2]constReport {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "hold")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   constReport
		err error
	}
	first := make(chan result, 1)
	go func() {
		r, err := pool.Call(t.Context(), constArgs{FIFO: fifo, Name: name})
		first <- result{r, err}
	}()
	// Opening the FIFO for writing returns once the first call has opened
	// it for reading: it is in flight at its worker.
	w := openFIFOWriter(t, fifo, first)
	// Bounded, so that a pool left without a second worker fails the test
	// rather than hanging it.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	second, err := pool.Call(ctx, constArgs{Name: name})
	cancel()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	res := <-first
	if res.err != nil {
		t.Fatal(res.err)
	}
	got := []int{res.r.PID, second.PID}
	slices.Sort(got)
	want := poolPIDs(pool.Stats())
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("reports from pids %v, the workers are %v", got, want)
	}
	return [2]constReport{res.r, second}
}

func TestConstantsErrors(t *testing.T) {
	noLeaks(t)
	c, _ := shareConstant(t, "const.errors")
	closed, err := shm.Share("const.closed", []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for _, tc := range []struct {
		name string
		cs   []*shm.Constant
		want string
	}{
		{"nil", []*shm.Constant{c, nil}, "constant 1 is nil"},
		{"twice", []*shm.Constant{c, c}, `two constants are named "const.errors"`},
		{"closed", []*shm.Constant{closed}, `shared constant "const.closed" is closed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proc.Iterate(t.Context(), count, 1, proc.Constants(tc.cs...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Iterate: %v, want an error with %q", err, tc.want)
			}
			_, err = proc.NewPool(t.Context(), poolSquare, proc.Workers(1), proc.Constants(tc.cs...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPool: %v, want an error with %q", err, tc.want)
			}
		})
	}
	// A worker that cannot map a constant does not start, and says which.
	t.Run("unmappable", func(t *testing.T) {
		_, err := proc.Iterate(t.Context(), count, 1, proc.Constants(c), proc.Env("FERRY_TEST_PRESHARE="+c.Name()), poolQuiet)
		var we *proc.WorkerError
		if !errors.As(err, &we) || !strings.Contains(err.Error(), `shared constant "const.errors"`) || !strings.Contains(err.Error(), "already registered") {
			t.Fatalf("Iterate: %v, want a *WorkerError naming the constant", err)
		}
		_, err = proc.NewPool(t.Context(), poolSquare, proc.Workers(2), proc.Constants(c), proc.Env("FERRY_TEST_PRESHARE="+c.Name()), poolQuiet)
		if !errors.As(err, &we) || !strings.Contains(err.Error(), `shared constant "const.errors"`) {
			t.Fatalf("NewPool: %v, want a *WorkerError naming the constant", err)
		}
	})
}

// Score multiplies its input by the weight at its index. It runs in
// worker processes, which all read the same weights, mapped once in
// memory.
var Score = proc.Func("example.score", func(_ context.Context, in [2]float32) (float32, error) {
	c, ok := shm.Lookup("example.weights")
	if !ok {
		return 0, errors.New("no weights")
	}
	w := shm.Float32s(c.Bytes())
	return w[int(in[0])] * in[1], nil
})

// Constants hands read-only shared memory, such as model weights, to every
// worker of a pool; worker code finds it by name with shm.Lookup.
func ExampleConstants() {
	ctx := context.Background()
	weights, err := shm.Share("example.weights", shm.AsBytes([]float32{0.5, 2, 10}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer weights.Close() // after the pool: deferred calls run last first
	pool, err := proc.NewPool(ctx, Score, proc.Workers(2), proc.Constants(weights))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	for i := range 3 {
		out, err := pool.Call(ctx, [2]float32{float32(i), 4})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(i, out)
	}
	// Output:
	// 0 2
	// 1 8
	// 2 40
}

// holdInit, in a worker whose environment names a FIFO in
// FERRY_TEST_HOLD_INIT that exists, waits until the FIFO is opened for
// writing and closed: the test holds a starting worker in its
// initializers.
var holdInit = proc.Init("const.hold-init", func(context.Context) error {
	fifo := os.Getenv("FERRY_TEST_HOLD_INIT")
	if _, err := os.Stat(fifo); fifo == "" || err != nil {
		return nil
	}
	_, err := os.ReadFile(fifo)
	return err
})

// TestPoolShare shares a constant with the running workers of a pool:
// calls made after Share find it in both, mapped once through the memfd
// that came over the control socket, and a worker started later to
// replace one (while Share ran, or after) has it too.
func TestPoolShare(t *testing.T) {
	noLeaks(t)
	const name = "const.shared-later"
	hold := filepath.Join(t.TempDir(), "hold-init")
	pool := newTestPool(t, constCall, proc.Workers(2), proc.InFlight(1), proc.Retries(1),
		proc.Initializers(holdInit), proc.Env(constEnv+"="+name, "FERRY_TEST_HOLD_INIT="+hold))
	if _, err := pool.Call(t.Context(), constArgs{}); err == nil || !strings.Contains(err.Error(), "not found by worker code") {
		t.Fatalf("a call before Share: %v, want the constant not found", err)
	}
	c, sum := shareConstant(t, name)
	if err := pool.Share(t.Context(), c); err != nil {
		t.Fatalf("Share: %v", err)
	}
	// The workers got duplicates; the parent keeps only the constant's own fd.
	checkParentFD(t, name)
	for _, r := range reportsFromEach(t, pool, "") {
		checkMapped(t, r, sum)
	}

	// A replacement that is starting while a second constant is shared:
	// it was started without it, and gets it as it joins the pool, before
	// any call.
	c2, sum2 := shareConstant(t, name+".2")
	if err := unix.Mkfifo(hold, 0o600); err != nil {
		t.Fatal(err)
	}
	victim := poolPIDs(pool.Stats())[0]
	if err := unix.Kill(victim, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Opening the FIFO returns once the replacement's initializer has
	// opened it: the replacement is starting, and not in the pool yet.
	w, err := os.OpenFile(hold, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Share(t.Context(), c2); err != nil {
		t.Fatalf("Share while a replacement starts: %v", err)
	}
	w.Close()
	os.Remove(hold)
	for k, want := range map[string][32]byte{name: sum, c2.Name(): sum2} {
		for _, r := range reportsFromEach(t, pool, k) {
			if r.PID == victim {
				t.Fatalf("a report from the killed worker %d", victim)
			}
			checkMapped(t, r, want)
		}
	}

	// A replacement started after Share inherits both constants.
	victim = poolPIDs(pool.Stats())[1]
	if err := unix.Kill(victim, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][32]byte{name: sum, c2.Name(): sum2} {
		for _, r := range reportsFromEach(t, pool, k) {
			if r.PID == victim {
				t.Fatalf("a report from the killed worker %d", victim)
			}
			checkMapped(t, r, want)
		}
	}
	if st := pool.Stats(); st.Restarts != 2 {
		t.Errorf("%d restarts, want 2: %+v", st.Restarts, st)
	}

	// A shared constant closed while the pool runs is not handed to the
	// workers started afterwards, which start all the same; the older
	// worker keeps its mapping.
	c2.Close()
	before := poolPIDs(pool.Stats())
	victim, older := before[0], before[1]
	if err := unix.Kill(victim, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var fresh int
	for _, r := range reportsFromEach(t, pool, "") {
		checkMapped(t, r, sum)
		if r.PID != older {
			fresh = r.PID
		}
	}
	if fresh == 0 || fresh == victim {
		t.Fatalf("no report from a replacement of %d", victim)
	}
	maps := func(pid int) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), "/memfd:ferry-const:"+name+".2 ")
	}
	if maps(fresh) || !maps(older) {
		t.Errorf("the closed constant: mapped by the worker started after Close: %v, by the older one: %v; want false, true", maps(fresh), maps(older))
	}
	if st := pool.Stats(); st.Restarts != 3 || st.Down != 0 || st.StartFailures != 0 {
		t.Errorf("after closing a shared constant: %+v, want 3 restarts and no slot down", st)
	}
}

func TestPoolShareErrors(t *testing.T) {
	noLeaks(t)
	c, _ := shareConstant(t, "const.share-errors")
	closed, err := shm.Share("const.share-closed", []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	pool := newTestPool(t, constCall, proc.Workers(2), proc.Constants(c))
	for _, tc := range []struct {
		name string
		cs   []*shm.Constant
		want string
	}{
		{"nil", []*shm.Constant{nil}, "constant 0 is nil"},
		{"known", []*shm.Constant{c}, `the pool has a constant named "const.share-errors" already`},
		{"closed", []*shm.Constant{closed}, `shared constant "const.share-closed" is closed`},
	} {
		if err := pool.Share(t.Context(), tc.cs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Share: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	twice, _ := shareConstant(t, "const.share-twice")
	if err := pool.Share(t.Context(), twice, twice); err == nil || !strings.Contains(err.Error(), `already`) {
		t.Errorf("the same constant twice in one Share: %v", err)
	}

	// Workers that already registered the name themselves cannot map it:
	// each says so, naming itself.
	mine, _ := shareConstant(t, "const.share-mine")
	pre := newTestPool(t, constCall, proc.Workers(2), proc.Env("FERRY_TEST_PRESHARE="+mine.Name()))
	pids := poolPIDs(pre.Stats())
	err = pre.Share(t.Context(), mine)
	var re *proc.RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), `mapping shared constant "const.share-mine"`) ||
		!strings.Contains(err.Error(), "already registered") || !slices.Contains(pids, re.PID) {
		t.Errorf("Share to workers that have the name: %v, want a *RemoteError from a worker", err)
	}
	if n := strings.Count(err.Error(), "already registered"); n != 2 {
		t.Errorf("%d workers reported the clash, want 2: %v", n, err)
	}
	// They exit rather than serve calls without the constant.
	for _, pid := range pids {
		svGone(t, pid, time.Minute)
	}

	// A cancelled context and a closed pool.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	late, _ := shareConstant(t, "const.share-late")
	if err := pool.Share(ctx, late); !errors.Is(err, context.Canceled) {
		t.Errorf("Share with a cancelled context: %v, want context.Canceled", err)
	}
	pool.Close()
	last, _ := shareConstant(t, "const.share-last")
	if err := pool.Share(t.Context(), last); !errors.Is(err, proc.ErrClosed) {
		t.Errorf("Share after Close: %v, want ErrClosed", err)
	}
}

// ReadWeight returns the first weight of the constant named by its input.
var ReadWeight = proc.Func("example.read-weight", func(_ context.Context, name string) (float32, error) {
	c, ok := shm.Lookup(name)
	if !ok {
		return 0, fmt.Errorf("no constant %q", name)
	}
	return shm.Float32s(c.Bytes())[0], nil
})

// Share hands new read-only data to the running workers of a pool, for
// example new weights each epoch, without restarting them.
func ExamplePool_Share() {
	ctx := context.Background()
	pool, err := proc.NewPool(ctx, ReadWeight, proc.Workers(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	var shared []*shm.Constant
	defer func() {
		pool.Close() // the constants outlive the pool
		for _, c := range shared {
			c.Close()
		}
	}()
	for epoch := range 2 {
		name := fmt.Sprintf("example.weights.epoch-%d", epoch)
		w, err := shm.Share(name, shm.AsBytes([]float32{float32(epoch) + 0.5}))
		if err != nil {
			fmt.Println(err)
			return
		}
		shared = append(shared, w)
		if err := pool.Share(ctx, w); err != nil {
			fmt.Println(err)
			return
		}
		v, err := pool.Call(ctx, name)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(epoch, v)
	}
	// Output:
	// 0 0.5
	// 1 1.5
}

// TestIterableShare shares constants with the worker of an Iterable
// between passes: the pass after Share finds them.
func TestIterableShare(t *testing.T) {
	noLeaks(t)
	const name = "const.iter-shared-later"
	it, err := proc.Iterate(t.Context(), constIter, 2, proc.Env(constEnv+"="+name))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for _, err := range it.All(t.Context()) {
		if err == nil || !strings.Contains(err.Error(), "not found by worker code") {
			t.Fatalf("a pass before Share: %v, want the constant not found", err)
		}
	}
	c, sum := shareConstant(t, name)
	if err := it.Share(t.Context(), c); err != nil {
		t.Fatalf("Share: %v", err)
	}
	checkParentFD(t, name)
	n := 0
	for r, err := range it.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		checkMapped(t, r, sum)
		n++
	}
	if n != 2 {
		t.Fatalf("%d reports, want 2", n)
	}

	closed, err := shm.Share("const.iter-closed", []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for _, tc := range []struct {
		name string
		cs   []*shm.Constant
		want string
	}{
		{"nil", []*shm.Constant{nil}, "constant 0 is nil"},
		{"known", []*shm.Constant{c}, `has a constant named "const.iter-shared-later" already`},
		{"closed", []*shm.Constant{closed}, `shared constant "const.iter-closed" is closed`},
	} {
		if err := it.Share(t.Context(), tc.cs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Share: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := it.Share(ctx, c); !errors.Is(err, context.Canceled) {
		t.Errorf("Share with a cancelled context: %v", err)
	}
}

// TestIterableShareUnmappable: a worker that cannot map a shared constant
// says why and exits; the next pass reports its death.
func TestIterableShareUnmappable(t *testing.T) {
	noLeaks(t)
	mine, _ := shareConstant(t, "const.iter-mine")
	it, err := proc.Iterate(t.Context(), count, 3, proc.Env("FERRY_TEST_PRESHARE="+mine.Name()), poolQuiet)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	err = it.Share(t.Context(), mine)
	var re *proc.RemoteError
	if !errors.As(err, &re) || re.PID != it.PID() || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("Share: %v, want a *RemoteError from the worker", err)
	}
	svGone(t, it.PID(), time.Minute)
	for _, err := range it.All(t.Context()) {
		var we *proc.WorkerError
		if !errors.As(err, &we) || we.ExitCode != 3 || !strings.Contains(we.Stderr, `mapping shared constant "const.iter-mine"`) {
			t.Fatalf("a pass after the worker exited: %v, want its *WorkerError (status 3, with the reason)", err)
		}
	}
}
