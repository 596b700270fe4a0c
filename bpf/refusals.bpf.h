/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connections refused at the syscall level: accepts that fail for lack of
 * fds or memory, counted by listening port, and the drain that follows
 * when a runtime (libuv, Go) accepts and closes at once what is queued to
 * make room: a connection accepted in a drain and closed untouched by its
 * thread before the thread's next accept was dropped.
 */
#ifndef FDTRACE_REFUSALS_BPF_H
#define FDTRACE_REFUSALS_BPF_H

/*
 * Gates of the drain detection, so that accepts and closes pay for it only
 * while it is needed: ports in a drain (the draining counts of the procs
 * map), and connections accepted in a drain not yet judged (drain_fds).
 */
volatile __u64 drains = 0;
volatile __u64 drain_pending = 0;

/* Refused and dropped connections: (tgid, listening port, start) -> counts. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, struct port_counts);
} ports SEC(".maps");

/*
 * The same by port, host-wide: exits leave it alone, so that it only grows
 * (the metrics' counters), lost exit records or not.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct port_total);
} port_totals SEC(".maps");

static __always_inline struct port_total *port_total(__u16 port)
{
	struct port_total zero = {}, *t;
	__u32 key = port;

	t = lookup_or_try_init(&port_totals, &key, &zero);
	if (!t)
		stat_add(STAT_PORTS_FULL, 1);
	return t;
}

/* tid -> the connection it accepted last in a drain, until it is judged. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, __u32);
	__type(value, struct drain_fd);
} drain_fds SEC(".maps");

static __always_inline bool is_accept(__u16 sc)
{
	return sc == SYS_ACCEPT || sc == SYS_ACCEPT4;
}

/* The local port of an inet socket fd (a listener), 0 if it is none. */
static __noinline __u16 socket_port(struct fdtable *fdt, int fd)
{
	struct file *f;
	struct sock *sk;
	__u16 family;

	if (fd < 0 || (__u32)fd >= KREAD(fdt, max_fds))
		return 0;
	f = fd_file(fdt, fd);
	if (!f || (file_mode(f) & S_IFMT) != S_IFSOCK)
		return 0;
	sk = file_sock(f);
	if (!sk)
		return 0;
	family = SOCK_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	return SOCK_READ(sk, __sk_common.skc_num);
}

/* Did the process neither read from nor write to this TCP connection? */
static __noinline bool untouched(struct file *f)
{
	struct sock *sk;

	if ((file_mode(f) & S_IFMT) != S_IFSOCK)
		return false;
	sk = file_sock(f);
	if (!sk || SOCK_READ(sk, sk_protocol) != IPPROTO_TCP)
		return false;
#define TCP_READ(a) CAST_READ(struct tcp_sock, sk, a)
	/* bytes_received counts what is still unread too, FIN included. */
	return TCP_READ(bytes_sent) == 0 &&
	       TCP_READ(write_seq) == TCP_READ(snd_nxt) &&
	       TCP_READ(bytes_received) ==
		       (__u32)(TCP_READ(rcv_nxt) - TCP_READ(copied_seq));
#undef TCP_READ
}

/* The counts of a listening port, created when asked to. */
static __always_inline struct port_counts *
port_counts(__u32 tgid, __u16 port, __u64 start_ns, bool create)
{
	struct port_key key = { .tgid = tgid,
				.port = port,
				.start_ns = start_ns };
	struct port_counts zero = {}, *c;

	if (!create)
		return bpf_map_lookup_elem(&ports, &key);
	c = lookup_or_try_init(&ports, &key, &zero);
	if (!c)
		stat_add(STAT_PORTS_FULL, 1);
	return c;
}

/*
 * Flip a flag, and say whether this call did. The compat programs run on
 * kernels without BPF_CMPXCHG (5.12): there two threads flipping it at
 * once can both win, counting a drain twice.
 */
static __always_inline bool flip(__u32 *flag, __u32 from, __u32 to)
{
#ifdef FDTRACE_COMPAT
	if (*flag != from)
		return false;
	*flag = to;
	return true;
#else
	return __sync_val_compare_and_swap(flag, from, to) == from;
#endif
}

static __always_inline void start_drain(struct port_counts *c, struct proc *p)
{
	if (flip(&c->draining, 0, 1)) {
		__sync_fetch_and_add(&p->draining, 1);
		__sync_fetch_and_add(&drains, 1);
	}
}

static __always_inline void end_drain(struct port_counts *c, struct proc *p)
{
	if (c && p && flip(&c->draining, 1, 0)) {
		__sync_fetch_and_add(&p->draining, -1);
		__sync_fetch_and_add(&drains, -1);
	}
}

static __always_inline void forget_pending(__u32 tid)
{
	if (!bpf_map_delete_elem(&drain_fds, &tid))
		__sync_fetch_and_add(&drain_pending, -1);
}

/*
 * An accept by a thread whose last connection accepted in a drain is still
 * open: that one was not dropped, it is being served, and the drain is over.
 */
static __always_inline void accept_after_pending(__u32 tgid)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct drain_fd *d = bpf_map_lookup_elem(&drain_fds, &tid);

	if (!d)
		return;
	end_drain(port_counts(tgid, d->port, d->start_ns, false),
		  find_proc(tgid));
	forget_pending(tid);
}

/* A refused accept: count it for the listener's port, which now drains. */
static __always_inline __u16 refused_on_port(__u32 tgid, struct proc *p,
					     struct fdtable *fdt, int lfd)
{
	__u16 port = socket_port(fdt, lfd);
	struct port_counts *c;
	struct port_total *t;

	if (!port)
		return 0;
	t = port_total(port);
	if (t)
		__sync_fetch_and_add(&t->refused, 1);
	c = port_counts(tgid, port, p->start_ns, true);
	if (c) {
		__sync_fetch_and_add(&c->refused, 1);
		start_drain(c, p);
	}
	return port;
}

/* An accept found the queue empty: a drain of its port is over. */
static __always_inline void queue_empty(__u32 tgid, struct fdtable *fdt,
					int lfd)
{
	struct proc *p = find_proc(tgid);
	__u16 port;

	if (!p || !p->draining)
		return;
	port = socket_port(fdt, lfd);
	if (port)
		end_drain(port_counts(tgid, port, p->start_ns, false), p);
}

/* An accept succeeded: in a drain, its connection is judged at its close. */
static __always_inline void accepted(__u32 tgid, struct proc *p,
				     struct fdtable *fdt, int lfd, int fd)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct drain_fd d = { .tgid = tgid, .fd = fd };
	struct port_counts *c;

	if (!p || !p->draining)
		return;
	d.port = socket_port(fdt, lfd);
	d.start_ns = p->start_ns;
	c = d.port ? port_counts(tgid, d.port, d.start_ns, false) : NULL;
	if (!c || !c->draining)
		return;
	if (bpf_map_update_elem(&drain_fds, &tid, &d, BPF_NOEXIST))
		stat_add(STAT_PORTS_FULL, 1);
	else
		__sync_fetch_and_add(&drain_pending, 1);
}

/*
 * The thread closes the connection it accepted in a drain, before its next
 * accept: dropped if the process never read from it nor wrote to it, and
 * otherwise served, which ends the drain.
 */
static __always_inline void close_pending(__u32 tgid, struct proc *p,
					  struct fdtable *fdt, int fd)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct drain_fd *d = bpf_map_lookup_elem(&drain_fds, &tid);
	struct port_counts *c;
	struct port_total *t;
	struct file *f;

	if (!d || d->fd != fd || d->tgid != tgid)
		return;
	c = port_counts(tgid, d->port, d->start_ns, false);
	f = fd_file(fdt, fd);
	if (c && f && untouched(f)) {
		__sync_fetch_and_add(&c->dropped, 1);
		t = port_total(d->port);
		if (t)
			__sync_fetch_and_add(&t->dropped, 1);
	} else
		end_drain(c, p);
	forget_pending(tid);
}

#endif /* FDTRACE_REFUSALS_BPF_H */
