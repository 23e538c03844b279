//go:build !cgo && unix

package crash

import "syscall"

func segfault(pid int, sig syscall.Signal) {
	_ = syscall.Kill(pid, sig)
	select {}
}
