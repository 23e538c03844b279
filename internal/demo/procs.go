package demo

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/draw"
	"slices"

	"github.com/ferrypipe/ferry/proc"
)

// DecodeFunc is Decode registered to run in worker processes: the demo
// runs its decode stage in a proc.Pool of them. Samples and decoded images
// cross the process boundary with the codecs below rather than gob: a
// sample is its header and PNG bytes, a decoded image its header and raw
// pixels, which the parent uses without a copy.
var DecodeFunc = func() *proc.Function[Sample, Decoded] {
	// Codecs must be registered before the function that uses them.
	proc.RegisterCodec[Sample](sampleCodec{})
	proc.RegisterCodec[Decoded](decodedCodec{})
	return proc.Func("demo.decode", Decode)
}()

// sampleCodec encodes a Sample as its index and label (8 bytes each) and
// its PNG bytes.
type sampleCodec struct{}

func (sampleCodec) Append(dst []byte, s Sample) ([]byte, error) {
	dst = slices.Grow(dst, 16+len(s.PNG))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.Index))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.Label))
	return append(dst, s.PNG...), nil
}

func (sampleCodec) Decode(src []byte) (Sample, error) {
	if len(src) < 16 {
		return Sample{}, fmt.Errorf("demo: a sample of %d bytes is shorter than its header", len(src))
	}
	return Sample{
		Index: int(binary.LittleEndian.Uint64(src)),
		Label: int(binary.LittleEndian.Uint64(src[8:])),
		PNG:   src[16:],
	}, nil
}

// Pixel formats of an encoded Decoded.
const (
	formatNRGBA = 1
	formatRGBA  = 2
)

// decodedHeader is the size of an encoded Decoded before its pixels: index,
// label (8 bytes each), format (1), then the image's rectangle (4 × 4).
const decodedHeader = 8 + 8 + 1 + 4*4

// decodedCodec encodes a Decoded as a header and its 8-bit RGBA pixels,
// non-premultiplied (NRGBA) or premultiplied (RGBA); images of other kinds
// are converted to RGBA.
type decodedCodec struct{}

func (decodedCodec) Append(dst []byte, d Decoded) ([]byte, error) {
	if d.Image == nil {
		return dst, fmt.Errorf("demo: sample %d has no image", d.Index)
	}
	var (
		format byte
		pix    []byte
		stride int
		r      = d.Image.Bounds()
	)
	switch m := d.Image.(type) {
	case *image.NRGBA:
		format, pix, stride = formatNRGBA, m.Pix, m.Stride
	case *image.RGBA:
		format, pix, stride = formatRGBA, m.Pix, m.Stride
	default:
		c := image.NewRGBA(r)
		draw.Draw(c, r, m, r.Min, draw.Src)
		format, pix, stride = formatRGBA, c.Pix, c.Stride
	}
	row := 4 * r.Dx()
	dst = slices.Grow(dst, decodedHeader+row*r.Dy())
	dst = binary.LittleEndian.AppendUint64(dst, uint64(d.Index))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(d.Label))
	dst = append(dst, format)
	for _, v := range []int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y} {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(int32(v)))
	}
	for y := range r.Dy() {
		dst = append(dst, pix[y*stride:y*stride+row]...)
	}
	return dst, nil
}

func (decodedCodec) Decode(src []byte) (Decoded, error) {
	if len(src) < decodedHeader {
		return Decoded{}, fmt.Errorf("demo: a decoded image of %d bytes is shorter than its header", len(src))
	}
	d := Decoded{
		Index: int(binary.LittleEndian.Uint64(src)),
		Label: int(binary.LittleEndian.Uint64(src[8:])),
	}
	format := src[16]
	var xy [4]int
	for i := range xy {
		xy[i] = int(int32(binary.LittleEndian.Uint32(src[17+4*i:])))
	}
	r := image.Rect(xy[0], xy[1], xy[2], xy[3])
	pix := src[decodedHeader:]
	if len(pix) != 4*r.Dx()*r.Dy() {
		return Decoded{}, fmt.Errorf("demo: sample %d: %d bytes of pixels for a %dx%d image", d.Index, len(pix), r.Dx(), r.Dy())
	}
	switch format {
	case formatNRGBA:
		d.Image = &image.NRGBA{Pix: pix, Stride: 4 * r.Dx(), Rect: r}
	case formatRGBA:
		d.Image = &image.RGBA{Pix: pix, Stride: 4 * r.Dx(), Rect: r}
	default:
		return Decoded{}, fmt.Errorf("demo: sample %d: unknown pixel format %d", d.Index, format)
	}
	return d, nil
}
