// SPDX-License-Identifier: GPL-2.0
/* portwatch kernel side: report every port a socket takes as a listener, and when it
 * stops being one.
 *
 * A socket holds a port as a listener while it is a TCP socket in LISTEN, a TCP socket
 * bound and neither listening nor connected, or a UDP socket bound and not connected.
 *
 * Hooks (all stable ABI; kprobes and fentry are not available on the target kernels):
 *   cgroup/post_bind4, cgroup/post_bind6  explicit bind() of TCP/UDP, port already resolved
 *   cgroup/connect4, cgroup/connect6      a bound UDP socket connects: a client now
 *   cgroup/sendmsg4, cgroup/sendmsg6      an unbound UDP socket sends without connecting: the
 *                                         kernel gave it a port it now receives on
 *   tp_btf/inet_sock_set_state            a bound TCP socket listens (LISTEN; one never bound
 *                                         is found by user space, see below) or connects
 *                                         (SYN_SENT), a listener is shut down, a connection of
 *                                         a socket that keeps its port ends (CLOSE)
 *   cgroup/sock_release                   the last reference to a socket goes away
 *   tp_btf/sched_process_exit, _exec      an owner of a held port exits or execs: user space
 *                                         names the process that holds the socket now
 * The cgroup programs are attached to the cgroup v2 root, so they see every socket.
 *
 * A bound socket is remembered by its cookie in `bindings` (or `bindings_spill`), because
 * sock_release cannot read the port from its context. User space seeds the spill map from a
 * sock_diag snapshot (same cookies), so sockets older than the daemon are reported when
 * released too.
 *
 * No program runs per connection beyond a state change's few reads: a socket that listens
 * without binding gets its port from the kernel after its LISTEN state change, so that change
 * reports the socket's inode and user space finds the port with sock_diag (and seeds the map)
 * instead of a sockops program that every TCP connection's callbacks would run. */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "portwatch.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized by user space before load */
} events SEC(".maps");

/* Bound sockets in two maps. Reaching an entry costs one bucket of the map's bucket array,
 * and the array is as large as the map's capacity: a random bucket of a map sized for 2^18
 * sockets (4 MB) is a cache and TLB miss on every bind, about 160 ns of a bind's 650 here,
 * where a map of 4,096 entries (64 KB of buckets) stays in cache. So a socket's entry goes to
 * `bindings`, the small map, and only when that is full to `bindings_spill`, sized for the
 * busiest hosts; a lookup tries the small one first. User space seeds sockets older than the
 * daemon into the spill map, so that the small one is left to the sockets that come and go.
 * A cookie is in one of the two, never both (see keep_binding).
 *
 * Entries are allocated when a socket binds and freed when it is released, not
 * preallocated: 2^18 preallocated entries pinned 36 MB of kernel memory, charged to the
 * daemon's memory cgroup, on every host however few ports it has (now the bucket arrays,
 * 4 MB and 64 KB, plus about 128 bytes per bound socket). The bind+listen+close loop measured
 * no difference. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12); /* set by user space before load */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct pw_binding);
} bindings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct pw_binding);
} bindings_spill SEC(".maps");

/* Processes user space names as owners of held ports (pid -> 1): their exit or exec is
 * reported, so that the row can name whoever holds the socket now. Written by user space
 * only; not preallocated either (5 MB preallocated, 1 MB now). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
} owners SEC(".maps");

/* Written by user space after load: see struct pw_settings. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pw_settings);
} settings SEC(".maps");

/* Events dropped because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Bound sockets neither map could hold (full, or no memory for the entry): their release
 * would go unreported. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} map_full SEC(".maps");

/* Producer position at the last forced wakeup, shared by all CPUs: a racing update can only
 * cost one wakeup more. */
__u64 last_wakeup_pos = 0;

static __always_inline void count(void *counter)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(counter, &zero);

	if (n)
		*n += 1;
}

/* Fixed by user space before load (.rodata, so the verifier sees constants and drops the
 * branch not taken): see struct pw_load_config. */
const volatile struct pw_load_config load_config = {};

/* Owner fields are read from the current task. Where the kernel hands these programs the
 * task as a BTF pointer (load_config.task_btf), a field is a plain load, which the JIT
 * protects; otherwise each pointer followed is a checked bpf_probe_read_kernel call, about
 * 30 ns each here, ten of them per bind+listen+close. Each reader below has both forms. */

/* The process's name (its main thread's), as ps shows it, not the calling thread's. */
static __always_inline void fill_comm(struct pw_binding *b)
{
	if (load_config.task_btf) {
		struct task_struct *task = bpf_get_current_task_btf();

		__builtin_memcpy(b->comm, task->group_leader->comm, sizeof(b->comm));
		return;
	}
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	BPF_CORE_READ_INTO(&b->comm, task, group_leader, comm);
}

static __always_inline __u32 current_tgid(void)
{
	if (load_config.task_btf)
		return bpf_get_current_task_btf()->tgid;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), tgid);
}

static __always_inline __u32 current_uid(void)
{
	if (load_config.task_btf)
		return bpf_get_current_task_btf()->cred->uid.val;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), cred, uid.val);
}

/* The cgroup v2 id, as bpf_get_current_cgroup_id gives it: user space resolves it to unit,
 * container and pod. */
static __always_inline __u64 current_cgroup(void)
{
	if (load_config.task_btf)
		return bpf_get_current_task_btf()->cgroups->dfl_cgrp->kn->id;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), cgroups, dfl_cgrp, kn, id);
}

/* Who holds the socket, read from the task. */
static __always_inline void fill_owner(struct pw_binding *b)
{
	b->pid = current_tgid();
	b->uid = current_uid();
	b->cgroup = current_cgroup();
	fill_comm(b);
}

/* Who listens on a socket bound before: the process that bound it usually, maybe with fewer
 * privileges or after an exec (uid and name read again), or another it was handed to (all
 * read again). The same process keeps its cgroup. An entry user space seeded from a
 * snapshot has no cgroup (0, never a cgroup's id): all read. */
static __always_inline void refresh_owner(struct pw_binding *b)
{
	if (current_tgid() != b->pid || !b->cgroup) {
		fill_owner(b);
		return;
	}
	b->uid = current_uid();
	fill_comm(b);
}

/* The ids from the helpers the cgroup socket and address programs have (since 5.7). */
static __always_inline void fill_owner_current(struct pw_binding *b)
{
	b->pid = bpf_get_current_pid_tgid() >> 32;
	b->uid = (__u32)bpf_get_current_uid_gid();
	b->cgroup = bpf_get_current_cgroup_id();
	fill_comm(b);
}

/* The network namespace of the socket itself: a task may create a socket, setns() into
 * another namespace and bind there, and the socket stays in the namespace it was made in.
 * `sk` is the kernel's struct sock, which is what a cgroup sock program's context points to:
 * read with checked reads (see bpf_cast_to_kern_ctx below for the plain loads). */
static __always_inline __u32 sock_netns(const void *sk)
{
	return BPF_CORE_READ((struct sock *)sk, __sk_common.skc_net.net, ns.inum);
}

/* The kernel's object behind a cgroup program's context, as a BTF pointer: its fields are
 * plain loads, not a checked read (a helper call) each. Linux 6.2 and later; the verifier
 * turns the call into a register move. The cgroup programs that read the socket come in two
 * forms: the `_k` ones cast, the others read through checked reads (5.10, 6.1), and user
 * space loads one set. Weak: a kernel without it loads the other set. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* Both forms of a cgroup program that reads the socket behind its context: `name` with checked
 * reads, `name`_k with plain loads through bpf_cast_to_kern_ctx (see there). */
#define SOCKET_READER(section, name, ctx_type, body)		\
	SEC(section) int name(ctx_type *ctx) { return body(ctx, 0); }	\
	SEC(section) int name##_k(ctx_type *ctx) { return body(ctx, 1); }

/* The socket's cookie if it has one, 0 if none was ever taken (none is made here): the value
 * bpf_get_socket_cookie returns once made. */
static __always_inline __u64 sock_cookie(struct bpf_sock *ctx, const int cast)
{
	if (cast)
		return ((struct sock *)bpf_cast_to_kern_ctx(ctx))->__sk_common.skc_cookie.counter;
	return BPF_CORE_READ((struct sock *)ctx, __sk_common.skc_cookie.counter);
}

/* What a bind needs to know of the socket besides its context: whether it had a cookie
 * before this program asked for one (only such a socket can have an entry already; the value
 * is the one bpf_get_socket_cookie returns once made), and its network namespace. */
struct sock_facts {
	int seen_before;
	__u32 netns;
};

static __always_inline struct sock_facts bound_sock_facts(struct bpf_sock *ctx, const int cast)
{
	struct sock_facts f;

	f.seen_before = sock_cookie(ctx, cast) != 0;
	if (cast)
		f.netns = ((struct sock *)bpf_cast_to_kern_ctx(ctx))->__sk_common.skc_net.net->ns.inum;
	else
		f.netns = sock_netns(ctx);
	return f;
}

/* The entry of the socket with `cookie`, in whichever map holds it (0: none). */
static __always_inline struct pw_binding *find_binding(__u64 cookie)
{
	struct pw_binding *b = bpf_map_lookup_elem(&bindings, &cookie);

	return b ? b : bpf_map_lookup_elem(&bindings_spill, &cookie);
}

/* Removes the socket's entry from whichever map holds it. */
static __always_inline void forget_binding(__u64 cookie)
{
	if (bpf_map_delete_elem(&bindings, &cookie))
		bpf_map_delete_elem(&bindings_spill, &cookie);
}

/* Stores a bound socket's entry: in the small map, or in the spill map when the small one is
 * full. A socket seen before this bind (its cookie taken already: seeded by user space, or
 * bound, connected and disconnected, which frees an automatic port) may have its entry in the
 * spill map: it is changed there, so that a cookie is never in both. Counted when neither map
 * takes it. */
static __always_inline void keep_binding(__u64 cookie, const struct pw_binding *b, int seen_before)
{
	if (seen_before && !bpf_map_update_elem(&bindings_spill, &cookie, b, BPF_EXIST))
		return;
	if (!bpf_map_update_elem(&bindings, &cookie, b, BPF_ANY))
		return;
	if (bpf_map_update_elem(&bindings_spill, &cookie, b, BPF_ANY))
		count(&map_full);
}

/* A record of `kind` for the socket, not yet timed or submitted (0 when the ring is full:
 * counted as lost). */
static __always_inline struct pw_event *reserve_record(__u64 cookie, __u32 kind, __u32 reason, const struct pw_binding *b)
{
	struct pw_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(&lost);
		return 0;
	}
	e->cookie = cookie;
	e->kind = kind;
	e->reason = reason;
	__builtin_memcpy(&e->binding, b, sizeof(*b));
	e->binding.flags = 0;
	return e;
}

/* Submits a record, waking the consumer as struct pw_settings says. */
static __always_inline void submit_record(struct pw_event *e)
{
	__u32 zero = 0;
	struct pw_settings *cfg = bpf_map_lookup_elem(&settings, &zero);
	__u64 flags = 0;

	/* Without batching (no window, or a consumer asleep on a quiet host) the kernel's own
	 * rule applies: a record wakes the consumer when it has read everything before it. */
	if (cfg && cfg->wakeup_bytes && !cfg->consumer_idle) {
		/* Batch wakeups: the consumer also polls on a short timeout, and returns from a
		 * poll at once while data waits. Once the waiting data passes the threshold, the
		 * consumer is woken once per threshold's worth of records, not by every record
		 * until it runs: each wakeup raises an interrupt (a VM exit in a guest). */
		flags = BPF_RB_NO_WAKEUP;
		if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg->wakeup_bytes) {
			__u64 pos = bpf_ringbuf_query(&events, BPF_RB_PROD_POS);

			if (pos - last_wakeup_pos >= cfg->wakeup_bytes) {
				last_wakeup_pos = pos;
				flags = BPF_RB_FORCE_WAKEUP;
			}
		}
	}
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void emit(__u64 cookie, __u32 kind, __u32 reason, const struct pw_binding *b)
{
	struct pw_event *e = reserve_record(cookie, kind, reason, b);

	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	submit_record(e);
}

/* The socket's entry as a bind makes it: address, port, namespace and owner. */
static __always_inline void fill_binding(struct pw_binding *b, __u32 netns, __u8 protocol, __u8 family, __u32 ip4,
					 const __u32 *ip6, __u16 port, __u8 state)
{
	b->netns = netns;
	b->protocol = protocol;
	b->family = family;
	b->port = port;
	b->state = state;
	if (family == AF_INET) {
		__builtin_memcpy(b->addr, &ip4, 4);
	} else {
		__u32 w[4] = { ip6[0], ip6[1], ip6[2], ip6[3] };

		__builtin_memcpy(b->addr, w, 16);
	}
}

static __always_inline int record_open(__u64 cookie, int seen_before, __u32 netns, __u8 protocol, __u8 family,
				       __u32 ip4, const __u32 *ip6, __u16 port, __u8 state, int helpers)
{
	struct pw_binding b = {};

	fill_binding(&b, netns, protocol, family, ip4, ip6, port, state);
	if (helpers)
		fill_owner_current(&b);
	else
		fill_owner(&b);
	keep_binding(cookie, &b, seen_before);
	emit(cookie, PW_EVENT_OPEN, 0, &b);
	return 1;
}

static __always_inline int is_inet_transport(__u32 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP;
}

/* post_bind4 may not read src_ip6 and post_bind6 may not read src_ip4: one body each. The
 * socket's facts are read before bpf_get_socket_cookie makes its cookie. */
static __always_inline int post_bind4(struct bpf_sock *sk, const int cast)
{
	__u32 protocol = sk->protocol;
	__u32 none[4] = {};

	if (!is_inet_transport(protocol))
		return 1;
	struct sock_facts f = bound_sock_facts(sk, cast);

	return record_open(bpf_get_socket_cookie(sk), f.seen_before, f.netns, protocol, AF_INET, sk->src_ip4, none,
			   sk->src_port, PW_STATE_BOUND, 1);
}

static __always_inline int post_bind6(struct bpf_sock *sk, const int cast)
{
	__u32 protocol = sk->protocol;
	__u32 ip6[4];

	if (!is_inet_transport(protocol))
		return 1;
	ip6[0] = sk->src_ip6[0];
	ip6[1] = sk->src_ip6[1];
	ip6[2] = sk->src_ip6[2];
	ip6[3] = sk->src_ip6[3];
	struct sock_facts f = bound_sock_facts(sk, cast);

	return record_open(bpf_get_socket_cookie(sk), f.seen_before, f.netns, protocol, AF_INET6, 0, ip6, sk->src_port,
			   PW_STATE_BOUND, 1);
}

SOCKET_READER("cgroup/post_bind4", pw_post_bind4, struct bpf_sock, post_bind4)
SOCKET_READER("cgroup/post_bind6", pw_post_bind6, struct bpf_sock, post_bind6)

/* A bound UDP socket that connects is a client from now on: it leaves the table, and its
 * release reports nothing more. (connect(AF_UNSPEC) does not pass this hook: a socket that
 * disconnects and keeps its port is found again by the next resync.) TCP is handled by
 * pw_tcp_state, which also sees a connect that fails. */
static __always_inline int on_connect(struct bpf_sock_addr *ctx)
{
	__u64 cookie;
	struct pw_binding *b;

	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	b = find_binding(cookie);
	if (!b || (b->flags & PW_FLAG_CONNECTED))
		return 1;
	b->flags |= PW_FLAG_CONNECTED;
	emit(cookie, PW_EVENT_CLOSE, PW_REASON_CONNECTED, b);
	return 1;
}

SEC("cgroup/connect4")
int pw_connect4(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx);
}

SEC("cgroup/connect6")
int pw_connect6(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx);
}

/* sendto() on a UDP socket that was never bound gives it a port (autobind) before this hook
 * runs, and an unconnected UDP socket receives on that port from anyone: it holds the port
 * as much as one that bound it. Runs for every unconnected send: sockets already known
 * return after one lookup. */
static __always_inline int on_sendmsg(struct bpf_sock_addr *ctx, const int cast)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 none[4] = {};
	__u32 netns;
	__u64 cookie;

	if (!sk || ctx->protocol != IPPROTO_UDP || !sk->src_port)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	if (find_binding(cookie))
		return 1;
	if (cast)
		netns = ((struct bpf_sock_addr_kern *)bpf_cast_to_kern_ctx(ctx))->sk->__sk_common.skc_net.net->ns.inum;
	else
		netns = sock_netns(BPF_CORE_READ((struct bpf_sock_addr_kern *)ctx, sk));
	/* Never bound: the local address is the wildcard of the socket's own family. In neither
	 * map, as just looked up. */
	return record_open(cookie, 0, netns, IPPROTO_UDP, sk->family == AF_INET6 ? AF_INET6 : AF_INET, 0, none,
			   sk->src_port, PW_STATE_BOUND, 1);
}

SOCKET_READER("cgroup/sendmsg4", pw_sendmsg4, struct bpf_sock_addr, on_sendmsg)
SOCKET_READER("cgroup/sendmsg6", pw_sendmsg6, struct bpf_sock_addr, on_sendmsg)

/* TCP state changes of sockets with an entry (runs before the kernel acts on the change, so
 * the port lock still says whether the port outlives it):
 *   -> LISTEN            a socket listens: bound before, its entry changes in place; never
 *                        bound, it has no port yet: user space looks it up by its inode;
 *   -> SYN_SENT          a bound socket connects: a client now;
 *   LISTEN -> CLOSE      a listener shut down, or closed: its release came first, reported the
 *                        close and left the entry for this change to forget;
 *   client -> CLOSE      its connection failed or ended while the socket stays open.
 * Into CLOSE, a socket bound to an explicit port keeps it (a bound socket again); any other
 * gives its port back. Runs for every TCP state change: sockets whose cookie was never
 * taken (none of ours) return after one read. */
/* listen(): a socket bound before (the common case) keeps its address, port and namespace, so
 * its entry is changed where it is. The owner is read again: a server may bind, then drop
 * privileges or hand the socket over. A socket never bound (or bound before the programs and
 * not seeded) has no entry, and no port yet: its inode goes to user space, which finds it. */
static __always_inline int on_listen(struct sock *sk, __u64 cookie)
{
	struct pw_binding *b = cookie ? find_binding(cookie) : 0;
	struct pw_binding unbound = {};

	if (b) {
		b->state = PW_STATE_LISTEN;
		b->flags = 0;
		refresh_owner(b);
		emit(cookie, PW_EVENT_OPEN, 0, b);
		return 0;
	}
	unbound.netns = sk->__sk_common.skc_net.net->ns.inum;
	unbound.protocol = IPPROTO_TCP;
	unbound.family = sk->__sk_common.skc_family;
	unbound.state = PW_STATE_LISTEN;
	fill_owner_current(&unbound);
	emit(sk->sk_socket->file->f_inode->i_ino, PW_EVENT_LISTEN_UNBOUND, 0, &unbound);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int pw_tcp_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1], newstate = (int)ctx[2];
	struct pw_binding *b;
	__u64 cookie;

	if (newstate != TCP_SYN_SENT && newstate != TCP_CLOSE && newstate != TCP_LISTEN)
		return 0;
	/* A BTF-typed argument: read directly (relocated by CO-RE), no helper call. */
	cookie = sk->__sk_common.skc_cookie.counter;
	if (newstate == TCP_LISTEN)
		return on_listen(sk, cookie);
	if (!cookie)
		return 0;
	b = find_binding(cookie);
	if (!b || b->protocol != IPPROTO_TCP)
		return 0;
	if (b->flags & PW_FLAG_RELEASED) {
		forget_binding(cookie);
		return 0;
	}
	if (newstate == TCP_SYN_SENT) {
		if (!(b->flags & PW_FLAG_CONNECTED)) {
			b->flags |= PW_FLAG_CONNECTED;
			emit(cookie, PW_EVENT_CLOSE, PW_REASON_CONNECTED, b);
		}
		return 0;
	}
	if (oldstate != TCP_LISTEN && !(b->flags & PW_FLAG_CONNECTED))
		return 0;
	if (BPF_CORE_READ_BITFIELD(sk, sk_userlocks) & SOCK_BINDPORT_LOCK) {
		b->flags = 0;
		b->state = PW_STATE_BOUND;
		emit(cookie, PW_EVENT_OPEN, 0, b);
		return 0;
	}
	if (!(b->flags & PW_FLAG_CONNECTED))
		emit(cookie, PW_EVENT_CLOSE, PW_REASON_SHUTDOWN, b);
	forget_binding(cookie);
	return 0;
}

static __always_inline int on_release(struct bpf_sock *sk, const int cast)
{
	struct pw_binding *b;
	__u64 cookie;

	/* Every socket with an entry has its cookie already: taken by our programs when it
	 * bound, or by sock_diag for the snapshot. Most sockets (a connection's two ends) never
	 * had one: no cookie is made for them, and no lookup. The value read is the cookie
	 * bpf_get_socket_cookie would return for a socket that has one. */
	cookie = sock_cookie(sk, cast);
	if (!cookie)
		return 1;
	b = find_binding(cookie);
	if (!b)
		return 1;
	/* A client's port was reported gone when it connected. */
	if (!(b->flags & PW_FLAG_CONNECTED))
		emit(cookie, PW_EVENT_CLOSE, PW_REASON_RELEASED, b);
	/* A listener's LISTEN -> CLOSE change follows in the same close(): it forgets the entry,
	 * found where it is (in cache now), so that its own lookup is not a miss in both maps, the
	 * spill map's bucket a cache miss. Any other socket is forgotten here. */
	if (sk->protocol == IPPROTO_TCP && sk->state == TCP_LISTEN) {
		b->flags |= PW_FLAG_RELEASED;
		return 1;
	}
	forget_binding(cookie);
	return 1;
}

SOCKET_READER("cgroup/sock_release", pw_sock_release, struct bpf_sock, on_release)

/* An owner of a held port leaves or becomes another program: say so, with its pid. */
static __always_inline int owner_changed(struct task_struct *task)
{
	struct pw_binding b = {};
	__u32 tgid = task->tgid;

	/* Threads other than the leader come and go without changing who holds a socket. */
	if (task->pid != tgid || !bpf_map_lookup_elem(&owners, &tgid))
		return 0;
	b.pid = tgid;
	emit(0, PW_EVENT_OWNER, 0, &b);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int pw_owner_exit(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];

	return owner_changed(task);
}

SEC("tp_btf/sched_process_exec")
int pw_owner_exec(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];

	return owner_changed(task);
}
