// Package platform says whether this build of ferry can run worker
// processes and shared memory, which are made of Linux system calls
// (memfd_create and seals, futex, SCM_RIGHTS, the parent-death signal,
// waitid, /proc/self/exe). Everything else in ferry is portable.
//
// Built with -tags ferrynolinux, a Linux build behaves as any other OS
// does: CI uses it to test on Linux the path that macOS and Windows take.
package platform

import (
	"errors"
	"fmt"
	"runtime"
)

// ErrUnsupported is the cause of every error of worker processes and
// shared memory on an OS other than Linux. It matches
// errors.ErrUnsupported too.
var ErrUnsupported = unsupported(runtime.GOOS, runtime.GOARCH)

// unsupported makes ErrUnsupported's message, which names the OS.
func unsupported(goos, goarch string) error {
	return fmt.Errorf("ferry: worker processes and shared memory need Linux (memfd, futex, SCM_RIGHTS, parent-death signal), and this program runs on %s/%s: run pipeline stages and batch jobs in goroutines here: %w",
		goos, goarch, errors.ErrUnsupported)
}
