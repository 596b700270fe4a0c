// SPDX-License-Identifier: GPL-2.0
/*
 * fdmix: holds a known number of fds of every kind, for the snapshot and
 * budget tests. Usage: fdmix [--netns] DIR_A DIR_B
 *
 * It closes every fd it inherited but stdio; with stdin, stdout and
 * stderr pipes, it then holds 47 fds:
 *   files    4 in DIR_A (a0..a3), 2 in DIR_B (b0, b1)
 *   pipes    2 pipes (4 fds), plus the 3 stdio pipes
 *   epoll 1, eventfd 2, timerfd 1, signalfd 1, inotify 1, memfd 1
 *   unix     a socketpair (2), a listener bound to DIR_B/fdmix.sock (1)
 *   udp      1 bound to 127.0.0.1
 *   tcp      listener A (backlog 7) with 3 connections left un-accepted;
 *            listener B (backlog 16) with 5 accepted connections;
 *            listener C on [::1] (backlog 4) with 2 accepted connections;
 *            listener D (backlog 1) with 2 un-accepted connections, its
 *            queue full: 4 listeners, 12 clients, 7 accepted.
 * With --netns it runs in a new network namespace and also makes two
 * connection attempts to D that overflow its queue (ListenOverflows 2).
 *
 * Then it prints "ready PORT_A PORT_B PORT_C PORT_D" and reads commands:
 *   burst FILES PIPES CONNS EVENTFDS MS  open FILES files in DIR_A, PIPES
 *       pipes, CONNS connections to B (accepted), then EVENTFDS eventfds;
 *       hold them MS ms, close them all, answer "ok"
 *   exit  exit 0 (so does the end of stdin)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "fdmix: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int check(int fd, const char *what)
{
	if (fd < 0)
		die(what);
	return fd;
}

static void open_in(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	check(open(path, O_RDWR | O_CREAT, 0644), path);
}

/* A TCP listener on loopback; returns the fd and sets *port. */
static int listener(int family, int backlog, int *port)
{
	struct sockaddr_storage ss = { .ss_family = family };
	socklen_t len = sizeof(ss);
	int fd = check(socket(family, SOCK_STREAM, 0), "socket");

	if (family == AF_INET6) {
		struct sockaddr_in6 *sa = (void *)&ss;

		sa->sin6_addr = in6addr_loopback;
		len = sizeof(*sa);
	} else {
		struct sockaddr_in *sa = (void *)&ss;

		sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*sa);
	}
	if (bind(fd, (void *)&ss, len) || listen(fd, backlog))
		die("listen");
	len = sizeof(ss);
	if (getsockname(fd, (void *)&ss, &len))
		die("getsockname");
	*port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
					    ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static int connect_to(int family, int port, int flags)
{
	struct sockaddr_storage ss = { .ss_family = family };
	socklen_t len;
	int fd = check(socket(family, SOCK_STREAM | flags, 0), "socket");

	if (family == AF_INET6) {
		struct sockaddr_in6 *sa = (void *)&ss;

		sa->sin6_addr = in6addr_loopback;
		sa->sin6_port = htons(port);
		len = sizeof(*sa);
	} else {
		struct sockaddr_in *sa = (void *)&ss;

		sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa->sin_port = htons(port);
		len = sizeof(*sa);
	}
	if (connect(fd, (void *)&ss, len) && errno != EINPROGRESS)
		die("connect");
	return fd;
}

/* Waits until listener fd has n connections waiting to be accepted. */
static void wait_queue(int fd, unsigned n)
{
	for (int i = 0; i < 10000; i++) {
		struct tcp_info ti;
		socklen_t len = sizeof(ti);

		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
			die("TCP_INFO");
		if (ti.tcpi_unacked == n) /* the accept queue, for a listener */
			return;
		usleep(1000);
	}
	fprintf(stderr, "fdmix: accept queue never reached %u\n", n);
	exit(1);
}

static unsigned long listen_overflows(void)
{
	char line[8192], names[8192];
	unsigned long v = 0;
	FILE *f = fopen("/proc/self/net/netstat", "r");

	if (!f)
		die("netstat");
	/* TcpExt: names line, then TcpExt: values line. */
	while (fgets(names, sizeof(names), f) && fgets(line, sizeof(line), f)) {
		char *n, *val, *sn, *sv;
		if (strncmp(names, "TcpExt:", 7))
			continue;
		n = strtok_r(names, " \n", &sn);
		val = strtok_r(line, " \n", &sv);
		while ((n = strtok_r(NULL, " \n", &sn)) &&
		       (val = strtok_r(NULL, " \n", &sv)))
			if (!strcmp(n, "ListenOverflows"))
				v = strtoul(val, NULL, 10);
	}
	fclose(f);
	return v;
}

static void new_netns(void)
{
	struct ifreq ifr = {};
	int fd;

	if (unshare(CLONE_NEWNET))
		die("unshare");
	fd = check(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket");
	strcpy(ifr.ifr_name, "lo");
	ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr))
		die("lo up");
	close(fd);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int listen_b; /* B: the listener bursts connect to */

static void burst(const char *dir, int port, int files, int pipes, int conns,
		  int events, int ms)
{
	int fds[4096], n = 0, i;

	if (files < 0 || pipes < 0 || conns < 0 || events < 0 || conns > 16 ||
	    files + 2 * pipes + 2 * conns + events > 4096) {
		printf("err %d\n", E2BIG);
		return;
	}
	for (i = 0; i < files; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/burst%d", dir, i);
		fds[n++] = check(open(path, O_RDWR | O_CREAT, 0644), path);
	}
	for (i = 0; i < pipes; i++, n += 2)
		check(pipe(fds + n), "pipe");
	/* Connect all, then accept all: B's backlog is 16. */
	for (i = 0; i < conns; i++)
		fds[n++] = connect_to(AF_INET, port, 0);
	for (i = 0; i < conns; i++)
		fds[n++] = check(accept(listen_b, NULL, NULL), "accept");
	for (i = 0; i < events; i++)
		fds[n++] = check(eventfd(0, 0), "eventfd");
	msleep(ms);
	while (n > 0)
		close(fds[--n]);
	printf("ok\n");
}

int main(int argc, char **argv)
{
	int netns = argc > 1 && !strcmp(argv[1], "--netns");
	int pa, pb, pc, pd, la, lc, ld, sv[2], p[2], i;
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	struct sockaddr_in udp = { .sin_family = AF_INET };
	sigset_t mask;
	char line[256];
	const char *dir_a, *dir_b;

	if (argc != 3 + netns) {
		fprintf(stderr, "usage: fdmix [--netns] DIR_A DIR_B\n");
		return 2;
	}
	/* Only stdio: nothing its parent leaked. */
	if (syscall(SYS_close_range, 3, ~0U, 0))
		die("close_range");
	dir_a = argv[1 + netns];
	dir_b = argv[2 + netns];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (netns)
		new_netns();

	for (i = 0; i < 4; i++) {
		char name[8];

		snprintf(name, sizeof(name), "a%d", i);
		open_in(dir_a, name);
	}
	open_in(dir_b, "b0");
	open_in(dir_b, "b1");
	for (i = 0; i < 2; i++)
		check(pipe(p), "pipe");
	check(epoll_create1(0), "epoll");
	check(eventfd(0, 0), "eventfd");
	check(eventfd(0, 0), "eventfd");
	check(timerfd_create(CLOCK_MONOTONIC, 0), "timerfd");
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	check(signalfd(-1, &mask, 0), "signalfd");
	check(inotify_init1(0), "inotify");
	check(memfd_create("fdmix", 0), "memfd");

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	i = check(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	snprintf(un.sun_path, sizeof(un.sun_path), "%s/fdmix.sock", dir_b);
	unlink(un.sun_path);
	if (bind(i, (void *)&un, sizeof(un)) || listen(i, 5))
		die("unix listen");
	i = check(socket(AF_INET, SOCK_DGRAM, 0), "socket");
	udp.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(i, (void *)&udp, sizeof(udp)))
		die("udp bind");

	la = listener(AF_INET, 7, &pa);
	for (i = 0; i < 3; i++)
		connect_to(AF_INET, pa, 0);
	wait_queue(la, 3);
	listen_b = listener(AF_INET, 16, &pb);
	for (i = 0; i < 5; i++)
		connect_to(AF_INET, pb, 0);
	for (i = 0; i < 5; i++)
		check(accept(listen_b, NULL, NULL), "accept");
	lc = listener(AF_INET6, 4, &pc);
	for (i = 0; i < 2; i++)
		connect_to(AF_INET6, pc, 0);
	for (i = 0; i < 2; i++)
		check(accept(lc, NULL, NULL), "accept");
	ld = listener(AF_INET, 1, &pd);
	for (i = 0; i < 2; i++)
		connect_to(AF_INET, pd, 0);
	wait_queue(ld, 2);
	if (netns) {
		/* The queue is full: each SYN is dropped, once (the socket is
		 * closed before it can retry). */
		for (i = 0; i < 2; i++)
			close(connect_to(AF_INET, pd, SOCK_NONBLOCK));
		for (i = 0; i < 10000 && listen_overflows() < 2; i++)
			usleep(1000);
		if (listen_overflows() != 2) {
			fprintf(stderr, "fdmix: ListenOverflows %lu, want 2\n",
				listen_overflows());
			return 1;
		}
	}

	printf("ready %d %d %d %d\n", pa, pb, pc, pd);
	while (fgets(line, sizeof(line), stdin)) {
		int f, np, c, e, ms;

		if (sscanf(line, "burst %d %d %d %d %d", &f, &np, &c, &e, &ms) == 5)
			burst(dir_a, pb, f, np, c, e, ms);
		else if (!strncmp(line, "exit", 4))
			return 0;
		else
			printf("err %d\n", EINVAL);
	}
	return 0;
}
