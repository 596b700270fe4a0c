// Command fdtrace traces file descriptor creation, exhaustion and leaks.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// exitError carries an exit status without an error message: a traced
// command's own status.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError marks bad input: exit status 2.
type usageError struct{ error }

// closeInto calls close and keeps its error in *err unless *err holds one
// already: a deferred Close whose error is not lost.
func closeInto(err *error, close func() error) {
	if cerr := close(); *err == nil {
		*err = cerr
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "fdtrace: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(os.Stderr, "Run 'fdtrace --help' for usage.")
		return 2
	}
	return 1
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fdtrace",
		Short: "Trace file descriptor creation, exhaustion (EMFILE/ENFILE) and leaks",
		Long: `fdtrace traces file descriptor exhaustion on Linux. It follows every
syscall that creates or closes an fd, counts each process's open fds in
the kernel, and reports the accept4, socket and openat calls that fail
with EMFILE/ENFILE, along with the connections refused because of them (by
listening port) and the clients dropped when a runtime drains its listen
queue. fdtrace leaks shows which call sites hold the fds that are still
open.

It needs root (or CAP_BPF and CAP_PERFMON) and Linux 5.10 or later on
x86-64, with BTF; fdtrace check says what works on this host.

More in docs/: how the counting works (docs/design.md), how stacks are
taken (docs/stacks.md), every field of the records (docs/records.md), the
metrics (docs/metrics.md), deployment (docs/deployment.md), the known
limitations (docs/limitations.md) and samples of every command's output
(docs/examples.md).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newTraceCommand(), newLeaksCommand(), newTopCommand(), newSnapshotCommand(), newBudgetCommand(), newServeCommand(), newCheckCommand())
	return root
}
