/* event_json.c — canonical proto3 JSON for protobuf-c messages. */
#include "event_json.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void
camel(const char *name, char *out, size_t len)
{
	size_t o = 0;
	bool up = false;

	for (const char *p = name; *p != '\0' && o + 1 < len; p++) {
		if (*p == '_') {
			up = true;
			continue;
		}
		out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
		up = false;
	}
	out[o] = '\0';
}

char *
base64_encode(const uint8_t *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static json_t *
base64(const uint8_t *p, size_t n)
{
	char *b = base64_encode(p, n);
	json_t *s = json_string(b != NULL ? b : "");
	free(b);
	return s;
}

static json_t *
i64_string(long long v, bool is_unsigned)
{
	char buf[32];
	if (is_unsigned)
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	else
		snprintf(buf, sizeof(buf), "%lld", v);
	return json_string(buf);
}

/* One value of field `f` at `p`; NULL when it has the default value and
 * `skip_default` is set. */
static json_t *
value(const ProtobufCFieldDescriptor *f, const void *p, bool skip_default)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32: {
		int32_t v = *(const int32_t *)p;
		return skip_default && v == 0 ? NULL : json_integer(v);
	}
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32: {
		uint32_t v = *(const uint32_t *)p;
		return skip_default && v == 0 ? NULL : json_integer(v);
	}
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64: {
		int64_t v = *(const int64_t *)p;
		return skip_default && v == 0 ? NULL : i64_string(v, false);
	}
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: {
		uint64_t v = *(const uint64_t *)p;
		return skip_default && v == 0 ? NULL : i64_string((long long)v, true);
	}
	case PROTOBUF_C_TYPE_FLOAT: {
		float v = *(const float *)p;
		return skip_default && v == 0 ? NULL : json_real(v);
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		double v = *(const double *)p;
		return skip_default && v == 0 ? NULL : json_real(v);
	}
	case PROTOBUF_C_TYPE_BOOL: {
		protobuf_c_boolean v = *(const protobuf_c_boolean *)p;
		return skip_default && !v ? NULL : json_boolean(v);
	}
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		if (skip_default && v == 0)
			return NULL;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		return ev != NULL ? json_string(ev->name) : json_integer(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		if (s == NULL || (skip_default && s[0] == '\0'))
			return NULL;
		return json_string(s);
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		if (skip_default && b->len == 0)
			return NULL;
		return base64(b->data, b->len);
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
		return m != NULL ? event_json(m) : NULL;
	}
	}
	return NULL;
}

static size_t
elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

json_t *
event_json(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	json_t *o = json_object();
	char name[128];

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)msg;
		json_t *v = NULL;

		camel(f->name, name, sizeof(name));
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(char *const *)(base + f->offset);
			if (n == 0)
				continue;
			v = json_array();
			for (size_t k = 0; k < n; k++) {
				json_t *e = value(f, arr + k * elem_size(f->type), false);
				if (e != NULL)
					json_array_append_new(v, e);
			}
		} else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
			if (which != f->id)
				continue;
			v = value(f, base + f->offset, false);
		} else {
			v = value(f, base + f->offset, f->label == PROTOBUF_C_LABEL_NONE);
		}
		if (v != NULL)
			json_object_set_new(o, name, v);
	}
	return o;
}

/* ---- compact text, written directly -------------------------------------
 *
 * The attrs column's text for every stored event. Built as jansson values
 * and dumped with json_dumps(), it was a third of the daemon's
 * instructions per message; written here straight from the descriptors
 * it is the same bytes (test_event_json compares the two) for a fraction.
 * What jansson would leave out is left out: a string that is not valid
 * UTF-8, a real that is not finite. */

struct text {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
put(struct text *t, const char *s, size_t n)
{
	if (t->oom)
		return;
	if (t->cap - t->len < n + 1) {
		size_t cap = t->cap != 0 ? t->cap : 512;
		while (cap - t->len < n + 1)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (p == NULL) {
			t->oom = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void
put_s(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Whether any of the 8 bytes in w is below 0x20, '"' or '\\' (the bit
 * tricks for "a byte less than n" and "a zero byte" of Hacker's Delight,
 * 6-1; bytes from 0x80 up are never taken for one): most strings have
 * nothing to escape and are passed 8 bytes at a time. */
static inline bool
escape8(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
	return (((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

/* A JSON string as json_dumps() writes it: '"', '\\' and control
 * characters escaped, everything else as it is. */
static void
put_string(struct text *t, const char *s, size_t len)
{
	size_t from = 0;

	put(t, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		uint64_t w;
		while (i + 8 <= len && (memcpy(&w, s + i, 8), !escape8(w)))
			i += 8;
		if (i >= len)
			break;
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(t, s + from, i - from);
		from = i + 1;
		char esc[8];
		switch (c) {
		case '"': put_s(t, "\\\""); break;
		case '\\': put_s(t, "\\\\"); break;
		case '\b': put_s(t, "\\b"); break;
		case '\f': put_s(t, "\\f"); break;
		case '\n': put_s(t, "\\n"); break;
		case '\r': put_s(t, "\\r"); break;
		case '\t': put_s(t, "\\t"); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04X", c);
			put_s(t, esc);
		}
	}
	put(t, s + from, len - from);
	put(t, "\"", 1);
}

/* A real as jansson writes it: 17 significant digits, ".0" when it would
 * read as an integer, the exponent without '+' or leading zeros. */
static bool
put_real(struct text *t, double v)
{
	char buf[64];

	if (!isfinite(v))
		return false;
	int n = snprintf(buf, sizeof(buf), "%.17g", v);
	if (n < 0 || (size_t)n >= sizeof(buf) - 3)
		return false;
	if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
		memcpy(buf + n, ".0", 3);
		n += 2;
	}
	char *e = strchr(buf, 'e');
	if (e != NULL) {
		char *start = e + 1, *end = e + 2;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start)
			memmove(start, end, (size_t)(buf + n - end) + 1);
	}
	put_s(t, buf);
	return true;
}

/* An integer in decimal, in quotes for the 64-bit types (proto3 JSON):
 * as printf's %d, %u, %lld, %llu write it. */
static void
put_int(struct text *t, uint64_t magnitude, bool negative, bool quoted)
{
	char buf[24];	/* '"', '-', 20 digits, '"' */
	char *end = buf + sizeof(buf), *p = end;

	if (quoted)
		*--p = '"';
	do {
		*--p = (char)('0' + magnitude % 10);
		magnitude /= 10;
	} while (magnitude != 0);
	if (negative)
		*--p = '-';
	if (quoted)
		*--p = '"';
	put(t, p, (size_t)(end - p));
}

static void
put_signed(struct text *t, int64_t v, bool quoted)
{
	put_int(t, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0, quoted);
}

/* ---- member names ------------------------------------------------------
 *
 * A message type's member names as written, quoted and with the colon
 * ("\"communityId\":"), made once per type: camel-casing and escaping
 * them again for every field of every record was a fifth of the text's
 * instructions. The table only grows; an entry never changes once made. */

struct names {
	const ProtobufCMessageDescriptor *d;
	char **text;		/* per field */
	size_t *len;
};

#define NAMES_MAX 64

static struct names names_table[NAMES_MAX];
static size_t names_n;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static void put_string(struct text *t, const char *s, size_t len);

/* The names of d's fields, or NULL (out of memory, or more types than the
 * table holds: the caller makes each name itself). */
static const struct names *
names_of(const ProtobufCMessageDescriptor *d)
{
	const struct names *found = NULL;

	pthread_mutex_lock(&names_lock);
	for (size_t i = 0; i < names_n; i++)
		if (names_table[i].d == d) {
			found = &names_table[i];
			break;
		}
	if (found == NULL && names_n < NAMES_MAX) {
		struct names nm = { d, calloc(d->n_fields + 1, sizeof(char *)),
			calloc(d->n_fields + 1, sizeof(size_t)) };
		bool ok = nm.text != NULL && nm.len != NULL;
		for (unsigned i = 0; ok && i < d->n_fields; i++) {
			char name[128];
			struct text one = { 0 };
			camel(d->fields[i].name, name, sizeof(name));
			put_string(&one, name, strlen(name));
			put(&one, ":", 1);
			ok = !one.oom;
			nm.text[i] = one.p;
			nm.len[i] = one.len;
		}
		if (ok) {
			names_table[names_n] = nm;
			found = &names_table[names_n++];
		} else {
			for (unsigned i = 0; nm.text != NULL && i < d->n_fields; i++)
				free(nm.text[i]);
			free(nm.text);
			free(nm.len);
		}
	}
	pthread_mutex_unlock(&names_lock);
	return found;
}

static void text_message(struct text *t, const ProtobufCMessage *msg);

/* An integer value, 64-bit ones quoted; false (nothing written) for a
 * default left out. */
static bool
text_uint(struct text *t, uint64_t v, bool quoted, bool skip_default)
{
	if (skip_default && v == 0)
		return false;
	put_int(t, v, false, quoted);
	return true;
}

static bool
text_int(struct text *t, int64_t v, bool quoted, bool skip_default)
{
	if (skip_default && v == 0)
		return false;
	put_signed(t, v, quoted);
	return true;
}

/* Writes one value of field `f` at `p`; false (nothing written) where
 * value() gives NULL. */
static bool
text_value(struct text *t, const ProtobufCFieldDescriptor *f, const void *p, bool skip_default)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return text_int(t, *(const int32_t *)p, false, skip_default);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return text_uint(t, *(const uint32_t *)p, false, skip_default);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return text_int(t, *(const int64_t *)p, true, skip_default);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return text_uint(t, *(const uint64_t *)p, true, skip_default);
	case PROTOBUF_C_TYPE_FLOAT: {
		float v = *(const float *)p;
		return !(skip_default && v == 0) && put_real(t, v);
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		double v = *(const double *)p;
		return !(skip_default && v == 0) && put_real(t, v);
	}
	case PROTOBUF_C_TYPE_BOOL: {
		protobuf_c_boolean v = *(const protobuf_c_boolean *)p;
		if (skip_default && !v)
			return false;
		put_s(t, v ? "true" : "false");
		return true;
	}
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		if (skip_default && v == 0)
			return false;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		if (ev != NULL && util_utf8_valid(ev->name, strlen(ev->name))) {
			put_string(t, ev->name, strlen(ev->name));
		} else {
			put_signed(t, v, false);
		}
		return true;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		if (s == NULL || (skip_default && s[0] == '\0'))
			return false;
		size_t len = strlen(s);
		if (!util_utf8_valid(s, len))
			return false;
		put_string(t, s, len);
		return true;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		if (skip_default && b->len == 0)
			return false;
		char *s = base64_encode(b->data, b->len);
		if (s == NULL) {
			t->oom = true;
			return false;
		}
		put_string(t, s, strlen(s));
		free(s);
		return true;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
		if (m == NULL)
			return false;
		text_message(t, m);
		return true;
	}
	}
	return false;
}

/* A field's "name": before its value; taken back when there is none. */
static void
text_message(struct text *t, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const struct names *nm = names_of(d);
	const char *base = (const char *)msg;
	bool first = true;
	char name[128];

	put(t, "{", 1);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		size_t mark = t->len;

		if (f->label != PROTOBUF_C_LABEL_REPEATED && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED &&
		    *(const size_t *)(base + f->quantifier_offset) == 0)
			continue;
		if (!first)
			put(t, ",", 1);
		if (nm != NULL) {
			put(t, nm->text[i], nm->len[i]);
		} else {
			camel(f->name, name, sizeof(name));
			put_string(t, name, strlen(name));
			put(t, ":", 1);
		}
		bool wrote;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(char *const *)(base + f->offset);
			bool any = false;
			put(t, "[", 1);
			for (size_t k = 0; k < n; k++) {
				size_t before = t->len;
				if (any)
					put(t, ",", 1);
				if (text_value(t, f, arr + k * elem_size(f->type), false))
					any = true;
				else if (!t->oom)
					t->len = before;
			}
			put(t, "]", 1);
			wrote = true;
		} else {
			wrote = text_value(t, f, base + f->offset,
			    !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    f->label == PROTOBUF_C_LABEL_NONE);
		}
		if (wrote)
			first = false;
		else if (!t->oom)
			t->len = mark;
	}
	put(t, "}", 1);
}

char *
event_json_text(const ProtobufCMessage *msg)
{
	struct text t = { 0 };

	text_message(&t, msg);
	if (t.oom) {
		free(t.p);
		return NULL;
	}
	return t.p;
}

/* ---- personal data ---------------------------------------------------- */

enum mask_how {
	MASK_ENDS,	/* the first character and the last two kept */
	MASK_DROP,	/* removed */
};

/* Where an Event's JSON object holds personal data: the body (the oneof's
 * member) and its field. */
static const struct {
	const char *body, *field;
	enum mask_how how;
} mask_rules[] = {
	{ "person", "cardRef", MASK_ENDS },
	{ "person", "personRef", MASK_ENDS },
	{ "person", "personName", MASK_DROP },
	{ "person", "pictureUrl", MASK_DROP },
	{ "vehicle", "plate", MASK_ENDS },
	{ "vehicle", "plateNormalized", MASK_ENDS },
	{ "vehicle", "pictureUrls", MASK_DROP },
	{ "cameraAlarm", "pictureUrls", MASK_DROP },
	{ "cameraAlarm", "clipUrl", MASK_DROP },
	{ "peephole", "household", MASK_ENDS },
	{ "peephole", "snapshotUrl", MASK_DROP },
	{ "welfare", "household", MASK_ENDS },
};

/* Fewer characters than this are masked throughout. */
#define MASK_MIN_CHARS 5

/* `s` (valid UTF-8: a JSON string) with its characters but the first and
 * the last two as '*'; NULL when out of memory. Never longer than `s`. */
static char *
mask_ends(const char *s)
{
	size_t len = strlen(s), n = 0, k = 0;
	char *out = malloc(len + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			k++;	/* s[i] starts character k */
		if (n >= MASK_MIN_CHARS && (k == 1 || k > n - 2))
			*o++ = s[i];
		else if (((unsigned char)s[i] & 0xc0) != 0x80)
			*o++ = '*';
	}
	*o = '\0';
	return out;
}

void
event_json_mask(json_t *event)
{
	if (!json_is_object(event))
		return;
	for (size_t i = 0; i < sizeof(mask_rules) / sizeof(mask_rules[0]); i++) {
		json_t *body = json_object_get(event, mask_rules[i].body);
		json_t *v = json_object_get(body, mask_rules[i].field);
		if (v == NULL)
			continue;
		char *m = NULL;
		if (mask_rules[i].how == MASK_ENDS && json_is_string(v))
			m = mask_ends(json_string_value(v));
		/* Anything not masked is removed: also when out of memory. */
		json_t *masked = m != NULL ? json_string(m) : NULL;
		if (masked == NULL || json_object_set_new(body, mask_rules[i].field, masked) != 0)
			json_object_del(body, mask_rules[i].field);
		free(m);
	}
}
