package demo

import (
	"io"
	"log/slog"

	"github.com/ferrypipe/ferry/internal/logs"
)

// newLogger returns the demo's logger: ferry's line format (package
// internal/logs) on w, with an integer "epoch" counted from 1, as the demo
// counts epochs (the pipeline counts them from 0).
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(logs.NewHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: epochFromOne}))
}

func epochFromOne(_ []string, a slog.Attr) slog.Attr {
	if a.Key != "epoch" {
		return a
	}
	switch a.Value.Kind() {
	case slog.KindUint64:
		return slog.Uint64("epoch", a.Value.Uint64()+1)
	case slog.KindInt64:
		return slog.Int64("epoch", a.Value.Int64()+1)
	}
	return a
}
