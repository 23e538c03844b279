package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrypipe/ferry/internal/benchsuite"
)

// benchOptions are the flags of ferry bench.
type benchOptions struct {
	json   bool
	quick  bool
	filter string
}

// newBenchCmd returns the bench command, which runs the benchmark suite.
func newBenchCmd() *cobra.Command {
	var opts benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the benchmark suite",
		Long: `Run ferry's benchmark suite and print one row per benchmark as it finishes.

The "limit/" benchmarks run first: they measure the machine's own ceilings
(a channel handoff, a memcpy, a Unix socket, a process start) in the same
run, for comparison with the pipeline figures. Every figure is a median over
RUNS repeated runs; SPREAD is how far the lowest and the highest run were
from it. A benchmark bounded by a limit shows its figure over the limit's
(VS LIMIT, e.g. "0.77× memcpy-8MiB"), when the limit ran too (--filter
limit/,shm/ keeps both). A figure marked ≈ is implied, not measured: items/s
times the size of an item written in place, never copied.

--filter takes comma-separated name prefixes; a prefix that matches no
benchmark is an error.

With --json, each benchmark prints one JSON object on its own line with its
"name", the figures that apply to it (items_per_sec, bytes_per_sec and
bytes_per_sec_implied, ns, cpu_sec_per_gb), "runs", "spread" ({"min", "max"}:
the lowest and highest run over the median), and "limit" and "ratio" where
it has them. A benchmark that fails is reported on stderr and makes the
command exit 1 once the others have run. Ctrl+C or SIGTERM stops the
benchmark running, says which ran, and exits 130.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			benches, err := selectBenches(opts.filter)
			if err != nil {
				return usageError(cmd, err)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			err = runBench(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), benches, opts)
			var ie *interruptedError
			if errors.As(err, &ie) {
				fmt.Fprintf(cmd.OutOrStdout(), "interrupted: %d of %d benchmarks ran; %s did not finish\n", ie.done, len(benches), ie.name)
				return interrupted(err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.json, "json", false, "print one JSON object per line per benchmark")
	f.StringVar(&opts.filter, "filter", "", "run only the benchmarks whose name starts with `PREFIX` (several: comma-separated; each must match)")
	f.BoolVar(&opts.quick, "quick", false, "short run, well under a second per benchmark (for CI)")
	return cmd
}

// resultPrinter prints benchmark results as they come.
type resultPrinter interface {
	header() error
	row(benchsuite.Result) error
	footer() error
}

// interruptedError is a bench run stopped by its context's end.
type interruptedError struct {
	done int    // benchmarks that finished
	name string // the one that did not
	err  error  // the context's error
}

func (e *interruptedError) Error() string {
	return fmt.Sprintf("bench: interrupted in %s: %v", e.name, e.err)
}

func (e *interruptedError) Unwrap() error { return e.err }

// runBench runs benches in order, printing each result to out as soon as it
// is known and each failure to errOut. It runs every benchmark even if some
// fail, and then returns an error naming the ones that failed. When ctx
// ends it stops at once with an *interruptedError. A result gets its ratio
// to its limit's when the limit ran before it.
func runBench(ctx context.Context, out, errOut io.Writer, benches []benchsuite.Benchmark, opts benchOptions) error {
	var p resultPrinter
	if opts.json {
		p = jsonPrinter{enc: json.NewEncoder(out)}
	} else {
		p = newTablePrinter(out, benches)
	}
	if err := p.header(); err != nil {
		return fmt.Errorf("bench: writing output: %w", err)
	}
	cfg := benchsuite.Config{Quick: opts.quick}
	var failed []string
	limits := map[string]benchsuite.Result{}
	for i, b := range benches {
		res, err := b.Run(ctx, cfg)
		if ctx.Err() != nil {
			return &interruptedError{done: i, name: b.Name, err: ctx.Err()}
		}
		if err == nil {
			err = checkFigures(res)
		}
		if err != nil {
			fmt.Fprintf(errOut, "ferry bench: %s: %v\n", b.Name, err)
			failed = append(failed, b.Name)
			continue
		}
		res.Name = b.Name
		limits[b.Name] = res
		if res.Limit = b.Limit; b.Limit != "" {
			if l, ok := limits[b.Limit]; ok {
				res.Ratio, _ = res.RatioTo(l)
			}
		}
		if err := p.row(res); err != nil {
			return fmt.Errorf("bench: writing output: %w", err)
		}
	}
	if err := p.footer(); err != nil {
		return fmt.Errorf("bench: writing output: %w", err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: %d of %d benchmarks failed: %s",
			len(failed), len(benches), strings.Join(failed, ", "))
	}
	return nil
}

// checkFigures rejects figures that cannot be printed or marshalled
// meaningfully: NaN, infinities and negative values.
func checkFigures(r benchsuite.Result) error {
	figures := []struct {
		name string
		v    float64
	}{
		{"items_per_sec", r.ItemsPerSec},
		{"bytes_per_sec", r.BytesPerSec},
		{"ns", r.Ns},
		{"cpu_sec_per_gb", r.CPUSecPerGB},
		{"spread.min", r.Spread.Min},
		{"spread.max", r.Spread.Max},
	}
	for _, f := range figures {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("bad figure %s=%v", f.name, f.v)
		}
	}
	if r.Runs < 0 {
		return fmt.Errorf("bad runs=%d", r.Runs)
	}
	return nil
}

// jsonPrinter prints one JSON object per line per result.
type jsonPrinter struct{ enc *json.Encoder }

func (jsonPrinter) header() error { return nil }

func (jsonPrinter) footer() error { return nil }

func (p jsonPrinter) row(r benchsuite.Result) error { return p.enc.Encode(r) }

// tablePrinter prints an aligned table, one row per result, flushed as soon
// as it is written. Because each row is flushed on its own, tabwriter
// cannot align the rows with each other; the cells are therefore padded to
// fixed widths (the name column to the longest name to be run) and
// tabwriter only separates the columns.
type tablePrinter struct {
	tw        *tabwriter.Writer
	out       io.Writer
	nameWidth int
	implied   bool // a figure marked ≈ was printed: the footer explains it
}

// figureWidth is the width of the figure columns: enough for "99.9 GB/s".
const figureWidth = 10

func newTablePrinter(out io.Writer, benches []benchsuite.Benchmark) *tablePrinter {
	w := len("NAME")
	for _, b := range benches {
		w = max(w, len(b.Name))
	}
	return &tablePrinter{tw: tabwriter.NewWriter(out, 0, 0, 2, ' ', 0), out: out, nameWidth: w}
}

func (p *tablePrinter) header() error {
	return p.line("NAME", []string{"ITEMS/S", "BYTES/S", "LATENCY", "CPU-S/GB"}, "RUNS", "SPREAD", "VS LIMIT")
}

func (p *tablePrinter) row(r benchsuite.Result) error {
	bytes := formatBytesPerSec(r.BytesPerSec)
	if r.BytesImplied && r.BytesPerSec > 0 {
		bytes = "≈" + bytes
		p.implied = true
	}
	figures := []string{formatItemsPerSec(r.ItemsPerSec), bytes, formatNs(r.Ns), formatCPUSecPerGB(r.CPUSecPerGB)}
	return p.line(r.Name, figures, strconv.Itoa(r.Runs), formatSpread(r.Spread), formatRatio(r))
}

func (p *tablePrinter) footer() error {
	if !p.implied {
		return nil
	}
	_, err := fmt.Fprintln(p.out, "≈ implied: items/s × item size; the items were written in place, not copied")
	return err
}

// line writes one row: name left-aligned, figures, runs and spread
// right-aligned, the ratio to the limit last, and flushes it.
func (p *tablePrinter) line(name string, figures []string, runs, spread, ratio string) error {
	cells := []string{fmt.Sprintf("%-*s", p.nameWidth, name)}
	for _, f := range figures {
		cells = append(cells, fmt.Sprintf("%*s", figureWidth, f))
	}
	cells = append(cells, fmt.Sprintf("%*s", len("RUNS"), runs), fmt.Sprintf("%*s", spreadWidth, spread), ratio)
	if _, err := fmt.Fprintln(p.tw, strings.TrimRight(strings.Join(cells, "\t"), " \t")); err != nil {
		return err
	}
	return p.tw.Flush()
}

// spreadWidth is the width of the spread column: enough for "-45…+120%".
const spreadWidth = 10

// formatSpread formats a spread as percentages under and over the
// median: "-3…+5%".
func formatSpread(s benchsuite.Spread) string {
	if s == (benchsuite.Spread{}) {
		return noFigure
	}
	return fmt.Sprintf("%+.0f…%+.0f%%", (s.Min-1)*100, (s.Max-1)*100)
}

// formatRatio formats a result's ratio to its limit: "0.77× memcpy-8MiB";
// "" without a limit, "-" when the limit did not run.
func formatRatio(r benchsuite.Result) string {
	switch {
	case r.Limit == "":
		return ""
	case r.Ratio == 0:
		return noFigure
	}
	return strconv.FormatFloat(r.Ratio, 'f', 2, 64) + "× " + strings.TrimPrefix(r.Limit, "limit/")
}

// noFigure stands in a table cell for a figure a benchmark does not report.
const noFigure = "-"

// formatItemsPerSec formats an item rate with an SI prefix: "48.2 M/s".
func formatItemsPerSec(v float64) string {
	if v == 0 {
		return noFigure
	}
	return si(v) + "/s"
}

// formatBytesPerSec formats a byte rate in decimal units: "12.3 GB/s",
// "512 MB/s".
func formatBytesPerSec(v float64) string {
	if v == 0 {
		return noFigure
	}
	return si(v) + "B/s"
}

// formatNs formats a latency given in nanoseconds: "850 ns", "12.3 µs",
// "4.56 ms", "1.20 s".
func formatNs(ns float64) string {
	switch {
	case ns == 0:
		return noFigure
	case ns < 999.5:
		return sig3(ns) + " ns"
	case ns < 999.5e3:
		return sig3(ns/1e3) + " µs"
	case ns < 999.5e6:
		return sig3(ns/1e6) + " ms"
	default:
		return sig3(ns/1e9) + " s"
	}
}

// formatCPUSecPerGB formats CPU seconds per gigabyte to 3 significant
// digits.
func formatCPUSecPerGB(v float64) string {
	if v == 0 {
		return noFigure
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// si formats v to 3 significant digits with a decimal SI prefix and a
// space before the unit that follows: "48.2 M", "512 ", "1.05 k".
func si(v float64) string {
	const prefixes = " kMGTPE"
	i := 0
	for v >= 999.5 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	return sig3(v) + " " + strings.TrimSpace(prefixes[i:i+1])
}

// sig3 formats v, in [0, 999.5) in the usual case, to 3 significant digits
// without an exponent.
func sig3(v float64) string {
	switch {
	case v >= 99.95:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 9.995:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// selectBenches returns the benchmarks whose names start with one of the
// comma-separated prefixes in filter (all of them for an empty filter), in
// the suite's order. A prefix that matches no benchmark is an error.
func selectBenches(filter string) ([]benchsuite.Benchmark, error) {
	all := benchsuite.All()
	if strings.TrimSpace(filter) == "" {
		return all, nil
	}
	var prefixes, unmatched []string
	for p := range strings.SplitSeq(filter, ",") {
		if p = strings.TrimSpace(p); p != "" {
			prefixes = append(prefixes, p)
		}
	}
	for _, p := range prefixes {
		if !slices.ContainsFunc(all, func(b benchsuite.Benchmark) bool { return strings.HasPrefix(b.Name, p) }) {
			unmatched = append(unmatched, strconv.Quote(p))
		}
	}
	if len(unmatched) > 0 {
		groups := map[string]bool{}
		for _, b := range all {
			g, _, _ := strings.Cut(b.Name, "/")
			groups[g+"/"] = true
		}
		return nil, fmt.Errorf("--filter: no benchmark name starts with %s (the names start with %s)",
			strings.Join(unmatched, " or "), strings.Join(slices.Sorted(maps.Keys(groups)), ", "))
	}
	var out []benchsuite.Benchmark
	for _, b := range all {
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(b.Name, p) }) {
			out = append(out, b)
		}
	}
	return out, nil
}
