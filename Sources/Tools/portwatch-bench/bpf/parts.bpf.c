// SPDX-License-Identifier: GPL-2.0
/* portwatch's bind path taken apart, for `make bench` (PORTWATCH_BENCH_ONLY=parts).
 *
 * part_post_bind4 does the first `stage` parts of what pw_post_bind4 does when a socket binds,
 * with the same helpers and maps (this file includes portwatch.bpf.c; its own programs are
 * loaded with it but not attached), so that kernel.bpf_stats times each part as the difference
 * between two stages:
 *   0  the program's dispatch and the protocol check (and the stats' own clock reads)
 *   1  + the socket's cookie (whether it had one, a checked read; then bpf_get_socket_cookie: made
 *      on first use)
 *   2  + the socket's network namespace (two checked reads)
 *   3  + the owner: pid, uid, cgroup (helpers) and the process's name
 *   4  + the entry in `bindings` (part_sock_release deletes it again when the socket goes)
 *   5  + a ring buffer record, reserved, filled and submitted without a wakeup
 *   6  + its timestamp (bpf_ktime_get_ns; bpf_ktime_get_coarse_ns with coarse_time)
 *   7  + the wakeup decision of submit_record: pw_post_bind4's whole work */
#include "portwatch.bpf.c"

const volatile __u32 stage = 0;
const volatile __u32 coarse_time = 0;
const volatile __u32 socket_storage = 0;

/* Stage 4 with socket storage instead of `bindings`: the entry lives with the socket (no
 * bucket to reach) and goes when the socket is freed. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pw_binding);
} part_storage SEC(".maps");

SEC("cgroup/post_bind4")
int part_post_bind4(struct bpf_sock *sk)
{
	struct pw_binding b = {};
	__u32 none[4] = {};
	__u32 protocol = sk->protocol;
	__u64 cookie = 0;
	struct pw_event *e;

	if (!is_inet_transport(protocol))
		return 1;
	int seen = 0;

	if (stage >= 1) {
		seen = sock_cookie(sk, 0) != 0;
		cookie = bpf_get_socket_cookie(sk);
	}
	fill_binding(&b, stage >= 2 ? sock_netns(sk) : 0, protocol, AF_INET, sk->src_ip4, none, sk->src_port,
		     PW_STATE_BOUND);
	if (stage >= 3)
		fill_owner_current(&b);
	if (stage >= 4 && socket_storage) {
		struct pw_binding *s = bpf_sk_storage_get(&part_storage, sk, &b, BPF_SK_STORAGE_GET_F_CREATE);

		if (!s)
			count(&map_full);
	} else if (stage >= 4) {
		keep_binding(cookie, &b, seen);
	}
	if (stage < 5)
		return 1;
	e = reserve_record(cookie, PW_EVENT_OPEN, 0, &b);
	if (!e)
		return 1;
	if (stage >= 6)
		e->ts_ns = coarse_time ? bpf_ktime_get_coarse_ns() : bpf_ktime_get_ns();
	if (stage >= 7)
		submit_record(e);
	else
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 1;
}

/* Deletes what stage 4 and later put in `bindings`, as pw_sock_release does (without its
 * record), so that the map holds only the sockets alive. */
SEC("cgroup/sock_release")
int part_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_cookie.counter);

	if (socket_storage) {
		struct pw_binding *s = bpf_sk_storage_get(&part_storage, sk, 0, 0);

		if (s)
			s->flags = 1;
		return 1;
	}
	if (cookie && find_binding(cookie))
		forget_binding(cookie);
	return 1;
}

/* The floor under the per-connection cost: programs that return at once on the hooks a TCP
 * connection that binds nothing passes (its state changes, both ends' release, the connect),
 * so that kernel.bpf_stats gives what the hooks cost before any work of ours. */
SEC("tp_btf/inet_sock_set_state")
int floor_tcp_state(__u64 *ctx)
{
	return 0;
}

SEC("cgroup/sock_release")
int floor_sock_release(struct bpf_sock *sk)
{
	return 1;
}

SEC("cgroup/connect4")
int floor_connect4(struct bpf_sock_addr *ctx)
{
	return 1;
}

/* A design not taken, measured against portwatch's own programs on the same loop: the open
 * deferred. A bind reports nothing at once: its socket's entry is kept as now, and its bind
 * time in `pending`. A listen while pending changes the entry only. The release of a pending
 * socket (a transient) reports it once, opened and closed in one record; the release of any
 * other reports its close as now. User space would claim what stays pending past the window
 * (a delete from `pending`, which the release's delete races: one of them wins) and report
 * those opens itself. Checked reads, as pw_post_bind4 and pw_sock_release (not their `_k`
 * forms), so that both run the same reads. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} pending SEC(".maps");

SEC("cgroup/post_bind4")
int deferred_post_bind4(struct bpf_sock *sk)
{
	struct pw_binding b = {};
	__u32 none[4] = {};
	__u32 protocol = sk->protocol;

	if (!is_inet_transport(protocol))
		return 1;
	struct sock_facts f = bound_sock_facts(sk, 0);
	__u64 cookie = bpf_get_socket_cookie(sk);
	__u64 now = bpf_ktime_get_ns();

	fill_binding(&b, f.netns, protocol, AF_INET, sk->src_ip4, none, sk->src_port, PW_STATE_BOUND);
	fill_owner_current(&b);
	keep_binding(cookie, &b, f.seen_before);
	/* No room to wait in: reported at once, as now. */
	if (bpf_map_update_elem(&pending, &cookie, &now, BPF_ANY))
		emit(cookie, PW_EVENT_OPEN, 0, &b);
	return 1;
}

SEC("tp_btf/inet_sock_set_state")
int deferred_tcp_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int newstate = (int)ctx[2];
	struct pw_binding *b;
	__u64 cookie;

	if (newstate != TCP_SYN_SENT && newstate != TCP_CLOSE && newstate != TCP_LISTEN)
		return 0;
	cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return 0;
	b = find_binding(cookie);
	if (!b || b->protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_LISTEN) {
		b->state = PW_STATE_LISTEN;
		b->flags = 0;
		refresh_owner(b);
		if (!bpf_map_lookup_elem(&pending, &cookie))
			emit(cookie, PW_EVENT_OPEN, 0, b);
		return 0;
	}
	if (b->flags & PW_FLAG_RELEASED)
		forget_binding(cookie);
	return 0;
}

SEC("cgroup/sock_release")
int deferred_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = sock_cookie(sk, 0);
	struct pw_binding *b;
	__u64 *opened;

	if (!cookie)
		return 1;
	b = find_binding(cookie);
	if (!b)
		return 1;
	opened = bpf_map_lookup_elem(&pending, &cookie);
	if (opened && !bpf_map_delete_elem(&pending, &cookie)) {
		/* A transient: one record. It carries the bind time (the real record would have a
		 * field for it; here it takes the cgroup's place: the same store). */
		struct pw_event *e = reserve_record(cookie, PW_EVENT_CLOSE, PW_REASON_RELEASED, b);

		if (e) {
			e->ts_ns = bpf_ktime_get_ns();
			e->binding.cgroup = *opened;
			submit_record(e);
		}
	} else if (!(b->flags & PW_FLAG_CONNECTED)) {
		emit(cookie, PW_EVENT_CLOSE, PW_REASON_RELEASED, b);
	}
	if (sk->protocol == IPPROTO_TCP && sk->state == TCP_LISTEN) {
		b->flags |= PW_FLAG_RELEASED;
		return 1;
	}
	forget_binding(cookie);
	return 1;
}
