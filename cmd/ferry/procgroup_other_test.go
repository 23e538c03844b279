//go:build !unix

package main

import (
	"errors"
	"syscall"
	"testing"
)

// ownProcessGroup skips the test: there is no process group to send a
// Ctrl+C to here.
func ownProcessGroup(t *testing.T) *syscall.SysProcAttr {
	t.Skip("interrupting a process group needs Unix signals")
	return nil
}

func interruptGroup(int) error { return errors.ErrUnsupported }
