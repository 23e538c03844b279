//go:build !linux || ferrynolinux

package checkpoint_test

import "syscall"

// helperProcAttr: no parent-death signal here; the test kills the helper
// itself.
func helperProcAttr() *syscall.SysProcAttr { return nil }
