package batch_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
)

// TestResumeChangedJobInMemory: with any Checkpointer that reports a
// changed job (here batchtest's), Resume fails with the
// *JobChangedError and runs nothing; ResumeOrRestart starts afresh.
func TestResumeChangedJobInMemory(t *testing.T) {
	cp := batchtest.NewCheckpoint()
	dir := t.TempDir()
	if _, err := batchtest.Job.Run(context.Background(), batchtest.Params{N: 3, Dir: dir}, batch.WithCheckpoint(cp)); err != nil {
		t.Fatal(err)
	}
	changed := batchtest.Params{N: 3, Dir: t.TempDir()}
	_, err := batchtest.Job.Run(context.Background(), changed, batch.WithCheckpoint(cp), batch.Resume())
	var ce *batch.JobChangedError
	if !errors.As(err, &ce) || !slices.Equal(ce.Changed(), []string{"params.Dir"}) {
		t.Fatalf("Resume of a changed job: %v; want a *JobChangedError naming params.Dir", err)
	}
	if begins, _ := cp.Counts(); begins != 1 {
		t.Errorf("%d runs began, want only the first", begins)
	}
	res, err := batchtest.Job.Run(context.Background(), changed, batch.WithCheckpoint(cp), batch.ResumeOrRestart())
	if err != nil || res.Done != 3 || res.Resumed != 0 {
		t.Fatalf("ResumeOrRestart: %v, %v", res, err)
	}
	if _, err := batchtest.Job.Run(context.Background(), changed, batch.ResumeOrRestart()); err == nil {
		t.Error("ResumeOrRestart without a checkpoint: no error")
	}
}

// TestJobChangedErrorChanged: what differs between two specs, field by
// field and parameter by parameter.
func TestJobChangedErrorChanged(t *testing.T) {
	e := &batch.JobChangedError{
		Recorded: batch.JobInfo{Name: "j", ID: "a", Spec: `{"name":"j","version":"1","len":4,"params":{"A":1,"B":[1,2]}}`},
		Job:      batch.JobInfo{Name: "j", ID: "b", Spec: `{"name":"j","version":"2","len":4,"params":{"A":1,"B":[1,3],"C":true}}`},
	}
	if got, want := e.Changed(), []string{"params.B", "params.C", "version"}; !slices.Equal(got, want) {
		t.Errorf("Changed() = %v, want %v", got, want)
	}
	e.Job.Spec = "not JSON"
	if got := e.Changed(); got != nil {
		t.Errorf("Changed() of a bad spec = %v, want nil", got)
	}
}
