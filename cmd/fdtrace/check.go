package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/spf13/cobra"
)

func newCheckCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that this host can run fdtrace",
		Long: `check probes what fdtrace needs on this host (privileges, BTF, tracefs,
tracepoints, map types, helpers), loads the BPF programs, and says what to
do about each failing item. It mounts tracefs if it is not mounted. It exits
non-zero if tracing cannot work.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return renderCheck(cmd.OutOrStdout(), loader.Check(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per check")
	return cmd
}

// renderCheck prints the results as a table or JSON lines, and returns an
// error naming the failed checks, if any.
func renderCheck(w io.Writer, results []loader.CheckResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Status, r.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	var failed []string
	for _, r := range results {
		if r.Status == loader.StatusFail {
			failed = append(failed, r.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("tracing cannot work on this host: %s failed", strings.Join(failed, ", "))
	}
	return nil
}
