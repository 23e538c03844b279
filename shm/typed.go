package shm

import (
	"fmt"
	"unsafe"
)

// Element is the set of element types of typed views.
type Element interface {
	~uint8 | ~int8 | ~uint16 | ~int16 | ~uint32 | ~int32 | ~uint64 | ~int64 | ~float32 | ~float64
}

// Cast reinterprets b as a slice of T, without copying: the result aliases
// b. It panics, naming the problem, if b is not aligned for T or its length
// is not a multiple of T's size. Segments are page-aligned, so a segment's
// Bytes (or a View's) can always be cast.
func Cast[T Element](b []byte) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if len(b)%size != 0 {
		panic(fmt.Sprintf("shm: cannot view %d bytes as []%T: not a multiple of %d", len(b), zero, size))
	}
	if len(b) == 0 {
		return []T{}
	}
	if uintptr(unsafe.Pointer(&b[0]))%uintptr(unsafe.Alignof(zero)) != 0 {
		panic(fmt.Sprintf("shm: cannot view bytes at %p as []%T: not %d-byte aligned", &b[0], zero, unsafe.Alignof(zero)))
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/size)
}

// AsBytes returns the memory of s as bytes, without copying, e.g. to
// Lease.CopyIn a []float32.
func AsBytes[T Element](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(zero)))
}

// DTypeOf returns the DType of T.
func DTypeOf[T Element]() DType {
	one, two := T(1), T(2)
	isFloat := one/two != 0 // 0.5 for floats, 0 for integers
	isSigned := T(0)-one < 0
	var zero T
	switch size := unsafe.Sizeof(zero); {
	case isFloat && size == 4:
		return Float32
	case isFloat:
		return Float64
	case size == 1 && isSigned:
		return Int8
	case size == 1:
		return Uint8
	case size == 2 && isSigned:
		return Int16
	case size == 2:
		return Uint16
	case size == 4 && isSigned:
		return Int32
	case size == 4:
		return Uint32
	case isSigned:
		return Int64
	default:
		return Uint64
	}
}

// Uint8s is Cast[uint8].
func Uint8s(b []byte) []uint8 { return Cast[uint8](b) }

// Int8s is Cast[int8].
func Int8s(b []byte) []int8 { return Cast[int8](b) }

// Uint16s is Cast[uint16].
func Uint16s(b []byte) []uint16 { return Cast[uint16](b) }

// Int16s is Cast[int16].
func Int16s(b []byte) []int16 { return Cast[int16](b) }

// Uint32s is Cast[uint32].
func Uint32s(b []byte) []uint32 { return Cast[uint32](b) }

// Int32s is Cast[int32].
func Int32s(b []byte) []int32 { return Cast[int32](b) }

// Uint64s is Cast[uint64].
func Uint64s(b []byte) []uint64 { return Cast[uint64](b) }

// Int64s is Cast[int64].
func Int64s(b []byte) []int64 { return Cast[int64](b) }

// Float32s is Cast[float32].
func Float32s(b []byte) []float32 { return Cast[float32](b) }

// Float64s is Cast[float64].
func Float64s(b []byte) []float64 { return Cast[float64](b) }
