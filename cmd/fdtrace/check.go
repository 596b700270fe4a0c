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
requirements; docs/design.md has what the programs do without them.

Last, the "fds from" rows say which ways of making fds besides the
creating syscalls fdtrace sees: recvmmsg, getsockopt, ioctl, bpf, read and
io_uring are hooked (ok), or not where this kernel lacks the tracepoint
(warn; io_uring before 6.1); seccomp's ADDFD and 32-bit processes are
not seen. Such fds have no record and are not counted (counting only, a
recount corrects the count when one is closed), and leaks lists them
apart (docs/limitations.md).

check mounts tracefs if it is not mounted. --json writes one JSON object
per row. It exits non-zero only when nothing can be traced.`,
		Example: `  # what works on this host
  fdtrace check

  # only what is not ok
  fdtrace check --json | jq -c 'select(.status != "ok")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return renderCheck(cmd.OutOrStdout(), withFDPaths(loader.Check(), loader.ProbeFeatures().UringComplete), asJSON)
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

// statusNotSeen is the status of a way of making fds that fdtrace never
// sees.
const statusNotSeen = "not seen"

// noRecord is what becomes of the fds fdtrace does not see made.
const noRecord = "no record: not in the process's count until its next exec (top and serve, " +
	"which keep no records, recount when one is closed: docs/limitations.md); leaks lists them apart"

// hookedFDPaths are the ways of making fds, besides the creating syscalls,
// that fdtrace hooks: each by the tracepoint of a syscall's exit.
var hookedFDPaths = []struct{ name, tracepoint, what string }{
	{"recvmmsg", "syscalls/sys_exit_recvmmsg", "fds received with SCM_RIGHTS, pidfds with SCM_PIDFD"},
	{"getsockopt", "syscalls/sys_exit_getsockopt", "SO_PEERPIDFD's pidfd"},
	{"ioctl", "syscalls/sys_exit_ioctl", "TIOCGPTPEER's pseudo-terminal peer, the userfaultfd of /dev/userfaultfd"},
	{"bpf", "syscalls/sys_exit_bpf", "the fds of maps, programs, links, BTF... that bpf() returns"},
	{"read", "syscalls/sys_exit_read", "the fds of fanotify events and userfaultfd fork events; " +
		"attached once a traced process makes a fanotify group or a userfaultfd"},
}

// uringFDPath is io_uring's requests that make and close fds, hooked at
// their completion where the kernel's tracepoints give the request (6.1).
const uringFDPath = "IORING_OP_OPENAT, OPENAT2, ACCEPT, SOCKET, FIXED_FD_INSTALL and CLOSE"

// unseenFDPaths are the ways of making fds that fdtrace does not hook.
var unseenFDPaths = []struct{ name, what string }{
	{"seccomp ADDFD", "the fd a seccomp supervisor installs with SECCOMP_IOCTL_NOTIF_ADDFD"},
	{"ia32 syscalls", "every fd of a 32-bit process: the syscall tracepoints do not fire for its syscalls"},
}

// withFDPaths adds to check's results a row per way of making fds besides
// the creating syscalls: hooked (ok) when its tracepoint's row is ok, not
// (warn) when that is missing in this kernel, io_uring's (hooked where
// uring), and the ways never seen.
func withFDPaths(results []loader.CheckResult, uring bool) []loader.CheckResult {
	tracepoints := map[string]string{} // name -> status
	for _, r := range results {
		if tp, ok := strings.CutPrefix(r.Name, "tracepoint "); ok {
			tracepoints[tp] = r.Status
		}
	}
	for _, p := range hookedFDPaths {
		r := loader.CheckResult{Name: "fds from " + p.name, Status: loader.StatusWarn}
		switch st, ok := tracepoints[p.tracepoint]; {
		case ok && st == loader.StatusOK:
			r.Status, r.Detail = loader.StatusOK, "hooked: "+p.what
		case ok:
			r.Detail = fmt.Sprintf("not hooked: tracepoint %s missing in this kernel: %s: %s", p.tracepoint, p.what, noRecord)
		case len(tracepoints) == 0:
			r.Detail = "unknown: the tracepoints could not be looked at (tracefs)"
		default:
			r.Detail = fmt.Sprintf("not hooked: the programs for this kernel have no %s: %s: %s", p.tracepoint, p.what, noRecord)
		}
		results = append(results, r)
	}
	r := loader.CheckResult{Name: "fds from io_uring", Status: loader.StatusOK,
		Detail: "hooked: " + uringFDPath + ", at their completion, with the submitter's stack"}
	if !uring {
		r.Status, r.Detail = loader.StatusWarn, "not hooked: this kernel's io_uring tracepoints do not give the request "+
			"(before 6.1): "+uringFDPath+": "+noRecord
	}
	results = append(results, r)
	for _, p := range unseenFDPaths {
		results = append(results, loader.CheckResult{Name: "fds from " + p.name, Status: statusNotSeen,
			Detail: p.what + ": " + noRecord})
	}
	return results
}
