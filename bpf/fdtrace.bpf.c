// SPDX-License-Identifier: GPL-2.0
/*
 * fdtrace: per-process file descriptor accounting on syscall tracepoints.
 *
 * Counts are kept exact by asking the task's own fd table: a close only
 * counts when its fd is open in the table, and a process seen for the first
 * time starts from a popcount of the table's open_fds bitmap. Per-fd records
 * (the fds map) carry what the counts cannot: type, syscall, age.
 */
#include "../vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "fdtrace.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * Kernel structures are read with plain loads through BTF pointers where
 * the verifier allows it: a bpf_probe_read_kernel (BPF_CORE_READ) is a
 * helper call each, and the hot paths would make a dozen.
 *
 * Two objects are built from this file. The default one needs
 * bpf_get_current_task_btf (5.11), bpf_task_pt_regs (5.15) and bpf_loop
 * (5.17). The compat one (FDTRACE_COMPAT, for 5.10 to 5.16) reads
 * everything with BPF_CORE_READ, finds the user registers itself, loops
 * with bounded loops, and takes no stacks. The loader picks one by probing.
 */
#ifdef FDTRACE_COMPAT
#define BTF_POINTERS 0
#define current_task() ((struct task_struct *)bpf_get_current_task())
/* The stack walkers are built but left out of every program. */
#pragma clang diagnostic ignored "-Wunused-function"
#else
#define BTF_POINTERS 1
#define current_task() bpf_get_current_task_btf()
#endif

/* Through a pointer the verifier knows the type of (the current task). */
#define KREAD(src, a, ...)                                                     \
	(BTF_POINTERS ? ___arrow(src, a, ##__VA_ARGS__) :                      \
			BPF_CORE_READ(src, a, ##__VA_ARGS__))

/*
 * A pointer read from memory gets its type back with bpf_rdonly_cast
 * (Linux 6.2). Weak: on older kernels the loader leaves the call out, and
 * have_rdonly_cast (set by the loader from the kernel's BTF) makes it dead
 * code the verifier never sees. bpf_ksym_exists would need 6.4, which
 * first took a kfunc's address.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
const volatile bool have_rdonly_cast = false;
#define cast_kernel(p, type)                                                   \
	((type *)bpf_rdonly_cast((void *)(p), bpf_core_type_id_kernel(type)))

/* Through a pointer of the given type read from memory. */
#define CAST_READ(type, src, a, ...)                                           \
	(BTF_POINTERS && have_rdonly_cast ?                                    \
		 ___arrow(cast_kernel(src, type), a, ##__VA_ARGS__) :          \
		 BPF_CORE_READ((type *)(src), a, ##__VA_ARGS__))

/* Make these types part of BTF so that bpf2go generates their Go twins. */
const struct fd_event *unused_fd_event __attribute__((unused));
const struct exit_event *unused_exit_event __attribute__((unused));
const enum syscall_id *unused_syscall_id __attribute__((unused));
const enum fd_type *unused_fd_type __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum stat_id *unused_stat_id __attribute__((unused));
const enum fd_flags *unused_fd_flags __attribute__((unused));
const struct port_key *unused_port_key __attribute__((unused));
const struct port_counts *unused_port_counts __attribute__((unused));
const struct exec_map *unused_exec_map __attribute__((unused));
const enum cfa_rule *unused_cfa_rule __attribute__((unused));
const struct raw_stack *unused_raw_stack __attribute__((unused));

/*
 * Map updates return a long, but some kernels (Debian's 6.1) hand the int
 * of the map's operation back without sign extension: an error read as a
 * long is then 0xffffffef, never -17. Errors go into an int.
 */
#define EEXIST 17
#define EMFILE 24
#define ENFILE 23
#define ENOMEM 12
#define ENOBUFS 105
#define RLIMIT_NOFILE 7
#define F_DUPFD 0
#define F_DUPFD_CLOEXEC 1030
#define CLOSE_RANGE_UNSHARE (1U << 1)
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#define SOL_SOCKET 1
#define SCM_RIGHTS 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFIFO 0010000
#define SCM_PIDFD 4
#define MAX_SCM_FDS 16
#define MAX_CMSGS 4
#define CLONE_PIDFD 0x1000
#define EAGAIN 11
#define AF_INET 2
#define AF_INET6 10
#define ERESTARTSYS 512	    /* and above: restarted, never seen by the caller */
#define MAX_SWEEP (1 << 23) /* bpf_loop's limit */
#define SMALL_TABLE 4096

/* Values of the traced map. */
#define TRACE_SELF (1 << 0)    /* account and report this process */
#define TRACE_FOLLOW (1 << 1)  /* its children are traced too */
#define TRACE_AT_EXEC (1 << 2) /* traced from its next exec on */

const volatile __u32 self_tgid = 0;	 /* fdtrace itself: never traced */
const volatile bool filter_pids = false; /* only tgids in the traced map */
const volatile bool filter_comm = false;
const volatile char targ_comm[TASK_COMM_LEN] = {};
const volatile bool errors_only = false;    /* no open/close events */
const volatile bool fd_records = true;	    /* a record per live fd */
const volatile __u64 wakeup_bytes = 0;	    /* wake the reader past this much */
const volatile bool capture_stacks = false; /* user stack of each new fd */
const volatile bool dwarf_stacks = false;   /* unwind by DWARF CFI rows */
const volatile bool exit_keeps_records = false; /* user space collects them */
const volatile bool all_errors = false; /* error events for every errno */

/*
 * Set by user space once every program is attached: a process counted
 * while only some hooks were live would miss opens or closes for good.
 */
volatile __u32 armed = 0;

/*
 * Gates of the drain detection, so that accepts and closes pay for it only
 * while it is needed: ports in a drain (the draining counts of the procs
 * map), and connections accepted in a drain not yet judged (drain_fds).
 */
volatile __u64 drains = 0;
volatile __u64 drain_pending = 0;

/* Live fds: (tgid, fd) -> how and when it was created. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fd_key);
	__type(value, struct fd_info);
} fds SEC(".maps");

/* Per-process counters: tgid -> struct proc. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct proc);
} procs SEC(".maps");

/* Failed fd-creating syscalls: (tgid, syscall, errno, start) -> count. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct err_key);
	__type(value, __u64);
} errors SEC(".maps");

/* Refused and dropped connections: (tgid, listening port, start) -> counts. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, struct port_counts);
} ports SEC(".maps");

/* tid -> the connection it accepted last in a drain, until it is judged. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, __u32);
	__type(value, struct drain_fd);
} drain_fds SEC(".maps");

/* tgid -> TRACE_* flags, used when filter_pids is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);
	__type(value, __u8);
} traced SEC(".maps");

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

/*
 * User stacks of fd creations: hash of (tgid, frames) -> frames. Keyed by
 * our own 64-bit hash rather than a stack trace map's bucket index, so that
 * two call sites never overwrite or refuse each other.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct stack);
} stacks SEC(".maps");

/* Words of the user stack searched for the frames a walk would miss. */
#define TOP_WORDS 64

/* The state of one stack walk (see capture_stack). */
struct walk_ctx {
	__u64 sp;
	__u64 fp;
	__u64 pc;	 /* the chain's last frame */
	__u64 chain_end; /* address of its return address */
	__u64 fp_any;	 /* a saved frame pointer not known to call the chain */
	__u64 fp_callee; /* the function rbp's frame belongs to */
	__u64 hash;
	int slot; /* top word of the chain's end, or the fallback's */
	int anchor;
	int fp_slot;	 /* top word the walk goes on from; -1: rbp */
	int fp_any_slot; /* fp_any's */
	bool fp_ok;	 /* rbp is still the caller's frame pointer */
};

/* Frames a walk may recover from the top of the stack and remember. */
#define MEMO_FRAMES 15

/*
 * What the search of the top of the stack found, for one call site: the
 * frames and the words they were in, and where the frame-pointer walk went
 * on from. The same syscall instruction under the same frame has the same
 * frames in the same words; when they are there again the search, which
 * reads code for most words, is skipped.
 */
struct walk_memo {
	__u64 ret[MEMO_FRAMES];
	__u8 slot[MEMO_FRAMES];
	__u8 n;
	__s32 fp_slot; /* -1: rbp, -2: none */
	__u32 fp_off;  /* that frame pointer - sp */
	__u32 chain_off;
};

struct memo_key {
	__u64 pc;
	__u64 fp_ret; /* return address above rbp's frame, 0 if none */
	__u32 tgid;
	__u32 fp_off; /* rbp - sp */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct memo_key);
	__type(value, struct walk_memo);
} walk_memos SEC(".maps");

/*
 * Room to build a stack, the top of the user stack and the walk's state,
 * kept off the BPF stack: the verifier would follow every value the walk's
 * loops could give them.
 */
/*
 * What DWARF unwinding found at one place (a process, a pc, a stack
 * pointer): the frames and where on the stack each return address was.
 * When those words hold the same return addresses again, the call chain is
 * the same and its unwinding is skipped.
 */
struct unwind_memo {
	__u32 nr;
	__u32 pad;
	__u32 off[MAX_STACK_DEPTH]; /* of ips[i] (i > 0) from the stack pointer
				     */
	__u64 ips[MAX_STACK_DEPTH];
};

struct unwind_memo_key {
	__u32 tgid;
	__u32 pad;
	__u64 pc;
	__u64 sp;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, struct unwind_memo_key);
	__type(value, struct unwind_memo);
} unwind_memos SEC(".maps");

/* DWARF unwinding's registers and the table of the last frame. */
struct dwarf_state {
	__u64 pc;
	__u64 sp;
	__u64 bp;
	__u64 sp0; /* the syscall's stack pointer */
	/* The table of the last frame: the next is often in the same file. */
	__u32 table;
	__u32 pages;
	__u32 lo;
	bool unknown; /* a pc in no mapping known */
};

/*
 * Stacks sent to user space, by where they were taken: the same
 * instruction at the same stack depth under the same top of the stack is
 * the same stack, in a loop say. It is sent once.
 */
struct raw_key {
	__u32 tgid;
	__u32 pad;
	__u64 ip;
	__u64 sp;
	__u64 top; /* a hash of the stack's top 64 bytes */
};

/*
 * Everything a stack capture needs beyond a few registers lives here: the
 * BPF stack is shared with the program that captures (512 bytes through
 * the whole call chain, bpf_loop callbacks included).
 */
struct stack_work {
	struct stack st;
	__u64 top[TOP_WORDS];
	struct walk_ctx c;
	__u8 from[MAX_STACK_DEPTH]; /* the top word each frame came from */
	struct walk_memo memo;
	struct unwind_memo umemo;
	struct dwarf_state us;
	struct memo_key memo_key;
	struct unwind_memo_key umemo_key;
	struct raw_key raw_key;
	__u64 raw_top[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_work);
} stack_scratch SEC(".maps");

static __always_inline struct stack_work *stack_work(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&stack_scratch, &zero);
}

/* Room to build a struct proc: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc);
} proc_scratch SEC(".maps");

/* Loss and drift counters, indexed by enum stat_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); /* resized by the loader */
} events SEC(".maps");

static __always_inline void stat_add(__u32 id, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &id);

	if (v)
		*v += n;
}

static __always_inline bool comm_matches(const char *comm)
{
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (comm[i] != targ_comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

static __always_inline bool trace_allowed(__u32 tgid)
{
	if (!armed || tgid == self_tgid)
		return false;
	if (filter_pids) {
		__u8 *t = bpf_map_lookup_elem(&traced, &tgid);

		if (!t || !(*t & TRACE_SELF))
			return false;
	}
	if (filter_comm) {
		/* The process's name, as /proc/PID/comm: not the thread's. */
#ifdef FDTRACE_COMPAT
		char comm[TASK_COMM_LEN] = {};

		BPF_CORE_READ_STR_INTO(&comm, current_task(), group_leader,
				       comm);
#else
		char *comm = current_task()->group_leader->comm;
#endif
		if (!comm_matches(comm))
			return false;
	}
	return true;
}

static __always_inline struct fdtable *task_fdt(struct task_struct *task)
{
	return KREAD(task, files, fdt);
}

static __always_inline unsigned long bitmap_word(unsigned long *bits, __u32 i)
{
	unsigned long w = 0;

	bpf_probe_read_kernel(&w, sizeof(w), &bits[i]);
	return w;
}

static __always_inline bool fd_bit(unsigned long *bits, __u32 max, int fd)
{
	if (fd < 0 || (__u32)fd >= max)
		return false;
	return bitmap_word(bits, fd / 64) & (1UL << (fd % 64));
}

static __always_inline bool fd_is_open(struct fdtable *fdt, int fd)
{
	return fd_bit(KREAD(fdt, open_fds), KREAD(fdt, max_fds), fd);
}

/*
 * Loops over an fd table. bpf_loop (5.17) runs a callback up to 8M times
 * and the verifier checks it once. Without it (FDTRACE_COMPAT) a loop is
 * bounded, and the verifier walks every iteration, and whatever follows the
 * loop once per way out of it: so each compat loop is a global function
 * of its own (checked once, whatever calls it), and each iteration's work
 * another (checked once too). Tables are swept up to COMPAT_SWEEP_FDS fds
 * and counted up to COMPAT_COUNT_WORDS words; what lies beyond is counted
 * in STAT_UNSWEPT, never dropped silently.
 */
#ifdef FDTRACE_COMPAT
#define COMPAT_SWEEP_FDS 4096
#define COMPAT_COUNT_WORDS 512

/*
 * The loops below have this shape, the one 5.10's verifier sees end: a
 * 64-bit count clamped here, a constant bound, a break. (Clang folds
 * "i < BOUND && i < n" into one 32-bit bound that 5.10 cannot follow.)
 */
static __always_inline __u64 compat_bound(__u64 n, __u64 bound)
{
	if (n <= bound)
		return n;
	stat_add(STAT_UNSWEPT, n - bound);
	return bound;
}
#endif

/* How many fds a sweep looks at: the table, within bpf_loop's limit. */
static __always_inline __u32 sweep_size(struct fdtable *fdt)
{
	__u32 max = BPF_CORE_READ(fdt, max_fds);

	return max < MAX_SWEEP ? max : MAX_SWEEP;
}

/* There is no popcount instruction in BPF. */
static __always_inline __u64 popcount64(__u64 x)
{
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (x * 0x0101010101010101ULL) >> 56;
}

struct count_ctx {
	unsigned long *bits;
	__u64 n;
};

static long count_word(__u32 i, struct count_ctx *c)
{
	c->n += popcount64(bitmap_word(c->bits, i));
	return 0;
}

#ifdef FDTRACE_COMPAT
/* The compat programs' count (see compat_bound): global. */
__noinline __u64 compat_count_open_fds(unsigned long bits, __u32 words)
{
	__u64 n = 0, max = compat_bound(words, COMPAT_COUNT_WORDS);

	for (__u64 i = 0; i < COMPAT_COUNT_WORDS; i++) {
		if (i >= max)
			break;
		n += popcount64(bitmap_word((unsigned long *)bits, i));
	}
	return n;
}
#endif

/* The exact number of open fds in a table. */
static __always_inline __s64 count_open_fds(struct fdtable *fdt)
{
	struct count_ctx c = { .bits = BPF_CORE_READ(fdt, open_fds) };
	__u32 words = (BPF_CORE_READ(fdt, max_fds) + 63) / 64;

	if (!c.bits)
		return 0;
#ifdef FDTRACE_COMPAT
	return compat_count_open_fds((unsigned long)c.bits, words);
#else
	bpf_loop(words, count_word, &c, 0);
	return c.n;
#endif
}

static __always_inline __u64 fd_limit(struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	__u64 lim = 0;

	bpf_core_read(&lim, sizeof(lim), &sig->rlim[RLIMIT_NOFILE].rlim_cur);
	return lim;
}

/*
 * A zeroed struct proc counted from the task's fd table, in scratch space.
 * Out of line: first sight of a process is rare, the frame is not.
 */
static __noinline struct proc *new_proc(struct task_struct *task)
{
	__u32 zero = 0;
	struct proc *p = bpf_map_lookup_elem(&proc_scratch, &zero);
	/* task may be a forked child: no BTF pointer. */
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);

	if (!p)
		return NULL;
	__builtin_memset(p, 0, sizeof(*p));
	if (fdt)
		p->open_fds = count_open_fds(fdt);
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	p->start_ns = BPF_CORE_READ(leader, start_time);
	bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), leader->comm);
	return p;
}

/*
 * The counters of a process, created on first sight from its fd table.
 * pending: fds the current syscall already installed and will count itself.
 */
static __always_inline struct proc *
get_proc(__u32 tgid, struct task_struct *task, __s64 pending)
{
	struct proc *p = bpf_map_lookup_elem(&procs, &tgid);
	struct proc *init;
	int err; /* see EEXIST */

	if (p)
		return p;
	init = new_proc(task);
	if (!init)
		return NULL;
	init->open_fds -= pending;
	err = bpf_map_update_elem(&procs, &tgid, init, BPF_NOEXIST);
	if (err && err != -EEXIST /* another thread won */) {
		stat_add(STAT_PROCS_FULL, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&procs, &tgid);
}

#ifdef FDTRACE_COMPAT
#define THREAD_SIZE (4096 << 2) /* x86-64 without KASAN */
#define USER_CS 0x33
#define USER32_CS 0x23
#define USER_DS 0x2b

/*
 * The user registers sit at the top of the task's kernel stack, below
 * TOP_OF_KERNEL_STACK_PADDING (16 bytes with FRED, else none): where the
 * code and stack segments are user ones. (Without the padding, the padded
 * guess reads orig_ax as cs and eflags, whose IF bit is set, as ss.)
 */
static __always_inline struct pt_regs *user_regs(struct task_struct *task)
{
	void *top = BPF_CORE_READ(task, stack) + THREAD_SIZE;
	struct pt_regs *regs = (struct pt_regs *)(top - 16) - 1;
	unsigned long cs = BPF_CORE_READ(regs, cs);

	if ((cs == USER_CS || cs == USER32_CS) &&
	    BPF_CORE_READ(regs, ss) == USER_DS)
		return regs;
	return (struct pt_regs *)top - 1;
}

#define SYSCALL_ARG(n, regs) PT_REGS_PARM##n##_CORE_SYSCALL(regs)
#define USER_IP(regs) BPF_CORE_READ(regs, ip)
#define USER_SP(regs) BPF_CORE_READ(regs, sp)
#define USER_FP(regs) BPF_CORE_READ(regs, bp)
#else
static __always_inline struct pt_regs *user_regs(struct task_struct *task)
{
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

#define SYSCALL_ARG(n, regs) PT_REGS_PARM##n##_SYSCALL(regs)
#define USER_IP(regs) PT_REGS_IP(regs)
#define USER_SP(regs) PT_REGS_SP(regs)
#define USER_FP(regs) PT_REGS_FP(regs)
#endif

/*
 * Batch wakeups: wake the reader when this record takes what is queued
 * past a multiple of wakeup_bytes: once per batch rather than once per
 * record (an interrupt each), and again while the reader is behind. The
 * reader also polls, so no record waits for long.
 */
static __always_inline void submit(void *e, __u64 size)
{
	__u64 flags = 0, avail;

	if (wakeup_bytes) {
		/* What is queued, this record and its 8-byte header included.
		 */
		avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
		flags = avail / wakeup_bytes !=
					(avail - size - 8) / wakeup_bytes ?
				BPF_RB_FORCE_WAKEUP :
				BPF_RB_NO_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

static __always_inline struct fd_event *new_event(__u8 kind, __u16 sc,
						  __u32 tgid, int fd)
{
	struct fd_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		stat_add(STAT_LOST_EVENTS, 1);
		return NULL;
	}
	e->kind = kind;
	e->fd_type = FD_OTHER;
	e->syscall = sc;
	e->fd = fd;
	e->pid = tgid;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->ts = bpf_ktime_get_ns();
	e->err = 0;
	e->family = 0;
	e->sock_type = 0;
	e->flags = 0;
	e->port = 0;
	e->ppid = 0;
	e->stack_id = 0;
	e->open_fds = 0;
	e->fd_limit = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->path[0] = 0;
	return e;
}

static __always_inline struct file *fd_file(struct fdtable *fdt, int fd)
{
	struct file **files = KREAD(fdt, fd);
	struct file *f = NULL;

	/* Not a BTF pointer: read it with FILE_READ. */
	bpf_probe_read_kernel(&f, sizeof(f), &files[fd & 0xfffffff]);
	return f;
}

#define FILE_READ(f, a, ...) CAST_READ(struct file, f, a, ##__VA_ARGS__)
#define SOCK_READ(sk, a, ...) CAST_READ(struct sock, sk, a, ##__VA_ARGS__)

static __always_inline umode_t file_mode(struct file *f)
{
	return FILE_READ(f, f_inode, i_mode);
}

/* The struct sock of a socket's file. */
static __always_inline struct sock *file_sock(struct file *f)
{
	void *sock = FILE_READ(f, private_data);

	return CAST_READ(struct socket, sock, sk);
}

static __always_inline bool name_is(const char *name, const char *want, int n)
{
	for (int i = 0; i < n; i++)
		if (name[i] != want[i])
			return false;
	return true;
}

/*
 * Classify an fd by its file when the syscall cannot tell (dup, SCM). Out
 * of line, as are the other readers of a file: without bpf_rdonly_cast
 * every field read takes a slot of the stack.
 */
static __noinline void inspect_file(struct file *f, struct fd_info *info)
{
	umode_t mode = file_mode(f);
	char name[12] = {};

	switch (mode & S_IFMT) {
	case S_IFSOCK: {
		void *sock = FILE_READ(f, private_data);

		info->fd_type = FD_SOCKET;
		info->family = SOCK_READ(file_sock(f), __sk_common.skc_family);
		info->sock_type = CAST_READ(struct socket, sock, type);
		return;
	}
	case S_IFIFO:
		info->fd_type = FD_PIPE;
		return;
	case S_IFREG:
	case 0: /* anonymous inodes: the name tells */
		break;
	default:
		info->fd_type = FD_FILE;
		return;
	}
	bpf_probe_read_kernel_str(name, sizeof(name),
				  FILE_READ(f, f_path.dentry, d_name.name));
	if ((mode & S_IFMT) == S_IFREG && name_is(name, "memfd:", 6))
		info->fd_type = FD_MEMFD;
	else if (mode & S_IFMT)
		info->fd_type = FD_FILE;
	else if (name_is(name, "[eventpoll]", 11))
		info->fd_type = FD_EPOLL;
	else if (name_is(name, "[eventfd]", 9))
		info->fd_type = FD_EVENTFD;
	else if (name_is(name, "[timerfd]", 9))
		info->fd_type = FD_TIMERFD;
	else if (name_is(name, "[signalfd]", 10))
		info->fd_type = FD_SIGNALFD;
	else if (name_is(name, "inotify", 7))
		info->fd_type = FD_INOTIFY;
	else if (name_is(name, "[pidfd]", 7))
		info->fd_type = FD_PIDFD;
	else
		info->fd_type = FD_OTHER;
}

static __always_inline __u8 type_of_syscall(__u16 sc)
{
	switch (sc) {
	case SYS_OPEN:
	case SYS_CREAT:
	case SYS_OPENAT:
	case SYS_OPENAT2:
		return FD_FILE;
	case SYS_SOCKET:
	case SYS_SOCKETPAIR:
	case SYS_ACCEPT:
	case SYS_ACCEPT4:
		return FD_SOCKET;
	case SYS_PIPE:
	case SYS_PIPE2:
		return FD_PIPE;
	case SYS_EPOLL_CREATE:
	case SYS_EPOLL_CREATE1:
		return FD_EPOLL;
	case SYS_EVENTFD:
	case SYS_EVENTFD2:
		return FD_EVENTFD;
	case SYS_TIMERFD_CREATE:
		return FD_TIMERFD;
	case SYS_SIGNALFD:
	case SYS_SIGNALFD4:
		return FD_SIGNALFD;
	case SYS_INOTIFY_INIT:
	case SYS_INOTIFY_INIT1:
		return FD_INOTIFY;
	case SYS_MEMFD_CREATE:
		return FD_MEMFD;
	case SYS_PIDFD_OPEN:
	case SYS_CLONE:
	case SYS_CLONE3:
		return FD_PIDFD;
	case SYS_OPEN_BY_HANDLE_AT:
		return FD_FILE;
	}
	return FD_OTHER; /* dup family, recvmsg: look at the file */
}

/*
 * Does w look like a return address: is it preceded by a call instruction?
 * call rel32 (e8), call *disp32(%rip) (ff 15), call *%reg (ff d0+r),
 * call *(%reg) (ff 10+r), call *disp8(%reg) (ff 50+r).
 */
static __always_inline bool after_call(__u64 w)
{
	__u8 b[8];

	if (w < 4096 || w >= 0x800000000000ULL)
		return false;
	if (bpf_probe_read_user(b, sizeof(b), (void *)(w - 8)))
		return false;
	return b[3] == 0xe8 || (b[2] == 0xff && b[3] == 0x15) ||
	       (b[6] == 0xff &&
		((b[7] & 0xf8) == 0xd0 || (b[7] & 0xf8) == 0x10)) ||
	       (b[5] == 0xff && (b[6] & 0xf8) == 0x50);
}

/* A frame pointer lies above sp, within reach of a thread's stack. */
static __always_inline bool frame_pointer_ok(__u64 fp, __u64 sp)
{
	return fp > sp && fp - sp < (64ULL << 20) && !(fp & 7);
}

/* Is fp a frame pointer: does the word above it look like a return address? */
static __always_inline bool frame_at(__u64 fp, __u64 sp)
{
	__u64 ret;

	return frame_pointer_ok(fp, sp) &&
	       !bpf_probe_read_user(&ret, sizeof(ret), (void *)(fp + 8)) &&
	       after_call(ret);
}

/* The longest function whose return addresses are matched to its entry. */
#define MAX_FUNC_BYTES (1 << 16)

static __always_inline bool holds(__u64 entry, __u64 pc)
{
	return entry <= pc && pc - entry < MAX_FUNC_BYTES;
}

/* The function a GOT slot points at, 0 if unreadable. */
static __always_inline __u64 got_entry(__u64 slot)
{
	__u64 fn;

	return bpf_probe_read_user(&fn, sizeof(fn), (void *)slot) ? 0 : fn;
}

/*
 * Where a PLT stub at entry jumps (jmp *GOT(%rip), after endbr64 and a bnd
 * prefix in IBT stubs), 0 if entry is no such stub.
 */
static __always_inline __u64 plt_target(__u64 entry)
{
	__u8 b[12];
	__s32 d;

	if (bpf_probe_read_user(b, sizeof(b), (void *)entry))
		return 0;
	if (b[0] == 0xff && b[1] == 0x25) {
		__builtin_memcpy(&d, &b[2], 4);
		return got_entry(entry + 6 + d);
	}
	if (b[0] != 0xf3 || b[1] != 0x0f || b[2] != 0x1e || b[3] != 0xfa)
		return 0;
	if (b[4] == 0xff && b[5] == 0x25) {
		__builtin_memcpy(&d, &b[6], 4);
		return got_entry(entry + 10 + d);
	}
	if (b[4] == 0xf2 && b[5] == 0xff && b[6] == 0x25) {
		__builtin_memcpy(&d, &b[7], 4);
		return got_entry(entry + 11 + d);
	}
	return 0;
}

/*
 * The function the call ending at ret called, through the PLT or not when
 * resolve_plt; 0 when it is no call whose target can be known: indirect
 * calls cannot be checked and do not count. A direct call is e8 rel32, a
 * call through the GOT ff 15 disp32.
 */
static __always_inline __u64 callee(__u64 ret, bool resolve_plt)
{
	__u64 entry;
	__u8 b[6];
	__s32 d;

	if (ret < 4096 || ret >= 0x800000000000ULL ||
	    bpf_probe_read_user(b, sizeof(b), (void *)(ret - 6)))
		return 0;
	__builtin_memcpy(&d, &b[2], 4);
	if (b[0] == 0xff && b[1] == 0x15)
		return got_entry(ret + d);
	if (b[1] != 0xe8)
		return 0;
	entry = ret + d;
	if (resolve_plt) {
		__u64 fn = plt_target(entry);

		if (fn)
			return fn;
	}
	return entry;
}

/* Is ret the return address of a call into the function holding pc? */
static __always_inline bool returns_from(__u64 ret, __u64 pc)
{
	__u64 entry = callee(ret, false);

	return entry && (holds(entry, pc) || holds(plt_target(entry), pc));
}

/*
 * The user stack of the current syscall, stored in the stacks map; its key,
 * or 0 when there is none.
 *
 * A frame-pointer walk misses the frames of code built without frame
 * pointers between the syscall and the first frame: libc's wrappers and
 * whatever in libc called them (fopen goes four functions deep), Go's
 * Syscall6. Their return addresses are on top of the user stack:
 *  - a chain of words each returning from a call into the function holding
 *    the one before, starting at the syscall's ip;
 *  - when rbp is a frame pointer, the return address into its frame's
 *    function: the highest word below the frame returning into the
 *    function its own return address says was called. This one survives
 *    tail calls and indirect calls that break the chain.
 * The walk then goes on from rbp, or, when the wrapper used rbp for data,
 * from a frame pointer saved in the chain's frames.
 *
 * Where neither is found, the caller's return address is taken from the
 * top of the stack: the first word that follows a call instruction just
 * above the saved rbp.
 */
/* Words pointing into the stack itself are neither code nor worth a read. */
static __always_inline bool on_stack(__u64 w, __u64 sp)
{
	return w - sp < (64ULL << 20);
}

static long find_chain(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;
	__u64 ret;

	if (!w || i >= TOP_WORDS || w->st.nr >= MAX_STACK_DEPTH)
		return 1;
	ret = w->top[i];
	if (on_stack(ret, c->sp) || !returns_from(ret, c->pc))
		return 0;
	w->from[w->st.nr & (MAX_STACK_DEPTH - 1)] = i;
	w->st.ips[w->st.nr++ & (MAX_STACK_DEPTH - 1)] = ret;
	c->pc = ret;
	c->chain_end = c->sp + 8 * i;
	c->slot = i;
	return 0;
}

static long find_anchor(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;
	__u64 ret;

	if (!w || i >= TOP_WORDS || c->sp + 8 * i >= c->fp)
		return 1;
	ret = w->top[i];
	if ((int)i > c->slot && holds(c->fp_callee, ret) && after_call(ret))
		c->anchor = i;
	return 0;
}

/* Is fp the frame of the caller of the function holding pc? */
static __always_inline bool frame_calls(__u64 fp, __u64 pc)
{
	__u64 ret;

	return !bpf_probe_read_user(&ret, sizeof(ret), (void *)(fp + 8)) &&
	       returns_from(ret, pc);
}

/*
 * The frame pointer saved by the frames without one, when the wrapper used
 * rbp for data: the lowest word on top of the stack pointing at a frame
 * above the chain whose return address calls the chain's last function,
 * else (it was called indirectly, or there is no chain) the lowest
 * pointing at any frame above the chain.
 */
static long find_saved_fp(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;
	__u64 v;

	if (!w || i >= TOP_WORDS)
		return 1;
	v = w->top[i];
	if (v <= c->sp + 8 * i || v <= c->chain_end ||
	    !frame_pointer_ok(v, c->sp))
		return 0;
	if ((!c->fp || v < c->fp) && frame_calls(v, c->pc)) {
		c->fp = v;
		c->fp_slot = i;
	} else if ((!c->fp_any || v < c->fp_any) && frame_at(v, c->sp)) {
		c->fp_any = v;
		c->fp_any_slot = i;
	}
	return 0;
}

/*
 * The slot of the wrapper's return address on top of the stack: a word
 * that follows a call instruction, just above the caller's saved rbp (the
 * wrapper pushed it) when there is one. Words that merely look like return
 * addresses are often left over in the wrapper's locals, below it.
 */
static long find_return(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;
	__u64 saved;

	if (!w || i >= TOP_WORDS)
		return 1;
	if (!after_call(w->top[i]))
		return 0;
	if (i == 0) {
		if (c->fp_ok)
			c->slot = 0; /* unless a pushed pair shows up */
		return 0;
	}
	saved = w->top[(i - 1) & (TOP_WORDS - 1)];
	if (c->fp_ok ? saved == c->fp :
		       saved > c->sp + 8 * i && frame_at(saved, c->sp)) {
		c->slot = i;
		return 1;
	}
	return 0;
}

static long walk_frame(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;
	struct {
		__u64 next;
		__u64 ret;
	} frame;

	if (!w || w->st.nr >= MAX_STACK_DEPTH ||
	    !frame_pointer_ok(c->fp, c->sp) ||
	    bpf_probe_read_user(&frame, sizeof(frame), (void *)c->fp) ||
	    !frame.ret)
		return 1;
	/*
	 * Frames the chain found already are skipped; after the fallback's
	 * one frame, a wrapper that did set up a frame returns to the same
	 * caller.
	 */
	if (c->fp + 8 > c->chain_end &&
	    !(w->st.nr == 2 && frame.ret == w->st.ips[1]))
		w->st.ips[w->st.nr++ & (MAX_STACK_DEPTH - 1)] = frame.ret;
	if (frame.next <= c->fp)
		return 1;
	c->fp = frame.next;
	return 0;
}

static long hash_frame(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;

	if (!w || i >= w->st.nr)
		return 1;
	c->hash = (c->hash ^ w->st.ips[i & (MAX_STACK_DEPTH - 1)]) *
		  0x100000001b3ULL;
	return 0;
}

/* Use what the last search at this call site found, if it is there again. */
static __always_inline bool recall(struct stack_work *w,
				   const struct walk_memo *m)
{
	struct walk_ctx *c = &w->c;
	__u32 n = m->n;

	if (n > MEMO_FRAMES)
		return false;
	/*
	 * Fixed trip counts: clang turns "i < MEMO_FRAMES && i < n" into one
	 * bound that 6.1's verifier tracks into an impossible range
	 * (umin > umax) and follows past the end of the value.
	 */
	for (__u32 i = 0; i < MEMO_FRAMES; i++)
		if (i < n && w->top[m->slot[i] & (TOP_WORDS - 1)] != m->ret[i])
			return false;
	if (m->fp_slot >= 0) {
		__u64 fp = w->top[m->fp_slot & (TOP_WORDS - 1)];

		if (fp - c->sp != m->fp_off)
			return false;
		c->fp = fp;
	} else if (m->fp_slot == -2) {
		c->fp = 0;
	}
	for (__u32 i = 0; i < MEMO_FRAMES; i++)
		w->st.ips[i + 1] = m->ret[i]; /* those past n are not read */
	w->st.nr = n + 1;
	c->chain_end = c->sp + m->chain_off;
	return true;
}

static __always_inline void memorize(struct stack_work *w,
				     const struct memo_key *key)
{
	struct walk_ctx *c = &w->c;
	struct walk_memo *m = &w->memo;
	__u32 n = w->st.nr - 1;

	if (n > MEMO_FRAMES)
		return;
	for (__u32 i = 0; i < MEMO_FRAMES; i++) { /* see recall */
		m->ret[i] = w->st.ips[i + 1];
		m->slot[i] = w->from[(i + 1) & (MAX_STACK_DEPTH - 1)];
	}
	m->n = n;
	m->fp_slot = c->fp ? c->fp_slot : -2;
	m->fp_off = c->fp - c->sp;
	m->chain_off = c->chain_end ? c->chain_end - c->sp : 0;
	bpf_map_update_elem(&walk_memos, key, m, BPF_ANY);
}

/*
 * The frame-pointer walk, with the frames it would miss recovered from the
 * top of the stack (see above); w->st holds the syscall's ip.
 */
static __always_inline void walk_frame_pointers(struct stack_work *w,
						__u32 tgid)
{
	struct memo_key *key = &w->memo_key;
	struct walk_ctx *c = &w->c;
	struct walk_memo *m;

	__builtin_memset(key, 0, sizeof(*key));
	key->tgid = tgid;
	key->pc = c->pc;
	if (frame_pointer_ok(c->fp, c->sp) &&
	    !bpf_probe_read_user(&key->fp_ret, sizeof(key->fp_ret),
				 (void *)(c->fp + 8)))
		key->fp_off = c->fp - c->sp;
	else
		key->fp_ret = 0;
	if (bpf_probe_read_user(w->top, sizeof(w->top), (void *)c->sp)) {
		c->fp_ok = key->fp_ret && after_call(key->fp_ret);
		goto walk;
	}
	m = bpf_map_lookup_elem(&walk_memos, key);
	if (m && recall(w, m))
		goto walk;
	c->fp_ok = key->fp_ret && after_call(key->fp_ret);
	bpf_loop(TOP_WORDS, find_chain, NULL, 0);
	if (!c->fp_ok) {
		c->fp = 0;
		c->fp_slot = -2;
		bpf_loop(TOP_WORDS, find_saved_fp, NULL, 0);
		if (!c->fp) {
			c->fp = c->fp_any;
			c->fp_slot = c->fp_any ? c->fp_any_slot : -2;
		}
	}
	if (c->fp) {
		__u64 ret = 0;

		bpf_probe_read_user(&ret, sizeof(ret), (void *)(c->fp + 8));
		c->fp_callee = callee(ret, true);
		c->anchor = -1;
		if (c->fp_callee)
			bpf_loop(TOP_WORDS, find_anchor, NULL, 0);
		if (c->anchor >= 0 && w->st.nr < MAX_STACK_DEPTH) {
			__u32 slot = c->anchor & (TOP_WORDS - 1);

			w->from[w->st.nr & (MAX_STACK_DEPTH - 1)] = slot;
			w->st.ips[w->st.nr++ & (MAX_STACK_DEPTH - 1)] =
				w->top[slot];
			c->chain_end = c->sp + 8 * slot;
		}
	}
	if (w->st.nr > 1)
		goto remember;
	bpf_loop(TOP_WORDS, find_return, NULL, 0);
	if (c->slot >= 0) {
		__u32 slot = c->slot & (TOP_WORDS - 1);

		w->from[1] = slot;
		w->st.ips[1] = w->top[slot];
		w->st.nr = 2;
		if (!c->fp_ok) { /* then slot > 0: see find_return */
			c->fp_slot = (slot - 1) & (TOP_WORDS - 1);
			c->fp = w->top[c->fp_slot];
		}
	}
remember:
	memorize(w, key);
walk:
	bpf_loop(MAX_STACK_DEPTH, walk_frame, NULL, 0);
}

/*
 * DWARF unwinding (--stack-mode dwarf). User space compiles each mapped
 * file's .eh_frame/.debug_frame into rows (see struct exec_mappings and
 * enum cfa_rule) and tells, per process, where its files are mapped. Each
 * frame's CFA comes from the row covering its pc; where no row does (JIT
 * code, V8's builtins, files without CFI) the frame pointer is followed.
 * Unwinding restores rbp from the rows too, so a frame-pointer frame above
 * code built without frame pointers is still found.
 */
struct inner_rows {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP); /* tables differ in size */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct inner_rows);
} unwind_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 13);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct exec_mappings);
} exec_maps SEC(".maps");

/* When each process last asked for its mappings to be read (EV_MAPS). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 13);
	__type(key, __u32);
	__type(value, __u64);
} maps_asked SEC(".maps");

/* A process asks at most this often: a pc no mapping holds may stay so. */
#define MAPS_ASK_NS (100 * 1000 * 1000ULL)

static __always_inline void ask_for_maps(__u32 tgid)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&maps_asked, &tgid);
	struct fd_event *e;

	if (last && now - *last < MAPS_ASK_NS)
		return;
	bpf_map_update_elem(&maps_asked, &tgid, &now, BPF_ANY);
	e = new_event(EV_MAPS, SYS_NONE, tgid, -1);
	if (e)
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

static __always_inline void forget_maps(__u32 tgid)
{
	bpf_map_delete_elem(&exec_maps, &tgid);
	bpf_map_delete_elem(&maps_asked, &tgid);
}

/* The mapping holding pc, by binary search. */
static __always_inline struct exec_map *find_exec_map(struct exec_mappings *ms,
						      __u64 pc)
{
	__u32 lo = 0, hi = ms->n;

	if (hi > MAX_EXEC_MAPS)
		hi = MAX_EXEC_MAPS;
	for (int i = 0; i < 8 && lo < hi; i++) {
		__u32 mid = (lo + hi) / 2;
		struct exec_map *m = &ms->maps[mid & (MAX_EXEC_MAPS - 1)];

		if (pc < m->start)
			hi = mid;
		else if (pc >= m->end)
			lo = mid + 1;
		else
			return m;
	}
	return NULL;
}

/*
 * The pointers of an unwinding, kept on the stack where the verifier knows
 * their types (read back from a map they would be plain numbers); the
 * rest is in w->us.
 */
struct unwind_ctx {
	struct stack_work *w;
	struct exec_mappings *maps;
	void *rows; /* the table of the last frame (w->us.table) */
};

/* The row in force at addr (a file's virtual address); 0: none. */
static __always_inline __u64 find_row(struct unwind_ctx *u, __u32 table,
				      __u64 addr)
{
	struct dwarf_state *s = &u->w->us;
	__u32 k = 0, first, last;
	__u64 *v, off, page;
	void *rows = u->rows;

	if (table != s->table || !rows) {
		rows = bpf_map_lookup_elem(&unwind_tables, &table);
		if (!rows)
			return 0;
		v = bpf_map_lookup_elem(rows, &k);
		if (!v)
			return 0;
		u->rows = rows;
		s->table = table;
		s->lo = *v;
		s->pages = *v >> 32;
	}
	if (addr < s->lo)
		return 0;
	off = addr - s->lo;
	page = off >> UNWIND_PAGE_SHIFT;
	if (page >= s->pages)
		return 0;
	/* The rows that can be in force in the page: first .. last. */
	k = 1 + page;
	v = bpf_map_lookup_elem(rows, &k);
	if (!v)
		return 0;
	first = *v;
	last = *v >> 32;
	/* The last row at or below off. */
	for (int i = 0; i < 24 && first < last; i++) {
		k = last - (last - first) / 2;
		v = bpf_map_lookup_elem(rows, &k);
		if (!v)
			return 0;
		if ((__u32)*v <= off)
			first = k;
		else
			last = k - 1;
	}
	v = bpf_map_lookup_elem(rows, &first);
	return v && (__u32)*v <= off ? *v : 0;
}

static long unwind_frame(__u32 i, struct unwind_ctx *u)
{
	struct stack_work *w = u->w;
	struct dwarf_state *s = &w->us;
	struct exec_map *m;
	__u64 row = 0, addr, cfa, ret;
	__s64 rbp_at;
	__s16 off;

	if (w->st.nr >= MAX_STACK_DEPTH)
		return 1;
	w->st.ips[w->st.nr++ & (MAX_STACK_DEPTH - 1)] = s->pc;
	/* A return address follows its call: look up the call. */
	addr = i ? s->pc - 1 : s->pc;
	m = find_exec_map(u->maps, addr);
	if (!m)
		s->unknown = true;
	else if (m->table)
		row = find_row(u, m->table, addr - m->bias);
	off = row >> 32;
	rbp_at = (__s8)(row >> 48);
	switch ((row >> 56) & 0xf) {
	case CFA_END:
		return 1;
	case CFA_SP:
		cfa = s->sp + off;
		break;
	case CFA_FP:
		cfa = s->bp + off;
		break;
	case CFA_PLT:
		cfa = s->sp + 8 + ((s->pc & 15) >= off ? 8 : 0);
		break;
	default:
		if (!frame_pointer_ok(s->bp, s->sp))
			return 1;
		cfa = s->bp + 16;
		rbp_at = -2;
	}
	if (cfa <= s->sp ||
	    bpf_probe_read_user(&ret, sizeof(ret), (void *)(cfa - 8)))
		return 1;
	if (rbp_at && bpf_probe_read_user(&s->bp, sizeof(s->bp),
					  (void *)(cfa + rbp_at * 8)))
		return 1;
	w->umemo.off[w->st.nr & (MAX_STACK_DEPTH - 1)] = cfa - 8 - s->sp0;
	s->sp = cfa;
	s->pc = ret;
	return ret < 4096 || ret >= 0x800000000000ULL;
}

/* Are the return addresses of a remembered unwinding where they were? */
struct recall_ctx {
	struct unwind_memo *m;
	__u64 sp;
	bool same;
};

static long recall_frame(__u32 i, struct recall_ctx *r)
{
	__u32 k = (i + 1) & (MAX_STACK_DEPTH - 1);
	__u64 ret;

	if (i + 1 >= r->m->nr)
		return 1;
	if (bpf_probe_read_user(&ret, sizeof(ret),
				(void *)(r->sp + r->m->off[k])) ||
	    ret != r->m->ips[k]) {
		r->same = false;
		return 1;
	}
	return 0;
}

/*
 * Unwind by the rows; false when the syscall's own code has no mapping
 * known yet (a new process, a new library), after asking for them.
 */
static __always_inline bool unwind_dwarf(struct stack_work *w, __u32 tgid)
{
	struct unwind_memo_key *key = &w->umemo_key;
	struct dwarf_state *s = &w->us;
	struct unwind_ctx u = { .w = w };
	struct recall_ctx r = { .sp = w->c.sp, .same = true };

	__builtin_memset(s, 0, sizeof(*s));
	s->pc = w->c.pc;
	s->sp = s->sp0 = w->c.sp;
	s->bp = w->c.fp;
	__builtin_memset(key, 0, sizeof(*key));
	key->tgid = tgid;
	key->pc = s->pc;
	key->sp = s->sp;
	/* Remembered only when every frame's code was known: check first. */
	r.m = bpf_map_lookup_elem(&unwind_memos, key);
	if (r.m && r.m->nr <= MAX_STACK_DEPTH) {
		bpf_loop(MAX_STACK_DEPTH, recall_frame, &r, 0);
		if (r.same) {
			w->st.nr = r.m->nr;
			__builtin_memcpy(w->st.ips, r.m->ips,
					 sizeof(w->st.ips));
			return true;
		}
	}
	u.maps = bpf_map_lookup_elem(&exec_maps, &tgid);
	if (!u.maps || !find_exec_map(u.maps, s->pc)) {
		ask_for_maps(tgid);
		return false;
	}
	w->st.nr = 0;
	bpf_loop(MAX_STACK_DEPTH, unwind_frame, &u, 0);
	if (s->unknown) {
		/* Remember nothing: with the mappings read again it does
		 * better. */
		ask_for_maps(tgid);
		return true;
	}
	w->umemo.nr = w->st.nr;
	__builtin_memcpy(w->umemo.ips, w->st.ips, sizeof(w->umemo.ips));
	bpf_map_update_elem(&unwind_memos, key, &w->umemo, BPF_ANY);
	return true;
}

/* Stacks sent to user space (struct raw_key) -> their provisional ids. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, struct raw_key);
	__type(value, __u64);
} raw_sent SEC(".maps");

/*
 * Hand the stack to user space to unwind (struct raw_stack); its
 * provisional id, or 0 when the ring buffer has no room.
 */
static __always_inline __u64 send_raw_stack(struct task_struct *task,
					    __u32 tgid, struct stack_work *w)
{
	struct raw_key *key = &w->raw_key;
	struct walk_ctx *c = &w->c;
	__u64 id = (bpf_ktime_get_ns() ^ (__u64)tgid << 40) << 1 | 2;
	__u64 *top = w->raw_top, *sent;
	struct raw_stack *e;
	__u32 off = 0;

	__builtin_memset(key, 0, sizeof(*key));
	key->tgid = tgid;
	key->ip = c->pc;
	key->sp = c->sp;
	if (bpf_probe_read_user(top, sizeof(w->raw_top), (void *)c->sp))
		__builtin_memset(top, 0, sizeof(w->raw_top));
	key->top = 0xcbf29ce484222325ULL;
	for (int i = 0; i < 8; i++)
		key->top = (key->top ^ top[i]) * 0x100000001b3ULL;
	sent = bpf_map_lookup_elem(&raw_sent, key);
	if (sent)
		return *sent;
	/* Copies must not crowd out the other records: a quarter at most. */
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(*e) >
	    bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->kind = EV_RAW_STACK;
	e->pid = tgid;
	e->stack_id = id;
	e->ip = c->pc;
	e->sp = c->sp;
	e->bp = c->fp;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/*
	 * In chunks that end on 1 KiB boundaries: a read must not cross the
	 * end of the stack's mapping, which is page-aligned.
	 */
	for (int i = 0; i < RAW_STACK_BYTES / 1024; i++) {
		__u32 n = 1024 - ((c->sp + off) & 1023);

		if (off > RAW_STACK_BYTES - 1024 ||
		    bpf_probe_read_user(&e->data[off], n,
					(void *)(c->sp + off)))
			break;
		off += n;
	}
	e->len = off;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	bpf_map_update_elem(&raw_sent, key, &id, BPF_ANY);
	return id;
}

#ifdef FDTRACE_COMPAT
/* Stacks need bpf_loop and bpf_task_pt_regs: the loader refuses them. */
static __always_inline __u64 capture_stack(__u32 tgid)
{
	return 0;
}
#else
/*
 * Global, so that the verifier checks it once per program rather than at
 * every call site: its loops are the costliest part of loading.
 */
__noinline __u64 capture_stack(__u32 tgid)
{
	struct task_struct *task = current_task();
	struct pt_regs *regs = user_regs(task);
	struct walk_ctx *c;
	struct stack_work *w;
	struct fd_event *e;
	__u64 h;
	int err; /* see EEXIST */

	if (!capture_stacks)
		return 0;
	w = stack_work();
	if (!w)
		return 0;
	c = &w->c;
	__builtin_memset(c, 0, sizeof(*c));
	c->slot = -1; /* no chain yet */
	c->fp_slot = -1;
	w->st.ips[0] = c->pc = USER_IP(regs);
	c->sp = USER_SP(regs);
	c->fp = USER_FP(regs);
	w->st.nr = 1;
	if (!dwarf_stacks) {
		walk_frame_pointers(w, tgid);
	} else if (!unwind_dwarf(w, tgid)) {
		h = send_raw_stack(task, tgid, w);
		if (h)
			return h;
		stat_add(STAT_STACKS_NO_TABLES, 1);
		walk_frame_pointers(w, tgid);
	}
	c->hash = 0xcbf29ce484222325ULL ^ tgid;
	bpf_loop(MAX_STACK_DEPTH, hash_frame, NULL, 0);
	h = c->hash | 1; /* 0 means no stack */
	err = bpf_map_update_elem(&stacks, &h, &w->st, BPF_NOEXIST);
	if (err == -EEXIST /* seen before */)
		return h;
	if (err) {
		stat_add(STAT_STACKS_FULL, 1);
		return 0;
	}
	e = new_event(EV_STACK, SYS_NONE, tgid, -1);
	if (e) {
		e->stack_id = h;
		/* Whose maps to use if it is gone before it is symbolized. */
		e->ppid = BPF_CORE_READ(task, real_parent, tgid);
		/* Symbolize while the process lives: wake the reader now. */
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	}
	return h;
}
#endif

/* Count one fd of a type in a by-type array of struct proc. */
static __always_inline void count_type(__u64 *by_type, __u32 type)
{
	/* Bounds the register the index is computed from, not a copy. */
	barrier_var(type);
	if (type < FD_TYPE_MAX)
		__sync_fetch_and_add(&by_type[type], 1);
}

/* The type of an open fd, from its file. */
static __always_inline __u8 type_of_fd(int fd)
{
	struct fd_info info = {};
	struct file *f;

	f = fd_file(task_fdt(current_task()), fd);
	if (f)
		inspect_file(f, &info);
	return info.fd_type;
}

/*
 * Account an fd that was open and is going away, and report it. Counting
 * only, its type is `type`, or its file's when that is TYPE_UNKNOWN.
 */
#define TYPE_UNKNOWN 0xff
static __always_inline void close_fd(__u32 tgid, struct proc *p, int fd,
				     __u16 sc, __u8 type)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	struct fd_info *info;
	struct fd_event *e;

	if (!fd_records) {
		if (type == TYPE_UNKNOWN)
			type = type_of_fd(fd);
	} else if ((info = bpf_map_lookup_elem(&fds, &key))) {
		type = info->fd_type;
		bpf_map_delete_elem(&fds, &key);
	} else {
		type = FD_OTHER;
	}
	if (p) {
		barrier_var(p); /* keep p+off below the check */
		__sync_fetch_and_add(&p->open_fds, -1);
		__sync_fetch_and_add(&p->closed, 1);
		count_type(p->closed_by_type, type);
	}
	if (errors_only)
		return;
	e = new_event(EV_CLOSE, sc, tgid, fd);
	if (!e)
		return;
	e->fd_type = type;
	submit(e, sizeof(*e));
}

/* Record and report an fd the current syscall created. */
static __always_inline void open_fd(__u32 tgid, struct proc *p,
				    struct fdtable *fdt, int fd, __u16 sc,
				    const struct fd_info *src,
				    const char *upath, __u64 stack_id)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	struct fd_info info = {
		.open_ns = bpf_ktime_get_ns(),
		.stack_id = stack_id,
		.syscall = sc,
		.fd_type = type_of_syscall(sc),
	};
	struct fd_event *e;
	struct file *f;
	int err; /* see EEXIST */

	if (src) {
		info.fd_type = src->fd_type;
		info.family = src->family;
		info.sock_type = src->sock_type;
	} else if (info.fd_type == FD_OTHER ||
		   (info.fd_type == FD_SOCKET && fd_records)) {
		f = fd_file(fdt, fd);
		if (f)
			inspect_file(f, &info);
	}
	if (!fd_records)
		goto count;
	if (fd_bit(KREAD(fdt, close_on_exec), KREAD(fdt, max_fds), fd))
		info.flags |= FDF_CLOEXEC;

	err = bpf_map_update_elem(&fds, &key, &info, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* A record whose close we never saw. */
		stat_add(STAT_DRIFT, 1);
		bpf_map_update_elem(&fds, &key, &info, BPF_ANY);
	} else if (err) {
		stat_add(STAT_FDS_FULL, 1);
	}
count:
	if (p) {
		barrier_var(p);
		__sync_fetch_and_add(&p->open_fds, 1);
		__sync_fetch_and_add(&p->opened, 1);
		count_type(p->opened_by_type, info.fd_type);
	}
	if (errors_only)
		return;
	e = new_event(EV_OPEN, sc, tgid, fd);
	if (!e)
		return;
	e->fd_type = info.fd_type;
	e->family = info.family;
	e->sock_type = info.sock_type;
	e->flags = info.flags;
	e->stack_id = stack_id;
	if (upath)
		bpf_probe_read_user_str(e->path, sizeof(e->path), upath);
	submit(e, sizeof(*e));
}

static __always_inline bool is_accept(__u16 sc)
{
	return sc == SYS_ACCEPT || sc == SYS_ACCEPT4;
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
	       (all_errors || resource_failure(err));
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

static __always_inline struct port_counts *
port_counts(__u32 tgid, __u16 port, __u64 start_ns, bool create)
{
	struct port_key key = { .tgid = tgid,
				.port = port,
				.start_ns = start_ns };
	struct port_counts zero = {}, *c;
	int err; /* see EEXIST */

	c = bpf_map_lookup_elem(&ports, &key);
	if (c || !create)
		return c;
	err = bpf_map_update_elem(&ports, &key, &zero, BPF_NOEXIST);
	if (err && err != -EEXIST /* another thread won */) {
		stat_add(STAT_PORTS_FULL, 1);
		return NULL;
	}
	return bpf_map_lookup_elem(&ports, &key);
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
		  bpf_map_lookup_elem(&procs, &tgid));
	forget_pending(tid);
}

/* A refused accept: count it for the listener's port, which now drains. */
static __always_inline __u16 refused_on_port(__u32 tgid, struct proc *p,
					     struct fdtable *fdt, int lfd)
{
	__u16 port = socket_port(fdt, lfd);
	struct port_counts *c;

	if (!port)
		return 0;
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
	struct proc *p = bpf_map_lookup_elem(&procs, &tgid);
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
	struct file *f;

	if (!d || d->fd != fd || d->tgid != tgid)
		return;
	c = port_counts(tgid, d->port, d->start_ns, false);
	f = fd_file(fdt, fd);
	if (c && f && untouched(f))
		__sync_fetch_and_add(&c->dropped, 1);
	else
		end_drain(c, p);
	forget_pending(tid);
}

/*
 * Account and report a failed fd-creating syscall. Out of line: the
 * failure path and the success path then do not share one stack frame.
 */
static __noinline void syscall_failed(__u16 sc, int err, const char *upath,
				      int lfd, __u64 stack_id)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task = current_task();
	struct err_key key = { .tgid = tgid, .syscall = sc, .err = err };
	__u64 one = 1, *cnt;
	struct fd_event *e;
	struct proc *p;
	__u16 port = 0;

	if (is_accept(sc) && err == EAGAIN && drains)
		queue_empty(tgid, task_fdt(task), lfd);
	if (!counted_failure(sc, err))
		return;
	p = get_proc(tgid, task, 0);
	if (p) {
		key.start_ns = p->start_ns;
		__sync_fetch_and_add(&p->errors, 1);
		if (err == EMFILE)
			__sync_fetch_and_add(&p->emfile, 1);
		if (err == ENFILE)
			__sync_fetch_and_add(&p->enfile, 1);
		if (is_accept(sc) && (err == EMFILE || err == ENFILE ||
				      err == ENOBUFS || err == ENOMEM)) {
			__sync_fetch_and_add(&p->refused, 1);
			port = refused_on_port(tgid, p, task_fdt(task), lfd);
		}
	}
	cnt = bpf_map_lookup_elem(&errors, &key);
	if (!cnt) {
		int r = bpf_map_update_elem(&errors, &key, &one, BPF_NOEXIST);

		if (r == -EEXIST) /* another CPU made it first */
			cnt = bpf_map_lookup_elem(&errors, &key);
		else if (r)
			stat_add(STAT_ERRORS_FULL, 1);
	}
	if (cnt)
		__sync_fetch_and_add(cnt, 1);

	if (!reported_failure(sc, err))
		return;
	e = new_event(EV_ERROR, sc, tgid, -1);
	if (!e)
		return;
	e->err = err;
	e->port = port;
	e->stack_id = stack_id;
	if (p && fd_records) {
		e->open_fds = p->open_fds;
	} else {
		/* Without records, fds created unseen made it drift: recount.
		 */
		e->open_fds = count_open_fds(task_fdt(task));
		if (p)
			p->open_fds = e->open_fds;
	}
	e->fd_limit = fd_limit(task);
	if (upath)
		bpf_probe_read_user_str(e->path, sizeof(e->path), upath);
	submit(e, sizeof(*e));
}

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
 * Exit of a syscall that creates one fd (its return value). Arguments are
 * read from the task's saved user registers, so no sys_enter hook is needed.
 */
static __always_inline int on_exit_one(void *ctx, __u16 sc, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct task_struct *task;
	struct pt_regs *regs;
	struct fdtable *fdt;
	const char *upath;
	struct proc *p;
	__u64 stack_id;

	if (!trace_allowed(tgid))
		return 0;
	task = current_task();
	regs = user_regs(task);
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
	}
	if (is_accept(sc) && drain_pending)
		accept_after_pending(tgid);
	upath = open_path(sc, regs);
	if (ret < 0) {
		syscall_failed(sc, -ret, upath, SYSCALL_ARG(1, regs),
			       failure_stack(tgid, sc, -ret));
		return 0;
	}
	stack_id = capture_stack(tgid);
	fdt = task_fdt(task);
	p = get_proc(tgid, task, 1);
	if (sc == SYS_DUP || sc == SYS_FCNTL) {
		struct fd_key src = { .tgid = tgid,
				      .fd = SYSCALL_ARG(1, regs) };

		open_fd(tgid, p, fdt, ret, sc, bpf_map_lookup_elem(&fds, &src),
			NULL, stack_id);
		return 0;
	}
	open_fd(tgid, p, fdt, ret, sc, NULL, upath, stack_id);
	if (is_accept(sc) && drains)
		accepted(tgid, p, fdt, SYSCALL_ARG(1, regs), ret);
	return 0;
}

/* Exit of pipe, pipe2 and socketpair: two fds written to a user array. */
static __always_inline int on_exit_pair(void *ctx, __u16 sc, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task;
	struct pt_regs *regs;
	struct fdtable *fdt;
	int pair[2] = {};
	struct proc *p;
	__u64 stack_id;
	void *upair;

	if (!trace_allowed(tgid))
		return 0;
	task = current_task();
	if (ret < 0) {
		syscall_failed(sc, -ret, NULL, -1,
			       failure_stack(tgid, sc, -ret));
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
	open_fd(tgid, p, fdt, pair[0], sc, NULL, NULL, stack_id);
	open_fd(tgid, p, fdt, pair[1], sc, NULL, NULL, stack_id);
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

/* clone/clone3 with CLONE_PIDFD: the parent gets a pidfd in user memory. */
static __always_inline int on_exit_clone(void *ctx, __u16 sc, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task;
	struct pt_regs *regs;
	__u64 flags = 0;
	void *upidfd;
	int fd;

	if (ret <= 0 || !trace_allowed(tgid))
		return 0; /* failed, or the child's return */
	task = current_task();
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
		NULL, capture_stack(tgid));
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

/* close: counted at entry, where the fd is still in the table. */
SEC("tracepoint/syscalls/sys_enter_close")
int tracepoint__syscalls__sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	int fd = ctx->args[0];
	struct fd_key key = { .tgid = tgid, .fd = fd };
	struct task_struct *task;
	struct fdtable *fdt;
	struct proc *p;

	if (!trace_allowed(tgid))
		return 0;
	task = current_task();
	fdt = task_fdt(task);
	if (!fd_is_open(fdt, fd))
		return 0; /* EBADF */
	p = get_proc(tgid, task, 0);
	/*
	 * An fd we never saw created (io_uring, SCM_RIGHTS beyond what we
	 * read, a creator we do not hook): recount the table. Counting only,
	 * that shows only when the count would fall below this open fd.
	 */
	if (p && (fd_records ? !bpf_map_lookup_elem(&fds, &key) :
			       p->open_fds <= 0)) {
		__s64 n = count_open_fds(fdt);

		if (n != p->open_fds) {
			stat_add(STAT_DRIFT, 1);
			p->open_fds = n;
		}
	}
	if (drain_pending)
		close_pending(tgid, p, fdt, fd);
	close_fd(tgid, p, fd, SYS_CLOSE, TYPE_UNKNOWN);
	return 0;
}

struct sweep_ctx {
	__u32 tgid;
	__u32 first;
	unsigned long *bits;
	unsigned long word;
	struct proc *p;
	__u16 sc;
	bool want_open; /* close fds whose bit is set (true) or clear (false) */
	bool any_bit;	/* ... or whatever their bit */
	bool delete_only; /* drop records without accounting (process exit) */
	__u64 n;
};

static long sweep_fd(__u32 i, struct sweep_ctx *c)
{
	__u32 fd = c->first + i;
	struct fd_key key = { .tgid = c->tgid, .fd = fd };
	bool open;

	if (i == 0 || fd % 64 == 0)
		c->word = bitmap_word(c->bits, fd / 64);
	open = c->word & (1UL << (fd % 64));
	if (open != c->want_open && !c->any_bit)
		return 0;
	if (c->delete_only) {
		bpf_map_delete_elem(&fds, &key);
		return 0;
	}
	if (!c->want_open && !bpf_map_lookup_elem(&fds, &key))
		return 0;
	close_fd(c->tgid, c->p, fd, c->sc, TYPE_UNKNOWN);
	c->n++;
	return 0;
}

#ifdef FDTRACE_COMPAT
#define SWEEP_WANT_OPEN (1 << 16)
#define SWEEP_ANY_BIT (1 << 17)
#define SWEEP_DELETE_ONLY (1 << 18)

/*
 * One fd of a sweep by the compat programs' bounded loop. Global, so that
 * the verifier checks it once rather than in every iteration (it cannot
 * prune a loop whose iterations differ); it takes only numbers.
 */
__noinline int compat_sweep_fd(__u32 tgid, __u32 fd, unsigned long bits,
			       __u32 how)
{
	struct sweep_ctx c = {
		.tgid = tgid,
		.first = fd,
		.bits = (unsigned long *)bits,
		.sc = how & 0xffff,
		.want_open = how & SWEEP_WANT_OPEN,
		.any_bit = how & SWEEP_ANY_BIT,
		.delete_only = how & SWEEP_DELETE_ONLY,
	};

	if (!c.delete_only)
		c.p = bpf_map_lookup_elem(&procs, &tgid);
	sweep_fd(0, &c);
	return c.n;
}
#endif

#ifdef FDTRACE_COMPAT
/* The compat programs' sweep of n fds from first (see compat_bound). */
__noinline __u64 compat_sweep(__u32 tgid, __u32 first, __u32 n,
			      unsigned long bits, __u32 how)
{
	__u64 swept = 0, max = compat_bound(n, COMPAT_SWEEP_FDS);

	for (__u64 i = 0; i < COMPAT_SWEEP_FDS; i++) {
		if (i >= max)
			break;
		swept += compat_sweep_fd(tgid, first + i, bits, how);
	}
	return swept;
}
#endif

/* Sweep n fds of a table from c->first. */
static __always_inline void sweep(__u32 n, struct sweep_ctx *c)
{
#ifdef FDTRACE_COMPAT
	__u32 how = c->sc | (c->want_open ? SWEEP_WANT_OPEN : 0) |
		    (c->any_bit ? SWEEP_ANY_BIT : 0) |
		    (c->delete_only ? SWEEP_DELETE_ONLY : 0);

	c->n += compat_sweep(c->tgid, c->first, n, (unsigned long)c->bits, how);
#else
	bpf_loop(n, sweep_fd, c, 0);
#endif
}

/* close_range: the open fds in [first, last] close at entry, like close. */
SEC("tracepoint/syscalls/sys_enter_close_range")
int tracepoint__syscalls__sys_enter_close_range(
	struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 first = ctx->args[0], last = ctx->args[1], flags = ctx->args[2];
	struct sweep_ctx c = { .tgid = tgid,
			       .first = first,
			       .sc = SYS_CLOSE_RANGE,
			       .want_open = true };
	struct task_struct *task;
	struct fdtable *fdt;
	__u32 max;

	if (!trace_allowed(tgid))
		return 0;
	if (first > last ||
	    (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return 0; /* EINVAL */
	if (flags & CLOSE_RANGE_CLOEXEC)
		return 0; /* only marks fds close-on-exec */
	task = current_task();
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

static __always_inline int dup_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = id;
	int oldfd = ctx->args[0], newfd = ctx->args[1];
	struct task_struct *task;
	__u8 was_open = 0;

	if (!trace_allowed(tgid))
		return 0;
	task = current_task();
	/* Counting only, the type of what is replaced is known only now. */
	if (oldfd != newfd && fd_is_open(task_fdt(task), newfd))
		was_open = fd_records ? 1 : 1 + type_of_fd(newfd);
	if (bpf_map_update_elem(&dup_start, &tid, &was_open, BPF_ANY))
		stat_add(STAT_DRIFT, 1); /* this dup goes unseen */
	return 0;
}

/* dup2/dup3 onto an open fd close it first: both must be seen. */
static __always_inline int dup_exit(void *ctx, __u16 sc, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = id;
	struct task_struct *task;
	struct pt_regs *regs;
	struct fd_info src;
	struct fd_key key;
	struct proc *p;
	__u8 *was_open;
	__u64 stack_id;
	__u8 replaced;

	was_open = bpf_map_lookup_elem(&dup_start, &tid);
	if (!was_open)
		return 0;
	replaced = *was_open; /* 1 + its type, counting only */
	bpf_map_delete_elem(&dup_start, &tid);
	task = current_task();
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
	p = get_proc(tgid, task, replaced ? 0 : 1);
	if (replaced)
		close_fd(tgid, p, ret, sc, replaced - 1);
	/* Copy first: the source record may be the one just closed. */
	struct fd_info *srcp = bpf_map_lookup_elem(&fds, &key);
	if (srcp) {
		src = *srcp;
		open_fd(tgid, p, task_fdt(task), ret, sc, &src, NULL, stack_id);
	} else {
		open_fd(tgid, p, task_fdt(task), ret, sc, NULL, NULL, stack_id);
	}
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

struct cmsg_hdr {
	__u64 len;
	int level;
	int type;
};

struct scm_ctx {
	__u32 tgid;
	struct proc *p;
	struct fdtable *fdt;
	int *fds; /* user pointer to the fds of one control message */
	__u64 stack_id;
};

#ifdef FDTRACE_COMPAT
/* An fd received, for the compat programs' bounded loop: see compat_sweep_fd.
 */
__noinline int compat_received_fd(__u32 tgid, int fd)
{
	open_fd(tgid, bpf_map_lookup_elem(&procs, &tgid),
		task_fdt(current_task()), fd, SYS_RECVMSG, NULL, NULL, 0);
	return 0;
}
#endif

static long scm_fd(__u32 i, struct scm_ctx *c)
{
	int fd;

	if (bpf_probe_read_user(&fd, sizeof(fd), c->fds + i))
		return 1;
	open_fd(c->tgid, c->p, c->fdt, fd, SYS_RECVMSG, NULL, NULL,
		c->stack_id);
	return 0;
}

#ifdef FDTRACE_COMPAT
/* The compat programs' loop over the fds of one control message. */
__noinline int compat_received_fds(__u32 tgid, unsigned long fds, __u32 n)
{
	__u64 max = n; /* see compat_bound */
	int fd;

	for (__u64 i = 0; i < MAX_SCM_FDS; i++) {
		if (i >= max ||
		    bpf_probe_read_user(&fd, sizeof(fd), (int *)fds + i))
			break;
		compat_received_fd(tgid, fd);
	}
	return 0;
}
#endif

/*
 * recvmsg: fds passed with SCM_RIGHTS, and pidfds with SCM_PIDFD, in the
 * first MAX_CMSGS control messages (credentials often come first).
 */
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int tracepoint__syscalls__sys_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct scm_ctx c = { .tgid = tgid };
	struct task_struct *task;
	struct user_msghdr msg;
	struct cmsg_hdr cmsg;
	__u64 off = 0;

	if (ctx->ret < 0 || !trace_allowed(tgid))
		return 0;
	task = current_task();
	if (bpf_probe_read_user(&msg, sizeof(msg),
				(void *)SYSCALL_ARG(2, user_regs(task))))
		return 0;
	if (msg.msg_controllen < sizeof(cmsg) + sizeof(int))
		return 0;
	for (int i = 0; i < MAX_CMSGS; i++) {
		__u32 n;

		if (off + sizeof(cmsg) > msg.msg_controllen ||
		    bpf_probe_read_user(&cmsg, sizeof(cmsg),
					msg.msg_control + off))
			break;
		if (cmsg.len < sizeof(cmsg))
			break;
		if (cmsg.level == SOL_SOCKET &&
		    (cmsg.type == SCM_RIGHTS || cmsg.type == SCM_PIDFD)) {
			n = (cmsg.len - sizeof(cmsg)) / sizeof(int);
			if (!c.fdt) {
				c.stack_id = capture_stack(tgid);
				c.fdt = task_fdt(task);
				c.p = get_proc(tgid, task, 0);
			}
			c.fds = msg.msg_control + off + sizeof(cmsg);
#ifdef FDTRACE_COMPAT
			compat_received_fds(tgid, (unsigned long)c.fds, n);
#else
			bpf_loop(n > MAX_SCM_FDS ? MAX_SCM_FDS : n, scm_fd, &c,
				 0);
#endif
		}
		off += (cmsg.len + 7) & ~7ULL; /* CMSG_ALIGN */
	}
	return 0;
}

struct copy_ctx {
	__u32 parent;
	__u32 child;
	unsigned long *bits;
	unsigned long word;
	__u64 copied;
};

static long copy_fd(__u32 fd, struct copy_ctx *c)
{
	struct fd_key from = { .tgid = c->parent, .fd = fd };
	struct fd_key to = { .tgid = c->child, .fd = fd };
	struct fd_info *info;

	if (fd % 64 == 0)
		c->word = bitmap_word(c->bits, fd / 64);
	if (!(c->word & (1UL << (fd % 64))))
		return 0;
	info = bpf_map_lookup_elem(&fds, &from);
	if (!info)
		return 0;
	struct fd_info copy = *info;
	copy.flags |= FDF_INHERITED;
	if (bpf_map_update_elem(&fds, &to, &copy, BPF_ANY))
		stat_add(STAT_FDS_FULL, 1);
	else
		c->copied++;
	return 0;
}

#ifdef FDTRACE_COMPAT
/* One fd copied by the compat programs' bounded loop: see compat_sweep_fd. */
__noinline int compat_copy_fd(__u32 parent, __u32 child, __u32 fd,
			      unsigned long bits)
{
	struct copy_ctx c = { .parent = parent,
			      .child = child,
			      .bits = (unsigned long *)bits };

	c.word = bitmap_word(c.bits, fd / 64);
	copy_fd(fd, &c);
	return c.copied;
}
#endif

#ifdef FDTRACE_COMPAT
/* The compat programs' copy of n fds' records (see compat_bound). */
__noinline __u64 compat_copy_fds(__u32 parent, __u32 child, __u32 n,
				 unsigned long bits)
{
	__u64 copied = 0, max = compat_bound(n, COMPAT_SWEEP_FDS);

	for (__u64 fd = 0; fd < COMPAT_SWEEP_FDS; fd++) {
		if (fd >= max)
			break;
		copied += compat_copy_fd(parent, child, fd, bits);
	}
	return copied;
}
#endif

/* Copy the records of the first n fds of the parent's table. */
static __always_inline void copy_fds(__u32 n, struct copy_ctx *c)
{
#ifdef FDTRACE_COMPAT
	c->copied +=
		compat_copy_fds(c->parent, c->child, n, (unsigned long)c->bits);
#else
	bpf_loop(n, copy_fd, c, 0);
#endif
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
	if (filter_pids) {
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
	if (dwarf_stacks) {
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
	/* BPF_ANY: a stale entry of a reused pid is replaced. */
	if (bpf_map_update_elem(&procs, &ctgid, init, BPF_ANY))
		stat_add(STAT_PROCS_FULL, 1);
	if (!fd_records)
		return 0;
	c.bits = BPF_CORE_READ(fdt, open_fds);
	copy_fds(sweep_size(fdt), &c);
	if (c.copied >= init->open_fds)
		return 0;
	/* Some inherited fds had no record in the parent: ask for a seed. */
	e = new_event(EV_SEED, SYS_NONE, ctgid, -1);
	if (!e)
		return 0;
	e->ppid = ptgid;
	e->open_fds = init->open_fds;
	submit(e, sizeof(*e));
	return 0;
}

/* Report the final counters of a process and forget them. */
/*
 * Several exiting threads can each see signal->live reach 0: only the one
 * that removes the entry of the process reports, and forgets its drains.
 */
static __always_inline bool forget_proc(__u32 tgid, __u64 draining)
{
	if (bpf_map_delete_elem(&procs, &tgid))
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
				   struct proc *p)
{
	struct exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 draining = p->draining;

	if (!e) {
		if (forget_proc(tgid, draining))
			stat_add(STAT_LOST_EVENTS, 1);
		return;
	}
	e->kind = EV_EXIT;
	e->pid = tgid;
	e->ts = bpf_ktime_get_ns();
	e->fd_limit = fd_limit(task);
	e->proc = *p;
	if (forget_proc(tgid, draining))
		submit(e, sizeof(*e));
	else
		bpf_ringbuf_discard(e, 0);
}

/* exec: close-on-exec fds are gone by now, with no close to see. */
SEC("raw_tracepoint/sched_process_exec")
int raw_tracepoint__sched_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task = current_task();
	struct sweep_ctx c = { .tgid = tgid, .sc = SYS_EXECVE };
	struct fdtable *fdt;
	struct proc *p;
	__s64 left;

	if (!armed)
		return 0;
	if (dwarf_stacks)
		forget_maps(tgid); /* a new image */
	if (drain_pending)
		forget_pending((__u32)bpf_get_current_pid_tgid());
	if (filter_pids) {
		__u8 *t = bpf_map_lookup_elem(&traced, &tgid);

		if (t && (*t & TRACE_AT_EXEC))
			*t = TRACE_SELF | TRACE_FOLLOW;
	}
	p = bpf_map_lookup_elem(&procs, &tgid);
	fdt = task_fdt(task);
	if (!trace_allowed(tgid)) {
		if (!p)
			return 0;
		/* It took a name -c does not trace: it ends here for us. */
		c.any_bit = c.delete_only = true;
		c.bits = BPF_CORE_READ(fdt, open_fds);
		if (fd_records)
			sweep(sweep_size(fdt), &c);
		retire(tgid, task, p);
		return 0;
	}
	if (!p) {
		/* First sight (-c matched the new name): count the table as it
		 * is now, and have its fds recorded from /proc. */
		struct fd_event *e;

		get_proc(tgid, task, 0);
		e = new_event(EV_SEED, SYS_NONE, tgid, -1);
		if (e)
			submit(e, sizeof(*e));
		return 0;
	}
	bpf_get_current_comm(p->comm, sizeof(p->comm));
	c.p = p;
	c.bits = BPF_CORE_READ(fdt, open_fds);
	if (fd_records)
		sweep(sweep_size(fdt), &c);
	/* Close-on-exec fds with no record (created before we attached). */
	left = p->open_fds - count_open_fds(fdt);
	if (left < 0)
		stat_add(STAT_DRIFT, -left);
	else
		__sync_fetch_and_add(&p->closed, left);
	__sync_fetch_and_add(&p->open_fds, -left);
	return 0;
}

/* exit of the last thread: report the final counters and forget the process. */
SEC("raw_tracepoint/sched_process_exit")
int raw_tracepoint__sched_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task = current_task();
	struct sweep_ctx c = { .tgid = tgid,
			       .want_open = true,
			       .delete_only = true };
	struct fdtable *fdt;
	struct proc *p;
	bool allowed;

	if (!armed)
		return 0;
	if (drain_pending)
		forget_pending((__u32)bpf_get_current_pid_tgid());
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (dwarf_stacks)
		forget_maps(tgid);
	allowed = trace_allowed(tgid);
	bpf_map_delete_elem(&traced, &tgid);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p && !allowed)
		return 0;
	fdt = task_fdt(task);
	if (fdt && fd_records && !exit_keeps_records) {
		/* Small tables: also drop records of fds closed unseen. */
		c.any_bit = BPF_CORE_READ(fdt, max_fds) <= SMALL_TABLE;
		c.bits = BPF_CORE_READ(fdt, open_fds);
		sweep(sweep_size(fdt), &c);
	}
	if (p)
		retire(tgid, task, p);
	return 0;
}
