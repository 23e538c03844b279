//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDemoStatsJSON: --stats-json writes the final stats for scripts.
func TestDemoStatsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	_, stderr, code := runCLI(t, "demo", "--samples", "40", "--epochs", "2", "--batch", "8", "--workers", "1", "--no-progress", "--stats-json", path)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Items     int64 `json:"items"`
		EpochsRun int   `json:"epochs_run"`
		Epochs    []struct {
			Items int `json:"items"`
		} `json:"epochs"`
		Pipeline struct {
			Stages []struct {
				Name        string
				Invocations int64
			}
		} `json:"pipeline"`
		Pool struct{ Calls int64 } `json:"pool"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	if st.Items != 80 || st.EpochsRun != 2 || len(st.Epochs) != 2 || st.Epochs[1].Items != 40 || st.Pool.Calls != 10 {
		t.Errorf("stats: %+v", st)
	}
	found := false
	for _, s := range st.Pipeline.Stages {
		found = found || s.Name == "load" && s.Invocations == 10
	}
	if !found {
		t.Errorf("no load stage with 10 calls in %+v", st.Pipeline.Stages)
	}
}

// TestDemoProfile: --profile writes a table and a plot of each stage's
// throughput by concurrency.
func TestDemoProfile(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := runCLI(t, "demo", "--samples", "16", "--batch", "8", "--workers", "1", "--profile", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	table, err := os.ReadFile(filepath.Join(dir, "profile.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"decode", "to-tensor", "load (batches of 8, 1 workers)", "saturates at"} {
		if !strings.Contains(string(table), want) || !strings.Contains(stdout, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "profile.svg"))
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Fatalf("profile.svg: %v", err)
	}
}

// TestDemoMetrics: --metrics serves Prometheus metrics while the demo runs;
// a scrape mid-run shows the pipeline's, the pool's and the arena's series.
func TestDemoMetrics(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "FERRY_TEST_ARGS=demo --samples 100 --epochs 100000 --batch 10 --workers 1 --metrics 127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "serving metrics on "); ok {
				urls <- u
			}
		}
		close(urls)
	}()
	url, ok := <-urls
	if !ok {
		t.Fatal("the demo did not say where it serves metrics")
	}
	// Once an epoch has ended, the pipeline and the pool are registered.
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "epoch 1/") {
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("after Ctrl+C: %v, want exit 130", err)
	}
	for _, want := range []string{
		`ferry_stage_calls_total{pipeline="demo",stage="load"}`,
		`ferry_stage_call_duration_seconds_bucket{pipeline="demo",stage="load"`,
		`ferry_queue_occupancy_ratio{pipeline="demo",stage="load"}`,
		`ferry_pool_workers{pool="load"} 1`,
		`ferry_arena_segment_bytes{arena="batches"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

// TestDemoCurateStatsJSON: --stats-json of curate has both runs' counts.
func TestDemoCurateStatsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	_, stderr, code := runCLI(t, "demo", "curate", "--files", "40", "--values", "5", "--no-progress", "--stats-json", path)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Interrupted, Final *struct {
			Done, Failed, Resumed int
			Failures              []int `json:"failed_indices"`
		}
		Stats struct{ Count int64 } `json:"stats"`
		Want  struct{ Count int64 } `json:"want"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if st.Interrupted == nil || st.Final == nil || st.Final.Done != 39 || st.Final.Failed != 1 || len(st.Final.Failures) != 1 ||
		st.Final.Failures[0] != 20 || st.Final.Resumed == 0 || st.Stats.Count != st.Want.Count || st.Stats.Count == 0 {
		t.Errorf("stats:\n%s", data)
	}
}

// TestDemoCPUProfile: --cpuprofile writes this process's profile and each
// load worker's.
func TestDemoCPUProfile(t *testing.T) {
	dir := t.TempDir()
	_, stderr, code := runCLI(t, "demo", "--samples", "40", "--epochs", "1", "--batch", "8", "--workers", "2", "--no-progress", "--cpuprofile", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	parent, _ := filepath.Glob(filepath.Join(dir, "ferry-*.pprof"))
	workers, _ := filepath.Glob(filepath.Join(dir, "worker-*.pprof"))
	if len(parent) != 1 || len(workers) != 2 {
		t.Fatalf("profiles: %v and %v, want this process's and 2 workers'", parent, workers)
	}
}

// TestStatsJSONToStdout: with --stats-json -, standard output is the JSON
// alone; --profile takes neither --metrics nor --stats-json.
func TestStatsJSONToStdout(t *testing.T) {
	stdout, stderr, code := runCLI(t, "demo", "--samples", "16", "--epochs", "1", "--batch", "8", "--workers", "1", "--no-progress", "--stats-json", "-")
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil || st["items"] != float64(16) {
		t.Fatalf("exit %d; stdout is not the JSON alone:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "summary") {
		t.Errorf("the summary is not on stderr:\n%s", stderr)
	}
	stdout, stderr, code = runCLI(t, "demo", "curate", "--files", "20", "--values", "5", "--no-progress", "--stats-json", "-")
	if code != 0 || json.Unmarshal([]byte(stdout), &st) != nil || st["final"] == nil {
		t.Fatalf("curate: exit %d; stdout is not the JSON alone:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	_, stderr, code = runCLI(t, "demo", "--profile", t.TempDir(), "--stats-json", "-")
	wantUsageError(t, "ferry demo", stderr, code, "--profile")
}
