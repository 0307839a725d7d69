/* Unit tests for the VIID profile's reading of replies
 * (forward_viid_reply.h): the samples in tests/fixtures/viid, then one
 * row per rule of the upload mapping, the session answers, System/Time
 * and the Content-Types.
 *
 *   test_forward_viid_reply FIXTURES_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward_viid_reply.h"
#include "t.h"

#define A "340104050111900000010220250318074215000010600001"
#define B "340104050111900000010220250318074215000010600002"
#define C "340104050111900000010220250318074215000010600003"
#define LIST(x) "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":[" x "]}}"
#define ST(id, code) "{\"RequestURL\":\"/VIID/Faces\",\"StatusCode\":" code \
	",\"StatusString\":\"s\",\"Id\":\"" id "\"}"
#define ST_NOID(code) "{\"StatusCode\":" code ",\"StatusString\":\"s\"}"

#define SENT VIID_SENT
#define FAILED VIID_FAILED
#define RETRY VIID_RETRY
#define CONTENT VIID_RETRY_CONTENT
#define NONE (-999)			/* no StatusCode read */

static const char *fixtures = "tests/fixtures/viid";

/* The file's bytes (malloc'd, exactly *len of them: no NUL after). */
static char *
slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", fixtures, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		printf("# cannot open %s\n", path);
		*len = 0;
		return NULL;
	}
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int c;
	while ((c = fgetc(f)) != EOF) {
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			buf = realloc(buf, cap);
		}
		buf[n++] = (char)c;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* A copy of s without its NUL: the parser must not read past len. */
static char *
exact(const char *s, size_t *len)
{
	*len = strlen(s);
	char *p = malloc(*len ? *len : 1);
	memcpy(p, s, *len);
	return p;
}

static const struct upload_row {
	const char *what;
	const char *body;
	size_t n;
	const char *ids[3];
	bool ok;
	enum viid_verdict want[3];
	long long code[3];
	size_t ignored;
	bool whole;
} upload_rows[] = {
	{ "a single object instead of a list", "{\"ResponseStatusObject\":" ST(A, "0") "}",
	  1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "a single object inside the list object",
	  "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":" ST(A, "0") "}}",
	  1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "3, the middle answered 8", LIST(ST(A, "0") "," ST(B, "8") "," ST(C, "0")),
	  3, { A, B, C }, true, { SENT, FAILED, SENT }, { 0, 8, 0 }, 0, false },
	{ "3, the middle answered 2", LIST(ST(A, "0") "," ST(B, "2") "," ST(C, "0")),
	  3, { A, B, C }, true, { SENT, RETRY, SENT }, { 0, 2, 0 }, 0, false },
	{ "entries without Id, by position", LIST(ST_NOID("0") "," ST_NOID("8") "," ST_NOID("0")),
	  3, { A, B, C }, true, { SENT, FAILED, SENT }, { 0, 8, 0 }, 0, false },
	{ "Id null, by position", LIST("{\"StatusCode\":0,\"Id\":null},{\"StatusCode\":7,\"Id\":\"\"}"),
	  2, { A, B }, true, { SENT, FAILED }, { 0, 7 }, 0, false },
	{ "Ids out of order", LIST(ST(C, "0") "," ST(A, "8") "," ST(B, "2")),
	  3, { A, B, C }, true, { FAILED, RETRY, SENT }, { 8, 2, 0 }, 0, false },
	{ "an Id wins over a position", LIST(ST_NOID("0") "," ST(A, "8")),
	  2, { A, B }, true, { FAILED, RETRY }, { 8, NONE }, 1, false },
	{ "an Id naming no object: by position", LIST(ST("X1", "0") "," ST("X2", "5")),
	  2, { A, B }, true, { SENT, FAILED }, { 0, 5 }, 0, false },
	{ "a duplicate Id: the first wins", LIST(ST(A, "0") "," ST(A, "8")),
	  2, { A, B }, true, { SENT, RETRY }, { 0, NONE }, 1, false },
	{ "fewer entries than objects", LIST(ST_NOID("0") "," ST_NOID("0")),
	  3, { A, B, C }, true, { SENT, SENT, RETRY }, { 0, 0, NONE }, 0, false },
	{ "more entries than objects", LIST(ST_NOID("0") "," ST_NOID("8") "," ST_NOID("8")),
	  1, { A }, true, { SENT }, { 0 }, 2, false },
	{ "an empty list", LIST(""), 2, { A, B }, true, { RETRY, RETRY }, { NONE, NONE }, 0, false },
	{ "an entry that is no object", LIST("1," ST_NOID("0")),
	  2, { A, B }, true, { RETRY, SENT }, { NONE, 0 }, 0, false },
	{ "one status for a batch, 0", "{\"ResponseStatusObject\":" ST_NOID("0") "}",
	  3, { A, B, C }, true, { SENT, SENT, SENT }, { 0, 0, 0 }, 0, true },
	{ "one status for a batch, 8", LIST(ST_NOID("8")),
	  3, { A, B, C }, true, { CONTENT, CONTENT, CONTENT }, { 8, 8, 8 }, 0, true },
	{ "one status for a batch, 3", LIST(ST("X", "3")),
	  2, { A, B }, true, { RETRY, RETRY }, { 3, 3 }, 0, true },
	{ "one status naming one object of two", LIST(ST(B, "0")),
	  2, { A, B }, true, { RETRY, SENT }, { NONE, 0 }, 0, false },
	{ "an Id longer than any of ours: by position",
	  LIST(ST(A "0000000000000000000000000000", "0")), 1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "unknown request ids: by position", LIST(ST(A, "8") "," ST(B, "0")),
	  2, { NULL, NULL }, true, { FAILED, SENT }, { 8, 0 }, 0, false },

	/* StatusCode's forms. */
	{ "\"0\"", LIST(ST(A, "\"0\"")), 1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "\"8\"", LIST(ST(A, "\"8\"")), 1, { A }, true, { FAILED }, { 8 }, 0, false },
	{ "\" 4 \"", LIST(ST(A, "\" 4 \"")), 1, { A }, true, { FAILED }, { 4 }, 0, false },
	{ "\"500\"", LIST(ST(A, "\"500\"")), 1, { A }, true, { RETRY }, { 500 }, 0, false },
	{ "-1", LIST(ST(A, "-1")), 1, { A }, true, { RETRY }, { -1 }, 0, false },
	{ "\"-1\"", LIST(ST(A, "\"-1\"")), 1, { A }, true, { RETRY }, { -1 }, 0, false },
	{ "10", LIST(ST(A, "10")), 1, { A }, true, { RETRY }, { 10 }, 0, false },
	{ "1", LIST(ST(A, "1")), 1, { A }, true, { RETRY }, { 1 }, 0, false },
	{ "3", LIST(ST(A, "3")), 1, { A }, true, { RETRY }, { 3 }, 0, false },
	{ "9", LIST(ST(A, "9")), 1, { A }, true, { RETRY }, { 9 }, 0, false },
	{ "0.0", LIST(ST(A, "0.0")), 1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "6.5", LIST(ST(A, "6.5")), 1, { A }, true, { RETRY }, { NONE }, 0, false },
	{ "\"OK\"", LIST(ST(A, "\"OK\"")), 1, { A }, true, { RETRY }, { NONE }, 0, false },
	{ "\"\"", LIST(ST(A, "\"\"")), 1, { A }, true, { RETRY }, { NONE }, 0, false },
	{ "\"0x0\"", LIST(ST(A, "\"0x0\"")), 1, { A }, true, { RETRY }, { NONE }, 0, false },
	{ "19 digits", LIST(ST(A, "\"1000000000000000000\"")), 1, { A }, true, { RETRY }, { NONE },
	  0, false },
	{ "null", LIST(ST(A, "null")), 1, { A }, true, { RETRY }, { NONE }, 0, false },
	{ "true", LIST(ST(A, "true")), 1, { A }, true, { RETRY }, { NONE }, 0, false },
	{ "no StatusCode", LIST("{\"Id\":\"" A "\"}"), 1, { A }, true, { RETRY }, { NONE }, 0, false },

	/* Other envelopes. */
	{ "ResponseStatusObject as an array", "{\"ResponseStatusObject\":[" ST_NOID("0") "]}",
	  1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "ResponseStatusListObject as an array", "{\"ResponseStatusListObject\":[" ST_NOID("8") "]}",
	  1, { A }, true, { FAILED }, { 8 }, 0, false },
	{ "ResponseStatusList", "{\"ResponseStatusList\":[" ST(A, "\"0\"") "]}",
	  1, { A }, true, { SENT }, { 0 }, 0, false },
	{ "the fields at the top", ST(A, "\"0\""), 1, { A }, true, { SENT }, { 0 }, 0, false },

	/* Not a status list: the whole batch retried. */
	{ "not JSON", "<html><body>502 Bad Gateway</body></html>",
	  2, { A, B }, false, { RETRY, RETRY }, { NONE, NONE }, 0, false },
	{ "empty", "", 1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "JSON, no envelope", "{\"Result\":\"ok\"}", 1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "JSON, not an object", "[" ST_NOID("0") "]", 1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "JSON, a string", "\"OK\"", 1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "the list object empty", "{\"ResponseStatusListObject\":{}}",
	  1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "the list a string", "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":\"0\"}}",
	  1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "cut inside", "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":[{\"StatusCode\":0",
	  1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "a StatusCode past 64 bits (jansson refuses it)", LIST(ST(A, "99999999999999999999")),
	  1, { A }, false, { RETRY }, { NONE }, 0, false },
	{ "trailing garbage", LIST(ST(A, "0")) "x", 1, { A }, false, { RETRY }, { NONE }, 0, false },
};

static void
check_upload_row(const struct upload_row *r)
{
	struct viid_status st[3];
	struct viid_upload_summary sum;
	size_t len;
	char *body = exact(r->body, &len);

	printf("# upload: %s\n", r->what);
	bool ok = forward_viid_upload_reply(body, len, false, r->ids, r->n, st, &sum);
	T_INTEQ(ok, r->ok);
	for (size_t j = 0; j < r->n; j++) {
		T_INTEQ(st[j].verdict, r->want[j]);
		T_INTEQ(st[j].has_code, r->code[j] != NONE);
		if (r->code[j] != NONE)
			T_INTEQ(st[j].code, r->code[j]);
		T_CHECK(st[j].note != NULL);
	}
	T_INTEQ(sum.ignored, r->ignored);
	T_INTEQ(sum.whole_batch, r->whole);
	T_CHECK(ok == (sum.reason[0] == '\0'));
	free(body);
}

static void
test_fixture_upload(void)
{
	const char *ids[] = { "340104050111900000010220250318074215000010600001" };
	struct viid_status st[1];
	struct viid_upload_summary sum;
	size_t len, hlen;
	char *body = slurp("upload_response_ok.json", &len);
	char *head = slurp("upload_response_ok.http.txt", &hlen);

	T_CHECK(body != NULL && head != NULL);
	T_CHECK(forward_viid_upload_reply(body, len, false, ids, 1, st, &sum));
	T_INTEQ(st[0].verdict, SENT);
	T_INTEQ(st[0].code, 0);
	T_STREQ(st[0].text, "OK");
	T_STREQ(st[0].note, "");
	T_INTEQ(sum.entries, 1);
	T_INTEQ(sum.ignored, 0);
	/* Its header. */
	char *ct = head != NULL ? strstr(head, "Content-Type:") : NULL;
	T_CHECK(ct != NULL);
	if (ct != NULL) {
		ct += strlen("Content-Type:");
		ct[strcspn(ct, "\r\n")] = '\0';
		T_CHECK(forward_viid_content_type_ok(ct));
	}
	/* The same reply cut: retried. */
	T_CHECK(!forward_viid_upload_reply(body, len / 2, false, ids, 1, st, &sum));
	T_INTEQ(st[0].verdict, RETRY);
	T_CHECK(strstr(sum.reason, "not JSON") != NULL);
	T_CHECK(!forward_viid_upload_reply(body, len, true, ids, 1, st, &sum));
	T_CHECK(strstr(sum.reason, "cut") != NULL);
	free(body);
	free(head);
}

static void
test_bom_and_nul(void)
{
	static const char body[] = "\xef\xbb\xbf" LIST(ST(A, "0")) "\0\0";
	const char *ids[] = { A };
	struct viid_status st[1];
	struct viid_upload_summary sum;

	T_CHECK(forward_viid_upload_reply(body, sizeof(body), false, ids, 1, st, &sum));
	T_INTEQ(st[0].verdict, SENT);
	/* A NUL inside is not JSON. */
	static const char inner[] = "{\"ResponseStatusObject\":\0{}}";
	T_CHECK(!forward_viid_upload_reply(inner, sizeof(inner) - 1, false, ids, 1, st, &sum));
	T_CHECK(!forward_viid_upload_reply(NULL, 0, false, ids, 1, st, &sum));
	T_CHECK(!forward_viid_upload_reply(NULL, 10, false, ids, 1, st, &sum));
}

static void
test_status_string(void)
{
	const char *ids[] = { A };
	struct viid_status st[1];
	struct viid_upload_summary sum;
	char body[4096];

	/* Controls (C0, DEL, C1) become spaces; other text is kept. */
	snprintf(body, sizeof(body), LIST("{\"StatusCode\":8,\"StatusString\":%s}"),
	    "\"a\\tb\\u007fc\\u0085d \xe6\xa0\xbc\xe5\xbc\x8f\\u00e9\"");
	T_CHECK(forward_viid_upload_reply(body, strlen(body), false, ids, 1, st, &sum));
	T_INTEQ(st[0].verdict, FAILED);
	T_STREQ(st[0].text, "a b c d \xe6\xa0\xbc\xe5\xbc\x8f\xc3\xa9");

	/* 100 three-byte characters: cut at a character boundary. */
	char s[400] = "";
	for (int i = 0; i < 100; i++)
		strcat(s, "\xe9\x94\x99");
	snprintf(body, sizeof(body), LIST("{\"StatusCode\":\"6\",\"StatusString\":\"%s\"}"), s);
	T_CHECK(forward_viid_upload_reply(body, strlen(body), false, ids, 1, st, &sum));
	T_INTEQ(strlen(st[0].text), VIID_TEXT_MAX / 3 * 3);
	T_CHECK(memcmp(st[0].text, s, strlen(st[0].text)) == 0);

	/* Not a string: nothing kept. */
	snprintf(body, sizeof(body), LIST("{\"StatusCode\":8,\"StatusString\":[1]}"));
	T_CHECK(forward_viid_upload_reply(body, strlen(body), false, ids, 1, st, &sum));
	T_STREQ(st[0].text, "");
	/* Invalid UTF-8 is not JSON (jansson refuses it). */
	snprintf(body, sizeof(body), LIST("{\"StatusCode\":8,\"StatusString\":\"\xff\"}"));
	T_CHECK(!forward_viid_upload_reply(body, strlen(body), false, ids, 1, st, &sum));
}

/* A reply holding `count` statuses (malloc'd). */
static char *
many(size_t count, size_t *len)
{
	static const char entry[] = "{\"StatusCode\":0},";
	static const char head[] = "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":[";
	size_t cap = sizeof(head) + count * (sizeof(entry) - 1) + 4;
	char *p = malloc(cap), *o = p;
	memcpy(o, head, sizeof(head) - 1);
	o += sizeof(head) - 1;
	for (size_t i = 0; i < count; i++) {
		memcpy(o, entry, sizeof(entry) - 1);
		o += sizeof(entry) - 1;
	}
	if (count > 0)
		o--;		/* the last comma */
	memcpy(o, "]}}", 3);
	*len = (size_t)(o + 3 - p);
	return p;
}

static void
test_caps(void)
{
	const char *ids[] = { A, B, C };
	struct viid_status st[3];
	struct viid_upload_summary sum;
	size_t len;

	char *body = many(VIID_REPLY_MAX_STATUSES + 5000, &len);
	T_CHECK(len <= VIID_REPLY_MAX_BYTES);
	T_CHECK(forward_viid_upload_reply(body, len, false, ids, 3, st, &sum));
	T_CHECK(sum.capped);
	T_INTEQ(sum.entries, VIID_REPLY_MAX_STATUSES);
	T_INTEQ(sum.ignored, VIID_REPLY_MAX_STATUSES - 3);
	T_INTEQ(st[0].verdict, SENT);
	T_INTEQ(st[2].verdict, SENT);
	free(body);

	body = many(VIID_REPLY_MAX_BYTES / 16, &len);
	T_CHECK(len > VIID_REPLY_MAX_BYTES);
	T_CHECK(!forward_viid_upload_reply(body, len, false, ids, 3, st, &sum));
	T_CHECK(strstr(sum.reason, "over the limit") != NULL);
	T_INTEQ(st[1].verdict, RETRY);
	free(body);

	/* Nesting deeper than jansson's limit: refused, no crash. */
	size_t depth = 100000;
	body = malloc(2 * depth);
	memset(body, '[', depth);
	memset(body + depth, ']', depth);
	T_CHECK(!forward_viid_upload_reply(body, 2 * depth, false, ids, 3, st, &sum));
	free(body);

	/* No objects at all. */
	body = exact(LIST(ST(A, "0")), &len);
	T_CHECK(forward_viid_upload_reply(body, len, false, NULL, 0, NULL, &sum));
	T_INTEQ(sum.ignored, 1);
	free(body);
}

static const struct session_row {
	const char *what;
	long http;
	const char *body;
	bool ok;
	long long code;			/* NONE: no code */
	const char *reason;		/* a part of it; NULL: "" */
} session_rows[] = {
	{ "0", 200, "{\"ResponseStatusObject\":{\"StatusCode\":0}}", true, 0, NULL },
	{ "\"0\"", 200, "{\"ResponseStatusObject\":{\"StatusCode\":\"0\"}}", true, 0, NULL },
	{ "in a list", 200, LIST("{\"StatusCode\":\"0\"}"), true, 0, NULL },
	{ "in a list object", 200, "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":"
	  "{\"StatusCode\":0}}}", true, 0, NULL },
	{ "the fields at the top", 200, "{\"RequestURL\":\"/VIID/System/Register\","
	  "\"StatusCode\":\"0\",\"StatusString\":\"ok\"}", true, 0, NULL },
	{ "1", 200, "{\"ResponseStatusObject\":{\"StatusCode\":1,\"StatusString\":\"no such device\"}}",
	  false, 1, "StatusCode 1 (Other Error): no such device" },
	{ "\"500\"", 200, "{\"ResponseStatusObject\":{\"StatusCode\":\"500\"}}", false, 500,
	  "StatusCode 500 (unknown)" },
	{ "no code", 200, "{\"ResponseStatusObject\":{\"StatusString\":\"x\"}}", false, NONE,
	  "no StatusCode: x" },
	{ "a bad code", 200, "{\"ResponseStatusObject\":{\"StatusCode\":\"ok\"}}", false, NONE,
	  "StatusCode is not a number" },
	{ "an empty list", 200, LIST(""), false, NONE, "no ResponseStatusObject" },
	{ "not JSON", 200, "OK", false, NONE, "not JSON" },
	{ "no status", 200, "{\"RegisterObject\":{}}", false, NONE, "no ResponseStatusObject" },
	{ "401", 401, "", false, NONE, "HTTP 401" },
	{ "204", 204, "{\"ResponseStatusObject\":{\"StatusCode\":0}}", false, NONE, "HTTP 204" },
	{ "500", 500, "{\"ResponseStatusObject\":{\"StatusCode\":0}}", false, NONE, "HTTP 500" },
};

static void
test_session(void)
{
	struct viid_session_reply r;
	size_t len;

	for (size_t i = 0; i < sizeof(session_rows) / sizeof(session_rows[0]); i++) {
		const struct session_row *row = &session_rows[i];
		char *body = exact(row->body, &len);
		printf("# session: %s\n", row->what);
		T_INTEQ(forward_viid_session_reply(row->http, body, len, false, &r), row->ok);
		T_INTEQ(r.has_code, row->code != NONE);
		if (row->code != NONE)
			T_INTEQ(r.code, row->code);
		if (row->reason == NULL)
			T_STREQ(r.reason, "");
		else if (strstr(r.reason, row->reason) == NULL)
			T_STREQ(r.reason, row->reason);
		free(body);
	}

	char *body = slurp("register_response_ok.json", &len);
	T_CHECK(forward_viid_session_reply(200, body, len, false, &r));
	T_STREQ(r.text, "OK");
	T_CHECK(!forward_viid_session_reply(200, body, len, true, &r));
	T_CHECK(strstr(r.reason, "cut") != NULL);
	free(body);
}

static const struct time_row {
	const char *what;
	const char *body;
	bool ok;
	const char *local_time;		/* or a part of the reason */
	bool numeric;
} time_rows[] = {
	{ "14 digits", "{\"SystemTimeObject\":{\"VIIDServerID\":\"34010400005030000001\","
	  "\"TimeMode\":\"1\",\"LocalTime\":\"20250318074000\",\"TimeZone\":\"Asia/Shanghai\"}}",
	  true, "20250318074000", false },
	{ "17 digits", "{\"SystemTimeObject\":{\"LocalTime\":\"20250318074000123\"}}",
	  true, "20250318074000123", false },
	{ "epoch ms", "{\"SystemTimeObject\":{\"LocalTime\":1742254800000}}",
	  true, "1742254800000", true },
	{ "epoch ms as a real", "{\"SystemTimeObject\":{\"LocalTime\":1742254800000.0}}",
	  true, "1742254800000", true },
	{ "as text with a space", "{\"SystemTimeObject\":{\"LocalTime\":\"2025-03-18 07:40:00\"}}",
	  true, "2025-03-18 07:40:00", false },
	{ "a status's LocalTime", "{\"ResponseStatusObject\":{\"StatusCode\":0,"
	  "\"LocalTime\":\"20250318074216\"}}", true, "20250318074216", false },
	{ "no LocalTime", "{\"SystemTimeObject\":{\"TimeMode\":\"1\"}}", false, "no LocalTime", false },
	{ "LocalTime empty", "{\"SystemTimeObject\":{\"LocalTime\":\"\"}}", false, "0 bytes", false },
	{ "LocalTime long", "{\"SystemTimeObject\":{\"LocalTime\":"
	  "\"202503180740001234567890123456789\"}}", false, "33 bytes", false },
	{ "LocalTime an object", "{\"SystemTimeObject\":{\"LocalTime\":{}}}", false,
	  "neither a string nor a number", false },
	{ "LocalTime a fraction", "{\"SystemTimeObject\":{\"LocalTime\":1.5}}", false,
	  "neither a string nor a number", false },
	{ "LocalTime with a control", "{\"SystemTimeObject\":{\"LocalTime\":\"2025\\n0318\"}}", false,
	  "not printable", false },
	{ "no SystemTimeObject", "{\"SystemTime\":{}}", false, "no SystemTimeObject", false },
	{ "SystemTimeObject a string", "{\"SystemTimeObject\":\"20250318074000\"}", false,
	  "no SystemTimeObject", false },
	{ "not JSON", "20250318074000x", false, "not JSON", false },
};

static void
test_time(void)
{
	struct viid_time_reply r;
	size_t len;

	for (size_t i = 0; i < sizeof(time_rows) / sizeof(time_rows[0]); i++) {
		const struct time_row *row = &time_rows[i];
		char *body = exact(row->body, &len);
		printf("# time: %s\n", row->what);
		T_INTEQ(forward_viid_time_reply(body, len, false, &r), row->ok);
		if (row->ok) {
			T_STREQ(r.local_time, row->local_time);
			T_INTEQ(r.local_time_len, strlen(row->local_time));
			T_INTEQ(r.numeric, row->numeric);
		} else if (strstr(r.reason, row->local_time) == NULL) {
			T_STREQ(r.reason, row->local_time);
		}
		free(body);
	}

	/* The other fields, bounded and printable. */
	char body[512], longs[200];
	memset(longs, 'z', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"SystemTimeObject\":{\"VIIDServerID\":\"%s\","
	    "\"TimeMode\":\"a\\u0001b\",\"TimeZone\":8,\"LocalTime\":\"20250318074000\"}}", longs);
	T_CHECK(forward_viid_time_reply(body, strlen(body), false, &r));
	T_INTEQ(strlen(r.server_id), VIID_FIELD_MAX);
	T_STREQ(r.time_mode, "a?b");
	T_STREQ(r.time_zone, "8");
	T_CHECK(!forward_viid_time_reply(body, strlen(body), true, &r));
}

static const struct {
	const char *value;
	bool ok;
} content_types[] = {
	{ "application/VIID+JSON;charset=UTF-8", true },
	{ "application/viid+json", true },
	{ "Application/VIID+Json ; charset=utf-8", true },
	{ "application/json", true },
	{ "APPLICATION/JSON", true },
	{ "application/json; charset=UTF-8", true },
	{ "  application/json  ", true },
	{ "application/json;", true },
	{ "application/problem+json", true },
	{ "application/vnd.x-y+json; v=1", true },
	{ "text/plain", false },
	{ "text/json", false },
	{ "text/html; charset=UTF-8", false },
	{ "application/xml", false },
	{ "application/VIID+XML", false },
	{ "application/jsonx", false },
	{ "application/json+x", false },
	{ "application/+json", false },
	{ "application/", false },
	{ "application", false },
	{ "application/json garbage", false },
	{ "application/x/y+json", false },
	{ "application/x\"y+json", false },
	{ "xapplication/json", false },
	{ "", false },
};

static void
test_content_types(void)
{
	for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++) {
		printf("# content type: \"%s\"\n", content_types[i].value);
		T_INTEQ(forward_viid_content_type_ok(content_types[i].value), content_types[i].ok);
	}
	T_CHECK(!forward_viid_content_type_ok(NULL));
}

static void
test_code_names(void)
{
	T_STREQ(forward_viid_code_name(0), "OK");
	T_STREQ(forward_viid_code_name(4), "Invalid Operation");
	T_STREQ(forward_viid_code_name(8), "Invalid JSON Content");
	T_STREQ(forward_viid_code_name(9), "Reboot");
	T_CHECK(forward_viid_code_name(10) == NULL);
	T_CHECK(forward_viid_code_name(-1) == NULL);
}

/* A reply that is not JSON goes to the log as its reason: jansson's text
 * would quote it, and a platform may echo the plate it refused. */
static void
test_reason_quotes_nothing(void)
{
	static const char *const bodies[] = {
		"\xe7\x9a\x96" "A9Z8Y7 refused", "{\"Plate\": \xe7\x9a\x96" "A9Z8Y7}",
		"{\"Plate\": \"\\u7696A9Z8Y7}", "A9Z8Y7",
	};
	const char *ids[] = { A };
	struct viid_status st[1];
	struct viid_upload_summary sum;
	struct viid_session_reply rep;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		T_CHECK(!forward_viid_upload_reply(bodies[i], strlen(bodies[i]), false, ids, 1, st,
		    &sum));
		T_CHECK(strstr(sum.reason, "not JSON") != NULL);
		T_CHECK(strstr(sum.reason, "A9Z8Y7") == NULL && strstr(sum.reason, "7696") == NULL);
		T_CHECK(!forward_viid_session_reply(200, bodies[i], strlen(bodies[i]), false,
		    &rep));
		T_CHECK(strstr(rep.reason, "A9Z8Y7") == NULL);
	}
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		fixtures = argv[1];
	test_fixture_upload();
	for (size_t i = 0; i < sizeof(upload_rows) / sizeof(upload_rows[0]); i++)
		check_upload_row(&upload_rows[i]);
	test_bom_and_nul();
	test_reason_quotes_nothing();
	test_status_string();
	test_caps();
	test_session();
	test_time();
	test_content_types();
	test_code_names();
	return t_done();
}
