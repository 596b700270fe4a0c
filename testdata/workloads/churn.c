// SPDX-License-Identifier: GPL-2.0
/*
 * churn: short-lived processes and steady fd traffic, for the soak test.
 * Driven by lines on stdin (see protocol.h):
 *   churn N RATE   fork N children, RATE a second (0: at once); each opens
 *                  /dev/null, a pipe and a unix socket, closes /dev/null and
 *                  exits with the other three open. Between forks the parent
 *                  opens and closes /dev/null once. Answers "ok N PAIRS"
 *                  once every child has been reaped.
 * It says "ok ready" first. Built static, so that no dynamic loader opens
 * files behind its back: every fd it creates is one of the above.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "protocol.h"

static void child(void)
{
	int null = open("/dev/null", O_RDONLY);
	int p[2];

	if (null < 0 || pipe2(p, 0) < 0 || socket(AF_UNIX, SOCK_DGRAM, 0) < 0)
		_exit(1);
	close(null);
	_exit(0);
}

static int reap(int flags)
{
	int status, n = 0;

	while (waitpid(-1, &status, flags) > 0) {
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			reply("err %d", ECHILD);
			exit(1);
		}
		n++;
	}
	return n;
}

static void churn(long n, long rate)
{
	struct timespec start, at;
	long i, pairs = 0;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (i = 0; i < n; i++) {
		if (rate > 0) {
			long long ns = start.tv_nsec + i * 1000000000LL / rate;

			at.tv_sec = start.tv_sec + ns / 1000000000LL;
			at.tv_nsec = ns % 1000000000LL;
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at,
					NULL);
		}
		pid_t pid = fork();

		if (pid < 0) {
			result(-1);
			return;
		}
		if (pid == 0)
			child();
		int fd = open("/dev/null", O_RDONLY);

		if (fd < 0 || close(fd) < 0) {
			result(-1);
			return;
		}
		pairs++;
		reap(WNOHANG);
	}
	reap(0);
	reply("ok %ld %ld", n, pairs);
}

int main(void)
{
	char line[128], cmd[32];
	long a, b;

	reply("ok ready");
	while (read_line(line, sizeof(line)) >= 0) {
		if (sscanf(line, "%31s %ld %ld", cmd, &a, &b) == 3 &&
		    !strcmp(cmd, "churn"))
			churn(a, b);
		else
			reply("err %d", EINVAL);
	}
	return 0;
}
