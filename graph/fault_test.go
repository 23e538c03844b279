//go:build linux && !ferrynolinux

package graph_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
	"golang.org/x/sys/unix"
)

// scaleArgs names the shared constant that scale multiplies by.
type scaleArgs struct{ Constant string }

// scale multiplies every byte of a frame by the first byte of a shared
// constant, and reports its process's pid in the frame's Meta.
var scaleKind = graph.RegisterTransform("test.scale", func(a scaleArgs) (graph.Transform[[]byte, []byte], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[[]byte], out graph.Emitter[[]byte]) error {
		c, ok := shm.Lookup(a.Constant)
		if !ok {
			return fmt.Errorf("no shared constant %q", a.Constant)
		}
		k := c.Bytes()[0]
		b := make([]byte, len(in.Data))
		for i, v := range in.Data {
			b[i] = v * k
		}
		return out.Emit("", graph.Frame[[]byte]{Data: b, Meta: map[string]string{"pid": fmt.Sprint(os.Getpid())}})
	}), nil
})

// TestLargeFramesAndConstants sends frames of 256 KiB through an element
// that reads a shared constant, in each placement; in a worker process the
// frames cross through the arena, and every segment is free afterwards.
func TestLargeFramesAndConstants(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		arena, err := shm.NewSegmentPool(300<<10, 8)
		if err != nil {
			t.Fatal(err)
		}
		defer arena.Close()
		name := "test.scale." + p.String()
		c, err := shm.Share(name, []byte{3})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		g := graph.New(graph.BufferSize(2), graph.WorkerOptions(proc.Arena(arena), proc.Constants(c)))
		const frames, size = 40, 256 << 10
		src := graph.AddSource(g, "blobs", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[[]byte]) error {
			for i := range frames {
				b := bytes.Repeat([]byte{byte(i)}, size)
				if err := out.Emit("", graph.Frame[[]byte]{Data: b}); err != nil {
					return err
				}
			}
			return nil
		}))
		sc := graph.AddTransform(g, "scale", scaleKind.New(scaleArgs{Constant: name}), graph.Place(p))
		n := 0
		snk := graph.AddSink(g, "check", graph.SinkFunc(func(ctx context.Context, f graph.Frame[[]byte]) error {
			want := byte(n) * 3
			if len(f.Data) != size || f.Data[0] != want || f.Data[size-1] != want {
				return fmt.Errorf("frame %d: %d bytes, first %d, want %d", n, len(f.Data), f.Data[0], want)
			}
			if pid := fmt.Sprint(os.Getpid()); (f.Meta["pid"] == pid) != (p == graph.Goroutine) {
				return fmt.Errorf("frame %d was made in process %s (this one: %s)", n, f.Meta["pid"], pid)
			}
			n++
			return nil
		}))
		graph.Connect(g, src.Out(""), sc.In(""))
		graph.Connect(g, sc.Out(""), snk.In(""))
		if _, err := g.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n != frames {
			t.Fatalf("%d frames at the sink, want %d", n, frames)
		}
		if st := arena.Stats(); st.Free != st.Count {
			t.Fatalf("%d of %d segments free after the run", st.Free, st.Count)
		}
	})
}

// TestParentKilled kills a process running a graph with SIGKILL: the
// worker processes of its elements die with it.
func TestParentKilled(t *testing.T) {
	if os.Getenv("GRAPH_KILLED_PARENT") == "1" {
		killedParent()
		return
	}
	leakcheck.Check(t)
	before := devShm(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestParentKilled$")
	cmd.Env = append(os.Environ(), "GRAPH_KILLED_PARENT=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "graph-workers "); ok {
			for _, f := range strings.Fields(rest) {
				var pid int
				fmt.Sscan(f, &pid)
				pids = append(pids, pid)
			}
			break
		}
	}
	if len(pids) != 2 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the parent reported workers %v\n%s", pids, stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range pids {
		waitGone(t, pid, 10*time.Second)
	}
	// The constant the graph shared with its workers was a memfd: nothing
	// of it is left in /dev/shm (SGN's to_shm segments leak on a crash).
	for _, name := range devShm(t) {
		if !slices.Contains(before, name) && (strings.Contains(name, "ferry") || strings.Contains(name, "killed")) {
			t.Fatalf("/dev/shm/%s was left behind", name)
		}
	}
}

// devShm lists /dev/shm.
func devShm(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/dev/shm")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// killedParent runs an endless graph with two process elements, says
// their pids and waits to be killed.
func killedParent() {
	c, err := shm.Share("test.killed.constant", make([]byte, 1<<20))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	g := graph.New(graph.DefaultPlacement(graph.Process), graph.WorkerOptions(proc.Constants(c)))
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}))
	sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}))
	snk := graph.AddSink(g, "drop", graph.SinkFunc(func(context.Context, graph.Frame[int]) error { return nil }))
	graph.Connect(g, src.Out(""), sq.In(""))
	graph.Connect(g, sq.Out(""), snk.In(""))
	r, err := g.Start(context.Background())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	st := r.Stats()
	fmt.Printf("graph-workers %d %d\n", st.Elements[0].PID, st.Elements[1].PID)
	<-r.Done()
	os.Exit(1)
}

// waitGone waits until process pid has exited (its pidfd is readable),
// failing the test after limit.
func waitGone(t *testing.T, pid int, limit time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(limit.Milliseconds()))
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Poll(fds, int(limit.Milliseconds()))
	}
	if err != nil || n == 0 {
		t.Fatalf("worker %d still runs %v after its parent was killed (%v)", pid, limit, err)
	}
}
