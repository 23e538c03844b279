//go:build linux && !ferrynolinux

package shm_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/shm"
	"golang.org/x/sys/unix"
)

func TestConstantIsSealedAndReadOnly(t *testing.T) {
	data := bytes.Repeat([]byte("weights!"), 10_000)
	fds := fdCount(t)
	c, err := shm.Share("test-weights", data)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data[0] = 'X' // Share copied it
	if c.Name() != "test-weights" || c.Len() != len(data) || !bytes.Equal(c.Bytes()[1:], data[1:]) || c.Bytes()[0] != 'w' {
		t.Fatalf("constant %q of %d bytes", c.Name(), c.Len())
	}

	seals, err := unix.FcntlInt(uintptr(c.FD()), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL; seals&want != want {
		t.Fatalf("seals %#x, want %#x", seals, want)
	}
	_, named := maps(t, "memfd:ferry-const:test-weights")
	if len(named) != 1 || !strings.Contains(named[0], " r--s ") {
		t.Fatalf("mapping of the constant: %q, want one read-only shared mapping", named)
	}
	if !faults(func() { c.Bytes()[10] = 1 }) {
		t.Fatal("writing to the constant did not fault")
	}
	if c.Bytes()[10] != data[10] {
		t.Fatal("the constant changed")
	}
	// Nobody can get a writable mapping, write to it or resize it.
	if b, err := unix.Mmap(c.FD(), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		unix.Munmap(b)
		t.Fatal("a writable shared mapping of the constant succeeded")
	}
	if _, err := unix.Pwrite(c.FD(), []byte("x"), 0); !errors.Is(err, unix.EPERM) {
		t.Fatalf("pwrite: %v, want EPERM", err)
	}
	if err := unix.Ftruncate(c.FD(), 1); !errors.Is(err, unix.EPERM) {
		t.Fatalf("ftruncate: %v, want EPERM", err)
	}
	if _, err := unix.FcntlInt(uintptr(c.FD()), unix.F_ADD_SEALS, unix.F_SEAL_FUTURE_WRITE); err == nil {
		t.Fatal("adding a seal succeeded")
	}

	// The registry.
	if got, ok := shm.Lookup("test-weights"); !ok || got != c {
		t.Fatalf("Lookup: %v %v", got, ok)
	}
	if _, err := shm.Share("test-weights", data); !errors.Is(err, shm.ErrNameInUse) {
		t.Fatalf("Share of a registered name: %v", err)
	}
	if _, err := shm.OpenConstant("test-weights", c.FD()); !errors.Is(err, shm.ErrNameInUse) {
		t.Fatalf("OpenConstant of a registered name: %v", err)
	}

	// Opening it from its fd, as a worker does, under another name here.
	d, err := shm.OpenConstant("test-weights-copy", c.FD())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := shm.Lookup("test-weights-copy"); !ok || got != d || !bytes.Equal(d.Bytes(), c.Bytes()) {
		t.Fatal("opened constant differs")
	}
	if !faults(func() { d.Bytes()[0] = 1 }) {
		t.Fatal("writing to the opened constant did not fault")
	}
	for _, k := range []*shm.Constant{c, d} {
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := shm.Lookup("test-weights"); ok {
		t.Error("Lookup after Close")
	}
	if _, named := maps(t, "ferry-const:test-weights"); len(named) != 0 {
		t.Errorf("after Close: %q", named)
	}
	if got := fdCount(t); got != fds {
		t.Errorf("fds: %d before, %d after", fds, got)
	}
}

func TestOpenConstantRequiresSeals(t *testing.T) {
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Pwrite(fd, []byte("mutable"), 0)
	if _, err := shm.OpenConstant("unsealed", fd); err == nil || !strings.Contains(err.Error(), "not sealed") {
		t.Fatalf("OpenConstant of an unsealed memfd: %v", err)
	}
	if _, err := shm.OpenConstant("bad-fd", -1); err == nil {
		t.Fatal("OpenConstant(-1) succeeded")
	}
	if _, ok := shm.Lookup("unsealed"); ok {
		t.Fatal("a refused constant was registered")
	}
	if n := fdsNamed(t, "unsealed"); n != 1 {
		t.Fatalf("%d fds of the memfd, want 1: a failed open leaked", n)
	}
}

func TestEmptyConstant(t *testing.T) {
	c, err := shm.Share("test-empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := shm.OpenConstant("test-empty-copy", c.FD())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if c.Bytes() == nil || len(c.Bytes()) != 0 || d.Len() != 0 {
		t.Fatalf("empty constant: %v %v", c.Bytes(), d.Bytes())
	}
	if _, err := shm.Share("", nil); err == nil {
		t.Fatal("Share with an empty name succeeded")
	}
}
