//go:build !cgo

package crash

import (
	"os"
	"syscall"
)

// Segfault ends the process with SIGSEGV. Without cgo it sends the signal
// rather than faulting in C (on Windows, which has no signals, it ends the
// process with the status of an access violation).
func Segfault() { segfault(os.Getpid(), syscall.SIGSEGV) }
