//go:build !linux || ferrynolinux

package proc

import (
	"os"
	"syscall"

	"github.com/ferrypipe/ferry/internal/platform"
)

// Without Linux there are no worker processes: every front door fails with
// ErrUnsupported before it starts one (newSupervisor), and a program
// started as a worker says so and exits (serveProcess). What follows is
// never reached by a working program; it fails the same way.

func dupFD(int, int) (int, error)          { return -1, platform.ErrUnsupported }
func closeFD(int)                          {}
func socketPair() ([2]int, error)          { return [2]int{-1, -1}, platform.ErrUnsupported }
func newCounterFile() (int, error)         { return -1, platform.ErrUnsupported }
func mapShared(int, int) ([]byte, error)   { return nil, platform.ErrUnsupported }
func unmap([]byte)                         {}
func setDataLimit(uint64) error            { return platform.ErrUnsupported }
func workerProcAttr() *syscall.SysProcAttr { return nil }
func waitExited(int)                       {}
func signalGroup(int, syscall.Signal)      {}
func watchParent()                         {}
func killGroupAndExit(code int)            { os.Exit(code) }
