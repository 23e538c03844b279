package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDemoCmd returns a placeholder for the demo command.
func newDemoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run a demo pipeline (not built yet)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("demo: not built yet")
		},
	}
}
