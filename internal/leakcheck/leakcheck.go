// Package leakcheck is for tests that start goroutines, files and worker
// processes: it fails a test that leaves any of them behind.
package leakcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// Check makes t fail if, once it has ended, a child process, a goroutine
// or a file descriptor it started remains. Register it first, so that its
// check runs after the test's other cleanups.
func Check(t testing.TB) {
	t.Helper()
	// Make sure the runtime's poller exists before counting descriptors.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	fds := OpenFDs(t)
	goroutines := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if kids := ChildPIDs(os.Getpid()); len(kids) > 0 {
			t.Errorf("child processes left behind: %v", kids)
		}
		if now := OpenFDs(t); len(now) != len(fds) {
			t.Errorf("%d file descriptors open before the test, %d after:\nbefore %v\nafter  %v", len(fds), len(now), fds, now)
		}
		goleak.VerifyNone(t, goroutines,
			// proc's spawner thread lives as long as the program, by design.
			goleak.IgnoreAnyFunction("github.com/ferrypipe/ferry/proc.spawnLoop"))
	})
}

// OpenFDs lists this process's file descriptors and what they point to;
// none on a system without /proc, where they are not checked.
func OpenFDs(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			// Closed since it was listed: the listing's own descriptor,
			// or one being closed this moment. Neither is open.
			continue
		}
		fds = append(fds, e.Name()+"→"+target)
	}
	return fds
}

// ChildPIDs returns the children of process pid, as the kernel lists them
// per thread in /proc (none on a system without it).
func ChildPIDs(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread has exited
		}
		for _, field := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(field); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}
