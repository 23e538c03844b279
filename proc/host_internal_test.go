package proc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/internal/wire"
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
