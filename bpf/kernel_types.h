/* The few kernel types portwatch.bpf.c needs, instead of a generated vmlinux.h.
 * Structs carry preserve_access_index so libbpf relocates every field access
 * against the running kernel's BTF (CO-RE): offsets here are never used as is. */
#ifndef PORTWATCH_KERNEL_TYPES_H
#define PORTWATCH_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* uapi: the context of cgroup sock programs (stable ABI, not relocated). */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port;
	__be16 dst_port;
	__u16 :16;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

/* uapi: the context of cgroup/connect4+6 and cgroup/sendmsg4+6. */
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;
	__u32 user_ip6[4];
	__u32 user_port;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	union {
		struct bpf_sock *sk;
		__u64 :64;
	} __attribute__((aligned(8)));
};

/* include/net/tcp_states.h */
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* include/net/sock.h: bind() to a non-zero port locks it to the socket until close. */
#define SOCK_BINDPORT_LOCK 8

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum {
	BPF_SK_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};

/* Kernel-internal structs: only the fields read, relocated by CO-RE. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct net *net_ns;
} __attribute__((preserve_access_index));

typedef struct {
	unsigned int val;
} kuid_t;

struct cred {
	kuid_t uid;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

typedef struct {
	__s64 counter;
} atomic64_t;

/* skc_net and skc_cookie sit inside struct sock_common at kernel-specific offsets. */
struct sock_common {
	unsigned short skc_family;
	possible_net_t skc_net;
	atomic64_t skc_cookie;
} __attribute__((preserve_access_index));

/* The socket's inode number, as sock_diag reports it (idiag_inode): socket -> file -> inode. */
struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
} __attribute__((preserve_access_index));

/* sk_userlocks is a 4-bit field: read it with BPF_CORE_READ_BITFIELD (a BTF pointer, as the
 * state tracepoint's argument is) or BPF_CORE_READ_BITFIELD_PROBED. */
struct sock {
	struct sock_common __sk_common;
	unsigned char sk_userlocks : 4;
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

/* What sock_addr programs' contexts really point to. */
struct bpf_sock_addr_kern {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	struct css_set *cgroups;
	int pid;
	int tgid;
	struct task_struct *group_leader;
	char comm[16];
	struct cred *cred;
	struct nsproxy *nsproxy;
} __attribute__((preserve_access_index));

#endif
