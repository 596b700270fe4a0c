package procfs

import (
	"strings"
	"testing"
)

func TestParseFileNrAndCgroups(t *testing.T) {
	f, err := ParseFileNr("1408\t0\t2466170\n")
	if err != nil || f != (FileNr{1408, 2466170}) {
		t.Errorf("ParseFileNr: %+v, %v", f, err)
	}
	if _, err := ParseFileNr("garbage"); err == nil {
		t.Error("ParseFileNr accepted garbage")
	}
	for in, want := range map[string]string{
		"/system.slice/nginx.service":                        "/system.slice/nginx.service",
		"system.slice":                                       "/system.slice",
		"/sys/fs/cgroup/system.slice/x":                      "/system.slice/x",
		"/sys/fs/cgroup/unified/x":                           "/x",
		"/sys/fs/cgroupie":                                   "/sys/fs/cgroupie",
		"/sys/fs/cgroup/memory/docker/0123456789abcdef01234": "/memory/docker/0123456789abcdef01234",
	} {
		if got := CgroupPrefix(in); got != want {
			t.Errorf("CgroupPrefix(%q) = %q, want %q", in, got, want)
		}
	}
	v2 := "0::/system.slice/nginx.service\n"
	v1 := "4:memory:/docker/abc\n1:name=systemd:/system.slice/docker-abc.scope\n0::/\n"
	for _, tc := range []struct {
		text, prefix string
		want         bool
	}{
		{v2, "/system.slice", true},
		{v2, "/system.slice/nginx", true},
		{v2, "/user.slice", false},
		{v1, "/docker/abc", true},
		{v1, "/memory/docker", true},
		{v1, "/systemd/system.slice/docker-", true},
		{v1, "/cpu/docker", false},
	} {
		if got := CgroupMatches(tc.text, tc.prefix); got != tc.want {
			t.Errorf("CgroupMatches(%q, %q) = %v", tc.text, tc.prefix, got)
		}
	}
}

func TestCgroupPathAndContainerID(t *testing.T) {
	id := "3f1c2a9be4d5" + strings.Repeat("0", 52)
	for _, tc := range []struct{ text, path, container string }{
		{"0::/system.slice/nginx.service\n", "/system.slice/nginx.service", ""},
		{"0::/system.slice/docker-" + id + ".scope\n", "/system.slice/docker-" + id + ".scope", "3f1c2a9be4d5"},
		{"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope\n", "/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope", "3f1c2a9be4d5"},
		{"12:memory:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n", "/docker/" + id, "3f1c2a9be4d5"},
		{"3:cpu:/a\n2:pids:/b\n", "/a", ""},
		{"", "", ""},
	} {
		path := CgroupPath(tc.text)
		if path != tc.path || ContainerID(path) != tc.container {
			t.Errorf("%q: path %q, container %q; want %q, %q", tc.text, path, ContainerID(path), tc.path, tc.container)
		}
	}
}
