//go:build linux && !ferrynolinux

package proc

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"testing"
)

// DefaultCodec is the codec that Func, Iter and Pipeline give T, resolved
// at its first use, for codec_test.go.
func DefaultCodec[T any]() Codec[T] { return lazyCodec[T]() }

// The benchmarks of docs/decisions/0007-default-codec.md: one Append and
// one Decode per op, for each candidate default codec, on a small and a
// larger struct; and calls of a function that returns its input, through a
// pool of two worker processes, with the small struct each way.
//
//	go test -run '^$' -bench '^BenchmarkCodec' -count=5 ./proc/

// benchSmall is a small item: a few scalars, a string and a short vector.
type benchSmall struct {
	ID    int64
	Name  string
	Score float64
	OK    bool
	Vec   []float32
}

// benchLarge is a larger record: a map, a nested slice, a slice of small
// structs.
type benchLarge struct {
	Name   string
	Labels map[string]int
	Rows   [][]float64
	Items  []benchSmall
	Tags   []string
}

func makeBenchSmall(i int) benchSmall {
	v := benchSmall{ID: int64(i), Name: fmt.Sprintf("sample-%05d", i), Score: float64(i) / 7, OK: i%2 == 0, Vec: make([]float32, 16)}
	for k := range v.Vec {
		v.Vec[k] = float32(i*k) / 3
	}
	return v
}

func makeBenchLarge() benchLarge {
	v := benchLarge{Name: "batch-0042", Labels: map[string]int{}}
	for i := range 16 {
		v.Labels[fmt.Sprintf("label-%02d", i)] = i * i
	}
	for i := range 8 {
		row := make([]float64, 8)
		for k := range row {
			row[k] = float64(i*8+k) / 9
		}
		v.Rows = append(v.Rows, row)
		v.Items = append(v.Items, makeBenchSmall(i))
		v.Tags = append(v.Tags, fmt.Sprintf("tag-%d", i))
	}
	return v
}

// gobCodec is the former default: a self-contained gob stream per value,
// type description included.
type gobCodec[T any] struct{}

func (gobCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	err := gob.NewEncoder(buf).Encode(&v)
	return buf.Bytes(), err
}

func (gobCodec[T]) Decode(src []byte) (T, error) {
	var v T
	err := gob.NewDecoder(bytes.NewReader(src)).Decode(&v)
	return v, err
}

// jsonCodec is encoding/json.
type jsonCodec[T any] struct{}

func (jsonCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(&v)
	return append(dst, b...), err
}

func (jsonCodec[T]) Decode(src []byte) (T, error) {
	var v T
	err := json.Unmarshal(src, &v)
	return v, err
}

func benchCodec[T any](b *testing.B, c Codec[T], v T) {
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = c.Append(buf[:0], v); err != nil {
			b.Fatal(err)
		}
		if _, err = c.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "B/msg")
}

func benchCandidates[T any](b *testing.B, v T) {
	if _, ok := codecFor[T]().(cborCodec[T]); !ok {
		b.Fatalf("the default codec of %T is %T, not CBOR", v, codecFor[T]())
	}
	b.Run("gob", func(b *testing.B) { benchCodec[T](b, gobCodec[T]{}, v) })
	b.Run("json", func(b *testing.B) { benchCodec[T](b, jsonCodec[T]{}, v) })
	b.Run("cbor", func(b *testing.B) { benchCodec(b, lazyCodec[T](), v) }) // the default, as Func and Iter use it
}

func BenchmarkCodecSmall(b *testing.B) { benchCandidates(b, makeBenchSmall(7)) }
func BenchmarkCodecLarge(b *testing.B) { benchCandidates(b, makeBenchLarge()) }

// Three types of one shape, one per candidate codec, for BenchmarkCodecPool.
type (
	smallGob  benchSmall
	smallJSON benchSmall
	smallCBOR benchSmall
)

func init() {
	RegisterCodec[smallGob](gobCodec[smallGob]{})
	RegisterCodec[smallJSON](jsonCodec[smallJSON]{})
}

var (
	echoGob  = Func("bench.codec-echo-gob", func(_ context.Context, v smallGob) (smallGob, error) { return v, nil })
	echoJSON = Func("bench.codec-echo-json", func(_ context.Context, v smallJSON) (smallJSON, error) { return v, nil })
	echoCBOR = Func("bench.codec-echo-cbor", func(_ context.Context, v smallCBOR) (smallCBOR, error) { return v, nil })
)

func benchPool[T any](b *testing.B, fn *Function[T, T], v T) {
	pool, err := NewPool(b.Context(), fn, Workers(2))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	b.SetParallelism(4) // calls in flight per GOMAXPROCS, to keep both workers busy
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pool.Call(context.Background(), v); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

func BenchmarkCodecPool(b *testing.B) {
	v := makeBenchSmall(7)
	b.Run("gob", func(b *testing.B) { benchPool(b, echoGob, smallGob(v)) })
	b.Run("json", func(b *testing.B) { benchPool(b, echoJSON, smallJSON(v)) })
	b.Run("cbor", func(b *testing.B) { benchPool(b, echoCBOR, smallCBOR(v)) })
}
