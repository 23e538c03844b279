package logs_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/internal/logs"
)

func TestLineFormat(t *testing.T) {
	var out bytes.Buffer
	log := logs.New(&out, slog.LevelDebug).With("run", 7)
	log.Debug("details", "n", 1)
	log.Info("started", "dir", "/tmp/a b")
	log.Warn("item failed", "stage", "decode", "err", errors.New("bad input"), "index", 3)
	log.WithGroup("pool").Error("worker lost", "pid", 42, slog.Group("exit", "code", 2))
	want := "debug: details run=7 n=1\n" +
		"started run=7 dir=\"/tmp/a b\"\n" +
		"warning: item failed run=7 stage=decode index=3: bad input\n" +
		"error: worker lost run=7 pool.pid=42 pool.exit.code=2\n"
	if out.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", out.String(), want)
	}
}

func TestLevelAndReplaceAttr(t *testing.T) {
	var out bytes.Buffer
	h := logs.NewHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "secret" {
			return slog.Attr{}
		}
		return a
	}})
	log := slog.New(h)
	log.Info("hidden")
	log.Warn("shown", "secret", "x", "k", "")
	if got, want := out.String(), "warning: shown k=\"\"\n"; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "Warning": slog.LevelWarn, " error ": slog.LevelError} {
		if got, err := logs.ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := logs.ParseLevel("loud"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("ParseLevel(loud): %v", err)
	}
}

func TestLevelFromEnv(t *testing.T) {
	t.Setenv(logs.EnvLevel, "")
	if l, err := logs.LevelFromEnv(slog.LevelWarn); err != nil || l != slog.LevelWarn {
		t.Errorf("unset: %v, %v", l, err)
	}
	t.Setenv(logs.EnvLevel, "debug")
	if l, err := logs.LevelFromEnv(slog.LevelWarn); err != nil || l != slog.LevelDebug {
		t.Errorf("debug: %v, %v", l, err)
	}
	t.Setenv(logs.EnvLevel, "nope")
	if _, err := logs.LevelFromEnv(slog.LevelWarn); err == nil || !strings.Contains(err.Error(), "$FERRY_LOG_LEVEL") {
		t.Errorf("bad value: %v", err)
	}
}

// TestSetup: the default logger is the line handler at the level of the
// environment.
func TestSetup(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	t.Setenv(logs.EnvLevel, "error")
	l := logs.Setup()
	if slog.Default() != l || l.Enabled(t.Context(), slog.LevelWarn) || !l.Enabled(t.Context(), slog.LevelError) {
		t.Errorf("Setup: default %p, logger %p, warn enabled %v", slog.Default(), l, l.Enabled(t.Context(), slog.LevelWarn))
	}
}

// TestConcurrentLines: records from many goroutines never interleave.
func TestConcurrentLines(t *testing.T) {
	var out bytes.Buffer
	log := logs.New(&out, slog.LevelInfo)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				log.With("g", g).Info("line", "i", i)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "line g=") || strings.Count(l, "=") != 2 {
			t.Fatalf("garbled line %q", l)
		}
	}
}
