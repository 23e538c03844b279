//go:build linux && !ferrynolinux

package proc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ferrypipe/ferry/proc"
)

// celsius has its own codec: text, so that the test can see it was used.
type celsius struct {
	Deg     float64
	decoded bool // set only by the codec's Decode
}

type celsiusCodec struct{}

func (celsiusCodec) Append(dst []byte, v celsius) ([]byte, error) {
	return fmt.Appendf(dst, "%g°C", v.Deg), nil
}

func (celsiusCodec) Decode(src []byte) (celsius, error) {
	d, err := strconv.ParseFloat(strings.TrimSuffix(string(src), "°C"), 64)
	return celsius{Deg: d, decoded: true}, err
}

// celsiusList carries the arguments of rtCelsius: a registered codec
// applies to its type only, so the built-in codec would carry a []celsius
// field by field, and refuses to (celsius has an unexported field).
type celsiusList struct{}

func (celsiusList) Append(dst []byte, vs []celsius) ([]byte, error) {
	for _, v := range vs {
		dst, _ = celsiusCodec{}.Append(dst, v)
		dst = append(dst, '\n')
	}
	return dst, nil
}

func (celsiusList) Decode(src []byte) ([]celsius, error) {
	var vs []celsius
	for line := range strings.Lines(string(src)) {
		v, err := celsiusCodec{}.Decode([]byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

var _ = func() int {
	proc.RegisterCodec[celsius](celsiusCodec{})
	proc.RegisterCodec[[]celsius](celsiusList{})
	return 0
}()

// roundTrip yields one value of each type, as sent by the caller.
func roundTrip[T any](name string) *proc.IterFunc[[]T, T] {
	return proc.Iter(name, func(_ context.Context, vs []T) iter.Seq2[T, error] {
		return func(yield func(T, error) bool) {
			for _, v := range vs {
				if !yield(v, nil) {
					return
				}
			}
		}
	})
}

var (
	rtFloat   = roundTrip[float64]("codec.float64")
	rtInt32   = roundTrip[int32]("codec.int32")
	rtUint16  = roundTrip[uint16]("codec.uint16")
	rtBool    = roundTrip[bool]("codec.bool")
	rtString  = roundTrip[string]("codec.string")
	rtBytes   = roundTrip[[]byte]("codec.bytes")
	rtStruct  = roundTrip[struct{ Name string }]("codec.struct")
	rtCelsius = roundTrip[celsius]("codec.custom")
)

func collectAll[T any](t *testing.T, f *proc.IterFunc[[]T, T], vs []T) []T {
	t.Helper()
	it, err := proc.Iterate(t.Context(), f, vs)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []T
	for v, err := range it.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestCodecsRoundTripEveryKindOfValue(t *testing.T) {
	noLeaks(t)
	check := func(name string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	floats := []float64{0, -1.5, math.MaxFloat64, math.Inf(-1)}
	check("float64", collectAll(t, rtFloat, floats), floats)
	ints := []int32{0, -7, math.MaxInt32, math.MinInt32}
	check("int32", collectAll(t, rtInt32, ints), ints)
	check("uint16", collectAll(t, rtUint16, []uint16{0, 65535}), []uint16{0, 65535})
	check("bool", collectAll(t, rtBool, []bool{true, false}), []bool{true, false})
	strs := []string{"", "ferry", "ünïcode"}
	check("string", collectAll(t, rtString, strs), strs)
	raw := [][]byte{{}, {0, 1, 2}, make([]byte, 100<<10)}
	got := collectAll(t, rtBytes, raw)
	if len(got) != 3 || len(got[2]) != 100<<10 || got[1][2] != 2 {
		t.Errorf("[]byte: got %d items", len(got))
	}
	recs := []struct{ Name string }{{"a"}, {"b"}}
	check("struct", collectAll(t, rtStruct, recs), recs)
	temps := collectAll(t, rtCelsius, []celsius{{Deg: 21.5}, {Deg: -3}})
	if len(temps) != 2 || temps[0].Deg != 21.5 || !temps[0].decoded || temps[1].Deg != -3 {
		t.Errorf("custom codec: got %+v, want values decoded by celsiusCodec", temps)
	}
}

// The tests below use the default codec directly: no worker process.

//lint:ignore U1000 the codec must refuse what it embeds
type cacheState struct {
	items map[string]int //lint:ignore U1000 the codec must refuse it
}

// codecState is the example of the decision: the unexported field of an
// embedded struct.
type codecState struct {
	cacheState //lint:ignore U1000 the codec must refuse it
	Count      int
}

type (
	withChan     struct{ Done chan struct{} }
	withFunc     struct{ OnDone func() }
	withUnsafe   struct{ P unsafe.Pointer }
	withAny      struct{ Meta any }
	withAnyElems struct{ Rows [][]any }
	withAnyVals  struct{ Attrs map[string]any }
	withAnyKeys  struct{ Index map[any]int }
	withError    struct{ Err error }
	nestedBad    struct {
		Inner struct{ Vals []struct{ x int } }
	}
	hiddenByEmbed struct {
		Named
		Name string
	}
	Named struct{ Name string }
)

// A type that would not arrive as it was sent fails at its first use, in
// Append and in Decode alike, with a *CodecError-ready *TypeError naming
// the field; no value is encoded.
func TestCodecRefusesUnfaithfulTypes(t *testing.T) {
	check := func(name string, appendErr, decodeErr error, typ reflect.Type, path, reason string) {
		t.Helper()
		for _, err := range []error{appendErr, decodeErr} {
			var te *proc.TypeError
			if !errors.As(err, &te) || te.Type != typ || te.Path != path || !strings.Contains(te.Reason, reason) {
				t.Errorf("%s: %v, want a *proc.TypeError for %v at %q saying %q", name, err, typ, path, reason)
				continue
			}
			if !strings.HasPrefix(err.Error(), "proc: "+typ.String()+" cannot cross a process boundary faithfully: ") {
				t.Errorf("%s: message %q", name, err)
			}
		}
		ce := &proc.CodecError{What: "input", Err: appendErr}
		if te := (*proc.TypeError)(nil); !errors.As(ce, &te) {
			t.Errorf("%s: a *CodecError does not unwrap to the *TypeError", name)
		}
	}
	refuse := func(name string, path, reason string, try func() (error, error, reflect.Type)) {
		t.Helper()
		a, d, typ := try()
		check(name, a, d, typ, path, reason)
	}
	refuse("unexported", ".cacheState.items", "is unexported (it would arrive zero)", try(codecState{Count: 1}))
	refuse("chan", ".Done", "is a channel", try(withChan{}))
	refuse("func", ".OnDone", "is a function", try(withFunc{}))
	refuse("unsafe.Pointer", ".P", "is an unsafe.Pointer", try(withUnsafe{}))
	refuse("any field", ".Meta", "is an interface (interface {})", try(withAny{}))
	refuse("error field", ".Err", "is an interface (error)", try(withError{}))
	refuse("[]any elements", ".Rows[][]", "is an interface", try(withAnyElems{}))
	refuse("map[string]any values", ".Attrs[]", "is an interface", try(withAnyVals{}))
	refuse("map[any]int keys", ".Index[key]", "is an interface", try(withAnyKeys{}))
	refuse("nested", ".Inner.Vals[].x", "is unexported", try(nestedBad{}))
	refuse("pointer", ".cacheState.items", "is unexported", try(&codecState{}))
	refuse("hidden", ".Named.Name", "is hidden by field .Name", try(hiddenByEmbed{}))
	refuse("top-level any", "", "is an interface", try[any](1))
	refuse("top-level chan", "", "is a channel", try(make(chan int)))

	_, e := proc.DefaultCodec[codecState]().Append(nil, codecState{})
	want := `proc: proc_test.codecState cannot cross a process boundary faithfully: field .cacheState.items is unexported (it would arrive zero); export it, tag it "-", or register a codec with proc.RegisterCodec`
	if e == nil || e.Error() != want {
		t.Errorf("message:\n got %v\nwant %s", e, want)
	}
}

// try returns the errors of the default codec of T for v, and T.
func try[T any](v T) func() (error, error, reflect.Type) { //lint:ignore ST1008 two errors and the type they are about
	return func() (error, error, reflect.Type) {
		c := proc.DefaultCodec[T]()
		b, aerr := c.Append([]byte("kept"), v)
		if aerr != nil && string(b) != "kept" {
			aerr = fmt.Errorf("Append touched dst (%q) and failed: %w", b, aerr)
		}
		_, derr := c.Decode([]byte{0xa0})
		return aerr, derr, reflect.TypeFor[T]()
	}
}

type (
	listNode struct {
		Val  int
		Next *listNode
	}
	skipsByTag struct {
		Name  string
		Cache map[string]any `cbor:"-"`
		Hook  func()         `json:"-"`
	}
	Stamp  struct{ At time.Time }
	nested struct {
		Stamp
		Series map[int][]float64
		Ptr    *Stamp
		Big    *big.Int
		Kids   []nested
	}
)

func roundTripDefault[T any](t *testing.T, v T) T {
	t.Helper()
	c := proc.DefaultCodec[T]()
	b, err := c.Append(nil, v)
	if err != nil {
		t.Fatalf("%T: %v", v, err)
	}
	out, err := c.Decode(b)
	if err != nil {
		t.Fatalf("decoding %T: %v", v, err)
	}
	return out
}

// Accepted types, and the round trips that docs/decisions/0007 claims.
func TestCodecDefaultRoundTrips(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.FixedZone("", -7*3600))
	n := roundTripDefault(t, nested{
		Stamp:  Stamp{at},
		Series: map[int][]float64{-1: {math.NaN(), math.Inf(1)}, 2: nil, 3: {}},
		Ptr:    &Stamp{},
		Big:    new(big.Int).Lsh(big.NewInt(1), 100),
		Kids:   []nested{{Series: map[int][]float64{}}},
	})
	if !n.At.Equal(at) || !math.IsNaN(n.Series[-1][0]) || !math.IsInf(n.Series[-1][1], 1) || n.Series[2] != nil || n.Series[3] == nil ||
		n.Ptr == nil || !n.Ptr.At.IsZero() || n.Big.BitLen() != 101 || len(n.Kids) != 1 || n.Kids[0].Series == nil || n.Kids[0].Kids != nil {
		t.Errorf("nested: %+v", n)
	}

	type ints struct {
		U    uint64
		I    int64
		Tiny int8
	}
	if got := roundTripDefault(t, ints{math.MaxUint64, math.MinInt64, -128}); got != (ints{math.MaxUint64, math.MinInt64, -128}) {
		t.Errorf("ints: %+v", got)
	}

	type blobs struct {
		Nil, Empty, Data []byte
		NilS, EmptyS     []string
	}
	b := roundTripDefault(t, blobs{Empty: []byte{}, Data: []byte{0, 0xff}, EmptyS: []string{}})
	if b.Nil != nil || b.Empty == nil || !bytes.Equal(b.Data, []byte{0, 0xff}) || b.NilS != nil || b.EmptyS == nil {
		t.Errorf("nil and empty: %#v", b)
	}

	maps := map[string]map[[2]int]string{"a": {{1, 2}: "x"}, "b": nil}
	if got := roundTripDefault(t, maps); !reflect.DeepEqual(got, maps) {
		t.Errorf("nested maps: %v", got)
	}

	l := &listNode{1, &listNode{2, nil}}
	if got := roundTripDefault(t, l); got.Val != 1 || got.Next.Val != 2 || got.Next.Next != nil {
		t.Errorf("recursive type: %+v", got)
	}

	s := roundTripDefault(t, skipsByTag{Name: "x", Cache: map[string]any{"k": 1}, Hook: func() {}})
	if s.Name != "x" || s.Cache != nil || s.Hook != nil {
		t.Errorf("tagged fields: %+v", s)
	}

	if got := roundTripDefault(t, time.Unix(0, 1)); !got.Equal(time.Unix(0, 1)) {
		t.Errorf("time.Time: %v", got)
	}
}

// opaque has nothing exported: only its registered codec can carry it.
type opaque struct{ secret string }

type opaqueCodec struct{}

func (opaqueCodec) Append(dst []byte, v opaque) ([]byte, error) { return append(dst, v.secret...), nil }
func (opaqueCodec) Decode(src []byte) (opaque, error)           { return opaque{string(src)}, nil }

var _ = func() int { proc.RegisterCodec[opaque](opaqueCodec{}); return 0 }()

// A registered codec is not checked: its author answers for it.
func TestCodecRegisteredBypassesTheCheck(t *testing.T) {
	if got := roundTripDefault(t, opaque{"s"}); got.secret != "s" {
		t.Errorf("got %+v", got)
	}
	if got := roundTripDefault(t, celsius{Deg: 3}); !got.decoded || got.Deg != 3 {
		t.Errorf("celsius: %+v", got)
	}
}
