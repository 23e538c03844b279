package demo

import (
	"bytes"
	"context"
	"image/png"
	"testing"
)

// These measure the demo's stages one call at a time, for comparison with
// the per-stage means that the demo prints.

func BenchmarkGenerateSample(b *testing.B) {
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	var buf bytes.Buffer
	for i := 0; b.Loop(); i++ {
		img, _ := drawSample(1, i)
		buf.Reset()
		if err := enc.Encode(&buf, img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	ds, err := Generate(context.Background(), 1, 0, 1, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(ds.Samples[0].PNG)))
	for b.Loop() {
		if _, err := Decode(context.Background(), ds.Samples[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkToTensor(b *testing.B) {
	img, _ := drawSample(1, 0)
	d := Decoded{Image: img}
	for b.Loop() {
		if _, err := ToTensor(context.Background(), d); err != nil {
			b.Fatal(err)
		}
	}
}
