package proc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// A worker's stdout and stderr reach the parent through a workerOutput, which
//
//   - logs each line through the parent's logger as it completes: a plain line
//     at INFO with the message "worker: <line>" (the message the parent always
//     gave, so that log readers keep working; the worker's name and pid are the
//     logger's own attributes); a line longer than maxOutputLine is logged in
//     pieces of at most that many bytes, each with the attribute
//     line_part=1, 2, … and never buffered whole;
//   - decodes the lines that workerLogHandler wrote (logMarker followed by a
//     JSON record) and hands them to the parent's handler with their own time,
//     level (custom levels too), message and attributes, so that the
//     handler adds the logger's own (worker, pid); groups stay slog.Group
//     values, for the handler to render ("g.k=v" in text, nested in JSON);
//   - keeps, for WorkerError.Stderr, the first tailHead and the last tailRing
//     bytes of the plain output, and the last Go crash headline (see
//     findHeadline) so that a long goroutine dump cannot push it out.
//
// Structured records are logs, not crash output: they are not kept for Tail.
// A line that starts with logMarker but is not a record (bad JSON, or longer
// than maxRecord) is a plain line: logged as one and kept.
//
// Memory is bounded whatever the worker writes: about 16+48 KiB for the tail,
// maxOutputLine for the line being logged and maxRecord for a record being
// read.

// logMarker starts a line that is a structured log record from the worker.
// It begins with ASCII RS (record separator), which text rarely holds.
const logMarker = "\x1eferry-log "

// envWorkerLogLevel is the lowest level of the records a worker sends its
// parent (a number or a slog level name such as "DEBUG" or "WARN+2").
const envWorkerLogLevel = "FERRY_WORKER_LOG_LEVEL"

const (
	tailHead      = 16 << 10 // bytes kept from the start of the plain output
	tailRing      = 48 << 10 // bytes kept from its end
	tailSnap      = 512      // Tail cuts at a line end if one is this close
	maxOutputLine = 64 << 10 // longest piece of a line logged at once
	maxRecord     = 256 << 10
	maxHeadline   = 1 << 10
)

// Crash headlines start the line that names why a program died: the weak ones
// only at the start of a line, the strong ones within a line too: the Go runtime prints its "panic: " or
// "fatal error: " right after whatever the program had left without a
// newline, and the race runtime prints "==PID==ERROR: ThreadSanitizer …".
var (
	strongHeadlines = []string{"fatal error: ", "panic: ", "ERROR: ThreadSanitizer", "FATAL: ThreadSanitizer"}
	weakHeadlines   = []string{"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "SIGTRAP", "SIGSYS", "SIGQUIT", "unexpected signal"}
)

type outputState uint8

const (
	atLineStart outputState = iota // o.pre holds the bytes that match logMarker so far
	inPlainLine
	inRecord // o.rec holds what follows logMarker
)

// workerOutput receives a worker's output; see above. It is safe for
// concurrent use.
type workerOutput struct {
	mu  sync.Mutex
	log *slog.Logger

	state outputState
	pre   []byte // a prefix of logMarker, at the start of a line
	rec   []byte // a record being read

	line    []byte // the part of a plain line not logged yet
	lineOff int64  // the offset of line[0] in the plain output
	part    int    // pieces of the current line logged so far
	carry   []byte // the end of the last piece, to find a headline across pieces
	scratch []byte

	// The plain output: its first tailHead bytes, and its last tailRing+1
	// bytes in a ring (the first of them only tells whether the others start
	// a line).
	n            int64
	head         []byte
	headLineEnds bool // the byte after head is a newline
	ring         []byte
	ringN        int // bytes in ring
	ringW        int // where the next byte goes

	headline         string // the last crash headline
	headlineStart    int64  // its offset in the plain output
	headlineEnd      int64
	headlineComplete bool // found in a complete line, not cut by maxHeadline
}

// newWorkerOutput returns a workerOutput that logs through log, which names
// the worker (it may be nil: then nothing is logged).
func newWorkerOutput(log *slog.Logger) *workerOutput {
	return &workerOutput{log: log}
}

var _ io.Writer = (*workerOutput)(nil)

// Write takes any bytes; it never fails.
func (o *workerOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		switch o.state {
		case atLineStart:
			k := len(o.pre)
			m := min(len(logMarker)-k, len(b))
			if string(b[:m]) == logMarker[k:k+m] {
				o.pre = append(o.pre, b[:m]...)
				b = b[m:]
				if len(o.pre) == len(logMarker) {
					o.pre = o.pre[:0]
					o.state = inRecord
				}
				continue
			}
			o.state = inPlainLine
			o.plain(o.pre)
			o.pre = o.pre[:0]
		case inPlainLine:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				o.plain(b)
				return n, nil
			}
			o.plain(b[:i])
			o.endLine(true)
			b = b[i+1:]
		case inRecord:
			i := bytes.IndexByte(b, '\n')
			chunk := b
			if i >= 0 {
				chunk = b[:i]
			}
			if len(o.rec)+len(chunk) > maxRecord {
				// Too long for a record: a plain line after all.
				o.state = inPlainLine
				o.plain([]byte(logMarker))
				o.plain(o.rec)
				o.dropRecord()
				continue
			}
			o.rec = append(o.rec, chunk...)
			if i < 0 {
				return n, nil
			}
			b = b[i+1:]
			o.endRecord(true)
		}
	}
	return n, nil
}

// Close logs the last line if it had no newline. Output written after it
// starts a new line.
func (o *workerOutput) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch o.state {
	case atLineStart:
		if len(o.pre) > 0 {
			o.plain(o.pre)
			o.pre = o.pre[:0]
			o.endLine(false)
		}
	case inPlainLine:
		o.endLine(false)
	case inRecord:
		o.endRecord(false)
	}
	o.line, o.scratch, o.carry, o.rec = nil, nil, nil, nil
}

// endRecord handles the record in o.rec, which ended with a newline or not.
func (o *workerOutput) endRecord(newline bool) {
	r, err := decodeRecord(o.rec)
	if err != nil {
		o.plain([]byte(logMarker))
		o.plain(o.rec)
		o.endLine(newline)
	} else {
		o.state = atLineStart
		if o.log != nil {
			h := o.log.Handler()
			if h.Enabled(context.Background(), r.Level) {
				_ = h.Handle(context.Background(), r)
			}
		}
	}
	o.dropRecord()
}

func (o *workerOutput) dropRecord() {
	if cap(o.rec) > 4<<10 {
		o.rec = nil // a rare big record: do not hold its memory
	} else {
		o.rec = o.rec[:0]
	}
}

// plain takes bytes of a plain line (no newline).
func (o *workerOutput) plain(b []byte) {
	o.state = inPlainLine
	o.keep(b)
	if o.line == nil && len(b) > 0 {
		o.line = make([]byte, 0, min(maxOutputLine, max(len(b), 256)))
	}
	for len(b) > 0 {
		k := min(maxOutputLine-len(o.line), len(b))
		if len(o.line)+k > cap(o.line) {
			o.line = append(make([]byte, 0, maxOutputLine), o.line...)
		}
		o.line = append(o.line, b[:k]...)
		b = b[k:]
		if len(o.line) == maxOutputLine {
			o.piece(false)
		}
	}
}

// endLine ends the current plain line.
func (o *workerOutput) endLine(newline bool) {
	end := o.n
	if len(o.line) > 0 || o.part == 0 {
		o.piece(true)
	}
	if o.headline != "" && o.headlineEnd == end {
		o.headlineComplete = true
	}
	if newline {
		o.keep([]byte{'\n'})
	}
	o.part = 0
	o.carry = o.carry[:0]
	o.lineOff = o.n
	o.state = atLineStart
}

// piece logs o.line, the end of a line or else a piece of a long one.
func (o *workerOutput) piece(last bool) {
	cut := len(o.line)
	if !last {
		cut = runeCut(o.line)
	}
	p := o.line[:cut]
	continued := o.part > 0
	if !last || continued {
		o.part++
	}
	if o.log != nil {
		if o.part > 0 {
			o.log.LogAttrs(context.Background(), slog.LevelInfo, "worker: "+string(p), slog.Int("line_part", o.part))
		} else {
			o.log.LogAttrs(context.Background(), slog.LevelInfo, "worker: "+string(p))
		}
	}
	o.scan(p, continued, last)
	o.lineOff += int64(cut)
	o.line = append(o.line[:0], o.line[cut:]...)
}

// runeCut is where to cut a full piece so as not to split a UTF-8 sequence.
func runeCut(b []byte) int {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return len(b) - i
			}
			break
		}
	}
	return len(b)
}

// scan looks for a crash headline in a piece of a line. The end of the
// previous piece of the same line is searched again with it, so a headline
// across two pieces is found whole.
func (o *workerOutput) scan(p []byte, continued, last bool) {
	text, off := p, o.lineOff
	if continued {
		if o.scratch == nil {
			o.scratch = make([]byte, 0, maxHeadline+maxOutputLine)
		}
		o.scratch = append(append(o.scratch[:0], o.carry...), p...)
		text, off = o.scratch, o.lineOff-int64(len(o.carry))
	}
	if i := findHeadline(text, !continued); i >= 0 {
		h := text[i:]
		if len(h) > maxHeadline {
			c := maxHeadline
			for c > 0 && !utf8.RuneStart(h[c]) {
				c--
			}
			h = h[:c]
		}
		o.headline = string(h)
		o.headlineStart = off + int64(i)
		o.headlineEnd = o.headlineStart + int64(len(h))
		o.headlineComplete = false // until endLine sees it end the line
	}
	if !last {
		if o.carry == nil {
			o.carry = make([]byte, 0, maxHeadline)
		}
		o.carry = append(o.carry[:0], text[max(0, len(text)-maxHeadline):]...)
	}
}

// findHeadline returns where in text a crash headline starts, or -1: at its
// start, if it starts a line and with any headline, or else the first strong
// headline within it.
func findHeadline(text []byte, lineStart bool) int {
	if lineStart {
		for _, h := range strongHeadlines {
			if bytes.HasPrefix(text, []byte(h)) {
				return 0
			}
		}
		for _, h := range weakHeadlines {
			if bytes.HasPrefix(text, []byte(h)) {
				return 0
			}
		}
	}
	best := -1
	for _, h := range strongHeadlines {
		if i := bytes.Index(text, []byte(h)); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	if best > 0 && lineStart && isSanitizerPID(text[:best]) {
		return 0 // "==1234==ERROR: ThreadSanitizer …": keep the pid
	}
	return best
}

// isSanitizerPID reports whether b is "==<digits>==".
func isSanitizerPID(b []byte) bool {
	if len(b) < 5 || !bytes.HasPrefix(b, []byte("==")) || !bytes.HasSuffix(b, []byte("==")) {
		return false
	}
	for _, c := range b[2 : len(b)-2] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// keep adds bytes of plain output to what Tail returns.
func (o *workerOutput) keep(b []byte) {
	o.n += int64(len(b))
	if len(o.head) < tailHead {
		if o.head == nil {
			o.head = make([]byte, 0, tailHead)
		}
		k := min(tailHead-len(o.head), len(b))
		o.head = append(o.head, b[:k]...)
		b = b[k:]
	}
	if len(b) == 0 {
		return
	}
	const size = tailRing + 1
	if o.ring == nil { // b[0] is the first byte after head
		o.headLineEnds = b[0] == '\n'
		o.ring = make([]byte, size)
	}
	if len(b) >= size {
		copy(o.ring, b[len(b)-size:])
		o.ringN, o.ringW = size, 0
		return
	}
	k := copy(o.ring[o.ringW:], b)
	copy(o.ring, b[k:])
	o.ringW = (o.ringW + len(b)) % size
	o.ringN = min(o.ringN+len(b), size)
}

// Tail returns what to report of the worker's plain output: all of it if it
// is at most tailHead+tailRing bytes, else its first and last bytes (cut at a
// line end when one is near) around a line "… N bytes omitted …". When the
// last crash headline falls in the omitted part, it comes first, on a line
// of its own followed by "… (the line above is from the omitted part) …".
// Structured records are not part of it.
func (o *workerOutput) Tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.head
	if o.ringN <= tailRing {
		return string(first) + string(o.ring[:o.ringN])
	}
	// Something was left out.
	last := append(append(make([]byte, 0, tailRing+1), o.ring[o.ringW:]...), o.ring[:o.ringW]...)
	lineStart := last[0] == '\n'
	last = last[1:]
	if !o.headLineEnds {
		if i := bytes.LastIndexByte(first[max(0, len(first)-tailSnap):], '\n'); i >= 0 {
			first = first[:max(0, len(first)-tailSnap)+i+1]
		}
	}
	if !lineStart {
		if i := bytes.IndexByte(last[:min(len(last), tailSnap)], '\n'); i >= 0 && i+1 < len(last) {
			last = last[i+1:]
		}
	}
	// A line for the omission after a head cut within a line: the newline
	// that followed it, if one did.
	newline := len(first) > 0 && first[len(first)-1] != '\n'
	omitted := o.n - int64(len(first)) - int64(len(last))
	if newline && o.headLineEnds {
		omitted--
		if omitted == 0 {
			return string(first) + "\n" + string(last)
		}
	}
	var b strings.Builder
	b.Grow(len(first) + len(last) + len(o.headline) + 128)
	if o.headline != "" && o.headlineEnd > int64(len(first)) && o.headlineStart < o.n-int64(len(last)) {
		b.WriteString(o.headline)
		if !o.headlineComplete {
			b.WriteString(" …")
		}
		b.WriteString("\n… (the line above is from the omitted part) …\n")
	}
	b.Write(first)
	if newline {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "… %d bytes omitted …\n", omitted)
	b.Write(last)
	return b.String()
}

// CrashedOutOfMemory reports whether the last crash headline says that the Go
// runtime or the race runtime could not get memory, as they say it when
// RLIMIT_DATA refuses them:
//
//	fatal error: runtime: out of memory
//	fatal error: runtime: cannot allocate memory
//	fatal error: out of memory allocating heap arena metadata
//	fatal error: out of memory (and others with "out of memory")
//	==PID==ERROR: ThreadSanitizer failed to allocate 0x… (…) bytes at address … (errno: 12)
//	==PID==ERROR: ThreadSanitizer: out of memory: failed to allocate 0x… (…) bytes of … (error code: 12)
//	FATAL: ThreadSanitizer: internal allocator is out of memory trying to allocate 0x… bytes
func (o *workerOutput) CrashedOutOfMemory() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return isOutOfMemory(o.headline)
}

func isOutOfMemory(h string) bool {
	if strings.HasPrefix(h, "fatal error: ") {
		return strings.Contains(h, "out of memory") || strings.Contains(h, "cannot allocate memory")
	}
	if strings.Contains(h, "ThreadSanitizer") {
		return strings.Contains(h, "out of memory") ||
			strings.Contains(h, "failed to allocate") &&
				(strings.Contains(h, "(errno: 12)") || strings.Contains(h, "(error code: 12)"))
	}
	return false
}

// The JSON of a record: {"time":"…","level":8,"msg":"…","attrs":[…]}, each
// attribute {"k":key,"t":type,"v":value} where type is
//
//	s string, i int64, u uint64, f float64 (a number, or "NaN", "+Inf", "-Inf"),
//	b bool, d duration (nanoseconds), t time (RFC 3339 with nanoseconds),
//	g group (v: its attributes), e error (v: its message),
//	a any other value (v: its JSON, as slog.JSONHandler writes it).
//
// A value that cannot be encoded as JSON is sent as its fmt "%+v" text, with
// type s.
type wireRecordOut struct {
	Time  string        `json:"time,omitempty"`
	Level int64         `json:"level"`
	Msg   string        `json:"msg"`
	Attrs []wireAttrOut `json:"attrs,omitempty"`
}

type wireAttrOut struct {
	K string `json:"k"`
	T string `json:"t"`
	V any    `json:"v"`
}

type wireRecordIn struct {
	Time  string       `json:"time"`
	Level *int64       `json:"level"`
	Msg   *string      `json:"msg"`
	Attrs []wireAttrIn `json:"attrs"`
}

type wireAttrIn struct {
	K string          `json:"k"`
	T string          `json:"t"`
	V json.RawMessage `json:"v"`
}

// decodeRecord decodes the JSON of a record, as workerLogHandler wrote it.
func decodeRecord(b []byte) (slog.Record, error) {
	var in wireRecordIn
	if err := json.Unmarshal(b, &in); err != nil {
		return slog.Record{}, err
	}
	if in.Level == nil || in.Msg == nil {
		return slog.Record{}, errors.New("not a record: no level or msg")
	}
	if *in.Level < math.MinInt32 || *in.Level > math.MaxInt32 {
		return slog.Record{}, errors.New("level out of range")
	}
	var t time.Time
	if in.Time != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, in.Time); err != nil {
			return slog.Record{}, err
		}
	}
	attrs, err := decodeAttrs(in.Attrs)
	if err != nil {
		return slog.Record{}, err
	}
	r := slog.NewRecord(t, slog.Level(*in.Level), *in.Msg, 0)
	r.AddAttrs(attrs...)
	return r, nil
}

func decodeAttrs(in []wireAttrIn) ([]slog.Attr, error) {
	out := make([]slog.Attr, 0, len(in))
	for _, a := range in {
		v, err := decodeValue(a.T, a.V)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.K, err)
		}
		out = append(out, slog.Attr{Key: a.K, Value: v})
	}
	return out, nil
}

func decodeValue(typ string, raw json.RawMessage) (slog.Value, error) {
	switch typ {
	case "s":
		var s string
		err := json.Unmarshal(raw, &s)
		return slog.StringValue(s), err
	case "i":
		var i int64
		err := json.Unmarshal(raw, &i)
		return slog.Int64Value(i), err
	case "u":
		var u uint64
		err := json.Unmarshal(raw, &u)
		return slog.Uint64Value(u), err
	case "f":
		var f float64
		if len(raw) > 0 && raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return slog.Value{}, err
			}
			var err error
			if f, err = strconv.ParseFloat(s, 64); err != nil {
				return slog.Value{}, err
			}
			return slog.Float64Value(f), nil
		}
		err := json.Unmarshal(raw, &f)
		return slog.Float64Value(f), err
	case "b":
		var b bool
		err := json.Unmarshal(raw, &b)
		return slog.BoolValue(b), err
	case "d":
		var d int64
		err := json.Unmarshal(raw, &d)
		return slog.DurationValue(time.Duration(d)), err
	case "t":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return slog.Value{}, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		return slog.TimeValue(t), err
	case "g":
		var in []wireAttrIn
		if err := json.Unmarshal(raw, &in); err != nil {
			return slog.Value{}, err
		}
		as, err := decodeAttrs(in)
		return slog.GroupValue(as...), err
	case "e":
		var s string
		err := json.Unmarshal(raw, &s)
		return slog.AnyValue(errors.New(s)), err
	case "a":
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return slog.Value{}, err
		}
		return slog.AnyValue(v), nil
	}
	return slog.Value{}, fmt.Errorf("unknown type %q", typ)
}

// workerLogHandler returns the handler that worker code logs through: each
// record at level or above is one line, logMarker followed by its JSON,
// written with a single Write to w. (Through os.Stderr that is one write(2):
// atomic against any writer up to PIPE_BUF bytes, and against the rest of
// the process's Go code through os.Stderr whatever its size.) Records are
// kept below maxRecord bytes: long strings are cut first, then attributes
// left out.
func workerLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &workerHandler{w: w, mu: new(sync.Mutex), level: level, attrs: [][]slog.Attr{nil}}
}

type workerHandler struct {
	w      io.Writer
	mu     *sync.Mutex
	level  slog.Leveler
	groups []string      // from WithGroup
	attrs  [][]slog.Attr // attrs[i]: from WithAttrs within groups[:i]
}

func (h *workerHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *workerHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = append([][]slog.Attr(nil), h.attrs...)
	last := len(h2.attrs) - 1
	h2.attrs[last] = append(append([]slog.Attr(nil), h.attrs[last]...), as...)
	return &h2
}

func (h *workerHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(append([]string(nil), h.groups...), name)
	h2.attrs = append(append([][]slog.Attr(nil), h.attrs...), nil)
	return &h2
}

func (h *workerHandler) Handle(_ context.Context, r slog.Record) error {
	var cur []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		cur = append(cur, a)
		return true
	})
	for i := len(h.groups); i >= 0; i-- {
		cur = append(append([]slog.Attr(nil), h.attrs[i]...), cur...)
		if i > 0 {
			cur = []slog.Attr{{Key: h.groups[i-1], Value: slog.GroupValue(cur...)}}
		}
	}
	rec := wireRecordOut{Level: int64(r.Level), Msg: r.Message, Attrs: encodeAttrs(cur, 0)}
	if !r.Time.IsZero() {
		rec.Time = r.Time.Format(time.RFC3339Nano)
	}
	line, err := encodeRecordLine(rec)
	if err != nil || len(line) > len(logMarker)+maxRecord+1 {
		const short = 4 << 10
		rec.Msg = cutString(r.Message, short)
		rec.Attrs = encodeAttrs(cur, short)
		line, err = encodeRecordLine(rec)
		if err != nil || len(line) > len(logMarker)+maxRecord+1 {
			rec.Attrs = []wireAttrOut{{K: "ferry.truncated", T: "s",
				V: fmt.Sprintf("%d attributes left out: the record exceeded %d bytes", len(cur), maxRecord)}}
			if line, err = encodeRecordLine(rec); err != nil {
				return err
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err = h.w.Write(line)
	return err
}

func encodeRecordLine(rec wireRecordOut) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(logMarker)
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(rec); err != nil { // ends with a newline
		return nil, err
	}
	return b.Bytes(), nil
}

// cutString cuts s to at most n bytes (if n > 0), on a rune boundary, saying so.
func cutString(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	c := n
	for c > 0 && !utf8.RuneStart(s[c]) {
		c--
	}
	return s[:c] + fmt.Sprintf("… (%d bytes)", len(s))
}

// encodeAttrs encodes resolved attributes as slog's own handlers see them:
// empty attributes and empty groups left out. Strings are cut to limit bytes
// if limit > 0.
func encodeAttrs(as []slog.Attr, limit int) []wireAttrOut {
	var out []wireAttrOut
	for _, a := range as {
		v := a.Value.Resolve()
		if a.Key == "" && v.Kind() == slog.KindAny && v.Any() == nil {
			continue
		}
		w := wireAttrOut{K: a.Key}
		switch v.Kind() {
		case slog.KindString:
			w.T, w.V = "s", cutString(v.String(), limit)
		case slog.KindInt64:
			w.T, w.V = "i", v.Int64()
		case slog.KindUint64:
			w.T, w.V = "u", v.Uint64()
		case slog.KindFloat64:
			f := v.Float64()
			w.T, w.V = "f", f
			if math.IsNaN(f) || math.IsInf(f, 0) {
				w.V = strconv.FormatFloat(f, 'g', -1, 64)
			}
		case slog.KindBool:
			w.T, w.V = "b", v.Bool()
		case slog.KindDuration:
			w.T, w.V = "d", int64(v.Duration())
		case slog.KindTime:
			t := v.Time()
			if y := t.Year(); y < 0 || y > 9999 {
				w.T, w.V = "s", t.String()
			} else {
				w.T, w.V = "t", t.Format(time.RFC3339Nano)
			}
		case slog.KindGroup:
			g := encodeAttrs(v.Group(), limit)
			if len(g) == 0 {
				continue
			}
			w.T, w.V = "g", g
		default: // KindAny
			x := v.Any()
			if err, ok := x.(error); ok {
				w.T, w.V = "e", cutString(errorText(err), limit)
				break
			}
			j, err := json.Marshal(x)
			switch {
			case err != nil:
				w.T, w.V = "s", cutString(fmt.Sprintf("%+v", x), limit)
			case limit > 0 && len(j) > limit:
				w.T, w.V = "s", cutString(string(j), limit)
			default:
				w.T, w.V = "a", json.RawMessage(j)
			}
		}
		out = append(out, w)
	}
	return out
}

// errorText is err.Error(), or what went wrong calling it.
func errorText(err error) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("!PANIC in Error: %v", p)
		}
	}()
	return err.Error()
}

// installWorkerLog makes the worker's default slog logger, and so the log
// package's output too, send its records to the parent through stderr. Its
// level is FERRY_WORKER_LOG_LEVEL's if set (the parent sets it from its own
// logger, see workerLogLevelEnv), else Info, slog's default: with Debug every
// debug record of worker code would be encoded and cross the pipe only to be
// dropped by a parent that logs at Info.
func installWorkerLog() {
	level := slog.LevelInfo
	if s := os.Getenv(envWorkerLogLevel); s != "" {
		if l, ok := parseLogLevel(s); ok {
			level = l
		}
	}
	slog.SetDefault(slog.New(workerLogHandler(os.Stderr, level)))
}

func parseLogLevel(s string) (slog.Level, bool) {
	s = strings.TrimSpace(s)
	if i, err := strconv.Atoi(s); err == nil && i >= math.MinInt32 && i <= math.MaxInt32 {
		return slog.Level(i), true
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, false
	}
	return l, true
}

// workerLogLevelEnv returns the FERRY_WORKER_LOG_LEVEL=… entry for a worker's
// environment: the lowest level that log lets through (probed from Debug-4 to
// Error+4), or, if log is nil or lets none through, a level above any, so
// that the worker sends nothing it would drop.
func workerLogLevelEnv(log *slog.Logger) string {
	l := slog.Level(math.MaxInt32)
	if log != nil {
		ctx := context.Background()
		for p := slog.LevelDebug - 4; p <= slog.LevelError+4; p++ {
			if log.Enabled(ctx, p) {
				l = p
				break
			}
		}
	}
	return envWorkerLogLevel + "=" + strconv.Itoa(int(l))
}
