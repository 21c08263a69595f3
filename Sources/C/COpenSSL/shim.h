#ifndef PORTWATCH_COPENSSL_SHIM_H
#define PORTWATCH_COPENSSL_SHIM_H
/* OpenSSL is loaded when TLS is configured, not linked: a daemon serving plain HTTP never
 * maps libssl and libcrypto (about 2 MiB of its resident memory). The headers give the types;
 * every call goes through a table of pointers that pw_openssl_load fills with dlsym. */
#include <dlfcn.h>
#include <stddef.h>
#include <openssl/ssl.h>
#include <openssl/err.h>

#define PW_OPENSSL_LIBRARY "libssl.so.3"

#define PW_OPENSSL_FUNCTIONS(X) \
	X(TLS_server_method) X(SSL_CTX_new) X(SSL_CTX_free) X(SSL_CTX_ctrl) \
	X(SSL_CTX_use_certificate_chain_file) X(SSL_CTX_use_PrivateKey_file) X(SSL_CTX_check_private_key) \
	X(SSL_CTX_load_verify_locations) X(SSL_CTX_set_verify) \
	X(SSL_new) X(SSL_free) X(SSL_set_fd) X(SSL_set_accept_state) \
	X(SSL_read) X(SSL_write) X(SSL_pending) X(SSL_get_error) \
	X(ERR_get_error) X(ERR_error_string_n) X(ERR_clear_error)

struct pw_openssl {
#define PW_OPENSSL_FIELD(name) __typeof__(name) *name;
	PW_OPENSSL_FUNCTIONS(PW_OPENSSL_FIELD)
#undef PW_OPENSSL_FIELD
};

/* Fills `api` from libssl (ERR_* come from libcrypto, which it loads). NULL on success,
 * else dlerror's text. */
static inline const char *pw_openssl_load(struct pw_openssl *api)
{
	void *library = dlopen(PW_OPENSSL_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	if (!library)
		return dlerror();
#define PW_OPENSSL_LOAD(name) \
	if (!(api->name = (__typeof__(name) *)dlsym(library, #name))) \
		return dlerror();
	PW_OPENSSL_FUNCTIONS(PW_OPENSSL_LOAD)
#undef PW_OPENSSL_LOAD
	return NULL;
}

/* Macros Swift cannot import, through the table. */
static inline int pw_ssl_ctx_min_version(const struct pw_openssl *api, SSL_CTX *ctx, int tls13)
{
	return (int)api->SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION, NULL);
}
static inline long pw_ssl_ctx_partial_writes(const struct pw_openssl *api, SSL_CTX *ctx)
{
	return api->SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
}

/* The last OpenSSL error as text (empty if none). */
static inline void pw_ssl_error_text(const struct pw_openssl *api, char *out, size_t size)
{
	unsigned long code = api->ERR_get_error();
	if (code == 0) { if (size) out[0] = 0; return; }
	api->ERR_error_string_n(code, out, size);
	api->ERR_clear_error();
}
#endif
