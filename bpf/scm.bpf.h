/* SPDX-License-Identifier: GPL-2.0 */
/* fds received over unix sockets (SCM_RIGHTS) and pidfds (SCM_PIDFD). */
#ifndef FDTRACE_SCM_BPF_H
#define FDTRACE_SCM_BPF_H

#define MAX_SCM_FDS 16 /* fds read from one control message */

struct cmsg_hdr {
	__u64 len;
	int level;
	int type;
};

struct scm_ctx {
	__u32 tgid;
	struct proc *p;
	struct fdtable *fdt;
	int *fds; /* user pointer to the fds of one control message */
	__u64 stack_id;
};

#ifdef FDTRACE_COMPAT
/* An fd received, in the compat programs' bounded loop (see compat_sweep_fd).
 */
__noinline int compat_received_fd(__u32 tgid, int fd)
{
	open_fd(tgid, bpf_map_lookup_elem(&procs, &tgid),
		task_fdt(current_task()), fd, SYS_RECVMSG, NULL, NULL, 0);
	return 0;
}
#endif

static long scm_fd(__u32 i, struct scm_ctx *c)
{
	int fd;

	if (bpf_probe_read_user(&fd, sizeof(fd), c->fds + i))
		return 1;
	open_fd(c->tgid, c->p, c->fdt, fd, SYS_RECVMSG, NULL, NULL,
		c->stack_id);
	return 0;
}

#ifdef FDTRACE_COMPAT
/* The compat programs' loop over the fds of one control message. */
__noinline int compat_received_fds(__u32 tgid, unsigned long fds, __u32 n)
{
	__u64 max = n; /* see compat_bound */
	int fd;

	for (__u64 i = 0; i < MAX_SCM_FDS; i++) {
		if (i >= max ||
		    bpf_probe_read_user(&fd, sizeof(fd), (int *)fds + i))
			break;
		compat_received_fd(tgid, fd);
	}
	return 0;
}
#endif

#endif /* FDTRACE_SCM_BPF_H */
