/* SPDX-License-Identifier: GPL-2.0 */
/* The ring buffer records reach user space by. */
#ifndef FDTRACE_EVENTS_BPF_H
#define FDTRACE_EVENTS_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); /* resized by the loader */
} events SEC(".maps");

/*
 * Batch wakeups: wake the reader when this record takes what is queued
 * past a multiple of cfg.wakeup_bytes: once per batch rather than once per
 * record (an interrupt each), and again while the reader is behind. The
 * reader also polls, so no record waits for long.
 */
static __always_inline void submit(void *e, __u64 size)
{
	__u64 flags = 0, avail;

	if (cfg.wakeup_bytes) {
		/* What is queued, this record and its header included. */
		avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
		flags = avail / cfg.wakeup_bytes !=
					(avail - size - 8) / cfg.wakeup_bytes ?
				BPF_RB_FORCE_WAKEUP :
				BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

/* Fill a record of the current thread: its fields zeroed but these. */
static __always_inline void init_event(struct fd_event *e, __u8 kind, __u16 sc,
				       __u32 tgid, int fd, __u64 ts)
{
	e->kind = kind;
	e->fd_type = FD_OTHER;
	e->syscall = sc;
	e->fd = fd;
	e->pid = tgid;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->ts = ts;
	e->err = 0;
	e->family = 0;
	e->sock_type = 0;
	e->flags = 0;
	e->port = 0;
	e->ppid = 0;
	e->stack_id = 0;
	e->open_fds = 0;
	e->fd_limit = 0;
	e->user_data = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Room for a record (size: a constant), or NULL, counted as lost. */
static __always_inline void *reserve_event(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		stat_add(STAT_LOST_EVENTS, 1);
	return e;
}

/*
 * A record of the current thread at ts (bpf_ktime_get_ns(): a clock read
 * costs, so a caller that has one passes it), its fields zeroed but these.
 */
static __always_inline struct fd_event *
new_event_at(__u8 kind, __u16 sc, __u32 tgid, int fd, __u64 ts)
{
	struct fd_event *e = reserve_event(sizeof(*e));

	if (e)
		init_event(e, kind, sc, tgid, fd, ts);
	return e;
}

#define new_event(kind, sc, tgid, fd)                                          \
	new_event_at(kind, sc, tgid, fd, bpf_ktime_get_ns())

/* new_event_at with room for a path, which it leaves empty. */
static __always_inline struct fd_path_event *
new_path_event_at(__u8 kind, __u16 sc, __u32 tgid, int fd, __u64 ts)
{
	struct fd_path_event *e = reserve_event(sizeof(*e));

	if (e) {
		init_event(&e->e, kind, sc, tgid, fd, ts);
		e->path[0] = 0;
	}
	return e;
}

#endif /* FDTRACE_EVENTS_BPF_H */
