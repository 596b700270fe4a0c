/* SPDX-License-Identifier: GPL-2.0 */
/*
 * DWARF unwinding (--stack-mode dwarf). User space compiles each mapped
 * file's .eh_frame/.debug_frame into rows (see struct exec_mappings and
 * enum cfa_rule) and tells, per process, where its files are mapped. Each
 * frame's CFA comes from the row covering its pc; where no row does (JIT
 * code, V8's builtins, files without CFI) the frame pointer is followed.
 * Unwinding restores rbp from the rows too, so a frame-pointer frame above
 * code built without frame pointers is still found.
 */
#ifndef FDTRACE_STACK_DWARF_BPF_H
#define FDTRACE_STACK_DWARF_BPF_H

/* One file's unwind table: an array of __u64 (see enum cfa_rule). */
struct inner_rows {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP); /* tables differ in size */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

/* Table key (struct exec_map's table) -> its rows, loaded by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__array(values, struct inner_rows);
} unwind_tables SEC(".maps");

/* tgid -> its executable mappings, written by user space. */
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

/* What unwinding found last, by place (struct unwind_memo). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 12);
	__type(key, struct unwind_memo_key);
	__type(value, struct unwind_memo);
} unwind_memos SEC(".maps");

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
	e = new_event(EV_MAPS, SYS_PREEXISTING, tgid, -1);
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

/*
 * The row in force at addr (a file's virtual address), into *row; false
 * when there is none.
 */
static __always_inline bool find_row(struct unwind_ctx *u, __u32 table,
				     __u64 addr, struct unwind_row *row)
{
	struct dwarf_state *s = &u->w->us;
	struct unwind_header *hdr;
	struct unwind_page *pg;
	struct unwind_row *r;
	__u32 k = 0, first, last;
	void *rows = u->rows;
	__u64 off, page;

	if (table != s->table || !rows) {
		rows = bpf_map_lookup_elem(&unwind_tables, &table);
		if (!rows)
			return false;
		hdr = bpf_map_lookup_elem(rows, &k);
		if (!hdr)
			return false;
		u->rows = rows;
		s->table = table;
		s->lo = hdr->addr;
		s->pages = hdr->pages;
	}
	if (addr < s->lo)
		return false;
	off = addr - s->lo;
	page = off >> UNWIND_PAGE_SHIFT;
	if (page >= s->pages)
		return false;
	k = 1 + page;
	pg = bpf_map_lookup_elem(rows, &k);
	if (!pg)
		return false;
	first = pg->first;
	last = pg->last;
	/* The last row at or below off. */
	for (int i = 0; i < 24 && first < last; i++) {
		k = last - (last - first) / 2;
		r = bpf_map_lookup_elem(rows, &k);
		if (!r)
			return false;
		if (r->addr <= off)
			first = k;
		else
			last = k - 1;
	}
	r = bpf_map_lookup_elem(rows, &first);
	if (!r || r->addr > off)
		return false;
	*row = *r;
	return true;
}

static long unwind_frame(__u32 i, struct unwind_ctx *u)
{
	struct stack_work *w = u->w;
	struct dwarf_state *s = &w->us;
	struct unwind_row row = {}; /* CFA_NONE: no row */
	struct exec_map *m;
	__u64 addr, cfa, ret;
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
		find_row(u, m->table, addr - m->bias, &row);
	off = row.cfa_off;
	rbp_at = row.rbp_at;
	switch (row.rule) {
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
	return !user_code_addr(ret);
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
		/* Remember nothing: it does better once they are read. */
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
	key->top = FNV_OFFSET;
	for (int i = 0; i < 8; i++)
		key->top = (key->top ^ top[i]) * FNV_PRIME;
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

#endif /* FDTRACE_STACK_DWARF_BPF_H */
