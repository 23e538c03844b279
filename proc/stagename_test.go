//go:build linux && !ferrynolinux

package proc_test

import (
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// TestPoolCallStageName checks the default name of a stage whose function
// is a pool's Call method: the type and method, not the runtime's name of
// the method value.
func TestPoolCallStageName(t *testing.T) {
	noLeaks(t)
	pool := newTestPool(t, poolSquare, proc.InProcess(), proc.Workers(1))
	s := pipeline.Pipe(pipeline.FromSlice([]int{1, 2}), pool.Call)
	p, err := pipeline.Build(pipeline.Sink(s, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if name := p.Stats().Stages[1].Name; name != "Pool.Call" {
		t.Fatalf("stage name %q, want Pool.Call", name)
	}
}
