package tuneplot_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/tune"
	"github.com/ferrypipe/ferry/tune/tuneplot"
)

var report = &tune.Report{Stages: []tune.StageReport{
	{Name: "decode", Saturation: 2, Best: 2000, Points: []tune.Point{{Concurrency: 1, ItemsPerSec: 1000}, {Concurrency: 2, ItemsPerSec: 2000}, {Concurrency: 4, ItemsPerSec: 2010}}},
	{Name: "resize", Saturation: 4, Best: 3900, Points: []tune.Point{{Concurrency: 1, ItemsPerSec: 1000}, {Concurrency: 2, ItemsPerSec: 1990}, {Concurrency: 4, ItemsPerSec: 3900}}},
}}

// The SVG is well-formed XML that names each stage with its saturation
// point (the legend).
func TestSVG(t *testing.T) {
	var b bytes.Buffer
	if err := tuneplot.WriteTo(&b, report, "svg"); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("the SVG is not well-formed XML: %v", err)
			}
			break
		}
		if cd, ok := tok.(xml.CharData); ok {
			text.Write(cd)
		}
	}
	for _, want := range []string{"decode (saturates at 2)", "resize (saturates at 4)", "concurrency", "items/s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the SVG does not say %q", want)
		}
	}
}

func TestSavePNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "profile.png")
	if err := tuneplot.Save(report, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Fatalf("%s is not a PNG", path)
	}
	if err := tuneplot.Save(&tune.Report{}, path); err == nil {
		t.Error("an empty report: no error")
	}
	if err := tuneplot.WriteTo(&bytes.Buffer{}, report, "bmpx"); err == nil {
		t.Error("an unknown format: no error")
	}
}
