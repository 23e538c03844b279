//go:build linux && !ferrynolinux

package shm_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/shm"
)

// newPool creates a pool named after the test and closes it at the end.
func newPool(t testing.TB, size, count int, opts ...shm.Option) *shm.SegmentPool {
	t.Helper()
	opts = append([]shm.Option{shm.Name(memfdName(t))}, opts...)
	p, err := shm.NewSegmentPool(size, count, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// openPool maps p a second time, as another process would, and closes that
// mapping at the end.
func openPool(t testing.TB, p *shm.SegmentPool, opts ...shm.Option) *shm.SegmentPool {
	t.Helper()
	q, err := shm.OpenSegmentPool(p.FD(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func memfdName(t testing.TB) string {
	return "ferry-test-" + strings.ReplaceAll(t.Name(), "/", "-")
}

// fill writes a pattern that depends on item into b; check verifies it.
func fill(b []byte, item int) {
	for j := range b {
		b[j] = byte(item*31 + j*7 + j>>8)
	}
}

func check(t testing.TB, b []byte, item int) {
	t.Helper()
	want := make([]byte, len(b))
	fill(want, item)
	if !bytes.Equal(b, want) {
		t.Fatalf("item %d: %d bytes differ from what was written", item, len(b))
	}
}

// fdCount is the number of open file descriptors of this process.
func fdCount(t testing.TB) int {
	t.Helper()
	// The first file the process opens initializes the runtime's network
	// poller, which keeps two fds of its own: make sure that happened.
	os.ReadFile("/proc/self/stat")
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// fdsNamed counts this process's fds whose link contains name.
func fdsNamed(t testing.TB, name string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(link, name) {
			n++
		}
	}
	return n
}

// maps returns the lines of /proc/self/maps, and those that mention name.
func maps(t testing.TB, name string) (all int, named []string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, l := range lines {
		if strings.Contains(l, name) {
			named = append(named, l)
		}
	}
	return len(lines), named
}

// fileMappings counts the mappings of files (memfds included) in
// /proc/self/maps: everything but the anonymous memory of the runtime.
func fileMappings(t testing.TB) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(l); len(f) >= 6 && strings.HasPrefix(f[5], "/") {
			n++
		}
	}
	return n
}

// faults reports whether f faults (SIGSEGV or SIGBUS) instead of returning.
func faults(f func()) (faulted bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			_, faulted = r.(runtime.Error)
		}
	}()
	f()
	return false
}

// panics returns the message of f's panic, or "" if it returns.
func panics(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = strings.TrimSpace(strings.ReplaceAll(toString(r), "\n", " "))
			if msg == "" {
				msg = "(empty panic)"
			}
		}
	}()
	f()
	return ""
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case error:
		return v.Error()
	}
	return "non-string panic"
}

// waitWaiters yields until n producers wait in Acquire on p's pool.
// Deterministic: no sleeping, the waiter is observed through the control
// block's waiters counter. The deadline only turns a hang into a failure.
func waitWaiters(t testing.TB, p *shm.SegmentPool, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for p.Stats().Waiters != n {
		if ctx.Err() != nil {
			t.Fatalf("waiting for %d producers to wait in Acquire: %+v", n, p.Stats())
		}
		runtime.Gosched()
	}
}

func bgContext() context.Context { return context.Background() }
