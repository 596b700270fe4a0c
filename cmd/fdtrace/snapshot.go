package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/fdtrace/fdtrace/internal/snapshot"
)

func newSnapshotCommand() *cobra.Command {
	var pids []int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "snapshot -p PID [-p PID]... [--json]",
		Short: "Show what a process holds now: fds by type, limit, sockets, accept queues",
		Long: `snapshot reads one process's fds from /proc, like lsof -p PID, and puts
on one screen what matters when fds run out:

  - its open fds by type (file, socket, pipe, epoll, eventfd, timerfd,
    signalfd, inotify, memfd, pidfd, other), sockets by family, protocol
    and state, files by kind (regular, directory, device, FIFO) and by
    directory;
  - its soft and hard RLIMIT_NOFILE and how much of it is used: "warning"
    from 70%, "critical" from 85%;
  - its listening sockets with their accept queue (connections waiting to
    be accepted) next to their backlog, and the ListenOverflows and
    ListenDrops counters of its network namespace, which count the
    connections refused because a queue was full;
  - its inbound connections per local port, and its outbound connections
    per remote endpoint (a database, a cache, an upstream).

The total and each type match ls /proc/PID/fd and lsof -p PID (the tests
compare them fd type by fd type). Sockets are split by family, protocol
and state from /proc/PID/net/tcp, tcp6, udp and the others, and unix
sockets from sock_diag, as a unix socket's name can forge rows of
/proc/PID/net/unix. Where sock_diag cannot list them (a kernel without
unix_diag), only the rows of the process's own fds are believed there;
the snapshot says which (unix_sockets_from).

In the listening table, QUEUE is the connections the kernel has
established that the process has not accepted yet, BACKLOG the most the
queue holds (what ss -lnt shows as Recv-Q and Send-Q). Once QUEUE is past
BACKLOG, the kernel drops new connections and counts them in
ListenOverflows and ListenDrops. The backlogs come from sock_diag; for a
process in another network namespace, fdtrace enters the namespace to ask,
which needs root. Without it, BACKLOG is "?".

A connection is inbound when its local port is one that a listener of the
network namespace has (whichever process holds the listener), and is
counted by that port. The other TCP connections are outbound, counted by
remote endpoint: "100 to :5432, 40 to :6379" shows a database pool and a
cache.

No BPF is needed: any process you may read works. Each -p gives one
snapshot; a missing pid, or one you may not read, gives a one-line error
and exit status 1, and the other pids are still shown. A sample is in
docs/examples.md; --json writes "type":"snapshot" records
(docs/records.md).`,
		Example: `  # where do pid 1234's fds go?
  fdtrace snapshot -p 1234

  # as JSON, for two processes
  fdtrace snapshot -p 1234 -p 5678 --json | jq .by_type`,
		Args: noPositionalArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSnapshot(cmd.OutOrStdout(), pids, asJSON)
		},
	}
	f := cmd.Flags()
	f.IntSliceVarP(&pids, "pid", "p", nil, "the process (repeatable, or comma-separated)")
	f.BoolVar(&asJSON, "json", false, `write one "type":"snapshot" JSON line per process`)
	f.SortFlags = false
	return cmd
}

// noPositionalArgs refuses positional arguments as bad input.
func noPositionalArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", args[0])}
	}
	return nil
}

func requirePIDs(pids []int) error {
	if len(pids) == 0 {
		return usageError{errors.New("which process? give -p PID")}
	}
	return checkPIDs(pids)
}

func runSnapshot(w io.Writer, pids []int, asJSON bool) error {
	if err := requirePIDs(pids); err != nil {
		return err
	}
	var errs []error
	first := true
	for _, pid := range pids {
		s, err := snapshot.Take(pid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if asJSON {
			b, err := json.Marshal(s.Snapshot)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
				return err
			}
			continue
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		if err := snapshot.WriteText(w, s.Snapshot); err != nil {
			return err
		}
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	for _, err := range errs {
		fmt.Fprintf(os.Stderr, "fdtrace: %v\n", err)
	}
	return exitError{1}
}
