/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fds received over unix sockets (SCM_RIGHTS) and pidfds (SCM_PIDFD), by
 * recvmsg and recvmmsg: read from the control messages in user memory.
 */
#ifndef FDTRACE_SCM_BPF_H
#define FDTRACE_SCM_BPF_H

#define MAX_SCM_FDS 16 /* fds read from one control message */
/* Control messages read from one message (credentials often come first). */
#define MAX_CMSGS 8
#define MAX_MMSGS 8	/* messages read from one recvmmsg */
#define MMSGHDR_SIZE 64 /* struct mmsghdr: a user_msghdr and msg_len */

struct cmsg_hdr {
	__u64 len;
	int level;
	int type;
};

/*
 * The walk over the messages, their control messages and the fds these
 * pass. It is done twice: looking for fds, then, if there are any, with
 * the stack taken once, recording them (a stack taken in the loops would
 * be verified in each of them). Bounded loops, with the fds recorded by a
 * global function: one walk for every kernel (a bpf_loop of steps passed
 * the verifier of 6.1 but recorded nothing there).
 */
struct scm_ctx {
	__u32 tgid;
	__u16 sc;
	bool found;
	__u64 stack_id;
	void *msgs; /* recvmsg's msghdr, recvmmsg's mmsghdr array */
	long nmsgs;
	void *control; /* the current message's control messages, or NULL */
	__u64 controllen;
	__u64 off; /* of the next control message */
	int *fds;  /* user pointer to the current control message's fds */
	__u32 nfds;
};

/* The control messages of message umsg, for the walk. */
static __always_inline void enter_msg(struct scm_ctx *c, void *umsg)
{
	struct user_msghdr msg;

	c->control = NULL;
	if (bpf_probe_read_user(&msg, sizeof(msg), umsg) ||
	    msg.msg_controllen < sizeof(struct cmsg_hdr) + sizeof(int))
		return;
	c->control = msg.msg_control;
	c->controllen = msg.msg_controllen;
	c->off = 0;
}

/*
 * The control message at c->off: the fds it passes, if any, become the
 * current ones. False at the end of the message's control messages.
 */
static __always_inline bool enter_cmsg(struct scm_ctx *c)
{
	struct cmsg_hdr cmsg;
	__u32 n;

	if (c->off + sizeof(cmsg) > c->controllen ||
	    bpf_probe_read_user(&cmsg, sizeof(cmsg), c->control + c->off) ||
	    cmsg.len < sizeof(cmsg))
		return false;
	c->nfds = 0;
	if (cmsg.level == SOL_SOCKET &&
	    (cmsg.type == SCM_RIGHTS || cmsg.type == SCM_PIDFD)) {
		n = (cmsg.len - sizeof(cmsg)) / sizeof(int);
		c->fds = c->control + c->off + sizeof(cmsg);
		c->nfds = n;
		c->found = true;
	}
	c->off += (cmsg.len + 7) & ~7ULL; /* CMSG_ALIGN */
	return true;
}

/* The fds of one control message (a global function: checked once). */
__noinline int received_fds_of(__u32 tgid, unsigned long fds, __u32 n, __u16 sc,
			       __u64 stack_id)
{
	__u64 max = n; /* see compat_words */
	int fd;

	for (__u64 i = 0; i < MAX_SCM_FDS; i++) {
		if (i >= max ||
		    bpf_probe_read_user(&fd, sizeof(fd), (int *)fds + i))
			break;
		record_user_fd(tgid, fd, sc, stack_id);
	}
	return 0;
}

static __always_inline void walk_msgs(struct scm_ctx *c, bool record)
{
	for (int m = 0; m < MAX_MMSGS; m++) {
		if (m >= c->nmsgs)
			break;
		enter_msg(c, c->msgs + m * MMSGHDR_SIZE);
		if (!c->control)
			continue;
		for (int i = 0; i < MAX_CMSGS; i++) {
			if (!enter_cmsg(c))
				break;
			if (record && c->nfds)
				received_fds_of(c->tgid, (unsigned long)c->fds,
						c->nfds, c->sc, c->stack_id);
		}
	}
}

/*
 * recvmsg and recvmmsg (n messages received into the mmsghdr array at
 * umsg): the fds their control messages passed.
 */
static __always_inline int received_fds(__u16 sc, void *umsg, long n)
{
	struct scm_ctx c = { .sc = sc, .msgs = umsg };
	struct task_struct *task;
	__u32 tgid;

	if (n <= 0)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	c.tgid = tgid;
	c.nmsgs = sc == SYS_RECVMSG ? 1 : n;
	walk_msgs(&c, false);
	if (!c.found)
		return 0;
	c.stack_id = capture_stack(tgid);
	walk_msgs(&c, true);
	return 0;
}

#endif /* FDTRACE_SCM_BPF_H */
