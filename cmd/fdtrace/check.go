package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fdtrace/fdtrace/internal/loader"
)

func newCheckCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that this host can run fdtrace",
		Long: `check probes what fdtrace needs on this host (privileges, BTF, tracefs,
each tracepoint, map types, helpers, kfuncs), then loads the BPF programs
as each command would and reports what fdtrace can do here:

    counting, errors, refusals   fdtrace top, serve, trace --errors-only
    per-fd records               fdtrace trace
    fp stacks, dwarf stacks      fdtrace leaks, trace --stacks
    JIT names                    JavaScript frames in those stacks

each ok, degraded (works, with the limits given) or unavailable (with the
reason and the kernel that has what is missing). The kernel features
behind them, and the distributions that have them, are in the README's
requirements; docs/design.md has what the programs do without them. It
mounts tracefs if it is not mounted. --json writes one JSON object per
row. It exits non-zero only when nothing can be traced.`,
		Example: `  # what works on this host
  fdtrace check

  # only what is not ok
  fdtrace check --json | jq -c 'select(.status != "ok")'`,
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
	if loader.CanTrace(results) {
		return nil
	}
	var failed []string
	for _, r := range results {
		if r.Status == loader.StatusFail || r.Status == loader.StatusUnavailable {
			failed = append(failed, r.Name)
		}
	}
	return fmt.Errorf("tracing cannot work on this host: %s failed", strings.Join(failed, ", "))
}
