package batch_test

import (
	"os"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/internal/platform"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// backends are the backends of this package, by name: the conformance
// suite's KillResume runs each in a process that TestKillHelper serves.
var backends = []batchtest.Backend{
	{Name: "sequential", New: func(t *testing.T) batch.Backend {
		noLeaks(t)
		return batch.Sequential()
	}},
	{Name: "goroutines", New: func(t *testing.T) batch.Backend {
		noLeaks(t)
		return batch.Goroutines(4)
	}},
	{Name: "processes", New: func(t *testing.T) batch.Backend {
		noLeaks(t)
		return batch.Processes(2)
	}},
}

func TestSequential(t *testing.T) { batchtest.RunNamed(t, "TestKillHelper", backends[0]) }
func TestGoroutines(t *testing.T) { batchtest.RunNamed(t, "TestKillHelper", backends[1]) }
func TestProcesses(t *testing.T) {
	needsLinux(t)
	batchtest.RunNamed(t, "TestKillHelper", backends[2])
}

// needsLinux skips a test of worker processes where there are none (see
// TestProcessesUnsupported).
func needsLinux(t *testing.T) {
	t.Helper()
	if !platform.Supported {
		t.Skip(proc.ErrUnsupported)
	}
}

// TestKillHelper is the process that KillResume kills; in a normal run it
// does nothing.
func TestKillHelper(t *testing.T) { batchtest.Helper(t, backends...) }
