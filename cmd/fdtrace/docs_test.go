package main

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite docs/reference and docs/man from the commands")

// The generated pages, under the repository.
const (
	referenceDir = "docs/reference"
	manDir       = "docs/man"
)

// manDate is the date in the man pages' footer: fixed, so that the pages
// change only when the commands do.
var manDate = time.Date(2026, time.December, 1, 0, 0, 0, 0, time.UTC)

// writeReference writes the markdown reference of root and its commands
// into dir/reference and their man pages (section 8) into dir/man.
func writeReference(root *cobra.Command, dir string) error {
	root.InitDefaultCompletionCmd() // as Execute adds it
	var noDate func(*cobra.Command)
	noDate = func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		for _, sub := range c.Commands() {
			noDate(sub)
		}
	}
	noDate(root)
	md, man := filepath.Join(dir, "reference"), filepath.Join(dir, "man")
	for _, d := range []string{md, man} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := writeMarkdown(root, md); err != nil {
		return fmt.Errorf("markdown reference: %w", err)
	}
	date := manDate
	if err := doc.GenManTree(root, &doc.GenManHeader{Section: "8", Date: &date,
		Source: "fdtrace", Manual: "fdtrace manual"}, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}

// writeMarkdown writes the reference page of c and of its commands into
// dir, as doc.GenMarkdownTree does, with the files the help names made
// links.
func writeMarkdown(c *cobra.Command, dir string) error {
	for _, sub := range c.Commands() {
		if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
			continue
		}
		if err := writeMarkdown(sub, dir); err != nil {
			return err
		}
	}
	var page bytes.Buffer
	page.WriteString("<!-- Generated from the commands' help by make docs: do not edit. -->\n\n")
	if err := doc.GenMarkdownCustom(c, &page, func(link string) string { return link }); err != nil {
		return err
	}
	name := strings.ReplaceAll(c.CommandPath(), " ", "_") + ".md"
	return os.WriteFile(filepath.Join(dir, name), linkFiles(page.Bytes()), 0o644)
}

// linkFiles makes the docs/ and deploy/ paths of a reference page's text
// links, relative to docs/reference; code blocks are left as they are.
func linkFiles(page []byte) []byte {
	lines := strings.SplitAfter(string(page), "\n")
	fenced := false
	for i, line := range lines {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || strings.HasPrefix(line, "    ") {
			continue
		}
		lines[i] = docsPath.ReplaceAllStringFunc(line, func(path string) string {
			target, ok := strings.CutPrefix(path, "docs/")
			if !ok {
				target = "../" + path
			}
			return "[" + path + "](../" + target + ")"
		})
	}
	return []byte(strings.Join(lines, ""))
}

// readDir maps the names of the files in dir to their contents.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func TestCommittedReferenceDocsMatchTheCommands(t *testing.T) {
	tmp := t.TempDir()
	if err := writeReference(newRootCommand(), tmp); err != nil {
		t.Fatal(err)
	}
	repo := testutil.RepoRoot(t)
	for _, dir := range []string{referenceDir, manDir} {
		want := readDir(t, filepath.Join(tmp, filepath.Base(dir)))
		committed := filepath.Join(repo, dir)
		got := readDir(t, committed)
		if *update {
			if err := os.MkdirAll(committed, 0o755); err != nil {
				t.Fatal(err)
			}
			for name := range got {
				if want[name] == nil {
					if err := os.Remove(filepath.Join(committed, name)); err != nil {
						t.Fatal(err)
					}
				}
			}
			for name, b := range want {
				if err := os.WriteFile(filepath.Join(committed, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			switch b, ok := got[name]; {
			case !ok:
				t.Errorf("%s/%s is missing", dir, name)
			case !bytes.Equal(b, want[name]):
				t.Errorf("%s/%s differs from what the commands give", dir, name)
			}
		}
		for name := range got {
			if want[name] == nil {
				t.Errorf("%s/%s is no command's", dir, name)
			}
		}
	}
	if t.Failed() {
		t.Fatal(testutil.StaleDocs)
	}
}

func TestReferenceDocsAreTheSameEveryTime(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := writeReference(newRootCommand(), a); err != nil {
		t.Fatal(err)
	}
	if err := writeReference(newRootCommand(), b); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"reference", "man"} {
		first, second := readDir(t, filepath.Join(a, sub)), readDir(t, filepath.Join(b, sub))
		if len(first) == 0 || len(first) != len(second) {
			t.Fatalf("%s: %d files, then %d", sub, len(first), len(second))
		}
		for name, content := range first {
			if !bytes.Equal(content, second[name]) {
				t.Errorf("%s/%s changed between two runs", sub, name)
			}
		}
	}
}

// helpWidth is the widest line of a command's help text: an 80-column
// terminal shows it without wrapping.
const helpWidth = 80

func TestHelpFitsAnEightyColumnTerminal(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for field, text := range map[string]string{"Long": c.Long, "Example": c.Example, "Short": c.Short} {
			for i, line := range strings.Split(text, "\n") {
				if n := utf8.RuneCountInString(line); n > helpWidth {
					t.Errorf("%s: line %d of %s is %d columns wide: %q", c.CommandPath(), i+1, field, n, line)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}

// docsPath is a page of docs/, or a file or directory of deploy/, as the
// help names it.
var docsPath = regexp.MustCompile(`docs/[A-Za-z0-9_.-]+\.md|deploy/[A-Za-z0-9_./-]+[A-Za-z0-9]`)

func TestHelpNamesOnlyFilesThatExist(t *testing.T) {
	repo := testutil.RepoRoot(t)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, path := range docsPath.FindAllString(c.Long+"\n"+c.Example, -1) {
			if _, err := os.Stat(filepath.Join(repo, path)); err != nil {
				t.Errorf("%s names %s: %v", c.CommandPath(), path, err)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}

// mdLink is a markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// anchors are the anchors GitHub gives a page's headings.
func anchors(page string) map[string]bool {
	a := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		heading := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var slug strings.Builder
		for _, r := range heading {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		a[slug.String()] = true
	}
	return a
}

func TestDocsLinkOnlyToFilesAndHeadingsThatExist(t *testing.T) {
	repo := testutil.RepoRoot(t)
	pages := []string{"README.md", "CONTRIBUTING.md"}
	for _, dir := range []string{"docs", referenceDir} {
		entries, err := os.ReadDir(filepath.Join(repo, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".md") {
				pages = append(pages, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, page := range pages {
		b, err := os.ReadFile(filepath.Join(repo, page))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := filepath.Join(repo, filepath.Dir(page), file)
			if file == "" {
				path = filepath.Join(repo, page)
			}
			linked, err := os.ReadFile(path)
			if err != nil {
				if info, serr := os.Stat(path); serr == nil && info.IsDir() && anchor == "" {
					continue
				}
				t.Errorf("%s links to %s: %v", page, target, err)
				continue
			}
			if anchor != "" && !anchors(string(linked))[anchor] {
				t.Errorf("%s links to %s: no such heading", page, target)
			}
		}
	}
}
