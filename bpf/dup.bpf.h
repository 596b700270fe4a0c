/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dup2 and dup3: the fd they make, and the one they replace when the new
 * number was open (a close nobody calls), which is known only at entry.
 */
#ifndef FDTRACE_DUP_BPF_H
#define FDTRACE_DUP_BPF_H

/*
 * dup2/dup3 in flight: tid -> newfd was open before the call (1; counting
 * only, 1 + its type) or not (0).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, __u32);
	__type(value, __u8);
} dup_start SEC(".maps");

static __always_inline int dup_enter(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task), tid = current_tid(task);
	int oldfd = ctx->args[0], newfd = ctx->args[1];
	__u8 was_open = 0;

	if (!trace_task_allowed(tgid, task))
		return 0;
	/* Counting only, the type of what is replaced is known only now. */
	if (oldfd != newfd && fd_is_open(task_fdt(task), newfd))
		was_open = cfg.fd_records ? 1 : 1 + type_of_fd(newfd);
	if (bpf_map_update_elem(&dup_start, &tid, &was_open, BPF_ANY) &&
	    !cfg.fd_records)
		stat_add(STAT_DRIFT, 1); /* this dup goes unseen */
	return 0;
}

/* dup2/dup3 onto an open fd close it first: both must be seen. */
static __always_inline int dup_exit(void *ctx, __u16 sc, long ret)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task), tid = current_tid(task);
	struct pt_regs *regs;
	struct fd_info src;
	struct fd_key key;
	struct proc *p;
	__u8 *was_open;
	__u64 stack_id;
	__u8 replaced;

	was_open = bpf_map_lookup_elem(&dup_start, &tid);
	if (was_open) {
		replaced = *was_open; /* 1 + its type, counting only */
		bpf_map_delete_elem(&dup_start, &tid);
	} else if (cfg.fd_records && trace_task_allowed(tgid, task)) {
		replaced = 0; /* its entry found no room: the records tell */
	} else {
		return 0;
	}
	if (ret < 0) {
		syscall_failed(sc, -ret, NULL, -1,
			       failure_stack(tgid, sc, -ret));
		return 0;
	}
	stack_id = capture_stack(tgid);
	regs = user_regs(task);
	key.tgid = tgid;
	key.fd = SYSCALL_ARG(1, regs);
	if (key.fd == ret)
		return 0; /* dup2(fd, fd) changes nothing */
	/* With records, what it replaced is the record there. */
	if (!replaced && cfg.fd_records) {
		struct fd_key newkey = { .tgid = tgid, .fd = ret };

		replaced = !!live_record(&newkey);
	}
	p = get_proc(tgid, task, replaced ? 0 : 1);
	if (replaced)
		close_fd(tgid, p, task_fdt(task), ret, sc, replaced - 1, true);
	/* Copy first: the source record may be the one just closed. */
	struct fd_info *srcp = live_record(&key);
	if (srcp) {
		src = *srcp;
		open_fd(tgid, p, task_fdt(task), ret, sc, &src, NULL, stack_id,
			0);
	} else {
		open_fd(tgid, p, task_fdt(task), ret, sc, NULL, NULL, stack_id,
			0);
	}
	return 0;
}

#endif /* FDTRACE_DUP_BPF_H */
