#ifndef PORTWATCH_CSYSTEM_SHIM_H
#define PORTWATCH_CSYSTEM_SHIM_H
/* The system calls and kernel headers Swift's Glibc import does not reach (capabilities,
 * file handles, setns need _GNU_SOURCE or kernel UAPI structs). PortwatchSystem wraps each of
 * them with a typed error; nothing else imports this module. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <sched.h>

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
/* Names the calling thread (prctl is variadic: Swift cannot call it). */
static inline int pw_set_thread_name(const char *name)
{
	return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

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
/* glibc's heap (malloc.h is not in Swift's Glibc import): the bytes free inside its arenas,
 * held from the kernel but not in use (mallinfo2's fordblks), and giving their whole pages
 * back (malloc_trim, which walks every arena). */
#include <malloc.h>
static inline size_t pw_heap_free_bytes(void)
{
	return mallinfo2().fordblks;
}

static inline int pw_heap_trim(void)
{
	return malloc_trim(0);
}

#endif
