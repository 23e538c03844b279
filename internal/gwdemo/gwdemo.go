// Package gwdemo is ferry's element-graph demo ("ferry demo graph"): a
// small search for gravitational-wave chirps in the spirit of SGN's home
// field. Two synthetic detector streams (H1 and L1: coloured noise with
// chirps injected at known times) are whitened and matched-filtered
// against a bank of chirp templates in worker processes; a coincidence
// element with two sink pads aligned by time keeps what both detectors
// saw within the light travel time, and a sink writes the triggers to a
// file.
//
//	H1 ─ whiten-H1 ─ filter-H1 ─┐
//	                            coincidence ─ triggers
//	L1 ─ whiten-L1 ─ filter-L1 ─┘
package gwdemo

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"gonum.org/v1/gonum/dsp/fourier"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Config is a run of the demo.
type Config struct {
	Seconds   int     // seconds of data per detector
	Rate      int     // samples per second; a frame is one second
	Speed     float64 // times real time the sources run at; 0: as fast as they can
	Templates int     // chirp templates in the bank
	Threshold float64 // SNR each detector must reach for a coincidence
	Every     int     // seconds between injected chirps
	Placement graph.Placement
	Seed      uint64
	Dir       string // where triggers.txt and graph.dot go
	Live      bool   // a live status line (on a terminal)
}

// DefaultConfig is the demo's default: about ten seconds.
func DefaultConfig() Config {
	return Config{Seconds: 640, Rate: 2048, Speed: 64, Templates: 32, Threshold: 6, Every: 16, Placement: graph.Process, Seed: 1}
}

// Validate checks the configuration, naming the flag that is wrong.
func (c Config) Validate() error {
	switch {
	case c.Seconds < 1:
		return fmt.Errorf("--seconds %d: want at least 1", c.Seconds)
	case c.Rate < 256 || c.Rate&(c.Rate-1) != 0:
		return fmt.Errorf("--rate %d: want a power of two of at least 256", c.Rate)
	case c.Speed < 0:
		return fmt.Errorf("--speed %v: want 0 (as fast as possible) or more", c.Speed)
	case c.Templates < 1:
		return fmt.Errorf("--templates %d: want at least 1", c.Templates)
	case c.Every < 2:
		return fmt.Errorf("--every %d: want at least 2", c.Every)
	}
	return nil
}

// Peak is the loudest match of a frame: the template, its SNR and when.
type Peak struct {
	SNR      float64
	Template int
	At       int64 // ns: where the template starts in the data
}

// Trigger is a coincidence of H1 and L1.
type Trigger struct {
	At           int64 // ns, from H1
	SNRH1, SNRL1 float64
	Template     int
}

// Injection is a chirp added to the data.
type Injection struct {
	At       int64 // ns, in H1
	Template int
	SNR      float64
}

// detectorArgs makes one detector's stream.
type detectorArgs struct {
	Name      string
	Seconds   int
	Rate      int
	Speed     float64
	Seed      uint64
	Templates int
	Every     int
}

// bankName is the shared constant that holds the template bank.
const bankName = "gwdemo.templates"

// template returns chirp k of a bank of n at the given rate: a sweep from
// 30 Hz up, longer and lower for larger k, with unit norm.
func template(k, n, rate int) []float64 {
	frac := 0.0
	if n > 1 {
		frac = float64(k) / float64(n-1)
	}
	dur := 0.25 + 0.5*frac // seconds
	f0, f1 := 30.0, 400.0-200.0*frac
	l := int(dur * float64(rate))
	h := make([]float64, l)
	var norm float64
	for i := range h {
		t := float64(i) / float64(rate)
		phase := 2 * math.Pi * (f0*t + (f1-f0)*t*t/(2*dur))
		env := math.Pow(t/dur+1e-3, 0.25) * math.Sin(math.Pi*math.Min(1, (dur-t)/0.02)/2)
		h[i] = env * math.Sin(phase)
		norm += h[i] * h[i]
	}
	for i := range h {
		h[i] /= math.Sqrt(norm)
	}
	return h
}

// injections returns the chirps of the run, the same for both detectors
// (L1 a few milliseconds off and a little quieter): one every Every
// seconds, fully inside a frame.
func injections(a detectorArgs) (h1 []Injection, offsetL1 []int, scaleL1 []float64) {
	rng := rand.New(rand.NewPCG(a.Seed, 99))
	for s := a.Every / 2; s < a.Seconds; s += a.Every {
		k := rng.IntN(a.Templates)
		l := len(template(k, a.Templates, a.Rate))
		margin := a.Rate / 100 // L1 is up to 10 ms off: the light travel time
		pos := margin + rng.IntN(a.Rate-l-2*margin)
		at := int64(s)*int64(time.Second) + int64(pos)*int64(time.Second)/int64(a.Rate)
		h1 = append(h1, Injection{At: at, Template: k, SNR: 10 + 10*rng.Float64()})
		offsetL1 = append(offsetL1, rng.IntN(2*margin+1)-margin)
		scaleL1 = append(scaleL1, 0.75+0.25*rng.Float64())
	}
	return h1, offsetL1, scaleL1
}

// detector is a source of one detector's data, a frame per second: white
// noise, a 60 Hz line, a slow drift, and the injections.
type detector struct{ a detectorArgs }

func (d *detector) Run(ctx context.Context, out graph.Emitter[[]float64]) error {
	a := d.a
	seed := a.Seed*2 + 1
	if a.Name == "L1" {
		seed++
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	injs, offs, scales := injections(a)
	drift, phase := 0.0, rng.Float64()*2*math.Pi
	start := time.Now()
	for s := range a.Seconds {
		x := make([]float64, a.Rate)
		for i := range x {
			t := float64(s) + float64(i)/float64(a.Rate)
			drift = 0.995*drift + 0.3*rng.NormFloat64()
			x[i] = rng.NormFloat64() + 5*math.Sin(2*math.Pi*60*t+phase) + drift
		}
		for j, inj := range injs {
			if inj.At/int64(time.Second) != int64(s) {
				continue
			}
			pos := int((inj.At - int64(s)*int64(time.Second)) * int64(a.Rate) / int64(time.Second))
			snr := inj.SNR
			if a.Name == "L1" {
				pos += offs[j]
				snr *= scales[j]
			}
			for i, v := range template(inj.Template, a.Templates, a.Rate) {
				x[pos+i] += snr * v
			}
		}
		f := graph.Frame[[]float64]{Data: x, Time: int64(s) * int64(time.Second), Rate: float64(a.Rate)}
		if err := out.Emit("", f); err != nil {
			return err
		}
		if a.Speed > 0 { // a live detector: the next second is not there yet
			due := start.Add(time.Duration(float64(s+1) * float64(time.Second) / a.Speed))
			t := time.NewTimer(time.Until(due))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	return nil
}

// Detector is the source kind: registered, so it can run in a worker too.
var Detector = graph.RegisterSource("gwdemo.detector", func(a detectorArgs) (graph.Source[[]float64], error) {
	return &detector{a}, nil
})

// whitener divides each frame's spectrum by the noise's, estimated from
// the frames so far (smoothed over neighbouring frequencies, averaged over
// time): its state lives in the element, in its worker process.
type whitener struct {
	fft  *fourier.FFT
	psd  []float64
	seen int
}

func (w *whitener) Process(ctx context.Context, in graph.Frame[[]float64], out graph.Emitter[[]float64]) error {
	n := len(in.Data)
	if w.fft == nil || w.fft.Len() != n {
		w.fft, w.psd, w.seen = fourier.NewFFT(n), make([]float64, n/2+1), 0
	}
	spec := w.fft.Coefficients(nil, in.Data)
	// This frame's periodogram, smoothed over ±4 bins.
	const half = 4
	cur := make([]float64, len(spec))
	for k := range spec {
		var s float64
		var m int
		for j := max(0, k-half); j <= min(len(spec)-1, k+half); j++ {
			s += real(spec[j])*real(spec[j]) + imag(spec[j])*imag(spec[j])
			m++
		}
		cur[k] = s / float64(m)
	}
	alpha := 1 / float64(min(w.seen+1, 16)) // a running mean, then a moving one
	for k := range cur {
		w.psd[k] += alpha * (cur[k] - w.psd[k])
	}
	w.seen++
	low := int(20 * float64(n) / in.Rate) // nothing below 20 Hz
	for k := range spec {
		if k < low || w.psd[k] == 0 {
			spec[k] = 0
			continue
		}
		spec[k] /= complex(math.Sqrt(w.psd[k]), 0)
	}
	x := w.fft.Sequence(nil, spec)
	scale := math.Sqrt(float64(n)) / float64(n) // unit variance for white noise
	for i := range x {
		x[i] *= scale
	}
	return out.Emit("", graph.Frame[[]float64]{Data: x, Time: in.Time, Rate: in.Rate, EOS: in.EOS})
}

// Whiten is the whitening kind.
var Whiten = graph.RegisterTransform("gwdemo.whitening", func(struct{}) (graph.Transform[[]float64, []float64], error) {
	return &whitener{}, nil
})

// filterArgs configures a matched filter.
type filterArgs struct{ Templates int }

// filter correlates each whitened frame with every template of the bank
// (the shared constant, mapped read-only) and emits the loudest match.
type filter struct {
	a    filterArgs
	fft  *fourier.FFT
	bank [][]complex128 // the templates' spectra, conjugated
}

// Setup reads the bank from the shared constant and transforms it once.
func (f *filter) Setup(ctx context.Context) error {
	c, ok := shm.Lookup(bankName)
	if !ok {
		return fmt.Errorf("no shared constant %q: the template bank was not shared with this process", bankName)
	}
	b := c.Bytes()
	if len(b)%8 != 0 || len(b) == 0 {
		return fmt.Errorf("the template bank has %d bytes", len(b))
	}
	all := make([]float64, len(b)/8)
	for i := range all {
		all[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	n := len(all) / f.a.Templates
	f.fft = fourier.NewFFT(n)
	for k := range f.a.Templates {
		spec := f.fft.Coefficients(nil, all[k*n:(k+1)*n])
		for i := range spec {
			spec[i] = complex(real(spec[i]), -imag(spec[i]))
		}
		f.bank = append(f.bank, spec)
	}
	return nil
}

func (f *filter) Process(ctx context.Context, in graph.Frame[[]float64], out graph.Emitter[Peak]) error {
	n := len(in.Data)
	if n != f.fft.Len() {
		return fmt.Errorf("a frame of %d samples, templates of %d", n, f.fft.Len())
	}
	spec := f.fft.Coefficients(nil, in.Data)
	prod := make([]complex128, len(spec))
	corr := make([]float64, n)
	best := Peak{SNR: -1}
	for k, tk := range f.bank {
		for i := range spec {
			prod[i] = spec[i] * tk[i]
		}
		f.fft.Sequence(corr, prod)
		for lag, v := range corr {
			if snr := math.Abs(v) / float64(n); snr > best.SNR {
				best = Peak{SNR: snr, Template: k, At: in.Time + int64(lag)*int64(time.Second)/int64(n)}
			}
		}
	}
	return out.Emit("", graph.Frame[Peak]{Data: best, Time: in.Time, Rate: in.Rate, EOS: in.EOS})
}

// Filter is the matched-filter kind.
var Filter = graph.RegisterTransform("gwdemo.filter", func(a filterArgs) (graph.Transform[[]float64, Peak], error) {
	return &filter{a: a}, nil
})

// coincidence keeps the steps in which both detectors are loud within the
// light travel time (plus a margin).
type coincidence struct{ threshold float64 }

const window = 15 * time.Millisecond

func (c *coincidence) ProcessStep(ctx context.Context, step []graph.Frame[Peak], out graph.Emitter[Trigger]) error {
	h, l := step[0], step[1]
	if h.Gap || l.Gap || h.Data.SNR < c.threshold || l.Data.SNR < c.threshold {
		return nil
	}
	if d := time.Duration(h.Data.At - l.Data.At); d > window || d < -window {
		return nil
	}
	return out.Emit("", graph.Frame[Trigger]{Data: Trigger{At: h.Data.At, SNRH1: h.Data.SNR, SNRL1: l.Data.SNR, Template: h.Data.Template}, Time: h.Time})
}

// triggerFile writes each trigger as a line of text.
type triggerFile struct {
	w     *bufio.Writer
	found *[]Trigger
}

func (t *triggerFile) Consume(ctx context.Context, in graph.Frame[Trigger]) error {
	tr := in.Data
	*t.found = append(*t.found, tr)
	_, err := fmt.Fprintf(t.w, "%.4f\t%.2f\t%.2f\t%.2f\t%d\n", float64(tr.At)/1e9, math.Hypot(tr.SNRH1, tr.SNRL1), tr.SNRH1, tr.SNRL1, tr.Template)
	return err
}

func (t *triggerFile) Flush(ctx context.Context) error { return t.w.Flush() }

// Summary is what a run found.
type Summary struct {
	Stats      graph.Stats
	Triggers   []Trigger
	Injections []Injection
	Found      int // injections with a trigger within the window
	Seconds    int // seconds of data that reached the sink
	Dir        string
}

func (s Summary) String() string {
	return fmt.Sprintf("%d s of data per detector: %d triggers, %d of %d injections found, %d false alarms\n%v\ntriggers, graph.dot: %s\n",
		s.Seconds, len(s.Triggers), s.Found, len(s.Injections), len(s.Triggers)-s.Found, s.Stats, s.Dir)
}

// Run runs the search and writes its triggers and its graph to cfg.Dir.
// It returns graph.ErrInterrupted (with the summary of what was done) when
// a signal drained it.
func Run(ctx context.Context, w io.Writer, cfg Config) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	sum := Summary{Dir: cfg.Dir}
	c, err := sharedBank(cfg)
	if err != nil {
		return sum, err
	}
	defer c.Close()
	f, err := os.Create(filepath.Join(cfg.Dir, "triggers.txt"))
	if err != nil {
		return sum, err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "# time_s\tnetwork_snr\tsnr_h1\tsnr_l1\ttemplate\n")

	g := graph.New(graph.HandleSignals(), graph.DefaultPlacement(cfg.Placement), graph.BufferSize(8),
		graph.WorkerOptions(proc.Constants(c)))
	det := func(name string) detectorArgs {
		return detectorArgs{Name: name, Seconds: cfg.Seconds, Rate: cfg.Rate, Speed: cfg.Speed, Seed: cfg.Seed, Templates: cfg.Templates, Every: cfg.Every}
	}
	coinc := graph.AddAligned(g, "coincidence", &coincidence{threshold: cfg.Threshold}, graph.AlignByTime, graph.Inputs("H1", "L1"))
	for _, ifo := range []string{"H1", "L1"} {
		src := graph.AddSource(g, ifo, Detector.New(det(ifo)), graph.Place(graph.Goroutine))
		wh := graph.AddTransform(g, "whiten-"+ifo, Whiten.New(struct{}{}))
		fl := graph.AddTransform(g, "filter-"+ifo, Filter.New(filterArgs{Templates: cfg.Templates}))
		graph.Connect(g, src.Out(""), wh.In(""))
		graph.Connect(g, wh.Out(""), fl.In(""))
		graph.Connect(g, fl.Out(""), coinc.In(ifo))
	}
	sink := graph.AddSink(g, "triggers", &triggerFile{w: bw, found: &sum.Triggers})
	graph.Connect(g, coinc.Out(""), sink.In(""))
	if err := writeDot(cfg.Dir, g.Dot()); err != nil {
		return sum, err
	}
	r, err := g.Start(ctx)
	if err != nil {
		return sum, err
	}
	fmt.Fprintf(w, "searching %d s of data per detector in %s; Ctrl+C drains\n", cfg.Seconds, cfg.Dir)
	if cfg.Live {
		live(w, r, cfg.Seconds)
	}
	sum.Stats, err = r.Wait()
	for _, e := range sum.Stats.Elements {
		if e.Name == "coincidence" {
			sum.Seconds = int(e.FramesIn-2) / 2 // less the two end-of-stream frames
		}
	}
	sum.Injections, _, _ = injections(det("H1"))
	sum.Injections = sum.Injections[:countBefore(sum.Injections, sum.Seconds)]
	for _, inj := range sum.Injections {
		for _, tr := range sum.Triggers {
			if d := time.Duration(tr.At - inj.At); d <= window && d >= -window {
				sum.Found++
				break
			}
		}
	}
	return sum, err
}

// sharedBank shares the template bank, read-only, with the filters'
// workers: each template zero-padded to a frame.
func sharedBank(cfg Config) (*shm.Constant, error) {
	bank := make([]byte, 0, 8*cfg.Templates*cfg.Rate)
	for k := range cfg.Templates {
		padded := make([]float64, cfg.Rate)
		copy(padded, template(k, cfg.Templates, cfg.Rate))
		for _, v := range padded {
			bank = binary.LittleEndian.AppendUint64(bank, math.Float64bits(v))
		}
	}
	return shm.Share(bankName, bank)
}

// countBefore counts the injections in the first s seconds.
func countBefore(injs []Injection, s int) int {
	n := 0
	for _, inj := range injs {
		if inj.At < int64(s)*int64(time.Second) {
			n++
		}
	}
	return n
}

// live redraws a status line until the run ends.
func live(w io.Writer, r *graph.Running, seconds int) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-t.C:
		}
		st := r.Stats()
		var line string
		for _, e := range st.Elements {
			switch {
			case e.Name == "coincidence":
				line = fmt.Sprintf("%d/%d s  ", e.FramesIn/2, seconds) + line
			case e.Name == "triggers":
				line += fmt.Sprintf("triggers %d", e.FramesIn)
			case e.Placement == graph.Process && e.Mean > 0:
				line += fmt.Sprintf("%s %v  ", e.Name, e.Mean.Round(time.Microsecond))
			}
		}
		fmt.Fprintf(w, "\r\033[K%s", line)
	}
}

// writeDot writes the graph beside the triggers, and renders it as SVG
// when Graphviz's dot is installed.
func writeDot(dir, dot string) error {
	path := filepath.Join(dir, "graph.dot")
	if err := os.WriteFile(path, []byte(dot), 0o644); err != nil {
		return err
	}
	if bin, err := exec.LookPath("dot"); err == nil {
		_ = exec.Command(bin, "-Tsvg", "-o", filepath.Join(dir, "graph.svg"), path).Run()
	}
	return nil
}
