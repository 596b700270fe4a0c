package metrics

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/loader"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the table of docs/metrics.md")

// metricsTable is the table of docs/metrics.md.
func metricsTable() string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n")
	for _, m := range Metrics() {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type,
			strings.Join(m.Labels, ", "), strings.ReplaceAll(m.Help, "|", `\|`))
	}
	return b.String()
}

func TestCommittedMetricsDocsListTheMetrics(t *testing.T) {
	const path = "docs/metrics.md"
	page, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	want, err := testutil.ReplaceGenerated(page, metricsTable())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	testutil.CheckDoc(t, path, want, *update)
}

func TestEveryListedMetricIsServedWithItsTypeAndLabels(t *testing.T) {
	src := &fakeSource{
		procs: []loader.Counters{proc(10, "busy", 900), proc(11, "quiet", 5)},
		totals: loader.Totals{EMFILE: 3, Refused: 2, Errors: []loader.ErrorCount{errCount("openat", "EMFILE", 3)},
			Ports: []loader.PortCounts{{Port: 8080, Refused: 2, Dropped: 1}}},
		stats: events.Stats{LostEvents: 1},
	}
	sys := newSystem()
	sys.limits = map[int]uint64{10: 1024, 11: 1024}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src, Options{Top: 1, System: sys}))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]*dto.MetricFamily{}
	for _, mf := range families {
		served[mf.GetName()] = mf
	}
	types := map[string]dto.MetricType{gaugeType: dto.MetricType_GAUGE, counterType: dto.MetricType_COUNTER}
	for _, m := range Metrics() {
		mf := served[m.Name]
		if mf == nil {
			t.Errorf("%s is listed but not served", m.Name)
			continue
		}
		if mf.GetType() != types[m.Type] {
			t.Errorf("%s is listed as a %s but served as a %v", m.Name, m.Type, mf.GetType())
		}
		var labels []string
		for _, l := range mf.Metric[0].Label {
			labels = append(labels, l.GetName())
		}
		if got, want := strings.Join(labels, ","), strings.Join(slices.Sorted(slices.Values(m.Labels)), ","); got != want {
			t.Errorf("%s is listed with labels %q but served with %q", m.Name, want, got)
		}
		delete(served, m.Name)
	}
	for name := range served {
		t.Errorf("%s is served but not listed", name)
	}
}
