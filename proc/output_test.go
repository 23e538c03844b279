package proc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// outRecord is a record as a parent's handler received it.
type outRecord struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	Pre   []slog.Attr // from the logger's With
	Attrs []slog.Attr
}

// outRecorder is a slog.Handler that keeps what it is given.
type outRecorder struct {
	mu   *sync.Mutex
	recs *[]outRecord
	pre  []slog.Attr
}

func newOutRecorder() *outRecorder {
	return &outRecorder{mu: new(sync.Mutex), recs: new([]outRecord)}
}

func (h *outRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *outRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &outRecorder{h.mu, h.recs, append(slices.Clone(h.pre), as...)}
}
func (h *outRecorder) WithGroup(string) slog.Handler { panic("not used") }
func (h *outRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := outRecord{Time: r.Time, Level: r.Level, Msg: r.Message, Pre: h.pre}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs = append(rec.Attrs, a)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec)
	return nil
}

func (h *outRecorder) records() []outRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.recs)
}

// messages returns the messages of the records, which must all be plain
// output lines, logged at INFO.
func (h *outRecorder) messages(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range h.records() {
		if r.Level != slog.LevelInfo || !strings.HasPrefix(r.Msg, "worker: ") {
			t.Fatalf("not a plain line: %+v", r)
		}
		out = append(out, strings.TrimPrefix(r.Msg, "worker: "))
	}
	return out
}

// describe renders attributes as slog's handlers see them, with their kind:
// empty ones and empty groups left out, errors by their message and other
// values by their JSON.
func describe(as []slog.Attr) string {
	var parts []string
	for _, a := range as {
		v := a.Value.Resolve()
		if a.Key == "" && v.Kind() == slog.KindAny && v.Any() == nil {
			continue
		}
		var s string
		switch v.Kind() {
		case slog.KindString:
			s = "s:" + strconv.Quote(v.String())
		case slog.KindInt64:
			s = "i:" + strconv.FormatInt(v.Int64(), 10)
		case slog.KindUint64:
			s = "u:" + strconv.FormatUint(v.Uint64(), 10)
		case slog.KindFloat64:
			s = "f:" + strconv.FormatFloat(v.Float64(), 'g', -1, 64)
		case slog.KindBool:
			s = "b:" + strconv.FormatBool(v.Bool())
		case slog.KindDuration:
			s = "d:" + v.Duration().String()
		case slog.KindTime:
			s = "t:" + v.Time().UTC().Format(time.RFC3339Nano)
		case slog.KindGroup:
			g := describe(v.Group())
			if g == "" {
				continue
			}
			s = "{" + g + "}"
		default:
			if err, ok := v.Any().(error); ok {
				s = "e:" + strconv.Quote(err.Error())
			} else {
				j, err := json.Marshal(v.Any())
				if err != nil {
					s = "?" + err.Error()
				} else {
					s = "a:" + string(j)
				}
			}
		}
		parts = append(parts, a.Key+"="+s)
	}
	return strings.Join(parts, " ")
}

type outValuer struct{}

func (outValuer) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestOutputRecordRoundTrip(t *testing.T) {
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec).With("worker", "w.x", "pid", 7))
	h := workerLogHandler(o, slog.Level(-100))

	when := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))
	attrs := []slog.Attr{
		slog.String("s", "hé\n\"x\x1eferry-log {"),
		slog.String("empty", ""),
		slog.Int("i", -42),
		slog.Int64("big", math.MaxInt64),
		slog.Int64("small", math.MinInt64),
		slog.Uint64("u", math.MaxUint64),
		slog.Float64("f", 1.5),
		slog.Float64("tiny", 5e-324),
		slog.Float64("nan", math.NaN()),
		slog.Float64("inf", math.Inf(1)),
		slog.Float64("-inf", math.Inf(-1)),
		slog.Bool("b", true),
		slog.Duration("d", 1500*time.Millisecond),
		slog.Time("t", when),
		slog.Group("g", slog.String("a", "x"), slog.Group("h", slog.Int("n", 1), slog.Any("e", io.EOF))),
		slog.Any("err", errors.New("boom")),
		slog.Any("wrapped", fmt.Errorf("opening: %w", os.ErrNotExist)),
		slog.Any("m", map[string]any{"x": 1, "y": []int{1, 2}, "z": "<&>"}),
		slog.Any("big any", uint64(math.MaxUint64)),
		slog.Any("nil", nil),
		slog.Any("lv", outValuer{}),
		slog.Group("", slog.String("inline", "y")),
		slog.Group("nothing"),
		{},
	}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.Level(2), slog.Level(-8), slog.Level(12)}
	for _, l := range levels {
		r := slog.NewRecord(when, l, "message at "+l.String(), 0)
		r.AddAttrs(attrs...)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	// Through a logger, WithAttrs and WithGroup.
	slog.New(h).With("a", 1).WithGroup("G").With("b", 2).WithGroup("H").Warn("nested", "c", 3)
	slog.New(h).WithGroup("G").Info("empty group")
	slog.New(h).Info("no attrs")

	got := rec.records()
	if len(got) != len(levels)+3 {
		t.Fatalf("%d records, want %d: %+v", len(got), len(levels)+3, got)
	}
	want := describe(attrs)
	t.Logf("attrs: %s", want)
	for i, l := range levels {
		g := got[i]
		if g.Level != l || g.Msg != "message at "+l.String() || !g.Time.Equal(when) {
			t.Errorf("record %d: %v %q %v, want %v %q %v", i, g.Level, g.Msg, g.Time, l, "message at "+l.String(), when)
		}
		if d := describe(g.Attrs); d != want {
			t.Errorf("record %d attrs:\n got %s\nwant %s", i, d, want)
		}
		if d := describe(g.Pre); d != `worker=s:"w.x" pid=i:7` {
			t.Errorf("record %d: logger's attrs %s", i, d)
		}
	}
	for i, w := range []struct {
		level slog.Level
		msg   string
		attrs string
	}{
		{slog.LevelWarn, "nested", `a=i:1 G={b=i:2 H={c=i:3}}`},
		{slog.LevelInfo, "empty group", ``},
		{slog.LevelInfo, "no attrs", ``},
	} {
		g := got[len(levels)+i]
		if g.Level != w.level || g.Msg != w.msg || describe(g.Attrs) != w.attrs {
			t.Errorf("got %v %q %s, want %v %q %s", g.Level, g.Msg, describe(g.Attrs), w.level, w.msg, w.attrs)
		}
		if time.Since(g.Time) > time.Hour || g.Time.After(time.Now()) {
			t.Errorf("record %q: time %v", g.Msg, g.Time)
		}
	}
	if tail := o.Tail(); tail != "" {
		t.Errorf("records in the tail: %q", tail)
	}
	if o.CrashedOutOfMemory() {
		t.Error("CrashedOutOfMemory")
	}
}

func TestOutputRecordKinds(t *testing.T) {
	// The kinds a parent gets: an error is an error, a value without JSON
	// its text.
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	slog.New(workerLogHandler(o, nil)).Info("m", "err", io.ErrUnexpectedEOF, "ch", make(chan int), "fn", func() {})
	g := rec.records()[0].Attrs
	if err, ok := g[0].Value.Any().(error); !ok || err.Error() != io.ErrUnexpectedEOF.Error() {
		t.Errorf("err: %#v", g[0].Value.Any())
	}
	for _, a := range g[1:] {
		if a.Value.Kind() != slog.KindString || a.Value.String() == "" {
			t.Errorf("%s: %v %q", a.Key, a.Value.Kind(), a.Value)
		}
	}
}

func TestOutputLevelFilter(t *testing.T) {
	var calls [][]byte
	w := writerFunc(func(b []byte) (int, error) {
		calls = append(calls, slices.Clone(b))
		return len(b), nil
	})
	l := slog.New(workerLogHandler(w, slog.LevelWarn))
	l.Debug("d")
	l.Info("i")
	l.Warn("w", "k", strings.Repeat("v", 10000))
	l.Error("e")
	if len(calls) != 2 {
		t.Fatalf("%d writes, want one per record of Warn or above: %q", len(calls), calls)
	}
	for _, c := range calls {
		if !bytes.HasPrefix(c, []byte(logMarker)) || bytes.IndexByte(c, '\n') != len(c)-1 {
			t.Errorf("write %q is not one marker line", c)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestOutputRecordByteByByte(t *testing.T) {
	var buf bytes.Buffer
	slog.New(workerLogHandler(&buf, nil)).Error("split", "k", "v")
	buf.WriteString("plain\n")
	slog.New(workerLogHandler(&buf, nil)).Info("again")
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	for _, c := range buf.Bytes() {
		o.Write([]byte{c})
	}
	got := rec.records()
	if len(got) != 3 || got[0].Msg != "split" || got[0].Level != slog.LevelError || describe(got[0].Attrs) != `k=s:"v"` ||
		got[1].Msg != "worker: plain" || got[2].Msg != "again" {
		t.Fatalf("%+v", got)
	}
	if o.Tail() != "plain\n" {
		t.Errorf("tail %q", o.Tail())
	}
}

func TestOutputMalformedRecordIsAPlainLine(t *testing.T) {
	long := logMarker + `{"level":0,"msg":"` + strings.Repeat("y", maxRecord) + `"}`
	for _, line := range []string{
		logMarker + "{not json",
		logMarker + `{"level":0}`,
		logMarker + `{"msg":"no level"}`,
		logMarker + `{"level":0,"msg":"x"} trailing`,
		logMarker + `{"level":0,"msg":"x","attrs":[{"k":"a","t":"zz","v":1}]}`,
		logMarker + `{"level":0,"msg":"x","attrs":[{"k":"a","t":"i","v":"one"}]}`,
		logMarker + `{"level":0,"msg":"x","time":"yesterday"}`,
		logMarker + `{"level":99999999999,"msg":"x"}`,
		logMarker,
		"\x1eferry-lo",
		"\x1eferry-log{}",
		"\x1e",
		long,
	} {
		rec := newOutRecorder()
		o := newWorkerOutput(slog.New(rec))
		io.WriteString(o, "before\n"+line+"\nafter\n")
		got := strings.Join(rec.messages(t), "")
		if want := "before" + line + "after"; got != want {
			t.Errorf("%.40q: logged %.80q…, want %.80q…", line, got, want)
		}
		if tail := o.Tail(); len(line) < tailHead && tail != "before\n"+line+"\nafter\n" {
			t.Errorf("%.40q: tail %q", line, tail)
		}
		// Cut by the end of the output.
		rec = newOutRecorder()
		o = newWorkerOutput(slog.New(rec))
		io.WriteString(o, line)
		o.Close()
		if got := strings.Join(rec.messages(t), ""); got != line {
			t.Errorf("%.40q at the end: logged %.80q", line, got)
		}
	}
}

func TestOutputRecordSizeIsBounded(t *testing.T) {
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	var sizes []int
	w := writerFunc(func(b []byte) (int, error) {
		sizes = append(sizes, len(b))
		return o.Write(b)
	})
	l := slog.New(workerLogHandler(w, nil))
	l.Info(strings.Repeat("m", 1<<20), "big", strings.Repeat("é", 1<<20), "n", 1)
	var many []any
	for i := range 30000 {
		many = append(many, fmt.Sprint("k", i), i)
	}
	l.Info("many", many...)
	got := rec.records()
	if len(got) != 2 {
		t.Fatalf("%d records, %d writes of %v bytes", len(got), len(sizes), sizes)
	}
	for _, s := range sizes {
		if s > len(logMarker)+maxRecord+1 {
			t.Errorf("a write of %d bytes", s)
		}
	}
	if !strings.HasPrefix(got[0].Msg, "mmmm") || !strings.HasSuffix(got[0].Msg, fmt.Sprintf("… (%d bytes)", 1<<20)) || len(got[0].Msg) > 5<<10 {
		t.Errorf("message of %d bytes: %.20q…%q", len(got[0].Msg), got[0].Msg, got[0].Msg[max(0, len(got[0].Msg)-40):])
	}
	if a := got[0].Attrs; len(a) != 2 || !utf8.ValidString(a[0].Value.String()) || !strings.HasSuffix(a[0].Value.String(), fmt.Sprintf("… (%d bytes)", 2<<20)) || a[1].Value.Int64() != 1 {
		t.Errorf("attrs %.200v", a)
	}
	if a := got[1].Attrs; len(a) != 1 || a[0].Key != "ferry.truncated" {
		t.Errorf("attrs %.200v", a)
	}
}

func TestOutputLongLineIsLoggedInPieces(t *testing.T) {
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	line := "a" + strings.Repeat("é", 100<<10) + "z" // pieces end mid-rune unless cut back
	for i := 0; i < len(line); i += 1000 {
		io.WriteString(o, line[i:min(i+1000, len(line))])
	}
	io.WriteString(o, "\nshort\n")
	got := rec.records()
	var all string
	for i, r := range got[:len(got)-1] {
		p := strings.TrimPrefix(r.Msg, "worker: ")
		all += p
		if len(p) > maxOutputLine || !utf8.ValidString(p) {
			t.Errorf("piece %d: %d bytes, valid UTF-8 %v", i, len(p), utf8.ValidString(p))
		}
		if d := describe(r.Attrs); d != fmt.Sprintf("line_part=i:%d", i+1) {
			t.Errorf("piece %d: %s", i, d)
		}
	}
	if all != line {
		t.Errorf("pieces make %d bytes, want the %d of the line", len(all), len(line))
	}
	if len(got) != 5 {
		t.Errorf("%d records", len(got))
	}
	if last := got[len(got)-1]; last.Msg != "worker: short" || len(last.Attrs) != 0 {
		t.Errorf("%+v", last)
	}
	// Before the end: what was whole pieces is logged, not the rest.
	rec = newOutRecorder()
	o = newWorkerOutput(slog.New(rec))
	io.WriteString(o, strings.Repeat("x", maxOutputLine+10))
	if n := len(rec.records()); n != 1 {
		t.Errorf("%d records before the end of the line", n)
	}
	o.Close()
	if got := rec.messages(t); len(got) != 2 || got[1] != "xxxxxxxxxx" {
		t.Errorf("%d records after Close", len(got))
	}
}

// checkBounded checks the buffers of o against their bounds.
func checkBounded(t *testing.T, o *workerOutput) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if cap(o.line) > maxOutputLine || cap(o.scratch) > maxOutputLine+maxHeadline || cap(o.carry) > maxHeadline ||
		cap(o.rec) > 2*maxRecord || cap(o.head) > tailHead || len(o.ring) > tailRing+1 || len(o.headline) > maxHeadline {
		t.Errorf("buffers: line %d, scratch %d, carry %d, rec %d, head %d, ring %d, headline %d",
			cap(o.line), cap(o.scratch), cap(o.carry), cap(o.rec), cap(o.head), len(o.ring), len(o.headline))
	}
}

// splitTail parses a Tail with an omission: the headline block, the head,
// the count and the end.
func splitTail(t *testing.T, tail string) (headline, first string, omitted int64, last string) {
	t.Helper()
	const note = "\n… (the line above is from the omitted part) …\n"
	if i := strings.Index(tail, note); i >= 0 {
		headline, tail = tail[:i], tail[i+len(note):]
	}
	m := regexp.MustCompile(`(?m)^… (\d+) bytes omitted …\n`).FindAllStringSubmatchIndex(tail, -1)
	if len(m) != 1 {
		t.Fatalf("%d omission lines in the tail", len(m))
	}
	omitted, _ = strconv.ParseInt(tail[m[0][2]:m[0][3]], 10, 64)
	return headline, tail[:m[0][0]], omitted, tail[m[0][1]:]
}

// accounts reports whether first, omitted and last make up the total bytes
// of an output, of which isPrefix tells the prefixes; first may end with a
// newline that Tail added.
func accounts(first string, omitted int64, last string, total int64, isPrefix func(string) bool) bool {
	if !isPrefix(first) {
		first = strings.TrimSuffix(first, "\n")
		if !isPrefix(first) {
			return false
		}
	}
	return int64(len(first))+omitted+int64(len(last)) == total
}

func TestOutputTailOfAHugeLine(t *testing.T) {
	const size = 20 << 20
	huge := make([]byte, size)
	for i := range huge {
		huge[i] = 'a' + byte(i%26)
	}
	copy(huge, "THE-START")
	copy(huge[size-7:], "THE-END")
	for _, chunk := range []int{size, 4096, 1000} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			var logged, records int
			o := newWorkerOutput(slog.New(countHandler(func(r slog.Record) { logged += len(r.Message) - len("worker: "); records++ })))
			for i := 0; i < size; i += chunk {
				o.Write(huge[i:min(i+chunk, size)])
			}
			o.Close()
			checkBounded(t, o)
			if logged != size || records != (size+maxOutputLine-1)/maxOutputLine {
				t.Errorf("logged %d bytes in %d records", logged, records)
			}
			tail := o.Tail()
			headline, first, omitted, last := splitTail(t, tail)
			if headline != "" || first != string(huge[:tailHead])+"\n" || last != string(huge[size-tailRing:]) || omitted != size-tailHead-tailRing {
				t.Errorf("tail of %d bytes: headline %q, %d bytes, %d omitted, %d bytes", len(tail), headline, len(first), omitted, len(last))
			}
			if len(tail) > tailHead+tailRing+64 || !strings.HasPrefix(tail, "THE-START") || !strings.HasSuffix(tail, "THE-END") {
				t.Errorf("tail of %d bytes: %.20q…%q", len(tail), tail, tail[len(tail)-20:])
			}
		})
	}
}

type countHandler func(slog.Record)

func (h countHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h countHandler) WithGroup(string) slog.Handler                 { return h }
func (h countHandler) Handle(_ context.Context, r slog.Record) error { h(r); return nil }

func TestOutputHugeLineAllocatesLittle(t *testing.T) {
	huge := bytes.Repeat([]byte("0123456789abcdef"), (20<<20)/16)
	o := newWorkerOutput(nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < len(huge); i += 32 << 10 {
		o.Write(huge[i : i+32<<10])
	}
	io.WriteString(o, "fatal error: runtime: out of memory\n")
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 2<<20 {
		t.Errorf("%d bytes allocated for 20 MiB of output", n)
	}
	checkBounded(t, o)
	if !o.CrashedOutOfMemory() {
		t.Error("not out of memory")
	}
}

// goroutineDump is n bytes like the end of a Go crash.
func goroutineDump(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "goroutine %d gp=0xc000008d20 m=nil [chan receive]:\nruntime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)\n\t/usr/local/go/src/runtime/proc.go:462 +0xce\ncreated by main.main in goroutine 1\n\t/src/main.go:%d +0x1a\n\n", i, i)
	}
	return b.String()
}

func TestOutputHugeLineThenCrash(t *testing.T) {
	// The case that produced a 6.3 MB WorkerError: 20 MB without a newline,
	// then the runtime's crash on the same line.
	const headline = "fatal error: runtime: out of memory"
	dump := goroutineDump(100 << 10)
	xs := bytes.Repeat([]byte{'x'}, 20<<20)
	for _, size := range []int{maxOutputLine, 3 * maxOutputLine, 20 << 20} {
		// Put the headline at, and across, the end of a piece of the line.
		for k := range 2*len(headline) + 2 {
			if size == 20<<20 && k != 0 && k != len(headline)/2 {
				continue
			}
			pre := size - k
			o := newWorkerOutput(nil)
			o.Write(xs[:pre])
			io.WriteString(o, headline+"\n\n"+dump)
			o.Close()
			checkBounded(t, o)
			tail := o.Tail()
			h, first, omitted, last := splitTail(t, tail)
			total := int64(pre + len(headline) + 2 + len(dump))
			if h != headline || !o.CrashedOutOfMemory() {
				t.Fatalf("%d bytes before it: headline %q, out of memory %v", pre, h, o.CrashedOutOfMemory())
			}
			allX := func(s string) bool { return len(s) <= pre && strings.Trim(s, "x") == "" }
			if !accounts(first, omitted, last, total, allX) || !strings.HasSuffix(dump, last) || len(tail) > tailHead+tailRing+64+len(headline)+64 {
				t.Fatalf("%d bytes before it: tail of %d bytes, %d+%d+%d bytes for %d", pre, len(tail), len(first), omitted, len(last), total)
			}
		}
	}
}

func TestOutputHeadlineInTheMiddle(t *testing.T) {
	lines := func(from, n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "line %06d\n", from+i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, out, headline string
	}{
		{"panic", lines(0, 2000) + "panic: boom\n\n" + goroutineDump(200<<10), "panic: boom"},
		{"panic mid-line", lines(0, 2000) + "no newline, then panic: boom\n\n" + goroutineDump(200<<10), "panic: boom"},
		{"signal", lines(0, 2000) + "SIGSEGV: segmentation violation\nPC=0x0 m=0 sigcode=1\n" + goroutineDump(200<<10), "SIGSEGV: segmentation violation"},
		{"tsan", lines(0, 2000) + "==123==ERROR: ThreadSanitizer failed to allocate 0x1000 (4096) bytes at address 7f0000 (errno: 12)\n" + lines(9000, 10000),
			"==123==ERROR: ThreadSanitizer failed to allocate 0x1000 (4096) bytes at address 7f0000 (errno: 12)"},
		{"the last one", lines(0, 2000) + "panic: first\n" + lines(0, 10) + "fatal error: second\n" + goroutineDump(200<<10), "fatal error: second"},
		{"cut", lines(0, 2000) + "panic: " + strings.Repeat("é", 2000) + "\n" + goroutineDump(200<<10), "panic: " + strings.Repeat("é", (maxHeadline-7)/2) + " …"},
		{"in the head", lines(0, 10) + "panic: early\n" + lines(0, 20000), ""},
		{"in the end", lines(0, 20000) + "panic: late\n" + lines(0, 100), ""},
		{"none", lines(0, 20000), ""},
		{"not at the start", lines(0, 2000) + "SIGNAL SIGSEGV is not a headline here\n" + lines(0, 20000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newWorkerOutput(nil)
			io.WriteString(o, tc.out)
			tail := o.Tail()
			h, first, omitted, last := splitTail(t, tail)
			if h != tc.headline {
				t.Errorf("headline %q, want %q", h, tc.headline)
			}
			isPrefix := func(s string) bool { return strings.HasPrefix(tc.out, s) }
			if first+last == "" || !strings.HasSuffix(tc.out, last) || !accounts(first, omitted, last, int64(len(tc.out)), isPrefix) {
				t.Errorf("tail of %d bytes: %d+%d+%d bytes of %d", len(tail), len(first), omitted, len(last), len(tc.out))
			}
		})
	}
}

func TestOutputManyShortLines(t *testing.T) {
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec).With("worker", "w"))
	var all strings.Builder
	const n = 100000
	for i := range n {
		line := fmt.Sprintf("line %06d\n", i)
		all.WriteString(line)
		io.WriteString(o, line)
	}
	if got := rec.records(); len(got) != n || got[n-1].Msg != "worker: line 099999" || describe(got[n-1].Pre) != `worker=s:"w"` {
		t.Fatalf("%d records, the last %+v", len(got), got[len(got)-1])
	}
	tail := o.Tail()
	_, first, omitted, last := splitTail(t, tail)
	out := all.String()
	if !strings.HasPrefix(out, first) || !strings.HasSuffix(out, last) ||
		!accounts(first, omitted, last, int64(len(out)), func(s string) bool { return strings.HasPrefix(out, s) }) {
		t.Fatalf("%d+%d+%d bytes of %d", len(first), omitted, len(last), len(out))
	}
	// Whole lines, as many as fit.
	const l = len("line 000000\n")
	if len(first) != tailHead/l*l || len(last) != tailRing/l*l ||
		!strings.HasPrefix(first, "line 000000\n") || !strings.HasSuffix(last, "line 099999\n") {
		t.Errorf("head of %d bytes, end of %d: %q … %q", len(first), len(last), first[:24], last[len(last)-24:])
	}
	if len(tail) > tailHead+tailRing+64 {
		t.Errorf("tail of %d bytes", len(tail))
	}
	// Up to the limit, all of it.
	o = newWorkerOutput(nil)
	io.WriteString(o, out[:tailHead+tailRing])
	if o.Tail() != out[:tailHead+tailRing] {
		t.Error("output that fits is not whole")
	}
	io.WriteString(o, "!")
	if _, _, omitted, _ := splitTail(t, o.Tail()); omitted != int64(l) {
		t.Errorf("omitted %d, want a line", omitted)
	}
	// One byte too many, but it is the newline after the head: all of it.
	out = strings.Repeat("h", tailHead) + "\n" + strings.Repeat("r", tailRing-1) + "\n"
	o = newWorkerOutput(nil)
	io.WriteString(o, out)
	if o.Tail() != out {
		t.Errorf("%d bytes for %d", len(o.Tail()), len(out))
	}
}

func TestOutputTailCutsAtLineEnds(t *testing.T) {
	line := strings.Repeat("a", 99) + "\n"
	for _, split := range []bool{false, true} {
		o := newWorkerOutput(nil)
		// The head ends with a whole line but for its newline.
		out := strings.Repeat(line, tailHead/len(line)) + strings.Repeat("y", tailHead%len(line))
		io.WriteString(o, out)
		rest := "\n" + strings.Repeat(line, 1000) + "z"
		if split {
			o.Write(nil)
			io.WriteString(o, rest[:1])
			io.WriteString(o, rest[1:])
		} else {
			io.WriteString(o, rest)
		}
		out += rest
		_, first, omitted, last := splitTail(t, o.Tail())
		if !strings.HasSuffix(first, "yyy\n") || len(first) != tailHead+1 || last != out[len(out)-len(last):] || !strings.HasPrefix(last, "a") ||
			!accounts(first, omitted, last, int64(len(out)), func(s string) bool { return strings.HasPrefix(out, s) }) {
			t.Errorf("split %v: %d bytes …%q, %d omitted, %d bytes %.10q…", split, len(first), first[len(first)-5:], omitted, len(last), last)
		}
	}
}

func TestOutputClose(t *testing.T) {
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	io.WriteString(o, "one\ntwo")
	if got := rec.messages(t); !slices.Equal(got, []string{"one"}) {
		t.Fatalf("%q", got)
	}
	o.Close()
	o.Close()
	io.WriteString(o, "\x1eferry")
	o.Close()
	if got := rec.messages(t); !slices.Equal(got, []string{"one", "two", "\x1eferry"}) {
		t.Fatalf("%q", got)
	}
	if o.Tail() != "one\ntwo\x1eferry" {
		t.Errorf("tail %q", o.Tail())
	}
	// No logger: kept all the same.
	o = newWorkerOutput(nil)
	io.WriteString(o, "x\n")
	slog.New(workerLogHandler(o, nil)).Info("dropped")
	o.Close()
	if o.Tail() != "x\n" {
		t.Errorf("tail %q", o.Tail())
	}
}

func TestOutputOutOfMemoryLines(t *testing.T) {
	for _, tc := range []struct {
		out string
		oom bool
	}{
		{"fatal error: runtime: out of memory\n\nruntime stack:\n", true},
		{"runtime: out of memory: cannot allocate 8388608-byte block (3997696 in use)\nfatal error: out of memory\n", true},
		{"fatal error: out of memory allocating heap arena metadata\n", true},
		{"fatal error: runtime: cannot allocate memory\n", true},
		{"==1==ERROR: ThreadSanitizer: out of memory: failed to allocate 0x800000 (8388608) bytes of TracePart (error code: 12)\n", true},
		{"fatal error: runtime: cannot map pages in arena address space\n", false},
		{"xxxxfatal error: runtime: out of memory\n", true},
		{"==6279==ERROR: ThreadSanitizer failed to allocate 0x8000000 (134217728) bytes at address 218008000000 (errno: 12)\n", true},
		{"==1==ERROR: ThreadSanitizer: out of memory: failed to allocate 0x1000 (4096) bytes of x (error code: 12)\n", true},
		{"FATAL: ThreadSanitizer: internal allocator is out of memory trying to allocate 0x10 bytes\n", true},
		{"==1==ERROR: ThreadSanitizer failed to allocate 0x1000 (4096) bytes at address 1000 (errno: 17)\n", false},
		{"fatal error: all goroutines are asleep - deadlock!\n", false},
		{"panic: fatal error: out of memory\n", false},
		{"fatal error: runtime: out of memory\n" + "panic: later\n", false},
		{"out of memory\n", false},
		{"", false},
	} {
		o := newWorkerOutput(nil)
		io.WriteString(o, tc.out)
		if o.CrashedOutOfMemory() != tc.oom {
			t.Errorf("%q: out of memory %v", tc.out, !tc.oom)
		}
	}
	// A log record is no crash.
	o := newWorkerOutput(nil)
	slog.New(workerLogHandler(o, nil)).Error("fatal error: runtime: out of memory")
	if o.CrashedOutOfMemory() {
		t.Error("a record is taken for a crash")
	}
}

func TestOutputConcurrentWriters(t *testing.T) {
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	const writers, lines, loggers, records = 8, 2000, 2, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(o, "w%d-%d\n", w, i)
			}
		})
	}
	for w := range loggers {
		wg.Go(func() {
			l := slog.New(workerLogHandler(o, nil)).With("logger", w)
			for i := range records {
				l.Info("record", "i", i)
			}
		})
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = o.Tail()
			_ = o.CrashedOutOfMemory()
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
	o.Close()
	seen := map[string]int{}
	var total int
	for _, r := range rec.records() {
		if r.Msg == "record" {
			seen[describe(r.Attrs)]++
		} else {
			seen[r.Msg]++
			total += len(r.Msg) - len("worker: ") + 1
		}
	}
	if len(seen) != writers*lines+loggers*records {
		t.Errorf("%d distinct records, want %d", len(seen), writers*lines+loggers*records)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%q logged %d times", k, n)
		}
	}
	o.mu.Lock()
	n := o.n
	o.mu.Unlock()
	if n != int64(total) {
		t.Errorf("%d bytes of plain output, want %d", n, total)
	}
}

func TestOutputRecordsThroughAPipe(t *testing.T) {
	// Records bigger than PIPE_BUF from concurrent goroutines arrive whole:
	// each is one write on the file.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	rec := newOutRecorder()
	o := newWorkerOutput(slog.New(rec))
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(o, pr)
		copied <- err
	}()
	l := slog.New(workerLogHandler(pw, nil))
	const goroutines, records = 4, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range records {
				l.Info("big", "g", g, "i", i, "pad", strings.Repeat(string(rune('a'+g)), 20<<10))
			}
		})
	}
	wg.Wait()
	pw.Close()
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	o.Close()
	got := rec.records()
	if len(got) != goroutines*records {
		t.Fatalf("%d records, want %d", len(got), goroutines*records)
	}
	for _, r := range got {
		if r.Msg != "big" || len(r.Attrs) != 3 || r.Attrs[2].Value.String() != strings.Repeat(string(rune('a'+r.Attrs[0].Value.Int64())), 20<<10) {
			t.Fatalf("record %q with %d attrs", r.Msg, len(r.Attrs))
		}
	}
}

func TestOutputWorkerLogLevel(t *testing.T) {
	for _, tc := range []struct {
		s    string
		l    slog.Level
		good bool
	}{
		{"DEBUG", slog.LevelDebug, true},
		{"warn+2", slog.LevelWarn + 2, true},
		{"-8", -8, true},
		{" 12 ", 12, true},
		{"bogus", 0, false},
		{"", 0, false},
	} {
		l, ok := parseLogLevel(tc.s)
		if ok != tc.good || ok && l != tc.l {
			t.Errorf("%q: %v %v", tc.s, l, ok)
		}
	}
	var lv slog.LevelVar
	lv.Set(slog.LevelWarn)
	for _, tc := range []struct {
		log  *slog.Logger
		want string
	}{
		{nil, envWorkerLogLevel + "=2147483647"},
		{slog.New(slog.NewTextHandler(io.Discard, nil)), envWorkerLogLevel + "=0"},
		{slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: &lv})), envWorkerLogLevel + "=4"},
		{slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})), envWorkerLogLevel + "=-4"},
		{slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.Level(100)})), envWorkerLogLevel + "=2147483647"},
		{slog.New(newOutRecorder()), envWorkerLogLevel + "=-8"},
	} {
		if got := workerLogLevelEnv(tc.log); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}

	prev, flags, out := slog.Default(), log.Flags(), log.Writer()
	t.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetOutput(out)
		log.SetFlags(flags)
	})
	ctx := context.Background()
	t.Setenv(envWorkerLogLevel, "")
	installWorkerLog()
	if l := slog.Default(); l.Enabled(ctx, slog.LevelDebug) || !l.Enabled(ctx, slog.LevelInfo) {
		t.Error("not at Info by default")
	}
	if _, ok := slog.Default().Handler().(*workerHandler); !ok {
		t.Errorf("default handler %T", slog.Default().Handler())
	}
	t.Setenv(envWorkerLogLevel, "WARN")
	installWorkerLog()
	if l := slog.Default(); l.Enabled(ctx, slog.LevelInfo) || !l.Enabled(ctx, slog.LevelWarn) {
		t.Error("not at Warn")
	}
}

// TestOutputOfARealOutOfMemoryCrash runs a Go program that runs out of
// memory under RLIMIT_DATA, built plainly and with -race.
func TestOutputOfARealOutOfMemoryCrash(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the program runs out of memory under RLIMIT_DATA, which only Linux counts this way")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go command:", err)
	}
	dir := t.TempDir()
	build := func(name string, flags ...string) string {
		bin := filepath.Join(dir, name)
		cmd := exec.CommandContext(t.Context(), goCmd, append(append([]string{"build"}, flags...), "-o", bin, "./testdata/oom")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("go build %v: %v\n%s", flags, err, out)
			return ""
		}
		return bin
	}
	run := func(bin string, args ...string) *workerOutput {
		o := newWorkerOutput(nil)
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Stdout, cmd.Stderr = o, o
		err := cmd.Run()
		o.Close()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s %v: %v, want an exit status", filepath.Base(bin), args, err)
		}
		o.mu.Lock()
		h, n := o.headline, o.n
		o.mu.Unlock()
		t.Logf("%s %v: %v after %d bytes, crash headline %q", filepath.Base(bin), args, err, n, h)
		return o
	}

	plain := build("oom")
	if plain == "" {
		t.Fatal("cannot build testdata/oom")
	}
	for _, args := range [][]string{
		{"oom", "16"},
		{"oom", "256"},
		// As MemoryLimit sets it: what is mapped plus the limit.
		{"oom", "+64", "0", "0", "1024"},
		{"oom", "+256"},
		// A dump longer than the tail, after a megabyte without a newline.
		{"oom", "256", "1000", "1000000"},
	} {
		o := run(plain, args...)
		// Out of address space, the Go runtime itself sometimes faults in
		// the garbage collector (SIGSEGV) instead of reporting the failed
		// allocation: that crash is not an out-of-memory report for the
		// parser to find. Run such a case again (a few times at most).
		for try := 0; try < 3 && strings.HasPrefix(o.Tail(), "SIGSEGV") && !o.CrashedOutOfMemory(); try++ {
			o = run(plain, args...)
		}
		if !o.CrashedOutOfMemory() {
			t.Errorf("%v: not out of memory; tail:\n%s", args, o.Tail())
		}
		tail := o.Tail()
		if !strings.Contains(tail, "fatal error: ") {
			t.Errorf("%v: tail:\n%.2000s", args, tail)
		}
		if len(args) > 3 && args[3] == "1000" {
			h, _, _, _ := splitTail(t, tail)
			if !strings.HasPrefix(h, "fatal error: ") {
				t.Errorf("%v: the headline is not kept: %q", args, h)
			}
		}
		checkBounded(t, o)
	}
	if o := run(plain, "panic"); o.CrashedOutOfMemory() || !strings.Contains(o.Tail(), "panic: boom\n") {
		t.Errorf("a panic: out of memory %v; tail:\n%s", o.CrashedOutOfMemory(), o.Tail())
	}

	racy := build("oom-race", "-race")
	if racy == "" {
		t.Fatal("cannot build testdata/oom with -race")
	}
	// At a low limit the Go runtime fails first; at a higher one, or one
	// above what is mapped, the race runtime's shadow memory.
	for _, args := range [][]string{{"oom", "64"}, {"oom", "1024"}, {"oom", "+64"}, {"oom", "+64", "0", "0", "1024"}} {
		o := run(racy, args...)
		if !o.CrashedOutOfMemory() {
			t.Errorf("-race %v: not out of memory; tail:\n%s", args, o.Tail())
		}
	}
}
