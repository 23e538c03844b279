//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"strings"
	"testing"
)

// TestVersion: "ferry version" and "ferry --version" print one line that
// names ferry and its version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		root := newRootCmd()
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if got := out.String(); !strings.HasPrefix(got, "ferry ") || strings.Count(got, "\n") != 1 || !strings.Contains(got, "go1.") {
			t.Fatalf("%v printed %q", args, got)
		}
	}
}
