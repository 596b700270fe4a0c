package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/loader"
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
