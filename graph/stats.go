package graph

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/ferrypipe/ferry/internal/hist"
)

// Stats describes a run: every element, in the order they were added.
type Stats struct {
	Elements []ElementStats
	Duration time.Duration
	Drained  bool // the run was drained (Drain or a signal)
}

// ElementStats describes one element of a run.
type ElementStats struct {
	Name      string
	Kind      string // "source", "transform" or "sink"
	Placement Placement
	PID       int   // the worker process's, for a Process element
	FramesIn  int64 // frames received on its sink pads, end-of-stream markers included
	FramesOut int64 // frames emitted on its source pads, each counted once however many links it feeds
	Gaps      int64 // Gap frames received
	Failures  int64 // frames failed within its MaxFailures budget
	// Time in the element per frame (per step, aligned): for a Process
	// element, measured in the worker and reported about once a second.
	Mean, P90, P99 time.Duration
	Pads           []PadStats
}

// PadStats describes one pad of an element.
type PadStats struct {
	Pad      string
	Sink     bool  // a sink pad (input); false: a source pad (output)
	Frames   int64 // frames received (sink pad) or emitted (source pad)
	Buffered int   // frames waiting in the pad's link now (sink pad)
	Capacity int   // the link's buffer (sink pad)
	// Blocked is the time the element waited for full links to take its
	// frames (source pad): where it is larger than the run's few percent,
	// what comes after is the bottleneck.
	Blocked time.Duration
}

// String renders the stats as a table.
func (s Stats) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "element\tplacement\tin\tout\tgaps\tfailed\tmean\tp90\tp99\tblocked\t\n")
	for _, e := range s.Elements {
		var blocked time.Duration
		for _, p := range e.Pads {
			blocked += p.Blocked
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%v\t%v\t%v\t%v\t\n", e.Name, e.Placement, e.FramesIn, e.FramesOut, e.Gaps, e.Failures,
			round(e.Mean), round(e.P90), round(e.P99), round(blocked))
	}
	tw.Flush()
	fmt.Fprintf(&b, "%d elements in %v", len(s.Elements), round(s.Duration))
	if s.Drained {
		b.WriteString(" (drained)")
	}
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(time.Microsecond)
	}
	return d
}

// elementStats is the live count of one element.
type elementStats struct {
	n                   *node
	framesIn, framesOut atomic.Int64
	gaps, failures      atomic.Int64
	pid                 atomic.Int64
	durations           hist.Histogram
	inPads, outPads     []padStats
	inLinks             []occupant // the links of the sink pads, for their occupancy

	mu     sync.Mutex
	remote *durationStats // a Process element's durations, as last reported
}

type padStats struct {
	frames  atomic.Int64
	blocked atomic.Int64
}

// durationStats is what a worker reports of its element's durations.
type durationStats struct {
	Mean, P90, P99 int64
	Failures       int64
}

func newElementStats(n *node) *elementStats {
	return &elementStats{n: n, inPads: make([]padStats, len(n.inputs)), outPads: make([]padStats, len(n.outputs)), inLinks: make([]occupant, len(n.inputs))}
}

func (s *elementStats) snapshot() ElementStats {
	e := ElementStats{Name: s.n.name, Kind: s.n.kind.String(), Placement: s.n.place, PID: int(s.pid.Load()),
		FramesIn: s.framesIn.Load(), FramesOut: s.framesOut.Load(), Gaps: s.gaps.Load(), Failures: s.failures.Load(),
		Mean: s.durations.Mean(), P90: s.durations.Quantile(0.9), P99: s.durations.Quantile(0.99)}
	s.mu.Lock()
	if r := s.remote; r != nil {
		e.Mean, e.P90, e.P99 = time.Duration(r.Mean), time.Duration(r.P90), time.Duration(r.P99)
	}
	s.mu.Unlock()
	for i, p := range s.n.inputs {
		ps := PadStats{Pad: p, Sink: true, Frames: s.inPads[i].frames.Load()}
		if l := s.inLinks[i]; l != nil {
			ps.Buffered, ps.Capacity = l.occupancy()
		}
		e.Pads = append(e.Pads, ps)
	}
	for i, p := range s.n.outputs {
		e.Pads = append(e.Pads, PadStats{Pad: p, Frames: s.outPads[i].frames.Load(), Blocked: time.Duration(s.outPads[i].blocked.Load())})
	}
	return e
}
