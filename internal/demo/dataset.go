package demo

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// ImageSize is the width and height, in pixels, of every generated image.
const ImageSize = 96

// Labels names the classes of the synthetic data set: a sample's label is
// the kind of the largest shape drawn on it.
var Labels = [...]string{"circle", "rectangle", "triangle"}

// Sample is one encoded sample of the data set, as it would be read from
// disk: a PNG image and its label.
type Sample struct {
	Index int    // position in the data set, from 0
	Label int    // index into Labels
	PNG   []byte // the PNG-encoded image
}

// Dataset is the synthetic data set the demo trains on.
type Dataset struct {
	Samples   []Sample
	Corrupted []int // indices of the samples corrupted on purpose, sorted
	Bytes     int64 // encoded size of all samples
}

// Generate makes a data set of n PNG images, ImageSize×ImageSize RGBA, with
// random shapes and noise drawn from seed, then corrupts the PNG bytes of
// corrupt of them (chosen from seed too). The same seed gives the same data
// set. It encodes on workers goroutines and calls progress (if not nil)
// after each sample, from any of them.
func Generate(ctx context.Context, n, corrupt, workers int, seed uint64, progress func()) (*Dataset, error) {
	if n < 0 || corrupt < 0 || corrupt > n {
		return nil, fmt.Errorf("demo: cannot corrupt %d of %d samples", corrupt, n)
	}
	workers = max(workers, 1)
	ds := &Dataset{Samples: make([]Sample, n)}
	var (
		next  atomic.Int64
		total atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			var buf bytes.Buffer
			enc := png.Encoder{CompressionLevel: png.BestSpeed}
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				img, label := drawSample(seed, i)
				buf.Reset()
				if err := enc.Encode(&buf, img); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("demo: encode sample %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				ds.Samples[i] = Sample{Index: i, Label: label, PNG: bytes.Clone(buf.Bytes())}
				total.Add(int64(buf.Len()))
				if progress != nil {
					progress()
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("demo: generating the data set: %w", err)
	}
	if first != nil {
		return nil, first
	}
	ds.Bytes = total.Load()

	// Corrupt a seeded choice of samples, in three different ways.
	rng := rand.New(rand.NewPCG(seed, math.MaxUint64)) // a stream no sample uses
	ds.Corrupted = rng.Perm(n)[:corrupt]
	slices.Sort(ds.Corrupted)
	for k, i := range ds.Corrupted {
		s := &ds.Samples[i]
		before := len(s.PNG)
		s.PNG = corruptPNG(s.PNG, k%3)
		ds.Bytes += int64(len(s.PNG) - before)
	}
	return ds, nil
}

// corruptPNG damages a copy of data in one of three ways: a truncated file,
// a file that is not a PNG at all, and a file with damaged image data.
func corruptPNG(data []byte, how int) []byte {
	data = bytes.Clone(data)
	switch how {
	case 0:
		return data[:len(data)/2]
	case 1:
		copy(data, "NOT A PNG")
		return data
	default:
		// Past the 8-byte signature and the 25-byte IHDR chunk, in the
		// middle of the image data.
		for i := 40 + (len(data)-40)/2; i < min(len(data), 40+(len(data)-40)/2+4); i++ {
			data[i] ^= 0xFF
		}
		return data
	}
}

// shape is one figure drawn on a sample.
type shape struct {
	kind         int     // index into Labels
	cx, cy, r    float64 // centre and size
	halfW, halfH float64 // rectangle: half width and height
	ax, ay       float64 // triangle: two vertices, the third is (cx, cy-r)
	bx, by       float64
	col          color.NRGBA
	area         float64
}

func (s *shape) contains(x, y float64) bool {
	switch s.kind {
	case 0:
		dx, dy := x-s.cx, y-s.cy
		return dx*dx+dy*dy <= s.r*s.r
	case 1:
		return x >= s.cx-s.halfW && x <= s.cx+s.halfW && y >= s.cy-s.halfH && y <= s.cy+s.halfH
	default:
		px, py := s.cx, s.cy-s.r
		d1 := (x-s.ax)*(py-s.ay) - (px-s.ax)*(y-s.ay)
		d2 := (x-s.bx)*(s.ay-s.by) - (s.ax-s.bx)*(y-s.by)
		d3 := (x-px)*(s.by-py) - (s.bx-px)*(y-py)
		neg := d1 < 0 || d2 < 0 || d3 < 0
		pos := d1 > 0 || d2 > 0 || d3 > 0
		return !(neg && pos)
	}
}

// drawSample draws sample i of the data set for seed: a translucent
// gradient background with noise and one to four opaque shapes. Its label
// is the kind of the largest shape.
func drawSample(seed uint64, i int) (*image.NRGBA, int) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	randColor := func(alpha uint8) color.NRGBA {
		return color.NRGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), alpha}
	}
	bg0, bg1 := randColor(255), randColor(160)
	shapes := make([]shape, 1+rng.IntN(4))
	label, largest := 0, -1.0
	for k := range shapes {
		s := &shapes[k]
		s.kind = rng.IntN(len(Labels))
		s.cx = 10 + rng.Float64()*(ImageSize-20)
		s.cy = 10 + rng.Float64()*(ImageSize-20)
		s.r = 8 + rng.Float64()*22
		s.col = randColor(255)
		switch s.kind {
		case 0:
			s.area = 3.14159 * s.r * s.r
		case 1:
			s.halfW, s.halfH = s.r*(0.5+rng.Float64()/2), s.r*(0.5+rng.Float64()/2)
			s.area = 4 * s.halfW * s.halfH
		default:
			s.ax, s.ay = s.cx-s.r*0.87, s.cy+s.r/2
			s.bx, s.by = s.cx+s.r*0.87, s.cy+s.r/2
			s.area = 1.3 * s.r * s.r
		}
		if s.area > largest {
			label, largest = s.kind, s.area
		}
	}
	img := image.NewNRGBA(image.Rect(0, 0, ImageSize, ImageSize))
	lerp := func(a, b uint8, t float64) float64 { return float64(a) + (float64(b)-float64(a))*t }
	for y := range ImageSize {
		for x := range ImageSize {
			t := float64(x+y) / (2 * (ImageSize - 1))
			// Triangular noise of ±15 on each channel, from one draw.
			r := rng.Uint64()
			noise := func(shift uint) float64 { return float64(int(r>>shift&15)+int(r>>(shift+4)&15)) - 15 }
			c := color.NRGBA{
				R: clamp8(lerp(bg0.R, bg1.R, t) + noise(0)),
				G: clamp8(lerp(bg0.G, bg1.G, t) + noise(8)),
				B: clamp8(lerp(bg0.B, bg1.B, t) + noise(16)),
				A: uint8(lerp(bg0.A, bg1.A, t)),
			}
			for k := range shapes {
				if shapes[k].contains(float64(x)+0.5, float64(y)+0.5) {
					c = shapes[k].col
				}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img, label
}

func clamp8(v float64) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}
