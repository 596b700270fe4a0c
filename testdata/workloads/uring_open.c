// SPDX-License-Identifier: GPL-2.0
/*
 * uring_open: makes an io_uring (io_uring_setup) and opens /dev/null with
 * openat(2), fdtrace sees both created; says "started PID RING PLAIN" and
 * waits for a line on stdin. Then opens PATH by the ring's IORING_OP_OPENAT,
 * which creates the fd with no syscall of its own: fdtrace does not see it.
 * Says "ready FD" and waits for stdin to close. Raw syscalls, no liburing.
 * Usage:
 *   uring_open PATH
 * Without io_uring (ENOSYS, or EPERM from io_uring_disabled), it says
 * "no io_uring ERRNO" and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct io_uring_params params;

__attribute__((noipa)) int setup_ring(void)
{
	return syscall(__NR_io_uring_setup, 4, &params);
}

__attribute__((noipa)) int open_plain(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void *map_ring(int ring, size_t size, off_t what)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, ring, what);

	return p == MAP_FAILED ? NULL : p;
}

/* One IORING_OP_OPENAT of path, waited for: the new fd, or -errno. */
__attribute__((noipa)) int uring_openat(int ring, const char *path)
{
	struct io_uring_params *p = &params;
	size_t sq_size = p->sq_off.array + p->sq_entries * sizeof(unsigned);
	size_t cq_size = p->cq_off.cqes +
			 p->cq_entries * sizeof(struct io_uring_cqe);
	struct io_uring_sqe *sqes, *sqe;
	struct io_uring_cqe *cqes;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	unsigned tail, idx, head;
	char *sq, *cq;
	int res;

	if (p->features & IORING_FEAT_SINGLE_MMAP) {
		if (cq_size > sq_size)
			sq_size = cq_size;
		cq_size = sq_size;
	}
	sq = map_ring(ring, sq_size, IORING_OFF_SQ_RING);
	cq = p->features & IORING_FEAT_SINGLE_MMAP ?
		     sq :
		     map_ring(ring, cq_size, IORING_OFF_CQ_RING);
	sqes = map_ring(ring, p->sq_entries * sizeof(struct io_uring_sqe),
			IORING_OFF_SQES);
	if (!sq || !cq || !sqes)
		return -errno;
	sq_tail = (unsigned *)(sq + p->sq_off.tail);
	sq_mask = (unsigned *)(sq + p->sq_off.ring_mask);
	sq_array = (unsigned *)(sq + p->sq_off.array);
	cq_head = (unsigned *)(cq + p->cq_off.head);
	cq_tail = (unsigned *)(cq + p->cq_off.tail);
	cq_mask = (unsigned *)(cq + p->cq_off.ring_mask);
	cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);

	tail = *sq_tail;
	idx = tail & *sq_mask;
	sqe = &sqes[idx];
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_OPENAT;
	sqe->fd = AT_FDCWD;
	sqe->addr = (unsigned long)path;
	sqe->open_flags = O_RDONLY;
	sqe->user_data = 7;
	sq_array[idx] = idx;
	__atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS,
		    NULL, 0) < 0)
		return -errno;
	head = *cq_head;
	if (head == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	res = cqes[head & *cq_mask].res;
	__atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

int main(int argc, char **argv)
{
	int ring, plain, fd;
	char c;

	if (argc != 2) {
		fprintf(stderr, "usage: uring_open PATH\n");
		return 2;
	}
	ring = setup_ring();
	if (ring < 0) {
		printf("no io_uring %d\n", errno);
		return 0;
	}
	plain = open_plain();
	if (plain < 0) {
		fprintf(stderr, "uring_open: open: %d\n", errno);
		return 1;
	}
	printf("started %d %d %d\n", getpid(), ring, plain);
	fflush(stdout);
	while (read(0, &c, 1) > 0 && c != '\n')
		;
	fd = uring_openat(ring, argv[1]);
	if (fd < 0) {
		fprintf(stderr, "uring_open: io_uring openat: %d\n", fd);
		return 1;
	}
	printf("ready %d\n", fd);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
