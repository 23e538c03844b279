package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferrypipe/ferry/proc"
)

// TestMain makes the test binary its own worker process, as main does for
// ferry: the demo runs its load stage in worker processes.
func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// ignoreSpawner is for goleak: proc's spawner thread lives as long as the
// program, by design.
var ignoreSpawner = goleak.IgnoreAnyFunction("github.com/ferrypipe/ferry/proc.spawnLoop")
