package batch_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Importing batch does not link the terminal libraries of the progress
// display, which lives in package progress.
func TestNoDisplayDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go list needs the go command: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/ferrypipe/ferry/batch").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, display := range []string{"github.com/vbauerster/mpb", "golang.org/x/term", "github.com/mattn/go-runewidth", "github.com/VividCortex/ewma"} {
			if strings.HasPrefix(dep, display) {
				t.Errorf("batch depends on %s", dep)
			}
		}
	}
}
