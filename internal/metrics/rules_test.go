package metrics

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

// requirePromtool finds promtool (Debian's prometheus package): on CI it
// must be there.
func requirePromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but promtool is missing: install the prometheus package")
	}
	t.Skip("promtool not found (apt-get install prometheus): the alert rules are not checked")
	return ""
}

func rulesDir(t *testing.T) string {
	return filepath.Join(testutil.RepoRoot(t), "deploy", "prometheus")
}

func TestPromtoolAcceptsTheAlertRules(t *testing.T) {
	promtool := requirePromtool(t)
	cmd := exec.Command(promtool, "check", "rules", "fdtrace-alerts.yml")
	cmd.Dir = rulesDir(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestTheAlertRulesPassTheirPromtoolUnitTests(t *testing.T) {
	promtool := requirePromtool(t)
	cmd := exec.Command(promtool, "test", "rules", "fdtrace-alerts.test.yml")
	cmd.Dir = rulesDir(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

func TestTheAlertRulesUseOnlyMetricsFdtraceExports(t *testing.T) {
	exported := map[string]bool{}
	for _, d := range allDescs {
		exported[regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]] = true
	}
	b, err := os.ReadFile(filepath.Join(rulesDir(t), "fdtrace-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		used = append(used, regexp.MustCompile(`\bfdtrace_[a-z_]+`).FindAllString(line, -1)...)
	}
	if len(used) == 0 {
		t.Fatal("no fdtrace metric in the rules")
	}
	for _, name := range used {
		if !exported[name] {
			t.Errorf("the rules use %s, which fdtrace does not export", name)
		}
	}
}
