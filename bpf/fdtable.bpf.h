/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The task's fd table: whether an fd is open, how many are, and loops over
 * the table.
 */
#ifndef FDTRACE_FDTABLE_BPF_H
#define FDTRACE_FDTABLE_BPF_H

#define MAX_SWEEP (1 << 23) /* bpf_loop's limit */

static __always_inline struct fdtable *task_fdt(struct task_struct *task)
{
	return KREAD(task, files, fdt);
}

static __always_inline unsigned long bitmap_word(unsigned long *bits, __u32 i)
{
	unsigned long w = 0;

	/* A load where the kernel can cast, as fd_file's. */
	if (BTF_POINTERS && cfg.have_rdonly_cast)
		return cast_kernel(&bits[i], struct timespec64)->tv_sec;
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
 * another (checked once too). Tables are swept a word of the open fds
 * bitmap at a time, up to COMPAT_SWEEP_WORDS words, each word's wanted fds
 * by a global function of their own; and counted up to COMPAT_COUNT_WORDS
 * words. What lies beyond is counted in STAT_UNSWEPT, never dropped
 * silently.
 */
#ifdef FDTRACE_COMPAT
/*
 * The bitmap words a sweep of the fds from first to *end (not included)
 * goes through, within COMPAT_SWEEP_WORDS: *end comes down to what they
 * reach, and the fds beyond count as unswept.
 *
 * The loops over them have this shape, the one 5.10's verifier sees end: a
 * 64-bit count clamped beforehand, a constant bound, a break. (Clang folds
 * "i < BOUND && i < n" into one 32-bit bound that 5.10 cannot follow.)
 */
static __always_inline __u64 compat_words(__u32 first, __u32 *end)
{
	__u32 w0 = first / 64, reach = (w0 + COMPAT_SWEEP_WORDS) * 64;

	if (*end <= first)
		return 0;
	if (*end > reach) {
		stat_add(STAT_UNSWEPT, *end - reach);
		*end = reach;
	}
	return (*end + 63) / 64 - w0;
}

/* The bits of word w for the fds from first to end (not included). */
static __always_inline unsigned long word_mask(__u32 w, __u32 first, __u32 end)
{
	unsigned long mask = ~0UL;

	if (w == first / 64)
		mask <<= first % 64;
	if (w == (end - 1) / 64 && end % 64)
		mask &= (1UL << (end % 64)) - 1;
	return mask;
}
#endif

/* How many fds a sweep looks at: the table, within bpf_loop's limit. */
static __always_inline __u32 sweep_size(struct fdtable *fdt)
{
	__u32 max = BPF_CORE_READ(fdt, max_fds);

	return max < MAX_SWEEP ? max : MAX_SWEEP;
}

/*
 * The first fd a sweep of the whole table does not reach, or 0: records
 * of fds from there on are left where a sweep should delete them.
 */
static __always_inline __u32 unswept_from(struct fdtable *fdt)
{
	__u32 max = BPF_CORE_READ(fdt, max_fds);

#ifdef FDTRACE_COMPAT
	if (max > COMPAT_SWEEP_WORDS * 64)
		return COMPAT_SWEEP_WORDS * 64;
#endif
	return max > MAX_SWEEP ? MAX_SWEEP : 0;
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
/* The compat programs' count (see compat_words): global. */
__noinline __u64 compat_count_open_fds(unsigned long bits, __u32 words)
{
	__u64 n = 0, max = words;

	if (max > COMPAT_COUNT_WORDS) {
		stat_add(STAT_UNSWEPT, (max - COMPAT_COUNT_WORDS) * 64);
		max = COMPAT_COUNT_WORDS;
	}
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

#endif /* FDTRACE_FDTABLE_BPF_H */
