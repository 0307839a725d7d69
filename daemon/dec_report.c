/* dec_report.c — resident reports: what the community's report platform
 * publishes about the problems residents report through the QR codes on
 * building doors (a broken light, a blocked fire exit).
 *
 * No standard exists for these messages. This is the format gridbridge
 * takes, one JSON object each time a report changes, on
 * sac/<community>/report/<device>/event, <device> being the QR code (one
 * per door):
 *
 *   {"type": "report_opened", "report_id": "RP-20250318-0042",
 *    "building": "B03", "door": "B03-U2-east", "category": "lighting",
 *    "opened_at": "2025-03-18T07:12:05+08:00",
 *    "deadline": "2025-03-19T07:12:05+08:00"}
 *
 *   type        report_opened, report_handled or report_closed; required.
 *               Anything else (report_overdue too: gridbridge derives that
 *               one itself) is refused as unsupported:type:<value>
 *   report_id   the platform's id for the report, a string or an integer,
 *               at most 64 bytes; required
 *   building    the building, a string or an integer
 *   door        the door the QR code is on, a string or an integer; when
 *               the payload has none, the topic's device; when the topic
 *               has no {device}, it is also the device id
 *   category    the kind of problem, the platform's name or number for it
 *   opened_at   when the resident reported it; required in report_opened
 *   deadline    by when it must be handled; required in report_opened
 *   handled_at  when the community handled it; required in report_handled
 *   closed_at   when the report was closed; required in report_closed
 *   community   the community, used only when neither the topic nor the
 *               route names one
 *
 * Times are ISO 8601 strings (with an offset, or else in the route's
 * timezone) or epoch seconds or milliseconds as numbers. Null, "" and 0
 * say "not yet" (platforms send them for a time that has not come); a
 * required time that says so is missing_field:<key>. Any message may carry
 * every time it knows: a report_handled usually repeats opened_at and the
 * deadline, and the record keeps them. A deadline, handling or closing
 * before the opening is bad_value:<key>: it is a mapping mistake (a
 * duration in seconds given as the deadline reads as a day in 1970).
 *
 * The record: device class as the route says (report_point), event type
 * report_opened / report_handled / report_closed, severity info, event
 * time the type's own time (opened_at, handled_at, closed_at), body
 * `report`. The serial is the report id, so the id is made of the device,
 * the report id, the event type and that time (decode.h): a redelivery is
 * the same event, a report reopened and handled again makes new ones.
 *
 * Optional strings of another JSON type are left out; times of another
 * type, or that do not parse, reject the message. Nothing else is read: a
 * resident's name, phone number or description, when a platform sends
 * them, never reaches the record. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "decode.h"

static const struct {
	const char *name;
	Gridbridge__V1__EventType type;
	const char *time_key;		/* the required time that is the event time */
} report_types[] = {
	{ "report_opened", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_OPENED, "opened_at" },
	{ "report_handled", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_HANDLED, "handled_at" },
	{ "report_closed", GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_CLOSED, "closed_at" },
};

/* A member, with JSON null counted as absent. */
static json_t *
member(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_null(v) ? NULL : v;
}

/* The time at `key` into *us, 0 when not said (absent, null, "" or 0).
 * Returns 0, or -1 with bad_value:<key>. */
static int
report_time(const struct decode_in *in, struct decode_out *out, json_t *o, const char *key,
    int64_t *us)
{
	json_t *v = member(o, key);

	*us = 0;
	if (v == NULL)
		return 0;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (s[0] != '\0' && decode_time_iso8601(s, in->route->tz_offset_min, us) != 0)
			return decode_reject(out, "bad_value:%s", key);
	} else if (json_is_number(v)) {
		if (decode_time_epoch(json_number_value(v), us) != 0)
			return decode_reject(out, "bad_value:%s", key);
	} else {
		return decode_reject(out, "bad_value:%s", key);
	}
	return 0;
}

/* The time the event is about: the one its type names. */
static int64_t
own_time(const Gridbridge__V1__ResidentReport *r, Gridbridge__V1__EventType type)
{
	switch (type) {
	case GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_HANDLED:
		return r->handled_us;
	case GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_CLOSED:
		return r->closed_us;
	default:
		return r->opened_us;
	}
}

int
decode_report(const struct decode_in *in, struct decode_out *out)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	char buf[48];
	int rc = -1;
	json_t *o = decode_json_object(in, out);

	if (o == NULL)
		return -1;

	json_t *type = member(o, "type");
	size_t t;
	if (type == NULL) {
		decode_reject(out, "missing_field:type");
		goto done;
	}
	if (!json_is_string(type) || json_string_value(type)[0] == '\0') {
		decode_reject(out, "bad_value:type");
		goto done;
	}
	for (t = 0; t < sizeof(report_types) / sizeof(report_types[0]); t++)
		if (strcmp(json_string_value(type), report_types[t].name) == 0)
			break;
	if (t == sizeof(report_types) / sizeof(report_types[0])) {
		decode_reject(out, "unsupported:type:%s",
		    decode_clip(json_string_value(type), buf, sizeof(buf)));
		goto done;
	}

	if (member(o, "report_id") == NULL) {
		decode_reject(out, "missing_field:report_id");
		goto done;
	}
	char *report_id = decode_json_ref(a, o, "report_id");
	if (report_id == NULL) {
		decode_reject(out, "bad_value:report_id");
		goto done;
	}

	Gridbridge__V1__ResidentReport *r = arena_alloc(a, sizeof(*r));
	gridbridge__v1__resident_report__init(r);
	r->report_id = report_id;
	const struct {
		const char *key;
		int64_t *us;
	} times[] = {
		{ "opened_at", &r->opened_us },		/* first: the others follow it */
		{ "deadline", &r->deadline_us },
		{ "handled_at", &r->handled_us },
		{ "closed_at", &r->closed_us },
	};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
		if (report_time(in, out, o, times[i].key, times[i].us) != 0)
			goto done;
	int64_t own = own_time(r, report_types[t].type);
	if (own == 0) {
		decode_reject(out, "missing_field:%s", report_types[t].time_key);
		goto done;
	}
	if (report_types[t].type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_OPENED &&
	    r->deadline_us == 0) {
		decode_reject(out, "missing_field:deadline");
		goto done;
	}
	for (size_t i = 1; r->opened_us != 0 && i < sizeof(times) / sizeof(times[0]); i++) {
		if (*times[i].us != 0 && *times[i].us < r->opened_us) {
			decode_reject(out, "bad_value:%s", times[i].key);
			goto done;
		}
	}

	char *s;
	if ((s = decode_json_ref(a, o, "building")) != NULL)
		r->building = s;
	if ((s = decode_json_ref(a, o, "door")) != NULL)
		r->door = s;
	if ((s = decode_json_ref(a, o, "category")) != NULL)
		r->category = s;
	if (ev->device_id[0] == '\0' && r->door[0] != '\0')
		ev->device_id = r->door;
	else if (r->door[0] == '\0')
		r->door = ev->device_id;
	if (ev->community_id[0] == '\0' && (s = decode_json_ref(a, o, "community")) != NULL)
		ev->community_id = s;

	out->serial = r->report_id;
	out->serial_len = strlen(r->report_id);
	ev->event_time_us = own;
	out->has_device_time = true;
	ev->event_type = report_types[t].type;
	ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_REPORT;
	ev->report = r;
	rc = 0;
done:
	decode_json_free(o);
	return rc;
}
