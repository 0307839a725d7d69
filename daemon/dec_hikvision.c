/* dec_hikvision.c — Hikvision ISAPI event JSON (EventNotificationAlert as
 * JSON), dispatched on `eventType`:
 *
 *   AccessControllerEvent  person passage: face terminals and access
 *                          controllers (majorEventType/subEventType codes)
 *   ANPR                   vehicle passage at a plate-recognition barrier
 *   videoloss              "inactive": the device's periodic heartbeat
 *                          (Hikvision sends a videoloss/inactive alert as
 *                          its keep-alive); "active": video lost, a camera
 *                          tamper alarm
 *   anything else          unsupported:eventType:<value>
 *
 * Device time: `dateTime`, ISO 8601 with an offset; without one it is local
 * to the route's zone. Absent: the receive time is used. Present but
 * unparseable: bad_value:dateTime.
 *
 * Identity: access events carry the device's own `serialNo` (a per-device
 * event counter); ANPR uses `UUID` or `serialNo` when the payload has one;
 * otherwise the id comes from the device time and the payload.
 *
 * Device id: from the topic. When the route has no {device}, `deviceID`
 * (ISUP/EHome payloads), else `macAddress`.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

typedef Gridbridge__V1__PersonPassage PersonPassage;
typedef Gridbridge__V1__VehiclePassage VehiclePassage;
typedef Gridbridge__V1__CameraAlarm CameraAlarm;
typedef Gridbridge__V1__DeviceStatus DeviceStatus;

/* ---- small JSON helpers ------------------------------------------------- */

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool
ieq(const char *a, const char *b)
{
	while (*a != '\0' && lower((unsigned char)*a) == lower((unsigned char)*b)) {
		a++;
		b++;
	}
	return *a == '\0' && *b == '\0';
}

/* Case-insensitive substring test (ASCII). */
static bool
icontains(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay != '\0'; hay++) {
		size_t i = 0;
		while (i < n && hay[i] != '\0' &&
		    lower((unsigned char)hay[i]) == lower((unsigned char)needle[i]))
			i++;
		if (i == n)
			return true;
	}
	return false;
}

/* ---- access control: minor codes --------------------------------------- */

enum { G = GRIDBRIDGE__V1__PASS_RESULT__PASS_RESULT_GRANTED,
       D = GRIDBRIDGE__V1__PASS_RESULT__PASS_RESULT_DENIED };
enum { CARD = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_CARD,
       FACE = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_FACE,
       FP = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_FINGERPRINT,
       PW = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_PASSWORD,
       QR = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_QR_CODE,
       REMOTE = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_REMOTE,
       OTHER = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_OTHER };

#define MAJOR_OPERATION 3
#define MAJOR_EVENT 5
#define MINOR_REMOTE_OPEN_DOOR 0x400	/* major 3: door opened from a client */

/*
 * Minor codes of major type 5 (MAJOR_EVENT) that are a verification at a
 * reader, as HCNetSDK / ISAPI document them (MINOR_* names). Composite
 * modes report one method: face, then fingerprint, then card, then
 * password (the strongest factor that took part); the card number, when
 * there was one, is in card_ref anyway. Timeouts of a multi-factor mode are
 * denials (the person started and did not finish). OTHER: the code does not
 * say which credential; `currentVerifyMode` may tell (see verify_mode()).
 *
 * Not passages, hence unsupported:subEventType:<n> (quarantined): door
 * and lock states (0x15/0x16 lock open/close, 0x19/0x1a door open/close by
 * contact, 0x1b forced open, 0x1c held open), exit button (0x17/0x18),
 * always-open/closed periods, alarm outputs, doorbell (0x25), input
 * circuit faults, relay states, tailgating/climbing/reverse passage
 * (0x85-0x8a, turnstile alarms), and anything not listed.
 */
static const struct minor {
	uint16_t code;
	uint8_t result;
	uint8_t method;
} minors[] = {
	{ 0x01, G, CARD },	/* LEGAL_CARD_PASS: valid card */
	{ 0x02, G, CARD },	/* CARD_AND_PSW_PASS */
	{ 0x03, D, CARD },	/* CARD_AND_PSW_FAIL */
	{ 0x04, D, CARD },	/* CARD_AND_PSW_TIMEOUT */
	{ 0x05, D, CARD },	/* CARD_AND_PSW_OVER_TIME: too many attempts */
	{ 0x06, D, CARD },	/* CARD_NO_RIGHT: no permission */
	{ 0x07, D, CARD },	/* CARD_INVALID_PERIOD: outside its schedule */
	{ 0x08, D, CARD },	/* CARD_OUT_OF_DATE (also used for expired QR codes) */
	{ 0x09, D, CARD },	/* INVALID_CARD: no such card (also invalid QR codes) */
	{ 0x0a, D, OTHER },	/* ANTI_SNEAK_FAIL: anti-passback */
	{ 0x0b, D, OTHER },	/* INTERLOCK_DOOR_NOT_CLOSE */
	{ 0x0c, D, CARD },	/* NOT_BELONG_MULTI_GROUP */
	{ 0x0d, D, CARD },	/* INVALID_MULTI_VERIFY_PERIOD */
	{ 0x0e, D, OTHER },	/* MULTI_VERIFY_SUPER_RIGHT_FAIL */
	{ 0x0f, D, OTHER },	/* MULTI_VERIFY_REMOTE_RIGHT_FAIL */
	{ 0x10, G, OTHER },	/* MULTI_VERIFY_SUCCESS */
	{ 0x22, G, PW },	/* MULTI_VERIFY_SUPERPASSWD_VERIFY_SUCCESS */
	{ 0x24, D, OTHER },	/* MULTI_VERIFY_TIMEOUT */
	{ 0x26, G, FP },	/* FINGERPRINT_COMPARE_PASS */
	{ 0x27, D, FP },	/* FINGERPRINT_COMPARE_FAIL */
	{ 0x28, G, FP },	/* CARD_FINGERPRINT_VERIFY_PASS */
	{ 0x29, D, FP },	/* CARD_FINGERPRINT_VERIFY_FAIL */
	{ 0x2a, D, FP },	/* CARD_FINGERPRINT_VERIFY_TIMEOUT */
	{ 0x2b, G, FP },	/* CARD_FINGERPRINT_PASSWD_VERIFY_PASS */
	{ 0x2c, D, FP },	/* CARD_FINGERPRINT_PASSWD_VERIFY_FAIL */
	{ 0x2d, D, FP },	/* CARD_FINGERPRINT_PASSWD_VERIFY_TIMEOUT */
	{ 0x2e, G, FP },	/* FINGERPRINT_PASSWD_VERIFY_PASS */
	{ 0x2f, D, FP },	/* FINGERPRINT_PASSWD_VERIFY_FAIL */
	{ 0x30, D, FP },	/* FINGERPRINT_PASSWD_VERIFY_TIMEOUT */
	{ 0x31, D, FP },	/* FINGERPRINT_INEXISTENCE: unknown finger */
	{ 0x36, G, FACE },	/* FACE_AND_FP_VERIFY_PASS */
	{ 0x37, D, FACE },	/* FACE_AND_FP_VERIFY_FAIL */
	{ 0x38, D, FACE },	/* FACE_AND_FP_VERIFY_TIMEOUT */
	{ 0x39, G, FACE },	/* FACE_AND_PW_VERIFY_PASS */
	{ 0x3a, D, FACE },	/* FACE_AND_PW_VERIFY_FAIL */
	{ 0x3b, D, FACE },	/* FACE_AND_PW_VERIFY_TIMEOUT */
	{ 0x3c, G, FACE },	/* FACE_AND_CARD_VERIFY_PASS */
	{ 0x3d, D, FACE },	/* FACE_AND_CARD_VERIFY_FAIL */
	{ 0x3e, D, FACE },	/* FACE_AND_CARD_VERIFY_TIMEOUT */
	{ 0x3f, G, FACE },	/* FACE_AND_PW_AND_FP_VERIFY_PASS */
	{ 0x40, D, FACE },	/* FACE_AND_PW_AND_FP_VERIFY_FAIL */
	{ 0x41, D, FACE },	/* FACE_AND_PW_AND_FP_VERIFY_TIMEOUT */
	{ 0x42, G, FACE },	/* FACE_CARD_AND_FP_VERIFY_PASS */
	{ 0x43, D, FACE },	/* FACE_CARD_AND_FP_VERIFY_FAIL */
	{ 0x44, D, FACE },	/* FACE_CARD_AND_FP_VERIFY_TIMEOUT */
	{ 0x45, G, FP },	/* EMPLOYEENO_AND_FP_VERIFY_PASS */
	{ 0x46, D, FP },	/* EMPLOYEENO_AND_FP_VERIFY_FAIL */
	{ 0x47, D, FP },	/* EMPLOYEENO_AND_FP_VERIFY_TIMEOUT */
	{ 0x48, G, FP },	/* EMPLOYEENO_AND_FP_AND_PW_VERIFY_PASS */
	{ 0x49, D, FP },	/* EMPLOYEENO_AND_FP_AND_PW_VERIFY_FAIL */
	{ 0x4a, D, FP },	/* EMPLOYEENO_AND_FP_AND_PW_VERIFY_TIMEOUT */
	{ 0x4b, G, FACE },	/* FACE_VERIFY_PASS (75) */
	{ 0x4c, D, FACE },	/* FACE_VERIFY_FAIL (76) */
	{ 0x4d, G, FACE },	/* EMPLOYEENO_AND_FACE_VERIFY_PASS */
	{ 0x4e, D, FACE },	/* EMPLOYEENO_AND_FACE_VERIFY_FAIL */
	{ 0x4f, D, FACE },	/* EMPLOYEENO_AND_FACE_VERIFY_TIMEOUT */
	{ 0x50, D, FACE },	/* FACE_RECOGNIZE_FAIL: no matching face */
	{ 0x5e, D, CARD },	/* FIRSTCARD_OPEN_WITHOUT_AUTHORIZE */
	{ 0x65, G, PW },	/* EMPLOYEENO_AND_PW_PASS */
	{ 0x66, D, PW },	/* EMPLOYEENO_AND_PW_FAIL */
	{ 0x67, D, PW },	/* EMPLOYEENO_AND_PW_TIMEOUT */
	{ 0x68, D, FACE },	/* HUMAN_DETECT_FAIL (104): liveness check failed */
	{ 0x69, G, FACE },	/* PEOPLE_AND_ID_CARD_COMPARE_PASS (105): face vs ID card */
	{ 0x70, D, FACE },	/* PEOPLE_AND_ID_CARD_COMPARE_FAIL (112) */
	{ 0x71, D, OTHER },	/* CERTIFICATE_BLOCKLIST: ID document on the block list */
	{ 0x75, D, OTHER },	/* DOOR_OPEN_OR_DORMANT_FAIL: door kept closed / dormant */
	{ 0x94, D, PW },	/* PSW_ERROR_OVER_TIMES */
	{ 0x96, D, PW },	/* PSW_VERIFY_FAIL */
	{ 0x97, D, PW },	/* PASSWORD_MISMATCH */
	{ 0x98, D, OTHER },	/* EMPLOYEE_NO_NOT_EXIST */
	{ 0x99, G, OTHER },	/* COMBINED_VERIFY_PASS */
	{ 0x9a, D, OTHER },	/* COMBINED_VERIFY_TIMEOUT */
	{ 0x9b, D, OTHER },	/* VERIFY_MODE_MISMATCH */
	{ 0x9c, G, QR },	/* QRCODE_VERIFY_PASS (156) */
	{ 0x9d, D, QR },	/* QRCODE_VERIFY_FAIL (157) */
	{ 0x9e, G, OTHER },	/* HOUSEHOLDER_AUTHORIZE_PASS: visitor let in by a householder */
	{ 0x9f, G, OTHER },	/* BLUETOOTH_VERIFY_PASS */
	{ 0xa0, D, OTHER },	/* BLUETOOTH_VERIFY_FAIL */
	{ 0xa1, D, OTHER },	/* PASSPORT_VERIFY_FAIL */
	{ 0xa2, D, CARD },	/* INFORMAL_MIFARE_CARD_VERIFY_FAIL */
	{ 0xa3, D, CARD },	/* CPU_CARD_ENCRYPT_VERIFY_FAIL */
	{ 0xa4, D, CARD },	/* NFC_DISABLE_VERIFY_FAIL */
	{ 0xb5, G, PW },	/* PASSWD_VERIFY_PASS (181) */
	{ 0xc3, D, PW },	/* DYNAMICCODE_VERIFY_INVALID: expired one-time code */
};

static const struct minor *
find_minor(long long code)
{
	for (size_t i = 0; i < sizeof(minors) / sizeof(minors[0]); i++)
		if (minors[i].code == code)
			return &minors[i];
	return NULL;
}

/* `currentVerifyMode` is the reader's configured mode ("card", "face",
 * "cardOrFace", "faceAndCard", "fpAndPw", ...). A mode with "Or" does not
 * say which credential was used; a single or "And" mode does, with the
 * same precedence as the table. OTHER when it does not help. */
static int
verify_mode(const char *mode)
{
	if (mode == NULL || icontains(mode, "or") || icontains(mode, "invalid"))
		return OTHER;
	if (icontains(mode, "face"))
		return FACE;
	if (icontains(mode, "fp") || icontains(mode, "finger"))
		return FP;
	if (icontains(mode, "card"))
		return CARD;
	if (icontains(mode, "pw") || icontains(mode, "password"))
		return PW;
	if (icontains(mode, "qr"))
		return QR;
	return OTHER;
}

/* attendanceStatus: the person said which way they go. Other values
 * ("undefined", absent) and cardReaderNo (which reader of the door — its
 * meaning depends on the wiring, not on anything the payload says) leave
 * the direction unspecified. */
static Gridbridge__V1__Direction
attendance_direction(const char *s)
{
	if (s == NULL)
		return GRIDBRIDGE__V1__DIRECTION__DIRECTION_UNSPECIFIED;
	if (ieq(s, "checkIn") || ieq(s, "breakIn") || ieq(s, "overtimeIn"))
		return GRIDBRIDGE__V1__DIRECTION__DIRECTION_IN;
	if (ieq(s, "checkOut") || ieq(s, "breakOut") || ieq(s, "overtimeOut"))
		return GRIDBRIDGE__V1__DIRECTION__DIRECTION_OUT;
	return GRIDBRIDGE__V1__DIRECTION__DIRECTION_UNSPECIFIED;
}

static int
required_int(struct decode_out *out, json_t *o, const char *key, long long *v)
{
	json_t *j = json_object_get(o, key);
	if (j == NULL || json_is_null(j))
		return decode_reject(out, "missing_field:%s", key);
	if (!decode_json_integer(j, DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX, v))
		return decode_reject(out, "bad_value:%s", key);
	return 0;
}

static int
access_event(struct decode_out *out, json_t *root)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	json_t *ace = json_object_get(root, "AccessControllerEvent");
	long long major_type, minor_type;

	if (ace == NULL || json_is_null(ace))
		return decode_reject(out, "missing_field:AccessControllerEvent");
	if (!json_is_object(ace))
		return decode_reject(out, "bad_value:AccessControllerEvent");
	if (required_int(out, ace, "majorEventType", &major_type) != 0 ||
	    required_int(out, ace, "subEventType", &minor_type) != 0)
		return -1;

	int result, method;
	if (major_type == MAJOR_EVENT) {
		const struct minor *m = find_minor(minor_type);
		if (m == NULL)
			return decode_reject(out, "unsupported:subEventType:%lld", minor_type);
		result = m->result;
		method = m->method;
	} else if (major_type == MAJOR_OPERATION) {
		if (minor_type != MINOR_REMOTE_OPEN_DOOR)
			return decode_reject(out, "unsupported:subEventType:%lld", minor_type);
		result = G;
		method = REMOTE;
	} else {
		return decode_reject(out, "unsupported:majorEventType:%lld", major_type);
	}
	if (method == OTHER)
		method = verify_mode(decode_json_str(ace, "currentVerifyMode"));

	PersonPassage *p = arena_alloc(a, sizeof(*p));
	gridbridge__v1__person_passage__init(p);
	p->result = (Gridbridge__V1__PassResult)result;
	p->verify_method = (Gridbridge__V1__VerifyMethod)method;
	p->direction = attendance_direction(decode_json_str(ace, "attendanceStatus"));
	p->vendor_code = (int32_t)minor_type;	/* from the table: fits */
	char *s;
	if ((s = decode_json_ref(a, ace, "employeeNoString")) != NULL ||
	    (s = decode_json_ref(a, ace, "employeeNo")) != NULL)
		p->person_ref = s;
	if ((s = decode_json_strdup(a, ace, "name")) != NULL)
		p->person_name = s;
	if ((s = decode_json_ref(a, ace, "cardNo")) != NULL)
		p->card_ref = s;
	if ((s = decode_json_strdup(a, ace, "pictureURL")) != NULL)
		p->picture_url = s;
	if ((s = decode_json_strdup(a, ace, "deviceName")) != NULL)
		p->door = s;

	/* serialNo: the device's event counter. */
	json_t *sn = json_object_get(ace, "serialNo");
	long long serial;
	if (decode_json_integer(sn, 0, LLONG_MIN, LLONG_MAX, &serial)) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "%lld", serial);
		out->serial = arena_strdup(a, buf);
		out->serial_len = (size_t)n;
	}

	ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PERSON_PASSAGE;
	ev->severity = result == G ? GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO :
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_PERSON;
	ev->person = p;
	return 0;
}

/* ---- ANPR --------------------------------------------------------------- */

/* ANPR.direction: "forward" is a vehicle coming towards the camera,
 * "reverse" one going away from it. Entrance-lane cameras face incoming
 * traffic, so forward = IN and reverse = OUT; that is how the barriers
 * here are installed (a camera mounted the other way round would need a
 * route option). Anything else ("unknown") is unspecified. Lane and
 * channel names ("... lane IN") are free text and not parsed. */
static Gridbridge__V1__Direction
anpr_direction(const char *s)
{
	if (s != NULL && ieq(s, "forward"))
		return GRIDBRIDGE__V1__DIRECTION__DIRECTION_IN;
	if (s != NULL && ieq(s, "reverse"))
		return GRIDBRIDGE__V1__DIRECTION__DIRECTION_OUT;
	return GRIDBRIDGE__V1__DIRECTION__DIRECTION_UNSPECIFIED;
}

static Gridbridge__V1__BarrierAction
barrier_action(const char *s)
{
	if (s == NULL)
		return GRIDBRIDGE__V1__BARRIER_ACTION__BARRIER_ACTION_UNSPECIFIED;
	if (ieq(s, "open"))
		return GRIDBRIDGE__V1__BARRIER_ACTION__BARRIER_ACTION_OPENED;
	if (ieq(s, "close") || ieq(s, "keepClosed") || ieq(s, "deny"))
		return GRIDBRIDGE__V1__BARRIER_ACTION__BARRIER_ACTION_KEPT_CLOSED;
	return GRIDBRIDGE__V1__BARRIER_ACTION__BARRIER_ACTION_UNSPECIFIED;
}

static int
anpr_event(struct decode_out *out, json_t *root)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	json_t *anpr = json_object_get(root, "ANPR");

	if (anpr == NULL || json_is_null(anpr))
		return decode_reject(out, "missing_field:ANPR");
	if (!json_is_object(anpr))
		return decode_reject(out, "bad_value:ANPR");
	json_t *lp = json_object_get(anpr, "licensePlate");
	if (lp == NULL || json_is_null(lp))
		return decode_reject(out, "missing_field:licensePlate");
	if (!json_is_string(lp))
		return decode_reject(out, "bad_value:licensePlate");

	VehiclePassage *v = arena_alloc(a, sizeof(*v));
	gridbridge__v1__vehicle_passage__init(v);
	/* As written, "无车牌" / "unknown" (no plate read) included. */
	v->plate = arena_strdup(a, json_string_value(lp));
	v->plate_normalized = decode_plate_normalize(a, v->plate);
	if (v->plate_normalized[0] == '\0')	/* "", or only separators */
		return decode_reject(out, "missing_field:licensePlate");

	char *s;
	if ((s = decode_json_strdup(a, anpr, "plateColor")) != NULL)
		v->plate_color = s;
	if ((s = decode_json_strdup(a, anpr, "vehicleType")) != NULL)
		v->vehicle_type = s;
	json_t *vi = json_object_get(anpr, "vehicleInfo");
	if (json_is_object(vi) && (s = decode_json_strdup(a, vi, "color")) != NULL)
		v->vehicle_color = s;
	v->direction = anpr_direction(decode_json_str(anpr, "direction"));
	if ((s = decode_json_ref(a, anpr, "line")) != NULL)
		v->lane = s;
	long long conf;
	json_t *cj = json_object_get(anpr, "confidenceLevel");
	if (decode_json_integer(cj, DECODE_INT_QUOTED, 0, 100, &conf))
		v->confidence = decode_int32(a, (int32_t)conf);
	if ((s = decode_json_strdup(a, anpr, "vehicleListName")) != NULL)
		v->list_name = s;
	json_t *barrier = json_object_get(root, "barrier");
	if (json_is_object(barrier))
		v->barrier_action = barrier_action(decode_json_str(barrier, "action"));

	json_t *pics = json_object_get(root, "pictures");
	if (json_is_array(pics) && json_array_size(pics) > 0) {
		size_t n = json_array_size(pics), k = 0;
		v->picture_urls = arena_alloc(a, n * sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			json_t *pic = json_array_get(pics, i);
			const char *url = json_is_object(pic) ? decode_json_str(pic, "url") : NULL;
			if (url != NULL)
				v->picture_urls[k++] = arena_strdup(a, url);
		}
		v->n_picture_urls = k;
	}

	/* The camera's own id for the event, when the firmware sends one. */
	char *id = NULL;
	if ((id = decode_json_strdup(a, root, "UUID")) == NULL &&
	    (id = decode_json_strdup(a, anpr, "UUID")) == NULL &&
	    (id = decode_json_ref(a, root, "serialNo")) == NULL)
		id = decode_json_ref(a, anpr, "serialNo");
	if (id != NULL) {
		out->serial = id;
		out->serial_len = strlen(id);
	}

	ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_VEHICLE_PASSAGE;
	ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_VEHICLE;
	ev->vehicle = v;
	return 0;
}

/* ---- videoloss: heartbeat or tamper ------------------------------------- */

static int
videoloss_event(struct decode_out *out, json_t *root)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	json_t *st = json_object_get(root, "eventState");

	if (st == NULL || json_is_null(st))
		return decode_reject(out, "missing_field:eventState");
	if (!json_is_string(st))
		return decode_reject(out, "bad_value:eventState");
	const char *state = json_string_value(st);
	if (ieq(state, "inactive")) {
		DeviceStatus *s = arena_alloc(a, sizeof(*s));
		gridbridge__v1__device_status__init(s);
		s->state = GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_HEARTBEAT;
		s->source = GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_HEARTBEAT;
		ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_HEARTBEAT;
		ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
		ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_STATUS;
		ev->status = s;
		return 0;
	}
	if (ieq(state, "active")) {
		CameraAlarm *c = arena_alloc(a, sizeof(*c));
		gridbridge__v1__camera_alarm__init(c);
		c->kind = GRIDBRIDGE__V1__ALARM_KIND__ALARM_KIND_TAMPER;
		ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_CAMERA_ALARM;
		ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING;
		ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_CAMERA_ALARM;
		ev->camera_alarm = c;
		return 0;
	}
	return decode_reject(out, "bad_value:eventState");
}

/* ---- the decoder -------------------------------------------------------- */

static int
device_time(const struct decode_in *in, struct decode_out *out, json_t *root)
{
	json_t *t = json_object_get(root, "dateTime");

	if (t == NULL || json_is_null(t))
		return 0;	/* the framework uses the receive time */
	if (!json_is_string(t) ||
	    decode_time_iso8601(json_string_value(t), in->route->tz_offset_min,
	    &out->ev.event_time_us) != 0)
		return decode_reject(out, "bad_value:dateTime");
	out->has_device_time = true;
	return 0;
}

static int
decode(const struct decode_in *in, struct decode_out *out, json_t *root)
{
	json_t *et = json_object_get(root, "eventType");
	char buf[48];

	if (et == NULL || json_is_null(et) ||
	    (json_is_string(et) && json_string_value(et)[0] == '\0'))
		return decode_reject(out, "missing_field:eventType");
	if (!json_is_string(et))
		return decode_reject(out, "bad_value:eventType");
	const char *type = json_string_value(et);

	int (*body)(struct decode_out *, json_t *);
	if (ieq(type, "AccessControllerEvent"))
		body = access_event;
	else if (ieq(type, "ANPR"))
		body = anpr_event;
	else if (ieq(type, "videoloss"))
		body = videoloss_event;
	else
		return decode_reject(out, "unsupported:eventType:%s",
		    decode_clip(type, buf, sizeof(buf)));

	if (device_time(in, out, root) != 0 || body(out, root) != 0)
		return -1;

	if (out->ev.device_id[0] == '\0') {
		const char *id = decode_json_str(root, "deviceID");
		if (id == NULL)
			id = decode_json_str(root, "macAddress");
		if (id != NULL)
			out->ev.device_id = arena_strdup(&out->arena, id);
	}
	return 0;
}

int
decode_hikvision(const struct decode_in *in, struct decode_out *out)
{
	json_t *root = decode_json_object(in, out);

	if (root == NULL)
		return -1;
	int rc = decode(in, out, root);
	decode_json_free(root);
	return rc;
}
