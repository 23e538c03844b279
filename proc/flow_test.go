//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/proc"
)

// reused yields n items of each given size from one buffer, which it
// overwrites as soon as yield returns: a worker must have sent an item
// before it asks for the next one.
var reused = proc.Iter("flow.reused", func(ctx context.Context, sizes []int) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		var buf []byte
		for i, size := range sizes {
			if cap(buf) < size {
				buf = make([]byte, size)
			}
			b := buf[:size]
			fill(b, i)
			if !yield(b, nil) {
				return
			}
			fill(b, -1) // the item is the worker's to reuse
		}
	}
})

// fill writes a pattern that depends on i over b.
func fill(b []byte, i int) {
	for k := range b {
		b[k] = byte(i*7 + k)
	}
}

// TestItemsOfAReusedBuffer checks that items yielded from one buffer,
// overwritten after each yield, arrive as they were yielded, whatever their
// size.
func TestItemsOfAReusedBuffer(t *testing.T) {
	var sizes []int
	for range 20 {
		sizes = append(sizes, 0, 1, 100, 32<<10, 32<<10+1, 1<<20, 3<<20+5)
	}
	it, err := proc.Iterate(t.Context(), reused, sizes, proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	i := 0
	for b, err := range it.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, sizes[i])
		fill(want, i)
		if string(b) != string(want) {
			t.Fatalf("item %d (%d bytes) differs from what was yielded", i, sizes[i])
		}
		i++
	}
	if i != len(sizes) {
		t.Fatalf("%d items, want %d", i, len(sizes))
	}
}

// progress yields n ints and, before each, writes how many it has
// produced to the file at path.
var progress = proc.Iter("flow.progress", func(ctx context.Context, a progressArgs) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := range a.N {
			if err := os.WriteFile(a.Path, []byte(strconv.Itoa(i+1)), 0o600); err != nil {
				yield(0, err)
				return
			}
			if !yield(i, nil) {
				return
			}
		}
	}
})

type progressArgs struct {
	Path string
	N    int
}

// produced reads how many items the worker of progress has produced.
func produced(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(string(b))
	return n
}

// TestCreditsBoundTheWorker stops consuming at several points of a pass and
// checks that the worker, given time, never produces more than BufferSize
// items beyond those consumed (plus the one it holds, waiting for a
// credit).
func TestCreditsBoundTheWorker(t *testing.T) {
	for _, buffer := range []int{1, 2, 7, 64} {
		path := filepath.Join(t.TempDir(), "progress")
		n := 3*buffer + 10
		it, err := proc.Iterate(t.Context(), progress, progressArgs{path, n}, proc.BufferSize(buffer))
		if err != nil {
			t.Fatal(err)
		}
		consumed := 0
		for _, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatal(err)
			}
			consumed++
			if consumed%(buffer+3) != 1 {
				continue
			}
			// Let the worker run ahead as far as it can: until its
			// count has not moved for a while.
			last, still := -1, 0
			for still < 20 {
				if p := produced(t, path); p != last {
					last, still = p, 0
				} else {
					still++
				}
				time.Sleep(time.Millisecond)
			}
			if bound := consumed + buffer + 1; last > bound {
				t.Fatalf("buffer %d: %d items produced while %d were consumed", buffer, last, consumed)
			}
		}
		if consumed != n {
			t.Fatalf("buffer %d: %d items, want %d", buffer, consumed, n)
		}
		it.Close()
	}
}
