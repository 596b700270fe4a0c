// SPDX-License-Identifier: GPL-2.0
/*
 * acceptor: a TCP server driven line by line on stdin, to run out of fds
 * while connections wait in its listen queues. Each command answers one
 * line: "ok [values...]" or "err ERRNO". "uvserve" accepts as libuv does,
 * with its trick for EMFILE: close a spare fd, accept and close every
 * queued connection, open the spare again.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol.h"

#define MAX_FILL 4096

static int spare = -1;
static int filled[MAX_FILL];
static int nfilled;

static int accept_one(int lfd)
{
	return accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* libuv's uv__emfile_trick: make room, drop what is queued, keep the room. */
static int emfile_trick(int lfd, int *dropped)
{
	int fd;

	if (spare < 0)
		return EMFILE;
	close(spare);
	spare = -1;
	do {
		fd = accept_one(lfd);
		if (fd >= 0) {
			close(fd);
			(*dropped)++;
		}
	} while (fd >= 0 || errno == EINTR);
	fd = errno;
	spare = open("/", O_RDONLY | O_CLOEXEC);
	return fd;
}

/* libuv's uv__server_io: accept until the queue is empty. */
static void uvserve(int lfd)
{
	int accepted = 0, dropped = 0, refused = 0, fd;

	for (;;) {
		fd = accept_one(lfd);
		if (fd >= 0) {
			accepted++; /* handed to the connection callback */
			continue;
		}
		if (errno == EAGAIN)
			break;
		if (errno == ECONNABORTED || errno == EINTR)
			continue;
		if (errno != EMFILE && errno != ENFILE)
			break;
		refused++;
		if (emfile_trick(lfd, &dropped) == EAGAIN)
			break;
	}
	reply("ok %d %d %d %d", accepted, dropped, refused, spare);
}

static void command(char *line)
{
	char cmd[32] = "";
	int x = 0, y = 0;

	sscanf(line, "%31s", cmd);
	if (!strcmp(cmd, "listen")) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd < 0 || bind(fd, (void *)&sa, sizeof(sa)) ||
		    listen(fd, 64) || getsockname(fd, (void *)&sa, &len)) {
			result(-1);
			return;
		}
		reply("ok %d %d", fd, ntohs(sa.sin_port));
	} else if (!strcmp(cmd, "queued")) {
		/* A listener's tcpi_unacked is its accept queue's length. */
		struct tcp_info ti;
		socklen_t len = sizeof(ti);

		sscanf(line, "%*s %d", &x);
		if (getsockopt(x, IPPROTO_TCP, TCP_INFO, &ti, &len))
			result(-1);
		else
			result(ti.tcpi_unacked);
	} else if (!strcmp(cmd, "spare")) {
		spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		result(spare);
	} else if (!strcmp(cmd, "limit")) {
		struct rlimit rl;

		sscanf(line, "%*s %d", &x);
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = x;
		result(setrlimit(RLIMIT_NOFILE, &rl));
	} else if (!strcmp(cmd, "fill")) {
		int n = 0, fd;

		while (nfilled < MAX_FILL &&
		       (fd = open("/dev/null", O_RDONLY)) >= 0) {
			filled[nfilled++] = fd;
			n++;
		}
		reply("ok %d %d", n, errno);
	} else if (!strcmp(cmd, "unfill")) {
		sscanf(line, "%*s %d", &x);
		for (y = 0; y < x && nfilled > 0; y++)
			close(filled[--nfilled]);
		result(y);
	} else if (!strcmp(cmd, "accept")) {
		sscanf(line, "%*s %d", &x);
		result(accept_one(x));
	} else if (!strcmp(cmd, "retry")) {
		/* A server that just tries again: count the refusals. */
		int n = 0;

		sscanf(line, "%*s %d %d", &x, &y);
		for (int i = 0; i < y; i++) {
			int fd = accept_one(x);

			if (fd >= 0) {
				close(fd);
				reply("err %d", EALREADY);
				return;
			}
			if (errno == EMFILE)
				n++;
		}
		result(n);
	} else if (!strcmp(cmd, "uvserve")) {
		sscanf(line, "%*s %d", &x);
		uvserve(x);
	} else if (!strcmp(cmd, "serve")) {
		/* Read the request, answer and hang up. */
		char req[256];

		sscanf(line, "%*s %d", &x);
		if (fcntl(x, F_SETFL, 0) || read(x, req, sizeof(req)) <= 0 ||
		    write(x, "hello\n", 6) != 6) {
			result(-1);
			return;
		}
		result(close(x));
	} else if (!strcmp(cmd, "close")) {
		sscanf(line, "%*s %d", &x);
		result(close(x));
	} else {
		reply("err %d", EINVAL);
	}
}

int main(void)
{
	char line[256];

	signal(SIGPIPE, SIG_IGN);
	reply("ok ready");
	while (read_line(line, sizeof(line)) >= 0)
		command(line);
	return 0;
}
