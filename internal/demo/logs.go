package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// lineHandler is a slog.Handler that writes each record as one short line
// for people: "warning: MSG k=v k=v: ERR", with no time. The error, if any,
// comes last, unquoted. An integer "epoch" is shown counted from 1, as the
// demo counts epochs (the pipeline counts them from 0).
type lineHandler struct {
	w     io.Writer // written to once per record
	level slog.Level
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	var errText string
	add := func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
			errText = err.Error()
			return true
		}
		if a.Key == "epoch" {
			switch a.Value.Kind() {
			case slog.KindUint64:
				fmt.Fprintf(&b, " epoch=%d", a.Value.Uint64()+1)
				return true
			case slog.KindInt64:
				fmt.Fprintf(&b, " epoch=%d", a.Value.Int64()+1)
				return true
			}
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if errText != "" {
		b.WriteString(": ")
		b.WriteString(errText)
	}
	b.WriteString("\n")
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)
	return &h2
}

// WithGroup is not supported: the pipeline's logger uses no groups, and
// grouped attributes are written without their group.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }
