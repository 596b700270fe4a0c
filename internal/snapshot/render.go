package snapshot

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/sanitize"
)

// WriteText writes the snapshot for a person, in sections.
func WriteText(w io.Writer, s events.Snapshot) error {
	tw := tabwriter.NewWriter(sanitize.Writer(w), 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "pid %d (%s): %d fds open, limit %s (hard %s), %.1f%% used: %s\n",
		s.PID, sanitize.Text(s.Comm), s.OpenFDs, limitText(s.FDLimit), limitText(s.FDLimitHard), 100*s.Utilization, s.Level)

	fmt.Fprintf(tw, "\n  TYPE\tFDS\tDETAIL\n")
	for _, t := range sortedKeys(s.ByType) {
		var detail []string
		if t == "file" {
			for _, k := range sortedKeys(s.FileKinds) {
				detail = append(detail, fmt.Sprintf("%s %d", k, s.FileKinds[k]))
			}
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", t, s.ByType[t], strings.Join(detail, ", "))
		if t == "socket" {
			writeSockets(tw, s.Sockets)
		}
	}
	switch s.UnixSocketsFrom {
	case procfs.UnixFromSockDiag:
		fmt.Fprintf(tw, "  unix sockets from sock_diag\n")
	case procfs.UnixFromProc:
		fmt.Fprintf(tw, "  unix sockets from /proc/%d/net/unix (sock_diag unavailable): rows checked against the process's fds\n", s.PID)
	}

	if len(s.Listening) > 0 {
		fmt.Fprintf(tw, "\n  LISTENING\tFD\tQUEUE\tBACKLOG\tACCEPTED\t\n")
		for _, l := range s.Listening {
			queue, max, note := "?", "?", ""
			if l.Queue != nil {
				queue = strconv.FormatUint(*l.Queue, 10)
			}
			if l.QueueMax != nil {
				max = strconv.FormatUint(*l.QueueMax, 10)
				if l.Queue != nil && *l.Queue > *l.QueueMax {
					note = "full: new connections are dropped"
				}
			}
			accepted := ""
			if l.Protocol != "unix" {
				accepted = strconv.Itoa(l.Accepted)
			}
			fmt.Fprintf(tw, "  %s %s\t%d\t%s\t%s\t%s\t%s\n", l.Protocol, sanitize.Text(l.Address), l.FD, queue, max, accepted, note)
		}
	}
	fmt.Fprintf(tw, "\n  ListenOverflows %d, ListenDrops %d (TcpExt, since its network namespace began)", s.ListenOverflows, s.ListenDrops)
	if s.ListenOverflows > 0 || s.ListenDrops > 0 {
		fmt.Fprintf(tw, ": connections have been refused")
	}
	fmt.Fprintln(tw)

	if len(s.Inbound) > 0 {
		fmt.Fprintf(tw, "\n  INBOUND TO PORT\tCONNECTIONS\n")
		for _, p := range s.Inbound {
			fmt.Fprintf(tw, "  :%d\t%d\n", p.Port, p.Count)
		}
	}
	if len(s.Outbound) > 0 {
		fmt.Fprintf(tw, "\n  OUTBOUND TO\tCONNECTIONS\n")
		for _, e := range s.Outbound {
			fmt.Fprintf(tw, "  %s\t%d\n", sanitize.Text(e.Endpoint), e.Count)
		}
	}
	if len(s.Directories) > 0 {
		fmt.Fprintf(tw, "\n  DIRECTORY\tFILES\n")
		for _, d := range s.Directories {
			fmt.Fprintf(tw, "  %s\t%d\n", sanitize.Text(d.Dir), d.Count)
		}
	}
	return tw.Flush()
}

// WriteBudgetText writes the budget for a person: the components, the
// total, the recommendation and the settings that apply it.
func WriteBudgetText(w io.Writer, b events.Budget) error {
	w = sanitize.Writer(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "fd budget of pid %d (%s), measured over %.1fs (%d samples, every %s)\n\n",
		b.PID, sanitize.Text(b.Comm), b.DurationS, b.Samples, strconv.FormatFloat(b.IntervalS*1000, 'f', -1, 64)+"ms")
	fmt.Fprintf(tw, "  COMPONENT\tBASELINE\tPEAK\t\n")
	for _, c := range b.Components {
		name, detail := c.Name, ""
		switch c.Name {
		case "inbound":
			name = "inbound connections"
			var ports []string
			for _, p := range slices.SortedFunc(maps.Keys(c.Ports), func(x, y int) int {
				return cmp.Or(cmp.Compare(c.Ports[y], c.Ports[x]), cmp.Compare(x, y))
			}) {
				ports = append(ports, fmt.Sprintf(":%d %d", p, c.Ports[p]))
			}
			if len(ports) > 1 {
				detail = "peaks by port: " + strings.Join(ports, ", ")
			}
		case "outbound":
			name = "outbound to " + sanitize.Text(c.Endpoint)
		case "other":
			name = "other fds"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", name, c.Baseline, c.Peak, detail)
	}
	fmt.Fprintf(tw, "  total\t%d\t%d\t(at most %d open at once)\n", b.Baseline, b.PeakTotal, b.PeakOpenFDs)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n  with a %sx margin: %d\n", strconv.FormatFloat(b.Margin, 'f', -1, 64), b.WithMargin)
	fmt.Fprintf(w, "  recommended limit: %d (a power of two, at least %d); now %s (hard %s)",
		b.RecommendedLimit, MinRecommendedLimit, limitText(b.CurrentLimit), limitText(b.CurrentLimitHard))
	switch {
	case b.CurrentLimit < uint64(b.PeakTotal):
		fmt.Fprintf(w, ": too low, the measured peaks do not fit\n")
	case b.CurrentLimit < uint64(b.WithMargin):
		fmt.Fprintf(w, ": too low for the margin\n")
	default:
		fmt.Fprintf(w, ": enough for what was measured\n")
	}
	fmt.Fprintf(w, "\n  systemd (unit [Service]):  %s\n", b.Settings["systemd"])
	fmt.Fprintf(w, "  docker run:                %s\n", b.Settings["docker"])
	fmt.Fprintf(w, "  docker-compose (service):  %s\n", strings.ReplaceAll(b.Settings["docker_compose"], "\n", "\n                             "))
	fmt.Fprintf(w, "  shell (before exec):       %s\n", b.Settings["shell"])
	return nil
}

// writeSockets writes a row per kind of socket ("tcp4", "unix stream"),
// with its states.
func writeSockets(w io.Writer, counts []events.SocketCount) {
	total, states := map[string]int{}, map[string][]string{}
	var kinds []string
	for _, c := range counts {
		var kind string
		switch c.Family {
		case "AF_INET":
			kind = c.Protocol + "4"
		case "AF_INET6":
			kind = c.Protocol + "6"
		default:
			kind = strings.TrimSpace(strings.ToLower(strings.TrimPrefix(c.Family, "AF_")) + " " + c.Protocol)
		}
		if _, ok := total[kind]; !ok {
			kinds = append(kinds, kind)
		}
		total[kind] += c.Count
		if c.State != "" {
			states[kind] = append(states[kind], fmt.Sprintf("%s %d", c.State, c.Count))
		}
	}
	slices.SortStableFunc(kinds, func(a, b string) int { return cmp.Compare(total[b], total[a]) })
	for _, k := range kinds {
		fmt.Fprintf(w, "    %s\t%d\t%s\n", k, total[k], strings.Join(states[k], ", "))
	}
}

func limitText(l uint64) string {
	if l == math.MaxUint64 {
		return "unlimited"
	}
	return strconv.FormatUint(l, 10)
}

// sortedKeys sorts by count, largest first, then by name.
func sortedKeys(m map[string]int) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
}
