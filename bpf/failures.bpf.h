/* SPDX-License-Identifier: GPL-2.0 */
/* Failed fd-creating syscalls: counted by errno, reported when they matter. */
#ifndef FDTRACE_FAILURES_BPF_H
#define FDTRACE_FAILURES_BPF_H

/* Failed fd-creating syscalls: (tgid, syscall, errno, start) -> count. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct err_key);
	__type(value, __u64);
} errors SEC(".maps");

/* Host-wide counts, indexed by enum total_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TOTAL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} totals SEC(".maps");

/*
 * The errors host-wide: (syscall, errno) -> count. Exits leave it alone, so
 * that it only grows (the metrics' counters), lost exit records or not.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct err_total_key);
	__type(value, __u64);
} error_totals SEC(".maps");

static __always_inline void count_in(void *map, const void *key)
{
	__u64 zero = 0, *cnt = lookup_or_try_init(map, key, &zero);

	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else
		stat_add(STAT_ERRORS_FULL, 1);
}

/*
 * Note in p the errors map entry of (sc, err), for its exit to take out.
 * Two threads may note one twice: the second finds it gone.
 */
static __always_inline void note_err_kind(struct proc *p, __u16 sc, int err)
{
	__u32 kind = (__u32)sc << 16 | (__u16)err;
	__u32 n = p->err_kinds;

#pragma unroll
	for (int i = 0; i < PROC_ERR_KINDS; i++)
		if (i < n && p->err_kind[i] == kind)
			return;
	if (n < PROC_ERR_KINDS)
		p->err_kind[n] = kind;
	__sync_fetch_and_add(&p->err_kinds, 1);
}

/*
 * Take pid's entries out of the errors map at its exit, into counts (if
 * not NULL: the exit record).
 */
static __always_inline void take_err_kinds(__u32 tgid, struct proc *p,
					   __u64 *counts)
{
	struct err_key key = { .tgid = tgid, .start_ns = p->start_ns };
	__u32 n = p->err_kinds;
	__u64 *cnt;

#pragma unroll
	for (int i = 0; i < PROC_ERR_KINDS; i++) {
		if (i >= n)
			break;
		key.syscall = p->err_kind[i] >> 16;
		key.err = p->err_kind[i] & 0xffff;
		cnt = bpf_map_lookup_elem(&errors, &key);
		if (counts)
			counts[i] = cnt ? *cnt : 0;
		if (cnt)
			bpf_map_delete_elem(&errors, &key);
	}
}

/*
 * Failures worth counting: not a kernel-internal restart (the caller never
 * sees it) nor an accept with nothing queued.
 */
static __always_inline bool counted_failure(__u16 sc, int err)
{
	return err < ERESTARTSYS && !(is_accept(sc) && err == EAGAIN);
}

/* Failures worth an event by default: running out of fds or memory. */
static __always_inline bool resource_failure(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOMEM ||
	       err == ENOBUFS;
}

/* Failures that get an event. */
static __always_inline bool reported_failure(__u16 sc, int err)
{
	return counted_failure(sc, err) &&
	       (cfg.all_errors || resource_failure(err));
}

/*
 * The stack of a failure that gets an event, taken by the program itself
 * (before the event: a new stack's record must be read first), so that
 * capture_stack's frame does not sit on top of syscall_failed's.
 */
static __always_inline __u64 failure_stack(__u32 tgid, __u16 sc, int err)
{
	return reported_failure(sc, err) ? capture_stack(tgid) : 0;
}

/* Each key in a scope of its own: syscall_failed's frame holds one at a time.
 */
static __always_inline void count_total(__u16 sc, int err)
{
	struct err_total_key total = { .syscall = sc, .err = err };

	count_in(&error_totals, &total);
}

static __always_inline void count_error(__u32 tgid, struct proc *p, __u16 sc,
					int err)
{
	struct err_key key = { .tgid = tgid, .syscall = sc, .err = err };

	if (p)
		key.start_ns = p->start_ns;
	count_in(&errors, &key);
}

/*
 * Account and report a failed fd-creating syscall. Out of line: the
 * failure path and the success path then do not share one stack frame.
 */
static __noinline void syscall_failed(__u16 sc, int err, const char *upath,
				      int lfd, __u64 stack_id)
{
	struct task_struct *task = current_task();
	__u32 tgid = current_tgid(task);
	struct fd_path_event *pe = NULL;
	struct fd_event *e;
	struct proc *p;
	__u16 port = 0;

	if (is_accept(sc) && err == EAGAIN && drains)
		queue_empty(tgid, task_fdt(task), lfd);
	if (!counted_failure(sc, err))
		return;
	if (err == EMFILE)
		percpu_add(&totals, TOTAL_EMFILE, 1);
	if (err == ENFILE)
		percpu_add(&totals, TOTAL_ENFILE, 1);
	if (is_accept(sc) && resource_failure(err))
		percpu_add(&totals, TOTAL_REFUSED, 1);
	count_total(sc, err);
	p = get_proc(tgid, task, 0);
	if (p) {
		__sync_fetch_and_add(&p->errors, 1);
		if (err == EMFILE)
			__sync_fetch_and_add(&p->emfile, 1);
		if (err == ENFILE)
			__sync_fetch_and_add(&p->enfile, 1);
		if (is_accept(sc) && resource_failure(err)) {
			__sync_fetch_and_add(&p->refused, 1);
			port = refused_on_port(tgid, p, task_fdt(task), lfd);
		}
	}
	count_error(tgid, p, sc, err);
	if (p)
		note_err_kind(p, sc, err);

	if (!reported_failure(sc, err))
		return;
	if (upath) {
		pe = new_path_event_at(EV_ERROR, sc, tgid, -1,
				       bpf_ktime_get_ns());
		e = pe ? &pe->e : NULL;
	} else {
		e = new_event(EV_ERROR, sc, tgid, -1);
	}
	if (!e)
		return;
	e->err = err;
	e->port = port;
	e->stack_id = stack_id;
	if (p && cfg.fd_records) {
		e->open_fds = proc_open_fds(p);
	} else {
		/* Without records, unseen fds made it drift: recount. */
		e->open_fds = count_open_fds(task_fdt(task));
		if (p)
			set_open_fds(p, e->open_fds);
	}
	e->fd_limit = fd_limit(task);
	if (pe) {
		bpf_probe_read_user_str(pe->path, sizeof(pe->path), upath);
		submit(e, sizeof(*pe));
	} else {
		submit(e, sizeof(*e));
	}
}

#endif /* FDTRACE_FAILURES_BPF_H */
