//go:build linux && !ferrynolinux

package shm_test

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/shm"
)

func TestTypedRoundTrip(t *testing.T) {
	prod := newPool(t, 4096, 2)
	cons := openPool(t, prod)

	// Copy an existing []float32 in.
	xs := make([]float32, 2*3*4)
	for i := range xs {
		xs[i] = float32(i) / 3
	}
	l, err := prod.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CopyIn(shm.AsBytes(xs)); err != nil {
		t.Fatal(err)
	}
	ref, err := l.PublishTyped(shm.Float32, 2, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	ref, err = shm.ParseRef(ref.Append(nil)) // across the wire
	if err != nil {
		t.Fatal(err)
	}
	v, err := cons.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	if v.DType() != shm.Float32 || !slices.Equal(v.Shape(), []int{2, 3, 4}) || !slices.Equal(v.Float32s(), xs) || v.Len() != 96 {
		t.Fatalf("view: %v %v %v", v.DType(), v.Shape(), v.Float32s())
	}
	if msg := panics(func() { v.Int32s() }); !strings.Contains(msg, "view of float32[2 3 4] read as int32") {
		t.Errorf("reading float32 as int32: %q", msg)
	}
	v.Release()

	// Write in place, with no copy at all.
	l, _ = prod.Acquire(t.Context())
	ys := shm.Int16s(l.Bytes())[:100]
	for i := range ys {
		ys[i] = int16(-i)
	}
	ref, err = l.PublishTyped(shm.DTypeOf[int16](), 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	v, _ = cons.View(ref)
	if got := shm.Elements[int16](v); len(got) != 100 || got[99] != -99 {
		t.Fatalf("int16 view: %v", got)
	}
	v.Release()

	// A Raw view can be read as any element type that divides its length.
	ref, _ = prod.PublishCopy(t.Context(), shm.AsBytes([]uint64{1, 2, 3}))
	v, _ = cons.View(ref)
	if v.DType() != shm.Raw || v.Shape() != nil || !slices.Equal(v.Uint64s(), []uint64{1, 2, 3}) || len(v.Uint8s()) != 24 {
		t.Fatalf("raw view: %v %v", v.DType(), v.Shape())
	}
	v.Release()

	l, _ = prod.Acquire(t.Context())
	defer l.Abandon()
	if _, err := l.PublishTyped(shm.Raw, 1); err == nil {
		t.Error("PublishTyped(Raw) succeeded")
	}
	if _, err := l.PublishTyped(shm.Float32, 2, -1); err == nil || !strings.Contains(err.Error(), "invalid shape") {
		t.Errorf("negative dimension: %v", err)
	}
	var tl *shm.TooLargeError
	if _, err := l.PublishTyped(shm.Float32, 1<<20, 1<<20); !errors.As(err, &tl) || tl.Len != 1<<42 {
		t.Errorf("huge shape: %v", err)
	}
}

func TestCast(t *testing.T) {
	buf := make([]byte, 64)
	if got := shm.Float64s(buf); len(got) != 8 {
		t.Fatalf("Float64s of 64 bytes: %d elements", len(got))
	}
	if got := shm.Float32s(buf[:0]); got == nil || len(got) != 0 {
		t.Fatalf("Float32s of nothing: %v", got)
	}
	if msg := panics(func() { shm.Float32s(buf[:6]) }); !strings.Contains(msg, "cannot view 6 bytes as []float32: not a multiple of 4") {
		t.Errorf("length: %q", msg)
	}
	if msg := panics(func() { shm.Int32s(buf[1:5]) }); !strings.Contains(msg, "not 4-byte aligned") {
		t.Errorf("alignment: %q", msg)
	}
	// Casts alias the bytes.
	shm.Uint32s(buf)[0] = 0x01020304
	if buf[0] != 4 || buf[3] != 1 {
		t.Errorf("Uint32s does not alias: % x", buf[:4])
	}
	type celsius float32
	dtypes := map[shm.DType]shm.DType{
		shm.DTypeOf[uint8](): shm.Uint8, shm.DTypeOf[int8](): shm.Int8,
		shm.DTypeOf[uint16](): shm.Uint16, shm.DTypeOf[int16](): shm.Int16,
		shm.DTypeOf[uint32](): shm.Uint32, shm.DTypeOf[int32](): shm.Int32,
		shm.DTypeOf[uint64](): shm.Uint64, shm.DTypeOf[int64](): shm.Int64,
		shm.DTypeOf[float32](): shm.Float32, shm.DTypeOf[float64](): shm.Float64,
	}
	for got, want := range dtypes {
		if got != want {
			t.Errorf("DTypeOf: %v, want %v", got, want)
		}
	}
	if len(dtypes) != 10 || shm.DTypeOf[celsius]() != shm.Float32 {
		t.Errorf("DTypeOf is not one-to-one")
	}
	for d := shm.Raw; d <= shm.Float64; d++ {
		if p, err := shm.ParseDType(d.String()); err != nil || p != d {
			t.Errorf("ParseDType(%q) = %v, %v", d, p, err)
		}
	}
	if _, err := shm.ParseDType("complex64"); err == nil {
		t.Error("ParseDType(complex64) succeeded")
	}
	if got := shm.AsBytes([]int16(nil)); got == nil || len(got) != 0 {
		t.Errorf("AsBytes(nil): %v", got)
	}
}

func TestRefEncoding(t *testing.T) {
	refs := []shm.Ref{
		{},
		{Pool: 0xdeadbeefcafe, Segment: 7, Gen: 1<<30 - 1, Len: 8 << 20},
		{Pool: 1, Segment: 1, Gen: 2, Len: 3 * 224 * 224 * 4, DType: shm.Float32, Shape: []int{3, 224, 224}},
		{Pool: 1, Len: 8, DType: shm.Float64},
	}
	for _, r := range refs {
		b := r.Append([]byte("prefix"))
		if len(b) != 6+r.EncodedLen() {
			t.Errorf("%v: %d bytes, EncodedLen %d", r, len(b)-6, r.EncodedLen())
		}
		got, err := shm.ParseRef(b[6:])
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %v: %v, %v", r, got, err)
		}
		got, rest, err := shm.ConsumeRef(append(b[6:], "tail"...))
		if err != nil || string(rest) != "tail" || !reflect.DeepEqual(got, r) {
			t.Errorf("ConsumeRef of %v: %v, %q, %v", r, got, rest, err)
		}
	}
	good := refs[2].Append(nil)
	corrupt := map[string][]byte{
		"empty":          nil,
		"short":          good[:10],
		"format":         append([]byte{9}, good[1:]...),
		"dtype":          append([]byte{1, 99}, good[2:]...),
		"truncated dims": good[:len(good)-1],
		"trailing":       append(slices.Clone(good), 0),
		"raw with dims":  append([]byte{1, 0}, good[2:]...),
		"wrong length":   shm.Ref{Len: 9, DType: shm.Float64, Shape: []int{1}}.Append(nil),
	}
	for name, b := range corrupt {
		if _, err := shm.ParseRef(b); !errors.Is(err, shm.ErrMalformedRef) {
			t.Errorf("%s: %v, want ErrMalformedRef", name, err)
		}
	}
	if s := refs[2].String(); s != "shm.Ref{segment 1 gen 2, 602112 bytes, float32[3 224 224]}" {
		t.Errorf("String: %s", s)
	}
}

func FuzzParseRef(f *testing.F) {
	f.Add(shm.Ref{Pool: 1, Segment: 2, Gen: 3, Len: 16, DType: shm.Int32, Shape: []int{2, 2}}.Append(nil))
	f.Add(shm.Ref{Len: 5}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := shm.ParseRef(b)
		if err != nil {
			return
		}
		if again := r.Append(nil); !bytes.Equal(again[4:], b[4:]) || again[0] != b[0] {
			t.Fatalf("%x parsed as %v, encodes as %x", b, r, again)
		}
	})
}

// syncBuffer is a log destination for the cleanup goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Views and leases that are dropped without Release or Abandon are freed
// when they are garbage-collected, and the pool says so once.
func TestForgottenViewsAndLeasesAreFreed(t *testing.T) {
	var logs syncBuffer
	p := newPool(t, 4096, 4, shm.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	forget := func() {
		for range 2 {
			ref, err := p.PublishCopy(t.Context(), []byte("forgotten"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.View(ref); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if _, err := p.Acquire(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	forget()
	if s := p.Stats(); s.Free != 0 {
		t.Fatalf("stats: %+v", s)
	}
	for i := 0; p.Stats().Free != 4; i++ {
		if i == 1000 {
			t.Fatalf("forgotten views were not freed: %+v", p.Stats())
		}
		runtime.GC()
		runtime.Gosched()
	}
	out := logs.String()
	if n := strings.Count(out, "shm: a view was garbage-collected without Release"); n != 1 {
		t.Errorf("view warning logged %d times:\n%s", n, out)
	}
	if n := strings.Count(out, "shm: a lease was garbage-collected without Publish or Abandon"); n != 1 {
		t.Errorf("lease warning logged %d times:\n%s", n, out)
	}
	if s := p.Stats(); s.Reclaimed != 2 || s.Abandoned != 2 {
		t.Errorf("stats: %+v", s)
	}
}
