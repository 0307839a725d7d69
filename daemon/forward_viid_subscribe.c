/* forward_viid_subscribe.c — GA/T 1400 subscriptions read and answered:
 * see forward_viid_subscribe.h.
 *
 * Liberal in what is read, strict in what is sent. The choices where the
 * standard leaves room or platforms differ (for gridbridge.conf(5) once
 * cascade mode is wired):
 *
 * The body (POST and PUT /VIID/Subscribes)
 * - Over VIID_SUB_BODY_MAX bytes: refused unread, 8 (the content is
 *   refused, its syntax was not looked at). A UTF-8 byte order mark before
 *   the JSON and NUL bytes after it are dropped, as in replies. A body
 *   jansson does not parse (empty included): 7, Invalid JSON Format; the
 *   answer says at which byte, never jansson's text (it quotes the body).
 *   JSON that is not an object: 8.
 * - jansson refuses integers past 64 bits, so a SubscribeID sent as a JSON
 *   number (33 digits fit no number type) makes the whole body unreadable.
 * - Envelopes, the first found in this order: SubscribeListObject holding
 *   SubscribeObject as an array or as one object; SubscribeListObject as
 *   an array itself; SubscribeObject at the top, an array or one object.
 *   None of these, no object in it, or more than VIID_SUB_MAX (or the
 *   caller's max): the whole request is refused, 8, as there is nothing to
 *   answer per object (an empty list included: the test platform refuses
 *   one too).
 * - Keys are matched as GA/T 1400.3 spells them; other keys are ignored
 *   (SubscribeCancelOrg, SubscribeCancelPerson, CancelTime, ResultImage...
 *   are not kept). A null is a field not given; so is "" for an optional
 *   one.
 *
 * Each SubscribeObject: its fields are read in this order and the first
 * wrong one refuses the object with its code and a why that names the
 * field, never its value (the log prints whys; values come from outside).
 * - SubscribeID: a string of exactly 33 ASCII digits, no white space
 *   around (the answer's Id must be the platform's id, byte for byte).
 *   Else 8. The same id twice in one request: the later object is refused
 *   (8), the earlier one stands.
 * - OperateType: 0 (subscribe, or update with PUT) or 1 (cancel), a number
 *   or a numeric string; not given: 0. Anything else: 8.
 * - A cancel needs nothing more. Its other fields are read when they are
 *   right and left empty when they are not, but never refuse it: a
 *   platform ending a subscription must be able to, whatever else its
 *   object says (some send only the id and the cancel fields, some the
 *   whole object back). A cancel's details may so be 0.
 * - SubscribeDetail: required; the codes as a string ("12,4", blanks
 *   around the commas allowed), a number (12, an integral real too) or an
 *   array of strings and numbers (["12","4"], [12,4], ["12,4"]). Codes we
 *   do not serve (GA/T 1400.4 has more: cases, persons, non-motor
 *   vehicles, ...) and items that are no number are ignored. None of 3,
 *   4, 12, 13 left: 4, Invalid Operation (the request is well formed; we
 *   do not offer what it asks for). Not given, or of another JSON type: 8.
 * - ReceiveAddr: required; http:// or https:// (scheme in any case), a
 *   host (a name, an IPv4 address or a bracketed IPv6 address), an
 *   optional port 1..65535, then anything printable. At most
 *   VIID_SUB_URL_MAX bytes of printable ASCII: no space, no control
 *   character, no raw non-ASCII (an IRI must come percent-encoded: it is
 *   sent as it is). No user information ("user:pass@host"): RFC 9110
 *   forbids it in http URIs, and it would put a password in our logs and
 *   state. Else 8.
 * - BeginTime, EndTime: optional; a string or an integer in a form of
 *   forward_viid_time_parse (YYYYMMDDhhmmss and with milliseconds, Beijing
 *   time; epoch milliseconds). Not such a time: 8. EndTime before
 *   BeginTime: 8 (equal is allowed). A time already past is not refused:
 *   there is no clock here, the caller decides. 1970-01-01 08:00:00 in
 *   Beijing is 0 µs and so reads as not given.
 * - ReportInterval: optional; seconds 0..86400 as a number (an integral
 *   real too) or a string of digits with blanks around. Else 8.
 * - ResourceURI: optional; a string of comma-separated items (an array of
 *   such strings too). Items of exactly 20 ASCII digits (blanks around
 *   dropped) are device ids: kept in order, a repeat dropped; more than
 *   VIID_SUB_RESOURCES_MAX ids: 8. Other items are ignored: platforms put
 *   a resource's name, a URI or a path there ("/VIID/Faces",
 *   "http://host/VIID/MotorVehicles"), which select nothing we could
 *   check. No id left: every device, as when none is given. Of another
 *   JSON type (an object, a number): 8, as reading it as "every device"
 *   would widen what the platform asked for. GA/T 1400.4 platforms also
 *   subscribe to a whole lower platform by naming its id, i.e. our own
 *   20-digit id: seeing that is the caller's (forward_viid_subscribe_covers
 *   with our own id is then true).
 * - Title, ApplicantName, ApplicantOrg, Reason, CancelReason: text, never
 *   refused. jansson has checked the UTF-8 (and refused "\u0000"); C0,
 *   DEL and C1 controls become spaces, and the text is cut at a character
 *   boundary within VIID_SUB_TEXT_MAX bytes (forward_viid_reply.c's rule
 *   for StatusString). Not a string: "".
 *
 * Cancel (PUT /VIID/Subscribes/{id})
 * - The body is {"SubscribeObject":{...}}, or a SubscribeListObject or
 *   SubscribeObject array of exactly one object. An empty body is a cancel
 *   without a reason (nothing in it could change what is asked). The
 *   object's OperateType is not read: the path says cancel. Its
 *   SubscribeID, when given (not null, not ""), must be the path's: else
 *   8. The path's id must be 33 digits: else 8 (the body was read; the
 *   answer has no Id).
 *
 * Delete (DELETE /VIID/Subscribes?IDList=a,b)
 * - Parameters are split at '&'; the name IDList in any case; every IDList
 *   parameter is read. Values are percent-decoded ("%2C" is a comma, '+' a
 *   space); items split at commas, blanks around dropped, empty items
 *   skipped. An id listed twice is returned once. No IDList, or one
 *   naming no id: -1 (nothing to delete is a malformed request). An item
 *   that is not 33 digits, or more than `max` ids: -1.
 *
 * Answers (ResponseStatusObject)
 * - The fields in the order the standard's examples and the test platform
 *   give them: RequestURL, StatusCode, StatusString, Id, LocalTime.
 *   StatusCode is a JSON number (the standard's examples; platforms that
 *   send strings read numbers too). StatusString, when the caller gives
 *   none, is the code's name in GA/T 1400.4's table ("OK", "Invalid
 *   Operation", ...), "Error" for a code the table does not list; a text
 *   that is not UTF-8 is replaced by the name as well.
 * - RequestURL is the path only (the query and fragment cut off, as the
 *   test platform and open servers answer), at most REQUEST_URL_MAX bytes,
 *   any byte that is not printable ASCII percent-encoded.
 * - Id is left out when there is none (a SubscribeID that was not 33
 *   digits); LocalTime is left out for a clock outside 1970..9999.
 * - `single` with no answer: one ResponseStatusObject with StatusCode 0
 *   and no Id.
 */
#include "forward_viid_subscribe.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward_viid_reply.h"
#include "util.h"

#define REQUEST_URL_MAX 256	/* RequestURL bytes sent */
#define REPORT_INTERVAL_MAX 86400
/* A bound in a why: the limits are plain numbers. */
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define NUMBER_DIGITS_MAX 18	/* a longer number read from text is no number */

/* ---- text and numbers -------------------------------------------------- */

static bool
digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* [*s, *s + *n) without blanks around. */
static void
trim(const char **s, size_t *n)
{
	while (*n > 0 && blank(**s))
		(*s)++, (*n)--;
	while (*n > 0 && blank((*s)[*n - 1]))
		(*n)--;
}

/* A string of 1..18 digits with blanks around, into *v. */
static bool
whole_text(const char *s, size_t n, long long *v)
{
	trim(&s, &n);
	if (n == 0 || n > NUMBER_DIGITS_MAX || !digits(s, n))
		return false;
	long long x = 0;
	for (size_t i = 0; i < n; i++)
		x = x * 10 + (s[i] - '0');
	*v = x;
	return true;
}

/* A JSON integer, an integral real or a string of digits, within 0..max:
 * its value; else -1. */
static long long
whole(const json_t *v, long long max)
{
	long long x = -1;

	if (json_is_integer(v)) {
		x = json_integer_value(v);
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d >= 0 && d <= 1e15 && d == (double)(long long)d)
			x = (long long)d;
	} else if (json_is_string(v)) {
		(void)whole_text(json_string_value(v), json_string_length(v), &x);
	}
	return x >= 0 && x <= max ? x : -1;
}

/* A field not given: absent, null, or (`empty` true) "". */
static bool
not_given(const json_t *v, bool empty)
{
	return v == NULL || json_is_null(v) ||
	    (empty && json_is_string(v) && json_string_length(v) == 0);
}

/* A JSON string (valid UTF-8 without NUL, from jansson) into out (max + 1
 * bytes): cut at a character boundary within max bytes, C0, DEL and C1
 * controls as spaces. Not a string: "". */
static void
keep_text(const json_t *v, char *out, size_t max)
{
	if (json_is_string(v))
		forward_viid_clean_text(json_string_value(v), json_string_length(v), out, max);
	else
		out[0] = '\0';
}

/* ---- the body ---------------------------------------------------------- */

static void
set_why(char why[VIID_SUB_WHY_MAX], const char *text)
{
	snprintf(why, VIID_SUB_WHY_MAX, "%s", text);
}

/* The body as a JSON object, or NULL with the code and why. */
static json_t *
load(const void *body, size_t len, enum viid_code *code, char why[VIID_SUB_WHY_MAX])
{
	const unsigned char *p = body;
	json_error_t err;

	if (p == NULL)
		len = 0;
	if (len > VIID_SUB_BODY_MAX) {
		*code = VIID_CODE_INVALID_JSON_CONTENT;
		snprintf(why, VIID_SUB_WHY_MAX, "body over %d bytes", VIID_SUB_BODY_MAX);
		return NULL;
	}
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
		p += 3;
		len -= 3;
	}
	while (len > 0 && p[len - 1] == '\0')
		len--;
	if (len == 0) {
		*code = VIID_CODE_INVALID_JSON_FORMAT;
		set_why(why, "body is empty");
		return NULL;
	}
	json_t *root = json_loadb((const char *)p, len, 0, &err);
	if (root == NULL) {
		*code = VIID_CODE_INVALID_JSON_FORMAT;
		snprintf(why, VIID_SUB_WHY_MAX, "body is not JSON (at byte %d)", err.position);
		return NULL;
	}
	if (!json_is_object(root)) {
		*code = VIID_CODE_INVALID_JSON_CONTENT;
		set_why(why, "body is not a JSON object");
		json_decref(root);
		return NULL;
	}
	return root;
}

/* The SubscribeObjects of a body: an array, or one object; borrowed from
 * root. NULL: no envelope. */
static const json_t *
find_objects(const json_t *root)
{
	const json_t *v = json_object_get(root, "SubscribeListObject");
	if (json_is_object(v)) {
		v = json_object_get(v, "SubscribeObject");
		if (json_is_array(v) || json_is_object(v))
			return v;
	} else if (json_is_array(v)) {
		return v;
	}
	v = json_object_get(root, "SubscribeObject");
	if (json_is_array(v) || json_is_object(v))
		return v;
	return NULL;
}

static size_t
objects_count(const json_t *list)
{
	return json_is_array(list) ? json_array_size(list) : 1;
}

static const json_t *
objects_at(const json_t *list, size_t k)
{
	return json_is_array(list) ? json_array_get(list, k) : k == 0 ? list : NULL;
}

/* ---- the fields -------------------------------------------------------- */

/* A field's reader: fills its part of *s from object o and returns 0, or
 * the code to refuse with and *why. On a refusal the field is left
 * empty, so that a cancel may carry on without it. */
typedef enum viid_code (*field_fn)(const json_t *o, struct viid_subscription *s,
    const char **why);

/* One SubscribeDetail item: a code of ours sets its bit. */
static void
detail_code(long long code, uint32_t *bits)
{
	if (code >= 0 && code < 32 && (VIID_DETAILS_SERVED & VIID_DETAIL_BIT(code)) != 0)
		*bits |= VIID_DETAIL_BIT(code);
}

/* "12, 4": every comma-separated item. */
static void
detail_text(const char *s, size_t n, uint32_t *bits)
{
	size_t i = 0;

	while (i < n) {
		const char *comma = memchr(s + i, ',', n - i);
		size_t end = comma != NULL ? (size_t)(comma - s) : n;
		long long code;
		if (whole_text(s + i, end - i, &code))
			detail_code(code, bits);
		i = end + 1;
	}
}

static void
detail_value(const json_t *v, uint32_t *bits)
{
	if (json_is_string(v))
		detail_text(json_string_value(v), json_string_length(v), bits);
	else if (json_is_number(v))
		detail_code(whole(v, 31), bits);
}

static enum viid_code
read_details(const json_t *o, struct viid_subscription *s, const char **why)
{
	const json_t *v = json_object_get(o, "SubscribeDetail");
	uint32_t bits = 0;

	s->details = 0;
	if (not_given(v, false) || !(json_is_string(v) || json_is_number(v) ||
	    json_is_array(v))) {
		*why = "SubscribeDetail missing, or not a string, number or array";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	if (json_is_array(v)) {
		size_t i;
		const json_t *e;
		json_array_foreach(v, i, e)
			detail_value(e, &bits);
	} else {
		detail_value(v, &bits);
	}
	if (bits == 0) {
		*why = "SubscribeDetail names none of the served codes 3, 4, 12, 13";
		return VIID_CODE_INVALID_OPERATION;
	}
	s->details = bits;
	return VIID_CODE_OK;
}

/* RFC 3986's unreserved, sub-delims and '%': what a host name may hold. */
static bool
host_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("-._~%!$&'()*+,;=", c) != NULL);
}

/* An http or https URL as the top of this file says. */
static bool
receive_url(const char *u, size_t n)
{
	size_t at;

	if (n > VIID_SUB_URL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f)
			return false;
	if (n >= 7 && strncasecmp(u, "http://", 7) == 0)
		at = 7;
	else if (n >= 8 && strncasecmp(u, "https://", 8) == 0)
		at = 8;
	else
		return false;
	/* The authority: up to the path, the query or the fragment. */
	size_t end = at;
	while (end < n && u[end] != '/' && u[end] != '?' && u[end] != '#')
		end++;
	const char *a = u + at;
	size_t alen = end - at, host;
	if (memchr(a, '@', alen) != NULL)
		return false;
	if (alen > 0 && a[0] == '[') {
		const char *close = memchr(a, ']', alen);
		if (close == NULL || close == a + 1)
			return false;
		for (const char *c = a + 1; c < close; c++)
			if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
			    (*c >= 'A' && *c <= 'F') || *c == ':' || *c == '.'))
				return false;
		host = (size_t)(close - a) + 1;
	} else {
		host = 0;
		while (host < alen && a[host] != ':') {
			if (!host_char((unsigned char)a[host]))
				return false;
			host++;
		}
		if (host == 0)
			return false;
	}
	if (host == alen)
		return true;
	if (a[host] != ':')
		return false;
	/* ":port", 1..65535; an empty port is the scheme's (RFC 3986). */
	const char *port = a + host + 1;
	size_t plen = alen - host - 1;
	if (plen == 0)
		return true;
	long long p;
	return plen <= 5 && digits(port, plen) && whole_text(port, plen, &p) && p >= 1 &&
	    p <= 65535;
}

static enum viid_code
read_receive_addr(const json_t *o, struct viid_subscription *s, const char **why)
{
	const json_t *v = json_object_get(o, "ReceiveAddr");

	s->receive_addr[0] = '\0';
	if (!json_is_string(v) || json_string_length(v) == 0) {
		*why = "ReceiveAddr missing";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	size_t n = json_string_length(v);
	if (!receive_url(json_string_value(v), n)) {
		*why = "ReceiveAddr is not an http:// or https:// URL of at most "
		    TEXT(VIID_SUB_URL_MAX) " printable bytes with a host";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	memcpy(s->receive_addr, json_string_value(v), n);
	s->receive_addr[n] = '\0';
	return VIID_CODE_OK;
}

/* A time field: 0 and *us (0: not given), or -1. */
static int
read_time(const json_t *v, int64_t *us)
{
	char text[32];

	*us = 0;
	if (not_given(v, true))
		return 0;
	if (json_is_string(v))
		return forward_viid_time_parse(json_string_value(v), json_string_length(v), us);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		int n = snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
		return forward_viid_time_parse(text, (size_t)n, us);
	}
	return -1;
}

static enum viid_code
read_begin(const json_t *o, struct viid_subscription *s, const char **why)
{
	if (read_time(json_object_get(o, "BeginTime"), &s->begin_us) != 0) {
		s->begin_us = 0;
		*why = "BeginTime is not a time (YYYYMMDDhhmmss)";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	return VIID_CODE_OK;
}

static enum viid_code
read_end(const json_t *o, struct viid_subscription *s, const char **why)
{
	if (read_time(json_object_get(o, "EndTime"), &s->end_us) != 0) {
		s->end_us = 0;
		*why = "EndTime is not a time (YYYYMMDDhhmmss)";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	if (s->begin_us != 0 && s->end_us != 0 && s->end_us < s->begin_us) {
		s->begin_us = s->end_us = 0;
		*why = "EndTime is before BeginTime";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	return VIID_CODE_OK;
}

static enum viid_code
read_report_interval(const json_t *o, struct viid_subscription *s, const char **why)
{
	const json_t *v = json_object_get(o, "ReportInterval");

	s->report_interval_s = 0;
	if (not_given(v, true))
		return VIID_CODE_OK;
	long long x = whole(v, REPORT_INTERVAL_MAX);
	if (x < 0) {
		*why = "ReportInterval is not a number of seconds 0.." TEXT(REPORT_INTERVAL_MAX);
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	s->report_interval_s = (long)x;
	return VIID_CODE_OK;
}

/* The device ids of one ResourceURI string; -1 when there are too many. */
static int
resource_text(const char *t, size_t n, struct viid_subscription *s)
{
	size_t i = 0;

	while (i < n) {
		const char *comma = memchr(t + i, ',', n - i);
		size_t end = comma != NULL ? (size_t)(comma - t) : n;
		const char *item = t + i;
		size_t len = end - i;
		i = end + 1;
		trim(&item, &len);
		if (len != VIID_DEVICE_ID_LEN || !digits(item, len))
			continue;
		bool seen = false;
		for (size_t k = 0; k < s->nresources && !seen; k++)
			seen = memcmp(s->resources[k], item, len) == 0;
		if (seen)
			continue;
		if (s->nresources == VIID_SUB_RESOURCES_MAX)
			return -1;
		memcpy(s->resources[s->nresources], item, len);
		s->resources[s->nresources++][len] = '\0';
	}
	return 0;
}

static enum viid_code
read_resources(const json_t *o, struct viid_subscription *s, const char **why)
{
	const json_t *v = json_object_get(o, "ResourceURI");
	int rc = 0;

	s->nresources = 0;
	if (not_given(v, true))
		return VIID_CODE_OK;
	if (json_is_string(v)) {
		rc = resource_text(json_string_value(v), json_string_length(v), s);
	} else if (json_is_array(v)) {
		size_t i;
		const json_t *e;
		json_array_foreach(v, i, e) {
			if (json_is_string(e) && rc == 0)
				rc = resource_text(json_string_value(e), json_string_length(e), s);
		}
	} else {
		*why = "ResourceURI is not a string";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	if (rc != 0) {
		s->nresources = 0;
		*why = "ResourceURI lists more than " TEXT(VIID_SUB_RESOURCES_MAX) " device ids";
		return VIID_CODE_INVALID_JSON_CONTENT;
	}
	return VIID_CODE_OK;
}

static enum viid_code
read_texts(const json_t *o, struct viid_subscription *s, const char **why)
{
	(void)why;
	keep_text(json_object_get(o, "Title"), s->title, VIID_SUB_TEXT_MAX);
	keep_text(json_object_get(o, "ApplicantName"), s->applicant_name, VIID_SUB_TEXT_MAX);
	keep_text(json_object_get(o, "ApplicantOrg"), s->applicant_org, VIID_SUB_TEXT_MAX);
	keep_text(json_object_get(o, "Reason"), s->reason, VIID_SUB_TEXT_MAX);
	keep_text(json_object_get(o, "CancelReason"), s->cancel_reason, VIID_SUB_TEXT_MAX);
	return VIID_CODE_OK;
}

/* After SubscribeID and OperateType, in the order of the top of this file. */
static const field_fn fields[] = {
	read_details, read_receive_addr, read_begin, read_end, read_report_interval,
	read_resources, read_texts,
};

static void
refuse(struct viid_sub_item *it, enum viid_code code, const char *why)
{
	it->code = code;
	set_why(it->why, why);
}

/* The fields of `o` after SubscribeID and OperateType; a cancel's never
 * refuse it. */
static void
read_fields(const json_t *o, struct viid_sub_item *it)
{
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		const char *why = "";
		enum viid_code code = fields[k](o, &it->sub, &why);
		if (code != VIID_CODE_OK && !it->sub.cancel) {
			refuse(it, code, why);
			return;
		}
	}
}

static bool
subscribe_id(const json_t *v)
{
	return json_is_string(v) && json_string_length(v) == VIID_BUSINESS_ID_LEN &&
	    digits(json_string_value(v), VIID_BUSINESS_ID_LEN);
}

/* Object `o` of a list into *it; earlier[0..nearlier) are the objects
 * before it. */
static void
read_object(const json_t *o, struct viid_sub_item *it, const struct viid_sub_item *earlier,
    size_t nearlier)
{
	memset(it, 0, sizeof(*it));
	if (!json_is_object(o)) {
		refuse(it, VIID_CODE_INVALID_JSON_CONTENT, "SubscribeObject is not an object");
		return;
	}
	const json_t *id = json_object_get(o, "SubscribeID");
	if (!subscribe_id(id)) {
		refuse(it, VIID_CODE_INVALID_JSON_CONTENT, "SubscribeID is not 33 digits");
		return;
	}
	memcpy(it->id, json_string_value(id), VIID_BUSINESS_ID_LEN + 1);
	memcpy(it->sub.id, it->id, sizeof(it->sub.id));
	for (size_t k = 0; k < nearlier; k++) {
		if (strcmp(earlier[k].id, it->id) == 0) {
			refuse(it, VIID_CODE_INVALID_JSON_CONTENT,
			    "SubscribeID repeats an earlier one of this request");
			return;
		}
	}
	const json_t *op = json_object_get(o, "OperateType");
	long long cancel = not_given(op, true) ? 0 : whole(op, 1);
	if (cancel < 0) {
		refuse(it, VIID_CODE_INVALID_JSON_CONTENT, "OperateType is neither 0 nor 1");
		return;
	}
	it->sub.cancel = cancel == 1;
	read_fields(o, it);
}

int
forward_viid_subscribe_read_list(const void *body, size_t len, struct viid_sub_item *items,
    size_t max, enum viid_code *code, char why[VIID_SUB_WHY_MAX])
{
	size_t limit = max < VIID_SUB_MAX ? max : VIID_SUB_MAX;
	int rc = -1;

	*code = VIID_CODE_OK;
	why[0] = '\0';
	json_t *root = load(body, len, code, why);
	if (root == NULL)
		return -1;
	const json_t *list = find_objects(root);
	size_t n = list != NULL ? objects_count(list) : 0;
	if (n == 0) {
		*code = VIID_CODE_INVALID_JSON_CONTENT;
		set_why(why, "no SubscribeListObject.SubscribeObject");
		goto out;
	}
	if (n > limit) {
		*code = VIID_CODE_INVALID_JSON_CONTENT;
		snprintf(why, VIID_SUB_WHY_MAX, "more than %zu SubscribeObjects in one request",
		    limit);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		read_object(objects_at(list, i), &items[i], items, i);
	rc = (int)n;
out:
	json_decref(root);
	return rc;
}

/* ---- cancel ------------------------------------------------------------ */

static bool
empty_body(const void *body, size_t len)
{
	const char *p = body;

	if (p == NULL)
		return true;
	for (size_t i = 0; i < len; i++)
		if (!blank(p[i]) && p[i] != '\0')
			return false;
	return true;
}

int
forward_viid_subscribe_read_cancel(const void *body, size_t len, const char *path_id,
    struct viid_sub_item *item)
{
	const json_t *o = NULL;
	json_t *root = NULL;
	int rc = -1;

	memset(item, 0, sizeof(*item));
	if (!empty_body(body, len)) {
		root = load(body, len, &item->code, item->why);
		if (root == NULL)
			return -1;
		const json_t *list = find_objects(root);
		size_t n = list != NULL ? objects_count(list) : 0;
		if (n == 0) {
			refuse(item, VIID_CODE_INVALID_JSON_CONTENT, "no SubscribeObject");
			goto out;
		}
		if (n > 1) {
			refuse(item, VIID_CODE_INVALID_JSON_CONTENT,
			    "more than one SubscribeObject in a cancel");
			goto out;
		}
		o = objects_at(list, 0);
		if (!json_is_object(o)) {
			refuse(item, VIID_CODE_INVALID_JSON_CONTENT,
			    "SubscribeObject is not an object");
			goto out;
		}
	}
	rc = 0;
	if (path_id == NULL || strlen(path_id) != VIID_BUSINESS_ID_LEN ||
	    !digits(path_id, VIID_BUSINESS_ID_LEN)) {
		refuse(item, VIID_CODE_INVALID_JSON_CONTENT,
		    "SubscribeID of the path is not 33 digits");
		goto out;
	}
	memcpy(item->id, path_id, VIID_BUSINESS_ID_LEN + 1);
	memcpy(item->sub.id, path_id, VIID_BUSINESS_ID_LEN + 1);
	item->sub.cancel = true;
	if (o == NULL)
		goto out;
	const json_t *id = json_object_get(o, "SubscribeID");
	if (!not_given(id, true) && !(json_is_string(id) &&
	    strcmp(json_string_value(id), path_id) == 0)) {
		refuse(item, VIID_CODE_INVALID_JSON_CONTENT,
		    "SubscribeID of the body differs from the path's");
		goto out;
	}
	read_fields(o, item);
out:
	json_decref(root);
	return rc;
}

/* ---- delete ------------------------------------------------------------ */

/* One decoded item: appended to ids unless listed already. */
static int
add_id(const char *item, size_t len, char (*ids)[VIID_BUSINESS_ID_LEN + 1], size_t max,
    size_t *n)
{
	trim(&item, &len);
	if (len == 0)
		return 0;
	if (len != VIID_BUSINESS_ID_LEN || !digits(item, len))
		return -1;
	for (size_t k = 0; k < *n; k++)
		if (memcmp(ids[k], item, len) == 0)
			return 0;
	if (*n == max)
		return -1;
	memcpy(ids[*n], item, len);
	ids[(*n)++][len] = '\0';
	return 0;
}

/* The value [v, end) of an IDList parameter, percent-decoded. */
static int
read_ids(const char *v, const char *end, char (*ids)[VIID_BUSINESS_ID_LEN + 1], size_t max,
    size_t *n)
{
	char item[VIID_BUSINESS_ID_LEN + 8];
	size_t len = 0;

	for (const char *p = v; p <= end; p++) {
		char c;
		if (p == end) {
			c = ',';
		} else if (*p == '%' && end - p >= 3 && util_hex_digit(p[1]) >= 0 &&
		    util_hex_digit(p[2]) >= 0) {
			c = (char)(util_hex_digit(p[1]) << 4 | util_hex_digit(p[2]));
			p += 2;
		} else {
			c = *p == '+' ? ' ' : *p;
		}
		if (c == ',') {
			if (add_id(item, len, ids, max, n) != 0)
				return -1;
			len = 0;
		} else if (len < sizeof(item)) {
			item[len++] = c;
		} else {
			return -1;	/* longer than any id with blanks around */
		}
	}
	return 0;
}

int
forward_viid_subscribe_id_list(const char *query, char (*ids)[VIID_BUSINESS_ID_LEN + 1],
    size_t max)
{
	size_t n = 0;
	bool found = false;

	if (query == NULL)
		return -1;
	if (query[0] == '?')
		query++;
	for (const char *p = query; *p != '\0';) {
		size_t plen = strcspn(p, "&");
		const char *eq = memchr(p, '=', plen);
		if (eq != NULL && eq - p == 6 && strncasecmp(p, "IDList", 6) == 0) {
			found = true;
			if (read_ids(eq + 1, p + plen, ids, max, &n) != 0)
				return -1;
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	return found && n > 0 ? (int)n : -1;
}

/* ---- coverage ---------------------------------------------------------- */

bool
forward_viid_subscribe_covers(const struct viid_subscription *s, const char *id)
{
	if (s->nresources == 0)
		return true;
	if (id == NULL)
		return false;
	for (size_t i = 0; i < s->nresources; i++)
		if (strcmp(s->resources[i], id) == 0)
			return true;
	return false;
}

/* ---- answers ----------------------------------------------------------- */

/* The request's path for RequestURL: see the top of this file. */
static void
request_path(const char *url, char out[REQUEST_URL_MAX + 1])
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)(url != NULL ? url : "");
	    *p != '\0' && *p != '?' && *p != '#'; p++) {
		bool plain = *p > 0x20 && *p < 0x7f;
		if (o + (plain ? 1 : 3) > REQUEST_URL_MAX)
			break;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hexd[*p >> 4];
			out[o++] = hexd[*p & 15];
		}
	}
	out[o] = '\0';
}

static json_t *
answer_object(const char *url, const struct viid_answer *a, const char *local_time)
{
	json_t *o = json_object();
	const char *name = forward_viid_code_name(a->code);

	if (name == NULL)
		name = "Error";
	json_object_set_new(o, "RequestURL", json_string(url));
	json_object_set_new(o, "StatusCode", json_integer(a->code));
	json_t *text = a->text != NULL ? json_string(a->text) : NULL;
	json_object_set_new(o, "StatusString", text != NULL ? text : json_string(name));
	json_t *id = a->id != NULL && a->id[0] != '\0' ? json_string(a->id) : NULL;
	if (id != NULL)
		json_object_set_new(o, "Id", id);
	if (local_time[0] != '\0')
		json_object_set_new(o, "LocalTime", json_string(local_time));
	return o;
}

char *
forward_viid_answer_body(const char *request_url, const struct viid_answer *answers,
    size_t n, bool single, int64_t now_us, size_t *len)
{
	char url[REQUEST_URL_MAX + 1], local_time[VIID_TIME_LEN + 1];
	static const struct viid_answer ok = { NULL, VIID_CODE_OK, NULL };
	json_t *root = json_object();

	request_path(request_url, url);
	(void)forward_viid_time_format(now_us, local_time);	/* "" when out of range */
	if (single) {
		json_object_set_new(root, "ResponseStatusObject",
		    answer_object(url, n > 0 ? &answers[0] : &ok, local_time));
	} else {
		json_t *arr = json_array(), *list = json_object();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, answer_object(url, &answers[i], local_time));
		json_object_set_new(list, "ResponseStatusObject", arr);
		json_object_set_new(root, "ResponseStatusListObject", list);
	}
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (s == NULL)
		util_oom(0);
	*len = strlen(s);
	return s;
}
