//go:build linux && !ferrynolinux

package proc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/shm"
)

// Errors registered by the tests, at package level as users would.
var (
	errRETestUser  = errors.New("remoteerr test: user sentinel")
	errRETestNamed = errors.New("remoteerr test: not found") // registered by name
	errRETestOther = errors.New("remoteerr test: not found") // same message, unregistered
)

// reTestPtrErr has a pointer receiver, nested structs and an error field.
type reTestPtrErr struct {
	Code   int
	Tags   []string
	Meta   map[string]int
	When   time.Time
	Inner  reTestInner
	Err    error
	Causes []error
}

type reTestInner struct {
	A string
	B *float64
}

func (e *reTestPtrErr) Error() string {
	return fmt.Sprintf("ptr error %d %v: %v", e.Code, e.Tags, e.Err)
}
func (e *reTestPtrErr) Unwrap() error { return e.Err }

// reTestValErr has a value receiver.
type reTestValErr struct {
	Op string
	N  int
}

func (e reTestValErr) Error() string { return fmt.Sprintf("val error %s %d", e.Op, e.N) }

// reTestCode is a non-struct error type.
type reTestCode int

func (c reTestCode) Error() string { return "code " + strconv.Itoa(int(c)) }

// reTestUnregistered is not registered.
type reTestUnregistered struct{ x int }

func (e *reTestUnregistered) Error() string { return fmt.Sprintf("unregistered %d", e.x) }

// reTestHidden has unexported fields and its own JSON encoding.
type reTestHidden struct{ secret string }

func (e *reTestHidden) Error() string { return "hidden " + e.secret }
func (e *reTestHidden) MarshalJSON() ([]byte, error) {
	return json.Marshal(e.secret)
}
func (e *reTestHidden) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &e.secret) }

// reTestIs matches errRETestUser through an Is method, without wrapping it.
type reTestIs struct{}

func (reTestIs) Error() string        { return "is-method error" }
func (reTestIs) Is(target error) bool { return target == errRETestUser }

// As fills a *reTestCode with 77.
func (reTestIs) As(target any) bool {
	p, ok := target.(*reTestCode)
	if ok && p != nil {
		*p = 77
		return true
	}
	return false
}

func init() {
	RegisterErrors(errRETestUser)
	RegisterNamedError("github.com/ferrypipe/ferry/proc.errRETestNamed", errRETestNamed)
	RegisterErrorType[*reTestPtrErr]()
	RegisterErrorType[reTestValErr]()
	RegisterErrorType[reTestCode]()
	RegisterErrorType[*reTestHidden]()
}

// roundTrip encodes err as a worker would and decodes it as the parent does.
func roundTrip(t *testing.T, err error, index int64) *RemoteError {
	t.Helper()
	body := encodeError(err, index)
	if !json.Valid(body) {
		t.Fatalf("encodeError(%v) = %q: not JSON", err, body)
	}
	re := decodeError("f", 42, body)
	if re == nil {
		t.Fatal("decodeError returned nil")
	}
	return re
}

// sameAnswers checks that errors.Is and errors.As give the same answers on
// the remote error as on the original, for every registered sentinel and
// type.
func sameAnswers(t *testing.T, orig error, re *RemoteError) {
	t.Helper()
	reg := loadRegistry()
	for _, s := range reg.sentinels {
		if want, got := errors.Is(orig, s.err), errors.Is(re, s.err); want != got {
			t.Errorf("errors.Is(_, %s): worker %v, parent %v", s.key, want, got)
		}
	}
	for _, ty := range reg.types {
		want, wok := ty.as(orig)
		got, gok := ty.as(re)
		if wok != gok {
			t.Errorf("errors.As(_, %s): worker %v, parent %v", ty.name, wok, gok)
			continue
		}
		if wok && want.Error() != got.Error() {
			t.Errorf("errors.As(_, %s): worker's Error() %q, parent's %q", ty.name, want.Error(), got.Error())
		}
	}
}

func TestErrorCodecSkipWrapped(t *testing.T) {
	err := fmt.Errorf("item too short: %w", pipeline.ErrSkip)
	re := roundTrip(t, err, 3)
	if !errors.Is(re, pipeline.ErrSkip) {
		t.Fatal("errors.Is(remote, pipeline.ErrSkip) = false")
	}
	if errors.Is(re, context.Canceled) || errors.Is(re, io.EOF) {
		t.Fatal("the remote error matches sentinels the original does not")
	}
	if re.Type != "*fmt.wrapError" || re.Message != err.Error() || re.Index != 3 || re.Worker != "f" || re.PID != 42 {
		t.Fatalf("remote error %+v", re)
	}
	if got, want := re.Error(), `proc: worker "f" (pid 42), item 3: item too short: pipeline: skip item`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	sameAnswers(t, err, re)
}

func TestErrorCodecContext(t *testing.T) {
	for _, err := range []error{
		context.Canceled,
		context.DeadlineExceeded,
		fmt.Errorf("fetch: %w", context.DeadlineExceeded),
		fmt.Errorf("stopped: %w", context.Cause(canceledCtx())),
	} {
		re := roundTrip(t, err, -1)
		if got, want := errors.Is(re, context.Canceled), errors.Is(err, context.Canceled); got != want {
			t.Errorf("%v: errors.Is(remote, context.Canceled) = %v", err, got)
		}
		if got, want := errors.Is(re, context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded); got != want {
			t.Errorf("%v: errors.Is(remote, context.DeadlineExceeded) = %v", err, got)
		}
		if re.Message != err.Error() || re.Index != -1 {
			t.Errorf("remote error %+v", re)
		}
		if strings.Contains(re.Error(), "item") {
			t.Errorf("Error() of a call names an item: %q", re.Error())
		}
		sameAnswers(t, err, re)
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestErrorCodecCodecError(t *testing.T) {
	err := fmt.Errorf("decoding: %w", &CodecError{What: "output", Err: fmt.Errorf("field x: %w", io.ErrUnexpectedEOF)})
	re := roundTrip(t, err, 5)
	var ce *CodecError
	if !errors.As(re, &ce) {
		t.Fatalf("errors.As(remote, *CodecError) = false; Unwrap() = %v", re.Unwrap())
	}
	if ce.What != "output" || ce.Err == nil || ce.Err.Error() != "field x: unexpected EOF" {
		t.Fatalf("rebuilt %#v", ce)
	}
	if !errors.Is(ce.Err, io.ErrUnexpectedEOF) {
		t.Fatal("the rebuilt CodecError's Err does not unwrap to io.ErrUnexpectedEOF")
	}
	var inner *RemoteError
	if !errors.As(ce.Err, &inner) || inner.Type != "*fmt.wrapError" {
		t.Fatalf("the rebuilt Err is %T %+v", ce.Err, ce.Err)
	}
	var orig *CodecError
	errors.As(err, &orig)
	if ce.Error() != orig.Error() {
		t.Fatalf("rebuilt Error() %q, original %q", ce.Error(), orig.Error())
	}
	if re.Type != "*fmt.wrapError" || !strings.Contains(re.Error(), "cannot encode or decode the output") {
		t.Fatalf("remote error %+v: %v", re, re)
	}
	sameAnswers(t, err, re)

	// A sentinel held directly is the parent's own value again.
	re = roundTrip(t, &CodecError{What: "item 3", Err: io.EOF}, 3)
	if !errors.As(re, &ce) || ce.Err != io.EOF {
		t.Fatalf("rebuilt %#v", ce)
	}
	if !strings.HasSuffix(re.Error(), "(*proc.CodecError)") {
		t.Fatalf("Error() = %q does not name the type", re.Error())
	}
	// A nil Err stays nil.
	re = roundTrip(t, &CodecError{What: "input"}, -1)
	if !errors.As(re, &ce) || ce.Err != nil || ce.What != "input" {
		t.Fatalf("rebuilt %#v", ce)
	}
}

func TestErrorCodecUserSentinels(t *testing.T) {
	err := fmt.Errorf("a: %w", fmt.Errorf("b: %w", errRETestUser))
	re := roundTrip(t, err, 0)
	if !errors.Is(re, errRETestUser) {
		t.Fatal("errors.Is(remote, user sentinel) = false")
	}
	sameAnswers(t, err, re)

	re = roundTrip(t, fmt.Errorf("x: %w", errRETestNamed), 0)
	if !errors.Is(re, errRETestNamed) || errors.Is(re, errRETestOther) {
		t.Fatalf("named sentinel: Is(named) %v, Is(other with same message) %v", errors.Is(re, errRETestNamed), errors.Is(re, errRETestOther))
	}
	re = roundTrip(t, errRETestOther, 0)
	if errors.Is(re, errRETestNamed) || errors.Is(re, errRETestOther) {
		t.Fatal("an unregistered sentinel with the message of a registered one matches")
	}

	// A sentinel matched through an Is method, and a value through an As
	// method.
	re = roundTrip(t, reTestIs{}, 0)
	if !errors.Is(re, errRETestUser) {
		t.Fatal("errors.Is through an Is method is lost")
	}
	var c reTestCode
	if !errors.As(re, &c) || c != 77 {
		t.Fatalf("errors.As through an As method: %v %v", errors.As(re, &c), c)
	}
	sameAnswers(t, reTestIs{}, re)
}

func TestErrorCodecUserTypes(t *testing.T) {
	f := 2.5
	ptr := &reTestPtrErr{
		Code:   7,
		Tags:   []string{"a", "b"},
		Meta:   map[string]int{"x": 1},
		When:   time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC),
		Inner:  reTestInner{A: "in", B: &f},
		Err:    reTestValErr{Op: "read", N: 3},
		Causes: []error{io.EOF, nil, errors.New("plain")},
	}
	err := fmt.Errorf("wrapped: %w", ptr)
	re := roundTrip(t, err, 9)

	var gotPtr *reTestPtrErr
	if !errors.As(re, &gotPtr) {
		t.Fatal("errors.As(remote, *reTestPtrErr) = false")
	}
	if gotPtr == ptr {
		t.Fatal("not rebuilt")
	}
	if gotPtr.Code != 7 || !reflect.DeepEqual(gotPtr.Tags, ptr.Tags) || !reflect.DeepEqual(gotPtr.Meta, ptr.Meta) ||
		!gotPtr.When.Equal(ptr.When) || gotPtr.Inner.A != "in" || gotPtr.Inner.B == nil || *gotPtr.Inner.B != 2.5 {
		t.Fatalf("rebuilt %+v", gotPtr)
	}
	if gotPtr.Err != (reTestValErr{Op: "read", N: 3}) {
		t.Fatalf("rebuilt Err %#v", gotPtr.Err)
	}
	if len(gotPtr.Causes) != 3 || gotPtr.Causes[0] != io.EOF || gotPtr.Causes[1] != nil || gotPtr.Causes[2].Error() != "plain" {
		t.Fatalf("rebuilt Causes %#v", gotPtr.Causes)
	}
	if gotPtr.Error() != ptr.Error() {
		t.Fatalf("Error() %q, want %q", gotPtr.Error(), ptr.Error())
	}

	// The value-receiver type is found both at the top and through the
	// field of the pointer one.
	var gotVal reTestValErr
	if !errors.As(re, &gotVal) || gotVal != (reTestValErr{Op: "read", N: 3}) {
		t.Fatalf("errors.As(remote, reTestValErr): %+v", gotVal)
	}
	sameAnswers(t, err, re)

	re = roundTrip(t, reTestCode(12), 0)
	var c reTestCode
	if !errors.As(re, &c) || c != 12 {
		t.Fatalf("non-struct type: %v", c)
	}

	re = roundTrip(t, fmt.Errorf("x: %w", &reTestHidden{secret: "s3"}), 0)
	var h *reTestHidden
	if !errors.As(re, &h) || h.secret != "s3" {
		t.Fatalf("type with its own JSON encoding: %+v", h)
	}
}

func TestErrorCodecUnregistered(t *testing.T) {
	err := &reTestUnregistered{x: 4}
	re := roundTrip(t, err, 2)
	if re.Type != "*proc.reTestUnregistered" || re.Message != "unregistered 4" {
		t.Fatalf("remote error %+v", re)
	}
	var u *reTestUnregistered
	if errors.As(re, &u) {
		t.Fatal("an unregistered type was rebuilt")
	}
	if len(re.Unwrap()) != 0 {
		t.Fatalf("Unwrap() = %v", re.Unwrap())
	}
	if got, want := re.Error(), `proc: worker "f" (pid 42), item 2: unregistered 4 (*proc.reTestUnregistered)`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	sameAnswers(t, err, re)
}

func TestErrorCodecJoin(t *testing.T) {
	err := errors.Join(
		fmt.Errorf("first: %w", pipeline.ErrSkip),
		&CodecError{What: "item 1", Err: errRETestUser},
		fmt.Errorf("both: %w and %w", io.EOF, &TimeoutError{Name: "f", What: "call", Limit: "1s"}),
	)
	re := roundTrip(t, err, 1)
	for _, target := range []error{pipeline.ErrSkip, errRETestUser, io.EOF} {
		if !errors.Is(re, target) {
			t.Errorf("errors.Is(remote, %v) = false", target)
		}
	}
	var ce *CodecError
	var te *TimeoutError
	if !errors.As(re, &ce) || ce.What != "item 1" || ce.Err != errRETestUser {
		t.Errorf("CodecError %+v", ce)
	}
	if !errors.As(re, &te) || *te != (TimeoutError{Name: "f", What: "call", Limit: "1s"}) {
		t.Errorf("TimeoutError %+v", te)
	}
	if re.Type != "*errors.joinError" || re.Message != err.Error() {
		t.Errorf("remote error %+v", re)
	}
	sameAnswers(t, err, re)

	// The first of two values of one type is the one errors.As finds.
	err = errors.Join(&CodecError{What: "a"}, &CodecError{What: "b"})
	re = roundTrip(t, err, 1)
	if !errors.As(re, &ce) || ce.What != "a" {
		t.Errorf("first CodecError %+v", ce)
	}
}

func TestErrorCodecPanic(t *testing.T) {
	stack := "goroutine 7 [running]:\nmain.work()\n\t/src/main.go:12 +0x1d\n"
	re := roundTrip(t, &panicError{value: "boom", stack: stack}, 4)
	if re.Type != "panic" || re.Message != "boom" || re.Stack != stack || re.PanicType != "string" || re.Index != 4 {
		t.Fatalf("remote error %+v", re)
	}
	if got, want := re.Error(), `proc: worker "f" (pid 42), item 4: panic: boom`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if len(re.Unwrap()) != 0 {
		t.Fatalf("Unwrap() = %v", re.Unwrap())
	}

	// A real panic through protect, with an error as its value.
	err := protect(func() error { panic(fmt.Errorf("gave up: %w", pipeline.ErrSkip)) })
	re = roundTrip(t, err, 0)
	if re.Type != "panic" || re.PanicType != "*fmt.wrapError" || !strings.Contains(re.Stack, "TestErrorCodecPanic") {
		t.Fatalf("remote error %+v", re)
	}
	if !errors.Is(re, pipeline.ErrSkip) {
		t.Fatal("a panic with an error value does not unwrap to it")
	}

	// A runtime error.
	err = protect(func() error {
		var m map[string]int
		m["x"] = 1 //lint:ignore SA5000 the panic is the point
		return nil
	})
	re = roundTrip(t, err, 0)
	if re.Type != "panic" || !strings.Contains(re.Message, "nil map") || re.PanicType == "" {
		t.Fatalf("remote error %+v", re)
	}
}

func TestErrorCodecPathError(t *testing.T) {
	err := fmt.Errorf("load: %w", &fs.PathError{Op: "open", Path: "/no/such", Err: fs.ErrNotExist})
	re := roundTrip(t, err, 0)
	if !errors.Is(re, fs.ErrNotExist) || !errors.Is(re, os.ErrNotExist) {
		t.Fatal("errors.Is(remote, fs.ErrNotExist) = false")
	}
	var pe *fs.PathError
	if !errors.As(re, &pe) || pe.Op != "open" || pe.Path != "/no/such" || pe.Err != fs.ErrNotExist {
		t.Fatalf("rebuilt %+v", pe)
	}
	sameAnswers(t, err, re)

	// A real one: *fs.PathError holding syscall.ENOENT, which matches
	// fs.ErrNotExist through Errno.Is.
	_, err = os.Open(filepath.Join(t.TempDir(), "missing"))
	re = roundTrip(t, err, 0)
	if !errors.Is(re, fs.ErrNotExist) {
		t.Fatal("errors.Is(remote, fs.ErrNotExist) = false for a real open error")
	}
	var errno syscall.Errno
	if !errors.As(re, &errno) || errno != syscall.ENOENT {
		t.Fatalf("errno %v", errno)
	}
	if !errors.As(re, &pe) || pe.Err != syscall.ENOENT {
		t.Fatalf("rebuilt %+v", pe)
	}
	if re.Type != "*fs.PathError" || !strings.HasSuffix(re.Error(), "(*fs.PathError)") {
		t.Fatalf("remote error %v", re)
	}
	sameAnswers(t, err, re)
}

func TestErrorCodecStdlibAndShm(t *testing.T) {
	_, numErr := strconv.Atoi("x1")
	cases := []error{
		numErr,
		os.NewSyscallError("mmap", syscall.ENOMEM),
		&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EXDEV},
		&shm.AcquireError{Count: 4, SegmentSize: 1 << 20, Held: 4, Waited: time.Second, Err: context.DeadlineExceeded},
		&shm.TooLargeError{Len: 10, SegmentSize: 8},
		&shm.RefError{Ref: shm.Ref{Pool: 1, Segment: 2, Gen: 3, Len: 4, DType: 5, Shape: []int{2, 3}}, Reason: "stale"},
		fmt.Errorf("parse: %w", shm.ErrMalformedRef),
		&pipeline.ItemError{Stage: "s", Epoch: 1, Index: 2, Err: pipeline.ErrSkip},
		&WorkerError{Name: "w", PID: 9, ExitCode: -1, Signal: "killed", Stderr: "oom\n"},
		&WorkerError{Name: "w", PID: 9, ExitCode: 2, MemoryLimit: 1 << 30},
		ErrClosed,
		fmt.Errorf("closing: %w", shm.ErrClosed),
	}
	for _, err := range cases {
		re := roundTrip(t, err, 0)
		sameAnswers(t, err, re)
		if re.Message != err.Error() {
			t.Errorf("message %q, want %q", re.Message, err.Error())
		}
	}
	re := roundTrip(t, cases[3], 0)
	var ae *shm.AcquireError
	if !errors.As(re, &ae) || !reflect.DeepEqual(ae, cases[3]) {
		t.Fatalf("rebuilt %+v", ae)
	}
	re = roundTrip(t, cases[5], 0)
	var refErr *shm.RefError
	if !errors.As(re, &refErr) || !reflect.DeepEqual(refErr, cases[5]) {
		t.Fatalf("rebuilt %+v", refErr)
	}
	if errors.Is(re, shm.ErrClosed) || errors.Is(re, ErrClosed) {
		t.Fatal("matches unrelated sentinels")
	}
}

func TestErrorCodecMalformed(t *testing.T) {
	codecName := "*github.com/ferrypipe/ferry/proc.CodecError"
	bodies := []string{
		"",
		"   ",
		"not json at all",
		"{",
		`{"type":"x","message":"trunc`,
		"[1,2,3]",
		`"a string"`,
		"null",
		"42",
		"{}",
		"\xff\xfe binary \x00",
		`{"type":5,"message":["x"],"index":"bad"}`,
		`{"type":"*main.E","message":"m","index":3,"is":["unknown.Sentinel",7,null,"io.EOF"],"as":[{"name":"*other/build.E","value":{"A":1}},3,null,{"name":"` + codecName + `","value":"garbage"},{"name":"` + codecName + `"},{"name":"` + codecName + `","value":{"What":7,"Err":"not an object"}},{"name":"` + codecName + `","value":{"What":"deep","Err":{"type":"t","message":"nested","sentinel":"gone","self":{"name":"nope","value":1},"is":[1],"as":"x"}}}]}`,
		`{"type":"t","message":"m","index":0,"as":[{"name":"` + codecName + `","value":{"Err":{"type":"a","message":"b","self":{"name":"` + codecName + `","value":{"Err":null}}}}}]}`,
		`{"type":"t","message":"m","index":0,"as":[{"name":"syscall.Errno","value":"x"},{"name":"syscall.Errno","value":2}]}`,
		`{"type":"t","message":"m","index":0,"as":[{"name":"*github.com/ferrypipe/ferry/proc.reTestPtrErr","value":{"Causes":[1,"x",{"type":"q"},null],"Meta":[1],"Code":"x"}}]}`,
	}
	for _, b := range bodies {
		re := decodeError("f", 1, []byte(b))
		if re == nil || re.Worker != "f" || re.PID != 1 {
			t.Fatalf("%q: %+v", b, re)
		}
		_ = re.Error()
		_ = errors.Is(re, io.EOF)
		var ce *CodecError
		errors.As(re, &ce)
	}

	re := decodeError("f", 1, []byte("not json at all"))
	if re.Message != "not json at all" || re.Index != -1 || re.Type != "" {
		t.Fatalf("garbage body: %+v", re)
	}
	if got, want := re.Error(), `proc: worker "f" (pid 1): not json at all`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	re = decodeError("f", 1, []byte(strings.Repeat("é", 10000)))
	if len(re.Message) > maxErrText+10 || !strings.HasSuffix(re.Message, "…") {
		t.Fatalf("long garbage body kept whole: %d bytes", len(re.Message))
	}

	// Unknown names are left out; what is known is rebuilt.
	re = decodeError("f", 1, []byte(bodies[12]))
	if re.Type != "*main.E" || re.Message != "m" || re.Index != 3 {
		t.Fatalf("remote error %+v", re)
	}
	if !errors.Is(re, io.EOF) {
		t.Fatal("a known sentinel next to unknown ones is lost")
	}
	var ce *CodecError
	if !errors.As(re, &ce) {
		t.Fatal("no CodecError rebuilt")
	}
	var deep *CodecError
	for _, e := range re.Unwrap() {
		if c, ok := e.(*CodecError); ok && c.What == "deep" {
			deep = c
		}
	}
	if deep == nil || deep.Err == nil || deep.Err.Error() != "nested" {
		t.Fatalf("the CodecError with a broken nested error: %+v", deep)
	}

	re = decodeError("f", 1, []byte(bodies[14]))
	var errno syscall.Errno
	if !errors.As(re, &errno) || errno != 2 {
		t.Fatalf("errno %v", errno)
	}

	// A reader of the original four-field body understands the new one.
	type oldErrorMsg struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Stack   string `json:"stack,omitempty"`
		Index   int64  `json:"index"`
	}
	var m oldErrorMsg
	body := encodeError(&panicError{value: 3, stack: "s"}, 8)
	if err := json.Unmarshal(body, &m); err != nil || m != (oldErrorMsg{Type: "panic", Message: "3", Stack: "s", Index: 8}) {
		t.Fatalf("old reader: %+v, %v", m, err)
	}
	// A new reader understands an old body.
	old, _ := json.Marshal(oldErrorMsg{Type: "*fs.PathError", Message: "open x: no such file", Index: 2})
	re = decodeError("f", 1, old)
	if re.Type != "*fs.PathError" || re.Message != "open x: no such file" || re.Index != 2 || len(re.Unwrap()) != 0 {
		t.Fatalf("old body: %+v", re)
	}
}

// reTestBadError's Error panics on a nil receiver.
type reTestBadError struct{ msg string }

func (e *reTestBadError) Error() string { return e.msg }

type reTestBadUnwrap struct{}

func (reTestBadUnwrap) Error() string   { return "bad unwrap" }
func (reTestBadUnwrap) Unwrap() error   { panic("unwrap") }
func (reTestBadUnwrap) Is(t error) bool { panic("is") }

func TestErrorCodecEncodeNeverPanics(t *testing.T) {
	for _, err := range []error{
		(*reTestBadError)(nil),
		fmt.Errorf("x: %w", (*reTestBadError)(nil)),
		reTestBadUnwrap{},
		(*CodecError)(nil),
		&CodecError{What: "x", Err: (*reTestBadError)(nil)},
		nil,
	} {
		body := encodeError(err, 0)
		if !json.Valid(body) {
			t.Fatalf("%T: %q", err, body)
		}
		_ = decodeError("f", 1, body).Error()
	}
}

func TestErrorCodecDeep(t *testing.T) {
	// A long chain and deeply nested typed errors stay bounded.
	var err error = io.EOF
	for i := range 1000 {
		if i%2 == 0 {
			err = &CodecError{What: strconv.Itoa(i), Err: err}
		} else {
			err = fmt.Errorf("%d: %w", i, err)
		}
	}
	body := encodeError(err, 0)
	if len(body) > 1<<20 {
		t.Fatalf("body of %d bytes", len(body))
	}
	re := decodeError("f", 1, body)
	if !errors.Is(re, io.EOF) {
		t.Fatal("errors.Is(remote, io.EOF) = false at the end of a long chain")
	}
	var ce *CodecError
	if !errors.As(re, &ce) || ce.What != "998" {
		t.Fatalf("top CodecError %+v", ce)
	}
}

type reTestAny struct{ V any }

func (reTestAny) Error() string { return "" }

type reTestUnexported struct {
	A int
	b int //lint:ignore U1000 registration must refuse it
}

func (*reTestUnexported) Error() string { return "" }

type reTestChan struct{ C chan int }

func (*reTestChan) Error() string { return "" }

type reTestNestedErr struct{ Items []struct{ Err error } }

func (*reTestNestedErr) Error() string { return "" }

type reTestHalf struct{ T reTestHalfT }
type reTestHalfT struct{}

func (reTestHalfT) MarshalJSON() ([]byte, error) { return []byte("1"), nil }
func (*reTestHalf) Error() string                { return "" }

type reTestFloatKey struct{ M map[float64]int }

func (*reTestFloatKey) Error() string { return "" }

type reTestIface interface{ error }

type reTestRecursive struct {
	Name string
	Next *reTestRecursive
}

func (*reTestRecursive) Error() string { return "" }

func TestErrorCodecRegistration(t *testing.T) {
	mustPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			t.Helper()
			v := recover()
			if v == nil {
				t.Errorf("%s: no panic", name)
				return
			}
			if !strings.Contains(fmt.Sprint(v), want) {
				t.Errorf("%s: panic %q, want it to mention %q", name, v, want)
			}
		}()
		f()
	}
	mustPanic("any field", "field V has interface type interface {}", RegisterErrorType[reTestAny])
	mustPanic("unexported field", "field b is unexported", RegisterErrorType[*reTestUnexported])
	mustPanic("chan field", "field C has type chan int", RegisterErrorType[*reTestChan])
	mustPanic("nested error", "field Items.Err has type error", RegisterErrorType[*reTestNestedErr])
	mustPanic("half marshaler", "only one of json.Marshaler", RegisterErrorType[*reTestHalf])
	mustPanic("float map key", "key type float64", RegisterErrorType[*reTestFloatKey])
	mustPanic("interface", "interface type", RegisterErrorType[reTestIface])
	mustPanic("nil sentinel", "nil error", func() { RegisterErrors(nil) })
	mustPanic("non-comparable sentinel", "not comparable", func() { RegisterErrors(reTestSlice{1}) })
	mustPanic("same type and message", "RegisterNamedError", func() {
		RegisterErrors(errors.New("remoteerr test: dup"), errors.New("remoteerr test: dup"))
	})
	mustPanic("same name", "already registered", func() { RegisterNamedError("io.EOF", errors.New("other")) })
	if loadRegistry().byKey["*errors.errorString: remoteerr test: dup"] != nil {
		t.Error("a registration that panicked left some of its errors registered")
	}

	// Registering again is a no-op; a recursive type is fine.
	n := len(loadRegistry().sentinels)
	RegisterErrors(io.EOF, errRETestUser)
	RegisterNamedError("another name", io.EOF)
	if len(loadRegistry().sentinels) != n {
		t.Error("registering a sentinel again added it")
	}
	RegisterErrorType[*CodecError]()
	RegisterErrorType[*reTestRecursive]()
	err := &reTestRecursive{Name: "a", Next: &reTestRecursive{Name: "b"}}
	var got *reTestRecursive
	if !errors.As(roundTrip(t, err, 0), &got) || !reflect.DeepEqual(got, err) {
		t.Fatalf("recursive type: %+v", got)
	}
}

type reTestSlice []int

func (reTestSlice) Error() string { return "slice" }

// concurrentErrs are registered by TestErrorCodecConcurrent: the same
// values in every run of it (registering a value again does nothing).
var concurrentErrs = func() []error {
	errs := make([]error, 50)
	for j := range errs {
		errs[j] = fmt.Errorf("concurrent %d", j)
	}
	return errs
}()

func TestErrorCodecConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				if i == 0 && j%10 == 0 {
					RegisterNamedError(fmt.Sprintf("concurrent-%d", j), concurrentErrs[j])
				}
				err := fmt.Errorf("%d: %w", j, &CodecError{What: "x", Err: pipeline.ErrSkip})
				re := decodeError("f", 1, encodeError(err, int64(j)))
				if !errors.Is(re, pipeline.ErrSkip) {
					t.Error("lost ErrSkip")
					return
				}
			}
		}()
	}
	wg.Wait()
}
