package batch_test

import (
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
