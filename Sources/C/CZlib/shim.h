#ifndef PORTWATCH_CZLIB_SHIM_H
#define PORTWATCH_CZLIB_SHIM_H
#include <zlib.h>

/* deflateInit2 is a macro; gzip framing is windowBits 15 + 16. */
static inline int pw_deflate_init_gzip(z_stream *stream, int level)
{
	return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
/* Raw deflate (no framing): pieces compressed apart and joined into one gzip member. */
static inline int pw_deflate_init_raw(z_stream *stream, int level)
{
	return deflateInit2(stream, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
}
#endif
