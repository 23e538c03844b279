//go:build !unix

package benchsuite

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Without Unix system calls, limit/socket-stream has no socket pair to
// measure, and CPU time is not measured.

var errNoSocketPair = fmt.Errorf("socketpair: no AF_UNIX socket pairs on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// CPUTime returns 0: getrusage(2) is a Unix call.
func CPUTime() time.Duration { return 0 }

func socketpair() ([2]int, error)    { return [2]int{-1, -1}, errNoSocketPair }
func writeFull(int, []byte) error    { return errNoSocketPair }
func readN(int, []byte, int) error   { return errNoSocketPair }
func closeSocket(int) error          { return nil }
func shutdownSocket(int, bool) error { return errNoSocketPair }
