//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// dxArgs configures dx.sum.
type dxArgs struct {
	Every  int // emit the running sum every Every inputs, and at the end
	FailAt int // fail when the running count reaches FailAt (0: never)
	Crash  int // exit the process at this input (0: never)
	Block  bool
}

// dxSum keeps a running sum of its inputs (state across inputs) and emits
// it every Every inputs, and once more when its input ends.
var dxSum = proc.Duplex("dx.sum", func(ctx context.Context, a dxArgs, in iter.Seq2[int, error], out func(int) error) error {
	sum, n := 0, 0
	for v, err := range in {
		if err != nil {
			return err
		}
		n++
		sum += v
		if a.FailAt > 0 && n == a.FailAt {
			return fmt.Errorf("input %d: %w", n, errRtNotFound)
		}
		if a.Crash > 0 && n == a.Crash {
			os.Exit(7)
		}
		if a.Every > 0 && n%a.Every == 0 {
			if err := out(sum); err != nil {
				return err
			}
		}
	}
	if a.Block {
		<-ctx.Done()
		return ctx.Err()
	}
	return out(-sum)
})

// dxBytes echoes each []byte input with its first byte incremented, through
// the arena when the stream has one.
var dxBytes = proc.Duplex("dx.bytes", func(ctx context.Context, _ struct{}, in iter.Seq2[[]byte, error], out func([]byte) error) error {
	for b, err := range in {
		if err != nil {
			return err
		}
		b[0]++
		if err := out(b); err != nil {
			return err
		}
	}
	return nil
})

func collectDuplex[Out any](t *testing.T, seq iter.Seq2[Out, error]) ([]Out, error) {
	t.Helper()
	var got []Out
	for v, err := range seq {
		if err != nil {
			return got, err
		}
		got = append(got, v)
	}
	return got, nil
}

func TestDuplexStatefulStream(t *testing.T) {
	ctx := context.Background()
	d, err := proc.OpenDuplex(ctx, dxSum, dxArgs{Every: 10}, proc.BufferSize(4))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 1000
	var sendErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if sendErr = d.Send(ctx, i); sendErr != nil {
				return
			}
		}
		sendErr = d.CloseSend()
	}()
	got, err := collectDuplex(t, d.All(ctx))
	wg.Wait()
	if err != nil || sendErr != nil {
		t.Fatalf("All: %v; Send: %v", err, sendErr)
	}
	if len(got) != n/10+1 {
		t.Fatalf("got %d outputs, want %d", len(got), n/10+1)
	}
	for i, v := range got[:n/10] {
		k := (i + 1) * 10
		if v != k*(k+1)/2 {
			t.Fatalf("output %d = %d, want %d", i, v, k*(k+1)/2)
		}
	}
	if last := got[n/10]; last != -n*(n+1)/2 {
		t.Fatalf("last output %d, want %d", last, -n*(n+1)/2)
	}
	if err := d.Send(ctx, 1); err == nil {
		t.Fatal("Send after CloseSend succeeded")
	}
}

func TestDuplexErrorsCrossTheBoundary(t *testing.T) {
	ctx := context.Background()
	d, err := proc.OpenDuplex(ctx, dxSum, dxArgs{FailAt: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	go func() {
		for i := range 100 {
			if d.Send(ctx, i) != nil {
				return
			}
		}
		_ = d.CloseSend()
	}()
	_, err = collectDuplex(t, d.All(ctx))
	var re *proc.RemoteError
	if !errors.Is(err, errRtNotFound) || !errors.As(err, &re) {
		t.Fatalf("All ended with %v; want the worker's error, matching the registered sentinel", err)
	}
	// Send learns that the stream is over instead of waiting for credits.
	for i := 0; ; i++ {
		if err := d.Send(ctx, i); err != nil {
			if !errors.Is(err, proc.ErrEnded) {
				t.Fatalf("Send after the end: %v; want ErrEnded", err)
			}
			break
		}
	}
}

func TestDuplexWorkerDeath(t *testing.T) {
	ctx := context.Background()
	d, err := proc.OpenDuplex(ctx, dxSum, dxArgs{Crash: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sent := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := d.Send(ctx, i); err != nil {
				sent <- err
				return
			}
		}
	}()
	_, err = collectDuplex(t, d.All(ctx))
	var we *proc.WorkerError
	if !errors.As(err, &we) || we.ExitCode != 7 {
		t.Fatalf("All ended with %v; want a *WorkerError with exit status 7", err)
	}
	if err := <-sent; !errors.Is(err, proc.ErrEnded) {
		t.Fatalf("Send: %v; want ErrEnded", err)
	}
}

func TestDuplexCancel(t *testing.T) {
	ctx := context.Background()
	d, err := proc.OpenDuplex(ctx, dxSum, dxArgs{Block: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Send(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseSend(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = collectDuplex(t, d.All(cctx))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("All with an ended context: %v", err)
	}
}

func TestDuplexThroughTheArena(t *testing.T) {
	ctx := context.Background()
	arena, err := shm.NewSegmentPool(1<<20, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	d, err := proc.OpenDuplex(ctx, dxBytes, struct{}{}, proc.Arena(arena), proc.BufferSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const n = 50
	go func() {
		for i := range n {
			b := make([]byte, 256<<10)
			b[0] = byte(i)
			b[len(b)-1] = 0xAB
			if d.Send(ctx, b) != nil {
				return
			}
		}
		_ = d.CloseSend()
	}()
	got, err := collectDuplex(t, d.All(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("got %d outputs, want %d", len(got), n)
	}
	for i, b := range got {
		if len(b) != 256<<10 || b[0] != byte(i+1) || b[len(b)-1] != 0xAB {
			t.Fatalf("output %d: %d bytes, first %d", i, len(b), b[0])
		}
	}
	if st := arena.Stats(); st.Free != st.Count {
		t.Fatalf("%d of %d segments free after the stream", st.Free, st.Count)
	}
}
