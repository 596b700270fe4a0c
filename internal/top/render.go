package top

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fdtrace/fdtrace/internal/procfs"
	"github.com/fdtrace/fdtrace/internal/sanitize"
)

// Header is what the screen shows above the rows.
type Header struct {
	Time     time.Time
	Interval time.Duration
	Sort     SortKey
	Filter   string
	// Editing: the filter is being typed.
	Editing bool
	FileNr  procfs.FileNr
	// FileNrErr: file-nr could not be read.
	FileNrErr bool
	// Total and Matched processes (see Model).
	Total, Matched int
	// Rows shown are summed for the rates of the header line, over every
	// matched process.
	Sums Rates
	// Ports are the refused connections per listening port.
	Ports []PortCount
	// Target says what is watched ("all processes", "pid 42").
	Target string
}

// headerLines is how many lines come before the column titles.
const headerLines = 5

// Capacity is how many rows fit on a screen of height lines: less the
// header, the titles and the keys.
func Capacity(height int) int {
	return max(0, height-headerLines-2)
}

// rowFormat lays out a row; the titles use it too.
const rowFormat = "%7v %-15v %8v %8v %6v %-4v %8v %8v %8v %8v %8v %8v  %v"

var columns = fmt.Sprintf(rowFormat, "PID", "COMM", "OPEN", "LIMIT", "UTIL", "", "OPEN/s", "CLOSE/s", "GROW/s", "EMFILE/s", "ENFILE/s", "REFUSED", "TOP TYPE")

// Render draws the screen as lines of at most width columns, no more than
// height of them. color adds ANSI colors (the threshold marks, the titles).
func Render(h *Header, rows []Row, width, height int, color bool) []string {
	var lines []string
	add := func(s string) { lines = append(lines, clip(s, width)) }

	when := h.Time.Format("15:04:05")
	filter := ""
	if h.Filter != "" || h.Editing {
		filter = fmt.Sprintf(", filter %q", h.Filter) // quoted: no escapes reach the terminal
	}
	add(fmt.Sprintf("fdtrace top - %s - %s, every %v, sorted by %s%s", when, h.Target, h.Interval, h.Sort, filter))
	if h.FileNrErr {
		add("files: file-nr unreadable")
	} else {
		f := h.FileNr
		add(fmt.Sprintf("files: %d allocated of fs.file-max %d (%s)   ENFILE %.1f/s   EMFILE %.1f/s   refused %.1f/s",
			f.Allocated, f.Max, percent(float64(f.Allocated), float64(f.Max)), h.Sums.ENFILE, h.Sums.EMFILE, h.Sums.Refused))
	}
	add(fmt.Sprintf("processes: %d, %d match, %d shown   WARN >= %.0f%%, CRIT >= %.0f%% of the soft limit",
		h.Total, h.Matched, len(rows), Warning*100, Critical*100))
	add("refused connections by port: " + portList(h.Ports))
	add("")
	titles := clip(columns, width)
	if color {
		titles = "\x1b[7m" + titles + strings.Repeat(" ", max(0, width-utf8.RuneCountInString(titles))) + "\x1b[0m"
	}
	lines = append(lines, titles)
	room := max(0, height-len(lines)-1)
	for i := range rows {
		if i >= room {
			break
		}
		lines = append(lines, renderRow(&rows[i], width, color))
	}
	for len(lines) < height-1 {
		lines = append(lines, "")
	}
	if h.Editing {
		add("filter (Enter to keep, Esc to drop): " + sanitize.Text(h.Filter) + "_")
	} else {
		add("q quit   sort: u utilization  g growth  e errors  f fds  p pid   / filter by name   Esc clear filter")
	}
	if len(lines) > height {
		lines = lines[:height]
	}
	return lines
}

func renderRow(r *Row, width int, color bool) string {
	limit := "?"
	switch {
	case r.Limit == Unlimited:
		limit = "unlim"
	case r.Limit > 0:
		limit = strconv.FormatUint(r.Limit, 10)
	}
	util := "     -"
	if r.Limit > 0 && r.Limit != Unlimited {
		util = fmt.Sprintf("%5.1f%%", 100*r.Utilization)
	}
	rate := func(v float64, sign bool) string {
		if r.Rates == nil {
			return "       -"
		}
		if sign {
			return fmt.Sprintf("%+8.1f", v)
		}
		return fmt.Sprintf("%8.1f", v)
	}
	var rt Rates
	if r.Rates != nil {
		rt = *r.Rates
	}
	top := "-"
	if r.TopType != "" {
		top = fmt.Sprintf("%s %d", r.TopType, r.TopTypeFDs)
	}
	if r.Exited {
		top = "(exited)"
	}
	level := Level(r.Utilization)
	s := fmt.Sprintf(rowFormat,
		r.PID, clip(sanitize.Text(r.Comm), 15), r.OpenFDs, limit, util, level,
		rate(rt.Opened, false), rate(rt.Closed, false), rate(rt.Growth, true),
		rate(rt.EMFILE, false), rate(rt.ENFILE, false), r.Refused, top)
	s = clip(s, width)
	if color && level != "" {
		code := "33" // yellow
		if level == "CRIT" {
			code = "1;31" // bold red
		}
		s = "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	return s
}

// maxPorts is how many ports the header names.
const maxPorts = 8

func portList(ports []PortCount) string {
	if len(ports) == 0 {
		return "none"
	}
	var parts []string
	for i, p := range ports {
		if i == maxPorts {
			parts = append(parts, fmt.Sprintf("%d more", len(ports)-maxPorts))
			break
		}
		s := fmt.Sprintf("%d: %d", p.Port, p.Refused)
		if p.Dropped > 0 {
			s += fmt.Sprintf(" (%d more drained unserved)", p.Dropped)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func percent(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	p := 100 * a / b
	if p > 0 && p < 0.1 {
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", p)
}

// clip cuts s to n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(0, n)])
}
