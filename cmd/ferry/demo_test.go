//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestDemoSmallRun(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	stdout, stderr, code := runCLI(t, "demo", "--samples", "20", "--epochs", "2", "--batch", "8", "--workers", "2", "--seed", "3")
	if code != 0 {
		t.Fatalf("ferry demo: exit %d\nstderr:\n%s", code, stderr)
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
	stdout, stderr, code := runCLI(t, "demo", "--samples", "10", "--epochs", "1", "--no-progress")
	if code != 0 {
		t.Fatalf("ferry demo: exit %d\nstderr:\n%s", code, stderr)
	}
	if strings.Contains(stdout, "epoch 1/1:") || !strings.Contains(stdout, "summary") {
		t.Errorf("--no-progress: want the summary and no progress lines:\n%s", stdout)
	}
}

// TestDemoMaxFailuresPerEpoch: --max-failures is a budget per epoch, as
// its help says: 3 corrupt samples with 3 tolerated pass every epoch; with
// 2 tolerated the first epoch fails, and the error says so. A failed run
// exits 1 with its error on one line and no usage.
func TestDemoMaxFailuresPerEpoch(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	args := []string{"demo", "--samples", "20", "--epochs", "3", "--corrupt", "3", "--no-progress"}
	if _, stderr, code := runCLI(t, append(args, "--max-failures", "3")...); code != 0 {
		t.Fatalf("3 corrupt samples, 3 tolerated per epoch: exit %d\n%s", code, stderr)
	}
	stdout, stderr, code := runCLI(t, append(args, "--max-failures", "2")...)
	if code != 1 {
		t.Fatalf("3 corrupt samples, 2 tolerated per epoch: exit %d, want 1\n%s", code, stdout)
	}
	if !strings.Contains(stderr, "Error: demo: epoch 1: too many samples failed: 3 in epoch 1, and the budget is 2 per epoch") {
		t.Errorf("stderr does not explain the failure:\n%s", stderr)
	}
	if strings.Contains(stderr, "Usage:") || strings.Contains(stderr, "--help") {
		t.Errorf("a failed run printed the usage or a hint:\n%s", stderr)
	}
}

// TestDemoRejectsBadFlags: every command-line mistake is one line naming
// it, the hint, and exit status 2.
func TestDemoRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--samples", "0"}, "0 samples"},
		{[]string{"--epochs", "0"}, "0 epochs"},
		{[]string{"--batch", "0"}, "batch size 0"},
		{[]string{"--workers", "0"}, "0 workers"},
		{[]string{"--samples", "5", "--corrupt", "6"}, "6 corrupt samples"},
		{[]string{"--max-failures", "-1"}, "at most -1 failures"},
		{[]string{"--samples", "many"}, `invalid argument "many" for "--samples"`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--log-level", "loud"}, `--log-level: log level "loud"`},
		{[]string{"extra-argument"}, `unknown command "extra-argument"`},
	} {
		_, stderr, code := runCLI(t, append([]string{"demo"}, tc.args...)...)
		wantUsageError(t, "ferry demo", stderr, code, tc.want)
	}
	_, stderr, code := runCLI(t, "demo", "curate", "--files", "0")
	wantUsageError(t, "ferry demo curate", stderr, code, "--files 0: want at least 1")
	_, stderr, code = runCLI(t, "no-such-command")
	wantUsageError(t, "ferry", stderr, code, `unknown command "no-such-command"`)
}

// TestLogLevelFromEnv: FERRY_LOG_LEVEL sets the level; a bad value is a
// usage error naming the variable.
func TestLogLevelFromEnv(t *testing.T) {
	t.Setenv("FERRY_LOG_LEVEL", "chatty")
	_, stderr, code := runCLI(t, "demo", "--samples", "0")
	wantUsageError(t, "ferry demo", stderr, code, `$FERRY_LOG_LEVEL: log level "chatty"`)
	t.Setenv("FERRY_LOG_LEVEL", "error")
	// At level error, the warning for each failed sample is not shown.
	_, stderr, code = runCLI(t, "demo", "--samples", "10", "--epochs", "1", "--corrupt", "1", "--max-failures", "1", "--no-progress")
	if code != 0 || strings.Contains(stderr, "sample failed") {
		t.Errorf("FERRY_LOG_LEVEL=error: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestDemoInterrupted: Ctrl+C stops the demo; it says in which epoch and
// what the epochs done delivered, prints no error, and exits 130.
func TestDemoInterrupted(t *testing.T) {
	code, stdout, stderr := interrupt(t, "demo --samples 100 --epochs 100000 --batch 10 --workers 1", "epoch 1/100000:")
	if code != 130 {
		t.Fatalf("exit %d, want 130\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "\ninterrupted in epoch ") || !strings.Contains(stdout, " of 100000: ") || !strings.Contains(stdout, "done (") {
		t.Errorf("no interruption summary:\n%s", stdout)
	}
	if strings.Contains(stderr, "Error:") {
		t.Errorf("an interruption printed an error:\n%s", stderr)
	}
}

func TestDemoCurate(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	dir := t.TempDir()
	stdout, stderr, code := runCLI(t, "demo", "curate", "--files", "40", "--values", "20", "--corrupt", "5", "--interrupt-at", "20", "--dir", dir)
	if code != 0 {
		t.Fatalf("ferry demo curate: exit %d\nstderr:\n%s", code, stderr)
	}
	for _, want := range []string{"generated 40 inputs", "input 5 truncated on purpose",
		"run 1: stopped on purpose after 20 inputs (--interrupt-at), as Ctrl+C or kill -9 would stop it, to show the resume",
		"run 1 stopped as planned: ", "run 2: resumes from the checkpoint", "39 done (", "index 5 failed after 3 attempts", "truncated", "statistics merged"} {
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

	// The checkpoint is never deleted unless asked: again in the same
	// --dir, without --resume or --fresh, the command refuses.
	_, stderr, code = runCLI(t, "demo", "curate", "--files", "40", "--values", "20", "--dir", dir)
	wantUsageError(t, "ferry demo curate", stderr, code, "--dir "+dir+" holds the checkpoint of an earlier run (checkpoint.db): --resume continues it, --fresh deletes it")
	// --resume: everything is there already.
	stdout, stderr, code = runCLI(t, "demo", "curate", "--files", "40", "--values", "20", "--corrupt", "5", "--dir", dir, "--resume", "--no-progress")
	if code != 0 || !strings.Contains(stdout, "39 done (39 resumed)") {
		t.Errorf("--resume of a finished job: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// --resume of another data set: the checkpoint is not resumed.
	_, stderr, code = runCLI(t, "demo", "curate", "--files", "40", "--values", "21", "--corrupt", "5", "--dir", dir, "--resume", "--no-progress")
	if code != 1 || !strings.Contains(stderr, "changed since the checkpoint was written (params.DataSet differ") {
		t.Errorf("--resume with another --values: exit %d\n%s", code, stderr)
	}
	// --fresh starts again.
	stdout, stderr, code = runCLI(t, "demo", "curate", "--files", "40", "--values", "20", "--interrupt-at", "0", "--dir", dir, "--fresh", "--no-progress")
	if code != 0 || !strings.Contains(stdout, "done (0 resumed)") || strings.Contains(stdout, "run 1") {
		t.Errorf("--fresh: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestDemoCurateDefaultsFollowFiles: --files alone works; the corrupted
// input defaults to one that exists.
func TestDemoCurateDefaultsFollowFiles(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	stdout, stderr, code := runCLI(t, "demo", "curate", "--files", "100", "--values", "5", "--no-progress")
	if code != 0 {
		t.Fatalf("--files 100: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"input 50 truncated on purpose", "stopped on purpose after 50 inputs", "99 done ("} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

// TestDemoCurateInterruptAtTheEnd: a planned interruption that comes as
// the last input ends interrupts nothing, and the output does not claim it
// did.
func TestDemoCurateInterruptAtTheEnd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	stdout, stderr, code := runCLI(t, "demo", "curate", "--files", "10", "--values", "5", "--corrupt", "-1", "--interrupt-at", "9", "--no-progress", "--workers", "1")
	if code != 0 || !strings.Contains(stdout, "10 done (") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "run 1 stopped as planned") && !strings.Contains(line, "9 of 10 inputs done") || strings.Contains(line, "0 not run yet") {
			t.Errorf("claims an interruption of nothing: %q\n%s", line, stdout)
		}
	}
}

func TestDemoCurateRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--files", "0"}, "--files 0: want at least 1"},
		{[]string{"--values", "0"}, "--values 0: want at least 1"},
		{[]string{"--workers", "0"}, "--workers 0: want at least 1"},
		{[]string{"--files", "5", "--corrupt", "5"}, "--corrupt 5: want the index of an input, 0 to 4, or -1 for none"},
		{[]string{"--interrupt-at", "-5"}, "--interrupt-at -5: want 1 to 9999 inputs"},
		{[]string{"--files", "100", "--interrupt-at", "200"}, "--interrupt-at 200: want 1 to 99 inputs (fewer than --files 100)"},
		{[]string{"--backend", "threads"}, `--backend "threads"`},
		{[]string{"--resume"}, "--resume needs --dir"},
		{[]string{"--resume", "--dir", dir}, "--resume: " + dir + " holds no checkpoint"},
		{[]string{"--resume", "--fresh", "--dir", dir}, "--resume and --fresh: choose one"},
		{[]string{"--resume", "--interrupt-at", "3", "--dir", dir}, "--resume and --interrupt-at"},
	} {
		_, stderr, code := runCLI(t, append([]string{"demo", "curate"}, tc.args...)...)
		wantUsageError(t, "ferry demo curate", stderr, code, tc.want)
	}
}

// TestDemoCurateCtrlCThenResume: SIGINT in the middle of the job: a
// summary of what was done, the command that resumes it, the directory
// kept, exit 130; that command then finishes the job, resuming what was
// done.
func TestDemoCurateCtrlCThenResume(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := interrupt(t, "demo curate --files 1000 --values 2000 --interrupt-at 0 --workers 1 --no-progress --dir "+dir, "generated 1000 inputs")
	if code != 130 {
		t.Fatalf("exit %d, want 130\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var done int
	var resume string
	for _, line := range strings.Split(stdout, "\n") {
		if rest, ok := strings.CutPrefix(line, "interrupted: "); ok {
			// Workers may not have started: then nothing was done.
			n, _, _ := strings.Cut(rest, " ")
			done, _ = strconv.Atoi(n)
			if !strings.Contains(rest, "of 1000 inputs done") || !strings.Contains(rest, "recorded in "+filepath.Join(dir, "checkpoint.db")) {
				t.Errorf("summary %q", line)
			}
		}
		if r, ok := strings.CutPrefix(line, "to resume: "); ok {
			resume = r
		}
	}
	if !strings.Contains(stdout, "\ninterrupted") {
		t.Errorf("no summary:\n%s", stdout)
	}
	want := "ferry demo curate --files 1000 --no-progress=true --values 2000 --workers 1 --dir " + dir + " --resume"
	if resume != want {
		t.Fatalf("resume command %q, want %q\nstdout:\n%s", resume, want, stdout)
	}
	if strings.Contains(stderr, "Error:") {
		t.Errorf("an interruption printed an error:\n%s", stderr)
	}
	stdout, stderr, code = runCLI(t, strings.Fields(resume)[1:]...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s\n%s", resume, code, stdout, stderr)
	}
	if want := "999 done (" + strconv.Itoa(done) + " resumed)"; !strings.Contains(stdout, want) || !strings.Contains(stdout, "resuming the run recorded in") {
		t.Errorf("%s: stdout lacks %q:\n%s", resume, want, stdout)
	}
}

// TestDemoCurateSIGTERMWithTempDir: SIGTERM too; the temporary directory
// that holds the checkpoint is kept, and named.
func TestDemoCurateSIGTERMWithTempDir(t *testing.T) {
	code, stdout, stderr := signalAfter(t, "demo curate --files 1000 --values 2000 --interrupt-at 0 --workers 1 --no-progress", "generated 1000 inputs", syscall.SIGTERM)
	if code != 130 {
		t.Fatalf("exit %d, want 130\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	_, rest, ok := strings.Cut(stdout, " --dir ")
	dir, _, _ := strings.Cut(rest, " ")
	if !ok || !strings.Contains(dir, "ferry-curate-") {
		t.Fatalf("no resume command naming the temporary directory:\n%s", stdout)
	}
	defer os.RemoveAll(dir)
	if _, err := os.Stat(filepath.Join(dir, "checkpoint.db")); err != nil {
		t.Errorf("the checkpoint is gone: %v", err)
	}
}

func TestDemoGraph(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), ignoreSpawner)
	dir := t.TempDir()
	stdout, stderr, code := runCLI(t, "demo", "graph", "--seconds", "40", "--speed", "0", "--dir", dir)
	if code != 0 {
		t.Fatalf("ferry demo graph: exit %d\nstderr:\n%s", code, stderr)
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
	code, stdout, stderr := interrupt(t, "demo graph --seconds 100000 --speed 32 --rate 512 --templates 8 --no-progress --dir "+t.TempDir(), "searching")
	if code != 130 {
		t.Fatalf("ferry demo graph after SIGINT: exit %d; want 130\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "interrupted: drained after") {
		t.Fatalf("no interruption summary:\n%s", stdout)
	}
}

func TestDemoGraphRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--placement", "thread"}, {"--rate", "1000"}, {"--seconds", "0"}} {
		_, stderr, code := runCLI(t, append([]string{"demo", "graph"}, args...)...)
		wantUsageError(t, "ferry demo graph", stderr, code, args[0])
	}
}

// TestBenchInterrupted: SIGTERM stops the benchmark running; the command
// says what ran and exits 130.
func TestBenchInterrupted(t *testing.T) {
	code, stdout, stderr := signalAfter(t, "bench --filter pipeline/sleep-1ms-c16", "NAME", syscall.SIGTERM)
	if code != 130 || !strings.Contains(stdout, "interrupted: 0 of 1 benchmarks ran; pipeline/sleep-1ms-c16 did not finish") {
		t.Fatalf("exit %d, want 130 and a summary\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
