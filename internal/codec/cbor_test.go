package codec

import (
	"encoding/json"
	"math"
	"math/big"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func cborTrip[T any](t *testing.T, v T) T {
	t.Helper()
	if err := CBOR.Check(reflect.TypeFor[T]()); err != nil {
		t.Fatalf("%T: %v", v, err)
	}
	b, err := AppendCBOR([]byte("prefix"), v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	if string(b[:6]) != "prefix" {
		t.Fatalf("AppendCBOR did not append")
	}
	var out T
	if err := UnmarshalCBOR(b[6:], &out); err != nil {
		t.Fatalf("decoding %T: %v", v, err)
	}
	return out
}

func sameTrip[T any](t *testing.T, v T) {
	t.Helper()
	if got := cborTrip(t, v); !reflect.DeepEqual(got, v) {
		t.Errorf("%T: sent %#v, got %#v", v, v, got)
	}
}

type floats struct {
	F64 []float64
	F32 []float32
}

// The claims of docs/decisions/0007-default-codec.md about CBOR.
func TestCBORRoundTrips(t *testing.T) {
	// NaN (with its payload), infinities, negative zero.
	nan := math.Float64frombits(0x7ff8_0000_dead_beef)
	f := cborTrip(t, floats{F64: []float64{nan, math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.SmallestNonzeroFloat64, math.MaxFloat64},
		F32: []float32{float32(math.NaN()), float32(math.Inf(-1)), math.MaxFloat32, 0.1}})
	if math.Float64bits(f.F64[0]) != math.Float64bits(nan) || !math.IsInf(f.F64[1], 1) || !math.IsInf(f.F64[2], -1) ||
		!math.Signbit(f.F64[3]) || f.F64[4] != math.SmallestNonzeroFloat64 || f.F64[5] != math.MaxFloat64 {
		t.Errorf("float64s: %v", f.F64)
	}
	if !math.IsNaN(float64(f.F32[0])) || !math.IsInf(float64(f.F32[1]), -1) || f.F32[2] != math.MaxFloat32 || f.F32[3] != 0.1 {
		t.Errorf("float32s: %v", f.F32)
	}

	// The full range of 64-bit integers.
	sameTrip(t, struct {
		U    uint64
		I, J int64
		U8   uint8
		N    int
	}{math.MaxUint64, math.MinInt64, math.MaxInt64, 255, -1})

	// nil and empty slices and maps stay apart; []byte is bytes.
	type containers struct {
		NilS, EmptyS []int
		NilB, EmptyB []byte
		NilM, EmptyM map[string]int
		Bytes        []byte
		Arr          [4]byte
		Ptr, NilPtr  *int
	}
	one := 1
	c := cborTrip(t, containers{EmptyS: []int{}, EmptyB: []byte{}, EmptyM: map[string]int{}, Bytes: []byte{0, 1, 0xff}, Arr: [4]byte{1, 2, 3, 4}, Ptr: &one})
	if c.NilS != nil || c.EmptyS == nil || len(c.EmptyS) != 0 || c.NilB != nil || c.EmptyB == nil || c.NilM != nil || c.EmptyM == nil ||
		string(c.Bytes) != "\x00\x01\xff" || c.Arr != [4]byte{1, 2, 3, 4} || c.Ptr == nil || *c.Ptr != 1 || c.NilPtr != nil {
		t.Errorf("containers: %#v", c)
	}
	top := cborTrip(t, []int(nil))
	if top != nil {
		t.Errorf("a nil slice arrives as %#v", top)
	}
	if top := cborTrip(t, []int{}); top == nil {
		t.Errorf("an empty slice arrives nil")
	}

	// Nested maps, non-string keys, struct keys.
	sameTrip(t, map[string]map[int][]string{"a": {1: {"x"}, -2: nil}, "b": {}})
	sameTrip(t, map[structKey]float64{{1, 2}: 3})
	sameTrip(t, map[float64]bool{1.5: true, -0.25: false})
	sameTrip(t, map[[2]int8]string{{1, -1}: "a"})

	// Strings: any bytes.
	sameTrip(t, []string{"", "ünïcode", "\xff\xfe not UTF-8"})

	// Recursion deeper than the library's default limit (32), and more
	// elements than its default limit (131072).
	var l *list
	for i := range 1000 {
		l = &list{Val: i, Next: l}
	}
	sameTrip(t, l)
	sameTrip(t, make([]float32, 200_000))
	sameTrip(t, tree{Kids: []tree{{Index: map[int]*tree{1: {}}}}})

	// Embedded structs, tags.
	sameTrip(t, embeds{Embedded: Embedded{1, 2}, Linked: &Linked{3}, C: "c"})
	s := cborTrip(t, skipped{Name: "n", Cache: map[string]any{"x": 1}, Done: make(chan int)})
	if s.Name != "n" || s.Cache != nil || s.Done != nil {
		t.Errorf("skipped: %#v", s)
	}

	// Trusted types.
	at := time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("X", 5*3600+30*60))
	lmt := time.Date(1890, 1, 1, 12, 0, 0, 7, time.FixedZone("LMT", 9*60+21))
	ts := cborTrip(t, []time.Time{at, lmt, {}})
	if !ts[0].Equal(at) || !ts[1].Equal(lmt) || !ts[2].IsZero() || ts[0].Location() != time.UTC {
		t.Errorf("times: %v, want %v, %v, zero, in UTC", ts, at, lmt)
	}
	b := new(big.Int).Lsh(big.NewInt(-3), 200)
	if got := cborTrip(t, b); got.Cmp(b) != 0 {
		t.Errorf("big.Int: %v", got)
	}
	u, _ := url.Parse("https://user:pw@example.com/p?q=1#f")
	if got := cborTrip(t, u); got.String() != u.String() {
		t.Errorf("url.URL: %v", got)
	}
	addr := netip.MustParseAddr("fe80::1%eth0")
	if got := cborTrip(t, addr); got != addr {
		t.Errorf("netip.Addr: %v", got)
	}
	if got := cborTrip(t, ownText{"s"}); got.secret != "s" {
		t.Errorf("TextMarshaler: %#v", got)
	}

	// Aliasing is not kept: two pointers to one value arrive as two.
	type two struct{ A, B *int }
	shared := 7
	if got := cborTrip(t, two{&shared, &shared}); *got.A != 7 || *got.B != 7 || got.A == got.B {
		t.Errorf("aliasing: %v %v", got.A, got.B)
	}
}

// Times outside the years 0–9999 are an error, not a silent change.
func TestCBORTimeRange(t *testing.T) {
	if _, err := AppendCBOR(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("the year 10000 encoded without error")
	}
}

// Decoding refuses what is left after the value.
func TestCBORTrailingBytes(t *testing.T) {
	b, _ := AppendCBOR(nil, 1)
	var v int
	if err := UnmarshalCBOR(append(b, 0), &v); err == nil {
		t.Error("no error for a trailing byte")
	}
}

// What encoding/json does with the same values, as the decision records
// it: batch keeps JSON.
func TestJSONClaims(t *testing.T) {
	if _, err := json.Marshal(math.NaN()); err == nil {
		t.Error("JSON encoded NaN")
	}
	if _, err := json.Marshal(math.Inf(1)); err == nil {
		t.Error("JSON encoded +Inf")
	}
	type numbers struct {
		U   uint64
		I   int64
		F32 float32
	}
	var n numbers
	b, _ := json.Marshal(numbers{math.MaxUint64, math.MinInt64, 0.1})
	if err := json.Unmarshal(b, &n); err != nil || n != (numbers{math.MaxUint64, math.MinInt64, 0.1}) {
		t.Errorf("numbers: %+v %v", n, err)
	}
	type containers struct {
		NilS, EmptyS []int
		NilB, EmptyB []byte
		NilM, EmptyM map[string][]int
	}
	b, _ = json.Marshal(containers{EmptyS: []int{}, EmptyB: []byte{}, EmptyM: map[string][]int{"a": {1}, "b": nil}})
	var c containers
	if err := json.Unmarshal(b, &c); err != nil || c.NilS != nil || c.EmptyS == nil || c.NilB != nil || c.EmptyB == nil ||
		c.NilM != nil || len(c.EmptyM) != 2 || c.EmptyM["a"][0] != 1 || c.EmptyM["b"] != nil {
		t.Errorf("nil and empty: %s → %#v %v", b, c, err)
	}
	lmt := time.Date(1890, 1, 1, 12, 0, 0, 0, time.FixedZone("LMT", 9*60+21))
	b, _ = json.Marshal(lmt)
	var at time.Time
	if err := json.Unmarshal(b, &at); err != nil || at.Equal(lmt) || at.Sub(lmt) != 21*time.Second {
		t.Errorf("a time with an offset of 9m21s: %v, sent %v", at, lmt)
	}
	type loop struct{ Next *loop }
	l := &loop{}
	l.Next = l
	if _, err := json.Marshal(l); err == nil {
		t.Error("a cycle encoded without error")
	}
	b, _ = json.Marshal("\xff")
	var s string
	if json.Unmarshal(b, &s); s != "\ufffd" {
		t.Errorf("invalid UTF-8 arrives as %q", s)
	}
	b, _ = json.Marshal(map[int]string{-1: "a"})
	var m map[int]string
	if err := json.Unmarshal(b, &m); err != nil || m[-1] != "a" || !strings.Contains(string(b), `"-1"`) {
		t.Errorf("int keys: %s %v", b, err)
	}
}
