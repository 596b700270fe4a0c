package main

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

func TestRenderCheckFailsOnlyWhenARowFails(t *testing.T) {
	ok := loader.CheckResult{Name: "BTF", Status: loader.StatusOK, Detail: "/sys/kernel/btf/vmlinux"}
	warn := loader.CheckResult{Name: "stack trace map", Status: loader.StatusWarn}
	fail := loader.CheckResult{Name: "load", Status: loader.StatusFail, Detail: "verifier says no"}
	noStacks := loader.CheckResult{Name: loader.CapDWARFStack, Status: loader.StatusUnavailable, Detail: "needs bpf_loop"}
	noCounting := loader.CheckResult{Name: loader.CapCounting, Status: loader.StatusUnavailable, Detail: "verifier says no"}
	tests := []struct {
		name    string
		results []loader.CheckResult
		wantErr string
	}{
		{"all ok", []loader.CheckResult{ok}, ""},
		{"warnings do not fail", []loader.CheckResult{ok, warn}, ""},
		{"a capability that is unavailable does not fail", []loader.CheckResult{ok, noStacks}, ""},
		{"no counting fails", []loader.CheckResult{ok, noStacks, noCounting}, ": dwarf stacks, counting failed"},
		{"one failure", []loader.CheckResult{ok, warn, fail}, ": load failed"},
		{"two failures", []loader.CheckResult{fail, {Name: "BTF", Status: loader.StatusFail}}, ": load, BTF failed"},
	}
	for _, tt := range tests {
		for _, asJSON := range []bool{false, true} {
			var out bytes.Buffer
			err := renderCheck(&out, tt.results, asJSON)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("%s (json=%v): unexpected error %v", tt.name, asJSON, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%s (json=%v): error %v, want one containing %q", tt.name, asJSON, err, tt.wantErr)
			}
			lines := len(tt.results)
			if !asJSON {
				lines++ // the header
			}
			if n := strings.Count(out.String(), "\n"); n != lines {
				t.Errorf("%s (json=%v): %d lines, want one per row:\n%s", tt.name, asJSON, n, out.String())
			}
		}
	}
}

func TestRenderCheckJSONIsOneObjectPerRow(t *testing.T) {
	var out bytes.Buffer
	if err := renderCheck(&out, []loader.CheckResult{{Name: "load", Status: loader.StatusFail, Detail: "no"}}, true); err == nil {
		t.Error("a FAIL row must make check fail")
	}
	if want := `{"name":"load","status":"FAIL","detail":"no"}` + "\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestCheckSaysWhichWaysOfMakingFDsItSees(t *testing.T) {
	tp := func(name, status string) loader.CheckResult {
		return loader.CheckResult{Name: "tracepoint syscalls/" + name, Status: status}
	}
	tests := []struct {
		name    string
		results []loader.CheckResult
		want    map[string]string // "fds from" row -> status: detail prefix
	}{
		{"every tracepoint there", []loader.CheckResult{tp("sys_exit_recvmmsg", loader.StatusOK),
			tp("sys_exit_getsockopt", loader.StatusOK), tp("sys_exit_ioctl", loader.StatusOK),
			tp("sys_exit_bpf", loader.StatusOK), tp("sys_exit_read", loader.StatusOK)},
			map[string]string{
				"recvmmsg":   "ok: hooked: fds received with SCM_RIGHTS, pidfds with SCM_PIDFD",
				"getsockopt": "ok: hooked: SO_PEERPIDFD's pidfd",
				"ioctl":      "ok: hooked: TIOCGPTPEER's pseudo-terminal peer, the userfaultfd of /dev/userfaultfd",
				"bpf":        "ok: hooked: the fds of maps, programs, links, BTF... that bpf() returns",
				"read":       "ok: hooked: the fds of fanotify events and userfaultfd fork events; attached once a traced process makes",
			}},
		{"a tracepoint missing, another not in the programs", []loader.CheckResult{tp("sys_exit_recvmmsg", loader.StatusWarn),
			tp("sys_exit_getsockopt", loader.StatusOK), tp("sys_exit_bpf", loader.StatusOK), tp("sys_exit_read", loader.StatusOK)},
			map[string]string{
				"recvmmsg": "warn: not hooked: tracepoint syscalls/sys_exit_recvmmsg missing in this kernel: fds received with SCM_RIGHTS, pidfds with SCM_PIDFD: no record: ",
				"ioctl":    "warn: not hooked: the programs for this kernel have no syscalls/sys_exit_ioctl: TIOCGPTPEER's pseudo-terminal peer, the userfaultfd of /dev/userfaultfd: no record: ",
				"bpf":      "ok: hooked: ",
			}},
		{"no tracefs", []loader.CheckResult{{Name: "tracefs", Status: loader.StatusFail}},
			map[string]string{"read": "warn: unknown: the tracepoints could not be looked at (tracefs)"}},
	}
	unseen := map[string]string{
		"seccomp ADDFD": "the fd a seccomp supervisor installs with SECCOMP_IOCTL_NOTIF_ADDFD",
		"ia32 syscalls": "every fd of a 32-bit process: the syscall tracepoints do not fire for its syscalls",
	}
	for _, tt := range tests {
		uring := tt.name == "every tracepoint there"
		rows := withFDPaths(slices.Clone(tt.results), uring)
		if !slices.Equal(rows[:len(tt.results)], tt.results) {
			t.Errorf("%s: the rows of check changed", tt.name)
		}
		got := map[string]string{}
		var names []string
		for _, r := range rows[len(tt.results):] {
			name, ok := strings.CutPrefix(r.Name, "fds from ")
			if !ok {
				t.Errorf("%s: row %q", tt.name, r.Name)
			}
			names = append(names, name)
			got[name] = r.Status + ": " + r.Detail
		}
		if want := []string{"recvmmsg", "getsockopt", "ioctl", "bpf", "read", "io_uring", "seccomp ADDFD", "ia32 syscalls"}; !slices.Equal(names, want) {
			t.Errorf("%s: rows %q, want %q", tt.name, names, want)
		}
		for name, want := range tt.want {
			if !strings.HasPrefix(got[name], want) {
				t.Errorf("%s: fds from %s: %q, want it to begin %q", tt.name, name, got[name], want)
			}
		}
		for name, what := range unseen {
			want := "not seen: " + what + ": " + noRecord
			if got[name] != want {
				t.Errorf("%s: fds from %s: %q, want %q", tt.name, name, got[name], want)
			}
		}
		wantUring := "warn: not hooked: this kernel's io_uring tracepoints do not give the request (before 6.1): "
		if uring {
			wantUring = "ok: hooked: IORING_OP_OPENAT, OPENAT2, ACCEPT, SOCKET, FIXED_FD_INSTALL and CLOSE, at their completion"
		}
		if !strings.HasPrefix(got["io_uring"], wantUring) {
			t.Errorf("%s: fds from io_uring: %q, want it to begin %q", tt.name, got["io_uring"], wantUring)
		}
		// Not seen is no failure.
		if err := renderCheck(io.Discard, rows, false); err != nil && tt.name != "no tracefs" {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// On this kernel (every one fdtrace supports has these tracepoints, and
// this one's io_uring tracepoints give the request), the ways of making
// fds fdtrace hooks are hooked, and check says so after the
// rows it had, in both formats.
func TestCheckOnThisKernelSaysWhichWaysOfMakingFDsAreHooked(t *testing.T) {
	testutil.RequireRoot(t)
	var text, lines bytes.Buffer
	results := withFDPaths(loader.Check(), loader.ProbeFeatures().UringComplete)
	if err := renderCheck(&text, results, false); err != nil {
		t.Fatal(err)
	}
	if err := renderCheck(&lines, results, true); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
		var r loader.CheckResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(r.Name, "fds from ") {
			got = append(got, r.Name+" | "+r.Status)
		} else if len(got) > 0 {
			t.Errorf("row %q after the fds from rows", r.Name)
		}
	}
	want := []string{"fds from recvmmsg | ok", "fds from getsockopt | ok", "fds from ioctl | ok", "fds from bpf | ok",
		"fds from read | ok", "fds from io_uring | ok", "fds from seccomp ADDFD | not seen",
		"fds from ia32 syscalls | not seen"}
	if !slices.Equal(got, want) {
		t.Errorf("fds from rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, re := range []string{`(?m)^fds from recvmmsg +ok +hooked: fds received with SCM_RIGHTS, pidfds with SCM_PIDFD$`,
		`(?m)^fds from seccomp ADDFD +not seen +the fd a seccomp supervisor installs with SECCOMP_IOCTL_NOTIF_ADDFD: no record: .* leaks lists them apart$`} {
		if !regexp.MustCompile(re).MatchString(text.String()) {
			t.Errorf("the table has no line matching %s:\n%s", re, text.String())
		}
	}
}
