package batch_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/proc"
)

func TestID(t *testing.T) {
	p := batchtest.Params{N: 10, Dir: "/x"}
	a, err := batchtest.Job.ID(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := batchtest.Job.ID(batchtest.Params{N: 10, Dir: "/x"})
	if a != b || len(a) != 64 {
		t.Fatalf("IDs %q and %q for equal parameters", a, b)
	}
	for _, q := range []batchtest.Params{{N: 11, Dir: "/x"}, {N: 10, Dir: "/y"}, {N: 10, Dir: "/x", Group: 2}} {
		if c, _ := batchtest.Job.ID(q); c == a {
			t.Errorf("parameters %+v have the ID of %+v", q, p)
		}
	}
	// The ID names the definition, not only the parameters.
	if c, _ := trivial.ID(10); c == a {
		t.Error("two jobs share an ID")
	}
	if _, err := batchtest.Job.ID(batchtest.Params{Mode: "nil-source"}); err == nil {
		t.Error("ID of a job without a source: no error")
	}
	// A Run's result carries the same ID.
	q := batchtest.Params{N: 2, Dir: t.TempDir()}
	res, err := batchtest.Job.Run(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := batchtest.Job.ID(q); want != res.ID {
		t.Errorf("Run's ID %s, ID() %s", res.ID, want)
	}
}

// idParts are what idJob's build reads besides its parameters, so that a
// test can change one part of the definition at a time (they are not
// changed while a job runs).
var idParts = struct {
	version, filter, acc string
	n                    int
}{"1", "scale", "sum", 3}

var idJob = batch.Define("ferry.batch_test/id", func(p string) (*batch.Job[int, int], error) {
	k := idParts
	return &batch.Job[int, int]{
		Source:  batch.FromFunc(k.n, func(_ context.Context, i int) (int, error) { return i, nil }),
		Filters: []batch.Filter[int]{batch.Map(k.filter, func(_ context.Context, v int) (int, error) { return 2 * v, nil })},
		Accumulators: []batch.Accumulator[int]{batch.Accumulate(k.acc, func() int { return 0 },
			func(s, v int) (int, error) { return s + v, nil }, func(a, b int) int { return a + b })},
		Sink:    batch.SinkFunc[int, int](func(_ context.Context, _ int, items []int) (int, error) { return len(items), nil }),
		Version: k.version,
	}, nil
})

// The ID is the SHA-256 of the job's definition: each part of it changes
// the ID, and the same definition always has the same ID.
func TestIDOfDefinition(t *testing.T) {
	base := idParts
	t.Cleanup(func() { idParts = base })
	id := func() string {
		t.Helper()
		s, err := idJob.ID("p")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	want := sha256.Sum256([]byte(`{"name":"ferry.batch_test/id","version":"1","filters":["scale"],"accumulators":["sum"],"len":3,"params":"p"}`))
	a := id()
	if a != hex.EncodeToString(want[:]) {
		t.Fatalf("ID %s, want the SHA-256 of the JSON of the definition, %x", a, want)
	}
	if b := id(); b != a {
		t.Fatalf("the same definition has IDs %s and %s", a, b)
	}
	seen := map[string]string{a: "the definition"}
	for _, c := range []struct {
		what   string
		change func()
	}{
		{"Version", func() { idParts.version = "2" }},
		{"a filter's name", func() { idParts.filter = "double" }},
		{"an accumulator's name", func() { idParts.acc = "total" }},
		{"the source's Len", func() { idParts.n = 4 }},
	} {
		idParts = base
		c.change()
		got := id()
		if other, dup := seen[got]; dup {
			t.Errorf("changing %s gives the ID of %s: %s", c.what, other, got)
		}
		seen[got] = "changing " + c.what
	}
	idParts = base
	if b := id(); b != a {
		t.Errorf("the definition restored has ID %s, was %s", b, a)
	}
	if b, _ := idJob.ID("q"); b == a {
		t.Errorf("parameters %q and %q have the same ID", "p", "q")
	}
}

func TestDefineTwicePanics(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "ferry.batchtest/job") {
			t.Errorf("recovered %v, want a panic naming the job", v)
		}
	}()
	batch.Define("ferry.batchtest/job", func(int) (*batch.Job[int, int], error) { return nil, nil })
}

func TestUnknownJobRunner(t *testing.T) {
	_, err := batch.NewRunner(batch.JobSpec{Name: "no-such-job"})
	if !errors.Is(err, batch.ErrUnknownJob) {
		t.Errorf("NewRunner: %v", err)
	}
	_, err = batch.NewRunner(batch.JobSpec{Name: batchtest.Job.Name(), ID: "0000", Params: []byte(`{"N":1}`)})
	if err == nil || !strings.Contains(err.Error(), "identity") {
		t.Errorf("NewRunner with a foreign ID: %v", err)
	}
}

// A worker killed by one index takes down the chunks it held; only that
// index fails, even without retries.
func TestProcessesCrashSparesNeighbours(t *testing.T) {
	needsLinux(t)
	noLeaks(t)
	p := batchtest.Params{N: 2000, Dir: t.TempDir(), Fail: map[int]string{1500: "crash"}}
	res, err := batchtest.Job.Run(t.Context(), p, batch.WithBackend(batch.Processes(2)), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	var we *proc.WorkerError
	if x := res.Indices[1500]; x.OK || x.Attempts != 1 || !errors.As(x.Err, &we) || we.ExitCode != 3 {
		t.Fatalf("index 1500: %+v", x)
	}
	if res.Done != p.N-1 || res.Failed != 1 {
		t.Fatalf("%v", res)
	}
}

// faithParams has a field that JSON would not carry when Hide is set.
type faithParams struct {
	N    int
	Hide bool // give the parameters an unexported field
}

type hiddenParams struct {
	N     int
	cache map[string]int //lint:ignore U1000 the job must refuse it
}

// taggedParams skips its cache by choice.
type taggedParams struct {
	N     int
	Cache map[string]any `json:"-"`
}

type faithStats struct{ Count, Sum int }

type cachedStats struct {
	Count int
	seen  map[int]bool // would be lost at the process boundary and in a checkpoint
}

type anyOut struct {
	Paths []string
	Extra any
}

func faithJob[P any](name string, n func(P) int) *batch.Definition[P, int, int] {
	return batch.Define(name, func(p P) (*batch.Job[int, int], error) {
		return &batch.Job[int, int]{
			Source: batch.FromFunc(n(p), func(_ context.Context, i int) (int, error) { return i, nil }),
			Accumulators: []batch.Accumulator[int]{batch.Accumulate("stats", func() faithStats { return faithStats{} },
				func(s faithStats, v int) (faithStats, error) { return faithStats{s.Count + 1, s.Sum + v}, nil },
				func(a, b faithStats) faithStats { return faithStats{a.Count + b.Count, a.Sum + b.Sum} })},
			Sink: batch.SinkFunc[int, int](func(_ context.Context, _ int, items []int) (int, error) { return len(items), nil }),
		}, nil
	})
}

var (
	faithOK     = faithJob("ferry.batch_test/faith-ok", func(p faithParams) int { return p.N })
	faithTagged = faithJob("ferry.batch_test/faith-tagged", func(p taggedParams) int { return p.N })
	faithHidden = faithJob("ferry.batch_test/faith-hidden", func(p hiddenParams) int { return p.N })

	faithState = batch.Define("ferry.batch_test/faith-state", func(n int) (*batch.Job[int, int], error) {
		return &batch.Job[int, int]{
			Source: batch.FromFunc(n, func(_ context.Context, i int) (int, error) { return i, nil }),
			Accumulators: []batch.Accumulator[int]{batch.Accumulate("dedup", func() cachedStats { return cachedStats{seen: map[int]bool{}} },
				func(s cachedStats, v int) (cachedStats, error) { s.Count++; s.seen[v] = true; return s, nil },
				func(a, b cachedStats) cachedStats { a.Count += b.Count; return a })},
			Sink: batch.SinkFunc[int, int](func(_ context.Context, _ int, items []int) (int, error) { return len(items), nil }),
		}, nil
	})

	faithOutput = batch.Define("ferry.batch_test/faith-output", func(n int) (*batch.Job[int, anyOut], error) {
		return &batch.Job[int, anyOut]{
			Source: batch.FromFunc(n, func(_ context.Context, i int) (int, error) { return i, nil }),
			Sink:   batch.SinkFunc[int, anyOut](func(_ context.Context, i int, _ []int) (anyOut, error) { return anyOut{Extra: i}, nil }),
		}, nil
	})
)

// A job whose parameters, accumulator state or output would not survive
// the JSON of a process boundary or a checkpoint is refused before any
// index runs, with every backend, naming the job, the role and the field.
func TestUnfaithfulTypesAreRefused(t *testing.T) {
	seq := batch.WithBackend(batch.Sequential())
	for _, c := range []struct {
		name string
		run  func() (any, error)
		want []string // in the message
		path string
	}{
		{"params", func() (any, error) { return faithHidden.Run(t.Context(), hiddenParams{N: 3}, seq) },
			[]string{`batch: job "ferry.batch_test/faith-hidden": params: batch_test.hiddenParams`, "field .cache is unexported (it would arrive zero)", `tag it json:"-"`}, ".cache"},
		{"params ID", func() (any, error) { return faithHidden.ID(hiddenParams{N: 3}) },
			[]string{`job "ferry.batch_test/faith-hidden": params:`}, ".cache"},
		{"state", func() (any, error) { return faithState.Run(t.Context(), 3, seq) },
			[]string{`batch: job "ferry.batch_test/faith-state": accumulator "dedup" state: batch_test.cachedStats`, "field .seen is unexported"}, ".seen"},
		{"output", func() (any, error) { return faithOutput.Run(t.Context(), 3, seq) },
			[]string{`batch: job "ferry.batch_test/faith-output": output: batch_test.anyOut`, "field .Extra is an interface"}, ".Extra"},
	} {
		res, err := c.run()
		var te *proc.TypeError
		if !errors.As(err, &te) || te.Path != c.path {
			t.Errorf("%s: %v (%T), want a *proc.TypeError at %s", c.name, err, err, c.path)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
		if r, ok := res.(*batch.Result[int]); ok && r != nil {
			t.Errorf("%s: a Result for a refused job: %v", c.name, r)
		}
	}
	// A worker rebuilding the job refuses it too.
	_, err := batch.NewRunner(batch.JobSpec{Name: faithHidden.Name(), Params: []byte(`{"N":1}`)})
	if te := (*proc.TypeError)(nil); !errors.As(err, &te) {
		t.Errorf("NewRunner: %v", err)
	}
}

// Faithful types run, and a field tagged json:"-" is the user's choice.
func TestFaithfulTypesRun(t *testing.T) {
	seq := batch.WithBackend(batch.Sequential())
	res, err := faithOK.Run(t.Context(), faithParams{N: 4}, seq)
	if err != nil {
		t.Fatal(err)
	}
	st, err := batch.State[faithStats](res, "stats")
	if err != nil || res.Done != 4 || st != (faithStats{4, 6}) {
		t.Errorf("done %d, stats %+v, %v", res.Done, st, err)
	}
	res, err = faithTagged.Run(t.Context(), taggedParams{N: 2, Cache: map[string]any{"x": 1}}, seq)
	if err != nil || res.Done != 2 {
		t.Errorf("tagged: %v, %v", res, err)
	}
}
