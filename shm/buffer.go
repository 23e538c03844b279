package shm

import (
	"context"
	"fmt"
	"sync/atomic"
)

// A Buffer is a block of bytes that can be handed from process to process
// without being copied: a segment of a SegmentPool, leased by NewBuffer or
// received from another process, or ordinary memory (BufferOf, or
// NewBuffer without a pool).
//
// A Buffer is reference-counted within its process. Whoever makes one
// holds its first reference; Retain adds one and Release gives one back;
// the segment is freed when the last is released. Sending a Buffer to
// another process (Send) gives one reference away: when it was the last
// and the Buffer is in the pool it is sent through, the segment itself
// changes hands, otherwise its bytes are copied into a new segment. So a
// Buffer that is passed along — written by a source, read by a transform
// in a worker, consumed by a sink — crosses every process boundary
// without a copy, as long as nobody else holds on to it.
//
// Write into Bytes only while you hold the only reference (after
// NewBuffer, before you pass it on): others may be reading it. Bytes
// panics once the last reference is released.
type Buffer struct {
	data  []byte
	refs  atomic.Int32
	pool  *SegmentPool // the pool of lease or view
	lease *Lease       // a segment leased here and not yet sent
	view  *View        // a segment received from another process
}

// NewBuffer returns a Buffer of n bytes in a segment of pool, leased as
// Acquire does (and waiting as it does when every segment is in use), or
// in ordinary memory when pool is nil. It fails with a *TooLargeError if n
// does not fit in a segment. The caller holds its only reference.
func NewBuffer(ctx context.Context, pool *SegmentPool, n int) (*Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("shm: NewBuffer: negative length %d", n)
	}
	if pool == nil {
		return BufferOf(make([]byte, n)), nil
	}
	if n > pool.segSize {
		return nil, &TooLargeError{Len: n, SegmentSize: pool.segSize}
	}
	lease, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	b := &Buffer{data: lease.Bytes()[:n:n], pool: pool, lease: lease}
	b.refs.Store(1)
	return b, nil
}

// BufferOf returns a Buffer of ordinary memory holding b, without copying
// it. The caller holds its only reference, and must not change b while
// the Buffer is in use.
func BufferOf(b []byte) *Buffer {
	buf := &Buffer{data: b}
	buf.refs.Store(1)
	return buf
}

// ViewBuffer returns a Buffer holding v's bytes, without copying them; the
// Buffer takes over v, which its last Release releases. The caller holds
// its only reference.
func ViewBuffer(v *View) *Buffer {
	b := &Buffer{data: v.Bytes(), pool: v.pool, view: v}
	b.refs.Store(1)
	return b
}

// Bytes returns the buffer's bytes, in place. It panics once the last
// reference is released: the memory may be another item's by then.
func (b *Buffer) Bytes() []byte {
	if b.refs.Load() <= 0 {
		panic("shm: Buffer.Bytes after the Buffer's last Release (or after it was sent)")
	}
	return b.data
}

// Len returns the number of bytes.
func (b *Buffer) Len() int { return len(b.data) }

// InPool reports whether the buffer's bytes are in a segment of pool,
// where sending it through pool moves them instead of copying them.
func (b *Buffer) InPool(pool *SegmentPool) bool { return pool != nil && b.pool == pool }

// Retain adds a reference and returns b, for a holder that keeps b beyond
// the reference it was given (a sink that keeps frames, for one).
func (b *Buffer) Retain() *Buffer {
	if b.refs.Add(1) <= 1 {
		panic("shm: Buffer.Retain after the Buffer's last Release")
	}
	return b
}

// Release gives back one reference; the last frees the buffer's segment.
// It panics if every reference was already released: a holder released
// one it did not have, and someone may be using freed memory.
func (b *Buffer) Release() {
	switch n := b.refs.Add(-1); {
	case n > 0:
		return
	case n < 0:
		panic("shm: Buffer.Release of a Buffer whose references were all released")
	}
	b.free()
}

func (b *Buffer) free() {
	if b.lease != nil {
		b.lease.Abandon()
	}
	if b.view != nil {
		b.view.Release()
	}
}

// Unique reports whether the caller's reference is the only one: then it
// may write into Bytes, and sending b moves it.
func (b *Buffer) Unique() bool { return b.refs.Load() == 1 }

// Send gives one reference to b away to another process, through pool: it
// returns a published Ref to a segment of pool that holds b's bytes, for
// the receiver to view (and make a Buffer of with ViewBuffer). When the
// reference was the last and b is in pool, the segment itself is
// published (no copy); otherwise b's bytes are copied into a new segment,
// waiting for one as Acquire does. On failure the caller keeps its
// reference.
func (b *Buffer) Send(ctx context.Context, pool *SegmentPool) (Ref, error) {
	if b.refs.Load() <= 0 {
		return Ref{}, fmt.Errorf("shm: Send of a Buffer whose references were all released")
	}
	if b.refs.Load() == 1 && b.pool == pool {
		var ref Ref
		var err error
		switch {
		case b.lease != nil:
			ref, err = b.lease.Publish(len(b.data))
		default:
			ref, err = b.view.Forward()
		}
		if err != nil {
			return Ref{}, err
		}
		b.refs.Store(0)
		b.lease, b.view = nil, nil
		return ref, nil
	}
	ref, err := pool.PublishCopy(ctx, b.data)
	if err != nil {
		return Ref{}, err
	}
	b.Release()
	return ref, nil
}

// MarshalBinary returns the buffer's bytes (not a copy), so that a Buffer
// crosses through a codec where there is no pool to send it through. It
// does not give a reference away.
func (b *Buffer) MarshalBinary() ([]byte, error) {
	if b.refs.Load() <= 0 {
		return nil, fmt.Errorf("shm: encoding a Buffer whose references were all released")
	}
	return b.data, nil
}

// UnmarshalBinary makes b a Buffer of ordinary memory holding a copy of
// data, with one reference: a Buffer received through a codec.
func (b *Buffer) UnmarshalBinary(data []byte) error {
	if b.refs.Load() > 0 {
		return fmt.Errorf("shm: decoding into a Buffer in use")
	}
	*b = Buffer{data: append([]byte(nil), data...)}
	b.refs.Store(1)
	return nil
}
