//go:build !ferrynolinux

package proc

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// The system calls of worker processes, on Linux.

// parentGone is the parent-death signal: at the parent's death, the worker
// kills its process group.
const parentGone = unix.SIGUSR2

// dupFD duplicates fd, close-on-exec, onto the lowest free descriptor not
// below least.
func dupFD(fd, least int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, least)
}

func closeFD(fd int) { _ = unix.Close(fd) }

// socketPair returns a connected pair of close-on-exec Unix stream sockets.
func socketPair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}

// newCounterFile makes the memfd of a start counter.
func newCounterFile() (int, error) { return unix.MemfdCreate("ferry-started", unix.MFD_CLOEXEC) }

// mapShared sizes fd's file to size bytes and maps it, shared.
func mapShared(fd, size int) ([]byte, error) {
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return nil, err
	}
	return unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func unmap(b []byte) { _ = unix.Munmap(b) }

// setDataLimit sets RLIMIT_DATA, the hard bound of MemoryLimit.
func setDataLimit(bytes uint64) error {
	return unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: bytes, Max: bytes})
}

// workerProcAttr puts a worker in its own process group, which ferry kills
// as a whole, and has it signalled at the parent's death.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentGone}
}

// waitExited waits until process pid has exited, without reaping it: its
// pid stays its own, so that its group can still be killed safely.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// signalGroup sends sig to every process of process group pgid.
func signalGroup(pgid int, sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

// watchParent kills this worker's process group at the parent's death (the
// parent-death signal).
func watchParent() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, parentGone)
	go func() {
		<-sig
		killGroup()
	}()
}

// killGroup kills this worker's process group: every process that worker
// code started and that did not leave the group, and the worker itself.
func killGroup() {
	if unix.Getpgrp() == os.Getpid() {
		_ = unix.Kill(-os.Getpid(), unix.SIGKILL)
	}
	os.Exit(3)
}

// killGroupAndExit ends what the worker started, then the worker, with
// its exit status.
func killGroupAndExit(code int) {
	if pg := os.Getpid(); unix.Getpgrp() == pg {
		for _, pid := range groupMembers(pg) {
			if pid != pg {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	os.Exit(code)
}

// groupMembers lists the processes of process group pg.
func groupMembers(pg int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := unix.Getpgid(pid); err == nil && g == pg {
			pids = append(pids, pid)
		}
	}
	return pids
}
