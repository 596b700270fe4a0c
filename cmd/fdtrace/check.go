package main

import (
	"github.com/spf13/cobra"
)

func newCheckCommand() *cobra.Command {
	return &cobra.Command{Use: "check", Short: "Check that this host can run fdtrace", RunE: func(*cobra.Command, []string) error { return nil }}
}
