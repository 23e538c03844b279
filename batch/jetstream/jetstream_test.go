package jetstream_test

import (
	"os"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/batch/jetstream"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// local is the backend of the conformance suite: an embedded server and
// two worker processes, with a short ack wait.
var local = batchtest.Backend{Name: "jetstream-local", New: func(t *testing.T) batch.Backend {
	leakcheck.Check(t)
	return jetstream.Local(2, jetstream.AckWait(2*time.Second), jetstream.Concurrency(2))
}}

func TestConformance(t *testing.T) { batchtest.RunNamed(t, "TestKillHelper", local) }

// TestKillHelper is the process that KillResume kills; in a normal run it
// does nothing.
func TestKillHelper(t *testing.T) { batchtest.Helper(t, local) }
