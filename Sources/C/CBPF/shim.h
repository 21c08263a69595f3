#ifndef PORTWATCH_CBPF_SHIM_H
#define PORTWATCH_CBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
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
/* Whether the running kernel's BTF has the function `name` (a kfunc the programs may call):
 * 1, 0, or -errno when the kernel's BTF cannot be read. */
static inline int pw_kernel_has_func(const char *name)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	int id;

	if (!vmlinux)
		return -errno;
	id = btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC);
	btf__free(vmlinux);
	return id > 0;
}

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


/* A consumer of a BPF ring buffer map that maps the ring's data once. The kernel maps the data
 * pages twice in a row, so that a record that runs past the end reads as one piece, and libbpf's
 * consumer maps them twice as well: every page of the ring then counts twice in the process's
 * RSS (2 MiB for the default 1 MiB ring, 32 MiB for a 16 MiB one). Here a record that runs past
 * the end is put together in `wrapped`. The protocol is libbpf's (ringbuf_process_ring): the
 * producer's position and each record's length word are read with acquire, the consumer's
 * position written with release once a record is handed over. */
#include <sys/mman.h>
#include <unistd.h>
#include <linux/bpf.h>

typedef void (*pw_ring_sample_fn)(void *ctx, void *data, size_t size);

struct pw_ring {
	unsigned long *consumer_pos; /* the first page, the one the consumer may write */
	unsigned long *producer_pos; /* the next page, read-only, followed by the data */
	unsigned char *data;
	size_t size; /* of the data: a power of two, a multiple of the page size */
	size_t page;
	pw_ring_sample_fn sample;
	void *ctx;
	/* A record that runs past the end of the data, put together (records larger than this,
	 * which the programs never make, are handed over as NULL). */
	_Alignas(8) unsigned char wrapped[256];
};

/* Maps the ring of the map `fd`, whose data is `size` bytes. Returns 0 or -errno. */
static inline int pw_ring_open(struct pw_ring *r, int fd, size_t size, pw_ring_sample_fn sample, void *ctx)
{
	long page = sysconf(_SC_PAGESIZE);
	void *consumer, *producer;

	if (page <= 0 || size < (size_t)page || (size & (size - 1)))
		return -EINVAL;
	consumer = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (consumer == MAP_FAILED)
		return -errno;
	producer = mmap(NULL, (size_t)page + size, PROT_READ, MAP_SHARED, fd, page);
	if (producer == MAP_FAILED) {
		int err = -errno;

		munmap(consumer, (size_t)page);
		return err;
	}
	r->consumer_pos = consumer;
	r->producer_pos = producer;
	r->data = (unsigned char *)producer + page;
	r->size = size;
	r->page = (size_t)page;
	r->sample = sample;
	r->ctx = ctx;
	return 0;
}

static inline void pw_ring_close(struct pw_ring *r)
{
	if (r->consumer_pos)
		munmap(r->consumer_pos, r->page);
	if (r->producer_pos)
		munmap(r->producer_pos, r->page + r->size);
	r->consumer_pos = NULL;
	r->producer_pos = NULL;
}

/* Hands every committed record over, in order, until one is still being written or none is
 * left. Returns the number of records handed over. */
static inline long pw_ring_consume(struct pw_ring *r)
{
	const unsigned long mask = r->size - 1;
	unsigned long consumer = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);
	long count = 0;
	int more;

	do {
		unsigned long producer = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);

		more = 0;
		while (consumer < producer) {
			/* Records are 8-byte aligned and the header is 8 bytes: it never wraps. */
			__u32 *header = (__u32 *)(r->data + (consumer & mask));
			__u32 len = __atomic_load_n(header, __ATOMIC_ACQUIRE);
			__u32 size = len & ~(__u32)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
			size_t start = (consumer + BPF_RINGBUF_HDR_SZ) & mask;

			if (len & BPF_RINGBUF_BUSY_BIT)
				return count;
			more = 1;
			consumer += (size + BPF_RINGBUF_HDR_SZ + 7) / 8 * 8;
			if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
				void *sample = r->data + start;

				if (start + size > r->size) {
					size_t first = r->size - start;

					if (size > sizeof(r->wrapped)) {
						sample = NULL;
					} else {
						memcpy(r->wrapped, r->data + start, first);
						memcpy(r->wrapped + first, r->data, size - first);
						sample = r->wrapped;
					}
				}
				r->sample(r->ctx, sample, size);
				count++;
			}
			__atomic_store_n(r->consumer_pos, consumer, __ATOMIC_RELEASE);
		}
	} while (more);
	return count;
}

#endif
