package proc

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"math"
	"reflect"
	"sync"
)

// Codec turns values of one type into bytes and back, for arguments, items,
// call inputs and outputs that cross the process boundary.
type Codec[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v T) ([]byte, error)
	// Decode decodes a value from src. src belongs to Decode, which may
	// keep it (the []byte codec returns it without copying).
	Decode(src []byte) (T, error)
}

var codecs sync.Map // reflect.Type → any (a Codec of that type)

// RegisterCodec makes c the codec for every T that crosses a process
// boundary, instead of the built-in one (for example protobuf or CBOR).
// Register it at package level, so that parent and workers agree.
func RegisterCodec[T any](c Codec[T]) {
	codecs.Store(reflect.TypeFor[T](), c)
}

// codecFor returns the codec for T: a registered one, a fast path for
// []byte, string, bool and fixed-size numbers, or gob.
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
		c = fixedCodec[bool]{}
	case int:
		c = fixedCodec[int]{}
	case int8:
		c = fixedCodec[int8]{}
	case int16:
		c = fixedCodec[int16]{}
	case int32:
		c = fixedCodec[int32]{}
	case int64:
		c = fixedCodec[int64]{}
	case uint:
		c = fixedCodec[uint]{}
	case uint8:
		c = fixedCodec[uint8]{}
	case uint16:
		c = fixedCodec[uint16]{}
	case uint32:
		c = fixedCodec[uint32]{}
	case uint64:
		c = fixedCodec[uint64]{}
	case float32:
		c = fixedCodec[float32]{}
	case float64:
		c = fixedCodec[float64]{}
	case struct{}:
		c = fixedCodec[struct{}]{}
	default:
		return gobCodec[T]{}
	}
	return c.(Codec[T])
}

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) ([]byte, error) { return append(dst, v...), nil }
func (bytesCodec) Decode(src []byte) ([]byte, error)           { return src, nil }

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) ([]byte, error) { return append(dst, v...), nil }
func (stringCodec) Decode(src []byte) (string, error)           { return string(src), nil }

// fixedCodec encodes booleans and numbers as 8 little-endian bytes (0 for
// struct{}).
type fixedCodec[T bool | int | int8 | int16 | int32 | int64 | uint | uint8 | uint16 | uint32 | uint64 | float32 | float64 | struct{}] struct{}

func (fixedCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	var u uint64
	switch x := any(v).(type) {
	case struct{}:
		return dst, nil
	case bool:
		if x {
			u = 1
		}
	case float32:
		u = math.Float64bits(float64(x))
	case float64:
		u = math.Float64bits(x)
	case int:
		u = uint64(x)
	case int8:
		u = uint64(x)
	case int16:
		u = uint64(x)
	case int32:
		u = uint64(x)
	case int64:
		u = uint64(x)
	case uint:
		u = uint64(x)
	case uint8:
		u = uint64(x)
	case uint16:
		u = uint64(x)
	case uint32:
		u = uint64(x)
	case uint64:
		u = x
	}
	return binary.LittleEndian.AppendUint64(dst, u), nil
}

func (fixedCodec[T]) Decode(src []byte) (T, error) {
	var v T
	if _, ok := any(v).(struct{}); ok {
		return v, nil
	}
	if len(src) != 8 {
		return v, fmt.Errorf("proc: decoding %T: want 8 bytes, got %d", v, len(src))
	}
	u := binary.LittleEndian.Uint64(src)
	var out any
	switch any(v).(type) {
	case bool:
		out = u != 0
	case float32:
		out = float32(math.Float64frombits(u))
	case float64:
		out = math.Float64frombits(u)
	case int:
		out = int(u)
	case int8:
		out = int8(u)
	case int16:
		out = int16(u)
	case int32:
		out = int32(u)
	case int64:
		out = int64(u)
	case uint:
		out = uint(u)
	case uint8:
		out = uint8(u)
	case uint16:
		out = uint16(u)
	case uint32:
		out = uint32(u)
	case uint64:
		out = u
	}
	return out.(T), nil
}

// gobCodec is the default codec: fine between two copies of one binary.
type gobCodec[T any] struct{}

func (gobCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := gob.NewEncoder(buf).Encode(&v); err != nil {
		return dst, fmt.Errorf("proc: gob-encoding %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

func (gobCodec[T]) Decode(src []byte) (T, error) {
	var v T
	if err := gob.NewDecoder(bytes.NewReader(src)).Decode(&v); err != nil {
		return v, fmt.Errorf("proc: gob-decoding %T: %w", v, err)
	}
	return v, nil
}
