/* SPDX-License-Identifier: GPL-2.0 */
/* An fd's file: what kind of fd it is, and its socket. */
#ifndef FDTRACE_FILE_BPF_H
#define FDTRACE_FILE_BPF_H

/* The file of an open fd (not a BTF pointer: read it with FILE_READ). */
static __always_inline struct file *fd_file(struct fdtable *fdt, int fd)
{
	struct file **files = KREAD(fdt, fd);
	struct file *f = NULL;

	/*
	 * A plain load where the kernel can cast, not a helper call: every
	 * close makes one. The slot is read as a struct whose first member
	 * is a 64-bit number, so that the verifier sees a number, as the
	 * helper's copy is, not a pointer of some type.
	 */
	if (BTF_POINTERS && cfg.have_rdonly_cast)
		return (struct file *)cast_kernel(&files[fd & 0xfffffff],
						  struct timespec64)
			->tv_sec;
	bpf_probe_read_kernel(&f, sizeof(f), &files[fd & 0xfffffff]);
	return f;
}

#define FILE_READ(f, a, ...) CAST_READ(struct file, f, a, ##__VA_ARGS__)
#define SOCK_READ(sk, a, ...) CAST_READ(struct sock, sk, a, ##__VA_ARGS__)

static __always_inline umode_t file_mode(struct file *f)
{
	return FILE_READ(f, f_inode, i_mode);
}

#define SB_KERNMOUNT (1 << 22)

/*
 * Whether a regular file is on one of the kernel's internal mounts, as a
 * memfd is (shmem's, hugetlbfs's): only then does its name tell more.
 */
static __always_inline bool file_on_kernel_mount(struct file *f)
{
	return FILE_READ(f, f_inode, i_sb, s_flags) & SB_KERNMOUNT;
}

/* The struct sock of a socket's file. */
static __always_inline struct sock *file_sock(struct file *f)
{
	void *sock = FILE_READ(f, private_data);

	return CAST_READ(struct socket, sock, sk);
}

static __always_inline bool name_is(const char *name, const char *want, int n)
{
	for (int i = 0; i < n; i++)
		if (name[i] != want[i])
			return false;
	return true;
}

/* An fd's type not known yet. */
#define TYPE_UNKNOWN 0xff

/*
 * The type of a file where its mode tells it; TYPE_UNKNOWN for anonymous
 * inodes and files on the kernel's internal mounts, whose names tell.
 */
static __always_inline __u8 type_by_mode(struct file *f, umode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFSOCK:
		return FD_SOCKET;
	case S_IFIFO:
		return FD_PIPE;
	case S_IFREG:
		if (file_on_kernel_mount(f))
			return TYPE_UNKNOWN; /* a memfd's name tells */
		return FD_FILE;
	case 0:
		return TYPE_UNKNOWN;
	}
	return FD_FILE;
}

/*
 * Classify an fd by its file when the syscall cannot tell (dup, SCM). Out
 * of line, as are the other readers of a file: without bpf_rdonly_cast
 * every field read takes a slot of the stack.
 */
static __noinline void inspect_file(struct file *f, struct fd_info *info)
{
	umode_t mode = file_mode(f);
	char name[12] = {};

	info->fd_type = type_by_mode(f, mode);
	if (info->fd_type == FD_SOCKET) {
		void *sock = FILE_READ(f, private_data);

		info->family = SOCK_READ(file_sock(f), __sk_common.skc_family);
		info->sock_type = CAST_READ(struct socket, sock, type);
	}
	if (info->fd_type != TYPE_UNKNOWN)
		return;
	bpf_probe_read_kernel_str(name, sizeof(name),
				  FILE_READ(f, f_path.dentry, d_name.name));
	if ((mode & S_IFMT) == S_IFREG && name_is(name, "memfd:", 6))
		info->fd_type = FD_MEMFD;
	else if (mode & S_IFMT)
		info->fd_type = FD_FILE;
	else if (name_is(name, "[eventpoll]", 11))
		info->fd_type = FD_EPOLL;
	else if (name_is(name, "[eventfd]", 9))
		info->fd_type = FD_EVENTFD;
	else if (name_is(name, "[timerfd]", 9))
		info->fd_type = FD_TIMERFD;
	else if (name_is(name, "[signalfd]", 10))
		info->fd_type = FD_SIGNALFD;
	else if (name_is(name, "inotify", 7))
		info->fd_type = FD_INOTIFY;
	else if (name_is(name, "[pidfd]", 7))
		info->fd_type = FD_PIDFD;
	else
		info->fd_type = FD_OTHER;
}

static __always_inline __u8 type_of_syscall(__u16 sc)
{
	switch (sc) {
	case SYS_OPEN:
	case SYS_CREAT:
	case SYS_OPENAT:
	case SYS_OPENAT2:
		return FD_FILE;
	case SYS_SOCKET:
	case SYS_SOCKETPAIR:
	case SYS_ACCEPT:
	case SYS_ACCEPT4:
		return FD_SOCKET;
	case SYS_PIPE:
	case SYS_PIPE2:
		return FD_PIPE;
	case SYS_EPOLL_CREATE:
	case SYS_EPOLL_CREATE1:
		return FD_EPOLL;
	case SYS_EVENTFD:
	case SYS_EVENTFD2:
		return FD_EVENTFD;
	case SYS_TIMERFD_CREATE:
		return FD_TIMERFD;
	case SYS_SIGNALFD:
	case SYS_SIGNALFD4:
		return FD_SIGNALFD;
	case SYS_INOTIFY_INIT:
	case SYS_INOTIFY_INIT1:
		return FD_INOTIFY;
	case SYS_MEMFD_CREATE:
		return FD_MEMFD;
	case SYS_PIDFD_OPEN:
	case SYS_CLONE:
	case SYS_CLONE3:
	case SYS_GETSOCKOPT:
		return FD_PIDFD;
	case SYS_OPEN_BY_HANDLE_AT:
		return FD_FILE;
	}
	return FD_OTHER; /* dup family, recvmsg: look at the file */
}

/* The bpf() commands that return a new fd. */
static __always_inline bool bpf_cmd_makes_fd(long cmd)
{
	switch (cmd) {
	case BPF_MAP_CREATE:
	case BPF_PROG_LOAD:
	case BPF_OBJ_GET:
	case BPF_PROG_GET_FD_BY_ID:
	case BPF_MAP_GET_FD_BY_ID:
	case BPF_RAW_TRACEPOINT_OPEN:
	case BPF_BTF_LOAD:
	case BPF_BTF_GET_FD_BY_ID:
	case BPF_LINK_CREATE:
	case BPF_LINK_GET_FD_BY_ID:
	case BPF_ITER_CREATE:
	case BPF_TOKEN_CREATE:
		return true;
	}
	return false;
}

#endif /* FDTRACE_FILE_BPF_H */
