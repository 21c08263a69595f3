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

#endif
