#ifndef PORTWATCH_CBPF_SHIM_H
#define PORTWATCH_CBPF_SHIM_H
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include "../../bpf/portwatch.h"

/* libbpf hands its log lines over as a va_list; Swift receives them formatted. */
typedef void (*pw_log_sink)(int level, const char *line);
static pw_log_sink pw_current_sink;

static int pw_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[1024];
	if (!pw_current_sink)
		return 0;
	vsnprintf(line, sizeof(line), fmt, args);
	pw_current_sink((int)level, line);
	return 0;
}

static inline void pw_set_libbpf_log_sink(pw_log_sink sink)
{
	pw_current_sink = sink;
	libbpf_set_print(pw_libbpf_print);
}

/* LIBBPF_OPTS is a macro; open an object from memory with a name. */
static inline struct bpf_object *pw_open_object(const void *data, size_t size, const char *name)
{
	struct bpf_object_open_opts opts = { .sz = sizeof(opts), .object_name = name };
	return bpf_object__open_mem(data, size, &opts);
}

static inline int pw_errno(void) { return errno; }
#endif
