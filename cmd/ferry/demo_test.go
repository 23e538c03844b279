package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestDemoSmallRun(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	stdout, stderr, err := execute(t, "demo", "--samples", "20", "--epochs", "2", "--batch", "8", "--workers", "2", "--seed", "3")
	if err != nil {
		t.Fatalf("ferry demo: %v\nstderr:\n%s", err, stderr)
	}
	// A bytes.Buffer is not a terminal: one plain line per epoch.
	for _, want := range []string{"data set: 20 samples", "epoch 1/2: 20 items in 3 batches", "epoch 2/2: 20 items in 3 batches", "summary", "stages and queues"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

func TestDemoNoProgress(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	stdout, stderr, err := execute(t, "demo", "--samples", "10", "--epochs", "1", "--no-progress")
	if err != nil {
		t.Fatalf("ferry demo: %v\nstderr:\n%s", err, stderr)
	}
	if strings.Contains(stdout, "epoch 1/1:") || !strings.Contains(stdout, "summary") {
		t.Errorf("--no-progress: want the summary and no progress lines:\n%s", stdout)
	}
}

func TestDemoCorruptOverBudgetFails(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	stdout, stderr, err := execute(t, "demo", "--samples", "12", "--epochs", "1", "--corrupt", "2", "--max-failures", "1", "--no-progress")
	if err == nil {
		t.Fatalf("ferry demo with 2 corrupt samples and 1 tolerated succeeded:\n%s", stdout)
	}
	if !strings.Contains(stderr, "too many samples failed") {
		t.Errorf("stderr does not explain the failure:\n%s", stderr)
	}
	if strings.Contains(stderr, "Usage:") {
		t.Errorf("a failed run printed the usage:\n%s", stderr)
	}
}

func TestDemoRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--samples", "0"},
		{"--epochs", "0"},
		{"--batch", "0"},
		{"--workers", "0"},
		{"--samples", "5", "--corrupt", "6"},
		{"--max-failures", "-1"},
		{"extra-argument"},
	} {
		stdout, stderr, err := execute(t, append([]string{"demo"}, args...)...)
		if err == nil {
			t.Errorf("ferry demo %v succeeded", args)
			continue
		}
		if !strings.Contains(stderr, "Error: ") || !strings.Contains(stdout+stderr, "Usage:") {
			t.Errorf("ferry demo %v: want the error and the usage, got:\nstdout:\n%s\nstderr:\n%s", args, stdout, stderr)
		}
	}
}

func TestDemoCurate(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	dir := t.TempDir()
	stdout, stderr, err := execute(t, "demo", "curate", "--files", "40", "--values", "20", "--corrupt", "5", "--interrupt-at", "20", "--dir", dir)
	if err != nil {
		t.Fatalf("ferry demo curate: %v\nstderr:\n%s", err, stderr)
	}
	for _, want := range []string{"generated 40 inputs", "interrupted:", "39 done (", "index 5 failed after 3 attempts", "truncated", "statistics merged"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "index failed") {
		t.Errorf("stderr does not log the failed index:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoint.db")); err != nil {
		t.Errorf("--dir: the checkpoint is not kept: %v", err)
	}
}

func TestDemoCurateRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--files", "0"}, {"--workers", "0"}, {"--files", "5", "--corrupt", "5"}} {
		if _, _, err := execute(t, append([]string{"demo", "curate"}, args...)...); err == nil {
			t.Errorf("ferry demo curate %v succeeded", args)
		}
	}
}

func TestDemoGraph(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	dir := t.TempDir()
	stdout, stderr, err := execute(t, "demo", "graph", "--seconds", "40", "--speed", "0", "--dir", dir)
	if err != nil {
		t.Fatalf("ferry demo graph: %v\nstderr:\n%s", err, stderr)
	}
	for _, want := range []string{"40 s of data per detector", "2 of 2 injections found, 0 false alarms", "whiten-H1", "process"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, f := range []string{"triggers.txt", "graph.dot"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestDemoGraphInterrupted interrupts a long search with SIGINT sent to
// its whole process group, as a terminal's Ctrl+C is: it drains, reports
// what it searched and exits 130 (its worker processes, in groups of
// their own, never see the signal: had they died, it would exit 1).
func TestDemoGraphInterrupted(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.SysProcAttr = ownProcessGroup(t)
	cmd.Env = append(os.Environ(), "FERRY_TEST_ARGS=demo graph --seconds 100000 --speed 32 --rate 512 --templates 8 --no-progress --dir "+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "searching") {
			break
		}
	}
	if err := interruptGroup(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&rest, out)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("ferry demo graph after SIGINT: %v; want exit status 130\nstdout:\n%s\nstderr:\n%s", err, rest.String(), stderr.String())
	}
	if !strings.Contains(rest.String(), "interrupted: drained after") {
		t.Fatalf("no interruption summary:\n%s", rest.String())
	}
}

func TestDemoGraphRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--placement", "thread"}, {"--rate", "1000"}, {"--seconds", "0"}} {
		_, stderr, err := execute(t, append([]string{"demo", "graph"}, args...)...)
		if err == nil || !strings.Contains(stderr, args[0]) {
			t.Errorf("ferry demo graph %v: %v\n%s", args, err, stderr)
		}
	}
}
