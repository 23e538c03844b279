package batch_test

import (
	"log/slog"
	"testing"

	"github.com/ferrypipe/ferry/internal/leakcheck"
)

// noLeaks makes the test fail if, once it has ended, a child process, a
// goroutine or a file descriptor it started remains (leakcheck.Check).
func noLeaks(t *testing.T) {
	t.Helper()
	leakcheck.Check(t)
}

// testLogger logs into the test's output.
func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }
