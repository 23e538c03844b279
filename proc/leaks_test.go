//go:build linux && !ferrynolinux

package proc_test

import (
	"testing"

	"github.com/ferrypipe/ferry/internal/leakcheck"
)

// noLeaks makes the test fail if, once it has ended, a child process, a
// goroutine or a file descriptor it started remains (leakcheck.Check).
func noLeaks(t *testing.T) {
	t.Helper()
	leakcheck.Check(t)
}
