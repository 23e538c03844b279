package platform

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestErrUnsupportedNamesTheOS(t *testing.T) {
	err := unsupported("darwin", "arm64")
	for _, want := range []string{"need Linux", "darwin/arm64", "worker processes and shared memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("%v does not match errors.ErrUnsupported", err)
	}
	if !errors.Is(ErrUnsupported, errors.ErrUnsupported) || !strings.Contains(ErrUnsupported.Error(), runtime.GOOS) {
		t.Errorf("ErrUnsupported = %v: want this OS named and errors.ErrUnsupported matched", ErrUnsupported)
	}
}

func TestSupportedOnLinuxOnly(t *testing.T) {
	if Supported && runtime.GOOS != "linux" {
		t.Errorf("Supported on %s", runtime.GOOS)
	}
}
