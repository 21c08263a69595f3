#ifndef PORTWATCH_COPENSSL_SHIM_H
#define PORTWATCH_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>

/* Macros Swift cannot import. */
static inline int pw_ssl_ctx_min_version(SSL_CTX *ctx, int tls13)
{
	return (int)SSL_CTX_set_min_proto_version(ctx, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
}
static inline long pw_ssl_ctx_partial_writes(SSL_CTX *ctx)
{
	return SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* The last OpenSSL error as text (empty if none). */
static inline void pw_ssl_error_text(char *out, size_t size)
{
	unsigned long code = ERR_get_error();
	if (code == 0) { if (size) out[0] = 0; return; }
	ERR_error_string_n(code, out, size);
	ERR_clear_error();
}
#endif
