package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version describes this build: the module's version and, when the build
// recorded it, the VCS revision and whether the tree was modified.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "ferry (unknown version)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		return fmt.Sprintf("ferry %s (revision %s%s, %s)", v, rev, modified, info.GoVersion)
	}
	return fmt.Sprintf("ferry %s (%s)", v, info.GoVersion)
}

// newVersionCmd returns "ferry version".
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version and the revision it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version())
			return nil
		},
	}
}
