/* dec_dahua.c — Dahua access-control events (`Code` "AccessControl", as the
 * eventManager / notifyEventStream JSON gives them: Code, Action, Index,
 * Data).
 *
 *   Data.Status    1 (or true) granted, 0 (or false) denied; required
 *   Data.Method    how the door was opened (table below); vendor_code
 *   Data.Type      "Entry" IN, "Exit" OUT
 *   Data.CardNo    card_ref;  Data.UserID  person_ref;  Data.CardName  person_name
 *   Data.Name      door;  Data.SnapURL  picture_url
 *   Data.ErrorCode why a verification failed: there is no field for it
 *
 * Device time: Data.RealUTC, true UTC epoch seconds, when present and not 0
 * (firmwares without it send none or 0). Otherwise Data.UTC, which many
 * firmwares fill with local wall-clock time dressed as epoch seconds: with
 * the route's utc_is_local (the default) it is read as local time in the
 * route's zone, else as a real epoch. Otherwise Data.LocaleTime
 * ("2025-03-18 07:42:15", local). None of them: the receive time.
 *
 * Identity: `Index` is the event's index among the codes of one message,
 * not a serial. Data.RecNo, the device's access-record number, is used as
 * the serial when the firmware sends it; otherwise time + payload.
 *
 * Device id: from the topic; when the route has no {device},
 * `serialNumber` (the device serial some bridges add) if present.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

typedef Gridbridge__V1__PersonPassage PersonPassage;

/* ---- small JSON helpers ------------------------------------------------- */

/* ---- open methods ------------------------------------------------------- */

enum { CARD = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_CARD,
       FACE = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_FACE,
       FP = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_FINGERPRINT,
       PW = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_PASSWORD,
       QR = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_QR_CODE,
       REMOTE = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_REMOTE,
       OTHER = GRIDBRIDGE__V1__VERIFY_METHOD__VERIFY_METHOD_OTHER };

/*
 * Data.Method. The event JSON counts from 0 where NetSDK's
 * NET_ACCESS_DOOROPEN_METHOD counts from 1 (0 is UNKNOWN there): JSON
 * value = SDK value - 1, which is what devices send (1 card, 4 remote,
 * 5 exit button, 6 fingerprint, 15 face). Combinations report the
 * strongest factor that took part: face, fingerprint, card, password.
 * "X or Y" modes do not say which one was used: OTHER. Values not listed
 * (including those the SDK leaves unassigned, 8 and 16): OTHER.
 */
static const uint8_t methods[] = {
	[0] = PW,	/* PWD_ONLY */
	[1] = CARD,	/* CARD */
	[2] = CARD,	/* CARD_FIRST: card, then password */
	[3] = CARD,	/* PWD_FIRST: password, then card */
	[4] = REMOTE,	/* REMOTE: from an indoor monitor, the platform or the app */
	[5] = OTHER,	/* BUTTON: the exit button */
	[6] = FP,	/* FINGERPRINT */
	[7] = FP,	/* PWD_CARD_FINGERPRINT */
	[9] = FP,	/* PWD_FINGERPRINT */
	[10] = FP,	/* CARD_FINGERPRINT */
	[11] = OTHER,	/* PERSONS: several people together */
	[12] = OTHER,	/* KEY: mechanical key */
	[13] = PW,	/* COERCE_PWD: duress password */
	[14] = QR,	/* QRCODE */
	[15] = FACE,	/* FACE_RECOGNITION */
	[17] = FACE,	/* FACEIDCARD: face against the ID card photo */
	[18] = FACE,	/* FACEIDCARD_AND_IDCARD */
	[19] = OTHER,	/* BLUETOOTH */
	[20] = PW,	/* CUSTOM_PASSWORD */
	[21] = PW,	/* USERID_AND_PWD */
	[22] = FACE,	/* FACE_AND_PWD */
	[23] = FP,	/* FINGERPRINT_AND_PWD */
	[24] = FACE,	/* FINGERPRINT_AND_FACE */
	[25] = FACE,	/* CARD_AND_FACE */
	[26] = OTHER,	/* FACE_OR_PWD */
	[27] = OTHER,	/* FINGERPRINT_OR_PWD */
	[28] = OTHER,	/* FINGERPRINT_OR_FACE */
	[29] = OTHER,	/* CARD_OR_FACE */
	[30] = OTHER,	/* CARD_OR_FINGERPRINT */
	[31] = FACE,	/* FINGERPRINT_AND_FACE_AND_PWD */
	[32] = FACE,	/* CARD_AND_FACE_AND_PWD */
	[33] = FP,	/* CARD_AND_FINGERPRINT_AND_PWD */
	[34] = FACE,	/* CARD_AND_PWD_AND_FACE */
	[35] = OTHER,	/* FINGERPRINT_OR_FACE_OR_PWD */
	[36] = OTHER,	/* CARD_OR_FACE_OR_PWD */
	[37] = OTHER,	/* CARD_OR_FINGERPRINT_OR_FACE */
	[38] = FACE,	/* CARD_AND_FINGERPRINT_AND_FACE_AND_PWD */
	[39] = OTHER,	/* CARD_OR_FINGERPRINT_OR_FACE_OR_PWD */
	[40] = OTHER,	/* FACEIPCARDANDIDCARD_OR_CARD_OR_FACE */
	[41] = OTHER,	/* FACEIDCARD_OR_CARD_OR_FACE */
	[42] = REMOTE,	/* DTMF: opened from an intercom call */
	[43] = QR,	/* REMOTE_QRCODE */
	[44] = FACE,	/* REMOTE_FACE: face checked by the platform */
	[45] = FP,	/* CITIZEN_FINGERPRINT: fingerprint against the ID card */
};

static Gridbridge__V1__VerifyMethod
method_of(long long m)
{
	if (m >= 0 && m < (long long)(sizeof(methods) / sizeof(methods[0])) && methods[m] != 0)
		return (Gridbridge__V1__VerifyMethod)methods[m];
	return (Gridbridge__V1__VerifyMethod)OTHER;
}

/* ---- time --------------------------------------------------------------- */

/* A seconds field: 0 if present and usable (*found set), 0 with *found
 * false if absent or 0, -1 (rejected) if present and unusable. */
static int
epoch_field(struct decode_out *out, json_t *data, const char *key, int64_t *us, bool *found)
{
	json_t *v = json_object_get(data, key);

	*found = false;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_number(v) || decode_time_epoch(json_number_value(v), us) != 0)
		return decode_reject(out, "bad_value:%s", key);
	if (*us == 0)
		return 0;	/* "not set" */
	*found = true;
	return 0;
}

static int
device_time(const struct decode_in *in, struct decode_out *out, json_t *data)
{
	int64_t us;
	bool found;

	if (epoch_field(out, data, "RealUTC", &us, &found) != 0)
		return -1;
	if (found) {
		out->ev.event_time_us = us;
		out->has_device_time = true;
		return 0;
	}
	if (epoch_field(out, data, "UTC", &us, &found) != 0)
		return -1;
	if (found) {
		if (in->route->utc_is_local)
			us = decode_time_local_epoch(us / 1000000, in->route->tz_offset_min) +
			    us % 1000000;
		out->ev.event_time_us = us;
		out->has_device_time = true;
		return 0;
	}
	json_t *lt = json_object_get(data, "LocaleTime");
	if (lt == NULL || json_is_null(lt))
		return 0;
	if (!json_is_string(lt) || decode_time_iso8601(json_string_value(lt),
	    in->route->tz_offset_min, &out->ev.event_time_us) != 0)
		return decode_reject(out, "bad_value:LocaleTime");
	out->has_device_time = true;
	return 0;
}

/* ---- the decoder -------------------------------------------------------- */

static int
decode(const struct decode_in *in, struct decode_out *out, json_t *root)
{
	struct arena *a = &out->arena;
	Event *ev = &out->ev;
	char buf[48];

	json_t *code = json_object_get(root, "Code");
	if (code == NULL || json_is_null(code) ||
	    (json_is_string(code) && json_string_value(code)[0] == '\0'))
		return decode_reject(out, "missing_field:Code");
	if (!json_is_string(code))
		return decode_reject(out, "bad_value:Code");
	if (strcmp(json_string_value(code), "AccessControl") != 0)
		return decode_reject(out, "unsupported:Code:%s",
		    decode_clip(json_string_value(code), buf, sizeof(buf)));

	json_t *data = json_object_get(root, "Data");
	if (data == NULL || json_is_null(data))
		return decode_reject(out, "missing_field:Data");
	if (!json_is_object(data))
		return decode_reject(out, "bad_value:Data");

	json_t *status = json_object_get(data, "Status");
	long long st;
	bool granted;
	if (status == NULL || json_is_null(status))
		return decode_reject(out, "missing_field:Status");
	if (json_is_boolean(status))
		granted = json_is_true(status);
	else if (decode_json_integer(status, 0, 0, 1, &st))
		granted = st == 1;
	else
		return decode_reject(out, "bad_value:Status");

	if (device_time(in, out, data) != 0)
		return -1;

	PersonPassage *p = arena_alloc(a, sizeof(*p));
	gridbridge__v1__person_passage__init(p);
	p->result = granted ? GRIDBRIDGE__V1__PASS_RESULT__PASS_RESULT_GRANTED :
	    GRIDBRIDGE__V1__PASS_RESULT__PASS_RESULT_DENIED;

	long long m;
	if (decode_json_integer(json_object_get(data, "Method"), 0, LLONG_MIN, LLONG_MAX, &m)) {
		p->verify_method = method_of(m);
		if (m >= INT32_MIN && m <= INT32_MAX)
			p->vendor_code = (int32_t)m;
	}

	const char *type = decode_json_str(data, "Type");
	if (type != NULL && strcmp(type, "Entry") == 0)
		p->direction = GRIDBRIDGE__V1__DIRECTION__DIRECTION_IN;
	else if (type != NULL && strcmp(type, "Exit") == 0)
		p->direction = GRIDBRIDGE__V1__DIRECTION__DIRECTION_OUT;

	char *s;
	if ((s = decode_json_ref(a, data, "CardNo")) != NULL)
		p->card_ref = s;
	if ((s = decode_json_ref(a, data, "UserID")) != NULL)
		p->person_ref = s;
	if ((s = decode_json_strdup(a, data, "CardName")) != NULL)
		p->person_name = s;
	if ((s = decode_json_strdup(a, data, "Name")) != NULL)
		p->door = s;
	if ((s = decode_json_strdup(a, data, "SnapURL")) != NULL)
		p->picture_url = s;

	long long rec;
	if (decode_json_integer(json_object_get(data, "RecNo"), 0, 1, LLONG_MAX, &rec)) {
		char nb[32];
		int n = snprintf(nb, sizeof(nb), "%lld", rec);
		out->serial = arena_strdup(a, nb);
		out->serial_len = (size_t)n;
	}

	if (ev->device_id[0] == '\0' && (s = decode_json_strdup(a, root, "serialNumber")) != NULL)
		ev->device_id = s;

	ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_PERSON_PASSAGE;
	ev->severity = granted ? GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO :
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_PERSON;
	ev->person = p;
	return 0;
}

int
decode_dahua(const struct decode_in *in, struct decode_out *out)
{
	json_t *root = decode_json_object(in, out);

	if (root == NULL)
		return -1;
	int rc = decode(in, out, root);
	decode_json_free(root);
	return rc;
}
