#ifndef PORTWATCH_CCRYPT_SHIM_H
#define PORTWATCH_CCRYPT_SHIM_H
#include <crypt.h>
#include <string.h>

/* Hashes `phrase` with the settings (algorithm, cost, salt) of `setting`, re-entrantly.
 * Writes a NUL-terminated hash into out (CRYPT_OUTPUT_SIZE bytes); returns 0 on success. */
static inline int pw_crypt(const char *phrase, const char *setting, char *out, int size)
{
	struct crypt_data data;
	memset(&data, 0, sizeof(data));
	const char *hash = crypt_rn(phrase, setting, &data, sizeof(data));
	if (!hash || hash[0] == '*' || (int)strlen(hash) >= size)
		return -1;
	strcpy(out, hash);
	return 0;
}
#endif
