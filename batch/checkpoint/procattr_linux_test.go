//go:build !ferrynolinux

package checkpoint_test

import "syscall"

// helperProcAttr has the helper process killed if the test dies first.
func helperProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
