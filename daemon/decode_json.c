/* decode_json.c — payloads read into jansson values by yajl.
 *
 * The decoders work on jansson values, but jansson's own reader takes a
 * byte at a time through a stream and a growing token buffer: 9 µs of a
 * 700-byte device payload, over half of the daemon's instructions per
 * message. yajl's reader (a maintained Debian package too) lexes in runs
 * and hands over whole strings, keys and numbers; building the same
 * jansson values from its events takes under 2 µs.
 *
 * The promise: decode_json_parse(p, n) returns what json_loadb(p, n, 0,
 * NULL) returns — NULL for every input jansson refuses, and otherwise an
 * equal value with the keys in the same order (fuzz_json checks exactly
 * that). So yajl only ever reads payloads on which the two readers are
 * known to agree, and jansson decides every other one:
 *
 *  - yajl accepts form feed and vertical tab as white space and passes
 *    \u0000 through; any control byte but tab, newline and carriage
 *    return, anywhere, goes to jansson (inside a string it is an error
 *    for both);
 *  - yajl turns a lone or mismatched surrogate escape into '?' or into
 *    bytes that are not UTF-8: any \uD800-\uDFFF goes to jansson;
 *  - yajl's UTF-8 check lets overlong forms and surrogates through:
 *    util_utf8_valid (the strict check, jansson's rules) runs instead;
 *  - numbers come as text and are converted as jansson does (an integer
 *    unless there is a '.', 'e' or 'E'; strtoll, strtod); one that is
 *    out of range goes to jansson;
 *  - yajl takes a string left open after the value for the start of a
 *    second one it was not asked to read, and says nothing: only white
 *    space may follow the value's closing bracket (where yajl stood when
 *    it reported the close);
 *  - a \u0000 escape (a NUL in a key or a string) goes to jansson;
 *  - anything yajl itself refuses, a top-level value that is not an
 *    object or an array (jansson wants one without JSON_DECODE_ANY),
 *    nesting deeper than DEPTH_MAX, a key longer than KEY_MAX, or a
 *    failed allocation: jansson reads it again and decides.
 *
 * Duplicate keys: both keep the last value at the first one's place
 * (json_object_setn_new_nocheck, as jansson's reader). */
#include <errno.h>
#include <jansson.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "decode.h"
#include "util.h"

#define DEPTH_MAX 64
#define KEY_MAX 256
#define NUMBER_MAX 64

struct builder {
	yajl_handle h;
	size_t root_end;		/* just after the root's closing bracket */
	json_t *root;
	json_t *stack[DEPTH_MAX];	/* the open containers, innermost last */
	int depth;
	bool have_key;
	size_t key_len;
	char key[KEY_MAX];		/* yajl may reuse its buffer before the value */
};

/* Adds v to the open container (or makes it the root); takes v. */
static int
add(struct builder *b, json_t *v)
{
	if (v == NULL)
		return 0;
	if (b->depth == 0) {
		if (b->root != NULL) {	/* yajl allows one value only; be sure */
			json_decref(v);
			return 0;
		}
		b->root = v;
		return 1;
	}
	json_t *c = b->stack[b->depth - 1];
	if (json_is_object(c)) {
		if (!b->have_key) {
			json_decref(v);
			return 0;
		}
		b->have_key = false;
		return json_object_setn_new_nocheck(c, b->key, b->key_len, v) == 0;
	}
	return json_array_append_new(c, v) == 0;
}

static int
on_null(void *ctx)
{
	return add(ctx, json_null());
}

static int
on_boolean(void *ctx, int v)
{
	return add(ctx, json_boolean(v));
}

static int
on_number(void *ctx, const char *s, size_t n)
{
	char text[NUMBER_MAX];
	char *end;

	if (n == 0 || n >= sizeof(text))
		return 0;
	/* Most are short integers (ids, counts, codes): up to 18 digits fit
	 * an int64_t whatever they are, read in place. yajl has checked the
	 * syntax (no '+', no leading zero), so this is strtoll's value. */
	size_t i = s[0] == '-';
	if (i < n && n - i <= 18) {
		long long v = 0;
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
			v = v * 10 + (s[i] - '0');
		if (i == n)
			return add(ctx, json_integer(s[0] == '-' ? -v : v));
	}
	memcpy(text, s, n);
	text[n] = '\0';
	errno = 0;
	if (memchr(text, '.', n) == NULL && memchr(text, 'e', n) == NULL &&
	    memchr(text, 'E', n) == NULL) {
		long long v = strtoll(text, &end, 10);
		if (errno != 0 || end != text + n)
			return 0;
		return add(ctx, json_integer(v));
	}
	/* jansson reads reals with the locale's decimal point in mind; the
	 * daemon never sets a locale, but be sure. */
	const struct lconv *lc = localeconv();
	if (lc->decimal_point[0] != '.' || lc->decimal_point[1] != '\0')
		return 0;
	double v = strtod(text, &end);
	if (errno != 0 || end != text + n)
		return 0;
	return add(ctx, json_real(v));
}

/* No NUL in s: plain() sent every payload with one (raw or \u0000) to
 * jansson. */
static int
on_string(void *ctx, const unsigned char *s, size_t n)
{
	return add(ctx, json_stringn_nocheck((const char *)s, n));
}

static int
open_container(struct builder *b, json_t *c)
{
	if (c == NULL || b->depth == DEPTH_MAX) {
		json_decref(c);
		return 0;
	}
	json_incref(c);		/* one for the parent, one for the stack */
	if (!add(b, c)) {
		json_decref(c);
		return 0;
	}
	b->stack[b->depth++] = c;
	return 1;
}

static int
on_start_map(void *ctx)
{
	return open_container(ctx, json_object());
}

static int
on_map_key(void *ctx, const unsigned char *k, size_t n)
{
	struct builder *b = ctx;
	if (n > sizeof(b->key))
		return 0;
	memcpy(b->key, k, n);
	b->key_len = n;
	b->have_key = true;
	return 1;
}

static int
on_end(void *ctx)
{
	struct builder *b = ctx;
	if (b->depth == 0)
		return 0;
	json_decref(b->stack[--b->depth]);
	if (b->depth == 0)
		b->root_end = yajl_get_bytes_consumed(b->h);
	return 1;
}

static int
on_start_array(void *ctx)
{
	return open_container(ctx, json_array());
}

static const yajl_callbacks callbacks = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_map_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* Whether the bytes hold nothing the two readers treat differently
 * (above): no control byte but tab, newline and carriage return, no
 * surrogate escape, strict UTF-8. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether any of the 8 bytes in w is below 0x20, a backslash or above
 * 0x7f (the bit trick for "a byte less than n" of Hacker's Delight, 6-1):
 * most payloads are mostly plain ASCII text, skipped 8 bytes at a time. */
static inline bool
special8(uint64_t w)
{
	uint64_t bs = w ^ (ONES * '\\');
	return (((w - ONES * 0x20) | (bs - ONES)) & ~w & HIGHS) != 0 || (w & HIGHS) != 0;
}

static bool
plain(const unsigned char *p, size_t n)
{
	bool ascii = true;
	size_t i = 0;

	for (;;) {
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			if (special8(w))
				break;
			i += 8;
		}
		if (i >= n)
			break;
		unsigned char c = p[i];
		if (c < 0x20) {
			if (c != '\t' && c != '\n' && c != '\r')
				return false;
		} else if (c == '\\') {
			/* "\\u" is two escapes and passes here as one \u would:
			 * at worst a payload goes to jansson for nothing. */
			if (i + 3 < n && p[i + 1] == 'u' && (p[i + 2] | 0x20) == 'd' &&
			    ((p[i + 3] >= '8' && p[i + 3] <= '9') ||
			    ((p[i + 3] | 0x20) >= 'a' && (p[i + 3] | 0x20) <= 'f')))
				return false;
			/* \u0000: a NUL in a key or a string (so the callbacks
			 * need not look for one) */
			if (i + 5 < n && p[i + 1] == 'u' && p[i + 2] == '0' && p[i + 3] == '0' &&
			    p[i + 4] == '0' && p[i + 5] == '0')
				return false;
		} else if (c >= 0x80) {
			ascii = false;
		}
		i++;
	}
	return ascii || util_utf8_valid(p, n);
}

json_t *
decode_json_parse_fast(const void *p, size_t n)
{
	struct builder b;

	if (!plain(p, n))
		return NULL;
	b.root = NULL;
	b.root_end = 0;
	b.depth = 0;
	b.have_key = false;
	yajl_handle h = yajl_alloc(&callbacks, NULL, &b);
	if (h == NULL)
		return NULL;
	b.h = h;
	yajl_config(h, yajl_dont_validate_strings, 1);	/* plain() did */
	bool ok = yajl_parse(h, p, n) == yajl_status_ok &&
	    yajl_complete_parse(h) == yajl_status_ok;
	yajl_free(h);
	while (b.depth > 0)	/* the stack's references, after a failure */
		json_decref(b.stack[--b.depth]);
	const unsigned char *c = p;
	for (size_t i = b.root_end; ok && i < n; i++)
		ok = c[i] == ' ' || c[i] == '\t' || c[i] == '\n' || c[i] == '\r';
	if (!ok || b.root == NULL || b.root_end == 0 ||
	    (!json_is_object(b.root) && !json_is_array(b.root))) {
		json_decref(b.root);
		return NULL;
	}
	return b.root;
}

json_t *
decode_json_parse(const void *p, size_t n)
{
	json_t *j = decode_json_parse_fast(p, n);
	return j != NULL ? j : json_loadb(p, n, 0, NULL);
}
