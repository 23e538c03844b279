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

// execute runs the ferry command in-process with args and returns what it
// wrote to stdout and stderr.
func execute(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestBenchJSONQuickLimits(t *testing.T) {
	stdout, stderr, err := execute(t, "bench", "--json", "--quick", "--filter", "limit/")
	if err != nil {
		t.Fatalf("ferry bench: %v\nstderr:\n%s", err, stderr)
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
		for k, v := range obj {
			if k != "name" && k != "runs" && k != figure {
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

func TestBenchUnknownFilter(t *testing.T) {
	stdout, _, err := execute(t, "bench", "--quick", "--filter", "no-such-benchmark/")
	if err == nil || !strings.Contains(err.Error(), "no-such-benchmark/") {
		t.Errorf("err = %v, want an error naming the filter", err)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
}

func TestBenchRejectsArgs(t *testing.T) {
	if _, _, err := execute(t, "bench", "limit/"); err == nil {
		t.Error("ferry bench limit/: want an error for the positional argument")
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

func TestRunBenchTable(t *testing.T) {
	benches := []benchsuite.Benchmark{
		fake("limit/a", benchsuite.Result{ItemsPerSec: 48.2e6, Runs: 7}, nil),
		fake("pipeline/a-longer-name", benchsuite.Result{BytesPerSec: 12.34e9, Ns: 1500, CPUSecPerGB: 0.25, Runs: 7}, nil),
	}
	var out bytes.Buffer
	if err := runBench(context.Background(), &out, &out, benches, benchOptions{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want header + 2:\n%s", len(lines), out.String())
	}
	// Each figure is right-aligned under its header; names are left-aligned.
	header := []rune(lines[0])
	var colEnds []int // rune index just past each header word
	for i := range header {
		if header[i] != ' ' && (i+1 == len(header) || header[i+1] == ' ') {
			colEnds = append(colEnds, i+1)
		}
	}
	for i, want := range [][]string{
		{"limit/a", "48.2 M/s", "-", "-", "-", "7"},
		{"pipeline/a-longer-name", "-", "12.3 GB/s", "1.50 µs", "0.25", "7"},
	} {
		line := []rune(lines[i+1])
		if len(line) != len(header) {
			t.Errorf("line %q is %d runes wide, header %d", string(line), len(line), len(header))
			continue
		}
		if !strings.HasPrefix(string(line), want[0]+" ") {
			t.Errorf("line %q does not start with the name %q", string(line), want[0])
		}
		for j, cell := range want[1:] {
			before := string(line[:colEnds[j+1]])
			if !strings.HasSuffix(before, " "+cell) {
				t.Errorf("line %q: %q not right-aligned under %q", string(line), cell, strings.Fields(lines[0])[j+1])
			}
		}
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
