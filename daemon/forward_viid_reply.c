/* forward_viid_reply.c — the VIID profile's reading of replies: see
 * forward_viid_reply.h.
 *
 * What the standard says, and what we do where implementations differ
 * (for gridbridge.conf(5) once the profile is wired):
 *
 * Status codes. GA/T 1400.4-2017's status code table (the StatusCode of
 * ResponseStatusObject): 0 OK, 1 Other Error, 2 Device Busy, 3 Device
 * Error, 4 Invalid Operation, 5 Invalid XML Format, 6 Invalid XML Content,
 * 7 Invalid JSON Format, 8 Invalid JSON Content, 9 Reboot. 0 is sent; 4..8
 * say the request itself is wrong, so the object is failed with its code
 * and StatusString; 1, 2, 3 and 9 are about the platform's state and are
 * retried. Codes the table does not list (seen: "500", 10, -1) are
 * retried too: we cannot tell a platform's internal error from a refusal,
 * and max_attempts bounds the retries.
 *
 * StatusCode's type. The standard's examples give a number; several
 * platforms and open servers send a string ("0", "500"). Both are read:
 * a JSON integer, a JSON real with an integral value, or a string of an
 * optional sign and 1 to 18 digits with blanks around. Anything else
 * ("OK", true, an object) is no code: retried. A JSON integer past 64
 * bits is refused by jansson, so such a reply is no status list (below).
 *
 * The reply's envelope. The standard's upload reply is
 * {"ResponseStatusListObject":{"ResponseStatusObject":[...]}}, and its
 * session replies {"ResponseStatusObject":{...}}. Read the same: a single
 * ResponseStatusObject (not an array) inside the list object;
 * "ResponseStatusList":[...] and the status's fields directly at the top
 * ({"StatusCode":"0",...}), both seen in an open server's answers; and,
 * not seen but as cheap to read, an array directly as
 * ResponseStatusListObject or as ResponseStatusObject. The first of these
 * forms found, in this order, is read.
 *
 * Mapping statuses to objects. A failed entry may carry no Id (open
 * servers answer an error with "Id": null), so statuses are mapped by Id
 * where the Id names an object of the request, and by position otherwise:
 *  - an Id naming an object of the request answers that object, wherever
 *    the entry is; it wins over the entry that has the object's position;
 *  - a second entry naming the same object is ignored (the first wins);
 *  - an entry without an Id (absent, null, "", not a string) or with an
 *    Id that names no object of the request (a platform echoing another
 *    id of its own) answers the object at its position, unless that
 *    object was named by an Id;
 *  - fewer entries than objects: the objects left without a status are
 *    retried ("no status for this object"); more entries: the extra ones
 *    are ignored (counted in the summary for the log);
 *  - one status only, for several objects, naming none of them by Id:
 *    some platforms answer a batch as a whole. It is taken for every
 *    object: 0 sends them all; 4..8 retries them all as "maybe the
 *    content", so that the forwarder splits the batch until the object at
 *    fault is alone and failed; other codes retry them all.
 *  - at most VIID_REPLY_MAX_STATUSES entries are read; the rest ignored.
 *
 * A 200 whose body is not a status list (not JSON, not an object, no
 * status envelope, cut, too long) retries the whole batch with a reason.
 * A UTF-8 byte order mark before the JSON and NUL bytes after it are
 * dropped before parsing (leniency that costs nothing; not seen in the
 * samples).
 *
 * Session replies (GA/T 1400.4-2017 7.2.1 Register, 7.2.2 UnRegister,
 * 7.2.3 Keepalive): success is HTTP 200 and StatusCode 0 in the first
 * status of the reply, in any envelope above. Other 2xx are not success:
 * the answers carry a body with the status.
 *
 * System/Time (7.2.4, going by its neighbours 7.2.3 and 7.2.5):
 * {"SystemTimeObject":{"VIIDServerID", "TimeMode", "LocalTime",
 * "TimeZone"}}. LocalTime is a string (14 digits in the
 * standard, 17 with milliseconds seen) or a number (epoch milliseconds
 * seen); it is returned as text, bounded, for the time parser. A platform
 * answering with a ResponseStatusObject that carries LocalTime is read
 * too.
 *
 * Content types: application/VIID+JSON (the standard), application/json
 * and any application/...+json, any case, parameters ignored.
 *
 * Text. StatusString is kept for the outbox: jansson refuses invalid
 * UTF-8 and (without JSON_ALLOW_NUL) "\u0000", so its strings are valid
 * UTF-8 already; here they are only cut at a character boundary and
 * control characters become spaces, as forward_outcome.c does for a
 * reply's bytes (its safe_text() is static to it and takes raw bytes,
 * which need the UTF-8 check that jansson has made here). */
#include "forward_viid_reply.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static const char note_none[] = "no status for this object";
static const char note_not_object[] = "status is not an object";
static const char note_no_code[] = "no StatusCode";
static const char note_bad_code[] = "StatusCode is not a number";
static const char note_unknown[] = "unknown StatusCode";
static const char note_whole[] = "one status for the whole batch: the object at fault is not named";

/* GA/T 1400.4-2017, the status code table. */
static const char *const code_names[] = {
	"OK", "Other Error", "Device Busy", "Device Error", "Invalid Operation",
	"Invalid XML Format", "Invalid XML Content", "Invalid JSON Format",
	"Invalid JSON Content", "Reboot",
};

/* "StatusCode <code> (<name>): <text>" fits a reason whole. */
_Static_assert(VIID_REASON_MAX >= sizeof("StatusCode -9223372036854775808 (Invalid JSON Content): ")
    + VIID_TEXT_MAX, "a reason holds a status");

const char *
forward_viid_code_name(long long code)
{
	if (code < 0 || code >= (long long)(sizeof(code_names) / sizeof(code_names[0])))
		return NULL;
	return code_names[code];
}

static enum viid_verdict
code_verdict(long long code)
{
	if (code == 0)
		return VIID_SENT;
	if (code >= 4 && code <= 8)
		return VIID_FAILED;
	return VIID_RETRY;
}

void
forward_viid_clean_text(const char *text, size_t n, char *out, size_t max)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t o = 0, i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
		if (len > n - i)
			break;
		bool control = c < 0x20 || c == 0x7f || (c == 0xc2 && s[i + 1] < 0xa0);
		size_t w = control ? 1 : len;
		if (w > max - o)
			break;
		if (control)
			out[o++] = ' ';
		else
			memcpy(out + o, s + i, len);
		o += control ? 0 : len;
		i += len;
	}
	out[o] = '\0';
}

/* A JSON string (valid UTF-8, from jansson) into out (max + 1 bytes): cut
 * at a character boundary within max bytes, C0, DEL and C1 controls as
 * spaces. Not a string: "". */
static void
keep_text(const json_t *v, char *out, size_t max)
{
	if (json_is_string(v))
		forward_viid_clean_text(json_string_value(v), json_string_length(v), out, max);
	else
		out[0] = '\0';
}

/* A string or an integer as printable ASCII, bounded (max + 1 bytes). */
static void
keep_field(const json_t *v, char *out, size_t max)
{
	out[0] = '\0';
	if (json_is_integer(v)) {
		snprintf(out, max + 1, "%lld", (long long)json_integer_value(v));
	} else if (json_is_string(v)) {
		size_t n = json_string_length(v);
		n = n < max ? n : max;
		memcpy(out, json_string_value(v), n);
		out[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7f)
				out[i] = '?';
	}
}

/* A JSON real with an integral value within ±1e15 (exact in a double). */
static bool
integral_real(const json_t *v, long long *out)
{
	if (!json_is_real(v))
		return false;
	double d = json_real_value(v);
	if (!(d >= -1e15 && d <= 1e15) || d != (double)(long long)d)
		return false;
	*out = (long long)d;
	return true;
}

/* StatusCode: see the top of this file for the forms read. */
static bool
read_code(const json_t *v, long long *code)
{
	if (json_is_integer(v)) {
		*code = json_integer_value(v);
		return true;
	}
	if (integral_real(v, code))
		return true;
	if (!json_is_string(v))
		return false;

	const char *s = json_string_value(v);
	size_t i = 0, n = json_string_length(v);
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	bool neg = i < n && s[i] == '-';
	if (i < n && (s[i] == '-' || s[i] == '+'))
		i++;
	if (i == n || n - i > 18)
		return false;
	long long value = 0;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		value = value * 10 + (s[i] - '0');
	}
	*code = neg ? -value : value;
	return true;
}

/* The reply as a JSON object, or NULL and why in reason. */
static json_t *
load_reply(const void *body, size_t len, bool cut, char *reason, size_t size)
{
	const unsigned char *p = body;
	json_error_t err;

	if (p == NULL)
		len = 0;
	if (cut) {
		snprintf(reason, size, "reply cut after %zu bytes", len);
		return NULL;
	}
	if (len > VIID_REPLY_MAX_BYTES) {
		snprintf(reason, size, "reply of %zu bytes, over the limit of %d", len,
		    VIID_REPLY_MAX_BYTES);
		return NULL;
	}
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
		p += 3;
		len -= 3;
	}
	while (len > 0 && p[len - 1] == '\0')
		len--;
	if (len == 0) {
		snprintf(reason, size, "empty reply");
		return NULL;
	}
	json_t *root = json_loadb((const char *)p, len, 0, &err);
	if (root == NULL) {
		/* Not jansson's text: it quotes the reply ("invalid token near
		 * '...'"), and a platform may echo the plate or name it refused.
		 * The reason goes to the log. */
		snprintf(reason, size, "reply is not JSON (at byte %d)", err.position);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(reason, size, "reply is JSON but not an object");
		json_decref(root);
		return NULL;
	}
	return root;
}

/* The statuses of a reply: an array of them, or a single one (an object),
 * borrowed from root; NULL when there is no status envelope. */
static const json_t *
find_statuses(const json_t *root)
{
	const json_t *v = json_object_get(root, "ResponseStatusListObject");
	if (json_is_object(v)) {
		v = json_object_get(v, "ResponseStatusObject");
		if (json_is_array(v) || json_is_object(v))
			return v;
	} else if (json_is_array(v)) {
		return v;
	}
	v = json_object_get(root, "ResponseStatusObject");
	if (json_is_array(v) || json_is_object(v))
		return v;
	v = json_object_get(root, "ResponseStatusList");
	if (json_is_array(v))
		return v;
	if (json_object_get(root, "StatusCode") != NULL)
		return root;
	return NULL;
}

static size_t
statuses_count(const json_t *list)
{
	return json_is_array(list) ? json_array_size(list) : 1;
}

static const json_t *
statuses_at(const json_t *list, size_t k)
{
	return json_is_array(list) ? json_array_get(list, k) : k == 0 ? list : NULL;
}

/* An entry's Id, when it is a non-empty string of at most VIID_ID_MAX
 * bytes; else NULL. (A longer one cannot name an object of ours.) */
static const char *
entry_id(const json_t *e)
{
	const json_t *v = json_object_get(e, "Id");
	if (!json_is_string(v))
		return NULL;
	size_t n = json_string_length(v);
	return n > 0 && n <= VIID_ID_MAX ? json_string_value(v) : NULL;
}

/* What entry `e` says about one object. */
static void
read_status(const json_t *e, struct viid_status *s)
{
	long long code;

	s->has_code = false;
	s->code = 0;
	s->text[0] = '\0';
	s->verdict = VIID_RETRY;
	if (!json_is_object(e)) {
		s->note = note_not_object;
		return;
	}
	keep_text(json_object_get(e, "StatusString"), s->text, VIID_TEXT_MAX);
	const json_t *c = json_object_get(e, "StatusCode");
	if (c == NULL || json_is_null(c)) {
		s->note = note_no_code;
		return;
	}
	if (!read_code(c, &code)) {
		s->note = note_bad_code;
		return;
	}
	s->has_code = true;
	s->code = code;
	s->verdict = code_verdict(code);
	s->note = forward_viid_code_name(code) != NULL ? "" : note_unknown;
}

/* The request's ids -> their index (the first, should one repeat). */
static json_t *
id_index(const char *const *ids, size_t n)
{
	json_t *index = json_object();
	if (index == NULL)
		util_oom(0);
	for (size_t j = 0; ids != NULL && j < n; j++) {
		if (ids[j] == NULL || ids[j][0] == '\0' || json_object_get(index, ids[j]) != NULL)
			continue;
		/* An id that is not UTF-8 is refused: that object is mapped by position. */
		json_object_set_new(index, ids[j], json_integer((json_int_t)j));
	}
	return index;
}

/* Entry k's object by its Id, or -1. */
static long long
object_by_id(const json_t *index, const json_t *e)
{
	const char *id = json_is_object(e) ? entry_id(e) : NULL;
	const json_t *j = id != NULL ? json_object_get(index, id) : NULL;
	return json_is_integer(j) ? json_integer_value(j) : -1;
}

/* One status, naming none of several objects: the whole batch's. */
static void
whole_batch(const json_t *e, size_t n, struct viid_status *st)
{
	for (size_t j = 0; j < n; j++) {
		read_status(e, &st[j]);
		if (st[j].verdict == VIID_FAILED) {
			st[j].verdict = VIID_RETRY_CONTENT;
			st[j].note = note_whole;
		}
	}
}

/* Entries to objects (see the top of this file); `claim[j]` is 1 + the
 * entry answering object j, 0 for none. Returns the entries used. */
static size_t
map_entries(const json_t *list, size_t m, const json_t *index, size_t n, size_t *claim)
{
	unsigned char *used = util_calloc(m, 1);	/* 0 free, 1 used, 2 a duplicate */
	size_t nused = 0;

	for (size_t k = 0; k < m; k++) {
		long long j = object_by_id(index, statuses_at(list, k));
		if (j < 0)
			continue;
		used[k] = claim[j] == 0 ? 1 : 2;
		if (claim[j] == 0)
			claim[j] = k + 1;
	}
	for (size_t k = 0; k < m && k < n; k++) {
		if (used[k] == 0 && claim[k] == 0) {
			claim[k] = k + 1;
			used[k] = 1;
		}
	}
	for (size_t k = 0; k < m; k++)
		nused += used[k] == 1;
	free(used);
	return nused;
}

bool
forward_viid_upload_reply(const void *body, size_t len, bool cut,
    const char *const *ids, size_t n, struct viid_status *st,
    struct viid_upload_summary *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (size_t j = 0; j < n; j++) {
		st[j].verdict = VIID_RETRY;
		st[j].has_code = false;
		st[j].code = 0;
		st[j].note = note_none;
		st[j].text[0] = '\0';
	}
	json_t *root = load_reply(body, len, cut, sum->reason, sizeof(sum->reason));
	if (root == NULL)
		return false;
	const json_t *list = find_statuses(root);
	if (list == NULL) {
		snprintf(sum->reason, sizeof(sum->reason),
		    "reply has no ResponseStatusListObject or ResponseStatusObject");
		json_decref(root);
		return false;
	}

	size_t m = statuses_count(list);
	sum->capped = m > VIID_REPLY_MAX_STATUSES;
	m = sum->capped ? VIID_REPLY_MAX_STATUSES : m;
	sum->entries = m;
	json_t *index = id_index(ids, n);
	if (m == 1 && n > 1 && object_by_id(index, statuses_at(list, 0)) < 0) {
		sum->whole_batch = true;
		whole_batch(statuses_at(list, 0), n, st);
	} else if (n > 0) {
		size_t *claim = util_calloc(n, sizeof(*claim));
		sum->ignored = m - map_entries(list, m, index, n, claim);
		for (size_t j = 0; j < n; j++)
			if (claim[j] != 0)
				read_status(statuses_at(list, claim[j] - 1), &st[j]);
		free(claim);
	} else {
		sum->ignored = m;
	}
	json_decref(index);
	json_decref(root);
	return true;
}

/* "StatusCode 8 (Invalid JSON Content): text" into reason. */
static void
status_reason(const struct viid_session_reply *r, char *reason, size_t size)
{
	const char *name = forward_viid_code_name(r->code);
	snprintf(reason, size, "StatusCode %lld (%s)%s%s", r->code, name != NULL ? name : "unknown",
	    r->text[0] != '\0' ? ": " : "", r->text);
}

bool
forward_viid_session_reply(long http_status, const void *body, size_t len, bool cut,
    struct viid_session_reply *out)
{
	struct viid_status s;

	memset(out, 0, sizeof(*out));
	if (http_status != 200) {
		snprintf(out->reason, sizeof(out->reason), "HTTP %ld", http_status);
		return false;
	}
	json_t *root = load_reply(body, len, cut, out->reason, sizeof(out->reason));
	if (root == NULL)
		return false;
	const json_t *list = find_statuses(root);
	if (list == NULL || statuses_count(list) == 0) {
		snprintf(out->reason, sizeof(out->reason), "reply has no ResponseStatusObject");
		json_decref(root);
		return false;
	}
	read_status(statuses_at(list, 0), &s);
	json_decref(root);

	out->has_code = s.has_code;
	out->code = s.code;
	memcpy(out->text, s.text, sizeof(out->text));
	if (!s.has_code) {
		snprintf(out->reason, sizeof(out->reason), "%s%s%s", s.note,
		    s.text[0] != '\0' ? ": " : "", s.text);
		return false;
	}
	if (s.code != 0) {
		status_reason(out, out->reason, sizeof(out->reason));
		return false;
	}
	return true;
}

/* LocalTime into out: see forward_viid_time_reply(). */
static bool
read_local_time(const json_t *v, struct viid_time_reply *out)
{
	long long ms;

	if (json_is_integer(v) || integral_real(v, &ms)) {
		if (json_is_integer(v))
			ms = json_integer_value(v);
		out->numeric = true;
		out->local_time_len = (size_t)snprintf(out->local_time, sizeof(out->local_time),
		    "%lld", ms);
		return true;
	}
	if (!json_is_string(v)) {
		snprintf(out->reason, sizeof(out->reason), v == NULL ? "reply has no LocalTime" :
		    "LocalTime is neither a string nor a number");
		return false;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0 || n > VIID_TIME_MAX) {
		snprintf(out->reason, sizeof(out->reason), "LocalTime of %zu bytes", n);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f) {
			snprintf(out->reason, sizeof(out->reason), "LocalTime is not printable text");
			return false;
		}
	}
	memcpy(out->local_time, s, n);
	out->local_time[n] = '\0';
	out->local_time_len = n;
	return true;
}

bool
forward_viid_time_reply(const void *body, size_t len, bool cut, struct viid_time_reply *out)
{
	memset(out, 0, sizeof(*out));
	json_t *root = load_reply(body, len, cut, out->reason, sizeof(out->reason));
	if (root == NULL)
		return false;
	const json_t *o = json_object_get(root, "SystemTimeObject");
	if (!json_is_object(o)) {
		const json_t *list = find_statuses(root);
		o = list != NULL ? statuses_at(list, 0) : NULL;
	}
	if (!json_is_object(o)) {
		snprintf(out->reason, sizeof(out->reason), "reply has no SystemTimeObject");
		json_decref(root);
		return false;
	}
	keep_field(json_object_get(o, "VIIDServerID"), out->server_id, VIID_FIELD_MAX);
	keep_field(json_object_get(o, "TimeMode"), out->time_mode, VIID_FIELD_MAX);
	keep_field(json_object_get(o, "TimeZone"), out->time_zone, VIID_FIELD_MAX);
	bool ok = read_local_time(json_object_get(o, "LocalTime"), out);
	json_decref(root);
	return ok;
}

/* RFC 9110's tchar. */
static bool
is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

bool
forward_viid_content_type_ok(const char *value)
{
	static const char app[] = "application/";
	const size_t napp = sizeof(app) - 1;

	if (value == NULL)
		return false;
	while (*value == ' ' || *value == '\t')
		value++;
	size_t n = strcspn(value, "; \t");
	const char *rest = value + n;
	while (*rest == ' ' || *rest == '\t')
		rest++;
	if ((*rest != '\0' && *rest != ';') || n <= napp || strncasecmp(value, app, napp) != 0)
		return false;
	const char *sub = value + napp;
	size_t nsub = n - napp;
	for (size_t i = 0; i < nsub; i++)
		if (!is_tchar((unsigned char)sub[i]))
			return false;
	if (nsub == 4 && strncasecmp(sub, "json", 4) == 0)
		return true;
	return nsub > 5 && strncasecmp(sub + nsub - 5, "+json", 5) == 0;
}
