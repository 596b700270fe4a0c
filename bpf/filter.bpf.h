/* SPDX-License-Identifier: GPL-2.0 */
/* Which processes are traced: by pid (with their children), by name. */
#ifndef FDTRACE_FILTER_BPF_H
#define FDTRACE_FILTER_BPF_H

/* Values of the traced map. */
#define TRACE_SELF (1 << 0)    /* account and report this process */
#define TRACE_FOLLOW (1 << 1)  /* its children are traced too */
#define TRACE_AT_EXEC (1 << 2) /* traced from its next exec on */

/*
 * Set by user space once every program is attached: a process counted
 * while only some hooks were live would miss opens or closes for good.
 */
volatile __u32 armed = 0;

/* tgid -> TRACE_* flags, used when cfg.filter_pids is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, __u8);
} traced SEC(".maps");

/*
 * A comm is 16 bytes: compared as two words, under a mask that keeps the
 * name's bytes and its NUL (whatever follows the NUL does not count).
 */
static __always_inline bool comm_matches(const char *comm)
{
	const __u64 *c = (const __u64 *)comm;
	const volatile __u64 *want = (const volatile __u64 *)cfg.targ_comm;

	return ((c[0] & cfg.targ_comm_mask[0]) == want[0]) &&
	       ((c[1] & cfg.targ_comm_mask[1]) == want[1]);
}

/* task: the current task, or NULL to have it read where needed. */
static __always_inline bool trace_task_allowed(__u32 tgid,
					       struct task_struct *task)
{
	if (!armed || tgid == cfg.self_tgid)
		return false;
	if (cfg.filter_pids) {
		__u8 *t = bpf_map_lookup_elem(&traced, &tgid);

		if (!t || !(*t & TRACE_SELF))
			return false;
	}
	if (cfg.filter_comm) {
		/* The process's name, as /proc/PID/comm: not the thread's. */
#ifdef FDTRACE_COMPAT
		char comm[TASK_COMM_LEN] __attribute__((aligned(8))) = {};

		if (!task)
			task = current_task();
		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
#else
		char *comm;

		if (!task)
			task = current_task();
		comm = task->group_leader->comm;
#endif
		if (!comm_matches(comm))
			return false;
	}
	return true;
}

static __always_inline bool trace_allowed(__u32 tgid)
{
	return trace_task_allowed(tgid, NULL);
}

#endif /* FDTRACE_FILTER_BPF_H */
