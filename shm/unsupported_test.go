//go:build !linux || ferrynolinux

package shm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/shm"
)

// Without Linux, every way to make or map shared memory fails at once
// with ErrUnsupported, which names what failed and the OS.
func TestUnsupportedPlatform(t *testing.T) {
	calls := map[string]func() error{
		"NewSegmentPool":  func() error { _, err := shm.NewSegmentPool(1<<16, 2); return err },
		"OpenSegmentPool": func() error { _, err := shm.OpenSegmentPool(3); return err },
		"Share":           func() error { _, err := shm.Share("weights", []byte("w")); return err },
		"OpenConstant":    func() error { _, err := shm.OpenConstant("weights", 3); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, shm.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v, want shm.ErrUnsupported", name, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "need Linux") {
			t.Errorf("%s: %q does not name the call and say it needs Linux", name, msg)
		}
	}
	if _, ok := shm.Lookup("weights"); ok {
		t.Error("a constant was registered")
	}
}
