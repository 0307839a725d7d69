/* sha256.c — SHA-256 through OpenSSL's libcrypto, for deterministic event
 * ids, repeat keys and idempotency keys.
 *
 * Decoding hashes an id per record, so the per-hash overhead counts: the
 * digest algorithm is fetched once per process, every thread keeps a
 * spare digest context for its next hash, and short updates are gathered
 * (below). Hashes may nest (a second sha256_init() before the first
 * sha256_final() gets a context of its own). Out of memory, or a
 * libcrypto without SHA-256, aborts. */
#ifndef GRIDBRIDGE_SHA256_H
#define GRIDBRIDGE_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct evp_md_ctx_st;

/* Short updates (an id hashes a dozen fields of a few bytes) are gathered
 * in `buf` and go to libcrypto together: each call there costs about as
 * much as hashing a block. */
struct sha256 {
	struct evp_md_ctx_st *ctx;	/* between sha256_init() and sha256_final() */
	size_t buflen;
	uint8_t buf[128];
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
/* The digest into `out`; `s` may be initialised again. */
void sha256_final(struct sha256 *s, uint8_t out[32]);

/* The digest of `n` bytes at `data`, in one call. */
void sha256(const void *data, size_t n, uint8_t out[32]);

#endif
