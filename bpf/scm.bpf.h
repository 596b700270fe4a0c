/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fds received over unix sockets (SCM_RIGHTS) and pidfds (SCM_PIDFD), by
 * recvmsg and recvmmsg: read from the control messages in user memory.
 */
#ifndef FDTRACE_SCM_BPF_H
#define FDTRACE_SCM_BPF_H

#define MAX_SCM_FDS 16 /* fds read from one control message */
/*
 * Without bpf_loop, control messages read from one message (credentials
 * often come first); with it, as many as MAX_SCM_STEPS allow.
 */
#define MAX_CMSGS 4
#define MAX_MMSGS 16	/* messages read from one recvmmsg */
#define MMSGHDR_SIZE 64 /* struct mmsghdr: a user_msghdr and msg_len */

struct cmsg_hdr {
	__u64 len;
	int level;
	int type;
};

/*
 * The walk over the messages, their control messages and the fds these
 * pass. It is done twice: looking for fds, then, if there are any, with
 * the stack taken once, recording them (a stack taken in the loop would be
 * verified in it). Without bpf_loop (compat) it is nested bounded loops;
 * with it, one loop of steps, each taking the next message, control
 * message or fd (a bpf_loop in another's callback was seen not to run its
 * callback, on Linux 6.18).
 */
struct scm_ctx {
	__u32 tgid;
	__u16 sc;
	bool found; /* a flag, not a count: the verifier's states converge */
	__u64 stack_id;
	void *msgs; /* recvmsg's msghdr, recvmmsg's mmsghdr array */
	long nmsgs;
	long msg;      /* the next message */
	void *control; /* the current message's control messages, or NULL */
	__u64 controllen;
	__u64 off; /* of the next control message */
	int *fds;  /* user pointer to the current control message's fds */
	__u32 nfds;
	__u32 fd; /* the next of them */
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
		c->nfds = n > MAX_SCM_FDS ? MAX_SCM_FDS : n;
		c->fd = 0;
		c->found = true;
	}
	c->off += (cmsg.len + 7) & ~7ULL; /* CMSG_ALIGN */
	return true;
}

static __always_inline void *msg_at(struct scm_ctx *c, long i)
{
	return c->msgs + (c->sc == SYS_RECVMSG ? 0 : i * MMSGHDR_SIZE);
}

#ifdef FDTRACE_COMPAT
/* The compat programs' loop over the fds of one control message. */
__noinline int compat_received_fds(__u32 tgid, unsigned long fds, __u32 n,
				   __u16 sc)
{
	__u64 max = n; /* see compat_bound */
	int fd;

	for (__u64 i = 0; i < MAX_SCM_FDS; i++) {
		if (i >= max ||
		    bpf_probe_read_user(&fd, sizeof(fd), (int *)fds + i))
			break;
		record_user_fd(tgid, fd, sc, 0);
	}
	return 0;
}

static __always_inline void walk_msgs(struct scm_ctx *c, bool record)
{
	for (int m = 0; m < 4; m++) {
		if (m >= c->nmsgs)
			break;
		enter_msg(c, msg_at(c, m));
		if (!c->control)
			continue;
		for (int i = 0; i < MAX_CMSGS; i++) {
			if (!enter_cmsg(c))
				break;
			if (record && c->nfds)
				compat_received_fds(c->tgid,
						    (unsigned long)c->fds,
						    c->nfds, c->sc);
		}
	}
}
#else
/* One step of the walk; 1 at its end. */
static __always_inline long scm_step(struct scm_ctx *c, bool record)
{
	int fd;

	if (c->fd < c->nfds) {
		if (!bpf_probe_read_user(&fd, sizeof(fd), c->fds + c->fd))
			record_user_fd(c->tgid, fd, c->sc, c->stack_id);
		c->fd++;
		return 0;
	}
	if (c->control && enter_cmsg(c)) {
		if (!record)
			c->nfds = 0; /* looking only */
		return 0;
	}
	if (c->msg < c->nmsgs) {
		enter_msg(c, msg_at(c, c->msg));
		c->msg++;
		return 0;
	}
	return 1;
}

static long step_find(__u32 i, struct scm_ctx *c)
{
	return c->found ? 1 : scm_step(c, false);
}

static long step_record(__u32 i, struct scm_ctx *c)
{
	return scm_step(c, true);
}

/* Steps enough for MAX_MMSGS messages of a few control messages each. */
#define MAX_SCM_STEPS 1024

/*
 * Zero, as far as the verifier knows. Before 6.7 it checks a bpf_loop
 * callback once, in the state of the first call: a step whose branch is
 * dead there (no fd yet, no control message yet) would be removed as dead
 * code. The walk starts from this zero.
 */
volatile __u32 unknown_zero = 0;

static __always_inline void walk_msgs(struct scm_ctx *c, bool record)
{
	__u32 zero = unknown_zero;

	c->msg = zero;
	c->control = (void *)(unsigned long)zero;
	c->nfds = c->fd = zero;
	bpf_loop(MAX_SCM_STEPS, record ? step_record : step_find, c, 0);
}
#endif

/*
 * recvmsg and recvmmsg (n messages received into the mmsghdr array at
 * umsg): the fds their control messages passed.
 */
static __always_inline int received_fds(__u16 sc, void *umsg, long n)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct scm_ctx c = { .tgid = tgid, .sc = sc, .msgs = umsg };

	if (n <= 0 || !trace_allowed(tgid))
		return 0;
	c.nmsgs = sc == SYS_RECVMSG ? 1 : (n > MAX_MMSGS ? MAX_MMSGS : n);
	walk_msgs(&c, false);
	if (!c.found)
		return 0;
	c.stack_id = capture_stack(tgid);
	walk_msgs(&c, true);
	return 0;
}

#endif /* FDTRACE_SCM_BPF_H */
