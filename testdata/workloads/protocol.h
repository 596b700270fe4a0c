// SPDX-License-Identifier: GPL-2.0
/*
 * The line protocol of the workloads driven on stdin: one command per
 * line in, one answer per line out, "ok [values...]" or "err ERRNO".
 */
#ifndef WORKLOAD_PROTOCOL_H
#define WORKLOAD_PROTOCOL_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void reply(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	buf[n++] = '\n';
	if (write(1, buf, n) != n)
		exit(2);
}

static void result(long ret)
{
	if (ret < 0)
		reply("err %d", errno);
	else
		reply("ok %ld", ret);
}

/* Unbuffered, so that input survives an exec of ourselves. */
static int read_line(char *buf, int size)
{
	int n = 0;

	while (n < size - 1) {
		char c;
		ssize_t r = read(0, &c, 1);

		if (r <= 0)
			return -1;
		if (c == '\n')
			break;
		buf[n++] = c;
	}
	buf[n] = 0;
	return n;
}

#endif
