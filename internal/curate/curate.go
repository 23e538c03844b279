// Package curate is ferry's curation demo: an indexed batch job that
// converts a generated data set of simulation outputs, file by file, in
// worker processes, with progress, a checkpoint, a corrupted input
// reported as failed, and a resume after an interruption.
package curate

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
	"github.com/ferrypipe/ferry/batch/jetstream"
)

// Files of the data set are FSIM files: the magic "FSIM", a little-endian
// uint32 count, then count little-endian float32 values.
const magic = "FSIM"

// Params are the parameters of the Convert job; they are part of its
// identity.
type Params struct {
	In, Out string  // directories of the inputs and the outputs
	Files   int     // inputs 00000.fsim … (Files-1).fsim
	Gain    float32 // calibration: v*Gain + Offset
	Offset  float32
	// DataSet says how the inputs were generated. The job does not read
	// it: it is here so that a checkpoint of another data set in the same
	// directory is not resumed (a *batch.JobChangedError instead).
	DataSet DataSet
}

// DataSet is what Generate makes the inputs from.
type DataSet struct {
	Values  int    // mean values per input
	Seed    uint64 // seed of the values
	Corrupt int    // the input truncated on purpose, or -1
}

// Field is one input file, read.
type Field struct {
	Name   string
	Values []float32
}

// Stats summarises calibrated values; its merge is exact, whatever the
// order and the grouping of indices.
type Stats struct {
	Count    int64
	Sum      float64
	Min, Max float32
}

func newStats() Stats { return Stats{Min: float32(math.Inf(1)), Max: float32(math.Inf(-1))} }

func addStats(s Stats, f Field) (Stats, error) {
	for _, v := range f.Values {
		s.Count++
		s.Sum += float64(v)
		s.Min, s.Max = min(s.Min, v), max(s.Max, v)
	}
	return s, nil
}

func mergeStats(a, b Stats) Stats {
	return Stats{Count: a.Count + b.Count, Sum: a.Sum + b.Sum, Min: min(a.Min, b.Min), Max: max(a.Max, b.Max)}
}

// Mean returns the mean value.
func (s Stats) Mean() float64 { return s.Sum / float64(max(s.Count, 1)) }

// Convert reads each input, calibrates its values, drops empty fields,
// keeps running statistics and writes the result to the output directory;
// its output per index is the path it wrote.
var Convert = batch.Define("curate.convert", func(p Params) (*batch.Job[Field, string], error) {
	if p.In == "" || p.Out == "" || p.Files < 0 {
		return nil, fmt.Errorf("curate: bad parameters %+v", p)
	}
	return &batch.Job[Field, string]{
		Source: batch.FromFunc(p.Files, func(ctx context.Context, i int) (Field, error) {
			return ReadField(filepath.Join(p.In, FileName(i)))
		}),
		Filters: []batch.Filter[Field]{
			batch.Map("calibrate", func(_ context.Context, f Field) (Field, error) {
				out := Field{Name: f.Name, Values: make([]float32, len(f.Values))}
				for j, v := range f.Values {
					out.Values[j] = v*p.Gain + p.Offset
				}
				return out, nil
			}),
			batch.Keep("drop-empty", func(_ context.Context, f Field) (bool, error) { return len(f.Values) > 0, nil }),
		},
		Accumulators: []batch.Accumulator[Field]{batch.Accumulate("stats", newStats, addStats, mergeStats)},
		Sink: batch.SinkFunc[Field, string](func(_ context.Context, i int, fields []Field) (string, error) {
			var values []float32
			for _, f := range fields {
				values = append(values, f.Values...)
			}
			path := filepath.Join(p.Out, FileName(i))
			return path, WriteField(path, values)
		}),
		Version: "1",
	}, nil
})

// FileName is the name of the file of index i.
func FileName(i int) string { return fmt.Sprintf("%05d.fsim", i) }

// ReadField reads an FSIM file.
func ReadField(path string) (Field, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Field{}, err
	}
	if len(b) < 8 || string(b[:4]) != magic {
		return Field{}, fmt.Errorf("%s: not an FSIM file", path)
	}
	n := binary.LittleEndian.Uint32(b[4:8])
	if body := len(b) - 8; uint64(body) != 4*uint64(n) {
		return Field{}, fmt.Errorf("%s: truncated: the header announces %d values (%d bytes), %d bytes follow", path, n, 4*uint64(n), body)
	}
	f := Field{Name: filepath.Base(path), Values: make([]float32, n)}
	for j := range f.Values {
		f.Values[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[8+4*j:]))
	}
	return f, nil
}

// WriteField writes values as an FSIM file, atomically: a reader never
// sees half a file, even if the writer is killed.
func WriteField(path string, values []float32) error {
	b := make([]byte, 8, 8+4*len(values))
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(values)))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	// A converted input may be written twice (at-least-once execution):
	// the second write replaces the first whole.
	return batch.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Generate writes files FSIM inputs of 1 to 2×values values each into dir,
// from seed; the inputs whose indices are in corrupt are truncated. It
// returns the statistics that Convert must find over the good inputs.
func Generate(dir string, files, values int, seed uint64, p Params, corrupt ...int) (Stats, error) {
	bad := map[int]bool{}
	for _, i := range corrupt {
		bad[i] = true
	}
	want := newStats()
	for i := range files {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		vs := make([]float32, 1+r.IntN(2*values))
		for j := range vs {
			vs[j] = float32(r.NormFloat64())
		}
		path := filepath.Join(dir, FileName(i))
		if err := WriteField(path, vs); err != nil {
			return want, err
		}
		if bad[i] {
			if err := os.Truncate(path, 8+int64(len(vs))); err != nil {
				return want, err
			}
			continue
		}
		for _, v := range vs {
			want, _ = addStats(want, Field{Values: []float32{v*p.Gain + p.Offset}})
		}
	}
	return want, nil
}

// Config configures Run.
type Config struct {
	Dir         string // where the data set, the outputs and the checkpoint go
	Files       int    // inputs
	Values      int    // mean values per input
	Workers     int    // worker processes
	Backend     string // "processes" (or "") or "jetstream" (an embedded NATS server and its workers)
	Corrupt     int    // index of the corrupted input (-1: none)
	InterruptAt int    // stop the first run on purpose after this many indices, to resume it (0: no planned interruption)
	Seed        uint64
	// Resume continues the run recorded in the checkpoint in Dir (which
	// must hold one), with no planned interruption.
	Resume bool
	// Fresh deletes a checkpoint that Dir holds and starts again. Without
	// Resume or Fresh, Run refuses a Dir that holds a checkpoint.
	// NewObserver makes an observer to show the progress of a run, or is
	// nil.
	NewObserver func() batch.Observer
	Fresh       bool
	// Logger receives the runs' logs (retries, failures); nil: slog's
	// default.
	Logger *slog.Logger
}

// CheckpointFile is the name of the checkpoint in Config.Dir.
const CheckpointFile = "checkpoint.db"

// Validate reports the first setting Run cannot use, naming its flag in
// ferry demo curate.
func (c Config) Validate() error {
	switch {
	case c.Files < 1:
		return fmt.Errorf("--files %d: want at least 1", c.Files)
	case c.Values < 1:
		return fmt.Errorf("--values %d: want at least 1", c.Values)
	case c.Workers < 1:
		return fmt.Errorf("--workers %d: want at least 1", c.Workers)
	case c.Backend != "" && c.Backend != "processes" && c.Backend != "jetstream":
		return fmt.Errorf("--backend %q: want processes or jetstream", c.Backend)
	case c.Corrupt < -1 || c.Corrupt >= c.Files:
		return fmt.Errorf("--corrupt %d: want the index of an input, 0 to %d, or -1 for none", c.Corrupt, c.Files-1)
	case c.InterruptAt < 0 || c.InterruptAt >= c.Files:
		return fmt.Errorf("--interrupt-at %d: want 1 to %d inputs (fewer than --files %d), or 0 for no planned interruption", c.InterruptAt, c.Files-1, c.Files)
	case c.Resume && c.Fresh:
		return errors.New("--resume and --fresh: choose one")
	case c.Resume && c.InterruptAt > 0:
		return errors.New("--resume and --interrupt-at: a resumed run has no planned interruption")
	case c.Dir == "":
		return errors.New("no directory for the data set and the checkpoint")
	}
	return nil
}

// Summary is what Run did.
type Summary struct {
	Interrupted *batch.Result[string] // the first run, stopped on purpose at InterruptAt (nil without one)
	Final       *batch.Result[string] // the run that finished the job
	// Stopped is the run that ctx's end stopped (nil if it did not end
	// during a run): what it did is in the checkpoint, for Resume.
	Stopped *batch.Result[string]
	// Checkpoint is the path of the checkpoint.
	Checkpoint string
	Stats      Stats // merged by the job
	Want       Stats // computed directly from the inputs
}

// Run generates the data set, runs Convert in worker processes with a
// checkpoint, stops the run on purpose after InterruptAt indices, as a
// kill would, and resumes it to the end (with Resume: resumes the run in
// the checkpoint to the end). The corrupted input fails (three attempts,
// then reported); every other index is done exactly once in the final
// result. When ctx ends, Run returns its error with the run it stopped in
// Summary.Stopped. Run never deletes a checkpoint unless cfg.Fresh says
// so.
func Run(ctx context.Context, w io.Writer, cfg Config) (Summary, error) {
	var sum Summary
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	sum.Checkpoint = filepath.Join(cfg.Dir, CheckpointFile)
	if err := cfg.CheckDir(); err != nil {
		return sum, err
	}
	if cfg.Fresh {
		for _, f := range []string{sum.Checkpoint, sum.Checkpoint + "-wal", sum.Checkpoint + "-shm"} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return sum, fmt.Errorf("--fresh: deleting the checkpoint: %w", err)
			}
		}
	}
	p := Params{In: filepath.Join(cfg.Dir, "in"), Out: filepath.Join(cfg.Dir, "out"), Files: cfg.Files, Gain: 0.5, Offset: 10,
		DataSet: DataSet{Values: cfg.Values, Seed: cfg.Seed, Corrupt: cfg.Corrupt}}
	for _, d := range []string{p.In, p.Out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return sum, err
		}
	}
	start := time.Now()
	var err error
	if sum.Want, err = Generate(p.In, cfg.Files, cfg.Values, cfg.Seed, p, cfg.Corrupt); err != nil {
		return sum, fmt.Errorf("generating the data set: %w", err)
	}
	corrupt := "none truncated"
	if cfg.Corrupt >= 0 {
		corrupt = fmt.Sprintf("input %d truncated on purpose", cfg.Corrupt)
	}
	fmt.Fprintf(w, "generated %d inputs in %s (%s) in %v\n", cfg.Files, p.In, corrupt, time.Since(start).Round(time.Millisecond))

	run := func(ctx context.Context, resume bool, obs batch.Observer) (*batch.Result[string], error) {
		ckpt, err := checkpoint.Open(sum.Checkpoint, checkpoint.Logger(cmp.Or(cfg.Logger, slog.Default())))
		if err != nil {
			return nil, err
		}
		backend := batch.Processes(cfg.Workers)
		if cfg.Backend == "jetstream" {
			backend = jetstream.Local(cfg.Workers)
		}
		opts := []batch.Option{
			batch.WithBackend(backend),
			batch.ContinueOnError(), batch.Retries(2), batch.Timeout(time.Minute),
			batch.WithCheckpoint(ckpt),
		}
		if cfg.Logger != nil {
			opts = append(opts, batch.Logger(cfg.Logger))
		}
		if resume {
			opts = append(opts, batch.Resume())
		}
		if obs != nil {
			opts = append(opts, batch.Events(obs))
		}
		res, err := Convert.Run(ctx, p, opts...)
		if err != nil && ctx.Err() != nil && res != nil {
			sum.Stopped = res
		}
		return res, err
	}
	observer := func() batch.Observer {
		if cfg.NewObserver == nil {
			return nil
		}
		return cfg.NewObserver()
	}

	resume := cfg.Resume
	if resume {
		fmt.Fprintf(w, "resuming the run recorded in %s\n", sum.Checkpoint)
	}
	var res *batch.Result[string]
	if cfg.InterruptAt > 0 {
		// Stop the first run once InterruptAt indices are done, as a kill
		// or Ctrl+C would: what it finished is in the checkpoint.
		fmt.Fprintf(w, "run 1: stopped on purpose after %d inputs (--interrupt-at), as Ctrl+C or kill -9 would stop it, to show the resume\n", cfg.InterruptAt)
		ictx, interrupt := context.WithCancel(ctx)
		done := 0
		stopper := batch.ObserverFunc(func(e batch.Event) {
			if e.Kind == batch.EventDone {
				if done++; done == cfg.InterruptAt {
					interrupt()
				}
			}
		})
		res, err = run(ictx, false, tee(observer(), stopper))
		interrupt()
		if ctx.Err() != nil {
			return sum, fmt.Errorf("curate: run 1: %w", ctx.Err())
		}
		sum.Stopped = nil // stopped as planned, not by ctx
		if err != nil && !errors.Is(err, context.Canceled) {
			return sum, err
		}
		if res.NotRun == 0 {
			// The planned interruption came as the last index ended.
			fmt.Fprintf(w, "run 1 ended before its planned interruption could stop anything: %d done, %d failed; nothing to resume\n", res.Done, res.Failed)
		} else {
			sum.Interrupted = res
			fmt.Fprintf(w, "run 1 stopped as planned: %d of %d inputs done and recorded in %s, %d not run yet\n",
				res.Done, len(res.Indices), sum.Checkpoint, res.NotRun)
			fmt.Fprintf(w, "run 2: resumes from the checkpoint and runs only the %d inputs not done\n", len(res.Indices)-res.Done)
			resume = true
			res = nil
		}
	}
	if res == nil {
		if res, err = run(ctx, resume, observer()); err != nil {
			if ctx.Err() != nil {
				return sum, fmt.Errorf("curate: %w", err)
			}
			return sum, err
		}
	}
	sum.Final = res
	if sum.Stats, err = batch.State[Stats](res, "stats"); err != nil {
		return sum, err
	}
	return sum, sum.check(cfg)
}

// CheckDir checks that the checkpoint in Dir is as Resume and Fresh
// expect: there to Resume; not there unless Resume or Fresh (Run never
// deletes a checkpoint unless Fresh asks it to). Its errors name the flags
// of ferry demo curate.
func (c Config) CheckDir() error {
	path := filepath.Join(c.Dir, CheckpointFile)
	_, err := os.Stat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the checkpoint %s: %w", path, err)
	}
	switch {
	case c.Resume && !exists:
		return fmt.Errorf("--resume: %s holds no checkpoint (%s) to resume; run without --resume to start one", c.Dir, CheckpointFile)
	case exists && !c.Resume && !c.Fresh:
		return fmt.Errorf("--dir %s holds the checkpoint of an earlier run (%s): --resume continues it, --fresh deletes it and starts again", c.Dir, CheckpointFile)
	}
	return nil
}

// check verifies the final result: every good index done once, the
// corrupted one failed, and the merged statistics equal to the direct ones.
func (s Summary) check(cfg Config) error {
	res := s.Final
	for _, x := range res.Indices {
		switch {
		case x.Index == cfg.Corrupt && x.OK:
			return fmt.Errorf("the corrupted input %d was converted", x.Index)
		case x.Index != cfg.Corrupt && !x.OK:
			return fmt.Errorf("input %d failed: %w", x.Index, x.Err)
		}
	}
	if s.Interrupted != nil && res.Resumed != s.Interrupted.Done {
		return fmt.Errorf("%d indices resumed, but the interrupted run finished %d", res.Resumed, s.Interrupted.Done)
	}
	if s.Stats.Count != s.Want.Count || s.Stats.Min != s.Want.Min || s.Stats.Max != s.Want.Max || math.Abs(s.Stats.Sum-s.Want.Sum) > 1e-6*math.Abs(s.Want.Sum)+1e-9 {
		return fmt.Errorf("merged statistics %+v differ from the direct ones %+v", s.Stats, s.Want)
	}
	return nil
}

// String is the summary printed at the end of the demo.
func (s Summary) String() string {
	res := s.Final
	out := fmt.Sprintf("done: %s\n", res)
	for _, x := range res.Indices {
		if !x.OK {
			out += fmt.Sprintf("  failed: %v\n", x.Err)
		}
	}
	out += fmt.Sprintf("  statistics merged from every worker: %d values, mean %.4f, min %.4f, max %.4f (checked against a direct pass over the inputs)\n",
		s.Stats.Count, s.Stats.Mean(), s.Stats.Min, s.Stats.Max)
	return out
}

// tee sends the events to both observers (a may be nil).
func tee(a, b batch.Observer) batch.Observer {
	if a == nil {
		return b
	}
	return teeObserver{a, b}
}

type teeObserver struct{ a, b batch.Observer }

func (t teeObserver) Begin(job batch.JobInfo, resumed int) {
	t.a.Begin(job, resumed)
	t.b.Begin(job, resumed)
}
func (t teeObserver) Event(e batch.Event) { t.a.Event(e); t.b.Event(e) }
func (t teeObserver) End()                { t.a.End(); t.b.End() }

// RunJSON is one run of a Summary, for scripts.
type RunJSON struct {
	Done     int     `json:"done"`
	Failed   int     `json:"failed"`
	NotRun   int     `json:"not_run"`
	Resumed  int     `json:"resumed"`
	Seconds  float64 `json:"seconds"`
	Failures []int   `json:"failed_indices"`
}

func runJSON(r *batch.Result[string]) *RunJSON {
	if r == nil {
		return nil
	}
	out := &RunJSON{Done: r.Done, Failed: r.Failed, NotRun: r.NotRun, Resumed: r.Resumed, Seconds: r.Duration.Seconds(), Failures: []int{}}
	for _, x := range r.Indices {
		if !x.OK && x.Err != nil && !errors.Is(x.Err, batch.ErrNotRun) {
			out.Failures = append(out.Failures, x.Index)
		}
	}
	return out
}

// JSON returns the summary for scripts (`ferry demo curate --stats-json`):
// each run's counts (null for a run that did not happen), the checkpoint's
// path, and the statistics the job merged against those computed directly.
func (s Summary) JSON() ([]byte, error) {
	type statsJSON struct {
		Count    int64   `json:"count"`
		Sum      float64 `json:"sum"`
		Min, Max float32
	}
	return json.MarshalIndent(struct {
		Interrupted *RunJSON  `json:"interrupted"`
		Final       *RunJSON  `json:"final"`
		Stopped     *RunJSON  `json:"stopped"`
		Checkpoint  string    `json:"checkpoint"`
		Stats       statsJSON `json:"stats"`
		Want        statsJSON `json:"want"`
	}{runJSON(s.Interrupted), runJSON(s.Final), runJSON(s.Stopped), s.Checkpoint,
		statsJSON(finite(s.Stats)), statsJSON(finite(s.Want))}, "", "  ")
}

// finite is s with the infinities of no values (Min, Max) as zeros: JSON
// has no infinity.
func finite(s Stats) Stats {
	if s.Count == 0 {
		s.Min, s.Max = 0, 0
	}
	return s
}
