package batch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/proc"
)

func TestWireRoundTrip(t *testing.T) {
	header := appendString(appendString(nil, "abc123"), `{"n":3}`)
	task := Task{Indices: []int{3, 4, 500000}, Ordered: true, StopOnError: true}
	id, params, got, each, err := decodeRequest(encodeRequest(header, task, true))
	if err != nil || !each || id != "abc123" || string(params) != `{"n":3}` || !got.Ordered || !got.StopOnError || len(got.Indices) != 3 || got.Indices[2] != 500000 {
		t.Fatalf("request: %q %q %+v %v", id, params, got, err)
	}

	now := time.Unix(0, time.Now().UnixNano())
	outs := []Outcome{
		{Index: 3, OK: true, Output: []byte(`"x"`), State: []byte(`{"s":1}`), Started: now, Finished: now.Add(time.Millisecond)},
		{Index: 4, Err: errors.New("bad input"), Started: now, Finished: now},
		{Index: 5, Err: &PanicError{Value: "boom", Stack: "goroutine 1"}, Started: now, Finished: now},
	}
	var back []Outcome
	for _, o := range outs {
		_, got, start, rest, err := decodeRecord(appendOutcome(nil, 42, o), "fn", workerName{})
		if err != nil || start || len(rest) != 0 {
			t.Fatalf("outcome %d: %+v %v %v", o.Index, got, start, err)
		}
		back = append(back, got)
	}
	if pid, _, start, _, err := decodeRecord(encodeStart(42), "fn", workerName{}); pid != 42 || !start || err != nil {
		t.Fatalf("start record: %d %v %v", pid, start, err)
	}
	if o := back[0]; !o.OK || string(o.Output) != `"x"` || string(o.State) != `{"s":1}` || o.Worker != "pid 42" || !o.Started.Equal(now) || !o.Finished.Equal(now.Add(time.Millisecond)) {
		t.Errorf("outcome 0: %+v", o)
	}
	var re *proc.RemoteError
	if o := back[1]; o.OK || !errors.As(o.Err, &re) || re.PID != 42 || re.Message != "bad input" || re.Worker != "fn" {
		t.Errorf("outcome 1: %+v", o)
	}
	var pe *PanicError
	if o := back[2]; o.OK || !errors.As(o.Err, &pe) || pe.Value != "boom" || pe.Stack != "goroutine 1" || pe.Worker != "pid 42" {
		t.Errorf("outcome 2: %+v", o)
	}

	// Every truncation of an encoding is an error, never a panic.
	for _, o := range outs {
		rec := appendOutcome(nil, 42, o)
		for n := range len(rec) - 1 {
			if _, _, start, _, err := decodeRecord(rec[:n], "fn", workerName{}); err == nil && !start {
				t.Fatalf("outcome truncated to %d bytes decoded without error", n)
			}
		}
		if _, _, _, _, err := decodeRecord(rec[:len(rec)-1], "fn", workerName{}); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("truncated outcome: %v", err)
		}
	}
	// Several records in one message decode one after the other.
	var all []byte
	for _, o := range outs {
		all = appendOutcome(all, 42, o)
	}
	for k := range outs {
		_, got, _, rest, err := decodeRecord(all, "fn", workerName{42, "pid 42"})
		if err != nil || got.Index != outs[k].Index {
			t.Fatalf("record %d of 3: %+v %v", k, got, err)
		}
		all = rest
	}
	if len(all) != 0 {
		t.Fatalf("%d bytes left after 3 records", len(all))
	}
	req := encodeRequest(header, task, false)
	for n := range len(req) - 1 {
		if _, _, _, _, err := decodeRequest(req[:n]); err == nil {
			t.Fatalf("request truncated to %d bytes decoded without error", n)
		}
	}
}
