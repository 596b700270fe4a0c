// SPDX-License-Identifier: GPL-2.0
/*
 * leaky: leaks known numbers of fds from known functions, balances many
 * others, says "ready" and waits for stdin to close. Usage:
 *   leaky FILES SOCKETS PIPES EPOLLS
 * Built with -fno-omit-frame-pointer against the system glibc; the lines
 * marked LEAK name the calls the leak report must point at.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) int open_config(void)
{
	return open("/etc/hostname", O_RDONLY); /* LEAK open_config */
}

__attribute__((noinline)) int connect_db(void)
{
	return socket(AF_INET, SOCK_STREAM, 0); /* LEAK connect_db */
}

__attribute__((noinline)) int make_pipe(int *p)
{
	return pipe2(p, O_CLOEXEC); /* LEAK make_pipe */
}

__attribute__((noinline)) int make_epoll(void)
{
	return epoll_create1(0); /* LEAK make_epoll */
}

/* Opens and closes everything it makes: nothing here may be reported. */
__attribute__((noinline)) void balanced(int n)
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

int main(int argc, char **argv)
{
	int files = argc > 1 ? atoi(argv[1]) : 0;
	int sockets = argc > 2 ? atoi(argv[2]) : 0;
	int pipes = argc > 3 ? atoi(argv[3]) : 0;
	int epolls = argc > 4 ? atoi(argv[4]) : 0;
	char buf[64];

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
	balanced(100);
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
