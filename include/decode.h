/* decode.c — from one journal record to one Event, or a reason why not.
 *
 * Pure: bytes, the route that matched and the receive time in; a record or
 * a rejection out. No I/O, no clock, no globals: the same input always
 * gives the same output, which is what makes ids deterministic and golden
 * tests possible.
 *
 *   topic ──route_matches()──▶ route ──decoder──▶ Event (envelope + body)
 *                                 │                 or reason
 *                                 └─ no route ─────▶ reason "no_route"
 *
 * The framework (decode_record) fills the envelope from the route and its
 * captures (community, device, class, vendor, topic, journal seq, receive
 * time), runs the decoder, then sets the id and the clock-skew flag. A
 * decoder fills the event type, severity, device time, the body, and says
 * what identifies the event (the device's serial or event id when it has
 * one).
 *
 * Rejection reasons are machine-readable: no_route, oversize, empty,
 * bad_utf8, bad_json, missing_field:<name>, bad_value:<name>,
 * unsupported:<what>, too_long:<field>.
 *
 * Limits: every string field of the record has a length limit (decode.c,
 * also written in event.proto); a longer value, from the payload or the
 * topic, rejects the message as too_long:<field> (a few free-text fields
 * are cut instead, as event.proto says). The device's serial is at most
 * DECODE_SERIAL_MAX bytes.
 *
 * Identity: id = UUIDv8 over SHA-256("gridbridge/v1", vendor, community,
 * device id, then either the device's serial ("s", serial, event type and
 * device time if any) or the device's event time and the payload ("t",
 * time, payload), or, when the payload has neither, the journal receive
 * time and the payload ("r", time, payload)).
 * The same message delivered twice has the same id whenever the payload
 * carries a device time or serial; the last form cannot tell a redelivery
 * after a crash from a new message, so such a message can be stored twice.
 */
#ifndef GRIDBRIDGE_DECODE_H
#define GRIDBRIDGE_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.pb-c.h"
#include "route.h"

typedef Gridbridge__V1__Event Event;

#define DECODE_SERIAL_MAX 256

/* The decoders, by configuration name. */
enum decoder_id {
	DECODER_HIKVISION,		/* "hikvision": ISAPI JSON: access, ANPR, heartbeat */
	DECODER_DAHUA,			/* "dahua": AccessControl events */
	DECODER_CAMERA_ALARM,		/* "camera_alarm": analytics alarms incl. high-altitude throwing */
	DECODER_PEEPHOLE,		/* "peephole": smart peephole (Tuya codes) */
	DECODER_GATEWAY,		/* "gateway": edge gateway status and LWT */
	DECODER_Z2M_DEVICE,		/* "z2m_device": Zigbee2MQTT device state (contact sensors) */
	DECODER_Z2M_AVAILABILITY,	/* "z2m_availability": Zigbee2MQTT <device>/availability */
	DECODER_Z2M_BRIDGE,		/* "z2m_bridge": zigbee2mqtt/bridge/state */
	DECODER_SHELLY_SENSOR,		/* "shelly_sensor": shellies/<id>/sensor/state open|close */
	DECODER_SHELLY_ONLINE,		/* "shelly_online": shellies/<id>/online true|false */
	DECODER_TASMOTA_LWT,		/* "tasmota_lwt": tele/<topic>/LWT Online|Offline */
	DECODER_ACCESS,			/* "access": Hikvision or Dahua, told apart by the payload */
	DECODER_REPORT,			/* "report": resident reports (QR codes on building doors) */
	DECODER_COUNT
};

/* A configured route: which topics, decoded how, belonging where. */
struct route {
	char *name;
	struct route_pattern pattern;
	enum decoder_id decoder;
	Gridbridge__V1__DeviceClass device_class;
	char *community;		/* when the topic has no {community} */
	int tz_offset_min;		/* zone of device-local times, minutes east of UTC */
	bool utc_is_local;		/* Dahua: UTC is local wall-clock time */
	int rate_limit;			/* messages/s per device (ratelimit.h); 0: none */
	int rate_burst;
};

/* Bump allocator for one decode: strings and sub-messages of the record
 * live here until the next decode_reset(). */
struct arena {
	struct arena_block *head;
};
void *arena_alloc(struct arena *a, size_t size);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
void arena_reset(struct arena *a);
void arena_free(struct arena *a);

struct decode_in {
	const struct route *route;
	const struct route_match *match;
	const char *topic;
	size_t topic_len;
	const uint8_t *payload;
	size_t payload_len;
	bool oversize;			/* journaled without its payload */
	int64_t received_us;
	uint64_t journal_seq;
	int64_t max_skew_us;		/* device time further than this is flagged */
};

/* What a decoder hands back. The framework owns everything here. */
struct decode_out {
	Event ev;
	struct arena arena;
	char reason[96];		/* set on rejection */
	/* Identity material set by the decoder: */
	const char *serial;		/* the device's own serial / event id, or NULL */
	size_t serial_len;
	bool has_device_time;		/* ev.event_time_us came from the payload */
};

typedef int (*decoder_fn)(const struct decode_in *in, struct decode_out *out);

/* Name <-> id, and the vendor string that goes into Event.vendor. */
const char *decoder_name(enum decoder_id id);
int decoder_by_name(const char *name, enum decoder_id *id);
const char *decoder_vendor(enum decoder_id id);

/* The configuration's checks of a [route]'s decoder, class and timezone
 * (config_check_fn): report(ctx, why) when decode would not know it. */
void decode_check_decoder(const char *name, void (*report)(void *ctx, const char *why),
    void *ctx);
void decode_check_class(const char *name, void (*report)(void *ctx, const char *why),
    void *ctx);
void decode_check_timezone(const char *tz, void (*report)(void *ctx, const char *why),
    void *ctx);

void decode_out_init(struct decode_out *out);
void decode_out_free(struct decode_out *out);

/* Decodes one record. Returns 0 with out->ev filled, or -1 with
 * out->reason. `out` is reset first, so one can be reused. */
int decode_record(const struct decode_in *in, struct decode_out *out);

/* The first route whose pattern matches `topic`, or NULL. */
const struct route *decode_find_route(const struct route *routes, size_t n,
    const char *topic, size_t topic_len, struct route_match *m);

/* ---- helpers for decoders (decode_util.c) ---------------------------- */

struct json_t;

/* Sets out->reason (printf-style) and returns -1. */
int decode_reject(struct decode_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* What json_loadb(p, n, 0, NULL) returns (NULL or an equal value, keys in
 * the same order), read by yajl when the bytes allow and by jansson
 * otherwise (decode_json.c). _fast returns NULL also when it leaves the
 * bytes to jansson. */
struct json_t *decode_json_parse(const void *p, size_t n);
struct json_t *decode_json_parse_fast(const void *p, size_t n);

/* Parses a JSON object payload; on failure sets the reason (bad_json or
 * bad_utf8) and returns NULL. The caller releases the result with
 * decode_json_free() (json_decref() also works). */
struct json_t *decode_json_object(const struct decode_in *in, struct decode_out *out);

/* decode_record() brackets its decoder with these: in between, jansson
 * allocates on this thread from a bump arena that the end rewinds, so
 * every jansson value made in between must be dropped by then (see
 * decode_util.c). Outside, jansson uses malloc() and free() as usual. */
void decode_json_begin(void);
void decode_json_end(void);
/* Releases a parsed value: nothing to do inside a decode (the arena goes
 * at its end), json_decref() outside. */
void decode_json_free(struct json_t *j);

/* Times. All return 0 and set *us (UTC µs since the epoch), or -1.
 * ISO 8601 "2025-03-18T07:42:15+08:00", "...Z", "...15.123+0800"; without
 * an offset the time is local to `tz_offset_min`. Also "2025-03-18 07:42:15". */
int decode_time_iso8601(const char *s, int tz_offset_min, int64_t *us);
/* Epoch seconds, or milliseconds when the value is too large for seconds. */
int decode_time_epoch(double v, int64_t *us);
/* Wall-clock seconds "dressed as" epoch seconds: local time in the zone. */
int64_t decode_time_local_epoch(int64_t local_seconds, int tz_offset_min);

/* Upper case, without spaces, '-', '·', '•' or '.': for plates. Result in
 * the arena. */
char *decode_plate_normalize(struct arena *a, const char *plate);

/* "+08:00", "+0800", "-05", "Z" or "UTC" -> minutes east of UTC. */
int decode_parse_tz(const char *s, int *minutes);
/* JSON members. A non-empty string member, or NULL (absent, another
 * type, or ""); the same copied into the arena. */
const char *decode_json_str(struct json_t *o, const char *key);
char *decode_json_strdup(struct arena *a, struct json_t *o, const char *key);
/* An integer in [lo, hi]: a JSON integer, a real with an integral value
 * (at most 9e15 either way, where doubles stop being exact), or with
 * DECODE_INT_QUOTED a decimal string of at most 18 digits, as some
 * firmwares quote their numbers. With DECODE_INT_ROUND a real with a
 * fraction is rounded to the nearest integer instead of refused. Booleans,
 * null, NaN and anything out of range are not integers. */
#define DECODE_INT_QUOTED 1u
#define DECODE_INT_ROUND 2u
bool decode_json_integer(struct json_t *v, unsigned flags, long long lo, long long hi,
    long long *out);
/* A member that names something: a non-empty string as is, or an integer
 * as decimal text; NULL otherwise. In the arena. */
char *decode_json_ref(struct arena *a, struct json_t *o, const char *key);
/* A value quoted in a rejection reason: at most 40 bytes, cut on a UTF-8
 * boundary, control characters replaced by '?'. */
const char *decode_clip(const char *s, char *buf, size_t size);

/* A wrapped number in the arena. */
Gridbridge__V1__Int32Value *decode_int32(struct arena *a, int32_t v);

/* ---- the decoders ---------------------------------------------------- */

int decode_hikvision(const struct decode_in *in, struct decode_out *out);
int decode_dahua(const struct decode_in *in, struct decode_out *out);
int decode_camera_alarm(const struct decode_in *in, struct decode_out *out);
int decode_peephole(const struct decode_in *in, struct decode_out *out);
int decode_gateway(const struct decode_in *in, struct decode_out *out);
int decode_z2m_device(const struct decode_in *in, struct decode_out *out);
int decode_z2m_availability(const struct decode_in *in, struct decode_out *out);
int decode_z2m_bridge(const struct decode_in *in, struct decode_out *out);
int decode_shelly_sensor(const struct decode_in *in, struct decode_out *out);
int decode_shelly_online(const struct decode_in *in, struct decode_out *out);
int decode_tasmota_lwt(const struct decode_in *in, struct decode_out *out);
int decode_access(const struct decode_in *in, struct decode_out *out);
int decode_report(const struct decode_in *in, struct decode_out *out);

#endif
