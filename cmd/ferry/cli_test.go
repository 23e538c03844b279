//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// runCLI runs the ferry command in-process with args and returns what it
// wrote to stdout and stderr, and its exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	code = execute(root, args)
	return out.String(), errOut.String(), code
}

// wantUsageError checks the convention for a command-line mistake: exit
// status 2, one line of error that says what (want), then the hint on
// how to get help for command, and no usage dump.
func wantUsageError(t *testing.T, command, stderr string, code int, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Error: ") || !strings.Contains(lines[0], want) ||
		lines[1] != "Run '"+command+" --help' for usage." {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 2, an error line with %q and the hint for %s", code, stderr, want, command)
	}
}

// interrupt runs the ferry command with args (split on spaces) in a
// subprocess, waits until a line of its stdout starts with after, then
// sends SIGINT to its whole process group, as a terminal's Ctrl+C does. It
// returns the exit status and what the command wrote.
func interrupt(t *testing.T, args, after string) (code int, stdout, stderr string) {
	t.Helper()
	return signalAfter(t, args, after, syscall.SIGINT)
}

// signalAfter is interrupt with another signal.
func signalAfter(t *testing.T, args, after string, sig syscall.Signal) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "FERRY_TEST_ARGS="+args)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	sc := bufio.NewScanner(out)
	found := false
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), after) {
			found = true
			break
		}
	}
	if found {
		if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = io.Copy(&seen, out)
	err = cmd.Wait()
	if !found {
		t.Fatalf("ferry %s never printed a line starting %q: %v\nstdout:\n%s\nstderr:\n%s", args, after, err, seen.String(), errBuf.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, seen.String(), errBuf.String()
}
