#ifndef PORTWATCH_CBPF_SHIM_H
#define PORTWATCH_CBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <sched.h>
#include "../../../bpf/portwatch.h"

/* libbpf hands its log lines over as a va_list; Swift receives them formatted. */
typedef void (*pw_log_sink)(int level, const char *line);
static inline pw_log_sink *pw_sink_slot(void)
{
	static pw_log_sink sink;
	return &sink;
}

static int pw_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[32768];
	pw_log_sink sink = *pw_sink_slot();
	if (!sink)
		return 0;
	vsnprintf(line, sizeof(line), fmt, args);
	sink((int)level, line);
	return 0;
}

static inline void pw_set_libbpf_log_sink(pw_log_sink sink)
{
	*pw_sink_slot() = sink;
	libbpf_set_print(pw_libbpf_print);
}

/* LIBBPF_OPTS is a macro; open an object from memory with a name. */
static inline struct bpf_object *pw_open_object(const void *data, size_t size, const char *name)
{
	struct bpf_object_open_opts opts = { .sz = sizeof(opts), .object_name = name };
	return bpf_object__open_mem(data, size, &opts);
}

static inline int pw_errno(void) { return errno; }

/* The global `var` (of `size` bytes) in the object's .rodata: its map and offset there, from
 * the object's BTF. Returns the offset or -errno. */
#include <bpf/btf.h>
#include <string.h>
static inline long pw_rodata_var(struct bpf_object *obj, const char *var, size_t size, struct bpf_map **found)
{
	struct btf *btf = bpf_object__btf(obj);
	struct bpf_map *map;
	int id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -ENOENT;
	if (id < 0)
		return -ENOENT;
	const struct btf_type *sec = btf__type_by_id(btf, id);
	const struct btf_var_secinfo *info = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, info++) {
		const struct btf_type *v = btf__type_by_id(btf, info->type);
		if (strcmp(btf__name_by_offset(btf, v->name_off), var) != 0)
			continue;
		if (info->size != size)
			return -EINVAL;
		bpf_object__for_each_map(map, obj) {
			const char *name = bpf_map__name(map);
			size_t n = strlen(name);
			if (n >= 7 && strcmp(name + n - 7, ".rodata") == 0) {
				*found = map;
				return info->offset;
			}
		}
	}
	return -ENOENT;
}

/* Before load: writes the global, as a generated skeleton does (libbpf copies the image into
 * the kernel's map at load). Returns 0 or -errno. */
static inline int pw_set_rodata(struct bpf_object *obj, const char *var, const void *value, size_t size)
{
	struct bpf_map *map = NULL;
	size_t total = 0;
	long offset = pw_rodata_var(obj, var, size, &map);
	if (offset < 0)
		return (int)offset;
	char *data = (char *)bpf_map__initial_value(map, &total);
	if (!data || offset + size > total)
		return -EINVAL;
	memcpy(data + offset, value, size);
	return 0;
}

/* After load: reads the global back from the kernel's map. Returns 0 or -errno. */
static inline int pw_get_rodata(struct bpf_object *obj, const char *var, void *value, size_t size)
{
	struct bpf_map *map = NULL;
	long offset = pw_rodata_var(obj, var, size, &map);
	if (offset < 0)
		return (int)offset;
	size_t total = bpf_map__value_size(map);
	char buf[4096];
	int zero = 0;
	if (offset + size > total || total > sizeof(buf))
		return -EINVAL;
	if (bpf_map_lookup_elem(bpf_map__fd(map), &zero, buf) != 0)
		return -errno;
	memcpy(value, buf + offset, size);
	return 0;
}

/* Keeps only the capabilities in `keep` (a bit mask of CAP_* numbers): drops the rest from
 * the bounding set, then from the effective, permitted and inheritable sets of the calling
 * thread (threads started afterwards inherit them). Returns 0 or -errno. */
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
static inline int pw_drop_bounding(unsigned long long keep)
{
	for (int cap = 0; cap <= 63; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
			return -errno;
	}
	return 0;
}

static inline int pw_set_capabilities(unsigned long long keep)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &header, data) != 0)
		return -errno;
	for (int i = 0; i < 2; i++) {
		unsigned int mask = (unsigned int)(keep >> (32 * i));
		data[i].permitted &= mask;
		data[i].effective = data[i].permitted;
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &header, data) != 0)
		return -errno;
	return 0;
}

/* Whether CAP_SETPCAP is effective: without it the bounding set cannot shrink. */
static inline int pw_has_setpcap(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &header, data) != 0)
		return 0;
	return (data[0].effective >> 8) & 1; /* CAP_SETPCAP */
}

/* Keeps only `keep` in the effective and permitted sets, and in the bounding set too when
 * CAP_SETPCAP allows it (root does; a non-root process holding file capabilities does not,
 * and its bounding set is the container runtime's to limit). */
static inline int pw_keep_capabilities(unsigned long long keep)
{
	int rc = pw_has_setpcap() ? pw_drop_bounding(keep) : 0;
	return rc ? rc : pw_set_capabilities(keep);
}

/* Becomes uid/gid (no supplementary groups) keeping the capabilities in `keep`: the kernel
 * clears the effective set on the switch, so they are raised again afterwards. Returns 0 or -errno. */
#include <grp.h>
int setresuid(uid_t ruid, uid_t euid, uid_t suid);
int setresgid(gid_t rgid, gid_t egid, gid_t sgid);
static inline int pw_switch_user(unsigned int uid, unsigned int gid, unsigned long long keep)
{
	/* The bounding set can only shrink while CAP_SETPCAP is still effective. */
	int rc = pw_drop_bounding(keep);
	if (rc)
		return rc;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
		return -errno;
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
		return -errno;
	return pw_set_capabilities(keep);
}

/* Opens a cgroup v2 directory by its id (the kernfs node id BPF records, which is the
 * directory's inode): a kernfs file handle on the hierarchy's mount. Needs
 * CAP_DAC_READ_SEARCH. Returns the fd or -1 with errno (ESTALE: the cgroup is gone). */
#include <fcntl.h>
struct pw_cgroup_handle {
	unsigned int handle_bytes;
	int handle_type;
	unsigned long long id;
};
static inline int pw_open_cgroup_by_id(int mount_fd, unsigned long long id)
{
	struct pw_cgroup_handle handle = { .handle_bytes = 8, .handle_type = 0xfe /* FILEID_KERNFS */, .id = id };
	return (int)syscall(SYS_open_by_handle_at, mount_fd, &handle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* setns(2) needs _GNU_SOURCE, which Swift's Glibc import does not set. */
int setns(int fd, int nstype);
static inline int pw_enter_netns(int fd) { return setns(fd, 0x40000000 /* CLONE_NEWNET */); }
#endif
