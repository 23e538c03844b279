package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/ferrypipe/ferry/proc"
)

// The messages between the parent and a worker element have codecs of
// their own: a compact binary envelope around the Data, which goes through
// Data's own codec (so that the codec's rules, and its checks, are those of
// every other value that crosses). A general codec spends most of a
// frame's cost on the envelope's field names.

// registerWire registers the codecs of the messages of elements with
// sink pads of In and source pads of Out.
func registerWire[In, Out any]() {
	proc.RegisterCodec[wireIn[In]](wireInCodec[In]{data: proc.CodecOf[In]()})
	proc.RegisterCodec[wireOut[Out]](wireOutCodec[Out]{data: proc.CodecOf[Out]()})
}

// Flags of an encoded frame.
const (
	fEOS = 1 << iota
	fGap
	fTime
	fRate
	fMeta
	fPad
	fStep
)

var errShort = errors.New("graph: a truncated frame message")

func appendFrame[T any](b []byte, c proc.Codec[T], f *Frame[T]) ([]byte, error) {
	var flags byte
	if f.EOS {
		flags |= fEOS
	}
	if f.Gap {
		flags |= fGap
	}
	if f.Time != 0 {
		flags |= fTime
	}
	if f.Rate != 0 {
		flags |= fRate
	}
	if len(f.Meta) > 0 {
		flags |= fMeta
	}
	if f.Pad != "" {
		flags |= fPad
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, f.Seq)
	if flags&fTime != 0 {
		b = binary.AppendVarint(b, f.Time)
	}
	if flags&fRate != 0 {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f.Rate))
	}
	if flags&fMeta != 0 {
		b = binary.AppendUvarint(b, uint64(len(f.Meta)))
		for k, v := range f.Meta {
			b = appendString(appendString(b, k), v)
		}
	}
	if flags&fPad != 0 {
		b = appendString(b, f.Pad)
	}
	// The data, length-prefixed: a Gap's is not sent.
	if f.Gap {
		return b, nil
	}
	n := len(b)
	b = append(b, 0, 0, 0, 0)
	b, err := c.Append(b, f.Data)
	if err != nil {
		return b, err
	}
	binary.LittleEndian.PutUint32(b[n:], uint32(len(b)-n-4))
	return b, nil
}

// decodeFrame decodes a frame from b and returns what follows it.
func decodeFrame[T any](b []byte, c proc.Codec[T], f *Frame[T]) ([]byte, error) {
	if len(b) < 1 {
		return nil, errShort
	}
	flags := b[0]
	b = b[1:]
	var err error
	f.EOS, f.Gap = flags&fEOS != 0, flags&fGap != 0
	if f.Seq, b, err = uvarint(b); err != nil {
		return nil, err
	}
	if flags&fTime != 0 {
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, errShort
		}
		f.Time, b = v, b[k:]
	}
	if flags&fRate != 0 {
		if len(b) < 8 {
			return nil, errShort
		}
		f.Rate, b = math.Float64frombits(binary.LittleEndian.Uint64(b)), b[8:]
	}
	if flags&fMeta != 0 {
		var n uint64
		if n, b, err = uvarint(b); err != nil || 2*n > uint64(len(b)) { // two lengths per entry at least
			return nil, errors.Join(errShort, err)
		}
		f.Meta = make(map[string]string, n)
		for range n {
			var k, v string
			if k, b, err = str(b); err != nil {
				return nil, err
			}
			if v, b, err = str(b); err != nil {
				return nil, err
			}
			f.Meta[k] = v
		}
	}
	if flags&fPad != 0 {
		if f.Pad, b, err = str(b); err != nil {
			return nil, err
		}
	}
	if f.Gap {
		return b, nil
	}
	if len(b) < 4 {
		return nil, errShort
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)-4 {
		return nil, errShort
	}
	if f.Data, err = c.Decode(b[4 : 4+n : 4+n]); err != nil {
		return nil, err
	}
	return b[4+n:], nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, errShort
	}
	return v, b[k:], nil
}

func str(b []byte) (string, []byte, error) {
	n, b, err := uvarint(b)
	if err != nil || n > uint64(len(b)) {
		return "", nil, errShort
	}
	return string(b[:n]), b[n:], nil
}

type wireInCodec[T any] struct{ data proc.Codec[T] }

func (c wireInCodec[T]) Append(b []byte, m wireIn[T]) ([]byte, error) {
	if m.Step == nil {
		f := m.frame()
		return appendFrame(append(b, 0), c.data, &f)
	}
	b = binary.AppendUvarint(append(b, 1), uint64(len(m.Step)))
	var err error
	for i := range m.Step {
		if b, err = appendFrame(b, c.data, &m.Step[i]); err != nil {
			return b, err
		}
	}
	return b, nil
}

func (c wireInCodec[T]) Decode(b []byte) (m wireIn[T], err error) {
	if len(b) < 1 {
		return m, errShort
	}
	if b[0] == 0 {
		var f Frame[T]
		if _, err = decodeFrame(b[1:], c.data, &f); err != nil {
			return m, err
		}
		return inMsg(f), nil
	}
	n, b, err := uvarint(b[1:])
	if err != nil || 2*n > uint64(len(b)) { // a flag and a Seq per frame at least
		return m, errors.Join(errShort, err)
	}
	m.Step = make([]Frame[T], n)
	for i := range m.Step {
		if b, err = decodeFrame(b, c.data, &m.Step[i]); err != nil {
			return m, err
		}
	}
	return m, nil
}

type wireOutCodec[T any] struct{ data proc.Codec[T] }

func (c wireOutCodec[T]) Append(b []byte, m wireOut[T]) ([]byte, error) {
	b = append(b, byte(m.Kind))
	switch m.Kind {
	case outFrame:
		b = binary.AppendUvarint(b, uint64(m.Pad))
		f := m.frame()
		return appendFrame(b, c.data, &f)
	case outFailure, outFailed:
		b = appendString(appendString(b, m.Op), m.InPad)
		b = binary.AppendVarint(b, m.At)
		return appendString(b, m.Msg), nil
	case outStats:
		for _, v := range []int64{m.Stats.Mean, m.Stats.P90, m.Stats.P99, m.Stats.Failures} {
			b = binary.AppendVarint(b, v)
		}
		return b, nil
	}
	return b, fmt.Errorf("graph: a message of kind %d", m.Kind)
}

func (c wireOutCodec[T]) Decode(b []byte) (m wireOut[T], err error) {
	if len(b) < 1 {
		return m, errShort
	}
	m.Kind, b = int(b[0]), b[1:]
	switch m.Kind {
	case outFrame:
		var pad uint64
		if pad, b, err = uvarint(b); err != nil {
			return m, err
		}
		var f Frame[T]
		if _, err = decodeFrame(b, c.data, &f); err != nil {
			return m, err
		}
		return outMsg(int(min(pad, math.MaxInt32)), f), nil
	case outFailure, outFailed:
		if m.Op, b, err = str(b); err != nil {
			return m, err
		}
		if m.InPad, b, err = str(b); err != nil {
			return m, err
		}
		v, k := binary.Varint(b)
		if k <= 0 {
			return m, errShort
		}
		m.At = v
		m.Msg, _, err = str(b[k:])
		return m, err
	case outStats:
		for _, p := range []*int64{&m.Stats.Mean, &m.Stats.P90, &m.Stats.P99, &m.Stats.Failures} {
			v, k := binary.Varint(b)
			if k <= 0 {
				return m, errShort
			}
			*p, b = v, b[k:]
		}
		return m, nil
	}
	return m, fmt.Errorf("graph: a message of kind %d", m.Kind)
}
