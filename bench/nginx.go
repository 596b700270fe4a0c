package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// server is a workload that is a real server under load: it runs for the
// whole bench, untraced until a run's tracer attaches to it, and each run
// is a load generator's run against it.
type server struct {
	comm string // its process name, which the tracers follow
	note string // why it is not measured, when it is not
	url  string
	wrk  string
	cmd  *exec.Cmd
}

func (s *server) ok() bool { return s.cmd != nil }

// nginx serves a 1 KiB file, a connection per request (keepalive_timeout
// 0): each request is an accept4, an openat of the file and two closes.
var nginx = &server{comm: "nginx", note: "not measured: nginx and wrk not installed (apt-get install nginx wrk)"}

const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_timeout 0;
	open_file_cache off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server { listen 127.0.0.1:%[2]d; root %[1]s/www; }
}
`

// start runs nginx, one process, from a configuration in dir, and waits
// until it answers.
func (s *server) start(dir string) {
	nginxBin, err1 := exec.LookPath("nginx")
	wrk, err2 := exec.LookPath("wrk")
	if err1 != nil || err2 != nil {
		return
	}
	dir = filepath.Join(dir, "nginx")
	port, err := freePort()
	if err == nil {
		err = os.MkdirAll(filepath.Join(dir, "www"), 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "www", "f"), []byte(strings.Repeat("x", 1024)), 0o644)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err == nil {
		err = os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port)), 0o644)
	}
	if err != nil {
		s.note = "not measured: " + err.Error()
		return
	}
	cmd := exec.Command(nginxBin, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	if err := cmd.Start(); err != nil {
		s.note = "not measured: starting nginx: " + err.Error()
		return
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			s.note = "not measured: nginx did not listen on " + addr
			return
		}
	}
	s.cmd, s.wrk, s.url = cmd, wrk, "http://"+addr+"/f"
}

func (s *server) stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// freePort is a loopback port nobody listens on.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(ms|s|m)`)
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
)

// load runs wrk against the server for seconds s, 16 connections from one
// thread; an operation is a request, and its cost the server's CPU time
// per request: what a tracer costs the server is spent in its syscalls
// (the programs run there), where wrk's rate on two cores shared by
// server, client and tracer rewards a tracer that slows the client.
func (s *server) load(seconds int64) (workResult, error) {
	cpu := processCPU(s.cmd.Process.Pid)
	out, err := exec.Command(s.wrk, "-t1", "-c16", "-d", fmt.Sprintf("%ds", seconds), s.url).CombinedOutput()
	cpu = processCPU(s.cmd.Process.Pid) - cpu
	if err != nil {
		return workResult{}, fmt.Errorf("wrk: %v: %s", err, lastLine(string(out)))
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, err
	}
	// Without schedstat, a run's cost would silently be wrk's rate.
	if cpu <= 0 {
		return workResult{}, fmt.Errorf("nginx (pid %d): no CPU time in /proc/PID/task/*/schedstat over the run", s.cmd.Process.Pid)
	}
	r.nsPerOp = float64(cpu.Nanoseconds()) / float64(r.ops)
	return r, nil
}

// parseWrk reads wrk's "N requests in Ts" and "Requests/sec: R".
func parseWrk(out string) (workResult, error) {
	m, r := wrkRequests.FindStringSubmatch(out), wrkRate.FindStringSubmatch(out)
	if m == nil || r == nil {
		return workResult{}, fmt.Errorf("wrk output %q: no request count or rate", lastLine(out))
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	rate, _ := strconv.ParseFloat(r[1], 64)
	if n == 0 || rate == 0 {
		return workResult{}, fmt.Errorf("wrk output %q: no requests", lastLine(out))
	}
	if strings.Contains(out, "Non-2xx") || strings.Contains(out, "Socket errors") {
		return workResult{}, fmt.Errorf("wrk: requests failed: %s", strings.Join(strings.Fields(out), " "))
	}
	return workResult{nsPerOp: 1e9 / rate, ops: n, elapsed: time.Duration(float64(n) / rate * 1e9)}, nil
}
