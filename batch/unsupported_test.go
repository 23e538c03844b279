//go:build !linux || ferrynolinux

package batch_test

import (
	"errors"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/proc"
)

// Without Linux, the process backend fails with proc.ErrUnsupported before
// it runs anything, and the same job runs in goroutines.
func TestProcessesUnsupported(t *testing.T) {
	noLeaks(t)
	p := batchtest.Params{N: 20, Dir: t.TempDir()}
	res, err := batchtest.Job.Run(t.Context(), p, batch.WithBackend(batch.Processes(2)))
	if !errors.Is(err, proc.ErrUnsupported) {
		t.Fatalf("Processes: %v, %v; want proc.ErrUnsupported", res, err)
	}
	if res != nil && res.Done != 0 {
		t.Errorf("Processes ran %d indices", res.Done)
	}
	res, err = batchtest.Job.Run(t.Context(), p, batch.WithBackend(batch.Goroutines(2)))
	if err != nil || res.Done != 20 {
		t.Fatalf("Goroutines: %v, %v; want 20 done", res, err)
	}
}
