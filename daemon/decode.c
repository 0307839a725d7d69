/* decode.c — the decode framework: routes, envelope, identity; see decode.h. */
#include "decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_names.h"
#include "sha256.h"
#include "util.h"

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
		b = util_malloc(sizeof(*b) + bs);
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
	[DECODER_REPORT] = { "report", "report", decode_report },
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

/* ---- the configuration's checks ------------------------------------------ */

void
decode_check_decoder(const char *name, void (*report)(void *ctx, const char *why), void *ctx)
{
	enum decoder_id d;
	char why[160];

	if (decoder_by_name(name, &d) != 0) {
		snprintf(why, sizeof(why), "unknown decoder '%s'", name);
		report(ctx, why);
	}
}

void
decode_check_class(const char *name, void (*report)(void *ctx, const char *why), void *ctx)
{
	Gridbridge__V1__DeviceClass c;
	char why[160];

	if (!event_class_by_name(name, &c)) {
		snprintf(why, sizeof(why), "unknown device class '%s'", name);
		report(ctx, why);
	}
}

void
decode_check_timezone(const char *tz, void (*report)(void *ctx, const char *why), void *ctx)
{
	int minutes;
	char why[160];

	if (decode_parse_tz(tz, &minutes) != 0) {
		snprintf(why, sizeof(why), "'%s' is not an offset like +08:00", tz);
		report(ctx, why);
	}
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
	struct route_levels l;

	if (!route_split(topic, topic_len, &l)) {
		memset(m, 0, sizeof(*m));
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (route_matches_levels(&routes[i].pattern, &l, m))
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

static void
put_field(struct sha256 *h, const void *p, size_t n)
{
	uint8_t len[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
		(uint8_t)n };
	sha256_update(h, len, 4);
	sha256_update(h, p, n);
}

static void
put_i64(struct sha256 *h, int64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
	put_field(h, b, 8);
}

/* ---- limits ------------------------------------------------------------- */

/* The length limit of every string field of the record, by its .proto
 * name (event.proto says the same). A longer value from a payload or a
 * topic rejects the message as too_long:<field>, except for the fields
 * marked `cut`, which are cut on a UTF-8 boundary. Repeated fields hold at
 * most `items` values (more: rejected, or the rest dropped when `cut`).
 * Indexed columns (community, device, plate) stay far below PostgreSQL's
 * ~2,700-byte limit for an index entry. */
struct field_limit {
	const char *name;
	size_t max;
	size_t items;
	bool cut;
};

#define LIMIT_DEFAULT 256
#define LIMIT_ITEMS 16
/* No limit is shorter: a shorter string (most of them) needs no lookup.
 * LIMIT() refuses to compile a shorter one. */
#define LIMIT_SHORTEST 32
#define LIMIT(name, max, items, cut) \
	{ name, (max) + 0 * sizeof(char[(max) >= LIMIT_SHORTEST ? 1 : -1]), items, cut }

static const struct field_limit field_limits[] = {
	LIMIT("community_id", 64, 0, false),
	LIMIT("device_id", 128, 0, false),
	LIMIT("source_topic", 1024, 0, false),
	LIMIT("plate", 32, 0, false),
	LIMIT("plate_normalized", 32, 0, false),
	LIMIT("plate_color", 32, 0, false),
	LIMIT("vehicle_type", 64, 0, false),
	LIMIT("vehicle_color", 32, 0, false),
	LIMIT("picture_url", 2048, 0, false),
	LIMIT("picture_urls", 2048, 8, false),
	LIMIT("clip_url", 2048, 0, false),
	LIMIT("snapshot_url", 2048, 0, false),
	LIMIT("reason", 256, 0, true),
	LIMIT("offline_devices", 128, 256, true),
	LIMIT("report_id", 64, 0, false),
};

static const struct field_limit *
limit_of(const char *name)
{
	static const struct field_limit def = { "", LIMIT_DEFAULT, LIMIT_ITEMS, false };

	for (size_t i = 0; i < sizeof(field_limits) / sizeof(field_limits[0]); i++)
		if (strcmp(field_limits[i].name, name) == 0)
			return &field_limits[i];
	return &def;
}

/* `s` cut to at most `max` bytes, on a UTF-8 boundary, in the arena. */
static char *
cut_utf8(struct arena *a, const char *s, size_t max)
{
	size_t n = max;

	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return arena_strndup(a, s, n);
}

/* Checks (and where allowed cuts) every string of `m` and its
 * sub-messages. Returns 0, or -1 with the reason set. */
static int
check_limits(ProtobufCMessage *m, struct decode_out *out)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char *member = (char *)m + f->offset;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
			if (which != f->id)
				continue;
		}
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			const struct field_limit *lim = limit_of(f->name);
			size_t *n = (size_t *)((char *)m + f->quantifier_offset);
			if (*n > lim->items) {
				if (!lim->cut)
					return decode_reject(out, "too_long:%s", f->name);
				*n = lim->items;
			}
			for (size_t k = 0; k < *n; k++) {
				void *item = (*(void ***)member)[k];
				if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
					if (item != NULL && check_limits(item, out) != 0)
						return -1;
				} else if (item != NULL && strlen(item) > lim->max) {
					if (!lim->cut)
						return decode_reject(out, "too_long:%s", f->name);
					(*(char ***)member)[k] = cut_utf8(&out->arena, item, lim->max);
				}
			}
			continue;
		}
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			ProtobufCMessage *sub = *(ProtobufCMessage **)member;
			if (sub != NULL && check_limits(sub, out) != 0)
				return -1;
			continue;
		}
		char **sp = (char **)member;
		if (*sp == NULL || strnlen(*sp, LIMIT_SHORTEST + 1) <= LIMIT_SHORTEST)
			continue;
		const struct field_limit *lim = limit_of(f->name);
		if (strlen(*sp) > lim->max) {
			if (!lim->cut)
				return decode_reject(out, "too_long:%s", f->name);
			*sp = cut_utf8(&out->arena, *sp, lim->max);
		}
	}
	return 0;
}

/* UUIDv8 (RFC 9562): 122 bits of SHA-256 over length-prefixed fields. */
static void
make_id(const struct decode_in *in, struct decode_out *out, uint8_t id[16])
{
	struct sha256 h;
	uint8_t d[32];
	const Event *ev = &out->ev;

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
	sha256_final(&h, d);
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
	if (check_limits(&ev->base, out) != 0)
		return -1;
	if (out->serial != NULL && out->serial_len > DECODE_SERIAL_MAX)
		return decode_reject(out, "too_long:serial");
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
