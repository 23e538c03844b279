package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
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

// logBuffer is a logger whose records can be read back.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&syncWriter{w: &b}, nil)), &b
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// runWith runs batchtest.Job with params on a DB at path with opts.
func runWith(t *testing.T, path string, params batchtest.Params, log *slog.Logger, opts ...batch.Option) (*batch.Result[batchtest.Out], error) {
	t.Helper()
	db, err := checkpoint.Open(path, checkpoint.Logger(log))
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]batch.Option{batch.WithBackend(batch.Goroutines(2)), batch.WithCheckpoint(db), batch.Logger(log)}, opts...)
	return batchtest.Job.Run(context.Background(), params, opts...)
}

// TestResumeChangedJob: Resume of a checkpoint written by the same job
// with other parameters fails with a *batch.JobChangedError that says what
// changed, and runs nothing; ResumeOrRestart starts afresh with a
// warning, and keeps the old run, which can still be resumed.
func TestResumeChangedJob(t *testing.T) {
	path := dbPath(t)
	old := batchtest.Params{N: 6, Dir: t.TempDir()}
	if _, err := runWith(t, path, old, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	changed := batchtest.Params{N: 8, Dir: old.Dir}
	res, err := runWith(t, path, changed, testLogger(t), batch.Resume())
	var ce *batch.JobChangedError
	if !errors.As(err, &ce) || res != nil {
		t.Fatalf("Resume of a changed job: %v, %v; want a *batch.JobChangedError and no result", res, err)
	}
	if got := ce.Changed(); !slices.Equal(got, []string{"len", "params.N"}) {
		t.Errorf("Changed() = %v, want [len params.N]", got)
	}
	for _, want := range []string{batchtest.Job.Name(), "changed since the checkpoint was written", "len, params.N", "ResumeOrRestart", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if ce.Job.Name != batchtest.Job.Name() || ce.Recorded.Len != 6 || ce.Job.Len != 8 {
		t.Errorf("error %+v: want the job now (8 indices) and the one recorded (6)", ce)
	}

	log, logs := logBuffer()
	res, err = runWith(t, path, changed, log, batch.ResumeOrRestart())
	if err != nil || res.Done != 8 || res.Resumed != 0 {
		t.Fatalf("ResumeOrRestart of a changed job: %v, %v; want 8 done, none resumed", res, err)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN msg=\"batch: the job changed since the checkpoint was written; starting afresh\"") || !strings.Contains(l, "changed=len,params.N") {
		t.Errorf("no warning that the job changed:\n%s", logs.String())
	}
	// Both runs are in the checkpoint: each resumes.
	for _, p := range []batchtest.Params{old, changed} {
		res, err := runWith(t, path, p, testLogger(t), batch.Resume())
		if err != nil || res.Resumed != p.N {
			t.Errorf("Resume of N=%d: %v, %v; want every index resumed", p.N, res, err)
		}
	}
}

// TestResumeNothing: Resume with a checkpoint that holds nothing of the
// job (a new file, an empty file) runs every index and logs that there
// was nothing to resume; ResumeOrRestart does the same.
func TestResumeNothing(t *testing.T) {
	empty := dbPath(t)
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"missing": dbPath(t), "empty": empty} {
		for _, opt := range []batch.Option{batch.Resume(), batch.ResumeOrRestart()} {
			log, logs := logBuffer()
			res, err := runWith(t, path, batchtest.Params{N: 4, Dir: t.TempDir()}, log, opt)
			if err != nil || res.Done != 4 || res.Resumed != 0 {
				t.Fatalf("%s file: %v, %v; want 4 done, none resumed", name, res, err)
			}
			if !strings.Contains(logs.String(), "level=INFO msg=\"batch: nothing to resume") {
				t.Errorf("%s file: no log line says there was nothing to resume:\n%s", name, logs.String())
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}
	}
}
