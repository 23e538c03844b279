//go:build linux && !ferrynolinux

package shm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/shm"
	"golang.org/x/sys/unix"
)

// The helper process: the test binary re-executed with FERRY_SHM_HELPER set.
// fd 3 is the pool, fd 4 a pipe to the parent, fd 5 (producer) a constant.
const helperEnv = "FERRY_SHM_HELPER"

func TestHelperProcess(t *testing.T) {
	role := os.Getenv(helperEnv)
	if role == "" {
		return // a helper only when the cross-process tests start it
	}
	out := os.NewFile(4, "to-parent")
	if err := runHelper(role, out); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
}

func runHelper(role string, out *os.File) error {
	pool, err := shm.OpenSegmentPool(3, shm.AcquireTimeout(-1))
	if err != nil {
		return err
	}
	defer pool.Close()
	w := bufio.NewWriter(out)
	send := func(msg []byte) error {
		w.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(msg))))
		w.Write(msg)
		return w.Flush()
	}
	switch role {
	case "producer":
		// Code running in the worker finds the constant by name.
		if _, err := shm.OpenConstant("xproc-table", 5); err != nil {
			return err
		}
		table, ok := shm.Lookup("xproc-table")
		if !ok {
			return fmt.Errorf("constant not registered")
		}
		if err := send([]byte(strconv.FormatUint(uint64(crc32.ChecksumIEEE(table.Bytes())), 10))); err != nil {
			return err
		}
		items, _ := strconv.Atoi(os.Getenv("FERRY_SHM_ITEMS"))
		for i := range items {
			l, err := pool.Acquire(bgContext())
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			n := 1 + i*4093%pool.SegmentSize()
			fill(l.Bytes()[:n], i)
			ref, err := l.Publish(n)
			if err != nil {
				return err
			}
			if err := send(ref.Append(nil)); err != nil {
				return err
			}
		}
		return nil
	case "waiter":
		// Two producers wait for a segment of a pool that the parent
		// holds whole; each reports whether the error that ends its wait
		// is ErrShutdown, and then so does an Acquire after that.
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := pool.Acquire(bgContext())
				errs <- err
			}()
		}
		for range 2 {
			err := <-errs
			if err := send(fmt.Appendf(nil, "%v %v", errors.Is(err, shm.ErrShutdown), err)); err != nil {
				return err
			}
		}
		_, err := pool.Acquire(bgContext())
		return send(fmt.Appendf(nil, "%v %v", errors.Is(err, shm.ErrShutdown), err))
	case "hog":
		// Lease three segments, publish a fourth without sending its Ref,
		// then wait for a fifth until killed.
		for range 3 {
			if _, err := pool.Acquire(bgContext()); err != nil {
				return err
			}
		}
		if _, err := pool.PublishCopy(bgContext(), []byte("lost")); err != nil {
			return err
		}
		if err := send([]byte("ready")); err != nil {
			return err
		}
		_, err := pool.Acquire(bgContext())
		return fmt.Errorf("Acquire returned: %v", err)
	}
	return fmt.Errorf("unknown role %q", role)
}

// startHelper runs the test binary as a helper with the pool (and extra
// files) and returns the process and the reading end of its pipe.
func startHelper(t *testing.T, role string, pool *shm.SegmentPool, env []string, extra ...int) (*exec.Cmd, io.ReadCloser, *bytes.Buffer) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	files := []*os.File{dupFile(t, pool.FD(), "pool"), w}
	for _, fd := range extra {
		files = append(files, dupFile(t, fd, "extra"))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, "GORACE=atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close() // the child has its copies
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
	})
	return cmd, r, &output
}

// dupFile wraps a duplicate of fd, for exec's ExtraFiles (the pool keeps
// its own fd).
func dupFile(t *testing.T, fd int, name string) *os.File {
	t.Helper()
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(nfd), name)
}

func readMsg(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.LittleEndian.Uint32(n[:]))
	_, err := io.ReadFull(r, msg)
	return msg, err
}

// A producer in another process fills segments while this process consumes
// them and releases them out of order; the producer waits on the shared
// futex whenever this process holds every segment, which it does at every
// hundredth item until it sees the producer waiting. The worker also maps
// a shared constant and finds it by name.
func TestCrossProcess(t *testing.T) {
	const items = 400
	pool := newPool(t, 32<<10, 4)
	table := make([]byte, 1<<20+123)
	for i := range table {
		table[i] = byte(i * 13)
	}
	c, err := shm.Share("xproc-table", table)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd, r, output := startHelper(t, "producer", pool, []string{"FERRY_SHM_ITEMS=" + strconv.Itoa(items)}, c.FD())

	msg, err := readMsg(r)
	if err != nil {
		t.Fatalf("reading the constant's checksum: %v\n%s", err, output)
	}
	if want := strconv.FormatUint(uint64(crc32.ChecksumIEEE(table)), 10); string(msg) != want {
		t.Fatalf("the worker read the constant with checksum %s, want %s", msg, want)
	}

	rng := rand.New(rand.NewPCG(3, 4))
	type held struct {
		v    *shm.View
		item int
	}
	var views []held
	waits := 0 // times the producer was seen waiting for a segment
	for i := range items {
		msg, err := readMsg(r)
		if err != nil {
			t.Fatalf("item %d: %v\n%s", i, err, output)
		}
		ref, err := shm.ParseRef(msg)
		if err != nil {
			t.Fatal(err)
		}
		v, err := pool.View(ref)
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		views = append(views, held{v, i})
		if i%100 == 50 {
			// Read nothing and release nothing until the producer, which
			// has items left, has taken every free segment and waits for
			// one; the release below wakes it.
			waitBlocked(t, pool)
			waits++
		}
		if len(views) == 3 || i%100 == 50 || rng.IntN(4) == 0 {
			k := rng.IntN(len(views))
			check(t, views[k].v.Bytes(), views[k].item)
			views[k].v.Release()
			views = append(views[:k], views[k+1:]...)
		}
	}
	for _, h := range views {
		check(t, h.v.Bytes(), h.item)
		h.v.Release()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("producer: %v\n%s", err, output)
	}
	if s := pool.Stats(); s.Published != items || s.Reclaimed != items || s.Free != 4 || s.Waiters != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if waits != items/100 {
		t.Fatalf("the producer was seen waiting %d times, want %d", waits, items/100)
	}
}

// waitBlocked yields until a producer waits in Acquire on p's pool with no
// segment free. A producer counted among the waiters while a segment is
// free is on its way to take it (its sleep returns at once: the release
// changed the futex word); with none free, and nothing released, it sleeps
// until a release or Shutdown. The deadline only turns a hang into a
// failure.
func waitBlocked(t *testing.T, p *shm.SegmentPool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		s := p.Stats()
		if s.Waiters == 1 && s.Free == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no producer waits for a segment: %+v", s)
		}
		runtime.Gosched()
	}
}

// A producer in another process that waits in Acquire on a full pool
// sleeps in the kernel, on the pool's futex word and without a timeout, so
// that nothing but a wake-up ends its wait; Shutdown in this process wakes
// it, and its Acquire fails with ErrShutdown, as does every later one.
func TestCrossProcessShutdown(t *testing.T) {
	pool := newPool(t, 4096, 2, shm.AcquireTimeout(-1))
	for range pool.Count() {
		l, err := pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Abandon()
	}
	cmd, r, output := startHelper(t, "waiter", pool, nil)
	waitWaiters(t, pool, 2)
	waitFutexSleepers(t, cmd.Process.Pid, "/memfd:"+memfdName(t)+" ", 2)
	pool.Shutdown()
	// The deadline only turns a wait that nothing ends into a failure.
	if err := r.(*os.File).SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg, err := readMsg(r)
		if err != nil {
			t.Fatalf("reading the helper's error %d: %v\n%s", i, err, output)
		}
		if !strings.HasPrefix(string(msg), "true ") {
			t.Errorf("Acquire %d in the other process: %s, want ErrShutdown", i, msg)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, output)
	}
	if s := pool.Stats(); !s.Shutdown || s.Waiters != 0 || s.Leased != s.Count {
		t.Errorf("stats after Shutdown: %+v", s)
	}
}

// waitFutexSleepers yields until n threads of process pid sleep in
// futex(FUTEX_WAIT) on the sequence word of the pool that pid maps from
// memfd ("/memfd:NAME "), without a timeout. The word is at offset 32 of
// the control block, at the start of the mapping (see the layout in
// docs/decisions/0004-shared-memory.md and TestLayout). The deadline only
// turns a hang into a failure.
func waitFutexSleepers(t *testing.T, pid int, memfd string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dir := fmt.Sprintf("/proc/%d", pid)
	var word uint64
	var seen []string
	for {
		if word == 0 {
			maps, err := os.ReadFile(dir + "/maps")
			if err != nil {
				t.Fatal(err)
			}
			for l := range strings.Lines(string(maps)) {
				// start-end perms offset dev inode path
				if f := strings.Fields(l); len(f) >= 6 && f[2] == "00000000" && strings.Contains(l, memfd) {
					start, _, _ := strings.Cut(f[0], "-")
					if word, err = strconv.ParseUint(start, 16, 64); err != nil {
						t.Fatal(err)
					}
					word += 32
				}
			}
		}
		seen = seen[:0]
		sleeping := 0
		tasks, _ := filepath.Glob(dir + "/task/*/syscall")
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			if err != nil {
				continue // the thread has exited
			}
			// number, six arguments, stack and instruction pointers;
			// futex(uaddr, op, val, timeout, ...)
			f := strings.Fields(string(b))
			seen = append(seen, strings.Join(f[:min(len(f), 5)], " "))
			if len(f) < 5 || f[0] != strconv.Itoa(unix.SYS_FUTEX) {
				continue
			}
			addr, err1 := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
			op, err2 := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
			if err1 == nil && err2 == nil && word != 0 && addr == word && op == 0 && f[4] == "0x0" {
				sleeping++
			}
		}
		if sleeping == n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d threads of process %d sleep on the pool's futex word (%#x), want %d; its threads are in %q", sleeping, pid, word, n, seen)
		}
		runtime.Gosched()
	}
}

// A producer killed while it holds leases, a published segment nobody will
// ever view, and a wait: the parent gets every segment back with
// ReclaimOwner(pid), and nothing of the pool outlives the processes.
func TestKilledProducerIsReclaimed(t *testing.T) {
	pool := newPool(t, 4096, 4)
	cmd, r, output := startHelper(t, "hog", pool, nil)
	if msg, err := readMsg(r); err != nil || string(msg) != "ready" {
		t.Fatalf("hog: %q %v\n%s", msg, err, output)
	}
	waitWaiters(t, pool, 1) // it is waiting for a fifth segment
	if s := pool.Stats(); s.Leased != 3 || s.InFlight != 1 {
		t.Fatalf("stats with the hog alive: %+v", s)
	}
	cmd.Process.Kill()
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("hog ended with %v\n%s", err, output)
	}
	if n := pool.ReclaimOwner(uint32(cmd.Process.Pid)); n != 4 {
		t.Fatalf("ReclaimOwner freed %d segments, want 4", n)
	}
	s := pool.Stats()
	if s.Free != 4 || s.Reclaimed != 1 || s.Abandoned != 3 {
		t.Fatalf("stats after ReclaimOwner: %+v", s)
	}
	// A process killed in Acquire cannot take itself off the waiters count;
	// that costs later releases a futex wake each, nothing more.
	t.Logf("waiters after the kill: %d", s.Waiters)
	for range 8 {
		ref, err := pool.PublishCopy(t.Context(), []byte("after"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pool.Discard(ref); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing in /dev/shm, ever.
	entries, _ := os.ReadDir("/dev/shm")
	for _, e := range entries {
		if strings.Contains(e.Name(), "ferry") {
			t.Errorf("/dev/shm/%s exists", e.Name())
		}
	}
}
