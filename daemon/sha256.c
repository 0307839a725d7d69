/* sha256.c — SHA-256 (FIPS 180-4).
 *
 * Portable C, and on x86 CPUs with the SHA extensions (checked once with
 * CPUID) the blocks go through those instructions: record ids hash whole
 * payloads, and the portable code was a fifth of a decode. The digest is
 * the same either way. */
#include "sha256.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] __attribute__((aligned(16))) = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
block(uint32_t hs[8], const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		    (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = hs[0]; b = hs[1]; c = hs[2]; d = hs[3];
	e = hs[4]; f = hs[5]; g = hs[6]; h = hs[7];
	for (int i = 0; i < 64; i++) {
		uint32_t S1 = ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25);
		uint32_t ch = (e & f) ^ (~e & g);
		uint32_t t1 = h + S1 + ch + K[i] + w[i];
		uint32_t S0 = ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22);
		uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
		uint32_t t2 = S0 + maj;
		h = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	hs[0] += a; hs[1] += b; hs[2] += c; hs[3] += d;
	hs[4] += e; hs[5] += f; hs[6] += g; hs[7] += h;
}

#ifdef HAVE_SHA_NI
static bool sha_ni;
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void
sha_detect(void)
{
	unsigned a, b, c, d;

	/* CPUID.7.0:EBX bit 29 SHA; CPUID.1:ECX bit 19 SSE4.1, bit 9 SSSE3. */
	if (__get_cpuid(1, &a, &b, &c, &d) == 0 || !(c & (1u << 19)) || !(c & (1u << 9)))
		return;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0 || !(b & (1u << 29)))
		return;
	sha_ni = true;
}


/* Four rounds: message words w (with the constants added) into the state;
 * rnds2 does two, the high half of w moved down does the other two. */
#define SHA_4ROUNDS(i, w)						\
	do {								\
		__m128i m_ = _mm_add_epi32((w),				\
		    _mm_load_si128((const __m128i *)&K[4 * (i)]));	\
		st1 = _mm_sha256rnds2_epu32(st1, st0, m_);		\
		m_ = _mm_shuffle_epi32(m_, 0x0e);			\
		st0 = _mm_sha256rnds2_epu32(st0, st1, m_);		\
	} while (0)
/* Message schedule: w0 += sigma terms of w1..w3 (the next 4 words). */
#define SHA_SCHED(w0, w1, w2, w3)					\
	do {								\
		(w0) = _mm_sha256msg1_epu32((w0), (w1));		\
		(w0) = _mm_add_epi32((w0), _mm_alignr_epi8((w3), (w2), 4));	\
		(w0) = _mm_sha256msg2_epu32((w0), (w3));		\
	} while (0)

__attribute__((target("sha,sse4.1,ssse3"))) static void
sha_blocks_ni(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i t = _mm_loadu_si128((const __m128i *)&h[0]);
	__m128i st1 = _mm_loadu_si128((const __m128i *)&h[4]);

	t = _mm_shuffle_epi32(t, 0xb1);			/* CDAB */
	st1 = _mm_shuffle_epi32(st1, 0x1b);		/* EFGH */
	__m128i st0 = _mm_alignr_epi8(t, st1, 8);	/* ABEF */
	st1 = _mm_blend_epi16(st1, t, 0xf0);		/* CDGH */

	for (; nblocks > 0; nblocks--, p += 64) {
		__m128i abef = st0, cdgh = st1;
		__m128i w0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
		__m128i w1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
		__m128i w2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
		__m128i w3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);

		SHA_4ROUNDS(0, w0);
		SHA_4ROUNDS(1, w1);
		SHA_4ROUNDS(2, w2);
		SHA_4ROUNDS(3, w3);
		for (int r = 4; r < 16; r += 4) {
			SHA_SCHED(w0, w1, w2, w3);
			SHA_4ROUNDS(r, w0);
			SHA_SCHED(w1, w2, w3, w0);
			SHA_4ROUNDS(r + 1, w1);
			SHA_SCHED(w2, w3, w0, w1);
			SHA_4ROUNDS(r + 2, w2);
			SHA_SCHED(w3, w0, w1, w2);
			SHA_4ROUNDS(r + 3, w3);
		}
		st0 = _mm_add_epi32(st0, abef);
		st1 = _mm_add_epi32(st1, cdgh);
	}

	t = _mm_shuffle_epi32(st0, 0x1b);		/* FEBA */
	st1 = _mm_shuffle_epi32(st1, 0xb1);		/* DCHG */
	st0 = _mm_blend_epi16(t, st1, 0xf0);		/* DCBA */
	st1 = _mm_alignr_epi8(st1, t, 8);		/* HGFE */
	_mm_storeu_si128((__m128i *)&h[0], st0);
	_mm_storeu_si128((__m128i *)&h[4], st1);
}
#endif

void
sha256_portable_only(bool on)
{
#ifdef HAVE_SHA_NI
	pthread_once(&sha_once, sha_detect);
	if (on)
		sha_ni = false;
	else
		sha_detect();
#else
	(void)on;
#endif
}

/* `n` 64-byte blocks into the state. */
static void
blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
#ifdef HAVE_SHA_NI
	pthread_once(&sha_once, sha_detect);
	if (sha_ni) {
		sha_blocks_ni(h, p, n);
		return;
	}
#endif
	for (; n > 0; n--, p += 64)
		block(h, p);
}

void
sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};
	memcpy(s->h, iv, sizeof(iv));
	s->len = 0;
	s->buflen = 0;
}

void
sha256_update(struct sha256 *s, const void *data, size_t n)
{
	const uint8_t *p = data;

	s->len += n;
	if (s->buflen > 0) {
		size_t take = 64 - s->buflen < n ? 64 - s->buflen : n;
		memcpy(s->buf + s->buflen, p, take);
		s->buflen += take;
		p += take;
		n -= take;
		if (s->buflen < 64)
			return;
		blocks(s->h, s->buf, 1);
		s->buflen = 0;
	}
	if (n >= 64) {
		blocks(s->h, p, n / 64);
		p += n & ~(size_t)63;
		n &= 63;
	}
	if (n > 0) {
		memcpy(s->buf, p, n);
		s->buflen = n;
	}
}

void
sha256_final(struct sha256 *s, uint8_t out[32])
{
	uint64_t bits = s->len * 8;

	s->buf[s->buflen++] = 0x80;
	if (s->buflen > 56) {
		memset(s->buf + s->buflen, 0, 64 - s->buflen);
		blocks(s->h, s->buf, 1);
		s->buflen = 0;
	}
	memset(s->buf + s->buflen, 0, 56 - s->buflen);
	for (int i = 0; i < 8; i++)
		s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
	blocks(s->h, s->buf, 1);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}
