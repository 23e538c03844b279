//go:build linux && !ferrynolinux

package proc_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// bufReply is the result of proc.buffer-reply: the bytes asked for, in a
// Buffer made in the worker's arena (when it has one).
type bufReply struct {
	Label string
	Data  *shm.Buffer
}

var bufferReply = proc.Func("proc.buffer-reply", func(ctx context.Context, n int) (bufReply, error) {
	b, err := shm.NewBuffer(ctx, proc.WorkerArena(), n)
	if err != nil {
		return bufReply{}, err
	}
	for i := range b.Bytes() {
		b.Bytes()[i] = byte(n)
	}
	return bufReply{Label: fmt.Sprint(n), Data: b}, nil
})

// TestBufferResults: a *shm.Buffer in a call's result arrives whole, with
// or without an arena; with one, it is the worker's segment itself, which
// the caller's Release frees.
func TestBufferResults(t *testing.T) {
	for _, withArena := range []bool{true, false} {
		t.Run(fmt.Sprint("arena=", withArena), func(t *testing.T) {
			opts := []proc.PoolOption{proc.Workers(1), poolQuiet}
			var arena *shm.SegmentPool
			if withArena {
				var err error
				if arena, err = shm.NewSegmentPool(64<<10, 4); err != nil {
					t.Fatal(err)
				}
				defer arena.Close()
				opts = append(opts, proc.Arena(arena))
			}
			pool, err := proc.NewPool(t.Context(), bufferReply, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			for _, n := range []int{0, 7, 64 << 10} {
				r, err := pool.Call(t.Context(), n)
				if err != nil {
					t.Fatal(err)
				}
				if r.Label != fmt.Sprint(n) || r.Data == nil || !bytes.Equal(r.Data.Bytes(), bytes.Repeat([]byte{byte(n)}, n)) {
					t.Fatalf("call %d: %q, %v", n, r.Label, r.Data)
				}
				if got := r.Data.InPool(arena); got != withArena {
					t.Fatalf("call %d: the Buffer is in the arena: %v", n, got)
				}
				if withArena && arena.Stats().Viewed != 1 {
					t.Fatalf("call %d: the result does not hold its segment: %+v", n, arena.Stats())
				}
				r.Data.Release()
				if withArena {
					if st := arena.Stats(); st.Free != st.Count {
						t.Fatalf("call %d: after Release, %+v", n, st)
					}
				}
			}
		})
	}
}

// bufSum is the input of proc.buffer-sum: Echo returns the input Buffer
// itself, changed in place.
type bufSum struct {
	Data *shm.Buffer
	Echo bool
}

var bufferSum = proc.Func("proc.buffer-sum", func(ctx context.Context, in bufSum) (bufReply, error) {
	sum := 0
	for _, v := range in.Data.Bytes() {
		sum += int(v)
	}
	if in.Echo {
		in.Data.Bytes()[0] = 42
		return bufReply{Label: fmt.Sprint(sum), Data: in.Data}, nil
	}
	return bufReply{Label: fmt.Sprint(sum)}, nil
})

// TestBufferInputs: a Buffer in a call's input is lent: the caller keeps
// it; the worker's copy is released when the call returns, or sent back
// when the call returns it.
func TestBufferInputs(t *testing.T) {
	for _, withArena := range []bool{true, false} {
		t.Run(fmt.Sprint("arena=", withArena), func(t *testing.T) {
			opts := []proc.PoolOption{proc.Workers(1), poolQuiet}
			var arena *shm.SegmentPool
			if withArena {
				var err error
				if arena, err = shm.NewSegmentPool(64<<10, 4); err != nil {
					t.Fatal(err)
				}
				defer arena.Close()
				opts = append(opts, proc.Arena(arena))
			}
			pool, err := proc.NewPool(t.Context(), bufferSum, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			in, err := shm.NewBuffer(t.Context(), arena, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for i := range in.Bytes() {
				in.Bytes()[i] = 1
			}
			for round := range 3 {
				for _, echo := range []bool{false, true} {
					r, err := pool.Call(t.Context(), bufSum{Data: in, Echo: echo})
					if err != nil {
						t.Fatal(err)
					}
					if r.Label != "1000" || in.Bytes()[0] != 1 || !in.Unique() {
						t.Fatalf("round %d, echo %v: sum %s; the caller's Buffer starts %d, unique %v", round, echo, r.Label, in.Bytes()[0], in.Unique())
					}
					if echo != (r.Data != nil) || echo && r.Data.Bytes()[0] != 42 {
						t.Fatalf("round %d, echo %v: returned %v", round, echo, r.Data)
					}
					if r.Data != nil {
						r.Data.Release()
					}
					if withArena {
						if st := arena.Stats(); st.Leased != 1 || st.Free != st.Count-1 {
							t.Fatalf("round %d, echo %v: only the caller's Buffer should hold a segment: %+v", round, echo, st)
						}
					}
				}
			}
			in.Release()
		})
	}
}

// bufferKept keeps the Buffer of its first call (Retain), and answers with
// its first byte every time.
var (
	bufferKeptOne *shm.Buffer
	bufferKept    = proc.Func("proc.buffer-kept", func(ctx context.Context, in *shm.Buffer) (int, error) {
		if bufferKeptOne == nil {
			bufferKeptOne = in.Retain()
		}
		return int(bufferKeptOne.Bytes()[0]), nil
	})
)

// TestBufferKeptByAWorker: a call's input that the worker keeps stays its
// own: the parent does not free the segment under it when the call ends,
// and it is freed when the worker goes.
func TestBufferKeptByAWorker(t *testing.T) {
	arena, err := shm.NewSegmentPool(4096, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	pool, err := proc.NewPool(t.Context(), bufferKept, proc.Workers(1), proc.Arena(arena), poolQuiet)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		in, err := shm.NewBuffer(t.Context(), arena, 10)
		if err != nil {
			t.Fatal(err)
		}
		in.Bytes()[0] = byte(i)
		got, err := pool.Call(t.Context(), in)
		in.Release()
		if err != nil {
			t.Fatal(err)
		}
		if got != 1 {
			t.Fatalf("call %d: the kept Buffer reads %d, want 1: its segment was reused under it", i, got)
		}
	}
	if st := arena.Stats(); st.Viewed != 1 {
		t.Fatalf("the worker's kept Buffer does not hold its segment: %+v", st)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if st := arena.Stats(); st.Free != st.Count {
		t.Fatalf("after the worker is gone: %+v", st)
	}
}
