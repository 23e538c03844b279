// Package tuneplot draws a tune.Report: throughput against concurrency,
// one line per stage, on a logarithmic concurrency axis, with each stage's
// saturation point marked — the picture to choose each stage's
// Concurrency from. It is a package of its own so that tune does not
// depend on a plotting library (gonum.org/v1/plot).
package tuneplot

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/ferrypipe/ferry/tune"
)

// Size is the size of the picture.
const (
	width  = 8 * vg.Inch
	height = 5 * vg.Inch
)

// build makes the plot of r.
func build(r *tune.Report) (*plot.Plot, error) {
	if r == nil || len(r.Stages) == 0 {
		return nil, errors.New("tuneplot: an empty report")
	}
	p := plot.New()
	p.Title.Text = "Throughput by concurrency (each stage alone)"
	p.X.Label.Text = "concurrency"
	p.Y.Label.Text = "items/s"
	p.X.Scale = plot.LogScale{}
	p.Y.Min = 0
	var ticks []plot.Tick
	for _, pt := range r.Stages[0].Points {
		ticks = append(ticks, plot.Tick{Value: float64(pt.Concurrency), Label: fmt.Sprint(pt.Concurrency)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	for i, s := range r.Stages {
		pts := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			pts[j] = plotter.XY{X: float64(pt.Concurrency), Y: pt.ItemsPerSec}
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, fmt.Errorf("tuneplot: stage %q: %w", s.Name, err)
		}
		c := plotutil.Color(i)
		line.Color, points.Color = c, c
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(fmt.Sprintf("%s (saturates at %d)", s.Name, s.Saturation), line, points)
		// The saturation point, circled.
		for _, pt := range s.Points {
			if pt.Concurrency == s.Saturation {
				mark, err := plotter.NewScatter(plotter.XYs{{X: float64(pt.Concurrency), Y: pt.ItemsPerSec}})
				if err != nil {
					return nil, err
				}
				mark.GlyphStyle.Shape = draw.RingGlyph{}
				mark.GlyphStyle.Radius = vg.Points(7)
				mark.GlyphStyle.Color = color.Black
				p.Add(mark)
			}
		}
	}
	return p, nil
}

// Save writes the plot of r to path, in the format its extension names
// (.svg, .png, .pdf, …).
func Save(r *tune.Report, path string) error {
	p, err := build(r)
	if err != nil {
		return err
	}
	if err := p.Save(width, height, path); err != nil {
		return fmt.Errorf("tuneplot: writing %s: %w", path, err)
	}
	return nil
}

// WriteTo writes the plot of r to w in format ("svg", "png", "pdf", …).
func WriteTo(w io.Writer, r *tune.Report, format string) error {
	p, err := build(r)
	if err != nil {
		return err
	}
	wt, err := p.WriterTo(width, height, strings.TrimPrefix(filepath.Ext("."+format), "."))
	if err != nil {
		return fmt.Errorf("tuneplot: format %q: %w", format, err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("tuneplot: writing the %s: %w", format, err)
	}
	return nil
}
