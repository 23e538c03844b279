//go:build ferrydebug && linux && !ferrynolinux

package shm_test

import (
	"strings"
	"testing"
)

// In a ferrydebug build, a released view cannot be read: Bytes panics, and
// a slice kept past Release faults.
func TestDebugCatchesUseAfterRelease(t *testing.T) {
	prod := newPool(t, 4096, 1)
	cons := openPool(t, prod)
	l, err := prod.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	copy(l.Bytes(), "data")
	ref, err := l.Publish(4)
	if err != nil {
		t.Fatal(err)
	}
	if msg := panics(func() { l.Bytes() }); !strings.Contains(msg, "Lease.Bytes of segment 0 after Publish") {
		t.Errorf("Lease.Bytes after Publish: %q", msg)
	}
	v, err := cons.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	kept := v.Bytes()
	if string(kept) != "data" {
		t.Fatalf("view: %q", kept)
	}
	v.Release()
	if msg := panics(func() { v.Bytes() }); !strings.Contains(msg, "View.Bytes of segment 0 after Release") {
		t.Errorf("View.Bytes after Release: %q", msg)
	}
	if !faults(func() { sink = kept[0] }) {
		t.Error("reading a slice kept past Release did not fault")
	}
	// The segment is usable again by whoever holds it next.
	l, err = cons.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l.Bytes()[0] = 1
	l.Abandon()
}

var sink byte
