// SPDX-License-Identifier: GPL-2.0
/*
 * fdops: a workload driven line by line on stdin. Each command makes
 * exactly the fd syscalls it names and answers one line on stdout:
 * "ok [values...]" or "err ERRNO". Built static by the tests so that no
 * dynamic loader opens files behind their back.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.h"

static int domain_of(const char *s)
{
	if (!strcmp(s, "inet6"))
		return AF_INET6;
	if (!strcmp(s, "unix"))
		return AF_UNIX;
	return AF_INET;
}

struct thread_arg {
	int n;
	pid_t tid;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	int first = -1;

	a->tid = gettid();
	for (int i = 0; i < a->n; i++) {
		int fd = open("/dev/null", O_RDONLY);

		if (first < 0)
			first = fd;
	}
	close(first);
	return NULL;
}

static volatile int busy_stop;
static pthread_t busy_thread;

/* Opens and closes as fast as it can until told to stop. */
static void *busy_main(void *p)
{
	while (!busy_stop)
		close(open("/dev/null", O_RDONLY));
	return NULL;
}

/* A thread with a name of its own opens files and leaves them open. */
static void *named_main(void *p)
{
	struct thread_arg *a = p;

	prctl(PR_SET_NAME, "worker-1");
	for (int i = 0; i < a->n; i++)
		open("/dev/null", O_RDONLY);
	return NULL;
}

static void fill(void)
{
	int n = 0;

	while (open("/dev/null", O_RDONLY) >= 0)
		n++;
	reply("ok %d %d", n, errno);
}

/* Sends fd in a message of its own over socket s (SCM_RIGHTS). */
static int send_fd(int s, int fd)
{
	char data = 'x', cbuf[CMSG_SPACE(sizeof(int))] __attribute__((aligned(8)));
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(s, &msg, 0);
}

/* recvmmsg of two messages sent with an fd each: the fds received. */
static void recv_two(int fd)
{
	char data[2], cbuf[2][64] __attribute__((aligned(8)));
	struct iovec iov[2] = { { &data[0], 1 }, { &data[1], 1 } };
	struct mmsghdr mm[2] = {};
	int s[2], got[2] = { -1, -1 };

	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s) || send_fd(s[0], fd) < 0 ||
	    send_fd(s[0], fd) < 0) {
		result(-1);
		return;
	}
	for (int i = 0; i < 2; i++) {
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		mm[i].msg_hdr.msg_control = cbuf[i];
		mm[i].msg_hdr.msg_controllen = sizeof(cbuf[i]);
	}
	if (recvmmsg(s[1], mm, 2, 0, NULL) != 2) {
		result(-1);
		return;
	}
	for (int i = 0; i < 2; i++) {
		struct cmsghdr *c = CMSG_FIRSTHDR(&mm[i].msg_hdr);

		if (c && c->cmsg_type == SCM_RIGHTS)
			memcpy(&got[i], CMSG_DATA(c), sizeof(int));
	}
	close(s[0]);
	close(s[1]);
	reply("ok %d %d %d %d", got[0], got[1], s[0], s[1]);
}

/* Opens path (an event for group g), reads g's events: their fds. */
static void fanotify_read(int g, const char *path)
{
	char buf[4096] __attribute__((aligned(8)));
	struct fanotify_event_metadata *m;
	char out[256] = "ok";
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		result(-1);
		return;
	}
	close(fd);
	n = read(g, buf, sizeof(buf));
	if (n < 0) {
		result(-1);
		return;
	}
	for (m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n))
		snprintf(out + strlen(out), sizeof(out) - strlen(out), " %d",
			 m->fd);
	reply("%s", out);
}

static void *fork_main(void *p)
{
	pid_t pid = fork();
	int status;

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, &status, 0);
	return NULL;
}

/*
 * A userfaultfd told of forks, a thread that forks, and the fork event
 * read: the new userfaultfd it carries (the fork waits for the read).
 */
static void uffd_fork(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_EVENT_FORK };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffd_msg msg;
	pthread_t t;
	void *page;
	int u = syscall(SYS_userfaultfd, O_CLOEXEC);

	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (unsigned long)page;
	reg.range.len = 4096;
	if (u < 0 || page == MAP_FAILED || ioctl(u, UFFDIO_API, &api) ||
	    ioctl(u, UFFDIO_REGISTER, &reg)) {
		result(-1);
		return;
	}
	pthread_create(&t, NULL, fork_main, NULL);
	if (read(u, &msg, sizeof(msg)) != sizeof(msg) ||
	    msg.event != UFFD_EVENT_FORK) {
		result(-1);
		return;
	}
	pthread_join(t, NULL);
	munmap(page, 4096);
	reply("ok %d %d", u, (int)msg.arg.fork.ufd);
}

static void command(char *line, char **argv)
{
	char a[256] = "", b[256] = "";
	int x = 0, y = 0, fds[2];
	char cmd[32] = "";

	sscanf(line, "%31s", cmd);
	if (!strcmp(cmd, "open")) {
		sscanf(line, "%*s %255s %255s", a, b);
		result(open(a, O_RDONLY | (strcmp(b, "cloexec") ? 0 : O_CLOEXEC)));
	} else if (!strcmp(cmd, "sysopen")) {
		/* glibc's open() is openat: make the old syscalls directly. */
		sscanf(line, "%*s %255s", a);
		result(syscall(SYS_open, a, O_RDONLY));
	} else if (!strcmp(cmd, "creat")) {
		sscanf(line, "%*s %255s", a);
		result(syscall(SYS_creat, a, 0600));
	} else if (!strcmp(cmd, "socket")) {
		sscanf(line, "%*s %255s %255s", a, b);
		result(socket(domain_of(a),
			      strcmp(b, "dgram") ? SOCK_STREAM : SOCK_DGRAM, 0));
	} else if (!strcmp(cmd, "pipe") || !strcmp(cmd, "pipe0") ||
		   !strcmp(cmd, "socketpair")) {
		int r = !strcmp(cmd, "pipe")  ? pipe2(fds, O_CLOEXEC) :
			!strcmp(cmd, "pipe0") ? syscall(SYS_pipe, fds) :
						socketpair(AF_UNIX, SOCK_STREAM,
							   0, fds);
		if (r < 0)
			result(r);
		else
			reply("ok %d %d", fds[0], fds[1]);
	} else if (!strcmp(cmd, "epoll")) {
		result(epoll_create1(0));
	} else if (!strcmp(cmd, "epollold")) {
		result(syscall(SYS_epoll_create, 1));
	} else if (!strcmp(cmd, "eventfd")) {
		result(eventfd(0, 0));
	} else if (!strcmp(cmd, "timerfd")) {
		result(timerfd_create(CLOCK_MONOTONIC, 0));
	} else if (!strcmp(cmd, "signalfd")) {
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		result(signalfd(-1, &set, 0));
	} else if (!strcmp(cmd, "inotify")) {
		result(inotify_init1(0));
	} else if (!strcmp(cmd, "memfd")) {
		result(memfd_create("fdops", 0));
	} else if (!strcmp(cmd, "pidfd")) {
		result(syscall(SYS_pidfd_open, getpid(), 0));
	} else if (!strcmp(cmd, "dup")) {
		sscanf(line, "%*s %d", &x);
		result(dup(x));
	} else if (!strcmp(cmd, "dup2")) {
		sscanf(line, "%*s %d %d", &x, &y);
		result(dup2(x, y));
	} else if (!strcmp(cmd, "dup3")) {
		sscanf(line, "%*s %d %d", &x, &y);
		result(dup3(x, y, O_CLOEXEC));
	} else if (!strcmp(cmd, "fcntl")) {
		sscanf(line, "%*s %d %d", &x, &y);
		result(fcntl(x, F_DUPFD, y));
	} else if (!strcmp(cmd, "close")) {
		sscanf(line, "%*s %d", &x);
		result(close(x));
	} else if (!strcmp(cmd, "closerange")) {
		sscanf(line, "%*s %d %d", &x, &y);
		result(syscall(SYS_close_range, x, y, 0));
	} else if (!strcmp(cmd, "limit")) {
		struct rlimit rl;

		sscanf(line, "%*s %d", &x);
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = x;
		result(setrlimit(RLIMIT_NOFILE, &rl));
	} else if (!strcmp(cmd, "listen")) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd < 0 || bind(fd, (void *)&sa, sizeof(sa)) ||
		    listen(fd, 8) || getsockname(fd, (void *)&sa, &len)) {
			result(-1);
			return;
		}
		reply("ok %d %d", fd, ntohs(sa.sin_port));
	} else if (!strcmp(cmd, "connect")) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		sscanf(line, "%*s %d", &x);
		sa.sin_port = htons(x);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd < 0 || connect(fd, (void *)&sa, sizeof(sa))) {
			result(-1);
			return;
		}
		result(fd);
	} else if (!strcmp(cmd, "accept")) {
		sscanf(line, "%*s %d", &x);
		result(accept4(x, NULL, NULL, SOCK_CLOEXEC));
	} else if (!strcmp(cmd, "acceptold")) {
		sscanf(line, "%*s %d", &x);
		result(syscall(SYS_accept, x, NULL, NULL));
	} else if (!strcmp(cmd, "passfd")) {
		/* Send fd FD over socket X, receive it on socket Y. */
		char data = 'x', cbuf[256] __attribute__((aligned(8)));
		struct iovec iov = { .iov_base = &data, .iov_len = 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = cbuf,
				      .msg_controllen = CMSG_SPACE(sizeof(int)) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		int fd;

		sscanf(line, "%*s %d %d %d", &x, &y, &fd);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
		if (sendmsg(x, &msg, 0) < 0) {
			result(-1);
			return;
		}
		msg.msg_controllen = sizeof(cbuf);
		if (recvmsg(y, &msg, 0) < 0) {
			result(-1);
			return;
		}
		/* With SO_PASSCRED, the credentials come first. */
		for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_type == SCM_RIGHTS)
				memcpy(&fd, CMSG_DATA(c), sizeof(int));
		result(fd);
	} else if (!strcmp(cmd, "recvmmsg")) {
		/* Pass fd X twice, in two messages received at once. */
		sscanf(line, "%*s %d", &x);
		recv_two(x);
	} else if (!strcmp(cmd, "bpfmap")) {
		union bpf_attr attr = { .map_type = BPF_MAP_TYPE_ARRAY,
					.key_size = 4, .value_size = 4,
					.max_entries = 1 };

		result(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
	} else if (!strcmp(cmd, "peerpidfd")) {
		/* The pidfd of socket X's peer (Linux 6.5). */
		int pidfd = -1;
		socklen_t len = sizeof(pidfd);

		sscanf(line, "%*s %d", &x);
		if (getsockopt(x, SOL_SOCKET, 77 /* SO_PEERPIDFD */, &pidfd,
			       &len) < 0)
			result(-1);
		else
			result(pidfd);
	} else if (!strcmp(cmd, "ptpeer")) {
		/* A pseudo-terminal and its peer, opened from it. */
		int m = posix_openpt(O_RDWR | O_NOCTTY);

		if (m < 0 || grantpt(m) || unlockpt(m)) {
			result(-1);
			return;
		}
		y = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
		if (y < 0)
			result(-1);
		else
			reply("ok %d %d", m, y);
	} else if (!strcmp(cmd, "fanotify")) {
		/* A group told of the opens of files in directory A. */
		sscanf(line, "%*s %255s", a);
		x = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
		if (x < 0 || fanotify_mark(x, FAN_MARK_ADD, FAN_OPEN | FAN_EVENT_ON_CHILD, AT_FDCWD,
					   a)) {
			result(-1);
			return;
		}
		result(x);
	} else if (!strcmp(cmd, "fanread")) {
		sscanf(line, "%*s %d %255s", &x, a);
		fanotify_read(x, a);
	} else if (!strcmp(cmd, "uffdfork")) {
		uffd_fork();
	} else if (!strcmp(cmd, "uffddev")) {
		/* A userfaultfd from /dev/userfaultfd (Linux 6.1). */
		x = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (x < 0) {
			result(-1);
			return;
		}
		y = ioctl(x, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		if (y < 0)
			result(-1);
		else
			reply("ok %d %d", x, y);
	} else if (!strcmp(cmd, "fill")) {
		fill();
	} else if (!strcmp(cmd, "thread")) {
		struct thread_arg arg = {};
		pthread_t t;

		sscanf(line, "%*s %d", &arg.n);
		pthread_create(&t, NULL, thread_main, &arg);
		pthread_join(t, NULL);
		reply("ok %d", arg.tid);
	} else if (!strcmp(cmd, "busy")) {
		busy_stop = 0;
		result(pthread_create(&busy_thread, NULL, busy_main, NULL));
	} else if (!strcmp(cmd, "stop")) {
		busy_stop = 1;
		result(pthread_join(busy_thread, NULL));
	} else if (!strcmp(cmd, "named")) {
		struct thread_arg arg = {};
		pthread_t t;

		sscanf(line, "%*s %d", &arg.n);
		pthread_create(&t, NULL, named_main, &arg);
		pthread_join(t, NULL);
		reply("ok 0");
	} else if (!strcmp(cmd, "clonepidfd")) {
		int pidfd = -1;
		long pid = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd,
				   NULL, 0);
		int status;

		if (pid == 0)
			_exit(0);
		if (pid < 0) {
			result(-1);
			return;
		}
		waitpid(pid, &status, 0);
		result(pidfd);
	} else if (!strcmp(cmd, "passcred")) {
		int one = 1;

		sscanf(line, "%*s %d", &x);
		result(setsockopt(x, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)));
	} else if (!strcmp(cmd, "fork")) {
		/* The child opens one file and closes fd X, then stops. */
		pid_t pid;
		int status;

		sscanf(line, "%*s %d", &x);
		pid = fork();
		if (pid == 0) {
			open("/dev/null", O_RDONLY);
			close(x);
			raise(SIGSTOP);
			_exit(0);
		}
		waitpid(pid, &status, WUNTRACED);
		reply("ok %d", pid);
	} else if (!strcmp(cmd, "clonefiles")) {
		/*
		 * A process sharing this one's table (CLONE_FILES, not a
		 * thread) opens one file and exits; the fd is its status.
		 */
		long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, NULL,
				   NULL, 0);
		int status;

		if (pid == 0)
			_exit(open("/dev/null", O_RDONLY));
		if (pid < 0 || waitpid(pid, &status, 0) < 0) {
			result(-1);
			return;
		}
		reply("ok %d %ld", WEXITSTATUS(status), pid);
	} else if (!strcmp(cmd, "sharedexits")) {
		/*
		 * n times: a child opens a file and makes a process sharing
		 * its table (CLONE_FILES), and both exit at once. The sharing
		 * processes, orphaned, are this one's to reap: it answers
		 * once every one of them is gone.
		 */
		int status, made = 0;

		sscanf(line, "%*s %d", &x);
		prctl(PR_SET_CHILD_SUBREAPER, 1);
		for (int i = 0; i < x; i++) {
			pid_t pid = fork();

			if (pid == 0) {
				open("/dev/null", O_RDONLY);
				syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, NULL,
					NULL, 0);
				_exit(0); /* both */
			}
			if (pid < 0 || waitpid(pid, &status, 0) < 0)
				break;
			made++;
		}
		for (int i = 0; i < made; i++)
			if (waitpid(-1, &status, 0) < 0)
				break;
		prctl(PR_SET_CHILD_SUBREAPER, 0);
		if (made < x) {
			result(-1);
			return;
		}
		reply("ok %d", x);
	} else if (!strcmp(cmd, "reap")) {
		int status;

		sscanf(line, "%*s %d", &x);
		kill(x, SIGKILL);
		result(waitpid(x, &status, 0));
	} else if (!strcmp(cmd, "exec")) {
		char *args[] = { argv[0], "--after-exec", NULL };

		execv("/proc/self/exe", args);
		result(-1);
	} else if (!strcmp(cmd, "exit")) {
		sscanf(line, "%*s %d", &x);
		exit(x);
	} else {
		reply("err unknown command %s", cmd);
	}
}

int main(int argc, char **argv)
{
	char line[1024];

	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && !strcmp(argv[1], "--after-exec"))
		reply("ok exec");
	else
		reply("ok ready");
	while (read_line(line, sizeof(line)) >= 0)
		command(line, argv);
	return 0;
}
