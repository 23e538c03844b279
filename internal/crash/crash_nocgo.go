//go:build !cgo

package crash

import (
	"os"
	"syscall"
)

// Segfault ends the process with SIGSEGV. Without cgo it sends the signal
// rather than faulting in C.
func Segfault() {
	signal := syscall.SIGSEGV
	_ = syscall.Kill(os.Getpid(), signal)
	select {}
}
