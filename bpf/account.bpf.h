/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-process fd accounting: the counters of each process (procs) and a
 * record per live fd (fds), kept exact by asking the task's own fd table.
 * A close counts only when its fd is open in the table, and a process seen
 * for the first time starts from a count of the table's open fds.
 *
 * With records, a count moves with its records: +1 when a record goes in,
 * -1 when one goes dead, and a close is accounted after it happened, so
 * that threads racing on one fd number count each fd once: two closes of
 * it (one record to kill), a close before its creating syscall returned
 * (which then finds its fd gone), a close whose exit comes after the next
 * fd of that number was recorded (the record holds its struct file). The
 * fds counted without a record of their own (a process's table at first
 * sight) are its table_counted: a close of an fd with no record takes one
 * of them, or counts nothing (its creation was never counted either).
 */
#ifndef FDTRACE_ACCOUNT_BPF_H
#define FDTRACE_ACCOUNT_BPF_H

/* Live fds: (tgid, fd) -> how and when it was created. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fd_key);
	__type(value, struct fd_info);
} fds SEC(".maps");

/*
 * Per-process counters. A process's are in the slot of proc_slots at the
 * low bits of its tgid, or in procs (tgid -> struct proc) when another
 * process holds that slot: an array element is a load the verifier
 * inlines, where a hash lookup was most of what counting an fd cost. A
 * slot is taken (owner: 0 -> SLOT_BUSY -> tgid) only where no other
 * thread of the process can look for its counters meanwhile, and given
 * back (tgid -> 0) at its exit. The compat programs have no cmpxchg to
 * take one with: theirs are all in procs.
 */
#define PROC_SLOTS 8192
#define SLOT_BUSY 0xffffffff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROC_SLOTS);
	__type(key, __u32);
	__type(value, struct proc);
} proc_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct proc);
} procs SEC(".maps");

/* Room to build a struct proc: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc);
} proc_scratch SEC(".maps");

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
		p->open_base = p->table_counted = count_open_fds(fdt);
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	p->start_ns = BPF_CORE_READ(leader, start_time);
	bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), leader->comm);
	return p;
}

static __always_inline bool owner_cas(__u32 *owner, __u32 old, __u32 new)
{
#ifdef FDTRACE_COMPAT
	return false; /* never called: no slots */
#else
	return __sync_val_compare_and_swap(owner, old, new) == old;
#endif
}

/* The counters of a process, NULL if it has none. */
static __always_inline struct proc *find_proc(__u32 tgid)
{
#ifndef FDTRACE_COMPAT
	__u32 slot = tgid & (PROC_SLOTS - 1);
	struct proc *p = bpf_map_lookup_elem(&proc_slots, &slot);

	if (p && p->owner == tgid)
		return p;
#endif
	return bpf_map_lookup_elem(&procs, &tgid);
}

/*
 * Put init in the slot of tgid, if it is free or holds an exited process
 * of that pid; NULL if another process holds it. Only where nothing else
 * looks for tgid's counters meanwhile: its only thread, or a child not
 * woken yet.
 */
static __always_inline struct proc *take_slot(__u32 tgid, struct proc *init)
{
#ifdef FDTRACE_COMPAT
	return NULL;
#else
	__u32 slot = tgid & (PROC_SLOTS - 1);
	struct proc *p = bpf_map_lookup_elem(&proc_slots, &slot);
	__u32 owner;

	if (!p)
		return NULL;
	owner = p->owner;
	if ((owner && owner != tgid) || !owner_cas(&p->owner, owner, SLOT_BUSY))
		return NULL;
	init->owner = SLOT_BUSY;
	*p = *init;
	/* Filled before it is found: xchg orders the stores before it. */
	__sync_lock_test_and_set(&p->owner, tgid);
	return p;
#endif
}

/*
 * Put init in as tgid's counters: in its slot if alone (see take_slot) and
 * the slot is free, else in procs; replace: an entry there is an exited
 * process's.
 */
static __always_inline struct proc *put_proc(__u32 tgid, struct proc *init,
					     bool alone, bool replace)
{
	struct proc *p = alone ? take_slot(tgid, init) : NULL;

	if (p) {
		/* An entry of tgid in procs is an exited process's. */
		if (replace)
			bpf_map_delete_elem(&procs, &tgid);
		return p;
	}
	/* (init->owner is still new_proc's 0.) */
	if (!replace)
		p = lookup_or_try_init(&procs, &tgid, init);
	else if (!bpf_map_update_elem(&procs, &tgid, init, BPF_ANY))
		p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		stat_add(STAT_PROCS_FULL, 1);
	return p;
}

/*
 * Forget the counters of an exited process; false when another exiting
 * thread did (several can see the process's last thread gone).
 */
static __always_inline bool drop_proc(__u32 tgid, struct proc *p)
{
	if (p->owner == tgid)
		return owner_cas(&p->owner, tgid, 0);
	return !bpf_map_delete_elem(&procs, &tgid);
}

/*
 * The counters of a process, created on first sight from its fd table.
 * pending: fds the current syscall already installed and will count itself.
 */
static __always_inline struct proc *
get_proc(__u32 tgid, struct task_struct *task, __s64 pending)
{
	struct proc *p = find_proc(tgid);
	struct proc *init;

	if (p)
		return p;
	init = new_proc(task);
	if (!init)
		return NULL;
	init->open_base -= pending;
	init->table_counted -= pending;
	/* Its other threads, if any, may look for its counters meanwhile. */
	return put_proc(tgid, init,
			BTF_POINTERS && KREAD(task, signal, nr_threads) == 1,
			false);
}

/* The count of a type in a by-type array of struct proc. */
static __always_inline __u64 *type_count(__u64 *by_type, __u32 type)
{
	/* Bounds the register the index is computed from, not a copy. */
	barrier_var(type);
	if (type >= FD_TYPE_MAX)
		type = FD_OTHER;
	return &by_type[type];
}

/*
 * Count n fds of a type in a by-type array of struct proc: the only count
 * of them there is (the totals are their sums).
 */
static __always_inline void count_types(__u64 *by_type, __u32 type, __u64 n)
{
	__sync_fetch_and_add(type_count(by_type, type), n);
}

static __always_inline void count_type(__u64 *by_type, __u32 type)
{
	count_types(by_type, type, 1);
}

/*
 * A process's open fds (see struct proc). A loop, not unrolled: not on a
 * hot path, and its callers' frames stay small.
 */
static __always_inline __s64 proc_open_fds(const struct proc *p)
{
	__s64 n = p->open_base - p->closed_untyped;

#pragma clang loop unroll(disable)
	for (int t = 0; t < FD_TYPE_MAX; t++)
		n += p->opened_by_type[t] - p->closed_by_type[t];
	return n;
}

/*
 * Whether a close of an fd of type may be of one counted nowhere: its
 * type has had as many closes as opens (the fds counted at first sight
 * have no type, so their closes are among those).
 */
static __always_inline bool unseen_may_close(struct proc *p, __u32 type)
{
	return *type_count(p->closed_by_type, type) >=
	       *type_count(p->opened_by_type, type);
}

/* Set a process's open fds to n (a recount): by how much they change. */
static __always_inline __s64 set_open_fds(struct proc *p, __s64 n)
{
	__s64 off = n - proc_open_fds(p);

	if (off)
		__sync_fetch_and_add(&p->open_base, off);
	return off;
}

/* The file operations of sockets, once a socket was seen. */
volatile __u64 socket_fops = 0;

/* The type of an fd, from its file. */
static __always_inline __u8 type_of_file(struct file *f)
{
	struct fd_info info = {};
	__u64 ops;
	__u8 type;

	if (!f)
		return FD_OTHER;
	/*
	 * By the mode where it tells, without a call (inspect_file), where
	 * the mode is two loads; else (helper reads) in inspect_file's frame.
	 */
	if (!BTF_POINTERS || !cfg.have_rdonly_cast) {
		inspect_file(f, &info);
		return info.fd_type;
	}
	/*
	 * A socket's inode is new with it, and out of the cache by its
	 * close: its file's f_op tells it without the inode.
	 */
	ops = (__u64)FILE_READ(f, f_op);
	if (ops == socket_fops)
		return FD_SOCKET;
	type = type_by_mode(f, file_mode(f));
	if (type == FD_SOCKET)
		socket_fops = ops; /* every socket's (socket_file_ops) */
	if (type != TYPE_UNKNOWN)
		return type;
	inspect_file(f, &info);
	return info.fd_type;
}

/* The type of an open fd, from its file. */
static __always_inline __u8 type_of_fd(int fd)
{
	return type_of_file(fd_file(task_fdt(current_task()), fd));
}

/* Take one of p's table_counted fds, if it has any left. */
static __always_inline bool take_table_counted(struct proc *p)
{
	if (p->table_counted <= 0)
		return false;
#ifdef FDTRACE_COMPAT
	/* No fetching atomics before 5.12: two takers may take one. */
	__sync_fetch_and_add(&p->table_counted, -1);
	return true;
#else
	if (__sync_fetch_and_add(&p->table_counted, -1) > 0)
		return true;
	__sync_fetch_and_add(&p->table_counted, 1);
	return false;
#endif
}

/* The struct file at fd now, or 0 when the fd is not open. */
static __always_inline __u64 file_at(struct fdtable *fdt, int fd)
{
	if (!fdt || !fd_is_open(fdt, fd))
		return 0;
	return (__u64)fd_file(fdt, fd);
}

/*
 * A record's gen is its owner word: the thread that swaps it to REC_DEAD
 * accounts for its fd, so that of the threads racing on one record one
 * acts. A dead record stays in the map, as its number's tombstone, until
 * the number's next creator makes it its own (REC_DEAD -> REC_BUSY, its
 * fields written, its gen) or the process exits: were a close to delete
 * it, a creator would have to wait for that delete, and a thread paused
 * between its swap and its delete (a preempted vCPU) would leave the
 * creator nothing but an fd counted without a record. Gens are never
 * reused, so a swap of the gen that was read acts on that record or
 * fails; a record deleted since (its process's exit, user space) is
 * told by a second lookup, its memory being another record's by then.
 */
#define REC_DEAD 1
#define REC_BUSY 2

/* Whether a gen is a record's that stands for an open fd. */
static __always_inline bool gen_live(__u64 gen)
{
	return gen > REC_BUSY;
}

/* A gen for a record made now on this CPU (user space's have bit 63). */
static __always_inline __u64 new_gen(__u64 now)
{
	return now ^ ((__u64)bpf_get_smp_processor_id() << 56);
}

static __always_inline bool gen_cas(__u64 *gen, __u64 old, __u64 new)
{
#ifdef FDTRACE_COMPAT
	/* No cmpxchg before 5.12: racing threads may both act. */
	if (*gen != old)
		return false;
	*gen = new;
	return true;
#else
	return __sync_val_compare_and_swap(gen, old, new) == old;
#endif
}

/* A record's gen, read once (the compiler reads it anew each time asked). */
static __always_inline __u64 gen_of(struct fd_info *rec)
{
	return *(volatile __u64 *)&rec->gen;
}

/*
 * Whether rec, which the caller swapped from gen to to, is key's record.
 * If not, it was deleted after the lookup and its memory came back as
 * another record (of key, not in yet, or of another key), whose gen was
 * read: the swap is undone.
 */
static __always_inline bool still_key(struct fd_key *key, struct fd_info *rec,
				      __u64 gen, __u64 to)
{
	if (bpf_map_lookup_elem(&fds, key) == rec)
		return true;
	gen_cas(&rec->gen, to, gen);
	return false;
}

/*
 * Settle a record the caller swapped from gen to REC_DEAD: false if it was
 * not key's after all. The compat programs delete it: their swap is not
 * atomic, and the delete settles which of two threads that both swapped
 * acts (a creator waits for it, see record_fd); the others leave it as
 * its number's tombstone.
 */
static __always_inline bool bury(struct fd_key *key, struct fd_info *rec,
				 __u64 gen)
{
	if (!still_key(key, rec, gen, REC_DEAD))
		return false;
#ifdef FDTRACE_COMPAT
	return !bpf_map_delete_elem(&fds, key);
#else
	return true;
#endif
}

/* The live record of key, NULL if it has none. */
static __always_inline struct fd_info *live_record(struct fd_key *key)
{
	struct fd_info *rec = bpf_map_lookup_elem(&fds, key);

	return rec && gen_live(gen_of(rec)) ? rec : NULL;
}

/* Out of line: a frame of its own rather than a larger caller's. */
static __noinline void send_close(__u32 tgid, int fd, __u16 sc, __u8 type)
{
	struct fd_event *e = new_event(EV_CLOSE, sc, tgid, fd);

	if (!e)
		return;
	e->fd_type = type;
	submit(e, sizeof(*e));
}

/* Report a close, in a stream of events: a call only then. */
static __always_inline void report_close(__u32 tgid, int fd, __u16 sc,
					 __u8 type)
{
	if (!cfg.errors_only)
		send_close(tgid, fd, sc, type);
}

/*
 * Account an fd that is going away, and report it. Counting only, its type
 * is `type`, or its file's when that is TYPE_UNKNOWN. With records, `gone`
 * says the close happened already: a record of the file now at fd is the
 * next fd's, and stays.
 */
static __always_inline void close_fd(__u32 tgid, struct proc *p,
				     struct fdtable *fdt, int fd, __u16 sc,
				     __u8 type, bool gone)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	bool table, counted = true;
	struct fd_info *info;
	__u64 f, gen;

	if (!cfg.fd_records) {
		if (type == TYPE_UNKNOWN)
			type = type_of_fd(fd);
	} else if ((info = bpf_map_lookup_elem(&fds, &key)) &&
		   /* A dead record at a close that happened: as none, below. */
		   ((gen = gen_of(info)) != REC_DEAD || !gone)) {
		f = info->file;
		/*
		 * Another close has it (close_range's entry), its creator is
		 * writing it, or it is the next fd's.
		 */
		if (!gen_live(gen) || (gone && f && f == file_at(fdt, fd)))
			return;
		/* Read before the swap: its success says they were gen's. */
		type = info->fd_type;
		table = info->flags & FDF_TABLE_COUNTED;
		if (!gen_cas(&info->gen, gen, REC_DEAD) ||
		    !bury(&key, info, gen))
			return; /* another close, or the next fd's creator */
		/*
		 * A record seeded from /proc holds one of table_counted: none
		 * left, its fd's count went with a close that came first.
		 */
		if (table && !(p && take_table_counted(p)))
			counted = false;
	} else if (p && take_table_counted(p)) {
		/*
		 * No record, or a dead one: that close was of the fd before,
		 * and this one's creator, finding no room for its record,
		 * counted this fd without one.
		 */
		type = FD_OTHER;
	} else {
		/*
		 * Never counted: another thread's close of this fd took its
		 * record, its creating syscall has not returned yet (and then
		 * finds it gone), or its creator is not traced.
		 */
		return;
	}
	if (p && counted) {
		barrier_var(p); /* keep p+off below the check */
		count_type(p->closed_by_type, type);
	}
	report_close(tgid, fd, sc, type);
}

/*
 * What record_fd did with an fd's record: how the fd counts, and whether
 * it took over the record of the fd its number had before.
 */
enum recorded {
	RECORDED,	 /* in: the fd counts */
	RECORDED_BEFORE, /* it was in already: nothing to count */
	RECORDED_CLOSED, /* the fd was closed before it went in: opened and
			    closed, counted neither way */
	RECORDED_HOW = 0xf,
	/*
	 * | the previous fd's record was taken over: that fd closed, its
	 * type << 8
	 */
	RECORDED_REPLACED = 0x10,
};

/*
 * Set a record's gen once its fields are written: none is read before.
 * (Records are written in place only where there is xchg: not by the
 * compat programs.)
 */
static __always_inline void gen_publish(__u64 *gen, __u64 v)
{
	__sync_lock_test_and_set(gen, v);
}

/* Make rec, held as REC_BUSY, the record info. */
static __always_inline void fill_record(struct fd_info *rec,
					const struct fd_info *info)
{
	rec->open_ns = info->open_ns;
	rec->stack_id = info->stack_id;
	rec->file = info->file;
	rec->syscall = info->syscall;
	rec->fd_type = info->fd_type;
	rec->flags = info->flags;
	rec->family = info->family;
	rec->sock_type = info->sock_type;
	gen_publish(&rec->gen, info->gen);
}

/*
 * Make old, key's record of gen when it was read, the record info in
 * place: false if another thread acted on it first, or it is not key's.
 */
static __always_inline bool take_in_place(struct fd_key *key,
					  struct fd_info *old, __u64 gen,
					  const struct fd_info *info)
{
	if (!gen_cas(&old->gen, gen, REC_BUSY) ||
	    !still_key(key, old, gen, REC_BUSY))
		return false;
	fill_record(old, info);
	return true;
}

/*
 * Put rec in as key's record where there is none or a tombstone: 0, else
 * an error (-EEXIST: a live record, or one being written).
 */
static __always_inline int put_record(struct fd_key *key, struct fd_info *rec)
{
	int err = map_insert(&fds, key, rec);
#ifndef FDTRACE_COMPAT
	struct fd_info *old;

	if (err != -EEXIST)
		return err;
	old = bpf_map_lookup_elem(&fds, key);
	if (!old || !take_in_place(key, old, REC_DEAD, rec))
		return -EEXIST;
	return 0;
#else
	return err;
#endif
}

/*
 * The record info of key just went in. If its fd was closed meanwhile, by
 * a close that found none, it is taken back (unless a close has it), and
 * the fd counts neither way. If the next fd of its number is open by now,
 * the record stands for that one: its creator may have found this record
 * being written and left its fd to it (see record_fd).
 */
static __always_inline int
settle_record(struct fd_key *key, struct fd_info *info, struct fdtable *fdt)
{
	__u64 now = file_at(fdt, key->fd);
	struct fd_info *rec;

	if (now == info->file)
		return RECORDED;
	rec = bpf_map_lookup_elem(&fds, key);
	if (!rec)
		return RECORDED; /* a close has it, or the next fd's creator */
#ifndef FDTRACE_COMPAT
	if (now) {
		if (!gen_cas(&rec->gen, info->gen, REC_BUSY))
			return RECORDED;
		rec->file = now;
		/* A gen of its own: one past the one a close may have read. */
		gen_publish(&rec->gen, info->gen + 1);
		return RECORDED;
	}
#endif
	if (!gen_cas(&rec->gen, info->gen, REC_DEAD))
		return RECORDED;
	return bury(key, rec, info->gen) ? RECORDED_CLOSED : RECORDED;
}

/*
 * Put in the record of an fd the current syscall made (see the top of this
 * file for the races). Out of line: the exit programs' frames stay small.
 */
static __noinline int record_fd(__u32 tgid, int fd, struct fd_info *info,
				struct proc *p, struct fdtable *fdt)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	int err, replaced = 0;
	struct fd_info *old;
	__u64 f, gen;
	bool table;
	__u8 type;

	info->file = file_at(fdt, fd);
	if (!info->file)
		return RECORDED_CLOSED; /* by a close that found no record */
	if (fd_bit(KREAD(fdt, close_on_exec), KREAD(fdt, max_fds), fd))
		info->flags |= FDF_CLOEXEC;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		err = map_insert(&fds, &key, info);
		if (!err)
			goto in;
		if (err != -EEXIST) {
			stat_add(STAT_FDS_FULL, 1);
			break;
		}
		old = bpf_map_lookup_elem(&fds, &key);
		if (!old)
			continue; /* deleted meanwhile */
		gen = gen_of(old);
		f = old->file;
		type = old->fd_type;
		table = old->flags & FDF_TABLE_COUNTED;
		/*
		 * Another creator is writing it: for the fd open at this
		 * number when it is in, this one or the next (settle_record).
		 */
		if (gen == REC_BUSY)
			return RECORDED_BEFORE | replaced;
		if (gen_of(old) != gen)
			continue;
		if (gen_live(gen) && f == info->file)
			return RECORDED_BEFORE | replaced;
		/*
		 * A tombstone, or the record of the fd this number had: its
		 * close did not get to it yet, or went unseen. Ours goes in
		 * its place, and a live one's count goes with it. (The compat
		 * programs wait for a dead one's delete, and delete a live
		 * one, putting theirs in on the next turn.)
		 */
#ifdef FDTRACE_COMPAT
		if (!gen_live(gen) || !gen_cas(&old->gen, gen, REC_DEAD) ||
		    !bury(&key, old, gen))
			continue;
#else
		if (!take_in_place(&key, old, gen, info))
			continue;
#endif
		/*
		 * Seeded from /proc (no file known): most likely this very fd,
		 * listed after it was installed and before this exit, or one
		 * whose close, seen, came before its record went in. The table
		 * count has no unit for either: this fd counts. (After a close
		 * fdtrace does not see, it counts one too many until the
		 * process execs or exits.)
		 */
		if (gen_live(gen) && !table)
			replaced = RECORDED_REPLACED | type << 8;
#ifndef FDTRACE_COMPAT
		goto in;
#endif
	}
	/* No room, or every race lost: counted without a record. */
	if (p)
		__sync_fetch_and_add(&p->table_counted, 1);
	return RECORDED | replaced;
in:
	return settle_record(&key, info, fdt) | replaced;
}

/* Count an fd of type that record_fd put in as how says. */
static __always_inline void count_recorded(struct proc *p, int how, __u8 type)
{
	barrier_var(p);
	if ((how & RECORDED_HOW) != RECORDED_BEFORE)
		count_type(p->opened_by_type, type);
	if ((how & RECORDED_HOW) == RECORDED_CLOSED)
		count_type(p->closed_by_type, type);
	if (how & RECORDED_REPLACED)
		count_type(p->closed_by_type, how >> 8);
}

/*
 * Record and report an fd the current syscall created (user_data: an
 * io_uring request's, for its report).
 */
static __always_inline void open_fd(__u32 tgid, struct proc *p,
				    struct fdtable *fdt, int fd, __u16 sc,
				    const struct fd_info *src,
				    const char *upath, __u64 stack_id,
				    __u64 user_data)
{
	struct fd_info info = {
		/* Only a record keeps it. */
		.open_ns = cfg.fd_records ? bpf_ktime_get_ns() : 0,
		.stack_id = stack_id,
		.syscall = sc,
		.fd_type = type_of_syscall(sc),
	};
	struct fd_path_event *pe = NULL;
	int how = RECORDED;
	struct fd_event *e;
	struct file *f;
	__u64 now;

	if (src) {
		info.fd_type = src->fd_type;
		info.family = src->family;
		info.sock_type = src->sock_type;
	} else if (info.fd_type == FD_OTHER ||
		   (info.fd_type == FD_SOCKET && cfg.fd_records)) {
		f = fd_file(fdt, fd);
		if (f)
			inspect_file(f, &info);
	}
	if (cfg.fd_records) {
		info.gen = new_gen(info.open_ns);
		how = record_fd(tgid, fd, &info, p, fdt);
	}
	if (p)
		count_recorded(p, how, info.fd_type);
	/* A close that did not get to report: which call, is not known. */
	if (how & RECORDED_REPLACED)
		report_close(tgid, fd, SYS_CLOSE, how >> 8);
	if ((how & RECORDED_HOW) == RECORDED_BEFORE)
		return;
	if (cfg.errors_only)
		return;
	/* With a record, the time it has: one clock read, not two. */
	now = info.open_ns ? info.open_ns : bpf_ktime_get_ns();
	if (upath) {
		pe = new_path_event_at(EV_OPEN, sc, tgid, fd, now);
		e = pe ? &pe->e : NULL;
	} else {
		e = new_event_at(EV_OPEN, sc, tgid, fd, now);
	}
	if (!e)
		return;
	e->fd_type = info.fd_type;
	e->family = info.family;
	e->sock_type = info.sock_type;
	e->flags = info.flags;
	e->stack_id = stack_id;
	e->user_data = user_data;
	if (pe) {
		bpf_probe_read_user_str(pe->path, sizeof(pe->path), upath);
		submit(e, sizeof(*pe));
	} else {
		submit(e, sizeof(*e));
	}
	if ((how & RECORDED_HOW) == RECORDED_CLOSED)
		report_close(tgid, fd, SYS_CLOSE, info.fd_type);
}

/*
 * An fd a syscall installed and wrote to user memory (a control message, a
 * fanotify or userfaultfd event, getsockopt's value): a racing thread may
 * have rewritten that memory, so the fd counts only if it is open in the
 * table and, with records, not recorded already (record_fd tells).
 */
static __always_inline void open_user_fd(__u32 tgid, struct proc *p,
					 struct fdtable *fdt, int fd, __u16 sc,
					 __u64 stack_id, __u64 user_data)
{
	const struct fd_info *src = NULL;
	struct fd_info by_mode = {};
	struct file *f;

	if (!fdt || !fd_is_open(fdt, fd) || !(f = fd_file(fdt, fd)))
		return;
	/*
	 * Its type by the file's mode where that tells, with two loads
	 * rather than inspect_file's call. (The exits have no room on their
	 * stack for this.)
	 */
	if (BTF_POINTERS && cfg.have_rdonly_cast) {
		by_mode.fd_type = type_by_mode(f, file_mode(f));
		if (by_mode.fd_type != FD_SOCKET &&
		    by_mode.fd_type != TYPE_UNKNOWN)
			src = &by_mode;
	}
	open_fd(tgid, p, fdt, fd, sc, src, NULL, stack_id, user_data);
}

/*
 * open_user_fd for the loops over control messages and events: a global
 * function, so that the verifier checks it once, not in every loop.
 */
__noinline int record_user_fd(__u32 tgid, int fd, __u16 sc, __u64 stack_id)
{
	struct task_struct *task = current_task();

	open_user_fd(tgid, get_proc(tgid, task, 0), task_fdt(task), fd, sc,
		     stack_id, 0);
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
	bool seed;	  /* record open fds as there before (first sight) */
	__u32 heir; /* with delete_only: who gets the records of open fds */
	__u64 n;
};

/*
 * A record for an fd open when its process was first counted (at exec):
 * it stops being one of the table_counted.
 */
static __always_inline void seed_fd(__u32 tgid, struct proc *p, int fd)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	struct fd_info info = { .syscall = SYS_PREEXISTING,
				.flags = FDF_SEEDED };
	struct file *f = fd_file(task_fdt(current_task()), fd);

	if (!f)
		return;
	info.file = (__u64)f;
	info.gen = new_gen(bpf_ktime_get_ns());
	inspect_file(f, &info);
	if (!put_record(&key, &info) && p)
		take_table_counted(p);
}

/*
 * The parent of task if it is not exiting, else NULL: its last thread
 * drops signal->live to 0 before its exit sweeps its records.
 */
static __always_inline struct task_struct *
living_parent(struct task_struct *task)
{
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);

	return BPF_CORE_READ(parent, signal, live.counter) > 0 ? parent : NULL;
}

/* Whether the parent of the current task is still process to, living. */
static __always_inline bool heir_lives(__u32 to)
{
	struct task_struct *parent = living_parent(current_task());

	return parent && BPF_CORE_READ(parent, tgid) == to;
}

/*
 * A process that shares its parent's fd table (CLONE_FILES, not a thread)
 * exits: the fds it made stay in the table, so their records go to the
 * parent and count there. Those the parent has a record of already (its
 * own, or copied at the fork) stay as they are.
 */
static __noinline void hand_over(__u32 from, __u32 to, int fd)
{
	struct fd_key key = { .tgid = from, .fd = fd };
	struct fd_key heir = { .tgid = to, .fd = fd };
	struct fd_info *info = bpf_map_lookup_elem(&fds, &key);
	struct proc *p = find_proc(to);
	struct fd_info rec;

	if (!info || !p)
		return;
	rec = *info;
	if (!gen_live(rec.gen))
		return;
	rec.gen ^= (__u64)to << 24; /* a gen of its own */
	if (put_record(&heir, &rec))
		return;
	/*
	 * A parent exiting at the same time may have swept this number
	 * already, and the record would outlive it (and pass for an fd of
	 * the next process of its pid). Its sweep's delete and this insert
	 * take the bucket's lock in turn, and its live dropped before its
	 * sweep: looked at after the insert, live tells.
	 */
	if (!heir_lives(to)) {
		bpf_map_delete_elem(&fds, &heir);
		return;
	}
	__sync_fetch_and_add(&p->open_base, 1);
}

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
		if (c->heir && open)
			hand_over(c->tgid, c->heir, fd);
		bpf_map_delete_elem(&fds, &key);
		return 0;
	}
	if (c->seed) {
		seed_fd(c->tgid, c->p, fd);
		return 0;
	}
	if (!c->want_open && !live_record(&key))
		return 0;
	/*
	 * Open fds close at close_range's entry; exec's and those of
	 * close_range's exit are gone already.
	 */
	close_fd(c->tgid, c->p, NULL, fd, c->sc, TYPE_UNKNOWN, !c->want_open);
	c->n++;
	return 0;
}

#ifdef FDTRACE_COMPAT
#define SWEEP_WANT_OPEN (1 << 16)
#define SWEEP_ANY_BIT (1 << 17)
#define SWEEP_DELETE_ONLY (1 << 18)
#define SWEEP_SEED (1 << 19)

/*
 * One fd of a sweep by the compat programs' bounded loop. Global, so that
 * the verifier checks it once rather than in every iteration (it cannot
 * prune a loop whose iterations differ); it takes only numbers.
 */
__noinline int compat_sweep_fd(__u32 tgid, __u32 fd, unsigned long bits,
			       __u64 how)
{
	struct sweep_ctx c = {
		.tgid = tgid,
		.first = fd,
		.bits = (unsigned long *)bits,
		.sc = how & 0xffff,
		.want_open = how & SWEEP_WANT_OPEN,
		.any_bit = how & SWEEP_ANY_BIT,
		.delete_only = how & SWEEP_DELETE_ONLY,
		.seed = how & SWEEP_SEED,
		.heir = how >> 32,
	};

	if (!c.delete_only)
		c.p = find_proc(tgid);
	sweep_fd(0, &c);
	return c.n;
}
#endif

#ifdef FDTRACE_COMPAT
/*
 * The fds of one bitmap word a sweep goes through, from fd from to the
 * word's end or end (not included): only those whose bit it wants cost a
 * call.
 */
__noinline __u64 compat_sweep_word(__u32 tgid, __u32 from, __u32 end,
				   unsigned long bits, __u64 how)
{
	__u32 w = from / 64;
	unsigned long mask = word_mask(w, from, end);
	__u64 swept = 0;

	if (!(how & SWEEP_ANY_BIT)) {
		unsigned long word = bitmap_word((unsigned long *)bits, w);

		mask &= how & SWEEP_WANT_OPEN ? word : ~word;
	}
	for (__u32 b = 0; b < 64; b++) {
		if (mask & (1UL << b))
			swept += compat_sweep_fd(tgid, w * 64 + b, bits, how);
	}
	return swept;
}

/* The compat programs' sweep of n fds from first (see compat_words). */
__noinline __u64 compat_sweep(__u32 tgid, __u32 first, __u32 n,
			      unsigned long bits, __u64 how)
{
	__u32 end = first + n, w0 = first / 64;
	__u64 swept = 0, words = compat_words(first, &end);

	for (__u64 i = 0; i < COMPAT_SWEEP_WORDS; i++) {
		if (i >= words)
			break;
		swept += compat_sweep_word(tgid, i ? (w0 + i) * 64 : first, end,
					   bits, how);
	}
	return swept;
}
#endif

/* Sweep n fds of a table from c->first. */
static __always_inline void sweep(__u32 n, struct sweep_ctx *c)
{
#ifdef FDTRACE_COMPAT
	__u64 how = c->sc | (c->want_open ? SWEEP_WANT_OPEN : 0) |
		    (c->any_bit ? SWEEP_ANY_BIT : 0) |
		    (c->delete_only ? SWEEP_DELETE_ONLY : 0) |
		    (c->seed ? SWEEP_SEED : 0) | (__u64)c->heir << 32;

	c->n += compat_sweep(c->tgid, c->first, n, (unsigned long)c->bits, how);
#else
	bpf_loop(n, sweep_fd, c, 0);
#endif
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
	if (!gen_live(copy.gen))
		return 0;
	/* A gen of its own: the child's number differs its bits. */
	copy.gen ^= (__u64)c->child << 24;
	/* The child counts it as a record, not from its table. */
	copy.flags = (copy.flags | FDF_INHERITED) & ~FDF_TABLE_COUNTED;
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
/* The records of word w's open fds below n copied. */
__noinline __u64 compat_copy_word(__u32 parent, __u32 child, __u32 w, __u32 n,
				  unsigned long bits)
{
	unsigned long mask = bitmap_word((unsigned long *)bits, w) &
			     word_mask(w, 0, n);
	__u64 copied = 0;

	for (__u32 b = 0; b < 64; b++) {
		if (mask & (1UL << b))
			copied +=
				compat_copy_fd(parent, child, w * 64 + b, bits);
	}
	return copied;
}

/* The compat programs' copy of n fds' records (see compat_words). */
__noinline __u64 compat_copy_fds(__u32 parent, __u32 child, __u32 n,
				 unsigned long bits)
{
	__u64 copied = 0, words = compat_words(0, &n);

	for (__u64 i = 0; i < COMPAT_SWEEP_WORDS; i++) {
		if (i >= words)
			break;
		copied += compat_copy_word(parent, child, i, n, bits);
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

#endif /* FDTRACE_ACCOUNT_BPF_H */
