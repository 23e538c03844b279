//go:build linux && !ferrynolinux

package proc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

type arenaArgs struct {
	N        int // items
	Size     int // bytes per item
	BigAt    int // index of an item of BigSize bytes (-1: none)
	BigSize  int
	InPlace  bool // write in the arena (proc.Shared) instead of copying a []byte in
	Deadline int  // unused; a field that is not an arena part
}

// arenaCopy yields N []byte items of Size bytes, marked with their index in
// the first and last byte; item BigAt has BigSize bytes.
var arenaCopy = proc.Iter("arena.copy", func(ctx context.Context, a arenaArgs) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		buf := make([]byte, max(a.Size, a.BigSize))
		for i := range a.N {
			b := buf[:a.Size]
			if i == a.BigAt {
				b = buf[:a.BigSize]
			}
			b[0], b[len(b)-1] = byte(i), byte(i)
			if !yield(b, nil) {
				return
			}
		}
	}
})

// arenaAlloc writes its items in place in the worker's arena.
var arenaAlloc = proc.Iter("arena.alloc", func(ctx context.Context, a arenaArgs) iter.Seq2[proc.Shared, error] {
	return func(yield func(proc.Shared, error) bool) {
		pool := proc.WorkerArena()
		for i := range a.N {
			var s proc.Shared
			lease, err := pool.Acquire(ctx)
			if err == nil {
				b := lease.Bytes()[:a.Size]
				b[0], b[len(b)-1] = byte(i), byte(i)
				s.Ref, err = lease.Publish(a.Size)
				lease.Abandon()
			}
			if !yield(s, err) {
				return
			}
		}
	}
})

func newArena(t *testing.T, segSize, count int, opts ...shm.Option) *shm.SegmentPool {
	t.Helper()
	pool, err := shm.NewSegmentPool(segSize, count, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	return pool
}

func checkView(t *testing.T, v *shm.View, i, size int) {
	t.Helper()
	b := v.Bytes()
	if len(b) != size || b[0] != byte(i) || b[len(b)-1] != byte(i) {
		t.Fatalf("item %d: %d bytes, marks %d %d", i, len(b), b[0], b[len(b)-1])
	}
}

// TestArenaBreakAndIterateAgain breaks out of passes at every point with a
// pool of 2 segments and a buffer of 3, and checks that every pass after
// that is complete.
func TestArenaBreakAndIterateAgain(t *testing.T) {
	noLeaks(t)
	pool := newArena(t, 8<<20, 2, shm.AcquireTimeout(10*time.Second))
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprintf("inPlace=%v", inPlace), func(t *testing.T) {
			const n = 6
			args := arenaArgs{N: n, Size: 8 << 20, BigAt: -1, InPlace: inPlace}
			var it *proc.Iterable[*shm.View]
			var err error
			if inPlace {
				it, err = proc.IterateShared(t.Context(), arenaAlloc, args, proc.Arena(pool), proc.BufferSize(3))
			} else {
				it, err = proc.IterateShared(t.Context(), arenaCopy, args, proc.Arena(pool), proc.BufferSize(3))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			for pass := range 40 {
				stop := pass % (n + 1) // break after this many items (n: complete)
				got := 0
				for v, err := range it.All(t.Context()) {
					if err != nil {
						t.Fatalf("pass %d item %d: %v", pass, got, err)
					}
					checkView(t, v, got, 8<<20)
					v.Release()
					got++
					if got == stop {
						break
					}
				}
				if stop == n && got != n {
					t.Fatalf("pass %d: %d items, want %d", pass, got, n)
				}
			}
		})
	}
	// Every segment is back once the iterables are closed.
	if h := pool.Held(); h != 0 {
		t.Errorf("%d segments held after Close", h)
	}
}

// TestArenaCopyOut: Iterate (not IterateShared) with an arena decodes a
// copy of each item.
func TestArenaCopyOut(t *testing.T) {
	noLeaks(t)
	pool := newArena(t, 1<<20, 2)
	it, err := proc.Iterate(t.Context(), arenaCopy, arenaArgs{N: 10, Size: 1000, BigAt: -1}, proc.Arena(pool), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	i := 0
	for b, err := range it.All(t.Context()) {
		if err != nil || len(b) != 1000 || b[0] != byte(i) {
			t.Fatalf("item %d: %d bytes, %v", i, len(b), err)
		}
		i++
	}
	if i != 10 {
		t.Fatalf("%d items", i)
	}
}

func TestArenaTooLarge(t *testing.T) {
	noLeaks(t)
	pool := newArena(t, 1<<20, 2)
	it, err := proc.IterateShared(t.Context(), arenaCopy, arenaArgs{N: 5, Size: 1 << 20, BigAt: 2, BigSize: 2 << 20}, proc.Arena(pool), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for range 2 { // the worker lives on
		i := 0
		for v, err := range it.All(t.Context()) {
			if i == 2 {
				var re *proc.RemoteError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), "2 MiB") || !strings.Contains(err.Error(), "1 MiB") {
					t.Fatalf("item 2: %v, want an error naming both sizes", err)
				}
			} else {
				if err != nil {
					t.Fatalf("item %d: %v", i, err)
				}
				checkView(t, v, i, 1<<20)
				v.Release()
			}
			i++
		}
		if i != 5 {
			t.Fatalf("%d items, want 5", i)
		}
	}
}

// TestArenaHeldViews: a consumer that keeps every view gets errors saying
// so after the acquire timeout, not a deadlock.
func TestArenaHeldViews(t *testing.T) {
	noLeaks(t)
	pool := newArena(t, 1<<20, 2, shm.AcquireTimeout(200*time.Millisecond))
	it, err := proc.IterateShared(t.Context(), arenaCopy, arenaArgs{N: 4, Size: 4096, BigAt: -1}, proc.Arena(pool), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var held []*shm.View
	i := 0
	for v, err := range it.All(ctx) {
		if i < 2 {
			if err != nil {
				t.Fatalf("item %d: %v", i, err)
			}
			held = append(held, v)
		} else if err == nil || !strings.Contains(err.Error(), "held by the consumer") {
			t.Fatalf("item %d: %v, want an error saying views are held", i, err)
		}
		i++
	}
	if i != 4 {
		t.Fatalf("%d items, want 4", i)
	}
	for _, v := range held {
		v.Release()
	}
	// Released: the next pass is complete.
	i = 0
	for v, err := range it.All(ctx) {
		if err != nil {
			t.Fatalf("after release, item %d: %v", i, err)
		}
		v.Release()
		i++
	}
	if i != 4 {
		t.Fatalf("after release: %d items", i)
	}
}

// TestArenaWorkerKilled kills the worker in the middle of a pass: the pass
// ends with a *WorkerError, the segments come back, and once the pool is
// closed no shared memory is left.
func TestArenaWorkerKilled(t *testing.T) {
	noLeaks(t)
	devShm := devShmNames(t)
	name := fmt.Sprintf("ferry-test-killed-%d", os.Getpid())
	pool, err := shm.NewSegmentPool(1<<20, 2, shm.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	it, err := proc.IterateShared(t.Context(), arenaCopy, arenaArgs{N: 1 << 30, Size: 1 << 20, BigAt: -1}, proc.Arena(pool), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	var kept *shm.View
	var werr error
	i := 0
	for v, err := range it.All(t.Context()) {
		if err != nil {
			werr = err
			break
		}
		if i == 0 {
			kept = v // held across the death
		} else {
			v.Release()
		}
		if i == 5 {
			_ = syscall.Kill(it.PID(), syscall.SIGKILL)
		}
		i++
	}
	var we *proc.WorkerError
	if !errors.As(werr, &we) {
		t.Fatalf("after %d items: %v, want a *WorkerError", i, werr)
	}
	checkView(t, kept, 0, 1<<20) // a view survives the worker
	kept.Release()
	it.Close()
	if h := pool.Held(); h != 0 {
		t.Errorf("%d segments held after the worker died", h)
	}
	st := pool.Stats()
	t.Logf("after the kill: %+v", st)
	pool.Close()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(maps), name) {
		t.Errorf("the pool is still mapped after Close")
	}
	// Nor open or mapped by any process (the worker included), and nothing
	// of it in /dev/shm.
	if h := memfdHolders(t, "/memfd:"+name+" "); len(h) > 0 {
		t.Errorf("the pool is still held after Close: %v", h)
	}
	noNewFerryShm(t, devShm)
}

func TestArenaSharedNeedsArena(t *testing.T) {
	if _, err := proc.IterateShared(t.Context(), arenaCopy, arenaArgs{}); err == nil || !strings.Contains(err.Error(), "Arena") {
		t.Fatalf("got %v, want an error asking for an arena", err)
	}
	if _, err := proc.IterateShared(t.Context(), count, 3, proc.Arena(nil)); err == nil {
		t.Fatal("IterateShared of ints: no error")
	}
}

// arenaBlocks is a pipeline of n []byte items of 64 KiB, marked with their
// index.
var arenaBlocks = proc.Pipeline("arena.blocks", func(n int) (*pipeline.Config[[]byte], error) {
	src := pipeline.FromSlice(seqN(n))
	blocks := pipeline.Pipe(src, func(_ context.Context, i int) ([]byte, error) {
		b := make([]byte, 64<<10)
		b[0], b[len(b)-1] = byte(i), byte(i)
		return b, nil
	})
	return pipeline.Sink(blocks, 4).With(pipeline.Continuous()), nil
})

func TestArenaRunPipelineShared(t *testing.T) {
	noLeaks(t)
	pool := newArena(t, 64<<10, 2, shm.AcquireTimeout(10*time.Second))
	it, err := proc.RunPipelineShared(t.Context(), arenaBlocks, 20, proc.Arena(pool), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for round := range 8 {
		stop := []int{1, 20, 3, 20, 0, 20, 7, 20}[round]
		got := 0
		for v, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatalf("round %d item %d: %v", round, got, err)
			}
			checkView(t, v, got, 64<<10)
			v.Release()
			if got++; got == stop {
				break
			}
		}
		if stop == 20 && got != 20 {
			t.Fatalf("round %d: %d items, want 20", round, got)
		}
	}
}

// makePair is item i of arena.pairs: 100 KiB of bytes and 128 KiB of
// floats, every element derived from i.
func makePair(i int) pair {
	p := pair{Name: fmt.Sprint("pair ", i), Bytes: make([]byte, 100<<10), Floats: make([]float32, 32<<10)}
	for j := range p.Bytes {
		p.Bytes[j] = byte(i*7 + j*13 + j>>8)
	}
	for j := range p.Floats {
		p.Floats[j] = float32(i) + float32(j)/4
	}
	return p
}

// arenaPairs is a pipeline of n pairs, whose two slices travel through
// the arena.
var arenaPairs = proc.Pipeline("arena.pairs", func(n int) (*pipeline.Config[pair], error) {
	src := pipeline.FromSlice(seqN(n))
	pairs := pipeline.Pipe(src, func(_ context.Context, i int) (pair, error) { return makePair(i), nil })
	return pipeline.Sink(pairs, 4).With(pipeline.Continuous()), nil
})

// TestArenaRunPipelineSplit: plain RunPipeline (not RunPipelineShared)
// with an arena delivers struct items whose []byte and []float32 fields
// went through the arena, intact, epoch after epoch and after epochs
// broken off; every segment is free after each complete epoch and at the
// end.
func TestArenaRunPipelineSplit(t *testing.T) {
	noLeaks(t)
	const n = 12
	arena := newArena(t, 128<<10, 4, shm.AcquireTimeout(10*time.Second))
	it, err := proc.RunPipeline(t.Context(), arenaPairs, n, proc.Arena(arena), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	for round, stop := range []int{n, n, 3, n, 1, n} {
		before := arena.Published()
		got := 0
		for p, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatalf("round %d item %d: %v", round, got, err)
			}
			want := makePair(got)
			if p.Name != want.Name || !bytes.Equal(p.Bytes, want.Bytes) || !slices.Equal(p.Floats, want.Floats) {
				t.Fatalf("round %d item %d: %q with %d bytes and %d floats, not what the worker sent", round, got, p.Name, len(p.Bytes), len(p.Floats))
			}
			if got++; got == stop {
				break
			}
		}
		if got != stop {
			t.Fatalf("round %d: %d items, want %d", round, got, stop)
		}
		if stop != n {
			continue
		}
		if st := arena.Stats(); st.Free != st.Count {
			t.Errorf("round %d: segments not all free after a complete epoch: %+v", round, st)
		}
		// Both slices of every item, in the rounds that no broken-off
		// epoch precedes.
		if pub := arena.Published() - before; round < 2 && pub != 2*n {
			t.Errorf("round %d: %d segments published, want %d", round, pub, 2*n)
		}
	}
	it.Close()
	if st := arena.Stats(); st.Free != st.Count || st.Published != st.Reclaimed {
		t.Errorf("after Close: %+v", st)
	}
}

// TestArenaManyPassesStayFlat runs many short passes, half of them broken
// off, and checks that neither process gains file descriptors or mappings
// of the arena.
func TestArenaManyPassesStayFlat(t *testing.T) {
	noLeaks(t)
	name := fmt.Sprintf("ferry-test-flat-%d", os.Getpid())
	pool := newArena(t, 4096, 2, shm.Name(name), shm.AcquireTimeout(10*time.Second))
	it, err := proc.IterateShared(t.Context(), arenaCopy, arenaArgs{N: 3, Size: 100, BigAt: -1}, proc.Arena(pool), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	count := func(pid string) (fds, maps int) {
		ents, _ := os.ReadDir("/proc/" + pid + "/fd")
		b, _ := os.ReadFile("/proc/" + pid + "/maps")
		return len(ents), strings.Count(string(b), name)
	}
	pass := func(stop int) {
		got := 0
		for v, err := range it.All(t.Context()) {
			if err != nil {
				t.Fatalf("item %d: %v", got, err)
			}
			checkView(t, v, got, 100)
			v.Release()
			if got++; got == stop {
				break
			}
		}
	}
	pass(3)
	worker := fmt.Sprint(it.PID())
	wfds, wmaps := count(worker)
	sfds, smaps := count("self")
	passes := 2000
	if testing.Short() {
		passes = 200
	}
	for i := range passes {
		pass(1 + i%4) // 4: complete
	}
	if f, m := count(worker); f != wfds || m != wmaps || m != 1 {
		t.Errorf("worker: %d fds and %d arena mappings, %d and %d before", f, m, wfds, wmaps)
	}
	if f, m := count("self"); f != sfds || m != smaps || m != 1 {
		t.Errorf("parent: %d fds and %d arena mappings, %d and %d before", f, m, sfds, smaps)
	}
	if h := pool.Held(); h != 0 {
		t.Errorf("%d segments held between passes", h)
	}
}
