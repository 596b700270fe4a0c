package procfs

import (
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Cgroup is /proc/PID/cgroup: one line per hierarchy.
func Cgroup(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(Root, strconv.Itoa(pid), "cgroup"))
	return string(b), err
}

// cgroupLines yields the controllers and path of each line of a
// /proc/PID/cgroup text, "hierarchy-ID:controllers:path" (the path may
// hold colons), with its hierarchy id.
func cgroupLines(text string) iter.Seq2[string, [2]string] {
	return func(yield func(string, [2]string) bool) {
		for line := range strings.SplitSeq(text, "\n") {
			id, rest, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			controllers, path, ok := strings.Cut(rest, ":")
			if !ok {
				continue
			}
			if !yield(id, [2]string{controllers, path}) {
				return
			}
		}
	}
}

// CgroupPath picks one path from a /proc/PID/cgroup text: the unified
// (v2) hierarchy's, else systemd's v1 hierarchy, else the first.
func CgroupPath(text string) string {
	var first, systemd string
	for id, l := range cgroupLines(text) {
		controllers, path := l[0], l[1]
		switch {
		case id == "0" && controllers == "":
			return path
		case controllers == "name=systemd" && systemd == "":
			systemd = path
		case first == "":
			first = path
		}
	}
	if systemd != "" {
		return systemd
	}
	return first
}

// CgroupPrefix normalizes a --cgroup argument: a path in the cgroup
// hierarchy, as /proc/PID/cgroup shows it, or under /sys/fs/cgroup.
func CgroupPrefix(s string) string {
	for _, mount := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if rest, ok := strings.CutPrefix(s, mount); ok && (rest == "" || rest[0] == '/') {
			s = rest
			break
		}
	}
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	return s
}

// CgroupMatches tells whether one of the paths of a /proc/PID/cgroup text
// starts with prefix: the path itself, or (cgroup v1) the path under its
// hierarchy's directory in /sys/fs/cgroup ("/memory/docker/...").
func CgroupMatches(text, prefix string) bool {
	for _, l := range cgroupLines(text) {
		controllers, path := l[0], l[1]
		if strings.HasPrefix(path, prefix) {
			return true
		}
		dir := "/" + strings.TrimPrefix(controllers, "name=")
		if controllers != "" && strings.HasPrefix(dir+path, prefix) {
			return true
		}
	}
	return false
}

var containerID = regexp.MustCompile(`[0-9a-f]{64}`)

// ContainerID is the short (12-digit) id of the container a cgroup path
// names, as docker, containerd, CRI-O and podman name their cgroups; ""
// outside containers.
func ContainerID(cgroup string) string {
	ids := containerID.FindAllString(cgroup, -1)
	if len(ids) == 0 {
		return ""
	}
	// The innermost: a pod's cgroup holds its containers'.
	return ids[len(ids)-1][:12]
}
