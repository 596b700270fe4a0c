/* SPDX-License-Identifier: GPL-2.0 */
/* Map idioms, and the counters of what went unrecorded. */
#ifndef FDTRACE_MAPS_BPF_H
#define FDTRACE_MAPS_BPF_H

/* Loss and drift counters, indexed by enum stat_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Add n to entry id of a per-CPU array of counters. */
static __always_inline void percpu_add(void *map, __u32 id, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &id);

	if (v)
		*v += n;
}

static __always_inline void stat_add(__u32 id, __u64 n)
{
	percpu_add(&stats, id, n);
}

/*
 * Insert key unless it is there: 0, -EEXIST when it was, another negative
 * errno when the map is full. In an int on purpose: map updates return a
 * long, but some kernels (Debian's 6.1) hand the int of the map's operation
 * back without sign extension, so an error read as a long is 0xffffffef,
 * never -EEXIST.
 */
static __always_inline int map_insert(void *map, const void *key,
				      const void *val)
{
	return bpf_map_update_elem(map, key, val, BPF_NOEXIST);
}

/*
 * The value of key, inserted as init when missing (another CPU may win the
 * insert: then it is theirs); NULL when the map is full.
 */
static __always_inline void *lookup_or_try_init(void *map, const void *key,
						const void *init)
{
	void *val = bpf_map_lookup_elem(map, key);
	int err;

	if (val)
		return val;
	err = map_insert(map, key, init);
	if (err && err != -EEXIST)
		return NULL;
	return bpf_map_lookup_elem(map, key);
}

#endif /* FDTRACE_MAPS_BPF_H */
