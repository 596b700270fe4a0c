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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

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
	Containers         []container  `yaml:"containers"`
	Volumes            []struct {
		Name     string `yaml:"name"`
		HostPath struct {
			Path string `yaml:"path"`
		} `yaml:"hostPath"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		ContainerPort int `yaml:"containerPort"`
	} `yaml:"ports"`
	SecurityContext struct {
		Privileged               bool  `yaml:"privileged"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		RunAsUser                *int  `yaml:"runAsUser"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type             string `yaml:"type"`
			LocalhostProfile string `yaml:"localhostProfile"`
		} `yaml:"seccompProfile"`
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

// containerfile is what the tests read of container/Containerfile.
type containerfile struct {
	froms           []string  // each stage's image, without AS NAME
	build           string    // the RUN that runs go build
	copied          [2]string // from the build stage, to the final one
	entrypoint, cmd string    // as written: JSON arrays
}

func parseContainerfile(t *testing.T) containerfile {
	t.Helper()
	var cf containerfile
	sc := bufio.NewScanner(strings.NewReader(readFile(t, "container/Containerfile")))
	for sc.Scan() {
		instr, rest, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch instr {
		case "FROM":
			if f := strings.Fields(rest); len(f) > 0 {
				cf.froms = append(cf.froms, f[0])
			}
		case "RUN":
			if strings.Contains(rest, "go build") {
				cf.build = rest
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				cf.copied = [2]string{f[1], f[2]}
			}
		case "ENTRYPOINT":
			cf.entrypoint = rest
		case "CMD":
			cf.cmd = rest
		}
	}
	return cf
}

// pinned is an image named by tag, for the reader, and by digest, for
// the build: IMAGE:TAG@sha256:DIGEST.
var pinned = regexp.MustCompile(`^[a-z0-9][a-z0-9./_-]*:[A-Za-z0-9_][A-Za-z0-9._-]*@sha256:[0-9a-f]{64}$`)

func TestTheContainerfileBuildsTheCLIIntoAStaticImage(t *testing.T) {
	cf := parseContainerfile(t)
	if len(cf.froms) < 2 || !strings.HasPrefix(cf.froms[0], "golang:") {
		t.Fatalf("stages %q: want a golang build stage and a final one", cf.froms)
	}
	if last := cf.froms[len(cf.froms)-1]; last != "scratch" && !strings.HasPrefix(last, "gcr.io/distroless/static") {
		t.Errorf("final stage %s: want scratch or distroless/static", last)
	}
	// A tag can move under the build; a digest cannot.
	for _, from := range cf.froms {
		if from != "scratch" && !pinned.MatchString(from) {
			t.Errorf("FROM %s is not pinned: want IMAGE:TAG@sha256:DIGEST", from)
		}
	}
	f := strings.Fields(cf.build)
	if !strings.Contains(cf.build, "CGO_ENABLED=0 go build") || !slices.Contains(f, "./cmd/fdtrace") {
		t.Fatalf("no CGO_ENABLED=0 go build ./cmd/fdtrace: %q", cf.build)
	}
	if out := flagValue(f, "-o"); out != cf.copied[0] {
		t.Errorf("the build writes %s, the final stage copies %s", out, cf.copied[0])
	}
	var exe, args []string
	if err := json.Unmarshal([]byte(cf.entrypoint), &exe); err != nil || len(exe) != 1 || exe[0] != cf.copied[1] {
		t.Errorf("ENTRYPOINT %s is not the copied binary %s", cf.entrypoint, cf.copied[1])
	}
	if err := json.Unmarshal([]byte(cf.cmd), &args); err != nil {
		t.Fatalf("CMD %s: %v", cf.cmd, err)
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

// daemonSet is the DaemonSet of the manifests.
func daemonSet(t *testing.T) object {
	t.Helper()
	objs := parseManifests(t)
	i := slices.IndexFunc(objs, func(o object) bool { return o.Kind == "DaemonSet" })
	if i < 0 {
		t.Fatal("no DaemonSet")
	}
	if n := len(objs[i].Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return objs[i]
}

// seccompProfile is a seccomp profile in the OCI runtime spec's form,
// which podman, Docker, containerd and CRI-O all read (comment is
// Docker's, and ignored by the others).
type seccompProfile struct {
	DefaultAction string   `json:"defaultAction"`
	Architectures []string `json:"architectures"`
	Syscalls      []struct {
		Comment string   `json:"comment"`
		Names   []string `json:"names"`
		Action  string   `json:"action"`
		Args    []struct {
			Index    uint   `json:"index"`
			Value    uint64 `json:"value"`
			ValueTwo uint64 `json:"valueTwo"`
			Op       string `json:"op"`
		} `json:"args"`
	} `json:"syscalls"`
}

// shippedProfile is the file under seccomp/ that the DaemonSet's
// Localhost profile names: the kubelet's seccomp directory holds what
// seccomp/ holds.
func shippedProfile(t *testing.T, c container) string {
	t.Helper()
	p := c.SecurityContext.SeccompProfile
	if p.Type != "Localhost" || p.LocalhostProfile == "" {
		t.Fatalf("seccompProfile %+v: want a Localhost profile, the one under seccomp/", p)
	}
	path, err := filepath.Abs(filepath.Join("seccomp", p.LocalhostProfile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the DaemonSet's profile is not shipped: %v", err)
	}
	return path
}

// amd64Syscalls are the x86_64 syscalls by name, from x/sys/unix's table
// (SYS_OPENAT2 = 437): a name the runtime does not know would be skipped,
// not refused.
func amd64Syscalls(t *testing.T) map[string]int {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	if err != nil {
		t.Fatalf("go list -m golang.org/x/sys: %v", err)
	}
	text := readFile(t, filepath.Join(strings.TrimSpace(string(dir)), "unix", "zsysnum_linux_amd64.go"))
	nums := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s*SYS_([A-Z0-9_]+)\s*=\s*(\d+)$`).FindAllStringSubmatch(text, -1) {
		nums[strings.ToLower(m[1])], _ = strconv.Atoi(m[2])
	}
	if nums["openat2"] != 437 || nums["bpf"] != 321 {
		t.Fatalf("no syscall table in x/sys/unix (%d names)", len(nums))
	}
	return nums
}

// The profile refuses what it does not name, and names no way out of the
// container or into the kernel beyond bpf(): no mounts, namespaces,
// modules, other processes' memory. Which syscalls it allows, and why, is
// measured by the container test below and said in docs/deployment.md.
func TestTheSeccompProfileRefusesByDefaultAndAllowsNoEscape(t *testing.T) {
	path := shippedProfile(t, daemonSet(t).Spec.Template.Spec.Containers[0])
	dec := json.NewDecoder(strings.NewReader(readFile(t, path)))
	dec.DisallowUnknownFields()
	var p seccompProfile
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.DefaultAction != "SCMP_ACT_ERRNO" {
		t.Errorf("defaultAction %s, want SCMP_ACT_ERRNO (refused calls fail with EPERM)", p.DefaultAction)
	}
	if !slices.Equal(p.Architectures, []string{"SCMP_ARCH_X86_64"}) {
		t.Errorf("architectures %q: fdtrace is x86_64 only", p.Architectures)
	}
	known := amd64Syscalls(t)
	allowed := map[string]bool{} // without conditions
	conditional := map[string]bool{}
	for _, s := range p.Syscalls {
		if s.Action != "SCMP_ACT_ALLOW" || s.Comment == "" || len(s.Names) == 0 {
			t.Errorf("rule %q: want SCMP_ACT_ALLOW with a comment saying why", s.Names)
		}
		for _, name := range s.Names {
			if _, ok := known[name]; !ok {
				t.Errorf("%s is no x86_64 syscall", name)
			}
			if allowed[name] || (len(s.Args) == 0 && conditional[name]) {
				t.Errorf("%s is allowed twice", name)
			}
			if len(s.Args) == 0 {
				allowed[name] = true
			} else {
				conditional[name] = true
			}
		}
	}
	for _, name := range []string{"bpf", "perf_event_open", "execve"} {
		if !allowed[name] {
			t.Errorf("%s is not allowed", name)
		}
	}
	for _, name := range []string{"mount", "umount2", "move_mount", "fsopen", "fsmount", "open_tree", "pivot_root",
		"chroot", "unshare", "setns", "clone3", "ptrace", "process_vm_readv", "process_vm_writev",
		"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "open_by_handle_at",
		"keyctl", "add_key", "request_key", "userfaultfd", "personality", "reboot", "swapon", "iopl", "ioperm"} {
		if allowed[name] || conditional[name] {
			t.Errorf("%s is allowed", name)
		}
	}
	if allowed["ioctl"] {
		t.Error("every ioctl is allowed: only the perf event ones are needed")
	}
	// Threads, yes; new namespaces (CLONE_NEWUSER above all), no.
	const newNamespaces = 0x7e020000
	for _, s := range p.Syscalls {
		if slices.Contains(s.Names, "clone") {
			if len(s.Args) != 1 || s.Args[0].Op != "SCMP_CMP_MASKED_EQ" || s.Args[0].Index != 0 ||
				s.Args[0].Value&newNamespaces != newNamespaces || s.Args[0].ValueTwo != 0 {
				t.Errorf("clone is allowed with %+v: want the namespace flags masked out", s.Args)
			}
		}
	}
}

// podman runs podman as it works on the CI machines: with runc (crun
// refuses their hybrid cgroup layout) and a containers.conf that sets no
// rlimits (root there may not raise them: no CAP_SYS_RESOURCE).
type podman struct {
	path string
	env  []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	testutil.RequireRoot(t)
	path := requireTool(t, "podman")
	requireTool(t, "runc")
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &podman{path, append(os.Environ(), "CONTAINERS_CONF="+conf)}
}

func (p *podman) command(args ...string) *exec.Cmd {
	cmd := exec.Command(p.path, append([]string{"--runtime", "runc"}, args...)...)
	cmd.Env = p.env
	return cmd
}

// run runs podman to the end and returns its stdout.
func (p *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := p.command(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// buildImage builds the Containerfile's final stage around the fdtrace
// the tests built, FROM scratch: no registry is at hand.
func (p *podman) buildImage(t *testing.T) string {
	t.Helper()
	cf := parseContainerfile(t)
	var exe []string
	if err := json.Unmarshal([]byte(cf.entrypoint), &exe); err != nil || len(exe) != 1 {
		t.Fatalf("ENTRYPOINT %s: want one program", cf.entrypoint)
	}
	dir := t.TempDir()
	bin, err := os.ReadFile(fdtraceBin)
	if err != nil {
		t.Fatal(err)
	}
	recipe := fmt.Sprintf("FROM scratch\nCOPY fdtrace %s\nENTRYPOINT %s\nCMD %s\n", exe[0], cf.entrypoint, cf.cmd)
	if err := os.WriteFile(filepath.Join(dir, "fdtrace"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("localhost/fdtrace-deploy-test:%d", os.Getpid())
	p.run(t, "build", "-q", "-t", image, dir)
	t.Cleanup(func() { p.command("rmi", "-f", image).Run() })
	return image
}

// runOptions are podman run's options for what the DaemonSet asks of its
// pod and container, but seccomp: capabilities, the host's pid namespace,
// a read-only root (without the tmpfs podman would add), no new
// privileges, the user, the memory limit and the host's directories.
func runOptions(t *testing.T, pod podSpec) []string {
	t.Helper()
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged {
		t.Fatal("the container is privileged: no seccomp profile applies")
	}
	var opts []string
	for _, c := range sc.Capabilities.Drop {
		opts = append(opts, "--cap-drop", c)
	}
	for _, c := range sc.Capabilities.Add {
		opts = append(opts, "--cap-add", c)
	}
	if pod.HostPID {
		opts = append(opts, "--pid=host")
	}
	if sc.ReadOnlyRootFilesystem {
		opts = append(opts, "--read-only", "--read-only-tmpfs=false")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		opts = append(opts, "--security-opt", "no-new-privileges")
	}
	if sc.RunAsUser != nil {
		opts = append(opts, "--user", strconv.Itoa(*sc.RunAsUser))
	}
	if mem := c.Resources.Limits["memory"]; mem != "" {
		n, ok := strings.CutSuffix(mem, "Mi")
		if !ok {
			t.Fatalf("memory limit %s: only Mi is translated for podman", mem)
		}
		opts = append(opts, "--memory", n+"m")
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		hostPaths[v.Name] = v.HostPath.Path
	}
	for _, m := range c.VolumeMounts {
		v := hostPaths[m.Name] + ":" + m.MountPath
		if m.ReadOnly {
			v += ":ro"
		}
		opts = append(opts, "-v", v)
	}
	return opts
}

// hostTracefs mounts tracefs where the DaemonSet takes the node's, if
// the host has not (systemd does at boot), and unmounts it after.
func hostTracefs(t *testing.T, pod podSpec) {
	t.Helper()
	for _, v := range pod.Volumes {
		dir := v.HostPath.Path
		if dir != "/sys/kernel/tracing" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "events")); err == nil {
			return
		}
		if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
			t.Fatalf("mounting tracefs at %s: %v", dir, err)
		}
		t.Cleanup(func() { unix.Unmount(dir, 0) })
	}
}

// runningContainer is a podman run of the DaemonSet's container.
type runningContainer struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr testutil.LockedBuffer
	exited         chan error
}

func (p *podman) start(t *testing.T, name string, args ...string) *runningContainer {
	t.Helper()
	rc := &runningContainer{name: name, exited: make(chan error, 1)}
	rc.cmd = p.command(append([]string{"run", "--rm", "--name", name}, args...)...)
	rc.cmd.Stdout, rc.cmd.Stderr = &rc.stdout, &rc.stderr
	if err := rc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { rc.exited <- rc.cmd.Wait() }()
	t.Cleanup(func() {
		p.command("rm", "-f", "-t", "0", name).Run()
		rc.cmd.Process.Kill()
	})
	return rc
}

// waitFor polls cond for up to 30s, failing if the container exits first.
func (rc *runningContainer) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case err := <-rc.exited:
			rc.exited <- err
			t.Fatalf("the container exited (%v) while waiting for %s:\n%s", err, what, rc.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, rc.stderr.String())
		}
	}
}

// wait waits for podman run to end, for up to 30s.
func (rc *runningContainer) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-rc.exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("the container did not stop within 30s:\n%s", rc.stderr.String())
	}
	return nil
}

// procStatus is /proc/PID/status as key: value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	status := map[string]string{}
	for line := range strings.Lines(readFile(t, fmt.Sprintf("/proc/%d/status", pid))) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			status[k] = strings.TrimSpace(v)
		}
	}
	return status
}

// capMask is the capability set of the names, as /proc/PID/status
// writes it.
func capMask(t *testing.T, names ...string) string {
	t.Helper()
	bits := map[string]uint{"BPF": unix.CAP_BPF, "PERFMON": unix.CAP_PERFMON,
		"SYS_PTRACE": unix.CAP_SYS_PTRACE, "DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
		"SYS_ADMIN": unix.CAP_SYS_ADMIN, "SYS_RESOURCE": unix.CAP_SYS_RESOURCE}
	var mask uint64
	for _, n := range names {
		bit, ok := bits[n]
		if !ok {
			t.Fatalf("capability %s: add it to capMask", n)
		}
		mask |= 1 << bit
	}
	return fmt.Sprintf("%016x", mask)
}

// metricValue is the value of the series of name whose labels include
// label, or -1.
func metricValue(text, name, label string) float64 {
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, name+"{"); ok && strings.Contains(rest, label) {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' '):]), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// daemonSetRun is what a run of the DaemonSet's container showed.
type daemonSetRun struct {
	pid            int               // fdtrace's, on the host
	status         map[string]string // fdtrace's /proc/PID/status, once started
	metrics        string
	stdout, stderr string
	workload, fds  int // the workload's pid and open fds
}

// runDaemonSet runs the DaemonSet's container (podman run's opts, then
// the image and args) under the seccomp profile, while a host process
// runs into its fd limit of 16: three opens and a socket fail with
// EMFILE. It reads the metrics on the DaemonSet's port, then stops the
// container as the kubelet does, with SIGTERM.
func runDaemonSet(t *testing.T, p *podman, c container, name, profile string, opts []string) daemonSetRun {
	t.Helper()
	// Started first, the workload's fds are read from /proc, across the
	// pid namespace, with the DaemonSet's capabilities.
	w := testutil.StartFdops(t, testutil.BuildC(t, "fdops", "-static", "-pthread"))
	w.Do(t, "limit 16")
	rc := p.start(t, name, append([]string{"--security-opt", "seccomp=" + profile}, opts...)...)
	rc.waitFor(t, "the metrics endpoint", func() bool { return strings.Contains(rc.stderr.String(), "fdtrace: serving metrics at") })
	run := daemonSetRun{workload: w.PID}
	var ip string
	if _, err := fmt.Sscan(p.run(t, "inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.IPAddress}}", name), &run.pid, &ip); err != nil {
		t.Fatal(err)
	}
	// serve and host-wide trace --errors-only give up reading other
	// processes once started (docs/deployment.md), which takes capset.
	kept := slices.DeleteFunc(slices.Clone(c.SecurityContext.Capabilities.Add), func(c string) bool { return c == "SYS_PTRACE" || c == "DAC_READ_SEARCH" })
	rc.waitFor(t, "fdtrace to give up reading processes", func() bool {
		run.status = procStatus(t, run.pid)
		return run.status["CapEff"] == capMask(t, kept...) || strings.Contains(rc.stderr.String(), "fdtrace: keeping")
	})

	if vals := w.Do(t, "fill"); len(vals) != 2 || vals[1] != int(unix.EMFILE) {
		t.Fatalf("fill: %v, want EMFILE", vals)
	}
	for _, op := range []string{"open /dev/null", "open /dev/null", "socket inet stream"} {
		if _, errno := w.Try(t, "%s", op); errno != int(unix.EMFILE) {
			t.Fatalf("%s: errno %d, want EMFILE", op, errno)
		}
	}
	run.fds = len(testutil.ProcFDs(t, w.PID))

	_, port, _ := strings.Cut(flagValue(c.Args, "--metrics-addr"), ":")
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(ip, port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	run.metrics = string(body)

	p.run(t, "stop", "-t", "20", name)
	if err := rc.wait(t); err != nil {
		t.Fatalf("fdtrace exited with %v:\n%s", err, rc.stderr.String())
	}
	run.stdout, run.stderr = rc.stdout.String(), rc.stderr.String()
	return run
}

// kmsg reads the kernel's log from now on.
type kmsg int

func openKmsg(t *testing.T) kmsg {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	return kmsg(fd)
}

// messages are the log's messages since the last call.
func (k kmsg) messages(t *testing.T) []string {
	t.Helper()
	var msgs []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(int(k), buf)
		switch {
		case err == unix.EPIPE: // overwritten before we read them
			continue
		case err == unix.EAGAIN:
			return msgs
		case err != nil:
			t.Fatalf("reading /dev/kmsg: %v", err)
		}
		if _, msg, ok := strings.Cut(string(buf[:n]), ";"); ok {
			msgs = append(msgs, strings.TrimSpace(msg))
		}
	}
}

// The DaemonSet's container, as podman runs it with everything the
// manifest says (capabilities, host pid namespace, read-only root, no new
// privileges, memory limit, the host's directories, the args) and the
// shipped seccomp profile, sees a host process run into its fd limit:
// each EMFILE, with the host's pid, in its log, and the process in its
// metrics. It makes no syscall the profile leaves out. Under the
// runtime's default profile, it says that seccomp refuses bpf().
func TestTheDaemonSetsContainerTracesTheHostUnderItsSeccompProfile(t *testing.T) {
	p := newPodman(t)
	pod := daemonSet(t).Spec.Template.Spec
	c := pod.Containers[0]
	profile := shippedProfile(t, c)
	hostTracefs(t, pod)
	image := p.buildImage(t)
	opts := append(runOptions(t, pod), image)
	opts = append(opts, c.Args...)
	name := fmt.Sprintf("fdtrace-deploy-test-%d", os.Getpid())

	t.Run("with the shipped profile, it reports a host process's EMFILEs and serves its metrics", func(t *testing.T) {
		run := runDaemonSet(t, p, c, name, profile, opts)
		if run.status["Seccomp"] != "2" {
			t.Errorf("fdtrace in the container: Seccomp: %s, want 2 (a filter)", run.status["Seccomp"])
		}
		if run.status["NoNewPrivs"] != "1" {
			t.Errorf("fdtrace in the container: NoNewPrivs: %s, want 1 (allowPrivilegeEscalation: false)", run.status["NoNewPrivs"])
		}
		added := c.SecurityContext.Capabilities.Add
		if got, want := run.status["CapBnd"], capMask(t, added...); got != want {
			t.Errorf("capability bounding set %s, want the DaemonSet's %s (%q)", got, want, added)
		}
		for line := range strings.Lines(run.stderr) {
			if !strings.HasPrefix(line, "fdtrace: tracing ") && !strings.HasPrefix(line, "fdtrace: serving metrics at ") {
				t.Errorf("fdtrace said: %s", line)
			}
		}

		label := fmt.Sprintf("pid=%q", strconv.Itoa(run.workload))
		if got := metricValue(run.metrics, "fdtrace_process_open_fds", label); got != float64(run.fds) {
			t.Errorf("fdtrace_process_open_fds{%s} %v, want %d (/proc)", label, got, run.fds)
		}
		if got := metricValue(run.metrics, "fdtrace_process_fd_limit", label); got != 16 {
			t.Errorf("fdtrace_process_fd_limit{%s} %v, want 16", label, got)
		}

		var errs []string
		var summary map[string]any
		for line := range strings.Lines(run.stdout) {
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			if r["pid"] != float64(run.workload) {
				continue
			}
			switch r["type"] {
			case "error":
				errs = append(errs, fmt.Sprint(r["syscall"], " ", r["errno"]))
			case "process":
				summary = r
			}
		}
		if want := []string{"openat EMFILE", "openat EMFILE", "openat EMFILE", "socket EMFILE"}; !slices.Equal(errs, want) {
			t.Errorf("error records of pid %d: %q, want %q", run.workload, errs, want)
		}
		if summary["emfile"] != 4.0 || summary["open_fds"] != float64(run.fds) || summary["fd_limit"] != 16.0 {
			t.Errorf("summary of pid %d: %v, want emfile 4, open_fds %d, fd_limit 16", run.workload, summary, run.fds)
		}
	})

	// A refused call fails with EPERM, which fdtrace may take in its
	// stride: the same run with the profile's refusals logged instead
	// (SCMP_ACT_LOG, to the kernel's log) shows what the profile misses,
	// from the runtime's last steps to fdtrace's exit.
	t.Run("with the shipped profile, it makes no syscall the profile refuses", func(t *testing.T) {
		if !slices.Contains(strings.Fields(readFile(t, "/proc/sys/kernel/seccomp/actions_logged")), "log") {
			t.Fatal("this kernel does not log SCMP_ACT_LOG (kernel.seccomp.actions_logged)")
		}
		var prof map[string]any
		if err := json.Unmarshal([]byte(readFile(t, profile)), &prof); err != nil {
			t.Fatal(err)
		}
		prof["defaultAction"] = "SCMP_ACT_LOG"
		logging := filepath.Join(t.TempDir(), "logging.json")
		b, _ := json.Marshal(prof)
		if err := os.WriteFile(logging, b, 0o644); err != nil {
			t.Fatal(err)
		}
		log := openKmsg(t)
		run := runDaemonSet(t, p, c, name, logging, opts)
		names := map[int]string{}
		for name, nr := range amd64Syscalls(t) {
			names[nr] = name
		}
		syscallNr := regexp.MustCompile(` syscall=(\d+) `)
		for _, msg := range log.messages(t) {
			if !strings.Contains(msg, "type=1326") || !strings.Contains(msg, fmt.Sprintf(" pid=%d ", run.pid)) {
				continue
			}
			if m := syscallNr.FindStringSubmatch(msg); m != nil {
				nr, _ := strconv.Atoi(m[1])
				t.Errorf("the profile refuses %s: %s", names[nr], msg)
			}
		}
	})

	t.Run("under the runtime's default profile, it says seccomp refuses bpf()", func(t *testing.T) {
		rc := p.start(t, name+"-default", opts...)
		err := rc.wait(t)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("podman run: %v, want fdtrace's exit status 1\n%s", err, rc.stderr.String())
		}
		msg := rc.stderr.String()
		if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "fdtrace: ") || !strings.Contains(msg, "seccomp") {
			t.Errorf("fdtrace said %q, want one line that names seccomp", msg)
		}
	})
}
