// SPDX-License-Identifier: GPL-2.0
/*
 * topload: a process with a known fd count, limit and pace, for the tests
 * of fdtrace top. Usage:
 *   topload NAME OPEN LIMIT MODE
 * It takes the name NAME, closes any fd it inherited above 2, opens
 * /dev/null until it has OPEN fds (0, 1 and 2 included), sets its soft
 * RLIMIT_NOFILE to LIMIT (after opening, so LIMIT may be below OPEN), says
 * "ready" and then, every 20 ms until its stdin closes:
 *   idle   nothing
 *   grow   opens one fd (while below LIMIT - 1)
 *   fail   opens one fd, which fails with EMFILE when OPEN >= LIMIT
 * Built static, so that no dynamic loader opens files behind its back.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct pollfd in = { .fd = 0, .events = POLLIN };
	struct rlimit rl;
	const char *mode;
	int open_fds, limit;

	if (argc != 5) {
		fprintf(stderr, "usage: topload NAME OPEN LIMIT MODE\n");
		return 2;
	}
	prctl(PR_SET_NAME, argv[1]);
	limit = atoi(argv[3]);
	mode = argv[4];
	syscall(SYS_close_range, 3, ~0U, 0);
	for (open_fds = 3; open_fds < atoi(argv[2]); open_fds++)
		if (open("/dev/null", O_RDONLY) < 0) {
			perror("open");
			return 1;
		}
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = limit;
	if (setrlimit(RLIMIT_NOFILE, &rl)) {
		perror("setrlimit");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	/* Until stdin is closed (or the test that started it dies). */
	while (poll(&in, 1, 20) == 0) {
		if (!strcmp(mode, "grow") && open_fds < limit - 1) {
			if (open("/dev/null", O_RDONLY) >= 0)
				open_fds++;
		} else if (!strcmp(mode, "fail")) {
			if (open("/dev/null", O_RDONLY) >= 0)
				open_fds++;
		}
	}
	return 0;
}
