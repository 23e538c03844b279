// Command constants shares a model's weights with a pool of worker
// processes through shared memory: the parent puts them once in a sealed,
// read-only memfd (shm.Share), proc.Constants hands it to every worker,
// and each worker's initializer finds it by name (shm.Lookup) before the
// first call. The weights exist once in memory however many workers use
// them, which the program shows from /proc/<pid>/smaps: each process's
// proportional share (Pss) of the mapping is the size divided by the
// number of processes.
//
//	go run ./examples/constants
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// The model: a linear classifier of Features inputs into Classes classes,
// Classes×Features float32 weights (4 MiB).
const (
	Features = 1 << 16
	Classes  = 16
	Name     = "model.weights"
)

// weights is this worker's view of the shared weights, set by LoadModel:
// a slice of the read-only mapping, not a copy.
var weights []float32

// LoadModel runs in each worker before it serves calls: it finds the
// shared weights by name, as a model loader would open a file.
var LoadModel = proc.Init("examples.load-model", func(context.Context) error {
	c, ok := shm.Lookup(Name)
	if !ok {
		return fmt.Errorf("no shared constant %q: start the workers with proc.Constants", Name)
	}
	if c.Len() != Classes*Features*4 {
		return fmt.Errorf("shared constant %q has %d bytes, want %d", Name, c.Len(), Classes*Features*4)
	}
	weights = shm.Float32s(c.Bytes())
	return nil
})

// Classify runs in the workers: it scores the sample generated from a seed
// with the shared weights and returns the best class.
var Classify = proc.Func("examples.classify", func(_ context.Context, seed int) (int, error) {
	if weights == nil {
		return 0, errors.New("the model is not loaded")
	}
	return classify(weights, seed), nil
})

// classify returns the class of highest score for the sample of the seed.
func classify(w []float32, seed int) int {
	x := sample(seed)
	best, bestScore := 0, float32(0)
	for c := range Classes {
		row := w[c*Features : (c+1)*Features]
		var s float32
		for i, v := range x {
			s += row[i] * v
		}
		if c == 0 || s > bestScore {
			best, bestScore = c, s
		}
	}
	return best
}

// sample makes the features of a sample from a seed (a stand-in for
// decoding an input).
func sample(seed int) []float32 {
	x := make([]float32, Features)
	r := uint32(seed)*2654435761 + 1
	for i := range x {
		r = r*1664525 + 1013904223
		x[i] = float32(r>>8)/(1<<24) - 0.5
	}
	return x
}

// makeWeights stands for loading a trained model from disk.
func makeWeights() []float32 {
	w := make([]float32, Classes*Features)
	r := uint32(42)
	for i := range w {
		r = r*22695477 + 1
		w[i] = float32(r>>8)/(1<<24) - 0.5
	}
	return w
}

func main() {
	proc.Main()  // a worker process serves Classify here and never returns
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	if err := run(context.Background()); err != nil {
		logs.Fatal(err)
	}
}

func run(ctx context.Context) error {
	// The weights go into shared memory; the heap copy can go.
	c, err := shm.Share(Name, shm.AsBytes(makeWeights()))
	if err != nil {
		return err
	}
	// Closed after the pool, which may start replacement workers until its
	// Close (deferred calls run last first).
	defer c.Close()
	shared := shm.Float32s(c.Bytes()) // the parent reads the same pages
	fmt.Printf("weights: %d MiB shared as %q (a sealed, read-only memfd)\n", c.Len()>>20, c.Name())

	pool, err := proc.NewPool(ctx, Classify, proc.Workers(2), proc.Constants(c), proc.Initializers(LoadModel))
	if err != nil {
		return err
	}
	defer pool.Close()
	var pids []int
	for _, w := range pool.Stats().Workers {
		pids = append(pids, w.PID)
	}
	slices.Sort(pids)
	fmt.Printf("pool: %d workers, each mapped the weights before its initializer ran\n", len(pids))

	// Classify samples in the workers, four calls at a time, and check
	// each answer against the parent's own computation.
	const samples = 64
	classes := make([]int, samples)
	errs := make(chan error, samples)
	sem := make(chan struct{}, 4)
	for i := range samples {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			got, err := pool.Call(ctx, i)
			if err == nil && got != classify(shared, i) {
				err = fmt.Errorf("sample %d: the worker says class %d, the parent %d", i, got, classify(shared, i))
			}
			classes[i] = got
			errs <- err
		}()
	}
	for range samples {
		if err := <-errs; err != nil {
			return err
		}
	}
	hist := make([]int, Classes)
	for _, cl := range classes {
		hist[cl]++
	}
	fmt.Printf("classified %d samples in the workers; every answer matches the parent's\n", samples)
	fmt.Printf("samples per class: %v\n", hist)

	// One copy in memory: every process maps the same pages, read-only.
	fmt.Println("the weights' mapping in each process (/proc/<pid>/smaps):")
	totalPss := 0
	for _, pid := range append([]int{os.Getpid()}, pids...) {
		who := "worker"
		if pid == os.Getpid() {
			who = "parent"
		}
		perms, rss, pss, err := mapping(pid, "/memfd:ferry-const:"+Name)
		if err != nil {
			return err
		}
		totalPss += pss
		fmt.Printf("  %s: %s, resident %d KiB, proportional share %d KiB\n", who, perms, rss, pss)
	}
	fmt.Printf("shares add up to %d KiB: %d MiB in memory for %d processes\n", totalPss, (totalPss+512)>>10, 1+len(pids))
	return nil
}

// mapping returns the permissions, the resident size and the proportional
// set size (Pss, in KiB) of process pid's mapping of the file named path.
func mapping(pid int, path string) (perms string, rss, pss int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return "", 0, 0, err
	}
	found := false
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && !strings.HasSuffix(f[0], ":"): // a mapping's header: address perms offset dev inode [path]
			if found {
				return perms, rss, pss, nil
			}
			if len(f) >= 6 && f[5] == path {
				found, perms = true, f[1]
			}
		case found && len(f) == 3 && f[0] == "Rss:":
			rss, _ = strconv.Atoi(f[1])
		case found && len(f) == 3 && f[0] == "Pss:":
			pss, _ = strconv.Atoi(f[1])
		}
	}
	if !found {
		return "", 0, 0, fmt.Errorf("process %d does not map %s", pid, path)
	}
	return perms, rss, pss, nil
}
