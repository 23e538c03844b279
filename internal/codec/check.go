// Package codec says whether the values of a type cross a process boundary
// faithfully through an encoding, and holds proc's CBOR modes.
//
// Encoders built on reflection (CBOR, encoding/json, gob) skip what they
// cannot see or express, and the value arrives with it zero: unexported
// fields, fields hidden by embedding, and, for some, channels and
// functions. An interface arrives as whatever the decoder makes of the
// bytes (a map, a float64), not as the type that was sent. Rules.Check
// finds such parts in a type before any value of it is sent, and names
// them, so that a program fails at its first use of the type instead of
// computing with zeros.
//
// What Check accepts, for Rules r:
//
//   - booleans, numbers (not complex ones), strings;
//   - pointers, slices, arrays and maps of accepted types (map keys too;
//     JSON keys must be strings, integers or encoding.TextMarshaler, and
//     no key may be a pointer);
//   - structs whose fields are all exported and accepted, including the
//     fields promoted from embedded structs (exported or not, as the
//     encoders see them). A field tagged "-" (json:"-", or cbor:"-" for
//     CBOR, which reads the json tag of a field without a cbor tag) is
//     not sent: that is the user's choice, and Check accepts it whatever
//     its type, as it accepts blank (_) fields and unexported fields of
//     size zero, which hold nothing;
//   - a type that implements a pair of marshalling interfaces that r's
//     encoding honours (see CBOR and JSON): it is trusted to encode all
//     it holds, and Check does not look inside it.
//
// Recursive types are fine. Check caches its answer per type.
//
// What Check cannot see: the aliasing of pointers (two pointers to one
// value arrive as two values), cyclic values (which the encoders cannot
// encode at all), and the values themselves (for example NaN, which JSON
// cannot carry, or invalid UTF-8, which JSON replaces).
package codec

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// TypeError is a type whose values would not arrive as they were sent:
// Path names the part of Type that would not, and Reason says why.
type TypeError struct {
	// Type is the type that was checked.
	Type reflect.Type
	// Path is where in Type the problem is: "" for Type itself; a field
	// as a Go selector, ".cache.items" (an embedded field by its type's
	// name); "[]" appended for an element of a slice, an array or a map,
	// "[key]" for a map's key. Pointers are followed silently.
	Path string
	// Reason says what is wrong there, e.g. "is unexported (it would
	// arrive zero)".
	Reason string

	fix string // what to do about it
}

// Error names the type, the part and the reason, and says what to do.
func (e *TypeError) Error() string {
	var where string
	switch {
	case e.Path == "":
		where = "it"
	case strings.HasSuffix(e.Path, "[key]"):
		where = "map key " + e.Path
	case strings.HasSuffix(e.Path, "[]"):
		where = "element " + e.Path
	default:
		where = "field " + e.Path
	}
	s := fmt.Sprintf("%v cannot cross a process boundary faithfully: %s %s", e.Type, where, e.Reason)
	if e.fix != "" {
		s += "; " + e.fix
	}
	return s
}

// Rules are what an encoding carries, for Check.
type Rules struct {
	tag      func(reflect.StructField) string // the field's tag for this encoding
	native   map[reflect.Type]bool            // types the encoding handles itself
	pairs    []pair                           // marshalling interfaces it honours, first first
	addrOnly bool                             // methods with a pointer receiver are only called on addressable values
	complex  bool                             // it carries complex numbers
	key      func(t reflect.Type) (trusted bool, reason string)
	skip     string   // how to tag a field so that it is not sent
	register string   // the last remedy, if any
	methods  string   // else this one, for a struct type (%v)
	cache    sync.Map // reflect.Type → *TypeError (nil: faithful)
}

// pair is a marshalling interface and its inverse.
type pair struct {
	m, u         reflect.Type
	mName, uName string
}

// CBOR is what proc's default codec carries (github.com/fxamacker/cbor/v2
// with the modes of AppendCBOR and UnmarshalCBOR). It trusts time.Time and
// big.Int, which it encodes itself, and a type with (in this order of
// priority) MarshalCBOR and UnmarshalCBOR, MarshalBinary and
// UnmarshalBinary, or MarshalText and UnmarshalText. It does not honour
// json.Marshaler. Fields are named by their cbor tag, else their json tag.
var CBOR = &Rules{
	tag: func(f reflect.StructField) string {
		if t := f.Tag.Get("cbor"); t != "" {
			return t
		}
		return f.Tag.Get("json")
	},
	native: map[reflect.Type]bool{reflect.TypeFor[time.Time](): true, reflect.TypeFor[big.Int](): true},
	pairs: []pair{
		{reflect.TypeFor[cbor.Marshaler](), reflect.TypeFor[cbor.Unmarshaler](), "MarshalCBOR", "UnmarshalCBOR"},
		{reflect.TypeFor[encoding.BinaryMarshaler](), reflect.TypeFor[encoding.BinaryUnmarshaler](), "MarshalBinary", "UnmarshalBinary"},
		{reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](), "MarshalText", "UnmarshalText"},
	},
	key: func(t reflect.Type) (bool, string) {
		if t.Kind() == reflect.Pointer {
			return false, fmt.Sprintf("is a pointer (%v): the map would arrive keyed by new pointers", t)
		}
		return false, ""
	},
	skip:     `"-"`,
	register: "register a codec with proc.RegisterCodec",
}

// JSON is what encoding/json carries, for values encoded through a pointer
// to them (json.Marshal(&v)). It trusts a type with MarshalJSON and
// UnmarshalJSON or, failing those, MarshalText and UnmarshalText; below a
// map, where encoding/json cannot address a value, only if the Marshal
// method has a value receiver.
var JSON = &Rules{
	tag: func(f reflect.StructField) string { return f.Tag.Get("json") },
	pairs: []pair{
		{reflect.TypeFor[json.Marshaler](), reflect.TypeFor[json.Unmarshaler](), "MarshalJSON", "UnmarshalJSON"},
		{reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](), "MarshalText", "UnmarshalText"},
	},
	addrOnly: true,
	key: func(t reflect.Type) (bool, string) {
		m := t.Implements(reflect.TypeFor[encoding.TextMarshaler]())
		u := reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
		switch t.Kind() {
		case reflect.String:
			return true, ""
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if m == u {
				return true, ""
			}
		default:
			if m && u {
				return true, ""
			}
		}
		switch {
		case u && !m && reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextMarshaler]()):
			return false, fmt.Sprintf("is of type %v, whose MarshalText has a pointer receiver, which encoding/json does not call on a map key", t)
		case m != u:
			return false, fmt.Sprintf("is of type %v, which has only one of MarshalText and UnmarshalText", t)
		}
		return false, fmt.Sprintf("is of type %v, which cannot be a JSON object key (it must be a string, an integer or an encoding.TextMarshaler)", t)
	},
	skip:    `json:"-"`,
	methods: "give %v MarshalJSON and UnmarshalJSON methods",
}

// Check returns a *TypeError if a value of type t cannot be carried
// faithfully by r's encoding, nil if it can. See the package comment.
func (r *Rules) Check(t reflect.Type) error {
	if v, ok := r.cache.Load(t); ok {
		if te := v.(*TypeError); te != nil {
			return te
		}
		return nil
	}
	w := walker{r: r, top: t, seen: map[seenKey]bool{}}
	v, _ := r.cache.LoadOrStore(t, w.walk(t, true, "", nil))
	if te := v.(*TypeError); te != nil {
		return te
	}
	return nil
}

// problem is a kind of TypeError, for its remedy.
type problem int

const (
	badType     problem = iota // a channel, a function, an interface…
	badKey                     // a map key type the encoding cannot carry
	unexported                 // an unexported field
	embeddedPtr                // an embedded pointer to an unexported struct type
	hidden                     // a field hidden by another of the same name
	ptrOnly                    // JSON: a marshalling method on the pointer, under a map
)

type seenKey struct {
	t    reflect.Type
	addr bool
}

type walker struct {
	r    *Rules
	top  reflect.Type
	seen map[seenKey]bool // walked or being walked: a recursive type is walked once
}

func (w *walker) fail(p problem, path string, owner reflect.Type, reason string) *TypeError {
	fix := w.r.register
	if fix == "" && owner != nil && owner.Kind() == reflect.Struct {
		fix = fmt.Sprintf(w.r.methods, owner)
	}
	return w.failFix(path, reason, w.remedy(p, path), fix)
}

// failFix makes the TypeError, with first and then last as its remedies.
func (w *walker) failFix(path, reason, first, last string) *TypeError {
	fix := last
	switch {
	case first == "":
	case fix == "":
		fix = first
	default:
		fix = first + ", or " + fix
	}
	return &TypeError{Type: w.top, Path: path, Reason: reason, fix: fix}
}

// remedy is the first remedy for a problem at path.
func (w *walker) remedy(p problem, path string) string {
	field := fieldOf(path)
	switch p {
	case unexported:
		return "export it, tag it " + w.r.skip
	case embeddedPtr:
		return "embed it by value, export its type, tag it " + w.r.skip
	case hidden:
		return "rename it, tag it " + w.r.skip
	case ptrOnly:
		return "store pointers in the map"
	}
	switch {
	case field == "":
		return ""
	case field != path:
		return "change the type of field " + field + ", tag that field " + w.r.skip
	}
	return "change its type, tag it " + w.r.skip
}

// fieldOf is the field part of path: path without the elements and keys
// at its end, "" if there is no field.
func fieldOf(path string) string {
	for strings.HasSuffix(path, "]") {
		path = path[:strings.LastIndexByte(path, '[')]
	}
	return path
}

// walk checks t, at path. addr says whether the encoder can address the
// value (encoding/json calls pointer methods only then); owner is the
// nearest named type, for the remedy.
func (w *walker) walk(t reflect.Type, addr bool, path string, owner reflect.Type) *TypeError {
	k := seenKey{t, addr}
	if w.seen[k] {
		return nil
	}
	w.seen[k] = true
	if t.Name() != "" && t.Kind() == reflect.Struct {
		owner = t
	}
	if trusted, te := w.methods(t, addr, path, owner); trusted || te != nil {
		return te
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return nil
	case reflect.Complex64, reflect.Complex128:
		if w.r.complex {
			return nil
		}
		return w.fail(badType, path, owner, fmt.Sprintf("is a complex number (%v), which the encoding cannot carry", t))
	case reflect.Chan:
		return w.fail(badType, path, owner, fmt.Sprintf("is a channel (%v), which cannot be sent to another process", t))
	case reflect.Func:
		return w.fail(badType, path, owner, fmt.Sprintf("is a function (%v), which cannot be sent to another process", t))
	case reflect.UnsafePointer:
		return w.fail(badType, path, owner, "is an unsafe.Pointer, which cannot be sent to another process")
	case reflect.Interface:
		return w.fail(badType, path, owner, fmt.Sprintf("is an interface (%v): the type of its value is not sent, so it would not arrive as that type", t))
	case reflect.Pointer:
		return w.walk(t.Elem(), true, path, owner)
	case reflect.Slice:
		return w.walk(t.Elem(), true, path+"[]", owner)
	case reflect.Array:
		return w.walk(t.Elem(), addr, path+"[]", owner)
	case reflect.Map:
		kp := path + "[key]"
		trusted, reason := w.r.key(t.Key())
		if reason != "" {
			return w.fail(badKey, kp, owner, reason)
		}
		if !trusted {
			if te := w.walk(t.Key(), false, kp, owner); te != nil {
				return te
			}
		}
		return w.walk(t.Elem(), false, path+"[]", owner)
	case reflect.Struct:
		return w.walkStruct(t, addr, path, owner)
	}
	return w.fail(badType, path, owner, fmt.Sprintf("is of kind %v, which the encoding cannot carry", t.Kind()))
}

// methods reports whether t is trusted for the marshalling methods it
// has, or what is wrong with them.
func (w *walker) methods(t reflect.Type, addr bool, path string, owner reflect.Type) (bool, *TypeError) {
	if w.r.native[t] {
		return true, nil
	}
	pt := reflect.PointerTo(t)
	for _, p := range w.r.pairs {
		m, u := pt.Implements(p.m), pt.Implements(p.u)
		both := fmt.Sprintf("give %v both %s and %s", t, p.mName, p.uName)
		switch {
		case !m && !u:
			continue
		case !u:
			return false, w.failFix(path, fmt.Sprintf("has %s but no %s (it could not be decoded)", p.mName, p.uName), both, w.r.register)
		case !m:
			return false, w.failFix(path, fmt.Sprintf("has %s but no %s (%s would get what was encoded without it)", p.uName, p.mName, p.uName), both, w.r.register)
		}
		for _, name := range []string{p.mName, p.uName} {
			if from, ok := promotedFrom(t, name); ok && hasOtherFields(w.r, t, from) {
				return false, w.failFix(path, fmt.Sprintf("gets %s from its embedded field %s, so its other fields would not be sent", name, from),
					fmt.Sprintf("give %v %s and %s of its own, name the embedded field", t, p.mName, p.uName), w.r.register)
			}
		}
		if w.r.addrOnly && !addr && !t.Implements(p.m) {
			return false, w.fail(ptrOnly, path, owner, fmt.Sprintf("has %s on its pointer only, which encoding/json does not call on a value it cannot address, such as a map's (it would be encoded field by field)", p.mName))
		}
		return true, nil
	}
	return false, nil
}

// promotedFrom returns the embedded field of the struct type t whose
// method name t has, if t does not define the method itself.
func promotedFrom(t reflect.Type, name string) (string, bool) {
	if t.Kind() != reflect.Struct {
		return "", false
	}
	for _, tt := range []reflect.Type{t, reflect.PointerTo(t)} {
		if m, ok := tt.MethodByName(name); ok && !autogenerated(m) {
			return "", false
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.Anonymous {
			continue
		}
		if _, ok := f.Type.MethodByName(name); ok {
			return f.Name, true
		}
		if _, ok := reflect.PointerTo(f.Type).MethodByName(name); ok {
			return f.Name, true
		}
	}
	return "", false
}

// autogenerated reports whether m is a wrapper the compiler made: a method
// promoted from an embedded field, or a value method called on a pointer.
func autogenerated(m reflect.Method) bool {
	pc := m.Func.Pointer()
	f := runtime.FuncForPC(pc)
	if f == nil {
		return false
	}
	file, _ := f.FileLine(pc)
	return file == "<autogenerated>"
}

// hasOtherFields reports whether the struct type t has a field, besides
// the embedded one named from, that would be sent.
func hasOtherFields(r *Rules, t reflect.Type, from string) bool {
	for i := range t.NumField() {
		if f := t.Field(i); f.Name != from && f.Name != "_" && r.tag(f) != "-" {
			return true
		}
	}
	return false
}

// sfield is a field of a struct as the encoder sees it: its own, or
// promoted from an embedded struct.
type sfield struct {
	name   string // the name it is encoded under
	path   string
	typ    reflect.Type
	addr   bool
	depth  int // of embedding
	tagged bool
	owner  reflect.Type
}

func (w *walker) walkStruct(t reflect.Type, addr bool, path string, owner reflect.Type) *TypeError {
	var fields []sfield
	if te := w.collect(t, addr, path, owner, 0, []reflect.Type{t}, &fields); te != nil {
		return te
	}
	if te := w.dominance(fields); te != nil {
		return te
	}
	for _, f := range fields {
		if te := w.walk(f.typ, f.addr, f.path, f.owner); te != nil {
			return te
		}
	}
	return nil
}

// collect appends the fields of t to out, with those of its embedded
// structs, in the order of their declarations; chain holds the structs
// being collected, so that an embedding cycle stops.
func (w *walker) collect(t reflect.Type, addr bool, path string, owner reflect.Type, depth int, chain []reflect.Type, out *[]sfield) *TypeError {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "_" {
			continue // blank: holds nothing
		}
		tag := w.r.tag(f)
		if tag == "-" {
			continue // the user's choice
		}
		name, _, _ := strings.Cut(tag, ",")
		tagged := name != ""
		fpath := path + "." + f.Name
		ft := f.Type
		ptr := ft.Kind() == reflect.Pointer
		if ptr {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			if !f.IsExported() && ptr {
				return w.fail(embeddedPtr, fpath, owner, fmt.Sprintf("is an embedded pointer to an unexported struct type (%v), which the decoder cannot allocate", f.Type))
			}
			if contains(chain, ft) {
				continue
			}
			if te := w.collect(ft, addr || ptr, fpath, owner, depth+1, append(chain, ft), out); te != nil {
				return te
			}
			continue
		}
		if !f.IsExported() {
			if f.Type.Size() == 0 {
				continue // holds nothing
			}
			return w.fail(unexported, fpath, owner, "is unexported (it would arrive zero)")
		}
		if name == "" {
			name = f.Name
		}
		*out = append(*out, sfield{name: name, path: fpath, typ: f.Type, addr: addr, depth: depth, tagged: tagged, owner: owner})
	}
	return nil
}

func contains(ts []reflect.Type, t reflect.Type) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// dominance finds a field that the encoder drops because another has its
// name, by Go's rules for embedded fields as encoding/json applies them:
// of the fields of one name, the shallowest wins if it is alone at its
// depth, or the only tagged one there; otherwise none does.
func (w *walker) dominance(fields []sfield) *TypeError {
	byName := map[string][]int{}
	dup := false
	for i, f := range fields {
		byName[f.name] = append(byName[f.name], i)
		dup = dup || len(byName[f.name]) > 1
	}
	if !dup {
		return nil
	}
	winner := make([]int, len(fields)) // per field: the index of its name's winner, -1 for none
	for _, idx := range byName {
		top := fields[idx[0]].depth
		for _, i := range idx {
			top = min(top, fields[i].depth)
		}
		var atTop, tagged []int
		for _, i := range idx {
			if fields[i].depth == top {
				atTop = append(atTop, i)
				if fields[i].tagged {
					tagged = append(tagged, i)
				}
			}
		}
		win := -1
		switch {
		case len(atTop) == 1:
			win = atTop[0]
		case len(tagged) == 1:
			win = tagged[0]
		}
		for _, i := range idx {
			winner[i] = win
		}
	}
	for i, f := range fields {
		switch win := winner[i]; {
		case win == i:
		case win >= 0:
			return w.fail(hidden, f.path, f.owner, fmt.Sprintf("is hidden by field %s, which has the same name %q (it would arrive zero)", fields[win].path, f.name))
		default:
			other := f
			for _, j := range byName[f.name] {
				if j != i {
					other = fields[j]
					break
				}
			}
			return w.fail(hidden, f.path, f.owner, fmt.Sprintf("has the same name %q as field %s, so neither is sent (both would arrive zero)", f.name, other.path))
		}
	}
	return nil
}
