//go:build linux && !ferrynolinux

package shm_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/shm"
)

// mustPanic runs fn and returns the message of its panic.
func mustPanic(t *testing.T, what string, fn func()) string {
	t.Helper()
	var msg string
	func() {
		defer func() {
			if v := recover(); v != nil {
				msg, _ = v.(string)
			}
		}()
		fn()
	}()
	if msg == "" {
		t.Fatalf("%s did not panic", what)
	}
	return msg
}

func TestBufferReferences(t *testing.T) {
	pool := newPool(t, 4096, 2)
	b, err := shm.NewBuffer(t.Context(), pool, 100)
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != 100 || !b.Unique() || !b.InPool(pool) {
		t.Fatalf("a new Buffer: len %d, unique %v, in the pool %v", b.Len(), b.Unique(), b.InPool(pool))
	}
	if st := pool.Stats(); st.Leased != 1 {
		t.Fatalf("a new Buffer leases a segment: %+v", st)
	}
	b.Retain()
	if b.Unique() {
		t.Fatal("unique with two references")
	}
	b.Release()
	if st := pool.Stats(); st.Leased != 1 {
		t.Fatalf("a Buffer with a reference left freed its segment: %+v", st)
	}
	b.Release()
	if st := pool.Stats(); st.Free != st.Count {
		t.Fatalf("the last Release did not free the segment: %+v", st)
	}
	if msg := mustPanic(t, "Bytes after the last Release", func() { b.Bytes() }); !strings.Contains(msg, "Release") {
		t.Errorf("panic %q", msg)
	}
	mustPanic(t, "a Release too many", b.Release)

	if _, err := shm.NewBuffer(t.Context(), pool, 4097); !errors.As(err, new(*shm.TooLargeError)) {
		t.Fatalf("NewBuffer larger than a segment: %v", err)
	}
	h, err := shm.NewBuffer(t.Context(), nil, 10)
	if err != nil || h.Len() != 10 || h.InPool(pool) {
		t.Fatalf("NewBuffer without a pool: %v", err)
	}
}

// TestBufferSendMoves: a Buffer whose last reference is sent through its
// own pool changes hands (the consumer's view is the same memory); one
// with another reference, or of ordinary memory, is copied.
func TestBufferSendMoves(t *testing.T) {
	pool := newPool(t, 4096, 4)
	ctx := t.Context()
	b, err := shm.NewBuffer(ctx, pool, 5)
	if err != nil {
		t.Fatal(err)
	}
	copy(b.Bytes(), "hello")
	at := &b.Bytes()[0]
	ref, err := b.Send(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	mustPanic(t, "Bytes after Send", func() { b.Bytes() })
	v, err := pool.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	got := shm.ViewBuffer(v)
	if &got.Bytes()[0] != at || string(got.Bytes()) != "hello" {
		t.Fatalf("sent alone, the Buffer arrived as %q at another address", got.Bytes())
	}

	// Passed on again: Forward, the same memory again.
	ref2, err := got.Send(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.View(ref); err == nil {
		t.Fatal("the first Ref can still be viewed after the segment was passed on")
	}
	v2, err := pool.View(ref2)
	if err != nil {
		t.Fatal(err)
	}
	if &v2.Bytes()[0] != at || pool.Held() != 1 {
		t.Fatalf("forwarded: another address, or %d segments held", pool.Held())
	}
	shared := shm.ViewBuffer(v2).Retain()
	ref3, err := shared.Send(ctx, pool) // another reference: a copy
	if err != nil {
		t.Fatal(err)
	}
	v3, err := pool.View(ref3)
	if err != nil {
		t.Fatal(err)
	}
	if &v3.Bytes()[0] == at || string(v3.Bytes()) != "hello" || !shared.Unique() {
		t.Fatalf("a shared Buffer was not copied (or lost its other reference)")
	}
	v3.Release()
	shared.Release()

	heap := shm.BufferOf([]byte("world"))
	ref4, err := heap.Send(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	v4, err := pool.View(ref4)
	if err != nil || string(v4.Bytes()) != "world" {
		t.Fatalf("a Buffer of ordinary memory: %v", err)
	}
	v4.Release()
	if st := pool.Stats(); st.Free != st.Count || pool.Held() != 0 {
		t.Fatalf("after every Buffer is released: %+v, %d held", st, pool.Held())
	}
}

// TestBufferForwardAfterReclaim: a view whose segment was reclaimed under
// it cannot be forwarded, and the Buffer stays the caller's to release.
func TestBufferForwardAfterReclaim(t *testing.T) {
	pool := newPool(t, 4096, 2)
	ref, err := pool.PublishCopy(t.Context(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := pool.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	b := shm.ViewBuffer(v)
	if err := pool.Discard(ref); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(t.Context(), pool); !errors.As(err, new(*shm.RefError)) {
		t.Fatalf("Send of a reclaimed segment: %v", err)
	}
	b.Release()
	if st := pool.Stats(); st.Free != st.Count {
		t.Fatalf("%+v", st)
	}
}

func TestBufferBinary(t *testing.T) {
	b := shm.BufferOf([]byte{1, 2, 3})
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got shm.Buffer
	if err := got.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	data[0] = 9 // the decoded Buffer has its own copy
	if !bytes.Equal(got.Bytes(), []byte{1, 2, 3}) || !got.Unique() {
		t.Fatalf("decoded %v", got.Bytes())
	}
	if err := got.UnmarshalBinary(data); err == nil {
		t.Fatal("decoding into a Buffer in use succeeded")
	}
}
