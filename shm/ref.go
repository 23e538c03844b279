package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// A Ref designates a published segment: what a producer sends to the
// consumer in place of the bytes themselves (Append encodes it, ParseRef
// decodes it), and what the consumer passes to View. A Ref is only
// meaningful to the pool that issued it.
type Ref struct {
	Pool    uint64 // the pool's ID
	Segment uint32 // index of the segment
	Gen     uint32 // the segment's generation: a Ref of a released segment is stale
	Len     uint64 // valid bytes, from the start of the segment
	DType   DType  // element type (Raw for plain bytes)
	Shape   []int  // dimensions, row-major (nil for Raw)
}

// maxDims bounds the number of dimensions of a typed Ref.
const maxDims = 32

// refFixedSize is the size of an encoded Ref without its dimensions.
const refFixedSize = 28

// refFormat is the first byte of an encoded Ref.
const refFormat = 1

// ErrMalformedRef is wrapped by the errors of ParseRef and ConsumeRef.
var ErrMalformedRef = errors.New("shm: malformed ref")

// EncodedLen returns the size of r's encoding: 28 bytes plus 8 per
// dimension.
func (r Ref) EncodedLen() int { return refFixedSize + 8*len(r.Shape) }

// Append appends r's encoding to dst and returns the extended slice. The
// encoding, little-endian, is: format (1 byte, 1), dtype (1 byte), number of
// dimensions (1 byte), a zero byte, segment (4 bytes), generation (4), pool
// ID (8), length (8), then each dimension (8 bytes).
func (r Ref) Append(dst []byte) []byte {
	le := binary.LittleEndian
	dst = append(dst, refFormat, byte(r.DType), byte(len(r.Shape)), 0)
	dst = le.AppendUint32(dst, r.Segment)
	dst = le.AppendUint32(dst, r.Gen)
	dst = le.AppendUint64(dst, r.Pool)
	dst = le.AppendUint64(dst, r.Len)
	for _, d := range r.Shape {
		dst = le.AppendUint64(dst, uint64(d))
	}
	return dst
}

// ParseRef decodes a Ref encoded by Append; b must hold exactly one.
func ParseRef(b []byte) (Ref, error) {
	r, rest, err := ConsumeRef(b)
	if err != nil {
		return Ref{}, err
	}
	if len(rest) != 0 {
		return Ref{}, fmt.Errorf("%w: %d bytes after the ref", ErrMalformedRef, len(rest))
	}
	return r, nil
}

// ConsumeRef decodes the Ref at the start of b and returns it with the rest
// of b, for messages that carry a Ref followed by other data.
func ConsumeRef(b []byte) (Ref, []byte, error) {
	if len(b) < refFixedSize {
		return Ref{}, nil, fmt.Errorf("%w: %d bytes, at least %d needed", ErrMalformedRef, len(b), refFixedSize)
	}
	if b[0] != refFormat {
		return Ref{}, nil, fmt.Errorf("%w: format %d", ErrMalformedRef, b[0])
	}
	le := binary.LittleEndian
	r := Ref{
		DType:   DType(b[1]),
		Segment: le.Uint32(b[4:]),
		Gen:     le.Uint32(b[8:]),
		Pool:    le.Uint64(b[12:]),
		Len:     le.Uint64(b[20:]),
	}
	ndim := int(b[2])
	if r.DType.Size() == 0 {
		return Ref{}, nil, fmt.Errorf("%w: unknown dtype %d", ErrMalformedRef, b[1])
	}
	if ndim > maxDims || (r.DType == Raw && ndim != 0) {
		return Ref{}, nil, fmt.Errorf("%w: %d dimensions for dtype %v", ErrMalformedRef, ndim, r.DType)
	}
	b = b[refFixedSize:]
	if len(b) < 8*ndim {
		return Ref{}, nil, fmt.Errorf("%w: truncated shape", ErrMalformedRef)
	}
	if r.DType != Raw {
		if ndim > 0 {
			r.Shape = make([]int, ndim)
		}
		for i := range r.Shape {
			d := le.Uint64(b[8*i:])
			if d > math.MaxInt32 {
				return Ref{}, nil, fmt.Errorf("%w: dimension %d", ErrMalformedRef, d)
			}
			r.Shape[i] = int(d)
		}
		if n, ok := elements(r.Shape); !ok || n > math.MaxInt64/8 || n*uint64(r.DType.Size()) != r.Len {
			return Ref{}, nil, fmt.Errorf("%w: shape %v of %v does not make %d bytes", ErrMalformedRef, r.Shape, r.DType, r.Len)
		}
	}
	return r, b[8*ndim:], nil
}

// String returns a short description of r, for logs.
func (r Ref) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "shm.Ref{segment %d gen %d, %d bytes", r.Segment, r.Gen, r.Len)
	if r.DType != Raw {
		fmt.Fprintf(&b, ", %v%v", r.DType, r.Shape)
	}
	b.WriteString("}")
	return b.String()
}

// DType is the element type of a typed Ref (Lease.PublishTyped). Its
// numeric values are part of the Ref encoding.
type DType uint8

// The element types. Raw is plain bytes, without a shape.
const (
	Raw DType = iota
	Uint8
	Int8
	Uint16
	Int16
	Uint32
	Int32
	Uint64
	Int64
	Float32
	Float64
	numDTypes
)

var dtypeNames = [numDTypes]string{"raw", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"}
var dtypeSizes = [numDTypes]int{1, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8}

// Size returns the size of one element in bytes (1 for Raw), or 0 for an
// unknown DType.
func (d DType) Size() int {
	if d >= numDTypes {
		return 0
	}
	return dtypeSizes[d]
}

// String returns the NumPy-style name of d ("float32", "raw").
func (d DType) String() string {
	if d >= numDTypes {
		return fmt.Sprintf("DType(%d)", uint8(d))
	}
	return dtypeNames[d]
}

// ParseDType returns the DType named s, as returned by String.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if n == s {
			return DType(i), nil
		}
	}
	return 0, fmt.Errorf("shm: unknown dtype %q", s)
}
