package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// TestMain makes the test binary its own load worker (see LoadBatchFunc),
// and fails the package if any test leaves a goroutine behind: Run must
// close its pipeline, its worker pool and its progress bars on every path.
func TestMain(m *testing.M) {
	proc.Main()
	// proc's spawner thread lives as long as the program, by design.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/ferrypipe/ferry/proc.spawnLoop"))
}

// smallConfig is a run of a fraction of a second.
func smallConfig() Config {
	cfg := DefaultConfig()
	cfg.Samples = 45
	cfg.Epochs = 2
	cfg.BatchSize = 8
	cfg.Workers = 2
	cfg.MaxFailures = 0
	cfg.Progress = ProgressNone
	return cfg
}

// recorder counts, per epoch, how often each sample came through and
// which samples each batch held.
type recorder struct {
	t       *testing.T
	samples int
	seen    map[int][]int   // epoch → count per sample
	batches map[int][][]int // epoch → the samples of each batch, in order of arrival
}

func newRecorder(t *testing.T, cfg *Config) *recorder {
	r := &recorder{t: t, samples: cfg.Samples, seen: map[int][]int{}, batches: map[int][][]int{}}
	cfg.OnBatch = r.onBatch
	return r
}

func (r *recorder) onBatch(epoch int, b Batch) {
	if r.seen[epoch] == nil {
		r.seen[epoch] = make([]int, r.samples)
	}
	if len(b.Labels) != b.Len() || len(b.Data) != b.Len()*TensorLen {
		r.t.Errorf("epoch %d: a batch of %d samples has %d labels and %d values", epoch, b.Len(), len(b.Labels), len(b.Data))
		return
	}
	if b.Worker == os.Getpid() || b.Worker <= 0 {
		r.t.Errorf("epoch %d: a batch made by pid %d, not by a worker process", epoch, b.Worker)
	}
	for i := range b.Len() {
		x := b.Tensor(i)
		r.seen[epoch][x.Index]++
		if len(x.Data) != TensorLen {
			r.t.Errorf("epoch %d, sample %d: tensor of %d values, want %d", epoch, x.Index, len(x.Data), TensorLen)
		}
		if x.Label < 0 || x.Label >= len(Labels) {
			r.t.Errorf("epoch %d, sample %d: label %d", epoch, x.Index, x.Label)
		}
	}
	r.batches[epoch] = append(r.batches[epoch], slices.Clone(b.Indices))
}

// check verifies that each epoch delivered every sample exactly once except
// the missing ones, which must not come through at all, and that batch k
// held samples k×batch to (k+1)×batch-1 but the missing ones.
func (r *recorder) check(epochs, batch int, missing []int) {
	r.t.Helper()
	if len(r.seen) != epochs {
		r.t.Errorf("batches came in %d epochs, want %d", len(r.seen), epochs)
	}
	var want [][]int
	for i := range r.samples {
		if i%batch == 0 {
			want = append(want, nil)
		}
		if !slices.Contains(missing, i) {
			want[len(want)-1] = append(want[len(want)-1], i)
		}
	}
	want = slices.DeleteFunc(want, func(b []int) bool { return len(b) == 0 })
	for e := 1; e <= epochs; e++ {
		for i, n := range r.seen[e] {
			want := 1
			if slices.Contains(missing, i) {
				want = 0
			}
			if n != want {
				r.t.Errorf("epoch %d: sample %d came through %d times, want %d", e, i, n, want)
			}
		}
		got := slices.Clone(r.batches[e])
		slices.SortFunc(got, func(a, b []int) int { return a[0] - b[0] })
		if !slices.EqualFunc(got, want, slices.Equal) {
			r.t.Errorf("epoch %d: batches %v, want %v", e, got, want)
		}
	}
}

// squeeze replaces each run of spaces in text with one space, to match
// lines of aligned tables.
func squeeze(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

// stage returns the stats of the named stage.
func stage(t *testing.T, s pipeline.Stats, name string) pipeline.StageStats {
	t.Helper()
	for _, st := range s.Stages {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no stage %q in stats:\n%s", name, s)
	return pipeline.StageStats{}
}

func TestRunDeliversEverySampleOncePerEpoch(t *testing.T) {
	cfg := smallConfig()
	rec := newRecorder(t, &cfg)
	var out bytes.Buffer
	sum, err := Run(t.Context(), &out, cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	rec.check(cfg.Epochs, cfg.BatchSize, nil)

	const batches = (45 + 7) / 8
	if len(sum.Epochs) != cfg.Epochs {
		t.Fatalf("summary has %d epochs, want %d", len(sum.Epochs), cfg.Epochs)
	}
	for i, e := range sum.Epochs {
		want := EpochSummary{Epoch: i + 1, Items: cfg.Samples, Batches: batches, Failed: 0, Duration: e.Duration}
		if e != want {
			t.Errorf("epoch summary %+v, want %+v", e, want)
		}
		if e.Duration <= 0 {
			t.Errorf("epoch %d took %v", e.Epoch, e.Duration)
		}
	}
	if sum.Items != int64(cfg.Samples*cfg.Epochs) || sum.Batches != int64(batches*cfg.Epochs) || sum.Failed != 0 {
		t.Errorf("summary: %d items, %d batches, %d failed; want %d, %d, 0",
			sum.Items, sum.Batches, sum.Failed, cfg.Samples*cfg.Epochs, batches*cfg.Epochs)
	}
	if len(sum.FailedSamples) != 0 || len(sum.Corrupted) != 0 {
		t.Errorf("failed samples %v, corrupted %v, want none", sum.FailedSamples, sum.Corrupted)
	}
	if sum.Wall <= 0 || sum.ItemsPerSec() <= 0 || sum.DatasetBytes <= 0 {
		t.Errorf("wall %v, %v items/s, data set of %d bytes: want them positive", sum.Wall, sum.ItemsPerSec(), sum.DatasetBytes)
	}
	for c, m := range sum.Mean {
		if math.IsNaN(m) || m == 0 {
			t.Errorf("mean of channel %d is %v", c, m)
		}
	}

	// The pipeline ran exactly the requested epochs: no work on an epoch
	// that no one asked for.
	calls := int64(batches * cfg.Epochs)
	for name, want := range map[string]int64{"samples": int64(cfg.Samples * cfg.Epochs), "collect": int64(cfg.Samples * cfg.Epochs), "load": calls} {
		if st := stage(t, sum.Stats, name); st.Invocations != want || st.Failures != 0 {
			t.Errorf("stage %s: %d calls, %d failures; want %d, 0", name, st.Invocations, st.Failures, want)
		}
	}
	if st := stage(t, sum.Stats, "load"); st.Concurrency != 2*cfg.Workers {
		t.Errorf("load concurrency %d, want %d (two calls per worker process)", st.Concurrency, 2*cfg.Workers)
	}
	// The load stage ran in cfg.Workers worker processes, none of which
	// died, and every batch came back through the arena, which is free at
	// the end.
	if p := sum.Pool; len(p.Workers) != cfg.Workers || p.Calls != calls || p.Failures != 0 || p.Restarts != 0 {
		t.Errorf("load pool stats: %+v", p)
	}
	if sum.PoolStart <= 0 {
		t.Errorf("the load workers started in %v", sum.PoolStart)
	}
	for _, w := range sum.Pool.Workers {
		if w.PID == os.Getpid() || w.PID <= 0 {
			t.Errorf("load worker pid %d", w.PID)
		}
	}
	if a := sum.Arena; a.Published != uint64(calls) || a.Reclaimed != a.Published || a.Free != a.Count || a.SegmentSize < cfg.BatchSize*TensorLen*4 {
		t.Errorf("arena stats %+v: want %d batches published and reclaimed, every segment free, segments of at least %d bytes",
			a, calls, cfg.BatchSize*TensorLen*4)
	}

	text := squeeze(out.String())
	for _, want := range []string{"summary", "epochs 2 of 2", "items 90", "batches 12",
		"failed 0", "items/s", "stages and queues", "collect", "load",
		"load in 2 worker processes", "load workers pids ", ", ready in ", "; 12 calls, 0 restarts, 0 timeouts",
		"shared memory 6 segments of ", "; 12 batches came through it, 0 segments held at the end"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "epoch 1/2:") {
		t.Errorf("ProgressNone printed progress lines:\n%s", text)
	}
}

func TestRunDropsCorruptSamplesWithinBudget(t *testing.T) {
	cfg := smallConfig()
	cfg.Samples = 40
	cfg.Corrupt = 3
	cfg.MaxFailures = 3
	rec := newRecorder(t, &cfg)
	var out bytes.Buffer
	sum, err := Run(t.Context(), &out, cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if len(sum.Corrupted) != cfg.Corrupt {
		t.Fatalf("corrupted samples %v, want %d of them", sum.Corrupted, cfg.Corrupt)
	}
	rec.check(cfg.Epochs, cfg.BatchSize, sum.Corrupted)

	if !slices.Equal(sum.FailedSamples, sum.Corrupted) {
		t.Errorf("failed samples %v, want the corrupted ones %v", sum.FailedSamples, sum.Corrupted)
	}
	if want := int64(cfg.Corrupt * cfg.Epochs); sum.Failed != want {
		t.Errorf("summary counts %d failures, want %d", sum.Failed, want)
	}
	if sum.Stats.Failures != 0 {
		t.Errorf("the pipeline counts %d failed batches, want none (samples fail one by one)", sum.Stats.Failures)
	}
	for _, e := range sum.Epochs {
		if e.Items != cfg.Samples-cfg.Corrupt || e.Failed != cfg.Corrupt {
			t.Errorf("epoch %d: %d items, %d failed; want %d, %d", e.Epoch, e.Items, e.Failed, cfg.Samples-cfg.Corrupt, cfg.Corrupt)
		}
	}

	// Each failure is logged once per epoch with its sample, the worker
	// and the cause, as the worker reported it.
	text := out.String()
	for _, i := range sum.Corrupted {
		for e := 1; e <= cfg.Epochs; e++ {
			start := fmt.Sprintf("warning: sample failed: epoch %d, worker pid ", e)
			cause := fmt.Sprintf(": sample %d: decode: png: ", i)
			n := 0
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, start) && strings.Contains(line, cause) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("output has %d lines starting %q and saying %q, want 1:\n%s", n, start, cause, text)
			}
		}
	}
	if want := fmt.Sprintf("failed 6 (3 corrupted on purpose: %s; budget 3 per epoch)", list(sum.Corrupted, 10)); !strings.Contains(squeeze(text), want) {
		t.Errorf("output lacks %q:\n%s", want, text)
	}
}

func TestRunFailsOverBudget(t *testing.T) {
	cfg := smallConfig()
	cfg.Samples = 40
	cfg.Corrupt = 3
	cfg.MaxFailures = 1 // 3 will come in the first epoch
	var out bytes.Buffer
	sum, err := Run(t.Context(), &out, cfg)
	if err == nil {
		t.Fatalf("Run succeeded with %d corrupt samples and a budget of %d per epoch:\n%s", cfg.Corrupt, cfg.MaxFailures, out.String())
	}
	var be *BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("error %v is not a *BudgetError", err)
	}
	if len(be.Failures) != 2 || be.PerEpoch != 1 || be.Epoch != 1 {
		t.Errorf("budget error %+v: want the 2 failures of epoch 1 that went over a budget of 1 per epoch", be)
	}
	var se *SampleError
	if !errors.As(err, &se) || !slices.Contains(sum.Corrupted, se.Index) || se.Worker <= 0 || se.Worker == os.Getpid() {
		t.Fatalf("error %v does not name a corrupted sample and its worker (corrupted: %v)", err, sum.Corrupted)
	}
	for _, want := range []string{"too many samples failed: 2 in epoch 1", "budget is 1 per epoch", "png: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(out.String(), "summary") {
		t.Errorf("a failed run printed a summary:\n%s", out.String())
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	cfg := smallConfig()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	batches := 0
	cfg.OnBatch = func(int, Batch) {
		batches++
		cancel()
	}
	sum, err := Run(ctx, &bytes.Buffer{}, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "interrupted in epoch 1") {
		t.Errorf("error %q does not say where the run was interrupted", err)
	}
	if batches != 1 || len(sum.Epochs) != 0 {
		t.Errorf("after cancel: %d batches, %d epochs done; want 1, 0", batches, len(sum.Epochs))
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Run(ctx, &bytes.Buffer{}, smallConfig())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestRunProgressLines(t *testing.T) {
	cfg := smallConfig()
	cfg.Progress = ProgressLines
	var out bytes.Buffer
	if _, err := Run(t.Context(), &out, cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	text := out.String()
	for _, want := range []string{"data set: 45 samples", "epoch 1/2: 45 items in 6 batches, ", "epoch 2/2: 45 items in 6 batches, ", "summary"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestRunProgressBars(t *testing.T) {
	cfg := smallConfig()
	cfg.Progress = ProgressBars
	cfg.Corrupt = 1
	cfg.MaxFailures = 1
	var out bytes.Buffer
	if _, err := Run(t.Context(), &out, cfg); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Above the live view of the pipeline: the data set, the failure and
	// each epoch; the view's last frame shows the last epoch's count and a
	// line per stage.
	text := out.String()
	for _, want := range []string{"data set: 45 samples", "warning: sample failed", "epoch 1/2: 44 items in 6 batches, 1 failed",
		"epoch 2/2: 44 items in 6 batches, 1 failed", "pipeline: epoch 2/2: 44/45 samples", "input queue", "  samples ", "  collect ", "  load ", "  consumer ", "summary"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// TestRunProgressBarsOnFailure checks that Run ends its bars (goleak
// checks) and returns the error when the pipeline fails and when it is
// cancelled before the data set is ready.
func TestRunProgressBarsOnFailure(t *testing.T) {
	cfg := smallConfig()
	cfg.Progress = ProgressBars
	cfg.Corrupt = 5
	if _, err := Run(t.Context(), &bytes.Buffer{}, cfg); err == nil {
		t.Error("Run succeeded with corrupt samples and no failure budget")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Run(ctx, &bytes.Buffer{}, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	for name, change := range map[string]func(*Config){
		"samples":      func(c *Config) { c.Samples = 0 },
		"epochs":       func(c *Config) { c.Epochs = 0 },
		"batch":        func(c *Config) { c.BatchSize = 0 },
		"workers":      func(c *Config) { c.Workers = 0 },
		"corrupt<0":    func(c *Config) { c.Corrupt = -1 },
		"corrupt>n":    func(c *Config) { c.Corrupt = c.Samples + 1 },
		"max-failures": func(c *Config) { c.MaxFailures = -1 },
		"progress":     func(c *Config) { c.Progress = 7 },
	} {
		cfg := DefaultConfig()
		change(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, cfg)
		}
		if _, err := Run(t.Context(), &bytes.Buffer{}, cfg); err == nil {
			t.Errorf("%s: Run accepted %+v", name, cfg)
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	ctx := t.Context()
	a, err := Generate(ctx, 12, 3, 3, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(ctx, 12, 3, 1, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Generate(ctx, 12, 3, 2, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Corrupted, b.Corrupted) || a.Bytes != b.Bytes {
		t.Errorf("same seed: corrupted %v and %v, %d and %d bytes", a.Corrupted, b.Corrupted, a.Bytes, b.Bytes)
	}
	for i := range a.Samples {
		if !bytes.Equal(a.Samples[i].PNG, b.Samples[i].PNG) || a.Samples[i].Label != b.Samples[i].Label {
			t.Errorf("same seed, sample %d differs", i)
		}
		if bytes.Equal(a.Samples[i].PNG, c.Samples[i].PNG) {
			t.Errorf("seeds 7 and 8 make the same sample %d", i)
		}
	}
	for i, s := range a.Samples {
		if s.Index != i {
			t.Errorf("sample %d has index %d", i, s.Index)
		}
		d, err := Decode(ctx, s)
		if slices.Contains(a.Corrupted, i) {
			if err == nil {
				t.Errorf("corrupted sample %d decodes", i)
			}
			continue
		}
		if err != nil {
			t.Errorf("sample %d: %v", i, err)
			continue
		}
		if got := d.Image.Bounds(); got != image.Rect(0, 0, ImageSize, ImageSize) {
			t.Errorf("sample %d: bounds %v", i, got)
		}
		if _, ok := d.Image.(*image.NRGBA); !ok {
			t.Errorf("sample %d decodes to %T, want a translucent *image.NRGBA", i, d.Image)
		}
	}
}

func TestGenerateRejectsTooManyCorrupt(t *testing.T) {
	if _, err := Generate(t.Context(), 3, 4, 1, 1, nil); err == nil {
		t.Fatal("Generate corrupted 4 of 3 samples")
	}
}

// TestToTensor checks the layout and normalization on uniform images of
// each kind of pixel storage.
func TestToTensor(t *testing.T) {
	const side = ImageSize
	fill := func(m image.Image, set func(x, y int)) image.Image {
		for y := range side {
			for x := range side {
				set(x, y)
			}
		}
		return m
	}
	nrgba := image.NewNRGBA(image.Rect(0, 0, side, side))
	half := image.NewNRGBA(image.Rect(0, 0, side, side))
	rgba := image.NewRGBA(image.Rect(10, 20, 10+side, 20+side)) // not at the origin
	gray := image.NewGray(image.Rect(0, 0, side, side))
	for _, tc := range []struct {
		name string
		img  image.Image
		rgb  [Channels]float32 // expected colour, 0..255, over black
	}{
		{"nrgba", fill(nrgba, func(x, y int) { nrgba.SetNRGBA(x, y, color.NRGBA{255, 0, 51, 255}) }), [3]float32{255, 0, 51}},
		{"nrgba-translucent", fill(half, func(x, y int) { half.SetNRGBA(x, y, color.NRGBA{200, 100, 0, 51}) }), [3]float32{40, 20, 0}},
		{"rgba", fill(rgba, func(x, y int) { rgba.SetRGBA(x+10, y+20, color.RGBA{10, 20, 30, 255}) }), [3]float32{10, 20, 30}},
		{"gray", fill(gray, func(x, y int) { gray.SetGray(x, y, color.Gray{128}) }), [3]float32{128, 128, 128}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ToTensor(t.Context(), Decoded{Index: 4, Label: 2, Image: tc.img})
			if err != nil {
				t.Fatal(err)
			}
			if out.Index != 4 || out.Label != 2 || len(out.Data) != Channels*TensorSize*TensorSize {
				t.Fatalf("tensor index %d, label %d, %d values", out.Index, out.Label, len(out.Data))
			}
			for c := range Channels {
				want := (tc.rgb[c]/255 - channelMean[c]) / channelStd[c]
				for i, v := range out.Data[c*TensorSize*TensorSize : (c+1)*TensorSize*TensorSize] {
					if math.Abs(float64(v-want)) > 1e-3 {
						t.Fatalf("channel %d, value %d: %v, want %v", c, i, v, want)
					}
				}
			}
		})
	}
}

func TestToTensorRejectsSmallImages(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 10, 10))
	if _, err := ToTensor(t.Context(), Decoded{Image: img}); err == nil {
		t.Fatal("ToTensor accepted a 10x10 image")
	}
}

func TestLogger(t *testing.T) {
	var out bytes.Buffer
	log := newLogger(&out, slog.LevelWarn).With("run", 7)
	log.Info("not shown")
	log.Warn("pipeline: item failed", "stage", "decode", "epoch", uint64(0), "index", 3, "err", errors.New("bad"))
	log.Error("other", "epoch", 4)
	want := "warning: pipeline: item failed run=7 stage=decode epoch=1 index=3: bad\n" +
		"error: other run=7 epoch=5\n"
	if out.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", out.String(), want)
	}
}

// TestLoadBatch checks that a batch holds the tensors of the samples that
// load, in order, each equal to ToTensor of its decoded image, and reports
// the others.
func TestLoadBatch(t *testing.T) {
	ds, err := Generate(t.Context(), 6, 2, 2, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadBatch(t.Context(), ds.Samples)
	if err != nil {
		t.Fatal(err)
	}
	var ok []int
	for i := range ds.Samples {
		if !slices.Contains(ds.Corrupted, i) {
			ok = append(ok, i)
		}
	}
	if !slices.Equal(b.Indices, ok) || len(b.Data) != len(ok)*TensorLen || b.Worker != os.Getpid() {
		t.Fatalf("batch of samples %v, %d values, worker %d; want samples %v, %d values, worker %d",
			b.Indices, len(b.Data), b.Worker, ok, len(ok)*TensorLen, os.Getpid())
	}
	for k, i := range b.Indices {
		d, err := Decode(t.Context(), ds.Samples[i])
		if err != nil {
			t.Fatal(err)
		}
		want, err := ToTensor(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Tensor(k); got.Index != i || got.Label != ds.Samples[i].Label || !slices.Equal(got.Data, want.Data) {
			t.Errorf("tensor %d of the batch (sample %d, label %d) differs from ToTensor of sample %d", k, got.Index, got.Label, i)
		}
	}
	if len(b.Failed) != len(ds.Corrupted) {
		t.Fatalf("failed %+v, want samples %v", b.Failed, ds.Corrupted)
	}
	for k, f := range b.Failed {
		if f.Index != ds.Corrupted[k] || !strings.Contains(f.Err, fmt.Sprintf("sample %d: decode: png: ", f.Index)) {
			t.Errorf("failure %+v, want sample %d with its decode error", f, ds.Corrupted[k])
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := LoadBatch(ctx, ds.Samples); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadBatch with a cancelled context: %v, want context.Canceled", err)
	}
}
