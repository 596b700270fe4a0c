package schemadoc

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fdtrace/fdtrace/internal/events"
	"github.com/fdtrace/fdtrace/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the tables of docs/records.md")

func TestCommittedRecordsDocsMatchTheSchema(t *testing.T) {
	const path = "docs/records.md"
	tables, err := Markdown(events.Schema)
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), path))
	if err != nil {
		t.Fatal(err)
	}
	want, err := testutil.ReplaceGenerated(page, tables)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	testutil.CheckDoc(t, path, want, *update)
}

func TestEveryRecordTypeAndFieldHasARow(t *testing.T) {
	md, err := Markdown(events.Schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n## open\n", "\n## budget\n", "\n## frame\n", "\n## memory\n", "\n## fd_type\n",
		"| `cloexec` | boolean | yes |",
		"| `path` | string | no |",
		"| `time` | string (date-time) | yes |",
		"| `fd_type` | string ([fd_type](#fd_type)) | yes |",
		"| `stack` | array of [frame](#frame) | no |",
		"| `rates.growth` | number | yes |",
		"| `listening[].queue_max` | integer | no |",
		"| `level` | `ok`, `warning` or `critical` | yes |",
		"| `refused_by_port` | object: string → integer | no |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the tables have no %q", want)
		}
	}
}

func TestASchemaWithoutRecordTypesIsRefused(t *testing.T) {
	for _, schema := range []string{`{}`, `{"oneOf":[{"$ref":"#/$defs/missing"}]}`, `not json`} {
		if _, err := Markdown([]byte(schema)); err == nil {
			t.Errorf("%s: no error", schema)
		}
	}
}
