/* dec_camera.c — camera analytics alarms, smart peepholes, edge gateways.
 *
 *   camera_alarm  sac/<community>/camera/<device>/alarm: eventType, eventId,
 *                 dateTime, building, facade, estimatedFloor, floorRange,
 *                 confidence, pictures[].url, videoClip.url
 *   peephole      sac/<community>/peephole/<device>/event: event and/or
 *                 eventCode (Tuya notification codes), household, dateTime,
 *                 durationSec, battery, snapshotUrl
 *   gateway       sac/<community>/gateway/<device>/status: state, reason, ts,
 *                 uptimeSec, fw, devicesTotal, devicesOnline, offline[]; or a
 *                 plain-text "online"/"offline" (LWT of some gateways)
 *
 * Optional fields that are missing, null or of the wrong type are left out;
 * a device time that is present but unusable rejects the record. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

/* ---- helpers ------------------------------------------------------------ */

/* ASCII case-insensitive equality (not locale-dependent). */
static bool
eq_nocase(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return *a == '\0' && *b == '\0';
}

/* A member, with JSON null counted as absent. */
static json_t *
member(json_t *o, const char *key)
{
	json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
	return json_is_null(v) ? NULL : v;
}

/* A string member, or NULL when absent or not a string. */
static const char *
member_str(json_t *o, const char *key)
{
	json_t *v = member(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A non-empty string member copied into the arena, or NULL. */
static char *
member_strdup(struct arena *a, json_t *o, const char *key)
{
	const char *s = member_str(o, key);
	return s != NULL && s[0] != '\0' ? arena_strdup(a, s) : NULL;
}

/* An optional whole-number member in [lo, hi] as an arena Int32Value, or
 * NULL. */
static Gridbridge__V1__Int32Value *
member_int32(struct arena *a, json_t *o, const char *key, int32_t lo, int32_t hi)
{
	long long v;
	return decode_json_integer(member(o, key), 0, lo, hi, &v) ?
	    decode_int32(a, (int32_t)v) : NULL;
}

/* A vendor value for a rejection reason: printable ASCII only (anything
 * else becomes '?'), at most 40 bytes, so that the reason stays short,
 * valid UTF-8 and safe to log. */
static const char *
reason_value(char buf[static 41], const char *s)
{
	size_t i;
	for (i = 0; i < 40 && s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[i] = '\0';
	return buf;
}

/* Device time from `key`: an ISO 8601 string (local to the route's zone
 * when it has no offset) or epoch seconds/milliseconds. Absent: left to the
 * receive time. Present but unusable: bad_value:<key>. */
static int
device_time(const struct decode_in *in, struct decode_out *out, json_t *o, const char *key)
{
	json_t *v = member(o, key);
	int64_t us;

	if (v == NULL)
		return 0;
	if (json_is_string(v)) {
		if (decode_time_iso8601(json_string_value(v), in->route->tz_offset_min, &us) != 0)
			return decode_reject(out, "bad_value:%s", key);
	} else if (json_is_number(v)) {
		if (decode_time_epoch(json_number_value(v), &us) != 0)
			return decode_reject(out, "bad_value:%s", key);
	} else {
		return decode_reject(out, "bad_value:%s", key);
	}
	out->ev.event_time_us = us;
	out->has_device_time = true;
	return 0;
}

/* The device id from the payload when the topic did not name one. */
static void
device_from_payload(struct decode_out *out, json_t *o)
{
	if (out->ev.device_id[0] != '\0')
		return;
	char *id = member_strdup(&out->arena, o, "deviceId");
	if (id != NULL)
		out->ev.device_id = id;
}

/* ---- camera_alarm --------------------------------------------------------- */

static const struct {
	const char *name;
	Gridbridge__V1__AlarmKind kind;
} alarm_kinds[] = {
	{ "highAltitudeThrowing", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_HIGH_ALTITUDE_THROWING },
	{ "intrusion", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_INTRUSION },
	{ "regionEntrance", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_INTRUSION },
	{ "fieldDetection", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_INTRUSION },
	{ "lineDetection", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_LINE_CROSSING },
	{ "lineCrossing", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_LINE_CROSSING },
	{ "loitering", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_LOITERING },
	{ "fireDetection", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_FIRE_SMOKE },
	{ "smokeDetection", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_FIRE_SMOKE },
	{ "tamper", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_TAMPER },
	{ "shelteralarm", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_TAMPER },
	{ "videoTampering", GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_TAMPER },
};

/* Confidence in percent: an integer 0..100, or a real; a real in 0..1 is a
 * fraction (0.87 -> 87), a larger one a percentage (87.5 -> 88). */
static Gridbridge__V1__Int32Value *
alarm_confidence(struct arena *a, json_t *o)
{
	json_t *v = member(o, "confidence");
	long long pct;

	if (json_is_integer(v)) {
		if (!decode_json_integer(v, 0, 0, 100, &pct))
			return NULL;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d) || d < 0 || d > 100)
			return NULL;
		if (d <= 1.0)
			d *= 100.0;
		pct = lround(d);
	} else {
		return NULL;
	}
	return decode_int32(a, (int32_t)pct);
}

/* pictures: [{"url": ...}, ...] (bare strings accepted too). */
static void
alarm_pictures(struct arena *a, Gridbridge__V1__CameraAlarm *c, json_t *o)
{
	json_t *arr = member(o, "pictures");
	size_t i, n;
	json_t *p;

	if (!json_is_array(arr) || (n = json_array_size(arr)) == 0)
		return;
	c->picture_urls = arena_alloc(a, n * sizeof(*c->picture_urls));
	json_array_foreach(arr, i, p) {
		const char *url = json_is_string(p) ? json_string_value(p) : member_str(p, "url");
		if (url != NULL && url[0] != '\0')
			c->picture_urls[c->n_picture_urls++] = arena_strdup(a, url);
	}
	if (c->n_picture_urls == 0)
		c->picture_urls = NULL;
}

/* floorRange: [min, max], both whole numbers, min <= max; else left out. */
static void
alarm_floor_range(struct arena *a, Gridbridge__V1__CameraAlarm *c, json_t *o)
{
	json_t *r = member(o, "floorRange");
	long long lo, hi;

	if (!json_is_array(r) || json_array_size(r) != 2 ||
	    !decode_json_integer(json_array_get(r, 0), 0, INT32_MIN, INT32_MAX, &lo) ||
	    !decode_json_integer(json_array_get(r, 1), 0, INT32_MIN, INT32_MAX, &hi) || lo > hi)
		return;
	c->floor_min = decode_int32(a, (int32_t)lo);
	c->floor_max = decode_int32(a, (int32_t)hi);
}

int
decode_camera_alarm(const struct decode_in *in, struct decode_out *out)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	char buf[41];
	json_t *o = decode_json_object(in, out);
	int rc = -1;

	if (o == NULL)
		return -1;

	json_t *type = member(o, "eventType");
	if (type == NULL) {
		decode_reject(out, "missing_field:eventType");
		goto done;
	}
	if (!json_is_string(type) || json_string_value(type)[0] == '\0') {
		decode_reject(out, "bad_value:eventType");
		goto done;
	}
	if (device_time(in, out, o, "dateTime") != 0)
		goto done;

	Gridbridge__V1__CameraAlarm *c = arena_alloc(a, sizeof(*c));
	gridbridge__v1__camera_alarm__init(c);
	/* An alarm the table does not know is still an alarm. */
	c->kind = GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_OTHER;
	for (size_t i = 0; i < sizeof(alarm_kinds) / sizeof(alarm_kinds[0]); i++) {
		if (eq_nocase(json_string_value(type), alarm_kinds[i].name)) {
			c->kind = alarm_kinds[i].kind;
			break;
		}
	}
	c->estimated_floor = member_int32(a, o, "estimatedFloor", INT32_MIN, INT32_MAX);
	alarm_floor_range(a, c, o);
	char *s;
	if ((s = member_strdup(a, o, "building")) != NULL)
		c->building = s;
	if ((s = member_strdup(a, o, "facade")) != NULL)
		c->facade = s;
	c->confidence = alarm_confidence(a, o);
	alarm_pictures(a, c, o);
	if ((s = member_strdup(a, member(o, "videoClip"), "url")) != NULL)
		c->clip_url = s;

	/* eventId: the camera's id for the alarm, a string or a number. */
	json_t *id = member(o, "eventId");
	if (json_is_string(id) && json_string_value(id)[0] != '\0') {
		c->vendor_event_id = arena_strdup(a, json_string_value(id));
	} else if (json_is_integer(id)) {
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(id));
		c->vendor_event_id = arena_strdup(a, buf);
	}
	if (c->vendor_event_id[0] != '\0') {
		out->serial = c->vendor_event_id;
		out->serial_len = strlen(c->vendor_event_id);
	}

	device_from_payload(out, o);
	ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_CAMERA_ALARM;
	ev->severity = c->kind == GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_HIGH_ALTITUDE_THROWING ?
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_CRITICAL : GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_CAMERA_ALARM;
	ev->camera_alarm = c;
	rc = 0;
done:
	decode_json_free(o);
	return rc;
}

/* ---- peephole ------------------------------------------------------------- */

/* Notification codes. Only 4 = linger is attested (the vendor sample); 1 and
 * 2 are inferred, not from vendor documentation. `event` wins when both are
 * given and disagree; eventCode is kept as vendor_code either way. */
static const struct {
	int code;
	Gridbridge__V1__EventType type;
} peephole_codes[] = {
	{ 1, GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_DOORBELL },	/* inferred */
	{ 2, GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_PASS_BY },	/* inferred */
	{ 4, GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_LINGER },	/* sample */
};

static const struct {
	const char *name;
	Gridbridge__V1__EventType type;
} peephole_events[] = {
	{ "doorbell", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_DOORBELL },
	{ "passBy", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_PASS_BY },
	{ "pass_by", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_PASS_BY },
	{ "linger", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_LINGER },
};

int
decode_peephole(const struct decode_in *in, struct decode_out *out)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	char buf[41];
	json_t *o = decode_json_object(in, out);
	int rc = -1;

	if (o == NULL)
		return -1;

	Gridbridge__V1__EventType type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
	json_t *event = member(o, "event"), *code = member(o, "eventCode");
	long long vcode = 0;
	bool have_code = decode_json_integer(code, 0, INT32_MIN, INT32_MAX, &vcode);

	if (event != NULL) {
		if (!json_is_string(event)) {
			decode_reject(out, "bad_value:event");
			goto done;
		}
		for (size_t i = 0; i < sizeof(peephole_events) / sizeof(peephole_events[0]); i++) {
			if (eq_nocase(json_string_value(event), peephole_events[i].name)) {
				type = peephole_events[i].type;
				break;
			}
		}
		if (type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED) {
			decode_reject(out, "unsupported:event:%s",
			    reason_value(buf, json_string_value(event)));
			goto done;
		}
	} else if (code != NULL) {
		if (!have_code) {
			decode_reject(out, "bad_value:eventCode");
			goto done;
		}
		for (size_t i = 0; i < sizeof(peephole_codes) / sizeof(peephole_codes[0]); i++) {
			if (peephole_codes[i].code == vcode) {
				type = peephole_codes[i].type;
				break;
			}
		}
		if (type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED) {
			decode_reject(out, "unsupported:eventCode:%d", (int)vcode);
			goto done;
		}
	} else {
		decode_reject(out, "missing_field:event");
		goto done;
	}
	if (device_time(in, out, o, "dateTime") != 0)
		goto done;

	Gridbridge__V1__PeepholeEvent *p = arena_alloc(a, sizeof(*p));
	gridbridge__v1__peephole_event__init(p);
	char *s;
	if ((s = member_strdup(a, o, "household")) != NULL)
		p->household = s;
	p->duration_sec = member_int32(a, o, "durationSec", 0, INT32_MAX);
	p->battery_percent = member_int32(a, o, "battery", 0, 100);
	if ((s = member_strdup(a, o, "snapshotUrl")) != NULL)
		p->snapshot_url = s;
	if (have_code)
		p->vendor_code = (int32_t)vcode;

	device_from_payload(out, o);
	ev->event_type = type;
	ev->severity = type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PEEPHOLE_LINGER ?
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE : GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_PEEPHOLE;
	ev->peephole = p;
	rc = 0;
done:
	decode_json_free(o);
	return rc;
}

/* ---- gateway -------------------------------------------------------------- */

static void
set_status(struct decode_out *out, Gridbridge__V1__DeviceStatus *st)
{
	Event *ev = &out->ev;

	switch (st->state) {
	case GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE:
		ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_OFFLINE;
		ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE;
		break;
	case GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_HEARTBEAT:
		ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_HEARTBEAT;
		ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
		break;
	default:
		ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_ONLINE;
		ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
		break;
	}
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_STATUS;
	ev->status = st;
}

/* A plain-text "online"/"offline" (any case, surrounding whitespace
 * ignored): 1 online, 0 offline, -1 something else. */
static int
plain_state(const uint8_t *p, size_t n)
{
	char word[8];

	while (n > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' || p[0] == '\n')) {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' ||
	    p[n - 1] == '\n'))
		n--;
	if (n == 0 || n >= sizeof(word))
		return -1;
	memcpy(word, p, n);
	word[n] = '\0';
	if (eq_nocase(word, "online"))
		return 1;
	if (eq_nocase(word, "offline"))
		return 0;
	return -1;
}

int
decode_gateway(const struct decode_in *in, struct decode_out *out)
{
	struct arena *a = &out->arena;
	char buf[41];
	int rc = -1;

	Gridbridge__V1__DeviceStatus *st = arena_alloc(a, sizeof(*st));
	gridbridge__v1__device_status__init(st);

	/* Some gateways' last will is the bare word, not JSON. */
	int plain = in->payload != NULL ? plain_state(in->payload, in->payload_len) : -1;
	if (plain >= 0) {
		st->state = plain ? GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_ONLINE :
		    GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
		st->source = GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_LWT;
		set_status(out, st);
		return 0;
	}

	json_t *o = decode_json_object(in, out);
	if (o == NULL)
		return -1;

	json_t *state = member(o, "state");
	if (state == NULL) {
		decode_reject(out, "missing_field:state");
		goto done;
	}
	if (!json_is_string(state)) {
		decode_reject(out, "bad_value:state");
		goto done;
	}
	bool online;
	if (eq_nocase(json_string_value(state), "online")) {
		online = true;
	} else if (eq_nocase(json_string_value(state), "offline")) {
		online = false;
	} else {
		decode_reject(out, "unsupported:state:%s",
		    reason_value(buf, json_string_value(state)));
		goto done;
	}
	if (device_time(in, out, o, "ts") != 0)
		goto done;

	char *s;
	if ((s = member_strdup(a, o, "reason")) != NULL)
		st->reason = s;
	if ((s = member_strdup(a, o, "fw")) != NULL)
		st->firmware = s;
	st->uptime_sec = member_int32(a, o, "uptimeSec", 0, INT32_MAX);
	st->devices_total = member_int32(a, o, "devicesTotal", 0, INT32_MAX);
	st->devices_online = member_int32(a, o, "devicesOnline", 0, INT32_MAX);
	json_t *off = member(o, "offline");
	size_t n;
	if (json_is_array(off) && (n = json_array_size(off)) > 0) {
		size_t i;
		json_t *d;
		st->offline_devices = arena_alloc(a, n * sizeof(*st->offline_devices));
		json_array_foreach(off, i, d) {
			if (json_is_string(d) && json_string_value(d)[0] != '\0')
				st->offline_devices[st->n_offline_devices++] =
				    arena_strdup(a, json_string_value(d));
		}
		if (st->n_offline_devices == 0)
			st->offline_devices = NULL;
	}

	/* "online" with a time or an uptime is the periodic status (heartbeat);
	 * without either it is a birth/reconnect message. */
	bool last_will = eq_nocase(st->reason, "lwt") || eq_nocase(st->reason, "birth");
	if (online && (out->has_device_time || st->uptime_sec != NULL)) {
		st->state = GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_HEARTBEAT;
		st->source = GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_HEARTBEAT;
	} else {
		st->state = online ? GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_ONLINE :
		    GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
		st->source = last_will ? GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_LWT :
		    GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_HEARTBEAT;
	}

	device_from_payload(out, o);
	set_status(out, st);
	rc = 0;
done:
	decode_json_free(o);
	return rc;
}
