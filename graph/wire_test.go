package graph

import (
	"reflect"
	"testing"

	"github.com/ferrypipe/ferry/proc"
)

// wireSeeds are valid messages of every kind.
func wireSeeds() [][]byte {
	in := wireInCodec[int]{data: proc.CodecOf[int]()}
	out := wireOutCodec[int]{data: proc.CodecOf[int]()}
	var seeds [][]byte
	add := func(b []byte, err error) {
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	add(in.Append(nil, wireIn[int]{Data: 7, Seq: 3, Time: -5, Rate: 2, Meta: map[string]string{"a": "b"}, Pad: "in", EOS: true}))
	add(in.Append(nil, wireIn[int]{Step: []Frame[int]{{Data: 1, Pad: "a"}, {Gap: true, Pad: "b", Seq: 9}}}))
	add(out.Append(nil, wireOut[int]{Kind: outFrame, Pad: 2, Data: 9, Meta: map[string]string{"x": "y"}}))
	add(out.Append(nil, wireOut[int]{Kind: outFailed, Op: "process", InPad: "in", At: 4, Msg: "m"}))
	add(out.Append(nil, wireOut[int]{Kind: outStats, Stats: durationStats{Mean: 1, P90: 2, P99: 3, Failures: 4}}))
	return seeds
}

// TestWireRoundTrips: what the codecs encode, they decode as it was.
func TestWireRoundTrips(t *testing.T) {
	in := wireInCodec[[]float32]{data: proc.CodecOf[[]float32]()}
	for _, m := range []wireIn[[]float32]{
		{Data: []float32{1, 2}, Seq: 1 << 40, Time: -7, Rate: 4096, Meta: map[string]string{"k": "v", "": ""}, Pad: "H1", EOS: true},
		{Gap: true, Seq: 2, Pad: "L1"},
		{Step: []Frame[[]float32]{{Data: []float32{3}, Pad: "a", Time: 10}, {Gap: true, Pad: "b", EOS: true}}},
	} {
		b, err := in.Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := in.Decode(b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	}
	out := wireOutCodec[string]{data: proc.CodecOf[string]()}
	for _, m := range []wireOut[string]{
		{Kind: outFrame, Pad: 3, Data: "x", Seq: 5, Time: 1, Rate: 2, Meta: map[string]string{"a": "b"}, EOS: true},
		{Kind: outFailure, Op: "process", InPad: "in", At: -1, Msg: "boom"},
		{Kind: outStats, Stats: durationStats{Mean: 10, P90: 20, P99: 30, Failures: 1}},
	} {
		b, err := out.Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := out.Decode(b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	}
}

// FuzzWireDecode: a malformed message is an error, never a panic or a
// huge allocation.
func FuzzWireDecode(f *testing.F) {
	for _, s := range wireSeeds() {
		f.Add(s)
	}
	inI := wireInCodec[int]{data: proc.CodecOf[int]()}
	inB := wireInCodec[[]float32]{data: proc.CodecOf[[]float32]()}
	outI := wireOutCodec[int]{data: proc.CodecOf[int]()}
	outS := wireOutCodec[string]{data: proc.CodecOf[string]()}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = inI.Decode(b)
		_, _ = inB.Decode(b)
		_, _ = outI.Decode(b)
		_, _ = outS.Decode(b)
	})
}
