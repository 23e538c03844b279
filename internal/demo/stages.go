package demo

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"
)

// TensorSize is the width and height of the tensors the demo trains on.
const TensorSize = 64

// Channels is the number of channels of a tensor: red, green and blue.
const Channels = 3

// cropSize is the side of the centre square that ToTensor scales down to
// TensorSize.
const cropSize = ImageSize * 5 / 6

// Per-channel mean and standard deviation used to normalize tensors (the
// usual ImageNet figures).
var (
	channelMean = [Channels]float32{0.485, 0.456, 0.406}
	channelStd  = [Channels]float32{0.229, 0.224, 0.225}
)

// Decoded is a sample whose image has been decoded.
type Decoded struct {
	Index int
	Label int
	Image image.Image
}

// Tensor is a sample ready for training: Channels×TensorSize×TensorSize
// normalized values in CHW order (all of red, then green, then blue).
type Tensor struct {
	Index int
	Label int
	Data  []float32
}

// Decode decodes the PNG of a sample. It is the demo's heavy stage.
func Decode(_ context.Context, s Sample) (Decoded, error) {
	img, err := png.Decode(bytes.NewReader(s.PNG))
	if err != nil {
		return Decoded{}, fmt.Errorf("sample %d: decode: %w", s.Index, err)
	}
	return Decoded{Index: s.Index, Label: s.Label, Image: img}, nil
}

// ToTensor crops the centre of a decoded image, scales it down to
// TensorSize×TensorSize with bilinear interpolation, composites it over
// black and normalizes each channel.
func ToTensor(_ context.Context, d Decoded) (Tensor, error) {
	out := make([]float32, TensorLen)
	if err := toTensor(out, d); err != nil {
		return Tensor{}, err
	}
	return Tensor{Index: d.Index, Label: d.Label, Data: out}, nil
}

// TensorLen is the number of values of one tensor.
const TensorLen = Channels * TensorSize * TensorSize

// toTensor is ToTensor writing into out, which holds TensorLen values.
func toTensor(out []float32, d Decoded) error {
	w, h := d.Image.Bounds().Dx(), d.Image.Bounds().Dy()
	if w < cropSize || h < cropSize {
		return fmt.Errorf("sample %d: image is %dx%d, want at least %dx%d", d.Index, w, h, cropSize, cropSize)
	}
	pix, stride, premultiplied := pixels(d.Image)
	x0 := float32(w-cropSize) / 2
	y0 := float32(h-cropSize) / 2
	const scale = float32(cropSize) / TensorSize
	const plane = TensorSize * TensorSize
	out = out[:TensorLen]
	var rgb [Channels]float32
	for y := range TensorSize {
		sy := y0 + (float32(y)+0.5)*scale - 0.5
		iy := int(sy)
		fy := sy - float32(iy)
		for x := range TensorSize {
			sx := x0 + (float32(x)+0.5)*scale - 0.5
			ix := int(sx)
			fx := sx - float32(ix)
			x1, y1 := min(ix+1, w-1), min(iy+1, h-1)
			rgb = [Channels]float32{}
			for _, n := range [4]struct {
				x, y int
				w    float32
			}{{ix, iy, (1 - fx) * (1 - fy)}, {x1, iy, fx * (1 - fy)}, {ix, y1, (1 - fx) * fy}, {x1, y1, fx * fy}} {
				p := pix[n.y*stride+n.x*4:]
				a := float32(1)
				if !premultiplied {
					a = float32(p[3]) / 255
				}
				for c := range Channels {
					rgb[c] += n.w * a * float32(p[c])
				}
			}
			for c := range Channels {
				out[c*plane+y*TensorSize+x] = (rgb[c]/255 - channelMean[c]) / channelStd[c]
			}
		}
	}
	return nil
}

// Batch is a batch of samples ready for training, made in a worker process
// by LoadBatch: the tensors of the samples that loaded, one after the
// other in Data, and the samples that failed.
type Batch struct {
	Indices []int           // the samples in Data, in order
	Labels  []int           // their labels
	Data    []float32       // len(Indices)×TensorLen values; crosses to the parent through shared memory
	Failed  []SampleFailure // the samples of the batch that did not load
	Worker  int             // pid of the process that made the batch
}

// Len is the number of samples in the batch.
func (b Batch) Len() int { return len(b.Indices) }

// Tensor returns sample i of the batch; its Data aliases the batch's.
func (b Batch) Tensor(i int) Tensor {
	return Tensor{Index: b.Indices[i], Label: b.Labels[i], Data: b.Data[i*TensorLen : (i+1)*TensorLen : (i+1)*TensorLen]}
}

// SampleFailure is a sample that LoadBatch could not load, and why.
type SampleFailure struct {
	Index int
	Err   string // the error's text: its type does not cross the process boundary
}

// LoadBatch decodes each sample, turns it into a tensor (ToTensor) and
// collates the tensors into one Batch: the demo's heavy work, which runs in
// worker processes (LoadBatchFunc). A sample that fails is reported in
// Batch.Failed and the others are kept; only a cancelled ctx fails the
// whole batch.
func LoadBatch(ctx context.Context, samples []Sample) (Batch, error) {
	b := Batch{
		Indices: make([]int, 0, len(samples)),
		Labels:  make([]int, 0, len(samples)),
		Data:    make([]float32, len(samples)*TensorLen),
		Worker:  os.Getpid(),
	}
	for _, s := range samples {
		if err := ctx.Err(); err != nil {
			return Batch{}, err
		}
		d, err := Decode(ctx, s)
		if err == nil {
			n := len(b.Indices)
			err = toTensor(b.Data[n*TensorLen:(n+1)*TensorLen], d)
		}
		if err != nil {
			b.Failed = append(b.Failed, SampleFailure{Index: s.Index, Err: err.Error()})
			continue
		}
		b.Indices = append(b.Indices, s.Index)
		b.Labels = append(b.Labels, s.Label)
	}
	b.Data = b.Data[:len(b.Indices)*TensorLen]
	return b, nil
}

// pixels returns the 8-bit RGBA pixels of img, starting at its top-left
// corner, and whether they are premultiplied by alpha. Images that are
// neither *image.NRGBA nor *image.RGBA are converted.
func pixels(img image.Image) (pix []byte, stride int, premultiplied bool) {
	switch m := img.(type) {
	case *image.NRGBA:
		return m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Stride, false
	case *image.RGBA:
		return m.Pix[m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y):], m.Stride, true
	}
	b := img.Bounds()
	m := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(m, m.Rect, img, b.Min, draw.Src)
	return m.Pix, m.Stride, true
}
