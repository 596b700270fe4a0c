/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fds a read() installs: a fanotify group's events each carry an fd of the
 * accessed file, a userfaultfd's fork events a new userfaultfd. Reads are
 * far too many to hook for nothing: the read hook is attached by user space
 * once a traced process made such a group (read_hook_wanted), and reads of
 * other files leave at the first test.
 */
#ifndef FDTRACE_EVENTS_READ_BPF_H
#define FDTRACE_EVENTS_READ_BPF_H

volatile __u32 read_hook_wanted = 0;
/* The file operations of a fanotify group's and a userfaultfd's files. */
volatile __u64 fanotify_fops = 0;
volatile __u64 uffd_fops = 0;

#define FAN_EVENT_METADATA_LEN 24
#define FAN_FD_OFFSET 16
#define UFFD_MSG_LEN 32
#define UFFD_EVENT_FORK 0x13
#define UFFD_FORK_UFD_OFFSET 8
#define MAX_READ_EVENTS 4096 /* events read from one read() */

/* A fanotify group or a userfaultfd was made: what its reads look like. */
static __always_inline void note_event_file(__u16 sc, struct fdtable *fdt,
					    int fd)
{
	struct file *f = fd_file(fdt, fd);
	struct fd_event *e;
	__u64 ops;

	if (!f)
		return;
	ops = (__u64)BPF_CORE_READ(f, f_op);
	if (sc == SYS_FANOTIFY_INIT)
		fanotify_fops = ops;
	else
		uffd_fops = ops;
	if (!read_hook_wanted) {
		read_hook_wanted = 1;
		/* Errors-only too: the reader attaches at once. */
		e = new_event(EV_HOOK, sc, bpf_get_current_pid_tgid() >> 32,
			      fd);
		if (e)
			submit(e, sizeof(*e));
	}
}

struct read_ctx {
	__u32 tgid;
	bool fanotify;
	/* Walked twice, as scm_ctx's: looking for fds, then recording. */
	bool found; /* a flag, not a count: the verifier's states converge */
	__u64 stack_id;
	void *buf;
	long len;
	long off;
};

/*
 * Event i, at c->off: the fd it carries, if any. An offset whose bounds the
 * verifier knows better at each iteration would make it walk them all: a
 * userfaultfd's events, of one size, are at i times it, and a fanotify
 * group's offset is masked (buffers past 16 MiB are cut).
 */
static __always_inline long read_event(__u32 i, struct read_ctx *c, bool record)
{
	__u32 len;
	__u8 event;
	int fd = -1;

	if (!c->fanotify)
		c->off = (__u64)i * UFFD_MSG_LEN;
	else
		c->off &= 0xffffff;
	if (c->off < 0 || c->off >= c->len)
		return 1;
	if (c->fanotify) {
		if (bpf_probe_read_user(&len, sizeof(len), c->buf + c->off) ||
		    len < FAN_EVENT_METADATA_LEN ||
		    bpf_probe_read_user(&fd, sizeof(fd),
					c->buf + c->off + FAN_FD_OFFSET))
			return 1;
		c->off += len;
	} else if (bpf_probe_read_user(&event, sizeof(event),
				       c->buf + c->off) ||
		   (event == UFFD_EVENT_FORK &&
		    bpf_probe_read_user(&fd, sizeof(fd),
					c->buf + c->off +
						UFFD_FORK_UFD_OFFSET))) {
		return 1;
	}
	if (fd >= 0 && !record)
		c->found = true;
	else if (fd >= 0)
		record_user_fd(c->tgid, fd, SYS_READ, c->stack_id);
	return 0;
}

static long event_find(__u32 i, struct read_ctx *c)
{
	return read_event(i, c, false);
}

static long event_record(__u32 i, struct read_ctx *c)
{
	return read_event(i, c, true);
}

#ifdef FDTRACE_COMPAT
/*
 * The compat programs' loop over a read's events, and each iteration's
 * work: global functions, which take only numbers (see fdtable.bpf.h).
 * how: the reader's tgid, and what to do.
 */
#define READ_FANOTIFY (1ULL << 32)
#define READ_RECORD (1ULL << 33)
#define READ_FOUND (1LL << 40)

/* Event at off: the next one's offset (| READ_FOUND: it carries an fd). */
__noinline long compat_read_event(__u64 how, __u64 buf, long len, long off,
				  __u64 stack_id)
{
	struct read_ctx c = { .tgid = how,
			      .fanotify = how & READ_FANOTIFY,
			      .stack_id = stack_id,
			      .buf = (void *)buf,
			      .len = len,
			      .off = off };

	if (read_event((__u64)off / UFFD_MSG_LEN, &c, how & READ_RECORD))
		return -1;
	if (!c.fanotify)
		c.off += UFFD_MSG_LEN; /* read_event did not */
	return (c.found ? READ_FOUND : 0) | c.off;
}

/* Whether an event carries an fd (recording them, with READ_RECORD). */
__noinline int compat_read_events(__u64 how, __u64 buf, long len,
				  __u64 stack_id)
{
	long off = 0, next, found = 0;

	/* One branch an iteration: 5.10 follows 8,192 jumps at most. */
	for (__u64 i = 0; i < MAX_READ_EVENTS; i++) {
		next = compat_read_event(how, buf, len, off, stack_id);
		if (next < 0)
			break;
		found |= next;
		off = next & ~READ_FOUND;
	}
	return !!(found & READ_FOUND);
}
#endif

static __always_inline void walk_events(struct read_ctx *c, bool record)
{
#ifdef FDTRACE_COMPAT
	__u64 how = c->tgid | (c->fanotify ? READ_FANOTIFY : 0) |
		    (record ? READ_RECORD : 0);

	if (compat_read_events(how, (__u64)c->buf, c->len, c->stack_id))
		c->found = true;
#else
	bpf_loop(MAX_READ_EVENTS, record ? event_record : event_find, c, 0);
#endif
}

/* A read of n bytes into buf from fd: the fds its events carry. */
static __always_inline int read_events(__u32 tgid, struct task_struct *task,
				       int fd, void *buf, long n)
{
	struct read_ctx c = { .tgid = tgid, .buf = buf, .len = n };
	struct file *f = fd_file(task_fdt(task), fd);
	__u64 ops;

	if (!f)
		return 0;
	/* Every read of a traced process comes here: a load, where it can. */
	ops = (__u64)FILE_READ(f, f_op);
	if (ops == fanotify_fops)
		c.fanotify = true;
	else if (ops != uffd_fops)
		return 0;
	walk_events(&c, false);
	if (!c.found)
		return 0;
	c.off = 0;
	c.stack_id = capture_stack(tgid);
	walk_events(&c, true);
	return 0;
}

#endif /* FDTRACE_EVENTS_READ_BPF_H */
