package batch_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// noLeaks makes the test fail if, once it has ended, a child process, a
// goroutine or a file descriptor it started remains.
func noLeaks(t *testing.T) {
	t.Helper()
	// Make sure the runtime's poller exists before counting descriptors.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	fds := openFDs(t)
	goroutines := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if kids := childPIDs(t); len(kids) > 0 {
			t.Errorf("child processes left behind: %v", kids)
		}
		if now := openFDs(t); len(now) != len(fds) {
			t.Errorf("%d file descriptors open before the test, %d after:\nbefore %v\nafter  %v", len(fds), len(now), fds, now)
		}
		goleak.VerifyNone(t, goroutines,
			// proc's spawner thread lives as long as the program, by design.
			goleak.IgnoreAnyFunction("github.com/ferrypipe/ferry/proc.spawnLoop"))
	})
}

// openFDs lists this process's file descriptors and what they point to.
func openFDs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds = append(fds, e.Name()+"→"+target)
	}
	return fds
}

// childPIDs returns the pids of this process's children, as the kernel
// lists them per thread.
func childPIDs(t *testing.T) []int {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread has exited
		}
		for _, field := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(field)
			pids = append(pids, pid)
		}
	}
	return pids
}
