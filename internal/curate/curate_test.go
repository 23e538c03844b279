package curate_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/internal/curate"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// TestRunInterruptsAndResumes runs the demo small: the interrupted run's
// indices are resumed, not run again, the corrupted input is reported, and
// every output file is there.
func TestRunInterruptsAndResumes(t *testing.T) {
	for _, backend := range []string{"processes", "jetstream"} {
		t.Run(backend, func(t *testing.T) { testRunInterruptsAndResumes(t, backend) })
	}
}

func testRunInterruptsAndResumes(t *testing.T, backend string) {
	dir := t.TempDir()
	var events int
	cfg := curate.Config{Dir: dir, Files: 60, Values: 50, Workers: 2, Backend: backend, Corrupt: 7, InterruptAt: 30, Seed: 3,
		NewObserver: func() batch.Observer { return batch.ObserverFunc(func(batch.Event) { events++ }) }}
	var out bytes.Buffer
	sum, err := curate.Run(context.Background(), &out, cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if sum.Interrupted == nil || sum.Interrupted.Done < 30 || sum.Interrupted.NotRun == 0 {
		t.Fatalf("first run: %v", sum.Interrupted)
	}
	res := sum.Final
	if res.Resumed != sum.Interrupted.Done || res.Done != 59 || res.Failed != 1 {
		t.Fatalf("final run: %v", res)
	}
	bad := res.Indices[7]
	if bad.OK || bad.Attempts != 3 || !strings.Contains(bad.Err.Error(), "truncated") || !strings.Contains(bad.Worker, "pid ") {
		t.Fatalf("corrupted input: %+v", bad)
	}
	var ie *batch.IndexError
	if !errors.As(bad.Err, &ie) || ie.Index != 7 {
		t.Fatalf("corrupted input's error: %v", bad.Err)
	}
	for _, x := range res.Indices {
		if !x.OK {
			continue
		}
		if x.Output != filepath.Join(dir, "out", curate.FileName(x.Index)) {
			t.Fatalf("index %d wrote %q", x.Index, x.Output)
		}
		if _, err := curate.ReadField(x.Output); err != nil {
			t.Fatalf("index %d: %v", x.Index, err)
		}
	}
	if events == 0 {
		t.Error("the observer saw no events")
	}
	if s := sum.String(); !strings.Contains(s, "index 7 failed after 3 attempts") || !strings.Contains(s, "59 done (") {
		t.Errorf("summary:\n%s", s)
	}
}

// TestReadFieldRejectsBadFiles names the file and the problem.
func TestReadFieldRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"short": "FS", "magic": "XXXX\x00\x00\x00\x00", "truncated": "FSIM\x02\x00\x00\x00abcd"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := curate.ReadField(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
