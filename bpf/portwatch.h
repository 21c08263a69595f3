/* Shared between the kernel side (portwatch.bpf.c) and user space (Swift, via the
 * CBPF module). One definition, so the two sides cannot drift. */
#ifndef PORTWATCH_H
#define PORTWATCH_H

#ifndef __bpf__
#include <linux/types.h> /* __u8 .. __u64; on the BPF side kernel_types.h defines them */
#endif

#define PW_COMM_LEN 16

enum pw_event_kind {
	PW_EVENT_OPEN = 1,  /* a socket took (or changed state on) a port */
	PW_EVENT_CLOSE = 2, /* the socket stopped holding its port as a listener */
	PW_EVENT_OWNER = 3, /* a process recorded as a port's owner exited or exec'd (binding.pid) */
	/* listen() on a socket no program saw bind (listen without bind: the kernel picks the port
	 * after this state change): `cookie` is the socket's inode, the binding has no port; user
	 * space finds the socket by its inode with sock_diag and reports it as an open. */
	PW_EVENT_LISTEN_UNBOUND = 4,
};

enum pw_state {
	PW_STATE_BOUND = 1,  /* bound (UDP, or TCP not yet listening) */
	PW_STATE_LISTEN = 2, /* TCP listening */
};

/* Why a socket stopped holding its port as a listener (PW_EVENT_CLOSE only). */
enum pw_close_reason {
	PW_REASON_RELEASED = 0,  /* the last reference went away (close, exit) */
	PW_REASON_CONNECTED = 1, /* it connected: a client now, it keeps the port as its source */
	PW_REASON_SHUTDOWN = 2,  /* a listener was shut down and its port went back to the kernel */
};

/* pw_binding.flags, kept in the kernel's `bindings` map only. */
#define PW_FLAG_CONNECTED 1 /* a client now: its release and state changes report nothing */
#define PW_FLAG_RELEASED 2  /* a listener released: its LISTEN -> CLOSE change, next, forgets it */

/* The owner and place of a bound socket, remembered by socket cookie in the
 * kernel so that its release can be reported with the same key. */
struct pw_binding {
	__u64 cgroup;   /* cgroup v2 id of the task (its directory's inode), as bpf_get_current_cgroup_id */
	__u8 addr[16];  /* IPv4 in the first 4 bytes, network order */
	__u32 netns;    /* network namespace inode, as /proc/PID/ns/net */
	__u32 pid;      /* thread group id of the task that bound or listened */
	__u32 uid;
	__u16 port;     /* host order */
	__u8 protocol;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;    /* AF_INET or AF_INET6 */
	__u8 state;     /* enum pw_state */
	__u8 flags;     /* PW_FLAG_*, map entries only; 0 in events */
	__u8 _pad[2];
	char comm[PW_COMM_LEN];
};

struct pw_event {
	__u64 cookie;    /* socket cookie, as bpf_get_socket_cookie and sock_diag report it */
	__u64 ts_ns;     /* CLOCK_MONOTONIC time of the event */
	__u32 kind;      /* enum pw_event_kind */
	__u32 reason;    /* enum pw_close_reason, for PW_EVENT_CLOSE */
	struct pw_binding binding;
};

/* Tunables user space writes into the `settings` array map. */
struct pw_settings {
	/* Wake the consumer only once this much data is waiting; 0 wakes it for every
	 * event. The consumer polls on a short timeout, which bounds the added latency. */
	__u32 wakeup_bytes;
	/* Nonzero while the consumer sleeps on a quiet host (it polls about once a second
	 * then): the first record wakes it, whatever wakeup_bytes says. */
	__u32 consumer_idle;
};

/* Fixed before load (the object's .rodata): what the running kernel lets the programs use. */
struct pw_load_config {
	/* Nonzero when cgroup socket programs may call bpf_get_current_task_btf (Linux 6.1 and
	 * later; not 5.10): owner fields are then plain loads. */
	__u32 task_btf;
};

#endif
