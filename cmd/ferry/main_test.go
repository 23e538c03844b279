//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferrypipe/ferry/internal/benchsuite"
	"github.com/ferrypipe/ferry/proc"
)

// TestMain makes the test binary its own worker process, as main does for
// ferry: the demo runs its load stage in worker processes.
// With FERRY_TEST_ARGS set, the test binary is the ferry command, for the
// tests that signal a running command.
func TestMain(m *testing.M) {
	proc.Main()
	benchsuite.ExitIfStartProbe()
	if args := os.Getenv("FERRY_TEST_ARGS"); args != "" {
		os.Unsetenv("FERRY_TEST_ARGS")
		os.Exit(run(strings.Fields(args)))
	}
	os.Exit(m.Run())
}

// ignoreSpawner is for goleak: proc's spawner thread lives as long as the
// program, by design.
var ignoreSpawner = goleak.IgnoreAnyFunction("github.com/ferrypipe/ferry/proc.spawnLoop")
