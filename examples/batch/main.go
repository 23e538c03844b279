// Command batch runs an indexed batch job: it counts the words of every
// file of a directory in two worker processes, writes one count file per
// input, merges a running total over all of them, and keeps a SQLite
// checkpoint. One input is not valid UTF-8: it fails on its first attempt
// (its error is marked permanent: reading the same bytes again cannot
// help, so Retries does not repeat it) and is reported with its error and
// worker, while the others succeed. A second run with Resume finds
// everything done and runs nothing but that input.
//
//	go run ./examples/batch
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/progress"
	"github.com/ferrypipe/ferry/retry"
)

// Params are the job's parameters: they are part of its identity, and
// worker processes rebuild the job from them.
type Params struct {
	Inputs []string // the files to count
	OutDir string   // where the counts go
}

// Doc is one input file, read.
type Doc struct {
	Path string
	Text string
}

// Totals is the running total over every input.
type Totals struct{ Files, Words int }

// WordCount is the job, defined at package level so that worker processes
// (this program, re-executed) find it by name.
var WordCount = batch.Define("examples.wordcount", func(p Params) (*batch.Job[Doc, string], error) {
	return &batch.Job[Doc, string]{
		Source: batch.FromFunc(len(p.Inputs), func(_ context.Context, i int) (Doc, error) {
			b, err := os.ReadFile(p.Inputs[i])
			if err != nil {
				return Doc{}, err
			}
			if !utf8.Valid(b) {
				return Doc{}, retry.Permanent(fmt.Errorf("%s is not UTF-8 text", p.Inputs[i]))
			}
			return Doc{Path: p.Inputs[i], Text: string(b)}, nil
		}),
		Filters: []batch.Filter[Doc]{
			batch.Map("lower", func(_ context.Context, d Doc) (Doc, error) {
				d.Text = strings.ToLower(d.Text)
				return d, nil
			}),
		},
		Accumulators: []batch.Accumulator[Doc]{
			batch.Accumulate("totals", func() Totals { return Totals{} },
				func(t Totals, d Doc) (Totals, error) {
					return Totals{t.Files + 1, t.Words + len(strings.Fields(d.Text))}, nil
				},
				func(a, b Totals) Totals { return Totals{a.Files + b.Files, a.Words + b.Words} }),
		},
		// The sink writes the count of each input and returns its path.
		Sink: batch.SinkFunc[Doc, string](func(_ context.Context, i int, docs []Doc) (string, error) {
			out := filepath.Join(p.OutDir, fmt.Sprintf("%03d.count", i))
			words := 0
			for _, d := range docs {
				words += len(strings.Fields(d.Text))
			}
			return out, os.WriteFile(out, fmt.Appendf(nil, "%d\n", words), 0o644)
		}),
		Version: "1",
	}, nil
})

func main() {
	proc.Main()  // a worker process serves the job here and never returns
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	if err := run(context.Background()); err != nil {
		logs.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "ferry-wordcount-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := Params{OutDir: filepath.Join(dir, "out")}
	if err := os.Mkdir(p.OutDir, 0o755); err != nil {
		return err
	}
	for i := range 20 {
		path := filepath.Join(dir, fmt.Sprintf("in-%02d.txt", i))
		text := []byte(strings.Repeat("the quick brown fox ", i+1))
		if i == 7 {
			text = []byte{0xff, 0xfe, 'x'} // not UTF-8: this input fails
		}
		if err := os.WriteFile(path, text, 0o644); err != nil {
			return err
		}
		p.Inputs = append(p.Inputs, path)
	}
	ckpt := filepath.Join(dir, "wordcount.db")

	// Bars on a terminal, a line every few seconds otherwise; the run's log
	// lines go above the bars.
	display := progress.NewBatch(os.Stderr)
	logger := logs.SetupWriter(display.LogWriter(os.Stderr))
	for _, pass := range []string{"first run", "resumed run"} {
		cp, err := checkpoint.Open(ckpt) // Run closes it
		if err != nil {
			return err
		}
		res, err := WordCount.Run(ctx, p,
			batch.WithBackend(batch.Processes(2)),
			batch.Retries(1), batch.ContinueOnError(),
			batch.WithCheckpoint(cp), batch.Resume(),
			batch.Events(display), batch.Logger(logger))
		if err != nil {
			return err
		}
		totals, err := batch.State[Totals](res, "totals")
		if err != nil {
			return err
		}
		fmt.Printf("%s: %d done (%d from the checkpoint), %d failed; %d files, %d words\n",
			pass, res.Done, res.Resumed, res.Failed, totals.Files, totals.Words)
		var ie *batch.IndexError
		if errors.As(res.Err(), &ie) {
			fmt.Printf("  index %d failed after %d attempts: %v\n", ie.Index, ie.Attempts, ie.Err)
		}
	}
	return nil
}
