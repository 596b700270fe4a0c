// SPDX-License-Identifier: GPL-2.0
/*
 * leaky: leaks known numbers of fds from known functions, balances many
 * others, says "ready" and waits for stdin to close. Usage:
 *   leaky FILES SOCKETS PIPES EPOLLS [FOPENS OPENATS DUPS ACCEPTS [CHILD]]
 * ACCEPTS connections are accepted by another thread; with CHILD=1 a
 * forked child, inheriting all of the above, opens one file of its own and
 * waits for stdin to close too.
 * Built against the system glibc, with frame pointers and at -O2 without;
 * the lines marked LEAK name the calls the leak report must point at.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Where each leaker puts what it made. The leaker then has work left after
 * its call, which so is no tail call: its frame is on the stack at -O2 too.
 * noipa keeps gcc from cloning leakers (dup_high.constprop.0).
 */
static int kept[4096];
static int nkept;

__attribute__((noipa)) int keep(int fd)
{
	if (nkept < 4096)
		kept[nkept++] = fd;
	return fd;
}

__attribute__((noipa)) FILE *keep_file(FILE *f)
{
	keep(f ? fileno(f) : -1);
	return f;
}

__attribute__((noipa)) int open_config(void)
{
	return keep(open("/etc/hostname", O_RDONLY)); /* LEAK open_config */
}

__attribute__((noipa)) int connect_db(void)
{
	return keep(socket(AF_INET, SOCK_STREAM, 0)); /* LEAK connect_db */
}

__attribute__((noipa)) int make_pipe(int *p)
{
	return keep(pipe2(p, O_CLOEXEC)); /* LEAK make_pipe */
}

__attribute__((noipa)) int make_epoll(void)
{
	return keep(epoll_create1(0)); /* LEAK make_epoll */
}

/* stdio goes a few functions deep into libc before the syscall. */
__attribute__((noipa)) FILE *open_log(void)
{
	return keep_file(fopen("/etc/hostname", "r")); /* LEAK open_log */
}

__attribute__((noipa)) int open_relative(void)
{
	int fd = openat(AT_FDCWD, "/etc/hostname", O_RDONLY); /* LEAK open_relative */

	return keep(fd);
}

__attribute__((noipa)) int dup_high(int fd)
{
	return keep(fcntl(fd, F_DUPFD_CLOEXEC, 100)); /* LEAK dup_high */
}

__attribute__((noipa)) int accept_conn(int listener)
{
	int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC); /* LEAK accept_conn */

	return keep(fd);
}

__attribute__((noipa)) int child_open(void)
{
	return keep(open("/etc/hostname", O_RDONLY)); /* LEAK child_open */
}

struct acceptor {
	int listener;
	int n;
};

static void *acceptor(void *arg)
{
	struct acceptor *a = arg;

	for (int i = 0; i < a->n; i++)
		accept_conn(a->listener);
	return NULL;
}

/*
 * n loopback connections, accepted by another thread; the client ends are
 * leaked too (from main).
 */
static void accept_in_thread(int n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct acceptor a = { .n = n };
	pthread_t t;

	a.listener = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(a.listener, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(a.listener, n) ||
	    getsockname(a.listener, (struct sockaddr *)&sa, &len) ||
	    pthread_create(&t, NULL, acceptor, &a)) {
		perror("leaky: listener");
		exit(1);
	}
	for (int i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(c, (struct sockaddr *)&sa, sizeof(sa))) {
			perror("leaky: connect");
			exit(1);
		}
	}
	pthread_join(t, NULL);
	close(a.listener);
}

static void wait_stdin(void)
{
	char buf[64];

	while (read(0, buf, sizeof(buf)) > 0)
		;
}

/* A child that opens one file, says so on a pipe, and waits. */
static void fork_child(void)
{
	int p[2];
	char c;

	if (pipe(p)) {
		perror("leaky: pipe");
		exit(1);
	}
	if (fork() == 0) {
		close(p[0]);
		child_open();
		write(p[1], "x", 1);
		close(p[1]);
		wait_stdin();
		_exit(0);
	}
	close(p[1]);
	read(p[0], &c, 1);
	close(p[0]);
}

/* Opens and closes everything it makes: nothing here may be reported. */
__attribute__((noipa)) void balanced(int n)
{
	for (int i = 0; i < n; i++) {
		int p[2];

		close(open("/etc/hostname", O_RDONLY));
		close(socket(AF_UNIX, SOCK_DGRAM, 0));
		if (pipe2(p, 0) == 0) {
			close(p[0]);
			close(p[1]);
		}
	}
}

static int arg(int argc, char **argv, int i)
{
	return argc > i ? atoi(argv[i]) : 0;
}

int main(int argc, char **argv)
{
	int files = arg(argc, argv, 1), sockets = arg(argc, argv, 2);
	int pipes = arg(argc, argv, 3), epolls = arg(argc, argv, 4);
	int fopens = arg(argc, argv, 5), openats = arg(argc, argv, 6);
	int dups = arg(argc, argv, 7), accepts = arg(argc, argv, 8);

	balanced(100);
	for (int i = 0; i < files; i++)
		open_config();
	for (int i = 0; i < sockets; i++)
		connect_db();
	for (int i = 0; i < pipes; i++) {
		int p[2];

		make_pipe(p);
	}
	for (int i = 0; i < epolls; i++)
		make_epoll();
	for (int i = 0; i < fopens; i++)
		open_log();
	for (int i = 0; i < openats; i++)
		open_relative();
	for (int i = 0; i < dups; i++)
		dup_high(0);
	if (accepts)
		accept_in_thread(accepts);
	balanced(100);
	if (arg(argc, argv, 9))
		fork_child();
	printf("ready\n");
	fflush(stdout);
	wait_stdin();
	while (wait(NULL) > 0)
		;
	return 0;
}
