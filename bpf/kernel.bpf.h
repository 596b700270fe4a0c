/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reading the kernel: the run settings, pointers the verifier knows the
 * type of or not, the constants vmlinux.h lacks, and the syscall's user
 * registers.
 *
 * Kernel structures are read with plain loads through BTF pointers where
 * the verifier allows it: a bpf_probe_read_kernel (BPF_CORE_READ) is a
 * helper call each, and the hot paths would make a dozen.
 *
 * Two objects are built from the same sources. The default one needs
 * bpf_get_current_task_btf (5.11), bpf_task_pt_regs (5.15) and bpf_loop
 * (5.17). The compat one (FDTRACE_COMPAT, for 5.10 to 5.16) reads
 * everything with BPF_CORE_READ, finds the user registers itself, loops
 * with bounded loops, and takes no stacks. The loader picks one by probing.
 */
#ifndef FDTRACE_KERNEL_BPF_H
#define FDTRACE_KERNEL_BPF_H

/* Set by the loader (struct config). */
const volatile struct config cfg = {};

#ifdef FDTRACE_COMPAT
#define BTF_POINTERS 0
#define current_task() ((struct task_struct *)bpf_get_current_task())
/* The stack walkers are built but left out of every program. */
#pragma clang diagnostic ignored "-Wunused-function"
#else
#define BTF_POINTERS 1
#define current_task() bpf_get_current_task_btf()
#endif

/* The current process's tgid: a load from task (current) where it can be. */
static __always_inline __u32 current_tgid(struct task_struct *task)
{
	return BTF_POINTERS ? task->tgid : bpf_get_current_pid_tgid() >> 32;
}

/* The current thread's id, likewise. */
static __always_inline __u32 current_tid(struct task_struct *task)
{
	return BTF_POINTERS ? task->pid : (__u32)bpf_get_current_pid_tgid();
}

/* Through a pointer the verifier knows the type of (the current task). */
#define KREAD(src, a, ...)                                                     \
	(BTF_POINTERS ? ___arrow(src, a, ##__VA_ARGS__) :                      \
			BPF_CORE_READ(src, a, ##__VA_ARGS__))

/*
 * A pointer read from memory gets its type back with bpf_rdonly_cast
 * (Linux 6.2). Weak: on older kernels the loader leaves the call out, and
 * cfg.have_rdonly_cast (set by the loader from the kernel's BTF) makes it
 * dead code the verifier never sees. bpf_ksym_exists would need 6.4, which
 * first took a kfunc's address.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define cast_kernel(p, type)                                                   \
	((type *)bpf_rdonly_cast((void *)(p), bpf_core_type_id_kernel(type)))

/* Through a pointer of the given type read from memory. */
#define CAST_READ(type, src, a, ...)                                           \
	(BTF_POINTERS && cfg.have_rdonly_cast ?                                \
		 ___arrow(cast_kernel(src, type), a, ##__VA_ARGS__) :          \
		 BPF_CORE_READ((type *)(src), a, ##__VA_ARGS__))

/* Errors: positive, as the kernel's headers have them. */
#define EBADF 9
#define ENOMEM 12
#define EAGAIN 11
#define EEXIST 17
#define ENFILE 23
#define EMFILE 24
#define ENOBUFS 105
#define ERESTARTSYS 512 /* and above: restarted, never seen by the caller */

#define RLIMIT_NOFILE 7
#define F_DUPFD 0
#define F_DUPFD_CLOEXEC 1030
#define CLOSE_RANGE_UNSHARE (1U << 1)
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#define CLONE_PIDFD 0x1000
#define SOL_SOCKET 1
#define SCM_RIGHTS 1
#define SCM_PIDFD 4
#define SO_PEERPIDFD 77
#define TIOCGPTPEER 0x5441
#define USERFAULTFD_IOC_NEW 0xaa00 /* _IO(0xAA, 0x00), on /dev/userfaultfd */
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFIFO 0010000

/* The end of x86-64's user address space (47 bits). */
#define USER_ADDR_END 0x800000000000ULL

/* Could this be the address of user code? */
static __always_inline bool user_code_addr(__u64 a)
{
	return a >= 4096 && a < USER_ADDR_END;
}

/* FNV-1a, 64 bits. */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

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
/*
 * Where the loader measured them (cfg.pt_regs_offset), they are a load
 * away: bpf_task_pt_regs is a helper call, which costs more than the rest
 * of a short program.
 */
static __always_inline struct pt_regs *user_regs(struct task_struct *task)
{
	if (cfg.have_rdonly_cast && cfg.pt_regs_offset)
		return cast_kernel(task->stack + cfg.pt_regs_offset,
				   struct pt_regs);
	return (struct pt_regs *)bpf_task_pt_regs(task);
}

#define SYSCALL_ARG(n, regs) PT_REGS_PARM##n##_SYSCALL(regs)
#define USER_IP(regs) PT_REGS_IP(regs)
#define USER_SP(regs) PT_REGS_SP(regs)
#define USER_FP(regs) PT_REGS_FP(regs)
#endif

/* The soft RLIMIT_NOFILE of the task's process. */
static __always_inline __u64 fd_limit(struct task_struct *task)
{
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	__u64 lim = 0;

	bpf_core_read(&lim, sizeof(lim), &sig->rlim[RLIMIT_NOFILE].rlim_cur);
	return lim;
}

#endif /* FDTRACE_KERNEL_BPF_H */
