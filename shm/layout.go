package shm

import (
	"sync/atomic"
	"unsafe"
)

// The shared file of a segment pool is a control block followed by the
// segments:
//
//	offset 0                 control block: header (128 bytes), then one
//	                         16-byte slot per segment; rounded up to pages
//	offset ctrlSize          segment 0
//	offset ctrlSize + i*size segment i
//
// Every word of the control block is accessed atomically by every process
// that maps the pool. The layout is part of the protocol (a worker written in
// another language maps the same file) and is documented in
// docs/decisions/0004-shared-memory.md; TestLayout pins it.

const (
	// magic is "FERRYSHM" read as a little-endian uint64.
	magic = 0x4d48535952524546
	// layoutVersion changes whenever the layout below does.
	layoutVersion = 1

	headerSize = 128 // bytes before the first slot
	slotSize   = 16  // bytes per segment in the control block

	// maxCount bounds the number of segments, so that a corrupt header can
	// not make OpenSegmentPool compute absurd sizes.
	maxCount = 1 << 20
)

// header is the start of the control block. Its field offsets are fixed
// (see TestLayout); _ fields keep them explicit.
type header struct {
	magic    atomic.Uint64 //  0: magic
	version  atomic.Uint32 //  8: layoutVersion
	ctrlSize atomic.Uint32 // 12: bytes of the control block (a multiple of the page size)
	segSize  atomic.Uint64 // 16: bytes per segment (a multiple of the page size)
	count    atomic.Uint32 // 24: number of segments
	shutdown atomic.Uint32 // 28: 1 once Shutdown was called
	// seq is the futex word: incremented after every transition that can
	// let a waiting producer proceed (a segment freed, shutdown) and by a
	// context cancellation; waiters sleep while it keeps the value they saw.
	seq       atomic.Uint32 // 32
	waiters   atomic.Uint32 // 36: producers currently waiting for a segment
	poolID    atomic.Uint64 // 40: random identity of the pool, carried by every Ref
	published atomic.Uint64 // 48: segments ever published
	reclaimed atomic.Uint64 // 56: published segments ever freed again
	abandoned atomic.Uint64 // 64: leases ever given back unpublished
	_         [56]byte      // 72..127: reserved, zero
}

// slot is the per-segment part of the control block.
type slot struct {
	// state packs the segment's state (bits 0-1), its generation (bits
	// 2-31, incremented by every Acquire of the segment) and the owner id of
	// whoever holds it (bits 32-63: the producer while leased or published,
	// the consumer once viewed). See pack.
	state atomic.Uint64
	// length is the number of valid bytes, set by Publish.
	length atomic.Uint64
}

// Segment states, in the low two bits of slot.state.
const (
	stateFree      = 0 // available to Acquire
	stateLeased    = 1 // held by a producer's Lease
	statePublished = 2 // published, its Ref on the way to the consumer
	stateViewed    = 3 // held by a consumer's View
)

const genMask = 1<<30 - 1

func pack(state, gen, owner uint32) uint64 {
	return uint64(owner)<<32 | uint64(gen&genMask)<<2 | uint64(state&3)
}

func unpack(w uint64) (state, gen, owner uint32) {
	return uint32(w & 3), uint32(w>>2) & genMask, uint32(w >> 32)
}

func stateName(s uint32) string {
	switch s {
	case stateFree:
		return "free"
	case stateLeased:
		return "leased"
	case statePublished:
		return "published"
	default:
		return "viewed"
	}
}

// Compile-time checks of the layout.
var (
	_ [headerSize - unsafe.Sizeof(header{})]struct{}
	_ [unsafe.Sizeof(header{}) - headerSize]struct{}
	_ [slotSize - unsafe.Sizeof(slot{})]struct{}
	_ [unsafe.Sizeof(slot{}) - slotSize]struct{}
)

// ctrlSizeFor is the size of the control block for count segments.
func ctrlSizeFor(count, page int) int {
	return roundUp(headerSize+slotSize*count, page)
}

func roundUp(n, to int) int {
	return (n + to - 1) / to * to
}
