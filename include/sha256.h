/* sha256.c — SHA-256 (FIPS 180-4), for deterministic event ids. */
#ifndef GRIDBRIDGE_SHA256_H
#define GRIDBRIDGE_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t len;		/* bytes hashed */
	uint8_t buf[64];
	size_t buflen;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[32]);

/* Tests: use the portable code even where the CPU has SHA instructions
 * (false: back to what the CPU offers). Not thread-safe. */
void sha256_portable_only(bool on);

#endif
