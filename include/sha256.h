/* sha256.c — SHA-256 through OpenSSL's libcrypto, for deterministic event
 * ids, repeat keys and idempotency keys.
 *
 * The digest algorithm is fetched once per process, and every thread keeps
 * a spare digest context for the next hash: decoding hashes an id per
 * record, and fetching or allocating each time would cost more than the
 * hash of a short record. Contexts may nest (a second sha256_init() before
 * the first sha256_final() gets a context of its own). Out of memory, or a
 * libcrypto without SHA-256, aborts. */
#ifndef GRIDBRIDGE_SHA256_H
#define GRIDBRIDGE_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct evp_md_ctx_st;

struct sha256 {
	struct evp_md_ctx_st *ctx;	/* between sha256_init() and sha256_final() */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
/* The digest into `out`; `s` may be initialised again. */
void sha256_final(struct sha256 *s, uint8_t out[32]);

/* The digest of `n` bytes at `data`, in one call. */
void sha256(const void *data, size_t n, uint8_t out[32]);

#endif
