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
