package codec

import (
	"bytes"
	"math"

	"github.com/fxamacker/cbor/v2"
)

// The CBOR modes of proc's default codec (see docs/decisions/0007): chosen
// so that a value of a type CBOR.Check accepts arrives as it was sent.
var (
	cborEnc cbor.UserBufferEncMode
	cborDec cbor.DecMode
)

func init() {
	var err error
	cborEnc, err = cbor.EncOptions{
		Sort:          cbor.SortNone,          // map order does not matter between two processes
		ShortestFloat: cbor.ShortestFloatNone, // a float64 stays 8 bytes, a float32 4
		NaNConvert:    cbor.NaNConvertNone,    // NaN payloads and signs as they are
		InfConvert:    cbor.InfConvertNone,
		BigIntConvert: cbor.BigIntConvertShortest,
		// The instant to the nanosecond. Not TimeRFC3339Nano: an offset
		// with seconds (the LMT of old dates) would be cut to the minute,
		// moving the instant.
		Time:            cbor.TimeRFC3339NanoUTC,
		NilContainers:   cbor.NilContainerAsNull, // nil and empty slices and maps stay apart
		String:          cbor.StringToTextString,
		ByteArray:       cbor.ByteArrayToByteSlice,
		BinaryMarshaler: cbor.BinaryMarshalerByteString,
		TextMarshaler:   cbor.TextMarshalerTextString,
	}.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	cborDec, err = cbor.DecOptions{
		// No limits: the peer is a copy of this program, not an attacker.
		MaxNestedLevels:  65535,
		MaxArrayElements: math.MaxInt32,
		MaxMapPairs:      math.MaxInt32,
		// A Go string may hold any bytes.
		UTF8:              cbor.UTF8DecodeInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		BinaryUnmarshaler: cbor.BinaryUnmarshalerByteString,
		TextUnmarshaler:   cbor.TextUnmarshalerTextString,
		NaN:               cbor.NaNDecodeAllowed,
		Inf:               cbor.InfDecodeAllowed,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// AppendCBOR appends the CBOR encoding of v to dst.
func AppendCBOR(dst []byte, v any) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := cborEnc.MarshalToBuffer(v, buf); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// UnmarshalCBOR decodes src, one CBOR data item and nothing after it, into
// the value v points to. It copies what it keeps of src.
func UnmarshalCBOR(src []byte, v any) error { return cborDec.Unmarshal(src, v) }
