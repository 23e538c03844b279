package codec

import (
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

//lint:ignore U1000 the check must refuse what it embeds
type cache struct {
	items map[string]int //lint:ignore U1000 the check must refuse it
}

// State is the brief's example: an unexported field of an embedded struct.
type State struct {
	cache //lint:ignore U1000 the check must refuse it
	Count int
}

type withChan struct {
	Name string
	Done chan struct{}
}

type withFunc struct{ Fn func() int }

type withPtr struct{ P unsafe.Pointer }

type withAny struct{ V any }

type withErr struct{ Err error }

type withAnySlice struct{ Items []any }

type withAnyMap struct{ M map[string]any }

type withAnyKey struct{ M map[any]int }

type withPtrKey struct{ M map[*int]string }

type withComplex struct{ C complex128 }

type deep struct {
	Outer struct {
		Inner []map[string]struct{ x int }
	}
}

type inner struct{ X int }

type ambiguousA struct{ Name string }
type ambiguousB struct{ Name string }

type ambiguous struct {
	ambiguousA
	ambiguousB
}

type shadowed struct {
	inner
	X int
}

type unexportedPtr struct {
	*inner
	Y int
}

type promotedTime struct {
	time.Time
	Name string
}

type justTime struct{ time.Time }

type binaryOnly struct{ x int }

func (b binaryOnly) MarshalBinary() ([]byte, error) { return []byte{byte(b.x)}, nil }

type jsonPtrMarshaler struct{ n int }

func (j *jsonPtrMarshaler) MarshalJSON() ([]byte, error) { return json.Marshal(j.n) }
func (j *jsonPtrMarshaler) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &j.n) }

type structKey struct{ A, B int }

// Refused types: each reason, with the path it names.
func TestCheckRefuses(t *testing.T) {
	for _, c := range []struct {
		rules  *Rules
		v      any // a value of the type, or a nil pointer to it for an interface type
		path   string
		reason string // in the Reason
	}{
		{CBOR, State{}, ".cache.items", "is unexported (it would arrive zero)"},
		{JSON, State{}, ".cache.items", "is unexported"},
		{CBOR, withChan{}, ".Done", "is a channel (chan struct {})"},
		{CBOR, make(chan int), "", "is a channel"},
		{CBOR, withFunc{}, ".Fn", "is a function"},
		{CBOR, withPtr{}, ".P", "unsafe.Pointer"},
		{CBOR, withAny{}, ".V", "is an interface (interface {})"},
		{CBOR, withErr{}, ".Err", "is an interface (error)"},
		{CBOR, (*any)(nil), "", "is an interface"},
		{CBOR, withAnySlice{}, ".Items[]", "is an interface"},
		{CBOR, withAnyMap{}, ".M[]", "is an interface"},
		{CBOR, withAnyKey{}, ".M[key]", "is an interface"},
		{CBOR, withPtrKey{}, ".M[key]", "is a pointer"},
		{JSON, withPtrKey{}, ".M[key]", "cannot be a JSON object key"},
		{JSON, map[structKey]int{}, "[key]", "cannot be a JSON object key"},
		{JSON, map[float64]int{}, "[key]", "cannot be a JSON object key"},
		{CBOR, withComplex{}, ".C", "is a complex number"},
		{CBOR, deep{}, ".Outer.Inner[][].x", "is unexported"},
		{CBOR, [][2]*withChan{}, "[][].Done", "is a channel"},
		{CBOR, ambiguous{}, ".ambiguousA.Name", `has the same name "Name" as field .ambiguousB.Name`},
		{CBOR, shadowed{}, ".inner.X", `is hidden by field .X`},
		{CBOR, tagWins{}, ".AmbB.Name", `is hidden by field .AmbA.Name`},
		{JSON, shadowed{}, ".inner.X", `is hidden by field .X`},
		{CBOR, unexportedPtr{}, ".inner", "is an embedded pointer to an unexported struct type"},
		{CBOR, promotedTime{}, "", "gets MarshalBinary from its embedded field Time"},
		{JSON, promotedTime{}, "", "gets MarshalJSON from its embedded field Time"},
		{CBOR, binaryOnly{}, "", "has MarshalBinary but no UnmarshalBinary"},
		{JSON, map[string]jsonPtrMarshaler{}, "[]", "has MarshalJSON on its pointer only"},
		{JSON, map[string]big.Int{}, "[]", "has MarshalJSON on its pointer only"},
		{JSON, url.URL{}, ".User.username", "is unexported"},
		{JSON, skipped{}, ".Done", "is a channel"}, // JSON does not read cbor tags
		{CBOR, struct{ Mu sync.Mutex }{}, ".Mu.", "is unexported"},
		{JSON, withComplex{}, ".C", "is a complex number"},
	} {
		typ := reflect.TypeOf(c.v)
		if typ.Kind() == reflect.Pointer && reflect.ValueOf(c.v).IsNil() {
			typ = typ.Elem()
		}
		err := c.rules.Check(typ)
		var te *TypeError
		if !errors.As(err, &te) {
			t.Errorf("%v: %v, want a *TypeError", typ, err)
			continue
		}
		pathOK := te.Path == c.path
		if strings.HasSuffix(c.path, ".") { // the field's name is the library's
			pathOK = strings.HasPrefix(te.Path, c.path)
		}
		if te.Type != typ || !pathOK || !strings.Contains(te.Reason, c.reason) {
			t.Errorf("%v: type %v, path %q, reason %q; want path %q and a reason with %q", typ, te.Type, te.Path, te.Reason, c.path, c.reason)
		}
		if !strings.Contains(err.Error(), typ.String()) || !strings.Contains(err.Error(), te.Path) {
			t.Errorf("%v: the message does not name the type and the path: %v", typ, err)
		}
		if again := c.rules.Check(typ); again != err {
			t.Errorf("%v: the second answer is not the cached one", typ)
		}
	}
}

// The message of the brief's example, whole.
func TestCheckMessage(t *testing.T) {
	err := CBOR.Check(reflect.TypeFor[State]())
	want := `codec.State cannot cross a process boundary faithfully: field .cache.items is unexported (it would arrive zero); export it, tag it "-", or register a codec with proc.RegisterCodec`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	err = JSON.Check(reflect.TypeFor[withAnyMap]())
	want = `codec.withAnyMap cannot cross a process boundary faithfully: element .M[] is an interface (interface {}): the type of its value is not sent, so it would not arrive as that type; change the type of field .M, tag that field json:"-", or give codec.withAnyMap MarshalJSON and UnmarshalJSON methods`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	err = CBOR.Check(reflect.TypeFor[any]())
	want = `interface {} cannot cross a process boundary faithfully: it is an interface (interface {}): the type of its value is not sent, so it would not arrive as that type; register a codec with proc.RegisterCodec`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

type list struct {
	Val  int
	Next *list
}

type tree struct {
	Kids  []tree
	Index map[int]*tree
}

type badList struct {
	Next *badList
	Fn   func()
}

type skipped struct {
	Name  string
	Cache map[string]any `json:"-"`
	Done  chan int       `cbor:"-"`
	_     struct{}       `cbor:",toarray"`
	noCmp [0]func()      //lint:ignore U1000 holds nothing: makes skipped incomparable
}

type Embedded struct{ A, B int }

type Linked struct{ D int }

type embeds struct {
	Embedded
	*Linked
	C string
}

type AmbA struct {
	Name string `json:"Name"`
}

type AmbB struct{ Name string }

// tagWins sends AmbA.Name, the tagged one of two at one depth.
type tagWins struct {
	AmbA
	AmbB
}

// renamed sends AmbB as a field of its own.
type renamed struct {
	AmbA
	AmbB `json:"b"`
}

type ownBinary struct {
	time.Time
	Name string
}

func (o ownBinary) MarshalBinary() ([]byte, error) { return nil, nil }
func (o *ownBinary) UnmarshalBinary([]byte) error  { return nil }

type ownText struct{ secret string }

func (o ownText) MarshalText() ([]byte, error)  { return []byte(o.secret), nil }
func (o *ownText) UnmarshalText(b []byte) error { o.secret = string(b); return nil }

type Named int

// Accepted types.
func TestCheckAccepts(t *testing.T) {
	types := []struct {
		rules *Rules
		t     reflect.Type
	}{
		{CBOR, reflect.TypeFor[time.Time]()},
		{JSON, reflect.TypeFor[time.Time]()},
		{CBOR, reflect.TypeFor[struct {
			At   time.Time
			Tags []string
		}]()},
		{CBOR, reflect.TypeFor[map[int]string]()},
		{JSON, reflect.TypeFor[map[int]string]()},
		{JSON, reflect.TypeFor[map[Named][]float64]()},
		{CBOR, reflect.TypeFor[map[structKey]int]()},
		{CBOR, reflect.TypeFor[*list]()},
		{CBOR, reflect.TypeFor[list]()},
		{JSON, reflect.TypeFor[tree]()},
		{CBOR, reflect.TypeFor[tree]()},
		{CBOR, reflect.TypeFor[skipped]()},
		{CBOR, reflect.TypeFor[url.URL]()}, // MarshalBinary
		{CBOR, reflect.TypeFor[embeds]()},
		{CBOR, reflect.TypeFor[justTime]()},
		{CBOR, reflect.TypeFor[ownBinary]()},
		{CBOR, reflect.TypeFor[ownText]()},
		{JSON, reflect.TypeFor[map[string]ownText]()},
		{JSON, reflect.TypeFor[map[ownText]int]()},
		{CBOR, reflect.TypeFor[big.Int]()},
		{JSON, reflect.TypeFor[*big.Int]()},
		{JSON, reflect.TypeFor[[]big.Int]()},
		{CBOR, reflect.TypeFor[netip.Addr]()},
		{CBOR, reflect.TypeFor[renamed]()},
		{JSON, reflect.TypeFor[renamed]()},
		{CBOR, reflect.TypeFor[[4]byte]()},
		{CBOR, reflect.TypeFor[struct{ B, C []byte }]()},
		{JSON, reflect.TypeFor[jsonPtrMarshaler]()},
		{JSON, reflect.TypeFor[[]jsonPtrMarshaler]()},
		{JSON, reflect.TypeFor[map[string]*jsonPtrMarshaler]()},
		{CBOR, reflect.TypeFor[struct{}]()},
		{JSON, reflect.TypeFor[json.RawMessage]()},
	}
	for _, c := range types {
		if err := c.rules.Check(c.t); err != nil {
			t.Errorf("%v: %v", c.t, err)
		}
	}
}

// A recursive type with a problem below its recursion is refused, once.
func TestCheckRecursive(t *testing.T) {
	err := CBOR.Check(reflect.TypeFor[badList]())
	var te *TypeError
	if !errors.As(err, &te) || te.Path != ".Fn" {
		t.Errorf("badList: %v", err)
	}
	err = CBOR.Check(reflect.TypeFor[[]badList]())
	if !errors.As(err, &te) || te.Path != "[].Fn" {
		t.Errorf("[]badList: %v", err)
	}
}
