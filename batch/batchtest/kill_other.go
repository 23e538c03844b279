//go:build !linux || ferrynolinux

package batchtest

import (
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/internal/platform"
)

// helperProcAttr: no parent-death signal here; the helper is killed by the
// test itself.
func helperProcAttr() *syscall.SysProcAttr { return nil }

// awaitExit waits for a worker process of the helper; there are none
// without Linux (the backends that start them fail first), so a call is a
// broken test.
func awaitExit(t *testing.T, pid int, _ time.Duration) bool {
	t.Helper()
	t.Fatalf("awaiting the exit of worker %d: %v", pid, platform.ErrUnsupported)
	return false
}
