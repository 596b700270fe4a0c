// Package deploy holds no Go code: these tests check the systemd unit, the
// logrotate snippet, the container recipe and the Kubernetes manifest
// against the fdtrace binary and the tools that can read them offline.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fdtrace/fdtrace/internal/testutil"
)

var fdtraceBin string

func TestMain(m *testing.M) { testutil.MainWithFdtrace(m, &fdtraceBin) }

// requireTool skips when a tool is missing, except on CI, which installs it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is missing (.ci/run installs it)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// requireFdtraceAccepts fails unless fdtrace parses args: each flag exists
// and each value has the right form. --help stops it before it runs.
func requireFdtraceAccepts(t *testing.T, what string, args []string) {
	t.Helper()
	cmd := exec.Command(fdtraceBin, append(slices.Clone(args), "--help")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || stdout.Len() == 0 || stderr.Len() != 0 {
		t.Errorf("%s: fdtrace %s: %v\n%s", what, strings.Join(args, " "), err, stderr.String())
	}
}

// unit is a systemd unit file: each key's values in order, by section.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case strings.HasSuffix(line, `\`):
			t.Fatalf("line %d: continuation lines are not parsed here", i+1)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: not a key=value in a section: %q", i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// one is the single value of section's key.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Fatalf("[%s] %s: want one value, have %q", section, key, vs)
	}
	return vs[0]
}

func (u unit) execStart(t *testing.T) []string {
	t.Helper()
	v := u.one(t, "Service", "ExecStart")
	if strings.ContainsAny(v, `"'\$`) {
		t.Fatalf("ExecStart needs a real parser: %s", v)
	}
	return strings.Fields(v)
}

// flagValue is the value given to a long flag in args, or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

const unitPath = "systemd/fdtrace.service"

func TestSystemdAnalyzeVerifiesTheUnit(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	text := readFile(t, unitPath)
	exe := parseUnit(t, text).execStart(t)[0]
	// verify wants ExecStart's program to exist.
	path := filepath.Join(t.TempDir(), "fdtrace.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, exe+" ", fdtraceBin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// verify exits 0 after ignoring a bad setting, but names the file.
	if err != nil || bytes.Contains(out, []byte("fdtrace.service")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestTheUnitRunsFdtraceWithFlagsItHas(t *testing.T) {
	u := parseUnit(t, readFile(t, unitPath))
	args := u.execStart(t)
	if filepath.Base(args[0]) != "fdtrace" {
		t.Fatalf("ExecStart runs %s, not fdtrace", args[0])
	}
	requireFdtraceAccepts(t, "ExecStart", args[1:])

	out := flagValue(args, "-o")
	if logs := u.one(t, "Service", "LogsDirectory"); filepath.Dir(out) != "/var/log/"+logs {
		t.Errorf("fdtrace writes %s, but the writable directory is /var/log/%s", out, logs)
	}
	if r := u.one(t, "Service", "ExecReload"); !strings.Contains(r, "-HUP $MAINPID") {
		t.Errorf("ExecReload %q does not send SIGHUP to fdtrace", r)
	}
	// A runaway fdtrace is stopped (and restarted) before it starves the
	// host it watches.
	for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"Restart": "on-failure", "MemoryMax": "512M"} {
		if got := u.one(t, "Service", k); got != want {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
}

// asUnit runs fdtrace with args as the unit would: root with only the
// unit's capabilities, no new privileges, and its fd limit.
func asUnit(t *testing.T, u unit, args ...string) *exec.Cmd {
	t.Helper()
	testutil.RequireRoot(t)
	requireTool(t, "setpriv")
	requireTool(t, "prlimit")
	bounding := strings.Fields(u.one(t, "Service", "CapabilityBoundingSet"))
	if ambient := strings.Fields(u.one(t, "Service", "AmbientCapabilities")); !slices.Equal(ambient, bounding) {
		t.Errorf("AmbientCapabilities %q differ from CapabilityBoundingSet %q", ambient, bounding)
	}
	nofile, err := strconv.ParseUint(u.one(t, "Service", "LimitNOFILE"), 10, 64)
	if err != nil || nofile < 4096 {
		t.Fatalf("LimitNOFILE=%d (%v): below 4096 fdtrace raises its own limit, which takes CAP_SYS_RESOURCE", nofile, err)
	}
	// Raising the hard limit to the unit's may be refused here.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	nofile = min(nofile, lim.Max)
	if nofile < 4096 {
		t.Skipf("the hard fd limit here is %d, below the 4096 that spares fdtrace from raising it", lim.Max)
	}
	// systemd mounts tracefs before the unit starts (its After= and
	// Wants= name sys-kernel-tracing.mount): the unit itself may not.
	if !strings.Contains(u.one(t, "Unit", "After"), "sys-kernel-tracing.mount") {
		t.Error("the unit does not start after sys-kernel-tracing.mount")
	}
	if _, err := os.Stat("/sys/kernel/tracing/events"); err != nil {
		if out, err := exec.Command("mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing").CombinedOutput(); err != nil {
			t.Fatalf("mounting tracefs as systemd would: %v: %s", err, out)
		}
	}
	caps := "-all"
	for _, c := range bounding {
		caps += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	wrap := []string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--",
		"setpriv", "--bounding-set=" + caps, "--inh-caps=" + caps, "--ambient-caps=" + caps, "--no-new-privs", fdtraceBin}
	return exec.Command("prlimit", append(wrap, args...)...)
}

// The unit gives fdtrace no CAP_SYS_ADMIN, which would let it do
// anything. What it keeps must be enough to load the programs and read
// another user's fds, which the seeding of the fd counts does.
func TestTheUnitsCapabilitiesAreEnoughToTraceAnotherUsersProcess(t *testing.T) {
	u := parseUnit(t, readFile(t, unitPath))
	if slices.Contains(strings.Fields(u.one(t, "Service", "CapabilityBoundingSet")), "CAP_SYS_ADMIN") {
		t.Errorf("the unit keeps CAP_SYS_ADMIN")
	}
	sleep := exec.Command("sleep", "60")
	sleep.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out := filepath.Join(t.TempDir(), "trace.jsonl")
	cmd := asUnit(t, u, "trace", "-p", "PID", "-d", "1s", "-o", out)
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	cmd.Args[slices.Index(cmd.Args, "PID")] = strconv.Itoa(sleep.Process.Pid)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fdtrace with the unit's capabilities: %v\n%s", err, b)
	}
	// Read once sleep has settled: it opens and closes files as it starts.
	fds := testutil.ProcFDs(t, sleep.Process.Pid)
	var stats struct {
		Type      string `json:"type"`
		SeededFDs *int   `json:"seeded_fds"`
	}
	for line := range strings.Lines(readFile(t, out)) {
		if err := json.Unmarshal([]byte(line), &stats); err != nil {
			t.Fatal(err)
		}
	}
	if stats.Type != "stats" || stats.SeededFDs == nil {
		t.Fatalf("the last record is not stats with seeded_fds: %+v", stats)
	}
	if *stats.SeededFDs != len(fds) {
		t.Errorf("with the unit's capabilities, fdtrace read %d of the %d fds of a process of another user, want all", *stats.SeededFDs, len(fds))
	}
}

// logrotateIn rewrites the logrotate snippet to rotate fdtrace's output in
// dir and to run postrotate instead of systemctl. It returns the config
// file and the log's path in dir.
func logrotateIn(t *testing.T, u unit, dir, postrotate string) (conf, log string) {
	t.Helper()
	text := readFile(t, "systemd/fdtrace.logrotate")
	out := flagValue(u.execStart(t), "-o")
	glob := strings.Fields(lineWith(t, text, "{"))[0]
	if ok, _ := filepath.Match(glob, out); !ok {
		t.Errorf("logrotate rotates %s, which is not fdtrace's output %s", glob, out)
	}
	hup := lineWith(t, text, "systemctl kill -s HUP")
	if !strings.Contains(hup, " fdtrace.service") {
		t.Errorf("postrotate %q does not signal fdtrace.service", hup)
	}
	text = strings.ReplaceAll(text, filepath.Dir(out), dir)
	text = strings.Replace(text, hup, postrotate, 1)
	conf = filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf, filepath.Join(dir, filepath.Base(out))
}

func logrotate(t *testing.T, conf string) {
	t.Helper()
	cmd := exec.Command(requireTool(t, "logrotate"), "-f", "-s", filepath.Join(filepath.Dir(conf), "state"), conf)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logrotate: %v\n%s", err, b)
	}
}

func TestLogrotateRotatesTheLogAndSignalsTheService(t *testing.T) {
	requireTool(t, "logrotate")
	dir := t.TempDir()
	conf, log := logrotateIn(t, parseUnit(t, readFile(t, unitPath)), dir, "touch "+filepath.Join(dir, "signalled"))
	if err := os.WriteFile(log, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logrotate(t, conf)
	if got := readFile(t, log+".1"); got != "{}\n" {
		t.Errorf("rotated log holds %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "signalled")); err != nil {
		t.Errorf("postrotate did not run: %v", err)
	}
}

// The unit's own command, in its sandbox, keeps writing after logrotate
// moved its output away and signalled it.
func TestTheUnitsCommandWritesToANewFileAfterLogrotate(t *testing.T) {
	requireTool(t, "logrotate")
	u := parseUnit(t, readFile(t, unitPath))
	dir := t.TempDir()
	conf, log := logrotateIn(t, u, dir, "kill -HUP $(cat "+filepath.Join(dir, "pid")+")")
	args := u.execStart(t)[1:]
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "-o":
			args[i] = log
		case i > 0 && args[i-1] == "--metrics-addr":
			args[i] = "127.0.0.1:0"
		case strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--metrics-addr="):
			t.Fatalf("write %s as two arguments", a)
		}
	}
	cmd := asUnit(t, u, append(args, "--ready-file", filepath.Join(dir, "pid"))...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var pid int
	waitFor(t, "fdtrace to start", exited, &stderr, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "pid"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	// SIGUSR1 writes a stats record.
	hasStats := func(path string) func() bool {
		return func() bool {
			syscall.Kill(pid, syscall.SIGUSR1)
			b, _ := os.ReadFile(path)
			return bytes.Contains(b, []byte(`"type":"stats"`))
		}
	}
	waitFor(t, "stats in "+log, exited, &stderr, hasStats(log))
	logrotate(t, conf)
	waitFor(t, "stats in the new "+log, exited, &stderr, hasStats(log))
	if b := readFile(t, log+".1"); !strings.Contains(b, `"type":"stats"`) {
		t.Errorf("the rotated log has no stats record:\n%s", b)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("fdtrace exited with %v\n%s", err, stderr.String())
	}
	exited <- nil
}

// waitFor polls cond for up to 30s, failing if fdtrace exits first.
func waitFor(t *testing.T, what string, exited chan error, stderr *bytes.Buffer, cond func() bool) {
	t.Helper()
	for range 150 {
		if cond() {
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("fdtrace exited (%v) while waiting for %s:\n%s", err, what, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// lineWith is the first line of text that contains s, trimmed.
func lineWith(t *testing.T, text, s string) string {
	t.Helper()
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("no line with %q", s)
	return ""
}

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		// A NetworkPolicy's.
		PodSelector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"podSelector"`
		PolicyTypes []string `yaml:"policyTypes"`
		Ingress     []struct {
			Ports []struct {
				Port     string `yaml:"port"`
				Protocol string `yaml:"protocol"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
		Egress   []any `yaml:"egress"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName string       `yaml:"serviceAccountName"`
	HostPID            bool         `yaml:"hostPID"`
	Tolerations        []toleration `yaml:"tolerations"`
	Containers         []struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Ports   []struct {
			ContainerPort int `yaml:"containerPort"`
		} `yaml:"ports"`
		SecurityContext struct {
			Privileged   bool `yaml:"privileged"`
			Capabilities struct {
				Add []string `yaml:"add"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		Resources struct {
			Limits map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts  []volumeMount `yaml:"volumeMounts"`
		LivenessProbe struct {
			HTTPGet struct {
				Path string `yaml:"path"`
				Port string `yaml:"port"`
			} `yaml:"httpGet"`
		} `yaml:"livenessProbe"`
	} `yaml:"containers"`
	Volumes []struct {
		Name     string `yaml:"name"`
		HostPath struct {
			Path string `yaml:"path"`
		} `yaml:"hostPath"`
	} `yaml:"volumes"`
}

type toleration struct {
	Operator string `yaml:"operator"`
	Key      string `yaml:"key"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

// parseManifests decodes every YAML document of every file under
// kubernetes/.
func parseManifests(t *testing.T) []object {
	t.Helper()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests under kubernetes/")
	}
	var objs []object
	for _, f := range files {
		dec := yaml.NewDecoder(strings.NewReader(readFile(t, f)))
		for i := 1; ; i++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s, document %d: no apiVersion, kind or name", f, i)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func TestTheDaemonSetTracesTheHostAndServesMetrics(t *testing.T) {
	objs := parseManifests(t)
	i := slices.IndexFunc(objs, func(o object) bool { return o.Kind == "DaemonSet" })
	if i < 0 {
		t.Fatal("no DaemonSet")
	}
	ds := objs[i]
	pod := ds.Spec.Template.Spec
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not a label of the pods", k, v)
		}
	}
	if !slices.ContainsFunc(objs, func(o object) bool {
		return o.Kind == "ServiceAccount" && o.Metadata.Name == pod.ServiceAccountName && o.Metadata.Namespace == ds.Metadata.Namespace
	}) {
		t.Errorf("no ServiceAccount %q in namespace %q", pod.ServiceAccountName, ds.Metadata.Namespace)
	}
	if !pod.HostPID {
		t.Error("no hostPID: fdtrace would see only its own pod's processes")
	}
	if !slices.Contains(pod.Tolerations, toleration{Operator: "Exists"}) {
		t.Error("no toleration of every taint: some nodes would not run fdtrace")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's entrypoint", c.Command)
	}
	requireFdtraceAccepts(t, "DaemonSet args", c.Args)

	if !c.SecurityContext.Privileged {
		for _, cap := range []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"} {
			if !slices.Contains(c.SecurityContext.Capabilities.Add, cap) {
				t.Errorf("the container is not privileged and lacks CAP_%s", cap)
			}
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Error("no memory limit")
	}

	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		hostPaths[v.Name] = v.HostPath.Path
	}
	for _, want := range []struct {
		path     string
		readOnly bool
	}{{"/sys/kernel/btf", true}, {"/sys/kernel/tracing", false}, {"/sys/fs/cgroup", true}} {
		j := slices.IndexFunc(c.VolumeMounts, func(m volumeMount) bool { return m.MountPath == want.path })
		switch {
		case j < 0:
			t.Errorf("%s is not mounted", want.path)
		case hostPaths[c.VolumeMounts[j].Name] != want.path:
			t.Errorf("%s is not the host's", want.path)
		case want.readOnly && !c.VolumeMounts[j].ReadOnly:
			t.Errorf("%s is mounted writable", want.path)
		}
	}

	addr := flagValue(c.Args, "--metrics-addr")
	_, port, _ := strings.Cut(addr, ":")
	if port == "" {
		port = "9464"
	}
	exposed := false
	for _, p := range c.Ports {
		exposed = exposed || strconv.Itoa(p.ContainerPort) == port
	}
	if !exposed {
		t.Errorf("metrics port %s is not a container port", port)
	}
	ann := ds.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port {
		t.Errorf("pod annotations %v do not ask Prometheus to scrape port %s", ann, port)
	}
}

// A wedged metrics endpoint restarts the pod rather than blinding the
// node's alerts; the pods take connections on the metrics port only and
// open none (fdtrace talks to nobody).
func TestTheDaemonSetIsProbedAndFencedByANetworkPolicy(t *testing.T) {
	objs := parseManifests(t)
	ds := objs[slices.IndexFunc(objs, func(o object) bool { return o.Kind == "DaemonSet" })]
	c := ds.Spec.Template.Spec.Containers[0]
	if p := c.LivenessProbe.HTTPGet; p.Path != "/metrics" || p.Port != "metrics" {
		t.Errorf("liveness probe %+v, want GET /metrics on the metrics port", p)
	}
	i := slices.IndexFunc(objs, func(o object) bool { return o.Kind == "NetworkPolicy" })
	if i < 0 {
		t.Fatal("no NetworkPolicy")
	}
	np := objs[i]
	if np.Metadata.Namespace != ds.Metadata.Namespace || !maps.Equal(np.Spec.PodSelector.MatchLabels, ds.Spec.Selector.MatchLabels) {
		t.Errorf("the NetworkPolicy does not select the DaemonSet's pods: %v in %q", np.Spec.PodSelector.MatchLabels, np.Metadata.Namespace)
	}
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") || !slices.Contains(np.Spec.PolicyTypes, "Egress") || len(np.Spec.Egress) != 0 {
		t.Errorf("policy types %v, %d egress rules: want ingress and egress fenced, no egress", np.Spec.PolicyTypes, len(np.Spec.Egress))
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port != "metrics" {
		t.Errorf("ingress %+v, want the metrics port only", np.Spec.Ingress)
	}
}

func TestTheContainerfileBuildsTheCLIIntoAStaticImage(t *testing.T) {
	var froms []string
	var build, entrypoint, cmd string
	var copied [2]string
	sc := bufio.NewScanner(strings.NewReader(readFile(t, "container/Containerfile")))
	for sc.Scan() {
		instr, rest, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch instr {
		case "FROM":
			froms = append(froms, rest)
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = rest
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				copied = [2]string{f[1], f[2]}
			}
		case "ENTRYPOINT":
			entrypoint = rest
		case "CMD":
			cmd = rest
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Fatalf("stages %q: want a golang build stage and a final one", froms)
	}
	if last := froms[len(froms)-1]; last != "scratch" && !strings.HasPrefix(last, "gcr.io/distroless/static") {
		t.Errorf("final stage %s: want scratch or distroless/static", last)
	}
	f := strings.Fields(build)
	if !strings.Contains(build, "CGO_ENABLED=0 go build") || !slices.Contains(f, "./cmd/fdtrace") {
		t.Fatalf("no CGO_ENABLED=0 go build ./cmd/fdtrace: %q", build)
	}
	if out := flagValue(f, "-o"); out != copied[0] {
		t.Errorf("the build writes %s, the final stage copies %s", out, copied[0])
	}
	var exe, args []string
	if err := json.Unmarshal([]byte(entrypoint), &exe); err != nil || len(exe) != 1 || exe[0] != copied[1] {
		t.Errorf("ENTRYPOINT %s is not the copied binary %s", entrypoint, copied[1])
	}
	if err := json.Unmarshal([]byte(cmd), &args); err != nil {
		t.Fatalf("CMD %s: %v", cmd, err)
	}
	requireFdtraceAccepts(t, "CMD", args)
}

// Builds the image when a docker daemon is at hand; CI does not need one.
func TestTheContainerImageBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("pulls and builds images")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker is not installed")
	}
	if out, err := exec.Command(docker, "info").CombinedOutput(); err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		t.Skipf("docker daemon not usable: %s", lines[len(lines)-1])
	}
	const image = "fdtrace-deploy-test"
	build := exec.Command(docker, "build", "--platform", "linux/amd64", "-f", "container/Containerfile", "-t", image, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(docker, "rmi", image).Run() })
	out, err := exec.Command(docker, "run", "--rm", image, "--help").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Usage:")) {
		t.Errorf("docker run %s --help: %v\n%s", image, err, out)
	}
}
