//go:build linux && !ferrynolinux

package proc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/shm"
)

var (
	hostDouble = Func("host.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	hostGreet  = Func("host.greet", func(_ context.Context, s string) (string, error) { return "hello, " + s, nil })
)

// TestHostServesSeveralPiecesOfWork attaches a second registered function
// to a running worker and calls both through the session: one worker
// process hosts more than one piece of work.
func TestHostServesSeveralPiecesOfWork(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		opts := []PoolOption{Workers(1), Logger(slog.New(slog.DiscardHandler))}
		if inProcess {
			opts = append(opts, InProcess())
		}
		pool, err := NewPool(t.Context(), hostDouble, opts...)
		if err != nil {
			t.Fatal(err)
		}
		sup := pool.sup
		m := sup.slots[0].m
		attach, _ := json.Marshal(wire.Attach{Kind: kindFunc, Name: hostGreet.Name()})
		reply, err := sup.request(t.Context(), m, wire.Head{Op: wire.OpAttach}, attach)
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
		id, n := binary.Uvarint(reply)
		if n <= 0 || id != 2 {
			t.Fatalf("attach replied %x, want instance 2", reply)
		}
		in, _ := hostGreet.in.Append(nil, "ferry")
		body, err := sup.request(t.Context(), m, wire.Head{Op: wire.OpCall, Target: id}, in)
		if err != nil {
			t.Fatalf("call of the attached work: %v", err)
		}
		if s, err := hostGreet.out.Decode(body); err != nil || s != "hello, ferry" {
			t.Fatalf("attached work answered %q, %v", s, err)
		}
		// The first piece of work is still served, by the same process.
		if v, err := pool.Call(t.Context(), 21); err != nil || v != 42 {
			t.Fatalf("first work: %v, %v", v, err)
		}
		// What is not registered cannot be attached, and says why.
		bad, _ := json.Marshal(wire.Attach{Kind: kindFunc, Name: "host.nothing"})
		if _, err := sup.request(t.Context(), m, wire.Head{Op: wire.OpAttach}, bad); err == nil || !strings.Contains(err.Error(), "nothing is registered") {
			t.Fatalf("attaching an unknown name: %v", err)
		}
		pool.Close()
	}
}

// TestStreamInboxReleasesWhatComesAfterDrain checks that the views of
// frames still pending when the consumer goes, or arriving after, are
// released: their segments go back to the arena.
func TestStreamInboxReleasesWhatComesAfterDrain(t *testing.T) {
	arena, err := shm.NewSegmentPool(4096, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	viewed := func() frame {
		ref, err := arena.PublishCopy(t.Context(), []byte("item"))
		if err != nil {
			t.Fatal(err)
		}
		v, err := arena.View(ref)
		if err != nil {
			t.Fatal(err)
		}
		return frame{t: wire.DataRef, view: v}
	}
	b := newStreamInbox()
	b.add(viewed(), false) // pending, not handed over yet
	b.add(viewed(), true)  // handed over with the first
	b.add(viewed(), false) // pending again
	b.drain()              // the consumer breaks out
	b.publish()            // the reading goroutine goes idle
	b.add(viewed(), false) // and more comes
	b.publish()
	if h := arena.Held(); h != 0 {
		t.Fatalf("%d segments held after the consumer left", h)
	}
}
