/* SPDX-License-Identifier: GPL-2.0 */
/*
 * User stacks of fd creations (--stacks, leaks). capture_stack walks the
 * syscall's user stack by frame pointers (stack_fp.bpf.h) or by the DWARF
 * call frame information of the mapped files (stack_dwarf.bpf.h), keeps it
 * in the stacks map under a hash of its frames, and tells user space of a
 * new one (EV_STACK) so that it is symbolized while its process lives.
 */
#ifndef FDTRACE_STACK_BPF_H
#define FDTRACE_STACK_BPF_H

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

/* The state of one frame-pointer walk (stack_fp.bpf.h). */
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

/*
 * What DWARF unwinding found at one place (a process, a pc, a stack
 * pointer): the frames and where on the stack each return address was.
 * When those words hold the same return addresses again, the call chain is
 * the same and its unwinding is skipped.
 */
struct unwind_memo {
	__u32 nr;
	__u32 pad;
	/* Where ips[i] (i > 0) was, from the stack pointer. */
	__u32 off[MAX_STACK_DEPTH];
	__u64 ips[MAX_STACK_DEPTH];
};

struct unwind_memo_key {
	__u32 tgid;
	__u32 pad;
	__u64 pc;
	__u64 sp;
};

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
 * Everything a stack capture needs beyond a few registers lives here, per
 * CPU: the stack being built, the top of the user stack and the walk's
 * state. The BPF stack is shared with the program that captures (512 bytes
 * through the whole call chain, bpf_loop callbacks included), and the
 * verifier would follow every value the walk's loops could give them there.
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

/* One frame into the stack's hash (FNV-1a over the frames). */
static long hash_frame(__u32 i, void *unused)
{
	struct stack_work *w = stack_work();
	struct walk_ctx *c = w ? &w->c : NULL;

	if (!w || i >= w->st.nr)
		return 1;
	c->hash = (c->hash ^ w->st.ips[i & (MAX_STACK_DEPTH - 1)]) * FNV_PRIME;
	return 0;
}

#include "stack_fp.bpf.h"
#include "stack_dwarf.bpf.h"

#ifdef FDTRACE_COMPAT
/* Stacks need bpf_loop and bpf_task_pt_regs: the loader refuses them. */
static __always_inline __u64 capture_stack(__u32 tgid)
{
	return 0;
}
#else
/*
 * capture_stack's walk. Global, so that the verifier checks it once per
 * program rather than at every call site: its loops are the costliest part
 * of loading.
 */
__noinline __u64 walk_stack(__u32 tgid)
{
	struct task_struct *task = current_task();
	struct pt_regs *regs = user_regs(task);
	struct walk_ctx *c;
	struct stack_work *w;
	struct fd_event *e;
	__u64 h;
	int err;

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
	if (!cfg.dwarf_stacks) {
		walk_frame_pointers(w, tgid);
	} else if (!unwind_dwarf(w, tgid)) {
		h = send_raw_stack(task, tgid, w);
		if (h)
			return h;
		stat_add(STAT_STACKS_NO_TABLES, 1);
		walk_frame_pointers(w, tgid);
	}
	c->hash = FNV_OFFSET ^ tgid;
	bpf_loop(MAX_STACK_DEPTH, hash_frame, NULL, 0);
	h = c->hash | 1; /* 0 means no stack */
	err = map_insert(&stacks, &h, &w->st);
	if (err == -EEXIST /* seen before */)
		return h;
	if (err) {
		stat_add(STAT_STACKS_FULL, 1);
		return 0;
	}
	e = new_event(EV_STACK, SYS_PREEXISTING, tgid, -1);
	if (e) {
		e->stack_id = h;
		/* Whose maps to use if it is gone before it is symbolized. */
		e->ppid = BPF_CORE_READ(task, real_parent, tgid);
		/* Symbolize while the process lives: wake the reader now. */
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	}
	return h;
}

/*
 * The user stack of the current syscall, stored in the stacks map; its key,
 * or 0 when there is none (or, in DWARF mode before the process's unwind
 * tables are loaded, the provisional id of a copy sent to user space).
 * Without stacks, no call at all: counting runs on every syscall.
 */
static __always_inline __u64 capture_stack(__u32 tgid)
{
	return cfg.capture_stacks ? walk_stack(tgid) : 0;
}
#endif

#endif /* FDTRACE_STACK_BPF_H */
