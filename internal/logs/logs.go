// Package logs is the one log/slog set-up of the ferry command and of the
// examples: records as short lines for people on stderr, at a level that
// FERRY_LOG_LEVEL (or the command's --log-level) chooses.
//
// A record reads "warning: MSG key=value …: ERR": a prefix for warnings,
// errors and debug records (none for information), the message, the
// attributes, and the "err" attribute last, unquoted. There is no time:
// these are messages for the person running the program, not a log
// archive.
package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
)

// EnvLevel is the environment variable that sets the log level: debug,
// info, warn or error.
const EnvLevel = "FERRY_LOG_LEVEL"

// ParseLevel parses a level name: debug, info, warn (or warning) or error,
// in any case; slog's forms such as "warn+2" are accepted too.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	name := strings.TrimSpace(s)
	if strings.EqualFold(name, "warning") {
		name = "warn"
	}
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// LevelFromEnv returns the level FERRY_LOG_LEVEL names, or def when it is
// unset or empty; a value it cannot parse is an error naming the variable.
func LevelFromEnv(def slog.Level) (slog.Level, error) {
	s := os.Getenv(EnvLevel)
	if s == "" {
		return def, nil
	}
	l, err := ParseLevel(s)
	if err != nil {
		return def, fmt.Errorf("$%s: %w", EnvLevel, err)
	}
	return l, nil
}

// New returns a logger that writes records of level or above to w, one line
// each.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(NewHandler(w, &slog.HandlerOptions{Level: level}))
}

// Setup is the set-up of a program: a logger on stderr at the level of
// FERRY_LOG_LEVEL (info by default), made slog's default too, so that
// ferry's packages log through it. A bad FERRY_LOG_LEVEL is reported as a
// warning, and info is used.
func Setup() *slog.Logger { return SetupWriter(os.Stderr) }

// SetupWriter is Setup with the log lines written to w (a progress
// display's log writer, say) instead of stderr.
func SetupWriter(w io.Writer) *slog.Logger {
	level, err := LevelFromEnv(slog.LevelInfo)
	l := New(w, level)
	if err != nil {
		l.Warn("ignoring the log level", "err", err)
	}
	slog.SetDefault(l)
	return l
}

// NewHandler returns the line handler writing to w. Of opts (nil for the
// defaults) it uses Level (default info) and ReplaceAttr, which sees every
// attribute but the time, level and message, with the groups it is in.
func NewHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	h := &handler{w: w, mu: new(sync.Mutex)}
	if opts != nil {
		h.level, h.replace = opts.Level, opts.ReplaceAttr
	}
	if h.level == nil {
		h.level = slog.LevelInfo
	}
	return h
}

// handler writes records as lines; handlers derived with WithAttrs and
// WithGroup share its writer and its lock.
type handler struct {
	w       io.Writer
	mu      *sync.Mutex // one Write per record, records never interleaved
	level   slog.Leveler
	replace func(groups []string, a slog.Attr) slog.Attr
	attrs   string   // the attributes of WithAttrs, formatted
	errText string   // an "err" attribute of WithAttrs
	groups  []string // of WithGroup
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	case r.Level < slog.LevelInfo:
		b.WriteString("debug: ")
	}
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	errText := h.errText
	r.Attrs(func(a slog.Attr) bool {
		h.format(&b, &errText, h.groups, a)
		return true
	})
	if errText != "" {
		b.WriteString(": ")
		b.WriteString(errText)
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// format appends " key=value" for a, or keeps the text of an error
// attribute "err" for the end of the line.
func (h *handler) format(b *strings.Builder, errText *string, groups []string, a slog.Attr) {
	if h.replace != nil && a.Value.Kind() != slog.KindGroup {
		a = h.replace(groups, a)
	}
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			groups = append(groups[:len(groups):len(groups)], a.Key)
		}
		for _, ga := range a.Value.Group() {
			h.format(b, errText, groups, ga)
		}
		return
	}
	if err, ok := a.Value.Any().(error); ok && a.Key == "err" && len(groups) == 0 {
		*errText = err.Error()
		return
	}
	b.WriteByte(' ')
	for _, g := range groups {
		b.WriteString(g)
		b.WriteByte('.')
	}
	b.WriteString(a.Key)
	b.WriteByte('=')
	b.WriteString(quote(a.Value.String()))
}

// quote quotes s if it would not read as one value: empty, or with
// spaces, quotes, '=' or control characters.
func quote(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '=' || r == 0x7f
	}) {
		return strconv.Quote(s)
	}
	return s
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		h.format(&b, &h2.errText, h.groups, a)
	}
	h2.attrs = b.String()
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(h.groups[:len(h.groups):len(h.groups)], name)
	return &h2
}

// Fatal logs err as an error through slog's default logger and exits with
// status 1, as log.Fatal does: for the end of a program's main.
func Fatal(err error) {
	slog.Error("failed", "err", err)
	os.Exit(1)
}
