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

// reportConstant describes the constant named in the environment, from
// inside a worker.
func reportConstant() (constReport, error) {
	name := os.Getenv(constEnv)
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
			if !yield(reportConstant()) {
				return
			}
		}
	}
})

// constCall reports on the constant; with a FIFO's path, it first waits
// for the FIFO to be opened for writing and closed, which keeps the call
// in flight at its worker.
var constCall = proc.Func("const.call", func(ctx context.Context, fifo string) (constReport, error) {
	if fifo != "" {
		if _, err := os.ReadFile(fifo); err != nil {
			return constReport{}, err
		}
	}
	return reportConstant()
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

// checkReport checks that a worker saw the whole constant, from its
// initializer and from its code, mapped once, read-only, through one fd.
func checkReport(t *testing.T, r constReport, sum [32]byte) {
	t.Helper()
	if r.InitSum != sum || r.CodeSum != sum || r.Len != 1<<20 {
		t.Errorf("worker %d: saw %d bytes, digest %x in the initializer and %x in its code; want %x", r.PID, r.Len, r.InitSum[:4], r.CodeSum[:4], sum[:4])
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
	if n := fdsOn(t, "/memfd:ferry-const:"+c.Name()+" "); n != 1 {
		t.Errorf("parent: %d fds on the constant with a worker running, want 1", n)
	}
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
	reports := pipeline.Pipe(src, func(context.Context, int) (constReport, error) { return reportConstant() })
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
	if n := fdsOn(t, "/memfd:ferry-const:"+c.Name()+" "); n != 1 {
		t.Errorf("parent: %d fds on the constant with a worker running, want 1", n)
	}
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
		r, err := pool.Call(t.Context(), fifo)
		first <- result{r, err}
	}()
	// Opening the FIFO for writing returns once the first call has opened
	// it for reading: it is in flight at its worker.
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	var w *os.File
	select {
	case w = <-opened:
	case res := <-first:
		// Unblock the opener before failing.
		if f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			(<-opened).Close()
			f.Close()
		}
		t.Fatalf("the first call ended before it read the FIFO: %v", res.err)
	}
	second, err := pool.Call(t.Context(), "")
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
	checkReport(t, res.r, sum)
	checkReport(t, second, sum)
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
