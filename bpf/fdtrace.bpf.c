// SPDX-License-Identifier: GPL-2.0
/*
 * fdtrace: per-process file descriptor accounting on syscall tracepoints.
 *
 * The programs: the exits of the syscalls that create fds, those that
 * close them (close at its exit with records, at its entry counting only;
 * close_range at its entry; dup2/dup3 onto an open fd), recvmsg's
 * received fds, and fork, exec and exit. What they share lives
 * in the headers, one concern each:
 *   kernel.bpf.h      run settings, reading kernel memory, user registers
 *   maps.bpf.h        map idioms, loss counters
 *   events.bpf.h      the ring buffer
 *   filter.bpf.h      which processes are traced
 *   fdtable.bpf.h     the task's fd table
 *   file.bpf.h        an fd's file: its type, its socket
 *   account.bpf.h     per-process counters and per-fd records
 *   refusals.bpf.h    refused and dropped connections by listening port
 *   stack.bpf.h       user stacks (stack_fp.bpf.h, stack_dwarf.bpf.h)
 *   failures.bpf.h    failed syscalls by errno
 *   scm.bpf.h         fds received in control messages
 *   events_read.bpf.h fds installed by reads of fanotify and userfaultfd
 *   uring.bpf.h       fds io_uring installs and closes
 *   dup.bpf.h         dup2/dup3, and the fd they replace
 */
#include "../vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "fdtrace.h"
#include "kernel.bpf.h"
#include "maps.bpf.h"
#include "events.bpf.h"
#include "filter.bpf.h"
#include "fdtable.bpf.h"
#include "file.bpf.h"
#include "account.bpf.h"
#include "refusals.bpf.h"
#include "stack.bpf.h"
#include "failures.bpf.h"
#include "scm.bpf.h"
#include "events_read.bpf.h"
#include "uring.bpf.h"
#include "dup.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Make these types part of BTF so that bpf2go generates their Go twins. */
const struct fd_event *unused_fd_event __attribute__((unused));
const struct fd_path_event *unused_fd_path_event __attribute__((unused));
const struct exit_event *unused_exit_event __attribute__((unused));
const enum syscall_id *unused_syscall_id __attribute__((unused));
const enum fd_type *unused_fd_type __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum stat_id *unused_stat_id __attribute__((unused));
const enum total_id *unused_total_id __attribute__((unused));
const enum compat_bounds *unused_compat_bounds __attribute__((unused));
const enum fd_flags *unused_fd_flags __attribute__((unused));
const struct port_key *unused_port_key __attribute__((unused));
const struct port_counts *unused_port_counts __attribute__((unused));
const struct exec_map *unused_exec_map __attribute__((unused));
const enum cfa_rule *unused_cfa_rule __attribute__((unused));
const struct unwind_header *unused_unwind_header __attribute__((unused));
const struct unwind_page *unused_unwind_page __attribute__((unused));
const struct unwind_row *unused_unwind_row __attribute__((unused));
const struct raw_stack *unused_raw_stack __attribute__((unused));

#define SMALL_TABLE 4096

/* The user pointer to the path of an open-family syscall, NULL otherwise. */
static __always_inline const char *open_path(__u16 sc, struct pt_regs *regs)
{
	switch (sc) {
	case SYS_OPEN:
	case SYS_CREAT:
		return (const char *)SYSCALL_ARG(1, regs);
	case SYS_OPENAT:
	case SYS_OPENAT2:
		return (const char *)SYSCALL_ARG(2, regs);
	}
	return NULL;
}

/*
 * Whether a successful exit of sc reads the syscall's arguments: those
 * that tell whether it made an fd (fcntl, signalfd, bpf) or where it came
 * from (dup's source fd), and the path, reported in events only. (An
 * accept's listener is read in a drain only.)
 */
static __always_inline bool reads_args(__u16 sc)
{
	switch (sc) {
	case SYS_OPEN:
	case SYS_CREAT:
	case SYS_OPENAT:
	case SYS_OPENAT2:
		return !cfg.errors_only;
	case SYS_FCNTL:
	case SYS_SIGNALFD:
	case SYS_SIGNALFD4:
	case SYS_BPF:
	case SYS_DUP:
		return true;
	}
	return false;
}

/*
 * Exit of a syscall that creates one fd (its return value). Arguments are
 * read from the task's saved user registers, so no sys_enter hook is needed.
 */
static __always_inline int on_exit_one(void *ctx, __u16 sc, long ret)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	struct fdtable *fdt = NULL;
	struct pt_regs *regs;
	const char *upath;
	struct proc *p;
	__u64 stack_id;
	bool in_drain;

	if (!trace_task_allowed(tgid, task))
		return 0;
	/* A helper call: only for the syscalls that read them. */
	regs = reads_args(sc) ? user_regs(task) : NULL;
	switch (sc) {
	case SYS_FCNTL: {
		long cmd = SYSCALL_ARG(2, regs);

		if (cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC)
			return 0;
		break;
	}
	case SYS_SIGNALFD:
	case SYS_SIGNALFD4:
		/* Only fd == -1 creates an fd; others change an fd. */
		if ((int)SYSCALL_ARG(1, regs) != -1)
			return 0;
		break;
	case SYS_BPF:
		if (!bpf_cmd_makes_fd(SYSCALL_ARG(1, regs)))
			return 0;
		break;
	}
	if (is_accept(sc) && drain_pending)
		accept_after_pending(tgid);
	if (ret < 0) {
		if (!regs)
			regs = user_regs(task);
		syscall_failed(sc, -ret, open_path(sc, regs),
			       SYSCALL_ARG(1, regs),
			       failure_stack(tgid, sc, -ret));
		return 0;
	}
	upath = regs ? open_path(sc, regs) : NULL;
	stack_id = capture_stack(tgid);
	/* drains read once: the verifier would follow it changing between. */
	in_drain = is_accept(sc) && drains;
	/* Two loads, likely misses: for records, or to look at the file. */
	if (cfg.fd_records || type_of_syscall(sc) == FD_OTHER || in_drain)
		fdt = task_fdt(task);
	p = get_proc(tgid, task, 1);
	if (sc == SYS_DUP || sc == SYS_FCNTL) {
		struct fd_key src = { .tgid = tgid,
				      .fd = SYSCALL_ARG(1, regs) };

		open_fd(tgid, p, fdt, ret, sc, live_record(&src), NULL,
			stack_id, 0);
		return 0;
	}
	open_fd(tgid, p, fdt, ret, sc, NULL, upath, stack_id, 0);
	if (sc == SYS_FANOTIFY_INIT || sc == SYS_USERFAULTFD)
		note_event_file(sc, fdt, ret);
	if (in_drain) {
		regs = user_regs(task);
		accepted(tgid, p, fdt, SYSCALL_ARG(1, regs), ret);
	}
	return 0;
}

/* Exit of pipe, pipe2 and socketpair: two fds written to a user array. */
static __always_inline int on_exit_pair(void *ctx, __u16 sc, long ret)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	struct pt_regs *regs;
	struct fdtable *fdt;
	int pair[2] = {};
	struct proc *p;
	__u64 stack_id;
	void *upair;

	if (!trace_task_allowed(tgid, task))
		return 0;
	if (ret < 0) {
		syscall_failed(sc, -ret, NULL, -1,
			       failure_stack(tgid, sc, -ret));
		return 0;
	}
	if (!cfg.fd_records && cfg.errors_only) {
		/* Two fds of the syscall's type: their numbers do not count. */
		p = get_proc(tgid, task, 2);
		if (p) {
			barrier_var(p);
			count_types(p->opened_by_type, type_of_syscall(sc), 2);
		}
		return 0;
	}
	stack_id = capture_stack(tgid);
	regs = user_regs(task);
	upair = sc == SYS_SOCKETPAIR ? (void *)SYSCALL_ARG(4, regs) :
				       (void *)SYSCALL_ARG(1, regs);
	if (bpf_probe_read_user(pair, sizeof(pair), upair))
		return 0;
	fdt = task_fdt(task);
	p = get_proc(tgid, task, 2);
	open_fd(tgid, p, fdt, pair[0], sc, NULL, NULL, stack_id, 0);
	open_fd(tgid, p, fdt, pair[1], sc, NULL, NULL, stack_id, 0);
	return 0;
}

#define EXIT_ONE(name, sc)                                                     \
	SEC("tracepoint/syscalls/sys_exit_" #name)                             \
	int tracepoint__syscalls__sys_exit_##name(                             \
		struct trace_event_raw_sys_exit *ctx)                          \
	{                                                                      \
		return on_exit_one(ctx, sc, ctx->ret);                         \
	}

EXIT_ONE(open, SYS_OPEN)
EXIT_ONE(creat, SYS_CREAT)
EXIT_ONE(openat, SYS_OPENAT)
EXIT_ONE(openat2, SYS_OPENAT2)
EXIT_ONE(socket, SYS_SOCKET)
EXIT_ONE(accept, SYS_ACCEPT)
EXIT_ONE(accept4, SYS_ACCEPT4)
EXIT_ONE(epoll_create, SYS_EPOLL_CREATE)
EXIT_ONE(epoll_create1, SYS_EPOLL_CREATE1)
EXIT_ONE(eventfd, SYS_EVENTFD)
EXIT_ONE(eventfd2, SYS_EVENTFD2)
EXIT_ONE(timerfd_create, SYS_TIMERFD_CREATE)
EXIT_ONE(signalfd, SYS_SIGNALFD)
EXIT_ONE(signalfd4, SYS_SIGNALFD4)
EXIT_ONE(inotify_init, SYS_INOTIFY_INIT)
EXIT_ONE(inotify_init1, SYS_INOTIFY_INIT1)
EXIT_ONE(memfd_create, SYS_MEMFD_CREATE)
EXIT_ONE(pidfd_open, SYS_PIDFD_OPEN)
EXIT_ONE(pidfd_getfd, SYS_PIDFD_GETFD)
EXIT_ONE(dup, SYS_DUP)
EXIT_ONE(fcntl, SYS_FCNTL)
EXIT_ONE(fanotify_init, SYS_FANOTIFY_INIT)
EXIT_ONE(io_uring_setup, SYS_IO_URING_SETUP)
EXIT_ONE(perf_event_open, SYS_PERF_EVENT_OPEN)
EXIT_ONE(userfaultfd, SYS_USERFAULTFD)
EXIT_ONE(open_by_handle_at, SYS_OPEN_BY_HANDLE_AT)
EXIT_ONE(open_tree, SYS_OPEN_TREE)
EXIT_ONE(fsopen, SYS_FSOPEN)
EXIT_ONE(fsmount, SYS_FSMOUNT)
EXIT_ONE(fspick, SYS_FSPICK)
EXIT_ONE(mq_open, SYS_MQ_OPEN)
EXIT_ONE(bpf, SYS_BPF)

/*
 * ioctl(TIOCGPTPEER) opens a pseudo-terminal's peer; USERFAULTFD_IOC_NEW
 * on /dev/userfaultfd makes a userfaultfd (its record says userfaultfd).
 * Every ioctl gets here: the command is looked at first.
 */
SEC("tracepoint/syscalls/sys_exit_ioctl")
int tracepoint__syscalls__sys_exit_ioctl(struct trace_event_raw_sys_exit *ctx)
{
	__u32 cmd = SYSCALL_ARG(2, user_regs(current_task()));

	if (cmd != TIOCGPTPEER && cmd != USERFAULTFD_IOC_NEW)
		return 0;
	return on_exit_one(ctx,
			   cmd == TIOCGPTPEER ? SYS_IOCTL : SYS_USERFAULTFD,
			   ctx->ret);
}

/*
 * read of a fanotify group or a userfaultfd (attached once a traced process
 * made one: see events_read.bpf.h).
 */
SEC("tracepoint/syscalls/sys_exit_read")
int tracepoint__syscalls__sys_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task;
	struct pt_regs *regs;
	__u32 tgid;

	if (ctx->ret <= 0)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	regs = user_regs(task);
	return read_events(tgid, task, SYSCALL_ARG(1, regs),
			   (void *)SYSCALL_ARG(2, regs), ctx->ret);
}

/* getsockopt(SO_PEERPIDFD) writes a new pidfd to user memory. */
SEC("tracepoint/syscalls/sys_exit_getsockopt")
int tracepoint__syscalls__sys_exit_getsockopt(
	struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task;
	struct pt_regs *regs;
	__u32 tgid;
	int fd;

	if (ctx->ret != 0)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	regs = user_regs(task);
	if ((int)SYSCALL_ARG(2, regs) != SOL_SOCKET ||
	    (int)SYSCALL_ARG(3, regs) != SO_PEERPIDFD ||
	    bpf_probe_read_user(&fd, sizeof(fd), (void *)SYSCALL_ARG(4, regs)))
		return 0;
	open_user_fd(tgid, get_proc(tgid, task, 1), task_fdt(task), fd,
		     SYS_GETSOCKOPT, capture_stack(tgid), 0);
	return 0;
}

/* clone/clone3 with CLONE_PIDFD: the parent gets a pidfd in user memory. */
static __always_inline int on_exit_clone(void *ctx, __u16 sc, long ret)
{
	struct task_struct *task;
	struct pt_regs *regs;
	__u64 flags = 0;
	void *upidfd;
	__u32 tgid;
	int fd;

	if (ret <= 0)
		return 0; /* failed, or the child's return */
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	regs = user_regs(task);
	if (sc == SYS_CLONE) {
		flags = SYSCALL_ARG(1, regs);
		upidfd = (void *)SYSCALL_ARG(3, regs);
	} else {
		struct {
			__u64 flags;
			__u64 pidfd;
		} args;

		if (bpf_probe_read_user(&args, sizeof(args),
					(void *)SYSCALL_ARG(1, regs)))
			return 0;
		flags = args.flags;
		upidfd = (void *)args.pidfd;
	}
	if (!(flags & CLONE_PIDFD) ||
	    bpf_probe_read_user(&fd, sizeof(fd), upidfd))
		return 0;
	open_fd(tgid, get_proc(tgid, task, 1), task_fdt(task), fd, sc, NULL,
		NULL, capture_stack(tgid), 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_clone")
int tracepoint__syscalls__sys_exit_clone(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit_clone(ctx, SYS_CLONE, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_clone3")
int tracepoint__syscalls__sys_exit_clone3(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit_clone(ctx, SYS_CLONE3, ctx->ret);
}

#define EXIT_PAIR(name, sc)                                                    \
	SEC("tracepoint/syscalls/sys_exit_" #name)                             \
	int tracepoint__syscalls__sys_exit_##name(                             \
		struct trace_event_raw_sys_exit *ctx)                          \
	{                                                                      \
		return on_exit_pair(ctx, sc, ctx->ret);                        \
	}

EXIT_PAIR(pipe, SYS_PIPE)
EXIT_PAIR(pipe2, SYS_PIPE2)
EXIT_PAIR(socketpair, SYS_SOCKETPAIR)

/*
 * close, counting only: counted at entry, where the fd is still in the
 * table to tell its type. With records, only a drain's listener is seen
 * here.
 */
SEC("tracepoint/syscalls/sys_enter_close")
int tracepoint__syscalls__sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	int fd = ctx->args[0];
	struct task_struct *task;
	struct fdtable *fdt;
	struct file *f = NULL;
	struct proc *p;
	__u32 tgid;
	__u8 type;

	if (cfg.fd_records && !drain_pending)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	fdt = task_fdt(task);
	/* No file (a number free, or reserved by an open not done): EBADF. */
	if (fd >= 0 && fd < KREAD(fdt, max_fds))
		f = fd_file(fdt, fd);
	if (!f)
		return 0;
	p = get_proc(tgid, task, 0);
	if (drain_pending)
		close_pending(tgid, p, fdt, fd);
	if (cfg.fd_records)
		return 0;
	type = type_of_file(f);
	/*
	 * An fd we never saw created (a creator we do not hook) shows when
	 * the count would fall below this open fd: recount the table. Only
	 * once its type has had as many closes as opens can that be. (With
	 * records, close_fd tells.)
	 */
	if (p && unseen_may_close(p, type) && proc_open_fds(p) <= 0 &&
	    set_open_fds(p, count_open_fds(fdt)))
		stat_add(STAT_DRIFT, 1);
	close_fd(tgid, p, fdt, fd, SYS_CLOSE, type, false);
	return 0;
}

/*
 * close, with records: accounted after it happened (see account.bpf.h).
 * Whatever it returns but EBADF, the fd is gone.
 */
SEC("tracepoint/syscalls/sys_exit_close")
int tracepoint__syscalls__sys_exit_close(struct trace_event_raw_sys_exit *ctx)
{
	struct task_struct *task;
	__u32 tgid;

	if (!cfg.fd_records || ctx->ret == -EBADF)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	close_fd(tgid, find_proc(tgid), task_fdt(task),
		 SYSCALL_ARG(1, user_regs(task)), SYS_CLOSE, TYPE_UNKNOWN,
		 true);
	return 0;
}

/*
 * close_range: the open fds in [first, last] close at entry, like close
 * counting only; with records, the exit sweeps again.
 */
SEC("tracepoint/syscalls/sys_enter_close_range")
int tracepoint__syscalls__sys_enter_close_range(
	struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	__u32 first = ctx->args[0], last = ctx->args[1], flags = ctx->args[2];
	struct sweep_ctx c = { .tgid = tgid,
			       .first = first,
			       .sc = SYS_CLOSE_RANGE,
			       .want_open = true };
	struct fdtable *fdt;
	__u32 max;

	if (!trace_task_allowed(tgid, task))
		return 0;
	if (first > last ||
	    (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return 0; /* EINVAL */
	if (flags & CLOSE_RANGE_CLOEXEC)
		return 0; /* only marks fds close-on-exec */
	fdt = task_fdt(task);
	max = BPF_CORE_READ(fdt, max_fds);
	if (first >= max)
		return 0;
	if (last >= max)
		last = max - 1;
	c.bits = BPF_CORE_READ(fdt, open_fds);
	c.p = get_proc(tgid, task, 0);
	sweep(last - first + 1, &c);
	return 0;
}

/*
 * close_range, with records: an fd another thread made in [first, last]
 * after the entry's sweep and before the close, recorded by its creator,
 * is gone now; its record goes, and its fd counts closed. (The records of
 * fds open at the exit are of fds made after the close: they stay.)
 */
SEC("tracepoint/syscalls/sys_exit_close_range")
int tracepoint__syscalls__sys_exit_close_range(
	struct trace_event_raw_sys_exit *ctx)
{
	struct sweep_ctx c = { .sc = SYS_CLOSE_RANGE };
	struct task_struct *task;
	struct pt_regs *regs;
	struct fdtable *fdt;
	__u32 tgid, last, max;

	if (!cfg.fd_records || ctx->ret != 0)
		return 0;
	task = current_task();
	tgid = current_tgid(task);
	if (!trace_task_allowed(tgid, task))
		return 0;
	c.tgid = tgid;
	regs = user_regs(task);
	if (SYSCALL_ARG(3, regs) & CLOSE_RANGE_CLOEXEC)
		return 0;
	c.first = SYSCALL_ARG(1, regs);
	last = SYSCALL_ARG(2, regs);
	fdt = task_fdt(task);
	max = BPF_CORE_READ(fdt, max_fds);
	if (c.first > last || c.first >= max)
		return 0;
	if (last >= max)
		last = max - 1;
	c.bits = BPF_CORE_READ(fdt, open_fds);
	c.p = find_proc(tgid);
	sweep(last - c.first + 1, &c); /* fds not open now, with a record */
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int tracepoint__syscalls__sys_enter_dup2(struct trace_event_raw_sys_enter *ctx)
{
	return dup_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_dup2")
int tracepoint__syscalls__sys_exit_dup2(struct trace_event_raw_sys_exit *ctx)
{
	return dup_exit(ctx, SYS_DUP2, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int tracepoint__syscalls__sys_enter_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return dup_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_dup3")
int tracepoint__syscalls__sys_exit_dup3(struct trace_event_raw_sys_exit *ctx)
{
	return dup_exit(ctx, SYS_DUP3, ctx->ret);
}

/* recvmsg, recvmmsg: fds passed with SCM_RIGHTS, pidfds with SCM_PIDFD. */
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int tracepoint__syscalls__sys_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return received_fds(SYS_RECVMSG,
			    (void *)SYSCALL_ARG(2, user_regs(current_task())),
			    1);
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int tracepoint__syscalls__sys_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return received_fds(SYS_RECVMMSG,
			    (void *)SYSCALL_ARG(2, user_regs(current_task())),
			    ctx->ret);
}

/*
 * Forget the counters of an exiting process. Several exiting threads can each
 * see signal->live reach 0: only the one that removes the entry of the process
 * reports, and forgets its drains.
 */
static __always_inline bool forget_proc(__u32 tgid, struct proc *p,
					__u64 draining)
{
	if (!drop_proc(tgid, p))
		return false;
	if (draining)
		__sync_fetch_and_add(&drains, -draining);
	return true;
}

/*
 * The record is tested for NULL once: before 5.12 the verifier does not
 * know a ring buffer record it has seen to be non-NULL stays so, and would
 * follow a second test's NULL branch with the record unreleased.
 */
static __always_inline void retire(__u32 tgid, struct task_struct *task,
				   struct proc *p, __u32 unswept)
{
	struct exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 draining = p->draining;

	if (!e) {
		take_err_kinds(tgid, p, NULL);
		if (forget_proc(tgid, p, draining))
			stat_add(STAT_LOST_EVENTS, 1);
		return;
	}
	take_err_kinds(tgid, p, e->err_count);
	e->kind = EV_EXIT;
	e->pid = tgid;
	e->ts = bpf_ktime_get_ns();
	e->fd_limit = fd_limit(task);
	e->unswept_from = unswept;
	e->pad2 = 0;
	e->proc = *p;
	if (forget_proc(tgid, p, draining))
		submit(e, sizeof(*e));
	else
		bpf_ringbuf_discard(e, 0);
}

/*
 * fork: runs before the child is first woken, so its fd table is still the
 * copy of the parent's and its count is exact.
 */
SEC("raw_tracepoint/sched_process_fork")
int raw_tracepoint__sched_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	struct copy_ctx c = { .parent = ptgid, .child = ctgid };
	struct proc *init;
	struct fdtable *fdt;
	struct fd_event *e;

	if (!armed || ctgid != BPF_CORE_READ(child, pid))
		return 0; /* not attached yet, or a thread sharing the table */
	if (cfg.filter_pids) {
		__u8 *t = bpf_map_lookup_elem(&traced, &ptgid);
		__u8 flags = TRACE_SELF | TRACE_FOLLOW;

		if (!t || !(*t & TRACE_FOLLOW))
			return 0;
		/*
		 * Children of an untraced parent (fdtrace starting a command)
		 * count from their exec: what runs before it is the parent's.
		 */
		if (!(*t & TRACE_SELF))
			flags = TRACE_FOLLOW | TRACE_AT_EXEC;
		/* A child left out of a full traced set goes uncounted too. */
		if (bpf_map_update_elem(&traced, &ctgid, &flags, BPF_ANY))
			stat_add(STAT_PROCS_FULL, 1);
	}
	if (!trace_allowed(ctgid))
		return 0;
	if (cfg.dwarf_stacks) {
		/*
		 * Until it execs, it runs its parent's code at the same places.
		 * A parent not known yet is asked for: its next children will
		 * start with its mappings.
		 */
		struct exec_mappings *maps =
			bpf_map_lookup_elem(&exec_maps, &ptgid);

		if (maps)
			bpf_map_update_elem(&exec_maps, &ctgid, maps, BPF_ANY);
		else
			ask_for_maps(ptgid);
	}
	fdt = BPF_CORE_READ(child, files, fdt);
	if (!fdt)
		return 0;
	init = new_proc(child);
	if (!init)
		return 0;
	if (cfg.fd_records) {
		c.bits = BPF_CORE_READ(fdt, open_fds);
		copy_fds(sweep_size(fdt), &c);
		/* Those without a copied record are counted from the table. */
		init->table_counted = init->open_base - c.copied;
	}
	/* Not woken yet: alone. An entry of its pid is an exited one's. */
	put_proc(ctgid, init, true, true);
	if (!cfg.fd_records || c.copied >= init->open_base)
		return 0;
	/* Some inherited fds had no record in the parent: ask for a seed. */
	e = new_event(EV_SEED, SYS_PREEXISTING, ctgid, -1);
	if (!e)
		return 0;
	e->ppid = ptgid;
	e->open_fds = init->open_base;
	submit(e, sizeof(*e));
	return 0;
}

/* exec: close-on-exec fds are gone by now, with no close to see. */
SEC("raw_tracepoint/sched_process_exec")
int raw_tracepoint__sched_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	struct sweep_ctx c = { .tgid = tgid, .sc = SYS_EXECVE };
	struct fdtable *fdt;
	struct proc *p;
	__s64 left;

	if (!armed)
		return 0;
	if (cfg.dwarf_stacks)
		forget_maps(tgid); /* a new image */
	if (drain_pending)
		forget_pending(current_tid(task));
	if (cfg.filter_pids) {
		__u8 *t = bpf_map_lookup_elem(&traced, &tgid);

		if (t && (*t & TRACE_AT_EXEC))
			*t = TRACE_SELF | TRACE_FOLLOW;
	}
	p = find_proc(tgid);
	fdt = task_fdt(task);
	if (!trace_allowed(tgid)) {
		if (!p)
			return 0;
		/* It took a name -c does not trace: it ends here for us. */
		c.any_bit = c.delete_only = true;
		c.bits = BPF_CORE_READ(fdt, open_fds);
		if (!cfg.fd_records) {
			retire(tgid, task, p, 0);
			return 0;
		}
		sweep(sweep_size(fdt), &c);
		retire(tgid, task, p, unswept_from(fdt));
		return 0;
	}
	if (!p) {
		/*
		 * First sight (a command fdtrace started, or -c matched the
		 * new name): count the table as it is now and record its fds
		 * here, before the process can fork; what the sweep cannot
		 * reach is recorded from /proc.
		 */
		struct fd_event *e;

		p = get_proc(tgid, task, 0);
		if (!p || !cfg.fd_records)
			return 0;
		c.p = p;
		c.bits = BPF_CORE_READ(fdt, open_fds);
		c.want_open = c.seed = true;
		sweep(sweep_size(fdt), &c);
		if (p->table_counted <= 0)
			return 0;
		e = new_event(EV_SEED, SYS_PREEXISTING, tgid, -1);
		if (e)
			submit(e, sizeof(*e));
		return 0;
	}
	bpf_get_current_comm(p->comm, sizeof(p->comm));
	c.p = p;
	c.bits = BPF_CORE_READ(fdt, open_fds);
	if (cfg.fd_records)
		sweep(sweep_size(fdt), &c);
	/* Close-on-exec fds with no record (created before we attached). */
	left = proc_open_fds(p) - count_open_fds(fdt);
	if (left < 0) {
		stat_add(STAT_DRIFT, -left);
		__sync_fetch_and_add(&p->open_base, -left);
	} else {
		__sync_fetch_and_add(&p->closed_untyped, left);
	}
	/* Its other threads are gone: plain arithmetic is safe. */
	p->table_counted -= left;
	if (p->table_counted < 0)
		p->table_counted = 0;
	return 0;
}

/*
 * The parent whose fd table a process shares (CLONE_FILES), or 0; 0 too
 * if that parent is exiting (its records go with it).
 */
static __always_inline __u32 table_heir(struct task_struct *task)
{
	struct task_struct *parent = living_parent(task);

	if (!parent ||
	    BPF_CORE_READ(parent, files) != BPF_CORE_READ(task, files))
		return 0;
	return BPF_CORE_READ(parent, tgid);
}

/* exit of the last thread: report the final counters and forget the process. */
SEC("raw_tracepoint/sched_process_exit")
int raw_tracepoint__sched_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	struct sweep_ctx c = { .tgid = tgid,
			       .want_open = true,
			       .delete_only = true };
	struct fdtable *fdt;
	struct proc *p;
	bool allowed;

	if (!armed)
		return 0;
	if (drain_pending)
		forget_pending(current_tid(task));
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (cfg.dwarf_stacks)
		forget_maps(tgid);
	allowed = trace_allowed(tgid);
	bpf_map_delete_elem(&traced, &tgid);
	p = find_proc(tgid);
	if (!p && !allowed)
		return 0;
	fdt = task_fdt(task);
	if (!fdt || !cfg.fd_records || cfg.exit_keeps_records) {
		if (p)
			retire(tgid, task, p, 0);
		return 0;
	}
	/*
	 * Its counters go before its records: user space, which records a
	 * process's fds from /proc and then looks for its counters, takes
	 * back a record that may have gone in after the sweep passed.
	 */
	if (p)
		retire(tgid, task, p, unswept_from(fdt));
	/* Small tables: also drop records of fds closed unseen. */
	c.any_bit = BPF_CORE_READ(fdt, max_fds) <= SMALL_TABLE;
	c.bits = BPF_CORE_READ(fdt, open_fds);
	c.heir = table_heir(task);
	sweep(sweep_size(fdt), &c);
	return 0;
}
