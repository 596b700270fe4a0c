//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark workload: loops of fd-creating syscalls and closes.
 *
 *   fdbench-work MODE N [RATE]
 *     MODE open    open("/dev/null") + close                 (1 op = 2 fd events)
 *          socket  socket(AF_INET, SOCK_STREAM) + close      (2)
 *          pipe    pipe2 + close of both ends                (4)
 *          accept  socket + connect to a loopback listener + accept4,
 *                  close of both ends                        (4)
 *          mixed   openat, socket and pipe2 in turn; fds live in a window
 *                  of 64 and the oldest is closed            (~2.7)
 *          deep    open + close under 33 calls of deep_call  (2)
 *     N    iterations (ops)
 *     RATE ops per second, paced in 1 ms batches; 0 or absent: flat out
 *     WARMUP milliseconds of ops, flat out and untimed, before the timed
 *          loop (a tracer's first stacks of a process cost more)
 *   Prints "ns_per_op=F ops=N elapsed_ns=N".
 *
 *   fdbench-work hold N    opens N fds of /dev/null, prints "ready", then
 *                          holds them until stdin reaches EOF.
 *   fdbench-work addrs     prints "name=0xADDR" for functions of this binary
 *                          and of libc, then waits for EOF on stdin.
 *
 * Built with -fno-omit-frame-pointer and noinline loop bodies, so a stack
 * walk sees op -> loop -> main, as in a real program; the Stacks section
 * (bench/stacks.go) builds it without frame pointers too. bench/env.go
 * embeds this file and compiles it; the go:build line keeps the go tool
 * from taking it for a cgo source of package main.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define WINDOW 64

static void die(const char *what)
{
	fprintf(stderr, "fdbench-work: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static NOINLINE void open_close(void)
{
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0)
		die("open /dev/null");
	close(fd);
}

static NOINLINE void socket_close(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	close(fd);
}

static NOINLINE void pipe_close(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe2");
	close(p[0]);
	close(p[1]);
}

#define DEEP 32

/* open_close under n + 1 calls of deep_call; the asm after the call keeps
 * it from being a tail call, so every level has its frame on the stack. */
static __attribute__((noipa)) int deep_call(int n)
{
	if (n == 0)
		open_close();
	else
		deep_call(n - 1);
	__asm__ volatile("" ::: "memory");
	return n;
}

static NOINLINE void deep_open_close(void)
{
	deep_call(DEEP);
}

static int listener = -1;
static struct sockaddr_in listen_addr;

static void listen_loopback(void)
{
	socklen_t len = sizeof(listen_addr);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	if (listener < 0)
		die("socket");
	listen_addr.sin_family = AF_INET;
	listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(listener, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0 ||
	    listen(listener, 128) < 0 ||
	    getsockname(listener, (struct sockaddr *)&listen_addr, &len) < 0)
		die("listen on loopback");
}

static NOINLINE void accept_close(void)
{
	/* An abortive close (RST) leaves no TIME_WAIT socket, so a long run
	 * does not run out of ephemeral ports. */
	struct linger rst = {.l_onoff = 1, .l_linger = 0};
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0)
		die("socket");
	if (connect(c, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0)
		die("connect");
	int a = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (a < 0)
		die("accept4");
	setsockopt(c, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
	close(c);
	close(a);
}

static int window[WINDOW];
static unsigned window_pos;
static unsigned long mixed_turn;

static void window_push(int fd)
{
	if (window[window_pos] >= 0)
		close(window[window_pos]);
	window[window_pos] = fd;
	window_pos = (window_pos + 1) % WINDOW;
}

static NOINLINE void mixed_one(void)
{
	int fd, p[2];
	switch (mixed_turn++ % 3) {
	case 0:
		if ((fd = open("/dev/null", O_RDONLY)) < 0)
			die("open /dev/null");
		window_push(fd);
		break;
	case 1:
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
			die("socket");
		window_push(fd);
		break;
	default:
		if (pipe2(p, O_CLOEXEC) < 0)
			die("pipe2");
		window_push(p[0]);
		window_push(p[1]);
	}
}

static void window_close_all(void)
{
	for (int i = 0; i < WINDOW; i++)
		if (window[i] >= 0)
			close(window[i]);
}

/* run_loop calls op n times, paced at rate ops/s when rate > 0. */
static NOINLINE long long run_loop(void (*op)(void), long n, long rate)
{
	long long start = now_ns();
	if (rate <= 0) {
		for (long i = 0; i < n; i++)
			op();
		return now_ns() - start;
	}
	long per_ms = rate / 1000 > 0 ? rate / 1000 : 1;
	long long tick = 1000000LL * per_ms * 1000 / rate; /* ns per batch */
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (long i = 0; i < n; i++) {
		op();
		if ((i + 1) % per_ms)
			continue;
		next.tv_nsec += tick;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	return now_ns() - start;
}

/* warm_up calls op for ms milliseconds, untimed. */
static NOINLINE void warm_up(void (*op)(void), long ms)
{
	long long end = now_ns() + ms * 1000000LL;

	while (now_ns() < end)
		op();
}

int main(int argc, char **argv);

static void wait_stdin_eof(void)
{
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0)
		;
}

static void hold(long n)
{
	for (long i = 0; i < n; i++)
		if (open("/dev/null", O_RDONLY) < 0)
			die("open /dev/null");
	printf("ready\n");
	fflush(stdout);
	wait_stdin_eof();
}

static void print_addrs(void)
{
	printf("open_close=%p\nsocket_close=%p\npipe_close=%p\naccept_close=%p\n"
	       "mixed_one=%p\nrun_loop=%p\nmain=%p\nopen=%p\nsocket=%p\npipe2=%p\n",
	       (void *)open_close, (void *)socket_close, (void *)pipe_close,
	       (void *)accept_close, (void *)mixed_one, (void *)run_loop,
	       (void *)main, (void *)open, (void *)socket, (void *)pipe2);
	fflush(stdout);
	wait_stdin_eof();
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "addrs")) {
		print_addrs();
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: %s open|socket|pipe|accept|mixed|deep|hold N [RATE [WARMUP]] | addrs\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	long rate = argc > 3 ? atol(argv[3]) : 0;
	long warmup = argc > 4 ? atol(argv[4]) : 0;
	void (*op)(void);
	if (!strcmp(argv[1], "hold")) {
		hold(n);
		return 0;
	} else if (!strcmp(argv[1], "open")) {
		op = open_close;
	} else if (!strcmp(argv[1], "socket")) {
		op = socket_close;
	} else if (!strcmp(argv[1], "pipe")) {
		op = pipe_close;
	} else if (!strcmp(argv[1], "accept")) {
		listen_loopback();
		op = accept_close;
	} else if (!strcmp(argv[1], "mixed")) {
		memset(window, -1, sizeof(window));
		op = mixed_one;
	} else if (!strcmp(argv[1], "deep")) {
		op = deep_open_close;
	} else {
		fprintf(stderr, "fdbench-work: unknown mode %s\n", argv[1]);
		return 2;
	}
	if (warmup > 0)
		warm_up(op, warmup);
	long long ns = run_loop(op, n, rate);
	if (op == mixed_one)
		window_close_all();
	printf("ns_per_op=%.1f ops=%ld elapsed_ns=%lld\n", (double)ns / n, n, ns);
	return 0;
}
