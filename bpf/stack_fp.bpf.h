/* SPDX-License-Identifier: GPL-2.0 */
/*
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
#ifndef FDTRACE_STACK_FP_BPF_H
#define FDTRACE_STACK_FP_BPF_H

/* What the search found last, by call site (struct walk_memo). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct memo_key);
	__type(value, struct walk_memo);
} walk_memos SEC(".maps");

/*
 * Does w look like a return address: is it preceded by a call instruction?
 * call rel32 (e8), call *disp32(%rip) (ff 15), call *%reg (ff d0+r),
 * call *(%reg) (ff 10+r), call *disp8(%reg) (ff 50+r).
 */
static __always_inline bool after_call(__u64 w)
{
	__u8 b[8];

	if (!user_code_addr(w))
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

	if (!user_code_addr(ret) ||
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

#endif /* FDTRACE_STACK_FP_BPF_H */
