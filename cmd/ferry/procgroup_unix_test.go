//go:build unix

package main

import (
	"syscall"
	"testing"
)

// ownProcessGroup starts a command in a process group of its own, which a
// test interrupts as a terminal's Ctrl+C does.
func ownProcessGroup(*testing.T) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// interruptGroup sends SIGINT to every process of group pgid.
func interruptGroup(pgid int) error { return syscall.Kill(-pgid, syscall.SIGINT) }
