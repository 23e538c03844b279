package graph

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// ProfileLabel is the pprof label that names the element a goroutine runs
// (in a CPU or goroutine profile: `go tool pprof -tagfocus`), in this
// process and, for an element placed in a worker, in the worker.
const ProfileLabel = "ferry.element"

// Placement is where an element runs.
type Placement int

const (
	// Goroutine runs the element in a goroutine of this process.
	Goroutine Placement = iota
	// Process runs the element in a worker process of its own. The
	// element must be registered (RegisterSource, RegisterTransform, …).
	Process
)

func (p Placement) String() string {
	if p == Process {
		return "process"
	}
	return "goroutine"
}

// Align says how the frames of an aligned element's sink pads are matched
// into steps.
type Align int

const (
	// AlignBySeq matches the n-th frame of every sink pad.
	AlignBySeq Align = iota
	// AlignByTime matches frames with the same Time; a pad whose next
	// frame is later contributes a Gap frame to the step.
	AlignByTime
)

func (a Align) String() string {
	if a == AlignByTime {
		return "time"
	}
	return "seq"
}

type kind int

const (
	kindSource kind = iota
	kindTransform
	kindSink
)

func (k kind) String() string {
	return [...]string{"source", "transform", "sink"}[k]
}

// Graph is a set of elements and the links between their pads. Build it
// with the Add functions and Connect, Link or LinkByName, then Run it (or
// Start it). Mistakes made while building are collected and reported by
// Validate, Start and Run, each naming the element and pad.
type Graph struct {
	o     options
	nodes []*node
	named map[string]*node
	links map[padRef]padRef // sink pad → its source pad
	errs  []error
}

// padRef names a pad of an element.
type padRef struct {
	n   *node
	pad string
}

func (p padRef) String() string { return p.n.name + ":" + p.pad }

// node is an element of the graph, with what its typed Add function
// captured.
type node struct {
	name        string
	kind        kind
	inputs      []string
	outputs     []string
	inType      reflect.Type // the Data type of its sink pads
	outType     reflect.Type // of its source pads
	place       Placement
	placeSet    bool
	aligned     bool
	align       Align
	maxFailures int
	buffer      int
	registered  string // the registered name, if the element is registered
	group       string // the part it was composed into (Compose), for Dot
	// launch starts the element in a run, on the channels of its pads.
	launch func(r *Running, st *elementStats, reader *waker, ins []any, outs [][]any) func() error
	// open starts the element's worker (Process placement).
	open func(r *Running) (closer, error)
	// crossable reports whether the codec carries its frames faithfully.
	crossable func() error
	// newLink makes a link for its source pads: a *link[Out].
	newLink func(size int, producer, consumer *waker) any
}

type closer interface{ Close() error }

// Option configures a Graph.
type Option func(*options)

type options struct {
	placement    Placement
	buffer       int
	drainTimeout time.Duration
	signals      bool
	logger       *slog.Logger
	worker       []proc.IterateOption
	arena        *shm.SegmentPool
}

// DefaultPlacement sets where registered elements run unless they say
// otherwise with Place (SGN's use_threading_default). Elements that are
// not registered always run in goroutines. Default: Goroutine.
func DefaultPlacement(p Placement) Option { return func(o *options) { o.placement = p } }

// BufferSize sets how many frames each link holds before its source
// waits (backpressure). Default 16.
func BufferSize(n int) Option { return func(o *options) { o.buffer = n } }

// DrainTimeout bounds a drain (Run.Drain, or the first signal): past it,
// the run stops hard. Default 10s.
func DrainTimeout(d time.Duration) Option { return func(o *options) { o.drainTimeout = d } }

// HandleSignals makes a run catch SIGINT and SIGTERM while it runs: the
// first drains it (and the run returns ErrInterrupted), the second stops
// it hard. Worker processes never see the terminal's signals: the parent
// coordinates.
func HandleSignals() Option { return func(o *options) { o.signals = true } }

// Logger sets the logger for failures within an element's budget and for
// worker processes' output. Default slog.Default().
func Logger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WorkerOptions passes options to the worker processes of Process
// elements: proc.Arena for large payloads through shared memory,
// proc.Constants for read-only constants (shm.Share), proc.MemoryLimit,
// proc.Logger and the others.
func WorkerOptions(opts ...proc.IterateOption) Option {
	return func(o *options) { o.worker = append(o.worker, opts...) }
}

// Arena gives the graph a shared-memory arena: frames of *shm.Buffer made
// with NewBuffer live in it, and cross to and from the worker processes of
// Process elements without a copy; large numeric slices in frames cross
// through it with one copy each way. It passes proc.Arena(pool) to the
// workers. The pool's segments bound the Buffers in flight: make it large
// enough for the frames on every link (BufferSize) that holds Buffers.
func Arena(pool *shm.SegmentPool) Option {
	return func(o *options) {
		o.arena = pool
		o.worker = append(o.worker, proc.Arena(pool))
	}
}

// New returns an empty graph.
func New(opts ...Option) *Graph {
	g := &Graph{named: map[string]*node{}, links: map[padRef]padRef{}}
	g.o = options{buffer: 16, drainTimeout: 10 * time.Second}
	for _, opt := range opts {
		opt(&g.o)
	}
	if g.o.logger == nil {
		g.o.logger = slog.Default()
	}
	if g.o.buffer < 1 {
		g.errf("graph: BufferSize %d, want ≥ 1", g.o.buffer)
		g.o.buffer = 1
	}
	return g
}

func (g *Graph) errf(format string, args ...any) {
	g.errs = append(g.errs, fmt.Errorf(format, args...))
}

// ElementOption configures one element.
type ElementOption func(*node)

// Inputs names an element's sink pads (default: "in").
func Inputs(pads ...string) ElementOption { return func(n *node) { n.inputs = pads } }

// Outputs names an element's source pads (default: "out").
func Outputs(pads ...string) ElementOption { return func(n *node) { n.outputs = pads } }

// Place sets where the element runs, overriding the graph's default
// (SGN's _use_threading_override).
func Place(p Placement) ElementOption {
	return func(n *node) { n.place, n.placeSet = p, true }
}

// MaxFailures lets an element fail up to n frames (each logged and counted
// in its stats, the frame dropped) before the run fails. Default 0.
func MaxFailures(n int) ElementOption { return func(n2 *node) { n2.maxFailures = n } }

// LinkBuffer sets the buffer of the links that leave this element's
// source pads, overriding BufferSize.
func LinkBuffer(size int) ElementOption { return func(n *node) { n.buffer = size } }

// add registers a node made by a typed Add function.
func (g *Graph) add(n *node, opts []ElementOption) {
	for _, opt := range opts {
		opt(n)
	}
	if !n.placeSet && n.registered != "" {
		n.place = g.o.placement
	}
	switch {
	case n.name == "" || strings.ContainsAny(n.name, ":\"\n"):
		g.errf("graph: element name %q: want a non-empty name without ':', '\"' or newlines", n.name)
	case g.named[n.name] != nil:
		g.errf("graph: two elements named %q", n.name)
	}
	if n.kind == kindSource {
		n.inputs = nil
	}
	if n.kind == kindSink {
		n.outputs = nil
	}
	for _, pads := range [][]string{n.inputs, n.outputs} {
		seen := map[string]bool{}
		for _, p := range pads {
			if p == "" || seen[p] {
				g.errf("graph: element %q: pad name %q is empty or given twice", n.name, p)
			}
			seen[p] = true
		}
	}
	if n.kind != kindSource && len(n.inputs) == 0 {
		g.errf("graph: %s %q has no sink pads", n.kind, n.name)
	}
	if n.kind != kindSink && len(n.outputs) == 0 {
		g.errf("graph: %s %q has no source pads", n.kind, n.name)
	}
	if n.place == Process && n.registered == "" {
		g.errf("graph: element %q is placed in a worker process but is not registered: make it with a kind from RegisterSource, RegisterTransform, … (called at package level)", n.name)
	}
	if n.buffer == 0 {
		n.buffer = g.o.buffer
	}
	if n.buffer < 1 {
		g.errf("graph: element %q: LinkBuffer %d, want ≥ 1", n.name, n.buffer)
		n.buffer = 1
	}
	if n.maxFailures < 0 {
		g.errf("graph: element %q: MaxFailures %d, want ≥ 0", n.name, n.maxFailures)
	}
	g.nodes = append(g.nodes, n)
	if g.named[n.name] == nil {
		g.named[n.name] = n
	}
}

// SourceNode is a source element of a graph, whose pads Connect links.
type SourceNode[Out any] struct{ n *node }

// TransformNode is a transform element of a graph.
type TransformNode[In, Out any] struct{ n *node }

// SinkNode is a sink element of a graph.
type SinkNode[In any] struct{ n *node }

// OutPad is a source pad (an output) carrying frames of T.
type OutPad[T any] struct{ ref padRef }

// InPad is a sink pad (an input) taking frames of T.
type InPad[T any] struct{ ref padRef }

// Out returns the source pad named pad ("" for the only one).
func (s SourceNode[Out]) Out(pad string) OutPad[Out] { return OutPad[Out]{s.n.pad(pad, false)} }

// Name returns the element's name.
func (s SourceNode[Out]) Name() string { return s.n.name }

// In returns the sink pad named pad ("" for the only one).
func (t TransformNode[In, Out]) In(pad string) InPad[In] { return InPad[In]{t.n.pad(pad, true)} }

// Out returns the source pad named pad ("" for the only one).
func (t TransformNode[In, Out]) Out(pad string) OutPad[Out] { return OutPad[Out]{t.n.pad(pad, false)} }

// Name returns the element's name.
func (t TransformNode[In, Out]) Name() string { return t.n.name }

// In returns the sink pad named pad ("" for the only one).
func (s SinkNode[In]) In(pad string) InPad[In] { return InPad[In]{s.n.pad(pad, true)} }

// Name returns the element's name.
func (s SinkNode[In]) Name() string { return s.n.name }

// pad resolves a pad name; a wrong one is kept, and reported when linked.
func (n *node) pad(name string, sink bool) padRef {
	pads := n.outputs
	if sink {
		pads = n.inputs
	}
	if name == "" && len(pads) == 1 {
		name = pads[0]
	}
	return padRef{n, name}
}

func (n *node) hasPad(name string, sink bool) bool {
	if sink {
		return slices.Contains(n.inputs, name)
	}
	return slices.Contains(n.outputs, name)
}

// Connect links a source pad to one or more sink pads (fan-out: each gets
// every frame, shared read-only between goroutines). The types of the
// pads match at compile time.
func Connect[T any](g *Graph, from OutPad[T], to ...InPad[T]) {
	if len(to) == 0 {
		g.errf("graph: Connect %s to nothing", from.ref)
	}
	for _, t := range to {
		g.link(from.ref, t.ref)
	}
}

// Link links pads named "element:pad": each key is a sink pad and its
// value the source pad that feeds it (SGN's link map). Pad types are
// checked by Validate, which names both pads when they differ.
func (g *Graph) Link(links map[string]string) {
	sinks := make([]string, 0, len(links))
	for k := range links {
		sinks = append(sinks, k)
	}
	sort.Strings(sinks)
	for _, sink := range sinks {
		to, err1 := g.parsePad(sink)
		from, err2 := g.parsePad(links[sink])
		if err := errors.Join(err1, err2); err != nil {
			g.errs = append(g.errs, err)
			continue
		}
		g.link(from, to)
	}
}

func (g *Graph) parsePad(s string) (padRef, error) {
	elem, pad, ok := strings.Cut(s, ":")
	n := g.named[elem]
	switch {
	case !ok:
		return padRef{}, fmt.Errorf("graph: link %q: want \"element:pad\"", s)
	case n == nil:
		return padRef{}, fmt.Errorf("graph: link %q: no element named %q", s, elem)
	}
	return padRef{n, pad}, nil
}

// LinkByName links every sink pad not linked yet to the source pad of the
// same name on another element. A name that more than one element's
// source pad has is ambiguous, an error; a sink pad that matches none is
// left for Validate to report.
func (g *Graph) LinkByName() {
	sources := map[string][]padRef{}
	for _, n := range g.nodes {
		for _, p := range n.outputs {
			sources[p] = append(sources[p], padRef{n, p})
		}
	}
	for _, n := range g.nodes {
		for _, p := range n.inputs {
			to := padRef{n, p}
			if _, linked := g.links[to]; linked {
				continue
			}
			var cands []padRef
			for _, c := range sources[p] {
				if c.n != n {
					cands = append(cands, c)
				}
			}
			switch len(cands) {
			case 0:
			case 1:
				g.link(cands[0], to)
			default:
				names := make([]string, len(cands))
				for i, c := range cands {
					names[i] = c.String()
				}
				g.errf("graph: LinkByName: sink pad %s matches the source pads %s: link it explicitly", to, strings.Join(names, ", "))
			}
		}
	}
}

func (g *Graph) link(from, to padRef) {
	switch {
	case from.n == nil || to.n == nil:
		g.errf("graph: a link with a pad of no element")
		return
	case !from.n.hasPad(from.pad, false):
		g.errf("graph: element %q has no source pad %q (its source pads: %s)", from.n.name, from.pad, strings.Join(from.n.outputs, ", "))
		return
	case !to.n.hasPad(to.pad, true):
		g.errf("graph: element %q has no sink pad %q (its sink pads: %s)", to.n.name, to.pad, strings.Join(to.n.inputs, ", "))
		return
	}
	if prev, ok := g.links[to]; ok {
		g.errf("graph: sink pad %s is linked to both %s and %s: a sink pad has one source", to, prev, from)
		return
	}
	g.links[to] = from
}

// Compose adds the elements of sub, and the links between them, to g as
// one part (SGN's Compose): each element is renamed "name/element", and
// the pad handles taken while building sub (its nodes' In and Out) stay
// valid, so the rest of g links to the part through them. sub must not be
// used afterwards. Mistakes made while building sub are reported by g;
// its elements keep the placement and link sizes they were given in sub
// (sub's DefaultPlacement and BufferSize).
func (g *Graph) Compose(name string, sub *Graph) {
	if sub == nil || sub == g {
		g.errf("graph: Compose %q: a nil graph, or the graph itself", name)
		return
	}
	if name == "" || strings.ContainsAny(name, ":\"\n") {
		g.errf("graph: Compose: part name %q: want a non-empty name without ':', '\"' or newlines", name)
	}
	g.errs = append(g.errs, sub.errs...)
	for _, n := range sub.nodes {
		n.name = name + "/" + n.name
		if n.group == "" {
			n.group = name
		} else {
			n.group = name + "/" + n.group
		}
		if g.named[n.name] != nil {
			g.errf("graph: two elements named %q", n.name)
		} else {
			g.named[n.name] = n
		}
		g.nodes = append(g.nodes, n)
	}
	for to, from := range sub.links {
		g.links[to] = from
	}
	sub.nodes, sub.links, sub.named = nil, map[padRef]padRef{}, map[string]*node{}
}

// Validate reports every mistake in the graph: in building it, unlinked
// pads, links between pads of different types, and cycles.
func (g *Graph) Validate() error {
	errs := slices.Clone(g.errs)
	if len(g.nodes) == 0 {
		errs = append(errs, errors.New("graph: no elements"))
	}
	fed := map[padRef]bool{}
	for to, from := range g.links {
		fed[from] = true
		if from.n.outType != to.n.inType {
			errs = append(errs, fmt.Errorf("graph: source pad %s carries %v, sink pad %s takes %v", from, from.n.outType, to, to.n.inType))
		}
	}
	for _, n := range g.nodes {
		for _, p := range n.inputs {
			if _, ok := g.links[padRef{n, p}]; !ok {
				errs = append(errs, fmt.Errorf("graph: sink pad %s is not linked", padRef{n, p}))
			}
		}
		for _, p := range n.outputs {
			if !fed[padRef{n, p}] {
				errs = append(errs, fmt.Errorf("graph: source pad %s is not linked", padRef{n, p}))
			}
		}
	}
	for _, n := range g.nodes {
		if n.place == Process && n.crossable != nil {
			if err := n.crossable(); err != nil {
				errs = append(errs, fmt.Errorf("graph: element %q runs in a worker process, but its frames cannot cross: %w", n.name, err))
			}
		}
	}
	if cycle := g.cycle(); cycle != nil {
		errs = append(errs, fmt.Errorf("graph: a cycle: %s", strings.Join(cycle, " → ")))
	}
	return errors.Join(errs...)
}

// cycle returns the names of the elements on a cycle, or nil.
func (g *Graph) cycle() []string {
	next := map[*node][]*node{}
	for to, from := range g.links {
		next[from.n] = append(next[from.n], to.n)
	}
	const (
		white = iota
		grey
		black
	)
	color := map[*node]int{}
	var stack []*node
	var found []string
	var visit func(n *node) bool
	visit = func(n *node) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, m := range next[n] {
			switch color[m] {
			case grey:
				i := slices.Index(stack, m)
				for _, s := range stack[i:] {
					found = append(found, s.name)
				}
				found = append(found, m.name)
				return true
			case white:
				if visit(m) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, n := range g.nodes {
		if color[n] == white && visit(n) {
			return found
		}
	}
	return nil
}

// Dot renders the graph in Graphviz's DOT language: one box per element
// (its kind and placement; a worker process drawn double), one edge per
// link labelled with its pads.
func (g *Graph) Dot() string {
	var b strings.Builder
	b.WriteString("digraph ferry {\n\trankdir=LR;\n\tnode [shape=box, fontname=\"Helvetica\"];\n")
	groups := map[string][]string{}
	var order []string
	for _, n := range g.nodes {
		if n.group != "" {
			if groups[n.group] == nil {
				order = append(order, n.group)
			}
			groups[n.group] = append(groups[n.group], n.name)
		}
		style := ""
		if n.place == Process {
			style = ", peripheries=2, style=filled, fillcolor=\"#e8f0fe\""
		}
		label := fmt.Sprintf("%s\\n%s · %s", n.name, n.kind, n.place)
		if n.aligned {
			label += " · aligned"
		}
		fmt.Fprintf(&b, "\t%s [label=%s%s];\n", dotQuote(n.name), dotQuote(label), style)
	}
	for i, grp := range order {
		fmt.Fprintf(&b, "\tsubgraph cluster_%d {\n\t\tlabel=%s;\n\t\tstyle=dashed;\n", i, dotQuote(grp))
		for _, name := range groups[grp] {
			fmt.Fprintf(&b, "\t\t%s;\n", dotQuote(name))
		}
		b.WriteString("\t}\n")
	}
	var edges []string
	for to, from := range g.links {
		edges = append(edges, fmt.Sprintf("\t%s -> %s [label=%s];\n", dotQuote(from.n.name), dotQuote(to.n.name), dotQuote(from.pad+" → "+to.pad)))
	}
	sort.Strings(edges)
	for _, e := range edges {
		b.WriteString(e)
	}
	b.WriteString("}\n")
	return b.String()
}

// dotQuote quotes s for DOT, keeping its \n line breaks.
func dotQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
