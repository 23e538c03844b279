package proc

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/ferrypipe/ferry/internal/codec"
)

// Codec turns values of one type into bytes and back, for arguments, items,
// call inputs and outputs that cross the process boundary.
//
// The built-in codec of a type is chosen at its first use: a registered
// one (RegisterCodec); a fast path for []byte, string, bool, the
// fixed-size numbers and struct{}; otherwise CBOR
// (github.com/fxamacker/cbor/v2), which carries what a value holds in its
// exported fields: booleans, numbers (NaN, infinities and the full range
// of 64-bit integers included), strings (any bytes), []byte as bytes, nil
// and empty slices and maps apart, maps with keys of any such type,
// pointers, time.Time (the instant to the nanosecond; it arrives in UTC),
// big.Int, and types with MarshalCBOR, MarshalBinary or MarshalText and
// their inverse. See docs/decisions/0007-default-codec.md.
//
// Before the built-in CBOR codec carries a value of a type, it checks that
// the type can arrive as it was sent: no unexported field (a field of an
// embedded struct included), channel, function, unsafe.Pointer or
// interface (an any field, an []any, a map[string]any), anywhere in it,
// no field hidden by embedding. A type that fails the check makes every
// Append and Decode fail, before it looks at the value, with an error
// wrapping a *TypeError that names the field (a call, an iteration or an
// item fails with it inside a *CodecError), so that no value of the type
// is sent. A field tagged "-" (cbor:"-", or json:"-" on a field without a
// cbor tag) is not sent, by choice, and is not checked. A registered codec
// is not checked: its author decides what it carries.
type Codec[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v T) ([]byte, error)
	// Decode decodes a value from src. src belongs to Decode, which may
	// keep it (the []byte codec returns it without copying).
	Decode(src []byte) (T, error)
}

// TypeError is a type whose values the built-in codec would not carry
// faithfully; errors.As finds it in a *CodecError. Its Path names the part
// of Type that would not arrive as it was sent ("" for Type itself; a
// field as a selector, ".cache.items"; "[]" appended for an element of a
// slice, array or map, "[key]" for a map's key), and its Reason says why,
// e.g. "is unexported (it would arrive zero)".
type TypeError = codec.TypeError

var codecs sync.Map // reflect.Type → any (a Codec of that type)

// RegisterCodec makes c the codec for every T that crosses a process
// boundary, instead of the built-in one (for example protobuf, or JSON for
// a type that carries its state in MarshalJSON). The built-in check does
// not apply to it. It is the codec of T itself: inside another type (a
// []T, a field of type T) the built-in codec carries T field by field, and
// checks it. Register it at package level, so that parent and workers
// agree.
func RegisterCodec[T any](c Codec[T]) {
	codecs.Store(reflect.TypeFor[T](), c)
}

// CodecOf returns the codec that carries values of T across the process
// boundary: the one registered for T, or the built-in one. Code that must
// give the same result in a goroutine as in a worker process can pass a
// value through it (the graph does, for the arguments of registered
// elements), so that what the codec refuses is refused everywhere.
func CodecOf[T any]() Codec[T] { return lazyCodec[T]() }

// lazy resolves the codec of T at its first use, so that RegisterCodec may
// run after the registration of the code that uses T.
type lazy[T any] struct {
	once sync.Once
	c    Codec[T]
}

func lazyCodec[T any]() Codec[T] { return &lazy[T]{} }

func (l *lazy[T]) get() Codec[T] {
	l.once.Do(func() { l.c = codecFor[T]() })
	return l.c
}

func (l *lazy[T]) Append(dst []byte, v T) ([]byte, error) { return l.get().Append(dst, v) }
func (l *lazy[T]) Decode(src []byte) (T, error)           { return l.get().Decode(src) }

func (l *lazy[T]) view(v T) ([]byte, bool) {
	if vc, ok := l.get().(viewer[T]); ok {
		return vc.view(v)
	}
	return nil, false
}

// viewer is a codec whose encoding of a value can be the value's own
// memory: []byte.
type viewer[T any] interface {
	view(v T) ([]byte, bool)
}

// maxReuse is the largest encoding buffer an itemEncoder keeps.
const maxReuse = 1 << 20

// itemEncoder encodes the items of a pass in a worker, to be sent before
// the next one is produced: as the item's own memory when the codec allows
// it ([]byte), otherwise into a buffer reused from item to item, so that a
// pass allocates nothing per item. What encode returns is only valid until
// the next call.
type itemEncoder[T any] struct {
	c   Codec[T]
	buf []byte
}

func (e *itemEncoder[T]) encode(v T) ([]byte, error) {
	if vc, ok := e.c.(viewer[T]); ok {
		if b, ok := vc.view(v); ok {
			return b, nil
		}
	}
	b, err := e.c.Append(e.buf[:0], v)
	if cap(b) <= maxReuse {
		e.buf = b[:0]
	}
	return b, err
}

// codecFor returns the codec for T: a registered one, a fast path for
// []byte, string, bool and fixed-size numbers (8 bytes each), or CBOR for
// a type that passes codec.CBOR's check, or a codec that fails with its
// *TypeError.
func codecFor[T any]() Codec[T] {
	if c, ok := codecs.Load(reflect.TypeFor[T]()); ok {
		return c.(Codec[T])
	}
	var zero T
	var c any
	switch any(zero).(type) {
	case []byte:
		c = bytesCodec{}
	case string:
		c = stringCodec{}
	case bool:
		c = numCodec[bool]{func(v bool) uint64 {
			if v {
				return 1
			}
			return 0
		}, func(u uint64) bool { return u != 0 }}
	case int:
		c = numCodec[int]{func(v int) uint64 { return uint64(v) }, func(u uint64) int { return int(u) }}
	case int8:
		c = numCodec[int8]{func(v int8) uint64 { return uint64(v) }, func(u uint64) int8 { return int8(u) }}
	case int16:
		c = numCodec[int16]{func(v int16) uint64 { return uint64(v) }, func(u uint64) int16 { return int16(u) }}
	case int32:
		c = numCodec[int32]{func(v int32) uint64 { return uint64(v) }, func(u uint64) int32 { return int32(u) }}
	case int64:
		c = numCodec[int64]{func(v int64) uint64 { return uint64(v) }, func(u uint64) int64 { return int64(u) }}
	case uint:
		c = numCodec[uint]{func(v uint) uint64 { return uint64(v) }, func(u uint64) uint { return uint(u) }}
	case uint8:
		c = numCodec[uint8]{func(v uint8) uint64 { return uint64(v) }, func(u uint64) uint8 { return uint8(u) }}
	case uint16:
		c = numCodec[uint16]{func(v uint16) uint64 { return uint64(v) }, func(u uint64) uint16 { return uint16(u) }}
	case uint32:
		c = numCodec[uint32]{func(v uint32) uint64 { return uint64(v) }, func(u uint64) uint32 { return uint32(u) }}
	case uint64:
		c = numCodec[uint64]{func(v uint64) uint64 { return v }, func(u uint64) uint64 { return u }}
	case float32:
		c = numCodec[float32]{func(v float32) uint64 { return math.Float64bits(float64(v)) }, func(u uint64) float32 { return float32(math.Float64frombits(u)) }}
	case float64:
		c = numCodec[float64]{math.Float64bits, math.Float64frombits}
	case struct{}:
		c = emptyCodec{}
	default:
		if err := codec.CBOR.Check(reflect.TypeFor[T]()); err != nil {
			return refusedCodec[T]{fmt.Errorf("proc: %w", err)}
		}
		return cborCodec[T]{}
	}
	return c.(Codec[T])
}

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) ([]byte, error) { return append(dst, v...), nil }
func (bytesCodec) Decode(src []byte) ([]byte, error)           { return src, nil }
func (bytesCodec) view(v []byte) ([]byte, bool)                { return v, true }

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) ([]byte, error) { return append(dst, v...), nil }
func (stringCodec) Decode(src []byte) (string, error)           { return string(src), nil }

// numCodec encodes a boolean or a number as 8 little-endian bytes, through
// its conversions to and from uint64 (which keep the value off the heap).
type numCodec[T any] struct {
	enc func(T) uint64
	dec func(uint64) T
}

func (c numCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	return binary.LittleEndian.AppendUint64(dst, c.enc(v)), nil
}

func (c numCodec[T]) Decode(src []byte) (T, error) {
	if len(src) != 8 {
		var zero T
		return zero, fmt.Errorf("proc: decoding %T: want 8 bytes, got %d", zero, len(src))
	}
	return c.dec(binary.LittleEndian.Uint64(src)), nil
}

// emptyCodec encodes struct{} as nothing.
type emptyCodec struct{}

func (emptyCodec) Append(dst []byte, _ struct{}) ([]byte, error) { return dst, nil }
func (emptyCodec) Decode([]byte) (struct{}, error)               { return struct{}{}, nil }

// cborCodec is the default codec, for types that codec.CBOR accepts.
type cborCodec[T any] struct{}

func (cborCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	b, err := codec.AppendCBOR(dst, v)
	if err != nil {
		return dst, fmt.Errorf("proc: encoding %T as CBOR: %w", v, err)
	}
	return b, nil
}

func (cborCodec[T]) Decode(src []byte) (T, error) {
	var v T
	if err := codec.UnmarshalCBOR(src, &v); err != nil {
		return v, fmt.Errorf("proc: decoding %T from CBOR: %w", v, err)
	}
	return v, nil
}

// refusedCodec is the codec of a type that would not cross faithfully:
// it refuses every value, with err (which wraps the *TypeError).
type refusedCodec[T any] struct{ err error }

func (c refusedCodec[T]) Append(dst []byte, _ T) ([]byte, error) { return dst, c.err }
func (c refusedCodec[T]) Decode([]byte) (T, error) {
	var zero T
	return zero, c.err
}
