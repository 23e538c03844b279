//go:build !linux || ferrynolinux

package wire

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/ferrypipe/ferry/internal/platform"
)

// Without Linux, descriptors are not passed and frames go through the
// writing goroutine, SendNow's included.
func TestSendFDUnsupported(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	defer w.Close()
	if err := w.SendFD(Request, 1, nil, 0); !errors.Is(err, platform.ErrUnsupported) {
		t.Errorf("SendFD: %v, want platform.ErrUnsupported", err)
	}
}

func TestSendNowWithoutRawConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := NewWriter(a)
	defer w.Close()
	done := make(chan error, 1)
	go func() { done <- w.SendNow(Credit, 7, []byte{1, 0, 0, 0}) }()
	r := NewReader(b)
	typ, id, body, err := r.Next()
	if err != nil || typ != Credit || id != 7 || !bytes.Equal(body, []byte{1, 0, 0, 0}) {
		t.Fatalf("Next = %v, %d, %v, %v; want Credit, 7, [1 0 0 0]", typ, id, body, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
