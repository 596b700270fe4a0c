package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

//go:embed workload.c
var workloadSource []byte

// workComm is the workload's process name: unique on the host, so that the
// tracers' comm filters see only the benchmark.
const workComm = "fdbench-work"

// workBin is the workload's file, named otherwise: the process takes
// workComm in main, after the dynamic loader's opens.
const workBin = "fdbench"

// tool is an external program the suite compares against or relies on.
type tool struct {
	name    string // binary name, also the apt package
	path    string // "" when not installed
	version string
	note    string // why it is missing, for the report
}

func (t tool) ok() bool { return t.path != "" }

// machine describes where the numbers come from.
type machine struct {
	cpu, memory, kernel, date, goVersion, fdtraceVersion string
	cores                                                int
}

// repoRoot is the directory holding go.mod, found upwards from the
// working directory (`go run ./bench` runs in the repository).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found: run from the fdtrace repository (make bench)")
		}
		dir = parent
	}
}

// buildFdtrace builds the fdtrace of the working tree into dir.
func buildFdtrace(root, dir string) (string, error) {
	bin := filepath.Join(dir, "fdtrace")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fdtrace")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building fdtrace: %v\n%s", err, out)
	}
	return bin, nil
}

// buildBefore builds the fdtrace of a git revision into the bench's
// directory: the "before" of a change, measured in the same run.
func (b *bench) buildBefore(root, rev string) tool {
	t := tool{name: "fdtrace " + rev}
	if rev == "" {
		t.note = "not measured: no -before REVISION"
		return t
	}
	src := filepath.Join(b.tmp, "before")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.note = err.Error()
		return t
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, rev, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.note = fmt.Sprintf("not measured: git archive %s: %v: %s", rev, err, strings.TrimSpace(string(out)))
		return t
	}
	// Beside the source: b.tmp/fdtrace is this tree's.
	bin, err := buildFdtrace(src, src)
	if err != nil {
		t.note = "not measured: " + oneLine(err)
		return t
	}
	version, _ := exec.Command("git", "-C", root, "rev-parse", "--short", rev).Output()
	t.path, t.version = bin, "commit "+strings.TrimSpace(string(version))
	return t
}

// buildWorkload compiles the embedded workload as dir/fdbench, with
// frame pointers so that stack-walking tracers see whole stacks.
func buildWorkload(dir string) (string, error) {
	src := filepath.Join(dir, "workload.c")
	if err := os.WriteFile(src, workloadSource, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, workBin)
	if _, err := exec.LookPath("gcc"); err != nil {
		return "", errors.New("building the workload needs gcc and the C library headers (apt-get install gcc libc6-dev)")
	}
	args := []string{"-O2", "-g", "-fno-omit-frame-pointer", "-Wall", "-o", bin, src}
	if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// findTool looks name up in PATH. It never fails: a missing tool says so
// in note, and the rows that need it say "not measured".
func findTool(name string, versionArgs ...string) tool {
	t := tool{name: name}
	path, err := exec.LookPath(name)
	if err != nil {
		t.note = name + " not installed"
		return t
	}
	t.path = path
	out, _ := exec.Command(path, versionArgs...).CombinedOutput()
	// bpftool starts its version with its own path: no machine paths in the report.
	t.version = strings.Replace(firstLine(string(out)), path, name, 1)
	return t
}

func describeMachine(root string) machine {
	m := machine{
		cpu:       cpuModel(),
		cores:     runtime.NumCPU(),
		memory:    memTotal(),
		kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		date:      time.Now().UTC().Format("2006-01-02 15:04 MST"),
		goVersion: runtime.Version(),
	}
	m.fdtraceVersion = gitVersion(root)
	return m
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	kib := procStatusKiB(readFile("/proc/meminfo"), "MemTotal")
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}

// gitVersion is the commit of the working tree, marked when it has changes.
func gitVersion(root string) string {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	return "commit " + strings.TrimSpace(string(out))
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.TrimSpace(s[strings.LastIndex(s, "\n")+1:])
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
