//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/internal/benchsuite"
)

func TestBenchJSONQuickLimits(t *testing.T) {
	stdout, stderr, code := runCLI(t, "bench", "--json", "--quick", "--filter", "limit/")
	if code != 0 {
		t.Fatalf("ferry bench: exit %d\nstderr:\n%s", code, stderr)
	}
	// Which figure each limit must report.
	want := map[string]string{
		"limit/chan-handoff":  "items_per_sec",
		"limit/memcpy-8MiB":   "bytes_per_sec",
		"limit/socket-stream": "bytes_per_sec",
		"limit/process-start": "ns",
	}
	var got []string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var obj map[string]any
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", sc.Text(), err)
		}
		if dec.More() {
			t.Fatalf("line %q holds more than one JSON value", sc.Text())
		}
		name, _ := obj["name"].(string)
		got = append(got, name)
		figure, ok := want[name]
		if !ok {
			t.Errorf("unexpected benchmark %q in %q", name, sc.Text())
			continue
		}
		if v, _ := obj[figure].(float64); !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s: %s = %v, want a positive number", name, figure, obj[figure])
		}
		if runs, _ := obj["runs"].(float64); runs < 1 {
			t.Errorf("%s: runs = %v, want >= 1", name, obj["runs"])
		}
		if sp, _ := obj["spread"].(map[string]any); sp == nil || !(sp["min"].(float64) <= 1 && sp["max"].(float64) >= 1) {
			t.Errorf("%s: spread = %v, want min ≤ 1 ≤ max", name, obj["spread"])
		}
		for k, v := range obj {
			if k != "name" && k != "runs" && k != "spread" && k != figure {
				t.Errorf("%s: unexpected field %s=%v", name, k, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if wantOrder := []string{"limit/chan-handoff", "limit/memcpy-8MiB", "limit/socket-stream", "limit/process-start"}; !slices.Equal(got, wantOrder) {
		t.Errorf("benchmarks = %v, want %v", got, wantOrder)
	}
}

// TestBenchUnknownFilter: a prefix that matches nothing is a usage error
// naming it, even beside one that matches; nothing runs.
func TestBenchUnknownFilter(t *testing.T) {
	for _, filter := range []string{"no-such-benchmark/", "limit/,no-such-benchmark/"} {
		stdout, stderr, code := runCLI(t, "bench", "--quick", "--filter", filter)
		wantUsageError(t, "ferry bench", stderr, code, `--filter: no benchmark name starts with "no-such-benchmark/"`)
		if stdout != "" {
			t.Errorf("--filter %s: stdout = %q, want nothing", filter, stdout)
		}
	}
}

func TestBenchRejectsArgs(t *testing.T) {
	_, stderr, code := runCLI(t, "bench", "limit/")
	wantUsageError(t, "ferry bench", stderr, code, `unknown command "limit/"`)
}

func TestSelectBenches(t *testing.T) {
	got, err := selectBenches(" proc/start-first-item, limit/process-start ,")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range got {
		names = append(names, b.Name)
	}
	if want := []string{"limit/process-start", "proc/start-first-item"}; !slices.Equal(names, want) {
		t.Errorf("selected %v, want %v (in the suite's order)", names, want)
	}
	if all, err := selectBenches(""); err != nil || len(all) != len(benchsuite.All()) {
		t.Errorf("empty filter: %d benchmarks, %v; want all", len(all), err)
	}
}

func fake(name string, res benchsuite.Result, err error) benchsuite.Benchmark {
	return benchsuite.Benchmark{Name: name, Run: func(context.Context, benchsuite.Config) (benchsuite.Result, error) {
		return res, err
	}}
}

func TestRunBenchFailureRunsTheRest(t *testing.T) {
	boom := errors.New("boom")
	benches := []benchsuite.Benchmark{
		fake("fake/ok", benchsuite.Result{ItemsPerSec: 10, Runs: 3}, nil),
		fake("fake/fails", benchsuite.Result{}, boom),
		fake("fake/nan", benchsuite.Result{Ns: math.NaN(), Runs: 3}, nil),
		fake("fake/ok2", benchsuite.Result{Name: "ignored", BytesPerSec: 20, Runs: 3}, nil),
	}
	var out, errOut bytes.Buffer
	err := runBench(context.Background(), &out, &errOut, benches, benchOptions{json: true})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"fake/fails", "fake/nan"} {
		if !strings.Contains(err.Error(), name) || !strings.Contains(errOut.String(), name) {
			t.Errorf("err = %q, stderr = %q: want both to name %s", err, errOut.String(), name)
		}
	}
	if !strings.Contains(errOut.String(), "boom") {
		t.Errorf("stderr = %q, want the benchmark's error", errOut.String())
	}
	wantOut := `{"name":"fake/ok","items_per_sec":10,"runs":3}` + "\n" +
		`{"name":"fake/ok2","bytes_per_sec":20,"runs":3}` + "\n"
	if out.String() != wantOut {
		t.Errorf("stdout =\n%s\nwant\n%s", out.String(), wantOut)
	}
}

// TestRunBenchTable: columns right-aligned under their headers, the
// spread, the ratio to the limit when it ran ("-" when it did not), implied
// figures marked and explained.
func TestRunBenchTable(t *testing.T) {
	fakeLimit := func(name, limit string, res benchsuite.Result) benchsuite.Benchmark {
		b := fake(name, res, nil)
		b.Limit = limit
		return b
	}
	benches := []benchsuite.Benchmark{
		fake("limit/a", benchsuite.Result{ItemsPerSec: 48.2e6, BytesPerSec: 10e9, Runs: 7, Spread: benchsuite.Spread{Min: 0.97, Max: 1.05}}, nil),
		fakeLimit("pipeline/a-longer-name", "limit/a", benchsuite.Result{BytesPerSec: 12.34e9, Ns: 1500, CPUSecPerGB: 0.25, Runs: 7}),
		fakeLimit("shm/alloc", "limit/a", benchsuite.Result{ItemsPerSec: 12.05e6, BytesPerSec: 531e9, BytesImplied: true, Runs: 7}),
		fakeLimit("shm/no-limit-run", "limit/b", benchsuite.Result{ItemsPerSec: 1, Runs: 7}),
	}
	var out bytes.Buffer
	if err := runBench(context.Background(), &out, &out, benches, benchOptions{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("got %d lines, want header + 4 + the note on implied figures:\n%s", len(lines), out.String())
	}
	// Each figure is right-aligned under its header; names are left-aligned.
	header := []rune(lines[0])
	var colEnds []int // rune index just past each header word
	for i := range header {
		if header[i] != ' ' && (i+1 == len(header) || header[i+1] == ' ') {
			colEnds = append(colEnds, i+1)
		}
	}
	// NAME ITEMS/S BYTES/S LATENCY CPU-S/GB RUNS SPREAD VS LIMIT
	if len(colEnds) != 9 {
		t.Fatalf("header %q: %d words", lines[0], len(colEnds))
	}
	for i, want := range [][]string{
		{"limit/a", "48.2 M/s", "10.0 GB/s", "-", "-", "7", "-3…+5%", ""},
		{"pipeline/a-longer-name", "-", "12.3 GB/s", "1.50 µs", "0.25", "7", "-", "1.23× a"},
		{"shm/alloc", "12.1 M/s", "≈531 GB/s", "-", "-", "7", "-", "0.25× a"},
		{"shm/no-limit-run", "1.00 /s", "-", "-", "-", "7", "-", "-"},
	} {
		line := []rune(lines[i+1])
		if !strings.HasPrefix(string(line), want[0]+" ") {
			t.Errorf("line %q does not start with the name %q", string(line), want[0])
		}
		for j, cell := range want[1:7] {
			before := string(line[:colEnds[j+1]])
			if !strings.HasSuffix(before, " "+cell) {
				t.Errorf("line %q: %q not right-aligned under %q", string(line), cell, strings.Fields(lines[0])[j+1])
			}
		}
		if ratio := strings.TrimSpace(string(line[colEnds[6]:])); ratio != want[7] {
			t.Errorf("line %q: ratio %q, want %q", string(line), ratio, want[7])
		}
	}
	if !strings.HasPrefix(lines[5], "≈ implied") {
		t.Errorf("last line %q does not explain ≈", lines[5])
	}
}

// TestRunBenchJSONFields: --json carries the spread, the limit, the ratio
// and the implied flag.
func TestRunBenchJSONFields(t *testing.T) {
	b := fake("shm/alloc", benchsuite.Result{ItemsPerSec: 5, BytesPerSec: 531e9, BytesImplied: true, Runs: 3, Spread: benchsuite.Spread{Min: 0.5, Max: 1.25}}, nil)
	b.Limit = "limit/a"
	benches := []benchsuite.Benchmark{fake("limit/a", benchsuite.Result{ItemsPerSec: 20, Runs: 3}, nil), b}
	var out bytes.Buffer
	if err := runBench(context.Background(), &out, &out, benches, benchOptions{json: true}); err != nil {
		t.Fatal(err)
	}
	want := `{"name":"limit/a","items_per_sec":20,"runs":3}` + "\n" +
		`{"name":"shm/alloc","items_per_sec":5,"bytes_per_sec":531000000000,"bytes_per_sec_implied":true,"runs":3,"spread":{"min":0.5,"max":1.25},"limit":"limit/a","ratio":0.25}` + "\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// TestRunBenchInterrupted: when the context ends, the run stops at the
// benchmark running with an error that says which.
func TestRunBenchInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	benches := []benchsuite.Benchmark{
		fake("limit/a", benchsuite.Result{ItemsPerSec: 20, Runs: 3}, nil),
		{Name: "pipeline/b", Run: func(ctx context.Context, _ benchsuite.Config) (benchsuite.Result, error) {
			cancel()
			<-ctx.Done()
			return benchsuite.Result{}, ctx.Err()
		}},
		fake("pipeline/c", benchsuite.Result{ItemsPerSec: 20, Runs: 3}, nil),
	}
	var out bytes.Buffer
	err := runBench(ctx, &out, &out, benches, benchOptions{json: true})
	var ie *interruptedError
	if !errors.As(err, &ie) || ie.done != 1 || ie.name != "pipeline/b" || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want an interruption in pipeline/b after 1 benchmark", err)
	}
	if strings.Contains(out.String(), "pipeline/c") {
		t.Errorf("ran on after the interruption:\n%s", out.String())
	}
}

func TestFormats(t *testing.T) {
	cases := []struct {
		f    func(float64) string
		in   float64
		want string
	}{
		{formatItemsPerSec, 0, "-"},
		{formatItemsPerSec, 512, "512 /s"},
		{formatItemsPerSec, 1049, "1.05 k/s"},
		{formatItemsPerSec, 48.24e6, "48.2 M/s"},
		{formatItemsPerSec, 999.6e6, "1.00 G/s"},
		{formatBytesPerSec, 0, "-"},
		{formatBytesPerSec, 12.34e9, "12.3 GB/s"},
		{formatBytesPerSec, 512e6, "512 MB/s"},
		{formatNs, 0, "-"},
		{formatNs, 850, "850 ns"},
		{formatNs, 12345, "12.3 µs"},
		{formatNs, 4.561e6, "4.56 ms"},
		{formatNs, 1.2e9, "1.20 s"},
		{formatCPUSecPerGB, 0, "-"},
		{formatCPUSecPerGB, 0.41234, "0.412"},
	}
	for _, tc := range cases {
		if got := tc.f(tc.in); got != tc.want {
			t.Errorf("format(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
