package batch_test

import (
	"os"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

func TestSequential(t *testing.T) {
	batchtest.Run(t, func(t *testing.T) batch.Backend {
		noLeaks(t)
		return batch.Sequential()
	})
}

func TestGoroutines(t *testing.T) {
	batchtest.Run(t, func(t *testing.T) batch.Backend {
		noLeaks(t)
		return batch.Goroutines(4)
	})
}

func TestProcesses(t *testing.T) {
	batchtest.Run(t, func(t *testing.T) batch.Backend {
		noLeaks(t)
		return batch.Processes(2)
	})
}
