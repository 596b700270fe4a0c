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
 *          uring   IORING_OP_OPENAT of /dev/null, then IORING_OP_CLOSE,
 *                  each submitted and waited for by io_uring_enter (2)
 *          read    read(2) of a byte of /dev/zero, once a fanotify group
 *                  exists (fdtrace then hooks every read)        (0)
 *     N    iterations (ops)
 *     RATE ops per second, paced in 1 ms batches; 0 or absent: flat out
 *     WARMUP milliseconds of ops, flat out and untimed, before the timed
 *          loop (a tracer's first stacks of a process cost more)
 *   Prints "ns_per_op=F ops=N elapsed_ns=N fd_events=N": fd_events counts
 *   every fd created and closed, warm-up included.
 *
 *   fdbench-work hold N    opens N fds of /dev/null, prints "ready", then
 *                          holds them until stdin reaches EOF.
 *   fdbench-work addrs     prints "name=0xADDR" for functions of this binary
 *                          and of libc, then waits for EOF on stdin.
 *
 * The binary is fdbench (bench/env.go): the process takes the name the
 * tracers follow, fdbench-work, in main.
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
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define WINDOW 64

/* fds created and closed: what a tracer streaming every event must write. */
static long fd_events;

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
	fd_events += 2;
}

static NOINLINE void socket_close(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	close(fd);
	fd_events += 2;
}

static NOINLINE void pipe_close(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("pipe2");
	close(p[0]);
	close(p[1]);
	fd_events += 4;
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
	fd_events++;
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
	fd_events += 4;
}

/* An io_uring of raw syscalls (no liburing): one request at a time. */
static struct {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
} ring;

static void *map_ring(size_t size, off_t what)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, ring.fd, what);

	if (p == MAP_FAILED)
		die("mmap io_uring");
	return p;
}

static void setup_ring(void)
{
	struct io_uring_params p = {0};
	size_t sq_size, cq_size;
	char *sq, *cq;

	ring.fd = syscall(__NR_io_uring_setup, 4, &p);
	if (ring.fd < 0)
		die("io_uring_setup");
	sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (cq_size > sq_size)
			sq_size = cq_size;
		cq_size = sq_size;
	}
	sq = map_ring(sq_size, IORING_OFF_SQ_RING);
	cq = p.features & IORING_FEAT_SINGLE_MMAP ?
		     sq :
		     map_ring(cq_size, IORING_OFF_CQ_RING);
	ring.sqes = map_ring(p.sq_entries * sizeof(struct io_uring_sqe),
			     IORING_OFF_SQES);
	ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
	ring.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	ring.sq_array = (unsigned *)(sq + p.sq_off.array);
	ring.cq_head = (unsigned *)(cq + p.cq_off.head);
	ring.cq_tail = (unsigned *)(cq + p.cq_off.tail);
	ring.cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	ring.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

/* Submit one request and wait for its result. */
static int uring_do(struct io_uring_sqe *req)
{
	unsigned tail = *ring.sq_tail, idx = tail & *ring.sq_mask, head;
	int res;

	ring.sqes[idx] = *req;
	ring.sq_array[idx] = idx;
	__atomic_store_n(ring.sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring.fd, 1, 1, IORING_ENTER_GETEVENTS,
		    NULL, 0) < 0)
		die("io_uring_enter");
	head = *ring.cq_head;
	if (head == __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE))
		die("io_uring: no completion");
	res = ring.cqes[head & *ring.cq_mask].res;
	__atomic_store_n(ring.cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static NOINLINE void uring_open_close(void)
{
	struct io_uring_sqe open = {.opcode = IORING_OP_OPENAT,
				    .fd = AT_FDCWD,
				    .addr = (unsigned long)"/dev/null",
				    .open_flags = O_RDONLY};
	struct io_uring_sqe close = {.opcode = IORING_OP_CLOSE};
	int fd = uring_do(&open);

	if (fd < 0) {
		errno = -fd;
		die("io_uring openat /dev/null");
	}
	close.fd = fd;
	if ((errno = -uring_do(&close)))
		die("io_uring close");
	fd_events += 2;
}

static int zero = -1;

static NOINLINE void read_byte(void)
{
	char c;

	if (read(zero, &c, 1) != 1)
		die("read /dev/zero");
}

/* A fanotify group, which makes fdtrace hook read(2); and /dev/zero. */
static void setup_read(void)
{
	if (fanotify_init(FAN_CLASS_NOTIF, O_RDONLY) < 0)
		die("fanotify_init");
	if ((zero = open("/dev/zero", O_RDONLY)) < 0)
		die("open /dev/zero");
	fd_events += 2;
}

static int window[WINDOW];
static unsigned window_pos;
static unsigned long mixed_turn;

static void window_push(int fd)
{
	if (window[window_pos] >= 0) {
		close(window[window_pos]);
		fd_events++;
	}
	window[window_pos] = fd;
	fd_events++;
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
		if (window[i] >= 0) {
			close(window[i]);
			fd_events++;
		}
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
	/*
	 * The tracers follow this name, which the process takes only now:
	 * the dynamic loader's opens are not the workload's, and fd_events
	 * counts every fd event a tracer sees.
	 */
	prctl(PR_SET_NAME, "fdbench-work");
	if (argc == 2 && !strcmp(argv[1], "addrs")) {
		print_addrs();
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: %s open|socket|pipe|accept|mixed|deep|uring|read|hold N [RATE [WARMUP]] | addrs\n", argv[0]);
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
	} else if (!strcmp(argv[1], "uring")) {
		setup_ring();
		fd_events++;
		op = uring_open_close;
	} else if (!strcmp(argv[1], "read")) {
		setup_read();
		/* fdtrace hooks read(2) once it read that a group exists. */
		if (warmup < 300)
			warmup = 300;
		op = read_byte;
	} else {
		fprintf(stderr, "fdbench-work: unknown mode %s\n", argv[1]);
		return 2;
	}
	if (warmup > 0)
		warm_up(op, warmup);
	long long ns = run_loop(op, n, rate);
	if (op == mixed_one)
		window_close_all();
	printf("ns_per_op=%.1f ops=%ld elapsed_ns=%lld fd_events=%ld\n",
	       (double)ns / n, n, ns, fd_events);
	return 0;
}
