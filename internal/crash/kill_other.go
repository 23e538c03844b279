//go:build !cgo && !unix

package crash

import (
	"os"
	"syscall"
)

// accessViolation is Windows' STATUS_ACCESS_VIOLATION, a native crash's
// exit status there.
const accessViolation = 0xC0000005

func segfault(int, syscall.Signal) { os.Exit(accessViolation) }
