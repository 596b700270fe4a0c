// SPDX-License-Identifier: GPL-2.0
/*
 * uring_accept: accepts three connections to a loopback listener through
 * io_uring (raw syscalls, no liburing) and leaves them open: MODE "single"
 * submits three IORING_OP_ACCEPTs, "async" the same with IOSQE_ASYNC (an
 * io-wq worker completes them), "multi" one multishot accept. Says
 * "accepted FD FD FD" and waits for stdin to close. Without io_uring it
 * says "no io_uring ERRNO".
 * Usage:
 *   uring_accept single|async|multi
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct io_uring_params p;
static struct io_uring_sqe *sqes;
static unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_cqe *cqes;

static void *map_ring(int ring, size_t size, off_t what)
{
	void *x = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, ring, what);

	return x == MAP_FAILED ? NULL : x;
}

static int setup(void)
{
	int ring = syscall(__NR_io_uring_setup, 8, &p);
	size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_size = p.cq_off.cqes +
			 p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq, *cq;

	if (ring < 0)
		return -1;
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (cq_size > sq_size)
			sq_size = cq_size;
		cq_size = sq_size;
	}
	sq = map_ring(ring, sq_size, IORING_OFF_SQ_RING);
	cq = p.features & IORING_FEAT_SINGLE_MMAP ?
		     sq :
		     map_ring(ring, cq_size, IORING_OFF_CQ_RING);
	sqes = map_ring(ring, p.sq_entries * sizeof(struct io_uring_sqe),
			IORING_OFF_SQES);
	if (!sq || !cq || !sqes)
		return -1;
	sq_tail = (void *)(sq + p.sq_off.tail);
	sq_mask = (void *)(sq + p.sq_off.ring_mask);
	sq_array = (void *)(sq + p.sq_off.array);
	cq_head = (void *)(cq + p.cq_off.head);
	cq_tail = (void *)(cq + p.cq_off.tail);
	cq_mask = (void *)(cq + p.cq_off.ring_mask);
	cqes = (void *)(cq + p.cq_off.cqes);
	return ring;
}

/* Queues n accepts on listener l and submits them. */
__attribute__((noipa)) int submit_accepts(int ring, int l, int n, int flags,
					  int ioprio)
{
	for (int i = 0; i < n; i++) {
		unsigned tail = *sq_tail, idx = tail & *sq_mask;
		struct io_uring_sqe *sqe = &sqes[idx];

		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_ACCEPT;
		sqe->fd = l;
		sqe->flags = flags;
		sqe->ioprio = ioprio;
		sqe->user_data = 42 + i;
		sq_array[idx] = idx;
		__atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
	}
	return syscall(__NR_io_uring_enter, ring, n, 0, 0, NULL, 0);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "single";
	int multi = !strcmp(mode, "multi"), async = !strcmp(mode, "async");
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int ring = setup(), l, fds[3], got = 0;
	char c;

	if (ring < 0) {
		printf("no io_uring %d\n", errno);
		return 0;
	}
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(l, (void *)&sa, sizeof(sa)) || listen(l, 8) ||
	    getsockname(l, (void *)&sa, &len))
		return 1;
	if (submit_accepts(ring, l, multi ? 1 : 3, async ? IOSQE_ASYNC : 0,
			   multi ? IORING_ACCEPT_MULTISHOT : 0) < 0) {
		printf("no io_uring %d\n", errno);
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(s, (void *)&sa, sizeof(sa)))
			return 1;
	}
	while (got < 3) {
		unsigned head;

		syscall(__NR_io_uring_enter, ring, 0, 1,
			IORING_ENTER_GETEVENTS, NULL, 0);
		for (head = *cq_head;
		     head != __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
		     head++) {
			int res = cqes[head & *cq_mask].res;

			if (res < 0) {
				printf("no io_uring %d\n", -res);
				return 0;
			}
			if (got < 3)
				fds[got++] = res;
		}
		__atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
	}
	printf("accepted %d %d %d\n", fds[0], fds[1], fds[2]);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
