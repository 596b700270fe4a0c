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

/* In the compat object too, whose programs the loader assigns alike. */
#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

/*
 * Multishot requests in flight (accepts: each connection a completion
 * without the request, only its ring and user data): (ring, user data) ->
 * submitter's stack.
 */
struct uring_key {
	__u64 ctx;
	__u64 user_data;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, struct uring_key);
	__type(value, __u64);
} uring_multishot SEC(".maps");

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

/* A field of a request: a load where the kernel can cast, as on 6.2 on. */
#define REQ_READ(req, a, ...) CAST_READ(struct io_kiocb, req, a, ##__VA_ARGS__)

/* The direct descriptor slot a request fills instead of an fd, if any. */
static __always_inline __u32 uring_file_slot(struct io_kiocb *req, __u8 op)
{
	/* Kernels without these types (before 5.19) are not hooked. */
	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2:
		if (bpf_core_type_exists(struct io_open))
			return CAST_READ(struct io_open, req, file_slot);
		break;
	case IORING_OP_ACCEPT:
		if (bpf_core_type_exists(struct io_accept))
			return CAST_READ(struct io_accept, req, file_slot);
		break;
	case IORING_OP_SOCKET:
		if (bpf_core_type_exists(struct io_socket))
			return CAST_READ(struct io_socket, req, file_slot);
		break;
	case IORING_OP_CLOSE:
		if (bpf_core_type_exists(struct io_close))
			return CAST_READ(struct io_close, req, file_slot);
		break;
	}
	return 0;
}

/*
 * A request submitted: its submitter's stack, if it will make an fd; an
 * accept is noted by its ring and user data, for the completions of a
 * multishot one.
 */
static __always_inline int uring_submitted(struct io_kiocb *req)
{
	__u8 op = REQ_READ(req, opcode);
	__u64 key = (__u64)req, stack_id = 0;
	struct uring_key mk = {};
	struct task_struct *task;
	__u32 tgid;

	if (!uring_makes_fd(op))
		return 0;
	/* Without stacks, only an accept's submission is of use (below). */
	if (!cfg.capture_stacks && op != IORING_OP_ACCEPT)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	/* The SQPOLL thread, an io-wq worker: no user stack of theirs. */
	if (cfg.capture_stacks &&
	    !(BPF_CORE_READ(task, flags) & (PF_IO_WORKER | PF_KTHREAD)))
		stack_id = capture_stack(tgid);
	if (stack_id)
		bpf_map_update_elem(&uring_stacks, &key, &stack_id, BPF_ANY);
	/*
	 * Every accept: which are multishot the kernels say in flags whose
	 * bits move from version to version. A single one's completion has
	 * its request and takes the entry out.
	 */
	if (op == IORING_OP_ACCEPT && bpf_core_field_exists(req->cqe) &&
	    !uring_file_slot(req, op)) {
		mk.ctx = (__u64)BPF_CORE_READ(req, ctx);
		mk.user_data = BPF_CORE_READ(req, cqe.user_data);
		bpf_map_update_elem(&uring_multishot, &mk, &stack_id, BPF_ANY);
	}
	return 0;
}

/*
 * A completion without its request (a multishot accept's connection): an
 * fd if it is one of a multishot accept's.
 */
static __always_inline int uring_aux_completed(struct uring_key *mk, int res)
{
	struct task_struct *task;
	__u64 *stack_id;
	__u32 tgid;

	if (res < 0)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	stack_id = bpf_map_lookup_elem(&uring_multishot, mk);
	if (!stack_id)
		return 0;
	open_user_fd(tgid, get_proc(tgid, task, 1), task_fdt(task), res,
		     SYS_IO_URING, *stack_id, mk->user_data);
	return 0;
}

/* A request completed with res: the fd it made or closed. */
static __always_inline int uring_completed(struct io_kiocb *req)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	__u64 key = (__u64)req, stack_id = 0, *s;
	struct fdtable *fdt;
	struct proc *p;
	__u8 op;
	int res;

	if (!bpf_core_field_exists(req->cqe) ||
	    !bpf_core_type_exists(struct io_close) ||
	    !trace_task_allowed(tgid, task))
		return 0;
	op = REQ_READ(req, opcode);
	if (op != IORING_OP_CLOSE && !uring_makes_fd(op))
		return 0;
	/* Only a submitter's stack makes an entry. */
	s = cfg.capture_stacks ? bpf_map_lookup_elem(&uring_stacks, &key) :
				 NULL;
	if (s) {
		stack_id = *s;
		bpf_map_delete_elem(&uring_stacks, &key);
	}
	if (op == IORING_OP_ACCEPT) { /* a multishot accept's last */
		struct uring_key mk = { .ctx = (__u64)BPF_CORE_READ(req, ctx),
					.user_data = BPF_CORE_READ(
						req, cqe.user_data) };

		bpf_map_delete_elem(&uring_multishot, &mk);
	}
	res = REQ_READ(req, cqe.res);
	if (res < 0 || uring_file_slot(req, op))
		return 0;
	fdt = task_fdt(task);
	p = get_proc(tgid, task, op == IORING_OP_CLOSE ? 0 : 1);
	if (op != IORING_OP_CLOSE) {
		open_user_fd(tgid, p, fdt, res, SYS_IO_URING, stack_id,
			     REQ_READ(req, cqe.user_data));
		return 0;
	}
	/* Closed already: close_fd tells by its record. */
	close_fd(tgid, p, fdt, CAST_READ(struct io_close, req, fd),
		 SYS_IO_URING, FD_OTHER, true);
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
	struct uring_key mk = { .ctx = ctx->args[0] };
	struct io_uring_cqe *cqe;
	int res;

	if (ctx->args[1])
		return uring_completed((struct io_kiocb *)ctx->args[1]);
	/* (ctx, NULL, cqe) from 6.13, (ctx, NULL, user_data, res...) before */
	if (cfg.uring_cqe_arg) {
		cqe = (struct io_uring_cqe *)ctx->args[2];
		mk.user_data = BPF_CORE_READ(cqe, user_data);
		res = BPF_CORE_READ(cqe, res);
	} else {
		mk.user_data = ctx->args[2];
		res = ctx->args[3];
	}
	return uring_aux_completed(&mk, res);
}

#endif /* FDTRACE_URING_BPF_H */
