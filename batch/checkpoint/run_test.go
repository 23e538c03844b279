package checkpoint_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/batch/checkpoint"
)

// A real job through the database: outputs and accumulator states come
// back from it on resume, and the result is the one of a run that never
// stopped.
func TestWithRun(t *testing.T) {
	dbFile := dbPath(t)
	// Index 5 fails on its first two attempts, one per run here.
	params := batchtest.Params{N: 30, Dir: t.TempDir(), Fail: map[int]string{5: "flaky"}}
	runJob := func(resume bool) *batch.Result[batchtest.Out] {
		t.Helper()
		db, err := checkpoint.Open(dbFile, checkpoint.Logger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		opts := []batch.Option{batch.WithBackend(batch.Goroutines(2)), batch.WithCheckpoint(db),
			batch.ContinueOnError(), batch.Logger(testLogger(t))}
		if resume {
			opts = append(opts, batch.Resume())
		}
		res, err := batchtest.Job.Run(context.Background(), params, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	counts := func(res *batch.Result[batchtest.Out]) [3]int { return [3]int{res.Done, res.Failed, res.Resumed} }

	if got := counts(runJob(false)); got != [3]int{29, 1, 0} {
		t.Fatalf("first run: done, failed, resumed = %v", got)
	}
	if got := counts(runJob(true)); got != [3]int{29, 1, 29} {
		t.Fatalf("second run: done, failed, resumed = %v", got)
	}
	res := runJob(true)
	if got := counts(res); got != [3]int{30, 0, 29} {
		t.Fatalf("third run: done, failed, resumed = %v", got)
	}

	// The same job in one go, without a checkpoint, now that index 5 no
	// longer fails.
	whole, err := batchtest.Job.Run(context.Background(), params, batch.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range whole.Indices {
		if !reflect.DeepEqual(res.Indices[i].Output, whole.Indices[i].Output) {
			t.Errorf("index %d: output %+v, want %+v", i, res.Indices[i].Output, whole.Indices[i].Output)
		}
		if res.Indices[i].Resumed != (i != 5) {
			t.Errorf("index %d: resumed %v", i, res.Indices[i].Resumed)
		}
	}
	got, err := batch.State[batchtest.Stats](res, "stats")
	if err != nil {
		t.Fatal(err)
	}
	want, err := batch.State[batchtest.Stats](whole, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got.Count == 0 {
		t.Errorf("merged state %+v, want %+v", got, want)
	}
}
