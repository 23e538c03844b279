package shm

import (
	"testing"
	"unsafe"
)

// TestLayout pins the control block's layout, which other processes (and
// docs/decisions/0004-shared-memory.md) rely on.
func TestLayout(t *testing.T) {
	var h header
	offsets := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"magic", unsafe.Offsetof(h.magic), 0},
		{"version", unsafe.Offsetof(h.version), 8},
		{"ctrlSize", unsafe.Offsetof(h.ctrlSize), 12},
		{"segSize", unsafe.Offsetof(h.segSize), 16},
		{"count", unsafe.Offsetof(h.count), 24},
		{"shutdown", unsafe.Offsetof(h.shutdown), 28},
		{"seq", unsafe.Offsetof(h.seq), 32},
		{"waiters", unsafe.Offsetof(h.waiters), 36},
		{"poolID", unsafe.Offsetof(h.poolID), 40},
		{"published", unsafe.Offsetof(h.published), 48},
		{"reclaimed", unsafe.Offsetof(h.reclaimed), 56},
		{"abandoned", unsafe.Offsetof(h.abandoned), 64},
	}
	for _, o := range offsets {
		if o.got != o.want {
			t.Errorf("header.%s at offset %d, want %d", o.name, o.got, o.want)
		}
	}
	if s := unsafe.Sizeof(h); s != headerSize {
		t.Errorf("header is %d bytes, want %d", s, headerSize)
	}
	var s slot
	if unsafe.Offsetof(s.state) != 0 || unsafe.Offsetof(s.length) != 8 || unsafe.Sizeof(s) != slotSize {
		t.Errorf("slot layout changed")
	}
	if got := ctrlSizeFor(1, 4096); got != 4096 {
		t.Errorf("control block for 1 segment: %d bytes", got)
	}
	if got := ctrlSizeFor(248, 4096); got != 4096 {
		t.Errorf("control block for 248 segments: %d bytes, want one page", got)
	}
	if got := ctrlSizeFor(249, 4096); got != 8192 {
		t.Errorf("control block for 249 segments: %d bytes, want two pages", got)
	}
}

func TestPackUnpack(t *testing.T) {
	for _, c := range []struct{ st, gen, owner uint32 }{
		{stateFree, 0, 0}, {stateLeased, 1, 1234}, {statePublished, genMask, 1<<32 - 1}, {stateViewed, 77, 5},
	} {
		st, gen, owner := unpack(pack(c.st, c.gen, c.owner))
		if st != c.st || gen != c.gen || owner != c.owner {
			t.Errorf("pack/unpack(%v) = %d %d %d", c, st, gen, owner)
		}
	}
	// The generation wraps without touching the state or the owner.
	if st, gen, owner := unpack(pack(stateLeased, genMask+1, 9)); st != stateLeased || gen != 0 || owner != 9 {
		t.Errorf("wrapped generation: %d %d %d", st, gen, owner)
	}
}
