/* decode_util.c — what decoders share: JSON, UTF-8, times, plates. */
#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define DECODE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DECODE_ASAN 1
#endif
#endif
#ifdef DECODE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define REDZONE 16
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define REDZONE 0
#endif

/* ---- jansson's memory during a decode ------------------------------------
 *
 * Parsing a payload with jansson makes a malloc() for every value, key and
 * token buffer, and json_decref() walks the tree to free() each again:
 * 10-15 % of a decode. While a decode
 * runs (decode_json_begin() .. decode_json_end(), on this thread), jansson
 * allocates from a bump arena instead, frees are no-ops, and the end
 * rewinds the arena: no jansson value outlives the decode that parsed it
 * (decoders copy what they keep into the record's arena).
 *
 * jansson's allocator is process-wide (json_set_alloc_funcs), so outside a
 * decode, and on any other thread, the functions are plain malloc() and
 * free(): json_dumps() results and values built by event_json(),
 * gridbridgectl etc. stay ordinary heap memory that callers free() as
 * before. free() tells an arena pointer by the address range of this
 * thread's arena blocks. */

struct jblock {
	struct jblock *next;
	size_t size, used;
	_Alignas(16) unsigned char data[];
};

#define JBLOCK_MIN ((size_t)64 * 1024)
#define JBLOCK_KEEP ((size_t)1024 * 1024)	/* larger blocks go after use */

static _Thread_local struct jblock *jheap;	/* newest (and largest) first */
static _Thread_local bool jactive;
static pthread_once_t jonce = PTHREAD_ONCE_INIT;

static void *
jmalloc(size_t n)
{
	if (!jactive)
		return malloc(n);
	if (n > SIZE_MAX / 2)
		return NULL;
	size_t need = ((n + 15) & ~(size_t)15) + REDZONE;
	struct jblock *b = jheap;
	if (b == NULL || b->size - b->used < need) {
		size_t size = b != NULL ? 2 * b->size : JBLOCK_MIN;
		while (size < need)
			size *= 2;
		b = malloc(sizeof(*b) + size);
		if (b == NULL)
			return NULL;	/* jansson reports the failure */
		b->size = size;
		b->used = 0;
		b->next = jheap;
		jheap = b;
		POISON(b->data, size);
	}
	void *p = b->data + b->used;
	b->used += need;
	UNPOISON(p, n);
	return p;
}

static void
jfree(void *p)
{
	for (const struct jblock *b = jheap; b != NULL; b = b->next)
		if ((uintptr_t)p - (uintptr_t)b->data < b->size)
			return;		/* in the arena: rewound by decode_json_end() */
	free(p);
}

static void
jinstall(void)
{
	json_set_alloc_funcs(jmalloc, jfree);
}

void
decode_json_begin(void)
{
	pthread_once(&jonce, jinstall);
	jactive = true;
}

void
decode_json_end(void)
{
	jactive = false;
	struct jblock *b = jheap;
	if (b == NULL)
		return;
	while (b->next != NULL) {	/* keep the newest, the largest */
		struct jblock *n = b->next;
		b->next = n->next;
		free(n);
	}
	if (b->size > JBLOCK_KEEP) {
		free(b);
		jheap = NULL;
		return;
	}
	POISON(b->data, b->used);
	b->used = 0;
}

void
decode_json_free(json_t *j)
{
	if (!jactive)
		json_decref(j);
}

json_t *
decode_json_object(const struct decode_in *in, struct decode_out *out)
{
	if (in->payload_len == 0) {
		decode_reject(out, "empty");
		return NULL;
	}
	/* Both readers check UTF-8, every byte up to the end (they require
	 * nothing but whitespace after the value): when they accept the
	 * payload, the payload is UTF-8. Only a failure needs our check, to
	 * tell bad_utf8 from bad_json as before. */
	json_t *j = decode_json_parse(in->payload, in->payload_len);
	if (j == NULL) {
		decode_reject(out, util_utf8_valid(in->payload, in->payload_len) ?
		    "bad_json" : "bad_utf8");
		return NULL;
	}
	if (!json_is_object(j)) {
		decode_json_free(j);
		decode_reject(out, "bad_json");
		return NULL;
	}
	return j;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool
digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

int
decode_time_iso8601(const char *s, int tz_offset_min, int64_t *us)
{
	int Y, M, D, h, m, sec;
	const char *p = s;

	if (strlen(s) < 19 || !digits(p, 4, &Y) || p[4] != '-' || !digits(p + 5, 2, &M) ||
	    p[7] != '-' || !digits(p + 8, 2, &D) || (p[10] != 'T' && p[10] != 't' &&
	    p[10] != ' ') || !digits(p + 11, 2, &h) || p[13] != ':' ||
	    !digits(p + 14, 2, &m) || p[16] != ':' || !digits(p + 17, 2, &sec))
		return -1;
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (Y < 1970 || Y > 2200 || M < 1 || M > 12 || D < 1 || D > mdays[M - 1] ||
	    h > 23 || m > 59 || sec > 60)
		return -1;
	if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0))
		return -1;
	p += 19;
	int64_t frac_us = 0;
	if (*p == '.' || *p == ',') {
		p++;
		int nd = 0;
		int64_t scale = 100000;
		while (isdigit((unsigned char)*p)) {
			if (nd < 6) {
				frac_us += (*p - '0') * scale;
				scale /= 10;
			}
			nd++;
			p++;
		}
		if (nd == 0)
			return -1;
	}
	int offset = tz_offset_min;
	if (*p == 'Z' || *p == 'z') {
		offset = 0;
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om = 0;
		p++;
		if (!digits(p, 2, &oh))
			return -1;
		p += 2;
		if (*p == ':')
			p++;
		if (isdigit((unsigned char)*p)) {
			if (!digits(p, 2, &om))
				return -1;
			p += 2;
		}
		if (oh > 23 || om > 59)
			return -1;
		offset = sign * (oh * 60 + om);
	}
	if (*p != '\0')
		return -1;
	int64_t t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 +
	    sec - (int64_t)offset * 60;
	*us = t * 1000000 + frac_us;
	return 0;
}

int
decode_time_epoch(double v, int64_t *us)
{
	if (!isfinite(v) || v < 0)
		return -1;
	if (v >= 1e11)		/* milliseconds: 1e11 s would be the year 5138 */
		v /= 1000.0;
	if (v >= 7258118400.0)	/* 2200-01-01 */
		return -1;
	*us = (int64_t)llround(v * 1e6);
	return 0;
}

int64_t
decode_time_local_epoch(int64_t local_seconds, int tz_offset_min)
{
	return (local_seconds - (int64_t)tz_offset_min * 60) * 1000000;
}

char *
decode_plate_normalize(struct arena *a, const char *plate)
{
	size_t n = strlen(plate);
	char *out = arena_alloc(a, n + 1);
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)plate;

	for (size_t i = 0; i < n;) {
		if (p[i] == ' ' || p[i] == '-' || p[i] == '.' || p[i] == '_' || p[i] == '\t') {
			i++;
		} else if (p[i] == 0xc2 && i + 1 < n && p[i + 1] == 0xb7) {	/* · */
			i += 2;
		} else if (p[i] == 0xe2 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] == 0xa2) {
			i += 3;		/* • */
		} else if (p[i] == 0xe3 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] == 0x80) {
			i += 3;		/* ideographic space */
		} else if (p[i] < 0x80) {
			out[o++] = (char)toupper(p[i]);
			i++;
		} else {
			out[o++] = (char)p[i++];
		}
	}
	out[o] = '\0';
	return out;
}

Gridbridge__V1__Int32Value *
decode_int32(struct arena *a, int32_t v)
{
	Gridbridge__V1__Int32Value *w = arena_alloc(a, sizeof(*w));
	gridbridge__v1__int32_value__init(w);
	w->value = v;
	return w;
}

int
decode_parse_tz(const char *s, int *minutes)
{
	int h, m = 0, sign;

	if (strcmp(s, "Z") == 0 || strcmp(s, "UTC") == 0) {
		*minutes = 0;
		return 0;
	}
	if (s[0] != '+' && s[0] != '-')
		return -1;
	sign = s[0] == '-' ? -1 : 1;
	if (!digits(s + 1, 2, &h))
		return -1;
	const char *p = s + 3;
	if (*p == ':')
		p++;
	if (*p != '\0') {
		if (!digits(p, 2, &m) || p[2] != '\0')
			return -1;
	}
	if (h > 14 || m > 59)
		return -1;
	*minutes = sign * (h * 60 + m);
	return 0;
}

const char *
decode_json_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	return s != NULL && s[0] != '\0' ? s : NULL;
}

char *
decode_json_strdup(struct arena *a, json_t *o, const char *key)
{
	const char *s = decode_json_str(o, key);
	return s != NULL ? arena_strdup(a, s) : NULL;
}

/* "-123" -> -123: an optional '-' and 1..18 digits, nothing else. */
static bool
decimal(const char *s, long long *out)
{
	bool neg = *s == '-';
	long long r = 0;
	int nd = 0;

	if (neg)
		s++;
	for (; *s >= '0' && *s <= '9'; s++, nd++) {
		if (nd >= 18)
			return false;
		r = r * 10 + (*s - '0');
	}
	if (nd == 0 || *s != '\0')
		return false;
	*out = neg ? -r : r;
	return true;
}

/* A real as an integer: integral (or rounded), within doubles' exact range. */
static bool
real_integer(double d, bool nearest, long long *out)
{
	if (!isfinite(d) || fabs(d) > 9e15)
		return false;
	if (nearest)
		d = round(d);	/* halves away from zero */
	else if (d != floor(d))
		return false;
	*out = (long long)d;
	return true;
}

bool
decode_json_integer(json_t *v, unsigned flags, long long lo, long long hi, long long *out)
{
	long long n;

	if (json_is_integer(v))
		n = json_integer_value(v);
	else if (json_is_real(v)) {
		if (!real_integer(json_real_value(v), (flags & DECODE_INT_ROUND) != 0, &n))
			return false;
	} else if ((flags & DECODE_INT_QUOTED) != 0 && json_is_string(v)) {
		if (!decimal(json_string_value(v), &n))
			return false;
	} else {
		return false;
	}
	if (n < lo || n > hi)
		return false;
	*out = n;
	return true;
}

char *
decode_json_ref(struct arena *a, json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	long long n;
	char buf[32];

	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		return s[0] != '\0' ? arena_strdup(a, s) : NULL;
	}
	if (decode_json_integer(v, 0, LLONG_MIN, LLONG_MAX, &n)) {
		snprintf(buf, sizeof(buf), "%lld", n);
		return arena_strdup(a, buf);
	}
	return NULL;
}

const char *
decode_clip(const char *s, char *buf, size_t size)
{
	size_t n = 0, max = size - 1 < 40 ? size - 1 : 40;

	while (s[n] != '\0' && n < max)
		n++;
	while (n > 0 && s[n] != '\0' && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;	/* s[n] continues a sequence: cut before its lead byte */
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[n] = '\0';
	return buf;
}
