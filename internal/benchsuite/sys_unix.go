//go:build unix

package benchsuite

import (
	"fmt"
	"syscall"
	"time"
)

// The system calls of the suite's limits, on Unix systems.

// CPUTime returns the CPU time (user plus system) the process has used so
// far, from getrusage(2), or 0 if that fails. The difference of two calls
// around a measurement, divided by the gigabytes moved, gives a
// Result.CPUSecPerGB.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// socketpair returns a connected AF_UNIX SOCK_STREAM pair, close-on-exec.
func socketpair() ([2]int, error) {
	// As the net package does: hold ForkLock so that no fork sees the fds
	// before they are close-on-exec.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fds, fmt.Errorf("socketpair: %w", err)
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return fds, nil
}

// writeFull writes all of p to fd, retrying on EINTR and short writes.
func writeFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// readN reads exactly total bytes from fd into buf (reused), retrying on
// EINTR.
func readN(fd int, buf []byte, total int) error {
	for got := 0; got < total; {
		n, err := syscall.Read(fd, buf[:min(len(buf), total-got)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("EOF after %d of %d bytes", got, total)
		}
		got += n
	}
	return nil
}

func closeSocket(fd int) error { return syscall.Close(fd) }

// shutdownSocket shuts down fd's writing side, or both sides.
func shutdownSocket(fd int, both bool) error {
	how := syscall.SHUT_WR
	if both {
		how = syscall.SHUT_RDWR
	}
	return syscall.Shutdown(fd, how)
}
