/* decode.c — the decode framework: routes, envelope, identity; see decode.h. */
#include "decode.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---- arena -------------------------------------------------------------- */

struct arena_block {
	struct arena_block *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK 16384

void *
arena_alloc(struct arena *a, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	struct arena_block *b = a->head;
	if (b == NULL || b->size - b->used < size) {
		size_t bs = size > ARENA_BLOCK ? size : ARENA_BLOCK;
		b = malloc(sizeof(*b) + bs);
		if (b == NULL)
			abort();
		b->size = bs;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += size;
	memset(p, 0, size);
	return p;
}

char *
arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

/* Keeps the first block (the common case fits in it), frees the rest. */
void
arena_reset(struct arena *a)
{
	struct arena_block *b = a->head;
	if (b == NULL)
		return;
	while (b->next != NULL) {
		struct arena_block *n = b->next;
		b->next = n->next;
		free(n);
	}
	b->used = 0;
}

void
arena_free(struct arena *a)
{
	struct arena_block *b = a->head;
	while (b != NULL) {
		struct arena_block *n = b->next;
		free(b);
		b = n;
	}
	a->head = NULL;
}

/* ---- registry ----------------------------------------------------------- */

static const struct {
	const char *name;
	const char *vendor;
	decoder_fn fn;
} decoders[DECODER_COUNT] = {
	[DECODER_HIKVISION] = { "hikvision", "hikvision", decode_hikvision },
	[DECODER_DAHUA] = { "dahua", "dahua", decode_dahua },
	[DECODER_CAMERA_ALARM] = { "camera_alarm", "camera", decode_camera_alarm },
	[DECODER_PEEPHOLE] = { "peephole", "tuya", decode_peephole },
	[DECODER_GATEWAY] = { "gateway", "gateway", decode_gateway },
	[DECODER_Z2M_DEVICE] = { "z2m_device", "zigbee2mqtt", decode_z2m_device },
	[DECODER_Z2M_AVAILABILITY] = { "z2m_availability", "zigbee2mqtt", decode_z2m_availability },
	[DECODER_Z2M_BRIDGE] = { "z2m_bridge", "zigbee2mqtt", decode_z2m_bridge },
	[DECODER_SHELLY_SENSOR] = { "shelly_sensor", "shelly", decode_shelly_sensor },
	[DECODER_SHELLY_ONLINE] = { "shelly_online", "shelly", decode_shelly_online },
	[DECODER_TASMOTA_LWT] = { "tasmota_lwt", "tasmota", decode_tasmota_lwt },
	[DECODER_ACCESS] = { "access", "", decode_access },
};

const char *
decoder_name(enum decoder_id id)
{
	return (unsigned)id < DECODER_COUNT ? decoders[id].name : "?";
}

const char *
decoder_vendor(enum decoder_id id)
{
	return (unsigned)id < DECODER_COUNT ? decoders[id].vendor : "";
}

int
decoder_by_name(const char *name, enum decoder_id *id)
{
	for (int i = 0; i < DECODER_COUNT; i++) {
		if (strcmp(decoders[i].name, name) == 0) {
			*id = (enum decoder_id)i;
			return 0;
		}
	}
	return -1;
}

/* ---- records ------------------------------------------------------------ */

void
decode_out_init(struct decode_out *out)
{
	memset(out, 0, sizeof(*out));
	gridbridge__v1__event__init(&out->ev);
}

void
decode_out_free(struct decode_out *out)
{
	arena_free(&out->arena);
}

int
decode_reject(struct decode_out *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
	return -1;
}

const struct route *
decode_find_route(const struct route *routes, size_t n, const char *topic,
    size_t topic_len, struct route_match *m)
{
	for (size_t i = 0; i < n; i++)
		if (route_matches(&routes[i].pattern, topic, topic_len, m))
			return &routes[i];
	return NULL;
}

static char *
capture_or(struct arena *a, const struct decode_in *in, const char *name, const char *def)
{
	const struct route_capture *c = route_capture(&in->route->pattern, in->match, name);
	if (c != NULL && c->value != NULL)
		return arena_strndup(a, c->value, c->len);
	return arena_strdup(a, def != NULL ? def : "");
}

/* ---- SHA-256 for ids ---------------------------------------------------
 *
 * The id hashes a few short fields and often the whole payload: with the
 * portable SHA-256 (sha256.c) that was a fifth of a decode. On x86 CPUs
 * with the SHA extensions the blocks go through those instructions; the
 * digest is the same (FIPS 180-4 either way), so are the ids. The state is
 * sha256.c's struct; without the extensions its functions do the work. */

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

static const uint32_t sha_k[64] __attribute__((aligned(16))) = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* Four rounds: message words w (with the constants added) into the state;
 * rnds2 does two, the high half of w moved down does the other two. */
#define SHA_4ROUNDS(i, w)						\
	do {								\
		__m128i m_ = _mm_add_epi32((w),				\
		    _mm_load_si128((const __m128i *)&sha_k[4 * (i)]));	\
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

static void
id_update(struct sha256 *s, const void *data, size_t n)
{
#ifdef HAVE_SHA_NI
	if (sha_ni) {
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
			sha_blocks_ni(s->h, s->buf, 1);
			s->buflen = 0;
		}
		if (n >= 64) {
			sha_blocks_ni(s->h, p, n / 64);
			p += n & ~(size_t)63;
			n &= 63;
		}
		if (n > 0) {
			memcpy(s->buf, p, n);
			s->buflen = n;
		}
		return;
	}
#endif
	sha256_update(s, data, n);
}

static void
id_final(struct sha256 *s, uint8_t out[32])
{
#ifdef HAVE_SHA_NI
	if (sha_ni) {
		uint64_t bits = s->len * 8;
		s->buf[s->buflen++] = 0x80;
		if (s->buflen > 56) {
			memset(s->buf + s->buflen, 0, 64 - s->buflen);
			sha_blocks_ni(s->h, s->buf, 1);
			s->buflen = 0;
		}
		memset(s->buf + s->buflen, 0, 56 - s->buflen);
		for (int i = 0; i < 8; i++)
			s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
		sha_blocks_ni(s->h, s->buf, 1);
		for (int i = 0; i < 8; i++) {
			out[4 * i] = (uint8_t)(s->h[i] >> 24);
			out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
			out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
			out[4 * i + 3] = (uint8_t)s->h[i];
		}
		return;
	}
#endif
	sha256_final(s, out);
}

static void
put_field(struct sha256 *h, const void *p, size_t n)
{
	uint8_t len[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
		(uint8_t)n };
	id_update(h, len, 4);
	id_update(h, p, n);
}

static void
put_i64(struct sha256 *h, int64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
	put_field(h, b, 8);
}

/* UUIDv8 (RFC 9562): 122 bits of SHA-256 over length-prefixed fields. */
static void
make_id(const struct decode_in *in, struct decode_out *out, uint8_t id[16])
{
	struct sha256 h;
	uint8_t d[32];
	const Event *ev = &out->ev;

#ifdef HAVE_SHA_NI
	pthread_once(&sha_once, sha_detect);
#endif
	sha256_init(&h);
	put_field(&h, "gridbridge/v1", 13);
	put_field(&h, ev->vendor, strlen(ev->vendor));
	put_field(&h, ev->community_id, strlen(ev->community_id));
	put_field(&h, ev->device_id, strlen(ev->device_id));
	if (out->serial != NULL) {
		put_field(&h, "s", 1);
		put_field(&h, out->serial, out->serial_len);
		/* One device may number two kinds of events separately, and a
		 * counter can start again after a reset: the time tells apart. */
		put_i64(&h, ev->event_type);
		if (out->has_device_time)
			put_i64(&h, ev->event_time_us);
	} else {
		put_field(&h, out->has_device_time ? "t" : "r", 1);
		put_i64(&h, ev->event_time_us);
		put_field(&h, in->payload != NULL ? (const void *)in->payload : "", in->payload_len);
	}
	id_final(&h, d);
	memcpy(id, d, 16);
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x80);	/* version 8 */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);	/* variant 10 */
}

int
decode_record(const struct decode_in *in, struct decode_out *out)
{
	struct arena *a = &out->arena;
	const struct route *r = in->route;

	arena_reset(a);
	gridbridge__v1__event__init(&out->ev);
	out->reason[0] = '\0';
	out->serial = NULL;
	out->serial_len = 0;
	out->has_device_time = false;

	if (in->oversize)
		return decode_reject(out, "oversize");

	Event *ev = &out->ev;
	ev->received_time_us = in->received_us;
	ev->journal_seq = in->journal_seq;
	ev->source_topic = arena_strndup(a, in->topic, in->topic_len);
	ev->route = arena_strdup(a, r->name != NULL ? r->name : "");
	ev->vendor = arena_strdup(a, decoder_vendor(r->decoder));
	ev->device_class = r->device_class;
	ev->community_id = capture_or(a, in, "community", r->community);
	ev->device_id = capture_or(a, in, "device", "");

	if ((unsigned)r->decoder >= DECODER_COUNT)
		return decode_reject(out, "unsupported:decoder");
	decode_json_begin();
	int rc = decoders[r->decoder].fn(in, out);
	decode_json_end();
	if (rc != 0) {
		if (out->reason[0] == '\0')
			decode_reject(out, "bad_value:payload");
		return -1;
	}
	if (ev->device_id[0] == '\0')
		return decode_reject(out, "missing_field:device");
	if (!out->has_device_time)
		ev->event_time_us = in->received_us;
	int64_t skew = ev->event_time_us - in->received_us;
	if (skew < 0)
		skew = -skew;
	ev->clock_skewed = out->has_device_time && in->max_skew_us > 0 &&
	    skew > in->max_skew_us;

	uint8_t *id = arena_alloc(a, 16);
	make_id(in, out, id);
	ev->id.data = id;
	ev->id.len = 16;
	return 0;
}
