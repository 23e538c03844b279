//go:build !ferrynolinux

package shm

import (
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations. FUTEX_PRIVATE_FLAG is deliberately not used: the word
// lives in a MAP_SHARED mapping of a file, and the kernel must key the wait
// queue on the file's page (so that waiters and wakers in other processes,
// or in another mapping of the same pool, meet) rather than on this
// process's address space.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, for at most d (without limit if d is
// negative), or until a futexWakeAll on the same word. It returns early on a
// spurious wake-up, a signal or a changed value; callers re-check their
// condition in a loop.
func futexWait(addr *atomic.Uint32, val uint32, d time.Duration) {
	if d < 0 {
		_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp,
			uintptr(val), 0, 0, 0)
		return
	}
	ts := unix.NsecToTimespec(int64(d))
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp,
		uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	// EAGAIN (value changed), ETIMEDOUT, EINTR and success all mean the same
	// to the caller: look again.
}

// futexWakeAll wakes every waiter on addr, in every process.
func futexWakeAll(addr *atomic.Uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp,
		math.MaxInt32, 0, 0, 0)
}
