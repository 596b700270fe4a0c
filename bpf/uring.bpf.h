/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fds io_uring installs and closes: IORING_OP_OPENAT, OPENAT2, ACCEPT,
 * SOCKET and FIXED_FD_INSTALL create an fd with no syscall of their own,
 * IORING_OP_CLOSE closes one. Seen at their completion (io_uring_complete,
 * from Linux 6.1, whose arguments give the request), in whichever thread of
 * the process completes them: the submitter, an io-wq worker or the SQPOLL
 * thread. The stack is the submitter's, taken at submission
 * (io_uring_submit_req, io_uring_submit_sqe on 6.1). Requests on direct
 * descriptors (a file_slot) install no fd. The loader attaches these only
 * where the tracepoints' arguments are the ones read here.
 */
#ifndef FDTRACE_URING_BPF_H
#define FDTRACE_URING_BPF_H

#ifndef FDTRACE_COMPAT

#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

/* Requests in flight that will make an fd: request -> submitter's stack. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, __u64);
	__type(value, __u64);
} uring_stacks SEC(".maps");

static __always_inline bool uring_makes_fd(__u8 op)
{
	return op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2 ||
	       op == IORING_OP_ACCEPT || op == IORING_OP_SOCKET ||
	       op == IORING_OP_FIXED_FD_INSTALL;
}

/* The direct descriptor slot a request fills instead of an fd, if any. */
static __always_inline __u32 uring_file_slot(struct io_kiocb *req, __u8 op)
{
	/* Kernels without these types (before 5.19) are not hooked. */
	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2:
		if (bpf_core_type_exists(struct io_open))
			return BPF_CORE_READ((struct io_open *)req, file_slot);
		break;
	case IORING_OP_ACCEPT:
		if (bpf_core_type_exists(struct io_accept))
			return BPF_CORE_READ((struct io_accept *)req,
					     file_slot);
		break;
	case IORING_OP_SOCKET:
		if (bpf_core_type_exists(struct io_socket))
			return BPF_CORE_READ((struct io_socket *)req,
					     file_slot);
		break;
	case IORING_OP_CLOSE:
		if (bpf_core_type_exists(struct io_close))
			return BPF_CORE_READ((struct io_close *)req, file_slot);
		break;
	}
	return 0;
}

/* A request submitted: its submitter's stack, if it will make an fd. */
static __always_inline int uring_submitted(struct io_kiocb *req)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 key = (__u64)req, stack_id;
	struct task_struct *task;

	if (!cfg.capture_stacks || !trace_allowed(tgid) ||
	    !uring_makes_fd(BPF_CORE_READ(req, opcode)))
		return 0;
	task = current_task();
	/* The SQPOLL thread, an io-wq worker: no user stack of theirs. */
	if (BPF_CORE_READ(task, flags) & (PF_IO_WORKER | PF_KTHREAD))
		return 0;
	stack_id = capture_stack(tgid);
	if (stack_id)
		bpf_map_update_elem(&uring_stacks, &key, &stack_id, BPF_ANY);
	return 0;
}

/* A request completed with res: the fd it made or closed. */
static __always_inline int uring_completed(struct io_kiocb *req)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 key = (__u64)req, stack_id = 0, *s;
	struct fd_key fk = { .tgid = tgid };
	struct task_struct *task;
	struct fdtable *fdt;
	struct proc *p;
	__u8 op;
	int res;

	if (!bpf_core_field_exists(req->cqe) ||
	    !bpf_core_type_exists(struct io_close) || !trace_allowed(tgid))
		return 0;
	op = BPF_CORE_READ(req, opcode);
	if (op != IORING_OP_CLOSE && !uring_makes_fd(op))
		return 0;
	s = bpf_map_lookup_elem(&uring_stacks, &key);
	if (s) {
		stack_id = *s;
		bpf_map_delete_elem(&uring_stacks, &key);
	}
	res = BPF_CORE_READ(req, cqe.res);
	if (res < 0 || uring_file_slot(req, op))
		return 0;
	task = current_task();
	fdt = task_fdt(task);
	p = get_proc(tgid, task, op == IORING_OP_CLOSE ? 0 : 1);
	if (op != IORING_OP_CLOSE) {
		open_user_fd(tgid, p, fdt, res, SYS_IO_URING, stack_id);
		return 0;
	}
	/* Closed already: with a record, it goes; else recount. */
	fk.fd = BPF_CORE_READ((struct io_close *)req, fd);
	if (!cfg.fd_records || bpf_map_lookup_elem(&fds, &fk)) {
		close_fd(tgid, p, fk.fd, SYS_IO_URING, FD_OTHER);
	} else if (p) {
		__s64 n = count_open_fds(fdt);

		if (n != p->open_fds) {
			stat_add(STAT_DRIFT, 1);
			p->open_fds = n;
		}
	}
	return 0;
}

SEC("raw_tracepoint/io_uring_submit_req")
int raw_tracepoint__io_uring_submit_req(struct bpf_raw_tracepoint_args *ctx)
{
	return uring_submitted((struct io_kiocb *)ctx->args[0]);
}

/* Linux 6.1's name, with the request first too. */
SEC("raw_tracepoint/io_uring_submit_sqe")
int raw_tracepoint__io_uring_submit_sqe(struct bpf_raw_tracepoint_args *ctx)
{
	return uring_submitted((struct io_kiocb *)ctx->args[0]);
}

SEC("raw_tracepoint/io_uring_complete")
int raw_tracepoint__io_uring_complete(struct bpf_raw_tracepoint_args *ctx)
{
	return uring_completed((struct io_kiocb *)ctx->args[1]);
}

#endif /* FDTRACE_COMPAT */
#endif /* FDTRACE_URING_BPF_H */
