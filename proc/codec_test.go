package proc_test

import (
	"context"
	"fmt"
	"iter"
	"math"
	"strconv"
	"strings"
	"testing"

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

var _ = func() int { proc.RegisterCodec[celsius](celsiusCodec{}); return 0 }()

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
	rtStruct  = roundTrip[struct{ Name string }]("codec.gob")
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
	check("gob", collectAll(t, rtStruct, recs), recs)
	temps := collectAll(t, rtCelsius, []celsius{{Deg: 21.5}, {Deg: -3}})
	if len(temps) != 2 || temps[0].Deg != 21.5 || !temps[0].decoded || temps[1].Deg != -3 {
		t.Errorf("custom codec: got %+v, want values decoded by celsiusCodec", temps)
	}
}
