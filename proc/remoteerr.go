package proc

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/retry"
	"github.com/ferrypipe/ferry/shm"
)

// RegisterErrors registers sentinel errors (values compared with ==, such
// as io.EOF or a package's `var ErrX = errors.New(...)`) that keep their
// identity when they cross from a worker process to the parent. Each is
// known on the wire by its Go type and message ("*errors.errorString:
// my: not found"); two distinct sentinels with the same type and message
// cannot both be registered that way (the second registration panics): give
// one of them a name with RegisterNamedError. Registering a sentinel again,
// under any name, is a no-op. RegisterErrors panics on a nil error or on
// one whose dynamic type is not comparable.
//
// # Errors that cross
//
// An error returned, or a panic raised, by code running in a worker arrives
// in the parent as a *RemoteError carrying the error's Go type, its
// message, the item index and, for a panic, the worker's stack. Besides
// that, the worker looks in the error's chain (errors.Is and errors.As
// semantics, through Unwrap() error and Unwrap() []error, so through
// fmt.Errorf's %w and errors.Join; for a panic whose value is an error,
// through that error) for registered errors:
//
//   - every registered sentinel the chain matches (errors.Is, so custom Is
//     methods count: a syscall.ENOENT matches fs.ErrNotExist) is sent by
//     name and is the parent's own sentinel value again;
//   - every value of a registered error type (RegisterErrorType) in the
//     chain is sent as JSON and rebuilt in the parent, fields included; a
//     field of type error, such as CodecError.Err, is carried the same way
//     recursively, so that it can still be unwrapped.
//
// RemoteError.Unwrap returns the rebuilt values, so errors.Is(err,
// pipeline.ErrSkip) and errors.As(err, &codecErr) give in the parent the
// answers they give in the worker: where a function runs does not change
// the errors it gives. Errors that are neither registered nor wrap a
// registered one keep only their type name and message. What one error
// carries is bounded (16 levels of nested errors, 512 typed values, about
// 256 KiB besides the message): past that, nested errors keep only their
// type, message and sentinel identity.
//
// Workers are the same binary as the parent: register at package level (in
// a var initializer or an init function) so that both processes know the
// same errors before any worker code runs. Built in are context.Canceled,
// context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe,
// io.ErrShortWrite, io.ErrShortBuffer, fs.ErrInvalid, fs.ErrPermission,
// fs.ErrExist, fs.ErrNotExist, fs.ErrClosed (the same values as os.Err*),
// os.ErrDeadlineExceeded, os.ErrNoDeadline, strconv.ErrRange,
// strconv.ErrSyntax, the sentinels of packages pipeline (ErrSkip among
// them), proc and shm, and retry.ErrPermanent (so that an error marked
// with retry.Permanent in a worker is permanent in the parent); and the types *CodecError, *TimeoutError,
// *WorkerError, *pipeline.ItemError, *shm.AcquireError,
// *shm.TooLargeError, *shm.RefError, *fs.PathError, *os.LinkError,
// *os.SyscallError, *strconv.NumError and syscall.Errno.
func RegisterErrors(errs ...error) {
	for _, err := range errs {
		if err == nil {
			panic("proc: RegisterErrors: nil error")
		}
	}
	updateRegistry(func(r *errRegistry) {
		for _, err := range errs {
			r.addSentinel("RegisterErrors", fmt.Sprintf("%T: %s", err, err.Error()), err)
		}
	})
}

// RegisterNamedError registers a sentinel error as RegisterErrors does, but
// known on the wire by name: for sentinels whose type and message are not
// unique, or are not constant. By convention the name is the sentinel's
// import path and identifier, e.g. "example.com/store.ErrNotFound". It
// panics if another error is registered under the name.
func RegisterNamedError(name string, err error) {
	if name == "" {
		panic("proc: RegisterNamedError: empty name")
	}
	if err == nil {
		panic(fmt.Sprintf("proc: RegisterNamedError(%q): nil error", name))
	}
	updateRegistry(func(r *errRegistry) { r.addSentinel("RegisterNamedError", name, err) })
}

// RegisterErrorType registers an error type E whose values cross from a
// worker process to the parent (see RegisterErrors): a value of type E
// found in the chain of a worker's error (errors.As semantics) is encoded
// and rebuilt in the parent, where errors.As(err, &e) with e of type E finds
// it. E is either a pointer to a named struct (for errors with pointer
// receivers, such as *fs.PathError) or a named non-pointer type (for value
// receivers, or a numeric type such as syscall.Errno). It is known on the
// wire by its import path and name, e.g. "*io/fs.PathError". Registering
// a type again is a no-op.
//
// A struct's fields are carried one by one, by Go name. A field of type
// error or []error is carried as a nested error: a registered sentinel is
// the parent's own value again, a value of a registered type is rebuilt,
// anything else becomes a *RemoteError whose Error() is the original
// message and which unwraps to the registered errors its chain matched.
// Every other field must survive encoding/json unchanged, and
// RegisterErrorType checks it, panicking with the offending field: all
// fields (and those of nested structs) must be exported, and no field may
// be, or contain, an interface (other than a top-level error or []error), a
// channel, a function, a complex number or an unsafe pointer. A type that
// implements both json.Marshaler and json.Unmarshaler (or both
// encoding.TextMarshaler and encoding.TextUnmarshaler) is trusted and
// encoded whole, its own way, at any level: the way to register a type with
// unexported fields.
func RegisterErrorType[E error]() {
	t, err := newErrType[E]()
	if err != nil {
		panic(fmt.Sprintf("proc: RegisterErrorType[%v]: %v", reflect.TypeFor[E](), err))
	}
	updateRegistry(func(r *errRegistry) { r.addType(t) })
}

// addType registers t, unless it is registered already.
func (r *errRegistry) addType(t *errType) {
	if old := r.typeByName[t.name]; old != nil {
		if old.rt == t.rt {
			return
		}
		panic(fmt.Sprintf("proc: RegisterErrorType[%v]: another type is registered under the name %q", t.rt, t.name))
	}
	r.types = append(r.types, t)
	r.typeByName[t.name] = t
	r.typeByRT[t.rt] = t
}

// builtinType is the errType of E, which must be registrable.
func builtinType[E error]() *errType {
	t, err := newErrType[E]()
	if err != nil {
		panic(fmt.Sprintf("proc: built-in error type %v: %v", reflect.TypeFor[E](), err))
	}
	return t
}

// builtinsOnce registers the built-in errors at the first use of the
// registry, not at every program's start.
var builtinsOnce sync.Once

// registerBuiltins registers the built-in errors in one update of the
// registry (each registration copies it).
func registerBuiltins() {
	const ferry = "github.com/ferrypipe/ferry/"
	sentinels := []struct {
		name string
		err  error
	}{
		{"context.Canceled", context.Canceled},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
		{"io.EOF", io.EOF},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF},
		{"io.ErrClosedPipe", io.ErrClosedPipe},
		{"io.ErrShortWrite", io.ErrShortWrite},
		{"io.ErrShortBuffer", io.ErrShortBuffer},
		{"io/fs.ErrInvalid", fs.ErrInvalid},
		{"io/fs.ErrPermission", fs.ErrPermission},
		{"io/fs.ErrExist", fs.ErrExist},
		{"io/fs.ErrNotExist", fs.ErrNotExist},
		{"io/fs.ErrClosed", fs.ErrClosed},
		{"os.ErrDeadlineExceeded", os.ErrDeadlineExceeded},
		{"os.ErrNoDeadline", os.ErrNoDeadline},
		{"strconv.ErrRange", strconv.ErrRange},
		{"strconv.ErrSyntax", strconv.ErrSyntax},
		{ferry + "pipeline.ErrSkip", pipeline.ErrSkip},
		{ferry + "pipeline.ErrEpochEnd", pipeline.ErrEpochEnd},
		{ferry + "pipeline.ErrClosed", pipeline.ErrClosed},
		{ferry + "pipeline.ErrStopped", pipeline.ErrStopped},
		{ferry + "pipeline.ErrBusy", pipeline.ErrBusy},
		{ferry + "proc.ErrClosed", ErrClosed},
		{ferry + "proc.ErrBusy", ErrBusy},
		{ferry + "retry.ErrPermanent", retry.ErrPermanent},
		{ferry + "shm.ErrShutdown", shm.ErrShutdown},
		{ferry + "shm.ErrClosed", shm.ErrClosed},
		{ferry + "shm.ErrNameInUse", shm.ErrNameInUse},
		{ferry + "shm.ErrMalformedRef", shm.ErrMalformedRef},
	}
	types := []*errType{
		builtinType[*CodecError](),
		builtinType[*TimeoutError](),
		builtinType[*WorkerError](),
		builtinType[*pipeline.ItemError](),
		builtinType[*shm.AcquireError](),
		builtinType[*shm.TooLargeError](),
		builtinType[*shm.RefError](),
		builtinType[*fs.PathError](),
		builtinType[*os.LinkError](),
		builtinType[*os.SyscallError](),
		builtinType[*strconv.NumError](),
		builtinType[syscall.Errno](),
	}
	update(func(r *errRegistry) {
		for _, s := range sentinels {
			r.addSentinel("init", s.name, s.err)
		}
		for _, t := range types {
			r.addType(t)
		}
	})
}

// Limits on what one error body carries.
const (
	maxErrDepth  = 16      // nesting of errors in fields of typed errors
	maxErrValues = 512     // typed values in one body, nested ones included
	maxErrScans  = 64      // chains searched for registered errors in one body
	maxErrWalk   = 256     // errors visited in one chain
	maxErrBytes  = 1 << 18 // bytes of typed values and nested errors in one body
	maxErrText   = 4096    // bytes of a message kept past maxErrBytes, or of a malformed body
)

// ---- registry ----

// errRegistry is an immutable snapshot of the registered errors; a
// registration replaces it with an updated copy.
type errRegistry struct {
	sentinels  []sentinel // in registration order
	byKey      map[string]error
	types      []*errType // in registration order
	typeByName map[string]*errType
	typeByRT   map[reflect.Type]*errType
}

type sentinel struct {
	key string
	err error
}

var (
	errRegistryMu  sync.Mutex
	errRegistryPtr atomic.Pointer[errRegistry]
)

func loadRegistry() *errRegistry {
	builtinsOnce.Do(registerBuiltins)
	return currentRegistry()
}

func currentRegistry() *errRegistry {
	if r := errRegistryPtr.Load(); r != nil {
		return r
	}
	return &errRegistry{}
}

// updateRegistry applies f to a copy of the registry and publishes it,
// unless f panics.
func updateRegistry(f func(*errRegistry)) {
	builtinsOnce.Do(registerBuiltins)
	update(f)
}

// update is updateRegistry without the built-ins.
func update(f func(*errRegistry)) {
	errRegistryMu.Lock()
	defer errRegistryMu.Unlock()
	old := currentRegistry()
	r := &errRegistry{
		sentinels:  append([]sentinel(nil), old.sentinels...),
		byKey:      make(map[string]error, len(old.byKey)+1),
		types:      append([]*errType(nil), old.types...),
		typeByName: make(map[string]*errType, len(old.typeByName)+1),
		typeByRT:   make(map[reflect.Type]*errType, len(old.typeByRT)+1),
	}
	for k, v := range old.byKey {
		r.byKey[k] = v
	}
	for k, v := range old.typeByName {
		r.typeByName[k] = v
	}
	for k, v := range old.typeByRT {
		r.typeByRT[k] = v
	}
	f(r)
	errRegistryPtr.Store(r)
}

func (r *errRegistry) addSentinel(fn, key string, err error) {
	if !reflect.ValueOf(err).Comparable() {
		panic(fmt.Sprintf("proc: %s: %T is not comparable, so %q cannot be a sentinel (errors.Is compares sentinels with ==)", fn, err, err.Error()))
	}
	if r.identity(err) != "" {
		return
	}
	if old, ok := r.byKey[key]; ok {
		panic(fmt.Sprintf("proc: %s: %q is already registered for another error (%T %q); register one of them with RegisterNamedError and a name of its own", fn, key, old, old.Error()))
	}
	r.sentinels = append(r.sentinels, sentinel{key, err})
	r.byKey[key] = err
}

// identity returns the key of the registered sentinel err is (==), or "".
func (r *errRegistry) identity(err error) string {
	t := reflect.TypeOf(err)
	if t == nil || !reflect.ValueOf(err).Comparable() {
		return ""
	}
	for _, s := range r.sentinels {
		if reflect.TypeOf(s.err) == t && s.err == err {
			return s.key
		}
	}
	return ""
}

// ---- registered types ----

type fieldKind uint8

const (
	fieldJSON   fieldKind = iota // through encoding/json
	fieldError                   // error: a nested encoded error
	fieldErrors                  // []error: an array of them
)

type errField struct {
	index int
	name  string
	kind  fieldKind
}

// errType is a registered error type E.
type errType struct {
	name   string
	rt     reflect.Type // E
	ptr    bool         // E is a pointer to base
	base   reflect.Type
	whole  bool       // encoded whole by encoding/json (fields is unused)
	fields []errField // a struct's fields, one by one
	// as is errors.As with a target of type E.
	as func(error) (error, bool)
}

var (
	errorType       = reflect.TypeFor[error]()
	errorSliceType  = reflect.TypeFor[[]error]()
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func newErrType[E error]() (*errType, error) {
	rt := reflect.TypeFor[E]()
	t := &errType{rt: rt, base: rt, as: func(err error) (error, bool) {
		var target E
		if errors.As(err, &target) {
			return target, true
		}
		return nil, false
	}}
	switch rt.Kind() {
	case reflect.Interface:
		return nil, errors.New("an interface type cannot be rebuilt: register the concrete types")
	case reflect.Pointer:
		t.ptr, t.base = true, rt.Elem()
		if k := t.base.Kind(); k == reflect.Pointer || k == reflect.Interface {
			return nil, fmt.Errorf("a pointer to %v cannot be rebuilt", t.base)
		}
	}
	if t.base.Name() == "" {
		return nil, errors.New("the type (or the type it points to) must be named")
	}
	t.name = t.base.PkgPath() + "." + t.base.Name()
	if t.ptr {
		t.name = "*" + t.name
	}
	if pair, _ := codecPair(t.base); pair || t.base.Kind() != reflect.Struct {
		if err := checkJSON(t.base, "", map[reflect.Type]bool{}); err != nil {
			return nil, err
		}
		t.whole = true
		return t, nil
	}
	for i := range t.base.NumField() {
		f := t.base.Field(i)
		if !f.IsExported() {
			return nil, fmt.Errorf("field %s is unexported and would not cross: export it, or implement json.Marshaler and json.Unmarshaler on %v", f.Name, t.base)
		}
		switch f.Type {
		case errorType:
			t.fields = append(t.fields, errField{i, f.Name, fieldError})
			continue
		case errorSliceType:
			t.fields = append(t.fields, errField{i, f.Name, fieldErrors})
			continue
		}
		if err := checkJSON(f.Type, f.Name, map[reflect.Type]bool{}); err != nil {
			return nil, err
		}
		t.fields = append(t.fields, errField{i, f.Name, fieldJSON})
	}
	return t, nil
}

// codecPair reports whether t (or *t) has its own JSON encoding both ways,
// or else its own text encoding both ways (pair), or only one half of
// either (half: encoding/json would not read back what it writes).
func codecPair(t reflect.Type) (pair, half bool) {
	p := reflect.PointerTo(t)
	m, u := t.Implements(jsonMarshaler) || p.Implements(jsonMarshaler), p.Implements(jsonUnmarshaler)
	if !m && !u {
		m, u = t.Implements(textMarshaler) || p.Implements(textMarshaler), p.Implements(textUnmarshaler)
	}
	return m && u, m != u
}

// checkJSON reports why values of type t, at path, would not survive a
// round trip through encoding/json.
func checkJSON(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	at := func() string {
		if path == "" {
			return "the value"
		}
		return "field " + path
	}
	if t.Kind() == reflect.Pointer {
		return checkJSON(t.Elem(), path, seen)
	}
	switch pair, half := codecPair(t); {
	case pair:
		return nil
	case half:
		return fmt.Errorf("%s has type %v, which implements only one of json.Marshaler and json.Unmarshaler (or of encoding.TextMarshaler and encoding.TextUnmarshaler)", at(), t)
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return nil
	case reflect.Slice, reflect.Array:
		return checkJSON(t.Elem(), path, seen)
	case reflect.Map:
		k := t.Key()
		switch k.Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !k.Implements(textMarshaler) || !reflect.PointerTo(k).Implements(textUnmarshaler) {
				return fmt.Errorf("%s is a map whose key type %v encoding/json cannot carry", at(), k)
			}
		}
		return checkJSON(t.Elem(), path, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Name
			if path != "" {
				name = path + "." + f.Name
			}
			if f.Tag.Get("json") == "-" {
				continue // left out on purpose
			}
			if f.Anonymous {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
					if !f.IsExported() && ft.Kind() == reflect.Struct {
						return fmt.Errorf("field %s embeds a pointer to an unexported struct, which encoding/json cannot rebuild", name)
					}
				}
				if !f.IsExported() && ft.Kind() != reflect.Struct {
					return fmt.Errorf("field %s is unexported and would not cross", name)
				}
				if err := checkJSON(f.Type, name, seen); err != nil {
					return err
				}
				continue
			}
			if !f.IsExported() {
				return fmt.Errorf("field %s is unexported and would not cross", name)
			}
			if err := checkJSON(f.Type, name, seen); err != nil {
				return err
			}
		}
		return nil
	case reflect.Interface:
		if t == errorType {
			return fmt.Errorf("%s has type error: only top-level fields of type error or []error cross as errors", at())
		}
		return fmt.Errorf("%s has interface type %v, which cannot be rebuilt: only fields of type error or []error (at the top level) cross", at(), t)
	default:
		return fmt.Errorf("%s has type %v, which encoding/json cannot carry", at(), t)
	}
}

// ---- wire format ----

// errorBody is the JSON body of an error crossing from a worker to the
// parent: a superset of wire.ErrorMsg (type, message, stack, index).
type errorBody struct {
	Type      string       `json:"type"`                 // %T of the error, or "panic"
	Message   string       `json:"message"`              // err.Error(), or the panic value
	Stack     string       `json:"stack,omitempty"`      // for a panic
	Index     int64        `json:"index"`                // item index, or -1
	PanicType string       `json:"panic_type,omitempty"` // %T of the panic value
	Is        []string     `json:"is,omitempty"`         // registered sentinels the chain matches
	As        []typedValue `json:"as,omitempty"`         // registered typed errors in the chain
}

// typedValue is a value of a registered error type.
type typedValue struct {
	Name  string          `json:"name"` // registered type name, e.g. "*io/fs.PathError"
	Value json.RawMessage `json:"value"`
}

// causeBody is an error held in a field of a typed error. If it is a
// registered sentinel (Sentinel) or a value of a registered type (Self), the
// parent rebuilds it as such; otherwise Is and As are as in errorBody.
type causeBody struct {
	Type     string       `json:"type"`
	Message  string       `json:"message"`
	Sentinel string       `json:"sentinel,omitempty"`
	Self     *typedValue  `json:"self,omitempty"`
	Is       []string     `json:"is,omitempty"`
	As       []typedValue `json:"as,omitempty"`
}

// ---- worker side ----

// encodeError encodes err, raised by the item at index (or -1), for the
// parent: see errorBody. A *panicError is sent as type "panic" with the
// panic value as the message, its type and the stack. encodeError never
// panics, whatever err's methods do.
func encodeError(err error, index int64) (body []byte) {
	b := errorBody{Type: fmt.Sprintf("%T", err), Message: errorMessage(err), Index: index}
	chain := err
	if pe, ok := err.(*panicError); ok {
		b.Type, b.Message, b.Stack = "panic", fmt.Sprint(pe.value), pe.stack
		b.PanicType = fmt.Sprintf("%T", pe.value)
		chain, _ = pe.value.(error)
	}
	defer func() {
		if recover() != nil {
			b.Is, b.As = nil, nil
			body, _ = json.Marshal(b)
		}
	}()
	if chain != nil {
		e := &errEncoder{reg: loadRegistry(), values: maxErrValues, scans: maxErrScans, bytes: maxErrBytes}
		b.Is, b.As = e.matches(chain, 0)
	}
	body, jerr := json.Marshal(b)
	if jerr != nil {
		b.Is, b.As = nil, nil
		body, _ = json.Marshal(b)
	}
	return body
}

// errorMessage is err.Error(), even if that panics.
func errorMessage(err error) (msg string) {
	if err == nil {
		return "<nil>"
	}
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprintf("%T (its Error method panicked: %v)", err, v)
		}
	}()
	return err.Error()
}

// errEncoder encodes the registered errors of one body, within bounds:
// past them, a nested error is sent as its type and message alone.
type errEncoder struct {
	reg    *errRegistry
	values int // typed values left to encode
	scans  int // chains left to search
	bytes  int // bytes left for typed values and nested errors
}

// matches returns the registered sentinels err's chain matches and the
// registered typed values in it, in the order errors.As visits them.
func (e *errEncoder) matches(err error, depth int) (is []string, as []typedValue) {
	if e.scans <= 0 {
		return nil, nil
	}
	e.scans--
	for _, s := range e.reg.sentinels {
		if try(func() bool { return errors.Is(err, s.err) }) {
			is = append(is, s.key)
		}
	}
	found := map[*errType]bool{}
	walk := maxErrWalk
	try(func() bool {
		walkErrors(err, &walk, func(x error) {
			if t := e.reg.typeByRT[reflect.TypeOf(x)]; t != nil {
				if v, ok := e.value(t, x, depth); ok {
					as = append(as, typedValue{t.name, v})
					found[t] = true
				}
			}
		})
		return true
	})
	// A value that only an As method yields.
	for _, t := range e.reg.types {
		if found[t] {
			continue
		}
		var x error
		if try(func() (ok bool) { x, ok = t.as(err); return ok }) {
			if v, ok := e.value(t, x, depth); ok {
				as = append(as, typedValue{t.name, v})
			}
		}
	}
	return is, as
}

// walkErrors calls fn on err and the errors in its tree, depth first, as
// errors.As visits them, at most *budget of them.
func walkErrors(err error, budget *int, fn func(error)) {
	if err == nil || *budget <= 0 {
		return
	}
	*budget--
	fn(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walkErrors(u.Unwrap(), budget, fn)
	case interface{ Unwrap() []error }:
		for _, x := range u.Unwrap() {
			walkErrors(x, budget, fn)
		}
	}
}

// try calls f, turning a panic into false.
func try(f func() bool) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return f()
}

// value encodes x, of registered type t.
func (e *errEncoder) value(t *errType, x error, depth int) (raw json.RawMessage, ok bool) {
	if e.values <= 0 || e.bytes <= 0 {
		return nil, false
	}
	e.values--
	before := e.bytes
	defer func() {
		if recover() != nil {
			raw, ok = nil, false
		}
		e.charge(len(raw), before)
	}()
	v := reflect.ValueOf(x)
	if t.ptr {
		if v.IsNil() {
			return nil, false
		}
		v = v.Elem()
	} else {
		c := reflect.New(t.base).Elem() // addressable, for pointer methods
		c.Set(v)
		v = c
	}
	if t.whole {
		b, err := json.Marshal(v.Addr().Interface())
		return b, err == nil
	}
	obj := make(map[string]json.RawMessage, len(t.fields))
	for _, f := range t.fields {
		fv := v.Field(f.index)
		switch f.kind {
		case fieldError:
			if !fv.IsNil() {
				obj[f.name] = e.cause(fv.Interface().(error), depth+1)
			}
		case fieldErrors:
			if !fv.IsNil() {
				list := make([]json.RawMessage, fv.Len())
				for i := range list {
					c, _ := fv.Index(i).Interface().(error)
					list[i] = e.cause(c, depth+1)
				}
				obj[f.name], _ = json.Marshal(list)
			}
		default:
			if b, err := json.Marshal(fv.Addr().Interface()); err == nil {
				obj[f.name] = b
			}
		}
	}
	b, err := json.Marshal(obj)
	return b, err == nil
}

var jsonNull = json.RawMessage("null")

// cause encodes an error held in a field of a typed error.
func (e *errEncoder) cause(err error, depth int) json.RawMessage {
	if err == nil {
		return jsonNull
	}
	before := e.bytes
	c := causeBody{Type: fmt.Sprintf("%T", err), Message: errorMessage(err)}
	if e.bytes <= 0 {
		c.Message = truncate(c.Message)
	}
	e.bytes -= len(c.Message) // now, to bound what is nested below
	if key := e.reg.identity(err); key != "" {
		c.Sentinel = key // cheap, and sent whatever the bounds
	} else if e.bytes > 0 && depth < maxErrDepth {
		if t := e.reg.typeByRT[reflect.TypeOf(err)]; t != nil {
			if v, ok := e.value(t, err, depth); ok {
				c.Self = &typedValue{t.name, v}
			}
		}
		if c.Sentinel == "" && c.Self == nil {
			c.Is, c.As = e.matches(err, depth)
		}
	}
	b, jerr := json.Marshal(c)
	if jerr != nil {
		b, _ = json.Marshal(causeBody{Type: c.Type, Message: c.Message})
	}
	e.charge(len(b), before)
	return b
}

// charge counts n bytes encoded since the budget was before, less those
// that nested encodings already counted.
func (e *errEncoder) charge(n, before int) {
	if n -= before - e.bytes; n > 0 {
		e.bytes -= n
	}
}

// ---- parent side ----

// decodeError turns the body of an error message sent by the worker pid,
// running the function or iterable registered as worker, into a
// *RemoteError, rebuilding the registered errors it carries (see
// RegisterErrors). It never panics: a body that is not a JSON object
// becomes the message, and what cannot be rebuilt (such as the name of a
// sentinel or a type this binary does not register) is left out.
func decodeError(worker string, pid int, body []byte) (re *RemoteError) {
	re = &RemoteError{Worker: worker, PID: pid, Index: -1}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		re.Message = bodyText(body)
		return re
	}
	b := errorBody{Index: -1}
	_ = json.Unmarshal(trimmed, &b) // keeps what fits when some fields do not
	re.Type, re.Message, re.Stack, re.Index, re.PanicType = b.Type, b.Message, b.Stack, b.Index, b.PanicType
	if b.Type == "" && b.Message == "" {
		re.Message = bodyText(body)
	}
	defer func() {
		if recover() != nil {
			re.errs = nil
		}
	}()
	d := &errDecoder{worker: worker, pid: pid, reg: loadRegistry()}
	re.errs = d.errs(b.Is, b.As, 0)
	return re
}

// bodyText is a malformed body as a message.
func bodyText(body []byte) string {
	return strings.ToValidUTF8(truncate(string(body)), "\uFFFD")
}

// truncate cuts s to about maxErrText bytes.
func truncate(s string) string {
	if len(s) > maxErrText {
		n := maxErrText
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

type errDecoder struct {
	worker string
	pid    int
	reg    *errRegistry
}

// errs rebuilds the typed values and the sentinels of a body.
func (d *errDecoder) errs(is []string, as []typedValue, depth int) []error {
	var out []error
	for _, tv := range as {
		if v, ok := d.value(tv, depth); ok {
			out = append(out, v)
		}
	}
	for _, k := range is {
		if s, ok := d.reg.byKey[k]; ok {
			out = append(out, s)
		}
	}
	return out
}

// value rebuilds a value of a registered type.
func (d *errDecoder) value(tv typedValue, depth int) (v error, ok bool) {
	t := d.reg.typeByName[tv.Name]
	if t == nil || len(tv.Value) == 0 || depth > maxErrDepth {
		return nil, false
	}
	defer func() {
		if recover() != nil {
			v, ok = nil, false
		}
	}()
	p := reflect.New(t.base)
	if t.whole {
		if json.Unmarshal(tv.Value, p.Interface()) != nil {
			return nil, false
		}
	} else {
		var obj map[string]json.RawMessage
		if json.Unmarshal(tv.Value, &obj) != nil {
			return nil, false
		}
		for _, f := range t.fields {
			raw, ok := obj[f.name]
			if !ok {
				continue
			}
			fv := p.Elem().Field(f.index)
			switch f.kind {
			case fieldError:
				if c := d.cause(raw, depth+1); c != nil {
					fv.Set(reflect.ValueOf(c))
				}
			case fieldErrors:
				var list []json.RawMessage
				if json.Unmarshal(raw, &list) == nil && list != nil {
					errs := make([]error, len(list))
					for i, r := range list {
						errs[i] = d.cause(r, depth+1)
					}
					fv.Set(reflect.ValueOf(errs))
				}
			default:
				_ = json.Unmarshal(raw, fv.Addr().Interface()) // a field that does not fit stays as decoded so far
			}
		}
	}
	if !t.ptr {
		p = p.Elem()
	}
	v, ok = p.Interface().(error)
	return v, ok
}

// cause rebuilds an error held in a field of a typed error.
func (d *errDecoder) cause(raw json.RawMessage, depth int) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, jsonNull) {
		return nil
	}
	var c causeBody
	if json.Unmarshal(raw, &c) != nil && c.Type == "" && c.Message == "" {
		c.Message = bodyText(raw)
	}
	if c.Sentinel != "" {
		if s, ok := d.reg.byKey[c.Sentinel]; ok {
			return s
		}
	}
	if c.Self != nil {
		if v, ok := d.value(*c.Self, depth); ok {
			return v
		}
	}
	re := &RemoteError{Worker: d.worker, PID: d.pid, Type: c.Type, Message: c.Message, Index: -1, cause: true}
	if depth <= maxErrDepth {
		re.errs = d.errs(c.Is, c.As, depth)
	}
	return re
}
