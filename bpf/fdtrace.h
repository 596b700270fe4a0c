/* SPDX-License-Identifier: GPL-2.0 */
/* Types shared by the BPF programs and the Go loader (via bpf2go -type). */
#ifndef FDTRACE_H
#define FDTRACE_H

#define TASK_COMM_LEN 16
#define PATH_LEN 256
#define MAX_STACK_DEPTH 64
/* The errors map entries a process's exit takes out itself. */
#define PROC_ERR_KINDS 8

/* fd-creating and fd-closing syscalls, by fdtrace's own numbering. */
enum syscall_id {
	/* An fd open before fdtrace attached: no syscall. */
	SYS_PREEXISTING = 0,
	SYS_OPEN,
	SYS_CREAT,
	SYS_OPENAT,
	SYS_OPENAT2,
	SYS_SOCKET,
	SYS_SOCKETPAIR,
	SYS_ACCEPT,
	SYS_ACCEPT4,
	SYS_PIPE,
	SYS_PIPE2,
	SYS_EPOLL_CREATE,
	SYS_EPOLL_CREATE1,
	SYS_EVENTFD,
	SYS_EVENTFD2,
	SYS_TIMERFD_CREATE,
	SYS_SIGNALFD,
	SYS_SIGNALFD4,
	SYS_INOTIFY_INIT,
	SYS_INOTIFY_INIT1,
	SYS_MEMFD_CREATE,
	SYS_PIDFD_OPEN,
	SYS_PIDFD_GETFD,
	SYS_DUP,
	SYS_DUP2,
	SYS_DUP3,
	SYS_FCNTL,
	SYS_RECVMSG,
	SYS_CLOSE,
	SYS_CLOSE_RANGE,
	SYS_EXECVE, /* close-on-exec fds vanish at exec */
	SYS_EXIT,   /* the process exited with fds open */
	SYS_CLONE,  /* CLONE_PIDFD */
	SYS_CLONE3,
	SYS_FANOTIFY_INIT,
	SYS_IO_URING_SETUP,
	SYS_PERF_EVENT_OPEN,
	SYS_USERFAULTFD,
	SYS_OPEN_BY_HANDLE_AT,
	SYS_OPEN_TREE,
	SYS_FSOPEN,
	SYS_FSMOUNT,
	SYS_FSPICK,
	SYS_MQ_OPEN,
	SYS_RECVMMSG,
	SYS_BPF,
	SYS_GETSOCKOPT, /* SO_PEERPIDFD */
	SYS_IOCTL,	/* TIOCGPTPEER */
	SYS_READ,	/* of a fanotify group or a userfaultfd: their events */
	SYS_IO_URING,	/* a request's completion */
	SYS_MAX,
};

enum fd_type {
	FD_OTHER = 0,
	FD_FILE,
	FD_SOCKET,
	FD_PIPE,
	FD_EPOLL,
	FD_EVENTFD,
	FD_TIMERFD,
	FD_SIGNALFD,
	FD_INOTIFY,
	FD_MEMFD,
	FD_PIDFD,
	FD_TYPE_MAX,
};

enum event_kind {
	EV_OPEN = 1,
	EV_CLOSE,
	EV_ERROR,
	/* A process with fds that have no record: read them from /proc. */
	EV_SEED,
	/* A traced process exited; carries its final counters. */
	EV_EXIT,
	/* A new stack in the stacks map: symbolize it while it lives. */
	EV_STACK,
	/* A stack ran into code with no known unwind table: read the
	 * process's executable mappings again. */
	EV_MAPS,
	/* A stack to unwind in user space (struct raw_stack). */
	EV_RAW_STACK,
	/*
	 * A traced process made the first fanotify group or userfaultfd:
	 * attach the read hook (events_read.bpf.h) now.
	 */
	EV_HOOK,
};

/* Flags of struct fd_info and struct fd_event. */
enum fd_flags {
	FDF_CLOEXEC = 1 << 0,
	FDF_SEEDED = 1 << 1, /* recorded from /proc, not seen being created */
	FDF_INHERITED = 1 << 2, /* copied from the parent at fork */
	/*
	 * Counted in its process's table_counted, not at its creation: it
	 * was open when the process was first counted (seeded records).
	 */
	FDF_TABLE_COUNTED = 1 << 3,
};

/*
 * Run settings, set by the loader before load: read-only data, so the
 * verifier knows their values and leaves out the code they turn off.
 */
struct config {
	__u64 wakeup_bytes; /* wake the reader past this much queued */
	/*
	 * With filter_comm: the name, NUL-padded, and the bytes of a comm
	 * that must match it (the name and its NUL), as two words each.
	 */
	char targ_comm[TASK_COMM_LEN];
	__u64 targ_comm_mask[2];
	__u32 self_tgid;	 /* fdtrace itself: never traced */
	bool filter_pids;	 /* only tgids in the traced map */
	bool filter_comm;	 /* only processes named targ_comm */
	bool errors_only;	 /* no open/close events */
	bool fd_records;	 /* a record per live fd */
	bool capture_stacks;	 /* user stack of each new fd */
	bool dwarf_stacks;	 /* unwind by DWARF CFI rows */
	bool exit_keeps_records; /* user space collects them */
	bool all_errors;	 /* error events for every errno */
	bool have_rdonly_cast;	 /* the kernel has bpf_rdonly_cast */
	/* io_uring_complete's third argument is the CQE (6.13 on), not the
	 * user data and result (6.1 to 6.12). */
	bool uring_cqe_arg;
	/* task_pt_regs(t) - t->stack, as the loader measured it; 0: unknown */
	__u32 pt_regs_offset;
};

/* Key of the fds map: one live fd of one process. */
struct fd_key {
	__u32 tgid;
	__s32 fd;
};

/* Value of the fds map. */
struct fd_info {
	__u64 open_ns;	/* bpf_ktime_get_ns() when created; 0 when seeded */
	__u64 stack_id; /* key in the stacks map; 0: none */
	/*
	 * The struct file it was made with (0 when seeded): a record of an
	 * fd closed since is told from the record of its number's next fd.
	 */
	__u64 file;
	/*
	 * Who may act on the record: a number no other record has, swapped
	 * to REC_DEAD by the close or creator that accounts for its fd (see
	 * account.bpf.h).
	 */
	__u64 gen;
	__u16 syscall;
	__u8 fd_type;
	__u8 flags;
	__u16 family;
	__u16 sock_type;
};

/*
 * Per-process counters: in the slot of proc_slots at the low bits of the
 * tgid, or in the procs map, keyed by tgid (see account.bpf.h).
 */
struct proc {
	/*
	 * In a slot of proc_slots: the tgid it is of (0: free, SLOT_BUSY:
	 * being filled); in procs, 0.
	 */
	__u32 owner;
	/*
	 * Of its open fds, those counted from the fd table (first sight,
	 * fork, no room for a record) rather than at their creation: a close
	 * of an fd with no record is one of them, or was never counted.
	 */
	__s32 table_counted;
	/*
	 * Its open fds are open_base, plus the by-type counts of the fds it
	 * opened, less those of the fds it closed and closed_untyped (see
	 * proc_open_fds): an fd's creation or close is one atomic add, to
	 * its type's count. open_base holds what no by-type count does: the
	 * table's fds at first sight or fork, those a CLONE_FILES child
	 * handed over, a recount's correction.
	 */
	__s64 open_base;
	__u64 opened_by_type[FD_TYPE_MAX];
	__u64 closed_by_type[FD_TYPE_MAX];
	/*
	 * Opened and closed in all are the sums of the by-type counts, and
	 * of closed_untyped: fds closed at an exec (close-on-exec) that had
	 * no record to tell their type.
	 */
	__u64 closed_untyped;
	__u64 errors;
	__u64 emfile;
	__u64 enfile;
	__u64 refused;	/* accept/accept4 failing for lack of fds or memory */
	__u64 start_ns; /* group leader's start time: tells pid reuse apart */
	__u64 draining; /* listening ports of the process in a drain */
	char comm[TASK_COMM_LEN];
	/*
	 * Its entries in the errors map, (syscall << 16 | errno) each, so that
	 * its exit takes them out; err_kinds past PROC_ERR_KINDS are left to
	 * user space.
	 */
	__u32 err_kind[PROC_ERR_KINDS];
	__u32 err_kinds;
};

/* Key of the error_totals map: failed syscalls by errno, host-wide. */
struct err_total_key {
	__u16 syscall;
	__u16 err;
};

/* Value of the port_totals map: port_counts' counts, host-wide. */
struct port_total {
	__u64 refused;
	__u64 dropped;
};

/* Key of the errors map: failed fd-creating syscalls by errno. */
struct err_key {
	__u32 tgid;
	__u16 syscall;
	__u16 err;
	__u64 start_ns;
};

/* Key of the ports map: one listening inet port of one process. */
struct port_key {
	__u32 tgid;
	__u16 port;
	__u16 pad;
	__u64 start_ns;
};

/*
 * Value of the ports map: accepts on the port that failed for lack of fds
 * or memory, connections accepted and closed untouched in a drain, and
 * whether a refused accept began a drain that has not ended.
 */
struct port_counts {
	__u64 refused;
	__u64 dropped;
	__u32 draining;
	__u32 pad;
};

/*
 * Value of the drain_fds map, keyed by tid: the connection the thread
 * accepted last while its listening port was draining.
 */
struct drain_fd {
	__u32 tgid;
	__s32 fd;
	__u64 start_ns;
	__u16 port;
	__u16 pad[3];
};

/*
 * Bounds of the compat programs' loops (see fdtable.bpf.h), in words of
 * the open fds bitmap (64 fds each): swept at exec, exit, fork and
 * close_range, and counted in a recount.
 */
enum compat_bounds {
	COMPAT_SWEEP_WORDS = 4096, /* 262144 fds */
	COMPAT_COUNT_WORDS = 512,  /* 32768 fds: each word costs the verifier */
};

/* Indexes of the per-CPU stats array. */
enum stat_id {
	STAT_LOST_EVENTS = 0, /* ring buffer full */
	STAT_FDS_FULL,	      /* fds map full: an fd went unrecorded */
	STAT_PROCS_FULL,      /* procs map full: a process went uncounted */
	STAT_ERRORS_FULL,     /* errors map full */
	STAT_DRIFT,	      /* a count corrected from the fd table */
	STAT_STACKS_FULL,     /* stacks map full: an fd went without a stack */
	STAT_PORTS_FULL,      /* ports or drain_fds map full */
	/*
	 * A stack walked by frame pointers: its process's unwind tables were
	 * not loaded yet, and the ring buffer had no room for a copy.
	 */
	STAT_STACKS_NO_TABLES,
	/*
	 * fds beyond the bound of a loop without bpf_loop (the compat
	 * object): not swept, or not counted.
	 */
	STAT_UNSWEPT,
	STAT_MAX,
};

/*
 * Indexes of the per-CPU totals array: host-wide counts, which exits do not
 * take away: failures for lack of fds (EMFILE, ENFILE), accepts refused for
 * lack of fds or memory.
 */
enum total_id {
	TOTAL_EMFILE = 0,
	TOTAL_ENFILE,
	TOTAL_REFUSED,
	TOTAL_MAX,
};

/* Every ring buffer record starts with its kind. */
struct fd_event {
	__u8 kind;
	__u8 fd_type;
	__u16 syscall;
	__s32 fd;
	__u32 pid;
	__u32 tid;
	__u64 ts;
	__s32 err; /* positive errno of a failed syscall */
	__u16 family;
	__u16 sock_type;
	__u16 flags;
	__u16 port; /* EV_ERROR of accept: the listening socket's local port */
	/* EV_SEED: the parent to copy records from, or 0; EV_STACK: the
	 * parent. */
	__u32 ppid;
	__u64 stack_id;
	__s64 open_fds;
	__u64 fd_limit;
	__u64 user_data; /* EV_OPEN by io_uring: the request's user_data */
	char comm[TASK_COMM_LEN];
};

/*
 * An fd_event with the path the syscall was given (opens, failed opens):
 * the others go without, at a quarter of the size, so that the ring buffer
 * holds four times as many closes.
 */
struct fd_path_event {
	struct fd_event e;
	char path[PATH_LEN];
};

/* Value of the stacks map: a user stack, innermost frame first. */
struct stack {
	__u32 nr;
	__u32 pad;
	__u64 ips[MAX_STACK_DEPTH];
};

/*
 * Unwind tables (--stack-mode dwarf). A table holds the rows compiled
 * from one file's DWARF call frame information (internal/unwind), in an
 * array of 8-byte entries:
 *   [0]                 struct unwind_header
 *   [1 .. pages]        struct unwind_page, per 1 << UNWIND_PAGE_SHIFT
 *                       bytes of code from the header's address
 *   [pages+1 ..]        struct unwind_row, sorted by address
 */
struct unwind_header {
	__u32 addr; /* the first row's address, in the file */
	__u32 pages;
};

/*
 * The rows that can be in force in a page: the one in force at its start,
 * and the last that starts in it (or the first).
 */
struct unwind_page {
	__u32 first;
	__u32 last;
};

struct unwind_row {
	__u32 addr;    /* from the header's address */
	__s16 cfa_off; /* the CFA's offset from its rule's register */
	__s8 rbp_at;   /* the caller's rbp: saved this many 8-byte words from
			  the CFA; 0: rbp unchanged */
	__u8 rule;     /* enum cfa_rule */
};

enum cfa_rule {
	CFA_NONE = 0, /* no CFI here: follow the frame pointer */
	CFA_SP,	      /* CFA = rsp + offset */
	CFA_FP,	      /* CFA = rbp + offset */
	CFA_PLT,      /* CFA = rsp + 8, + 8 more when (rip & 15) >= offset */
	CFA_END,      /* the return address is undefined: the outermost frame */
};

#define UNWIND_PAGE_SHIFT 8

/* One executable mapping of a process. */
struct exec_map {
	__u64 start;
	__u64 end;
	__u64 bias;  /* address - bias = the file's virtual address */
	__u32 table; /* key in unwind_tables; 0: none (frame pointers) */
	__u32 pad;
};

#define MAX_EXEC_MAPS 128

/* Value of the exec_maps map (keyed by tgid), sorted by address. */
struct exec_mappings {
	__u32 n;
	__u32 pad;
	struct exec_map maps[MAX_EXEC_MAPS];
};

#define RAW_STACK_BYTES 16384

/*
 * A stack captured before its process's unwind tables were loaded (a
 * process just started, a library just loaded): its registers and the top
 * of its stack, for user space to unwind once it has loaded them. The fd's
 * record holds stack_id, an even number, never a key in the stacks map.
 */
struct raw_stack {
	__u8 kind;
	__u8 pad[3];
	__u32 pid;
	__u64 stack_id;
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u32 ppid;
	__u32 len; /* bytes of data, from sp up */
	char comm[TASK_COMM_LEN];
	__u8 data[RAW_STACK_BYTES];
};

struct exit_event {
	__u8 kind;
	__u8 pad[3];
	__u32 pid;
	__u64 ts;
	__u64 fd_limit;
	/*
	 * The first fd the exit's sweep did not reach (0: it reached the
	 * whole table): records of fds from there on, made before ts, are
	 * left for user space to delete.
	 */
	__u32 unswept_from;
	__u32 pad2;
	struct proc proc;
	/* The counts of proc.err_kind's entries, out of the errors map. */
	__u64 err_count[PROC_ERR_KINDS];
};

#endif /* FDTRACE_H */
