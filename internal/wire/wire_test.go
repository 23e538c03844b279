package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFramesRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := NewWriter(a)
	big := bytes.Repeat([]byte("x"), 100<<20/10) // 10 MiB: a retained body
	frames := []struct {
		t    Type
		id   uint64
		body []byte
	}{
		{Init, 0, []byte(`{"version":2}`)},
		{Data, 7, []byte("small")},
		{Data, 7, big},
		{Credit, 1 << 40, U32(64)},
		{Cancel, 3, nil},
		{Data, 8, bytes.Repeat([]byte("m"), 5000)},
	}
	go func() {
		for _, f := range frames {
			if err := w.Send(f.t, f.id, f.body); err != nil {
				t.Error(err)
			}
		}
	}()
	r := NewReader(b)
	for i, f := range frames {
		typ, id, body, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if typ != f.t || id != f.id || !bytes.Equal(body, f.body) {
			t.Fatalf("frame %d: got %v %d (%d bytes), want %v %d (%d bytes)", i, typ, id, len(body), f.t, f.id, len(f.body))
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(Cancel, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
}

func TestReaderRejectsBadFrames(t *testing.T) {
	short := binary.LittleEndian.AppendUint32(nil, 3)
	short = append(short, make([]byte, 9)...)
	huge := binary.LittleEndian.AppendUint32(nil, MaxBody+100)
	huge = append(huge, make([]byte, 9)...)
	truncated := binary.LittleEndian.AppendUint32(nil, 9+100)
	truncated = append(truncated, make([]byte, 9+50)...)
	for name, in := range map[string][]byte{"short": short, "huge": huge, "truncated": truncated} {
		_, _, _, err := NewReader(bytes.NewReader(in)).Next()
		if err == nil || err == io.EOF {
			t.Errorf("%s: err = %v, want a framing error", name, err)
		}
	}
	if _, _, _, err := NewReader(bytes.NewReader(nil)).Next(); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

func TestWriterReportsAWriteError(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	w := NewWriter(a)
	_ = w.Send(Data, 1, []byte("x"))
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write returned nil")
	}
	a.Close()
}

// FuzzReader feeds arbitrary bytes to the frame decoder: it must return
// frames or an error, never panic, and never hand out more than it read.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.Send(Data, 42, []byte("hello"))
	_ = w.Send(Open, 1, AppendHead(nil, Head{Op: OpCall, Target: 1, Credits: 64}))
	_ = w.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add(binary.LittleEndian.AppendUint32(nil, 1<<31))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		total := 0
		for {
			_, _, body, err := r.Next()
			if err != nil {
				return
			}
			total += HeaderSize + len(body)
			if total > len(in) {
				t.Fatalf("decoded %d bytes out of %d", total, len(in))
			}
		}
	})
}

func TestHeadRoundTrip(t *testing.T) {
	for _, h := range []Head{{}, {Op: OpAttach, Target: 1 << 40, Deadline: -5, Credits: 1<<32 - 1}, {Op: OpCall, Target: 3, Deadline: 1 << 62},
		{Op: OpCall, Target: 1, Meta: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "": "", "user": "ann"}}} {
		b := append(AppendHead(nil, h), "payload"...)
		got, rest, err := ParseHead(b)
		if err != nil || got.Op != h.Op || got.Target != h.Target || got.Deadline != h.Deadline || got.Credits != h.Credits ||
			!maps.Equal(got.Meta, h.Meta) || string(rest) != "payload" {
			t.Fatalf("%+v: got %+v %q %v", h, got, rest, err)
		}
	}
	for _, b := range [][]byte{nil, {0}, {0, 0x80}, {0, 1, 0x80}, {0, 1, 2, 0xff, 0xff, 0xff, 0xff, 0x1f},
		{0, 1, 2, 3},                // no metadata count
		{0, 1, 2, 3, 1, 1, 'k'},     // a key without its value
		{0, 1, 2, 3, 1, 5, 'k'},     // a key longer than what is left
		{0, 1, 2, 3, 0xff, 0xff, 3}, // too many entries
	} {
		if _, _, err := ParseHead(b); err == nil {
			t.Fatalf("%x: no error", b)
		}
	}
}
