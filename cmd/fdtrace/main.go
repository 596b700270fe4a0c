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
		Long: `fdtrace follows every syscall that creates or closes a file descriptor,
counts open fds per process in the kernel, and reports the syscalls that
fail with EMFILE/ENFILE and the connections refused because of them.

It needs root (CAP_BPF and CAP_PERFMON) and a kernel with BTF.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newTraceCommand(), newLeaksCommand(), newTopCommand(), newSnapshotCommand(), newBudgetCommand(), newServeCommand(), newCheckCommand())
	return root
}
