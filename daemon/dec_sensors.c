/* dec_sensors.c — door contact sensors and availability topics:
 * Zigbee2MQTT (device state, device availability, bridge state), Shelly
 * Gen1 door/window (sensor/state, online) and Tasmota (LWT).
 *
 * Most of these payloads are one word of plain text. They share one path:
 * text_payload() checks and trims the bytes, word_lookup() finds the word
 * in a small table (ASCII, case-insensitive), set_status()/set_door() fill
 * the body. The vendors themselves write lower case (Tasmota: "Online");
 * nothing is lost by accepting any case, and a retained message written by
 * hand with another case still decodes.
 *
 * None of the plain-text payloads has a device time or a serial: the event
 * is identified by the receive time and the payload (see decode.h), so such
 * a message redelivered after a crash can be stored twice.
 */
#include <jansson.h>
#include <string.h>

#include "decode.h"
#include "util.h"

/* ---- shared helpers ----------------------------------------------------- */

static bool
is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static uint8_t
ascii_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* The payload as text without surrounding ASCII whitespace; rejects an
 * empty (or all-blank) payload and one that is not UTF-8. */
static int
text_payload(const struct decode_in *in, struct decode_out *out, const uint8_t **s,
    size_t *n)
{
	const uint8_t *p = in->payload;
	size_t len = in->payload_len;

	if (len == 0 || p == NULL)
		return decode_reject(out, "empty");
	if (!util_utf8_valid(p, len))
		return decode_reject(out, "bad_utf8");
	while (len > 0 && is_space(p[0])) {
		p++;
		len--;
	}
	while (len > 0 && is_space(p[len - 1]))
		len--;
	if (len == 0)
		return decode_reject(out, "empty");
	*s = p;
	*n = len;
	return 0;
}

struct word {
	const char *text;
	int value;
};

/* The value of the word `s` (len bytes, may hold NULs) in `tab`, or -1. */
static int
word_lookup(const struct word *tab, size_t ntab, const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < ntab; i++) {
		const char *w = tab[i].text;
		if (strlen(w) != len)
			continue;
		size_t k = 0;
		while (k < len && ascii_lower(s[k]) == (uint8_t)w[k])
			k++;
		if (k == len)
			return tab[i].value;
	}
	return -1;
}

#define NWORDS(t) (sizeof(t) / sizeof((t)[0]))

/* Table entries are lower case. */
static const struct word online_offline[] = {
	{ "online", 1 }, { "offline", 0 },
};
static const struct word true_false[] = {
	{ "true", 1 }, { "false", 0 },
};

/* Online INFO, offline NOTICE; body status {state, source}. */
static void
set_status(struct decode_out *out, bool online, Gridbridge__V1__StatusSource source)
{
	Gridbridge__V1__DeviceStatus *st = arena_alloc(&out->arena, sizeof(*st));

	gridbridge__v1__device_status__init(st);
	st->state = online ? GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_ONLINE :
	    GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	st->source = source;
	out->ev.event_type = online ? GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_ONLINE :
	    GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_OFFLINE;
	out->ev.severity = online ? GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO :
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE;
	out->ev.body_case = GRIDBRIDGE__V1__EVENT__BODY_STATUS;
	out->ev.status = st;
}

/* A door body with its state; event type OPENED/CLOSED, severity INFO. */
static Gridbridge__V1__DoorContact *
set_door(struct decode_out *out, bool open)
{
	Gridbridge__V1__DoorContact *d = arena_alloc(&out->arena, sizeof(*d));

	gridbridge__v1__door_contact__init(d);
	d->state = open ? GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_OPEN :
	    GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_CLOSED;
	out->ev.event_type = open ? GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DOOR_OPENED :
	    GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DOOR_CLOSED;
	out->ev.severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
	out->ev.body_case = GRIDBRIDGE__V1__EVENT__BODY_DOOR;
	out->ev.door = d;
	return d;
}

/* A plain-text payload that must be one of the words in `tab`: sets *value.
 * An unknown word is rejected as bad_value:<what>. */
static int
plain_word(const struct decode_in *in, struct decode_out *out, const struct word *tab,
    size_t ntab, const char *what, int *value)
{
	const uint8_t *s;
	size_t n;

	if (text_payload(in, out, &s, &n) != 0)
		return -1;
	*value = word_lookup(tab, ntab, s, n);
	if (*value < 0)
		return decode_reject(out, "bad_value:%s", what);
	return 0;
}

/* A plain-text online/offline topic: the whole decoder, for a table and a
 * source. */
static int
plain_status(const struct decode_in *in, struct decode_out *out, const struct word *tab,
    size_t ntab, Gridbridge__V1__StatusSource source)
{
	int v;

	if (plain_word(in, out, tab, ntab, "payload", &v) != 0)
		return -1;
	set_status(out, v == 1, source);
	return 0;
}

/* A JSON string without embedded NULs (C string functions would stop at
 * one and read only a prefix), or NULL. json_loadb already refuses
 * "\u0000" without JSON_ALLOW_NUL; this keeps it so if that changes. */
static const char *
json_cstr(const json_t *v)
{
	if (!json_is_string(v))
		return NULL;
	const char *s = json_string_value(v);
	return strlen(s) == json_string_length(v) ? s : NULL;
}

/* Zigbee2MQTT state, either form: the JSON object {"state":"online"} that
 * Zigbee2MQTT >= 1.30 publishes, or the legacy plain text "online". */
static int
z2m_state(const struct decode_in *in, struct decode_out *out, bool *online)
{
	const uint8_t *s;
	size_t n;

	if (text_payload(in, out, &s, &n) != 0)
		return -1;
	if (s[0] != '{') {
		int v = word_lookup(online_offline, NWORDS(online_offline), s, n);
		if (v < 0)
			return decode_reject(out, "bad_value:payload");
		*online = v == 1;
		return 0;
	}
	json_t *j = decode_json_object(in, out);
	if (j == NULL)
		return -1;
	json_t *st = json_object_get(j, "state");
	int v = -1;
	if (json_is_string(st))
		v = word_lookup(online_offline, NWORDS(online_offline),
		    (const uint8_t *)json_string_value(st), json_string_length(st));
	decode_json_free(j);
	if (st == NULL)
		return decode_reject(out, "missing_field:state");
	if (v < 0)
		return decode_reject(out, "bad_value:state");
	*online = v == 1;
	return 0;
}

/* ---- Zigbee2MQTT -------------------------------------------------------- */

/* zigbee2mqtt/<friendly name...>: the device's whole state as JSON, sent on
 * every report (not only when the contact changes), e.g.
 *   {"battery":91,"contact":false,"linkquality":120,
 *    "last_seen":"2025-03-18T07:40:02+08:00", ...}
 * Only contact sensors are routed here: `contact` is required. */
int
decode_z2m_device(const struct decode_in *in, struct decode_out *out)
{
	json_t *j = decode_json_object(in, out);
	if (j == NULL)
		return -1;

	int rc = 0;
	json_t *contact = json_object_get(j, "contact");
	json_t *ls = json_object_get(j, "last_seen");
	if (contact == NULL) {
		rc = decode_reject(out, "missing_field:contact");
		goto done;
	}
	if (!json_is_boolean(contact)) {
		rc = decode_reject(out, "bad_value:contact");
		goto done;
	}

	/* last_seen: when the coordinator heard the device, i.e. this report.
	 * Zigbee2MQTT's advanced.last_seen setting picks the form: ISO_8601
	 * ("...Z"), ISO_8601_local ("...+08:00") or epoch (milliseconds).
	 * Absent (setting "disable") or null: the receive time is used. */
	if (json_is_string(ls)) {
		const char *s = json_cstr(ls);
		if (s == NULL || decode_time_iso8601(s, in->route->tz_offset_min,
		    &out->ev.event_time_us) != 0) {
			rc = decode_reject(out, "bad_value:last_seen");
			goto done;
		}
		out->has_device_time = true;
	} else if (json_is_number(ls)) {
		if (decode_time_epoch(json_number_value(ls), &out->ev.event_time_us) != 0) {
			rc = decode_reject(out, "bad_value:last_seen");
			goto done;
		}
		out->has_device_time = true;
	}

	/* Zigbee contact sensors report the reed switch: contact = true means
	 * the magnet is next to the sensor, i.e. the door is CLOSED; false
	 * means OPEN. (Not "true = opened", as one would guess.) */
	Gridbridge__V1__DoorContact *d = set_door(out, !json_is_true(contact));

	/* A number that is (or rounds to) an integer in range. */
	long long v;
	if (decode_json_integer(json_object_get(j, "battery"), DECODE_INT_ROUND, 0, 100, &v))
		d->battery_percent = decode_int32(&out->arena, (int32_t)v);
	if (decode_json_integer(json_object_get(j, "linkquality"), DECODE_INT_ROUND, 0, 255, &v))
		d->link_quality = decode_int32(&out->arena, (int32_t)v);
	if (json_is_true(json_object_get(j, "tamper"))) {
		/* The state stays in the body; the event says tamper. */
		d->tamper = true;
		out->ev.event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DOOR_TAMPER;
		out->ev.severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING;
	}

	/* With include_device_information the payload names the device; used
	 * only when the route has no {device} capture. */
	if (out->ev.device_id[0] == '\0') {
		const char *name = json_cstr(json_object_get(json_object_get(j, "device"),
		    "friendlyName"));
		if (name != NULL && name[0] != '\0')
			out->ev.device_id = arena_strdup(&out->arena, name);
	}
done:
	decode_json_free(j);
	return rc;
}

/* zigbee2mqtt/<friendly name...>/availability: {"state":"online"|"offline"}
 * or legacy plain text. Zigbee2MQTT derives it (device seen / not seen
 * within the availability timeout); no device time. */
int
decode_z2m_availability(const struct decode_in *in, struct decode_out *out)
{
	bool online;

	if (z2m_state(in, out, &online) != 0)
		return -1;
	set_status(out, online, GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_AVAILABILITY);
	return 0;
}

/* zigbee2mqtt/bridge/state: {"state":"online"|"offline"} or legacy plain
 * text. The bridge publishes "online" when it starts and leaves "offline"
 * as its MQTT last will: source LWT either way.
 *
 * The bridge itself is the device. Without a {device} capture the device
 * id is the topic without its last level ("/state"): "zigbee2mqtt/bridge"
 * for the default base topic, and two bridges with their own base topics
 * ("z2m_b03/bridge/state") stay apart. */
int
decode_z2m_bridge(const struct decode_in *in, struct decode_out *out)
{
	bool online;

	if (z2m_state(in, out, &online) != 0)
		return -1;
	set_status(out, online, GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_LWT);
	if (out->ev.device_id[0] == '\0') {
		size_t n = in->topic_len;
		while (n > 0 && in->topic[n - 1] != '/')
			n--;
		n = n > 0 ? n - 1 : in->topic_len;	/* no '/': the whole topic */
		out->ev.device_id = arena_strndup(&out->arena, in->topic, n);
	}
	return 0;
}

/* ---- Shelly Gen1 -------------------------------------------------------- */

/* shellies/<id>/sensor/state: "open" | "close" (Shelly Door/Window).
 * No time and no serial in the payload: the event is identified by the
 * receive time (the framework does that), so this message redelivered after
 * a crash can be stored twice. */
int
decode_shelly_sensor(const struct decode_in *in, struct decode_out *out)
{
	static const struct word open_close[] = {
		{ "open", 1 }, { "close", 0 },
	};
	int v;

	if (plain_word(in, out, open_close, NWORDS(open_close), "state", &v) != 0)
		return -1;
	set_door(out, v == 1);
	return 0;
}

/* shellies/<id>/online: "true" | "false". The device publishes "true" when
 * it connects and leaves "false" as its last will, so every "false" comes
 * from the broker. Source AVAILABILITY for both: the source names the
 * topic, as for Tasmota's LWT topic and Zigbee2MQTT's bridge/state (LWT for
 * both values there), and splitting by value would add nothing that the
 * state does not already say. */
int
decode_shelly_online(const struct decode_in *in, struct decode_out *out)
{
	return plain_status(in, out, true_false, NWORDS(true_false),
	    GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_AVAILABILITY);
}

/* ---- Tasmota ------------------------------------------------------------ */

/* tele/<topic>/LWT: "Online" | "Offline" (Tasmota's default LWT texts). */
int
decode_tasmota_lwt(const struct decode_in *in, struct decode_out *out)
{
	return plain_status(in, out, online_offline, NWORDS(online_offline),
	    GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_LWT);
}
