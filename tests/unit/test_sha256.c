/* Unit tests: the SHA-256 wrapper (sha256.h) against FIPS 180-4 vectors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "t.h"

/* FIPS 180-4 examples, and lengths around the padding boundary: 55 bytes
 * (the length fits the last block), 56 (it does not), 64 (one whole
 * block), and a million bytes. */
static const struct {
	const char *in;
	size_t repeat;
	const char *hex;
} vec[] = {
	{ "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ "a", 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
	{ "a", 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
	{ "a", 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
	{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
};
#define NVEC (sizeof(vec) / sizeof(vec[0]))

static void
to_hex(const uint8_t d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Vector v's whole input, in one buffer. */
static char *
whole(size_t v, size_t *n)
{
	size_t len = strlen(vec[v].in);
	char *p = malloc(len * vec[v].repeat + 1);
	if (p == NULL)
		abort();
	for (size_t r = 0; r < vec[v].repeat; r++)
		memcpy(p + r * len, vec[v].in, len);
	*n = len * vec[v].repeat;
	return p;
}

/* The input in pieces of `step` bytes (the last one shorter). */
static void
pieces(size_t v, size_t step, char out[65])
{
	size_t n;
	char *p = whole(v, &n);
	struct sha256 h;
	uint8_t d[32];

	sha256_init(&h);
	for (size_t at = 0; at < n; at += step)
		sha256_update(&h, p + at, n - at < step ? n - at : step);
	sha256_final(&h, d);
	to_hex(d, out);
	free(p);
}

int
main(void)
{
	char hex[65];
	uint8_t d[32];

	/* One call, as repeated updates of the vector's string, and in odd
	 * pieces: 1, 7, 63 and 65 bytes (every offset inside a block, and
	 * short pieces gathered before libcrypto sees them), 128, 129 and 300
	 * (pieces that go to libcrypto at once). */
	for (size_t v = 0; v < NVEC; v++) {
		size_t n;
		char *p = whole(v, &n);
		sha256(p, n, d);
		to_hex(d, hex);
		T_STREQ(hex, vec[v].hex);
		free(p);

		struct sha256 h;
		size_t len = strlen(vec[v].in);
		sha256_init(&h);
		for (size_t r = 0; r < vec[v].repeat; r++)
			sha256_update(&h, vec[v].in, len);
		sha256_final(&h, d);
		to_hex(d, hex);
		T_STREQ(hex, vec[v].hex);

		static const size_t steps[] = { 1, 7, 63, 65, 128, 129, 300 };
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			if (vec[v].repeat > 1000 && steps[s] < 63)
				continue;	/* a million single bytes: slow under the sanitizers */
			pieces(v, steps[s], hex);
			T_STREQ(hex, vec[v].hex);
		}
	}

	/* Nested hashes each get their own context, and contexts are reused
	 * after sha256_final() without carrying state over. */
	struct sha256 outer, inner;
	sha256_init(&outer);
	sha256_update(&outer, "ab", 2);
	sha256_init(&inner);
	sha256_update(&inner, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56);
	sha256_update(&outer, "c", 1);
	sha256_final(&inner, d);
	to_hex(d, hex);
	T_STREQ(hex, vec[2].hex);
	sha256_final(&outer, d);
	to_hex(d, hex);
	T_STREQ(hex, vec[1].hex);
	for (int i = 0; i < 3; i++) {
		sha256("", 0, d);
		to_hex(d, hex);
		T_STREQ(hex, vec[0].hex);
	}
	return t_done();
}
