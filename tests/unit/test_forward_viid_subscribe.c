/* Unit tests for GA/T 1400 cascade mode (forward_viid_subscribe.h): the
 * subscription requests a platform sends, our answers, and the
 * notifications and catalogue we push. Requests are the samples in
 * tests/fixtures/viid/ (the shapes the test platform's SubscribeClient
 * sends) and variations of them; notifications are built from device
 * fixtures decoded as the daemon decodes them and compared with what the
 * upload builders make of the same records.
 *
 *   test_forward_viid_subscribe FIXTURES_DIR      (tests/fixtures) */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "event.pb-c.h"
#include "forward_viid.h"
#include "forward_viid_subscribe.h"
#include "fixture_events.h"
#include "t.h"

#define SUB_ID "340104050112000000010320250318001"
#define SUB_ID2 "340104050112000000010320250318002"
#define ORG "340104050112"
#define GATE "34010405011190000001"
#define ANPR "34010405011190000011"

/* ---- helpers ----------------------------------------------------------- */

static int64_t
utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
		.tm_min = mi, .tm_sec = s };
	return (int64_t)timegm(&tm) * 1000000;
}

static bool
all_digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static const char *
str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "(none)";
}

/* The SubscribeObject of subscribe_request.json. */
static json_t *
base_object(void)
{
	char *text = slurp("viid/subscribe_request.json", NULL);
	json_t *root = json_loads(text, 0, NULL);
	free(text);
	json_t *o = json_array_get(json_object_get(json_object_get(root, "SubscribeListObject"),
	    "SubscribeObject"), 0);
	json_incref(o);
	json_decref(root);
	return o;
}

/* Reads {"SubscribeListObject":{"SubscribeObject":[o]}} into *it; returns
 * read_list's result. */
static int
read_one(json_t *o, struct viid_sub_item *it)
{
	json_t *root = json_pack("{s:{s:[O]}}", "SubscribeListObject", "SubscribeObject", o);
	char *text = json_dumps(root, JSON_COMPACT);
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];
	int rc = forward_viid_subscribe_read_list(text, strlen(text), it, 1, &code, why);
	free(text);
	json_decref(root);
	return rc;
}

/* The sample object with `key` set to `v` (taken; NULL: removed), read. */
static struct viid_sub_item it;

static enum viid_code
with(const char *key, json_t *v)
{
	json_t *o = base_object();
	if (v != NULL)
		json_object_set_new(o, key, v);
	else
		json_object_del(o, key);
	int rc = read_one(o, &it);
	json_decref(o);
	if (rc != 1) {
		printf("# read_list returned %d\n", rc);
		return (enum viid_code)-1;
	}
	return it.code;
}

/* Two fields set. */
static enum viid_code
with2(const char *k1, json_t *v1, const char *k2, json_t *v2)
{
	json_t *o = base_object();
	json_object_set_new(o, k1, v1);
	json_object_set_new(o, k2, v2);
	int rc = read_one(o, &it);
	json_decref(o);
	return rc == 1 ? it.code : (enum viid_code)-1;
}

/* `why` names `field` and does not repeat `value`. */
static bool
names(const char *why, const char *field, const char *value)
{
	bool ok = strstr(why, field) != NULL && (value == NULL || strstr(why, value) == NULL);
	if (!ok)
		printf("# why: %s\n", why);
	return ok;
}

/* The body of `text` read as a list of at most `max`. */
static int
read_text(const char *text, struct viid_sub_item *items, size_t max, enum viid_code *code,
    char why[VIID_SUB_WHY_MAX])
{
	return forward_viid_subscribe_read_list(text, strlen(text), items, max, code, why);
}

/* ---- the samples ------------------------------------------------------- */

static void
test_samples(void)
{
	struct viid_sub_item items[4];
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];
	size_t len;

	char *text = slurp("viid/subscribe_request.json", &len);
	T_INTEQ(forward_viid_subscribe_read_list(text, len, items, 4, &code, why), 1);
	free(text);
	T_INTEQ(code, VIID_CODE_OK);
	T_STREQ(why, "");
	struct viid_subscription *s = &items[0].sub;
	T_INTEQ(items[0].code, VIID_CODE_OK);
	T_STREQ(items[0].why, "");
	T_STREQ(items[0].id, SUB_ID);
	T_STREQ(s->id, SUB_ID);
	T_STREQ(s->title, "gate faces and device status");
	T_INTEQ(s->details, VIID_DETAIL_BIT(12) | VIID_DETAIL_BIT(4));
	T_STREQ(s->receive_addr, "http://10.20.0.9:8080/VIID/SubscribeNotifications");
	T_INTEQ(s->nresources, 1);
	T_STREQ(s->resources[0], GATE);
	T_INTEQ(s->begin_us, utc(2025, 3, 17, 23, 41, 0));
	T_INTEQ(s->end_us, utc(2025, 3, 18, 23, 42, 0));
	T_INTEQ(s->report_interval_s, 1);
	T_STREQ(s->applicant_name, "duty officer");
	T_STREQ(s->applicant_org, "Luyang police station");
	T_STREQ(s->reason, "community access control");
	T_CHECK(!s->cancel);
	T_STREQ(s->cancel_reason, "");

	/* PUT /VIID/Subscribes: an update and a cancel. */
	text = slurp("viid/subscribe_update_request.json", &len);
	T_INTEQ(forward_viid_subscribe_read_list(text, len, items, 4, &code, why), 2);
	free(text);
	T_INTEQ(items[0].code, VIID_CODE_OK);
	T_INTEQ(items[0].sub.details, VIID_DETAIL_BIT(12) | VIID_DETAIL_BIT(13) |
	    VIID_DETAIL_BIT(4));
	T_INTEQ(items[0].sub.nresources, 2);
	T_STREQ(items[0].sub.resources[1], ANPR);
	T_INTEQ(items[0].sub.report_interval_s, 5);
	T_CHECK(!items[0].sub.cancel);
	T_INTEQ(items[1].code, VIID_CODE_OK);
	T_STREQ(items[1].id, SUB_ID2);
	T_CHECK(items[1].sub.cancel);
	T_STREQ(items[1].sub.cancel_reason, "subscription replaced");
	T_INTEQ(items[1].sub.details, VIID_DETAIL_BIT(3));

	/* PUT /VIID/Subscribes/{id}. */
	struct viid_sub_item c;
	text = slurp("viid/subscribe_cancel_request.json", &len);
	T_INTEQ(forward_viid_subscribe_read_cancel(text, len, SUB_ID, &c), 0);
	T_INTEQ(c.code, VIID_CODE_OK);
	T_STREQ(c.why, "");
	T_STREQ(c.id, SUB_ID);
	T_STREQ(c.sub.id, SUB_ID);
	T_CHECK(c.sub.cancel);
	T_STREQ(c.sub.cancel_reason, "test over");
	T_INTEQ(c.sub.details, 0);
	/* The path names another subscription than the body. */
	T_INTEQ(forward_viid_subscribe_read_cancel(text, len, SUB_ID2, &c), 0);
	T_INTEQ(c.code, VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(c.why, "SubscribeID", SUB_ID));
	free(text);
}

/* ---- each field -------------------------------------------------------- */

static void
test_subscribe_id(void)
{
	static const char *const bad[] = {
		"34010405011200000001032025031800", "3401040501120000000103202503180012",
		"34010405011200000001032025031800x", " 340104050112000000010320250318001",
		"340104050112000000010320250318001 ", "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		T_INTEQ(with("SubscribeID", json_string(bad[i])), VIID_CODE_INVALID_JSON_CONTENT);
		T_STREQ(it.id, "");
		T_CHECK(names(it.why, "SubscribeID", NULL));
	}
	T_INTEQ(with("SubscribeID", json_integer(12345)), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("SubscribeID", NULL), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "SubscribeID", NULL));
	T_INTEQ(with("SubscribeID", json_string(SUB_ID2)), VIID_CODE_OK);
	T_STREQ(it.id, SUB_ID2);

	/* Refused for another field: the id is kept for the answer. */
	T_INTEQ(with("ReceiveAddr", json_string("ftp://x")), VIID_CODE_INVALID_JSON_CONTENT);
	T_STREQ(it.id, SUB_ID);

	/* The same id twice in one request: the later is refused. */
	json_t *a = base_object(), *b = base_object(), *c = base_object();
	json_object_set_new(c, "SubscribeID", json_string(SUB_ID2));
	json_object_set_new(b, "ReceiveAddr", json_string("https://other/"));
	json_t *root = json_pack("{s:{s:[O,O,O]}}", "SubscribeListObject", "SubscribeObject", a,
	    b, c);
	char *text = json_dumps(root, JSON_COMPACT);
	struct viid_sub_item items[3];
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];
	T_INTEQ(read_text(text, items, 3, &code, why), 3);
	T_INTEQ(items[0].code, VIID_CODE_OK);
	T_INTEQ(items[1].code, VIID_CODE_INVALID_JSON_CONTENT);
	T_STREQ(items[1].id, SUB_ID);
	T_CHECK(names(items[1].why, "SubscribeID", SUB_ID));
	T_INTEQ(items[2].code, VIID_CODE_OK);
	T_STREQ(items[2].id, SUB_ID2);
	free(text);
	json_decref(root);
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

static void
test_details(void)
{
	const uint32_t f = VIID_DETAIL_BIT(12), st = VIID_DETAIL_BIT(4);

	T_INTEQ(with("SubscribeDetail", json_string("12,4")), VIID_CODE_OK);
	T_INTEQ(it.sub.details, f | st);
	T_INTEQ(with("SubscribeDetail", json_string(" 12 ,\t4 ")), VIID_CODE_OK);
	T_INTEQ(it.sub.details, f | st);
	T_INTEQ(with("SubscribeDetail", json_integer(12)), VIID_CODE_OK);
	T_INTEQ(it.sub.details, f);
	T_INTEQ(with("SubscribeDetail", json_real(13.0)), VIID_CODE_OK);
	T_INTEQ(it.sub.details, VIID_DETAIL_BIT(13));
	T_INTEQ(with("SubscribeDetail", json_pack("[ss]", "12", "4")), VIID_CODE_OK);
	T_INTEQ(it.sub.details, f | st);
	T_INTEQ(with("SubscribeDetail", json_pack("[ii]", 3, 13)), VIID_CODE_OK);
	T_INTEQ(it.sub.details, VIID_DETAIL_BIT(3) | VIID_DETAIL_BIT(13));
	T_INTEQ(with("SubscribeDetail", json_pack("[s]", "12,4")), VIID_CODE_OK);
	T_INTEQ(it.sub.details, f | st);
	T_INTEQ(with("SubscribeDetail", json_string("04")), VIID_CODE_OK);
	T_INTEQ(it.sub.details, st);
	/* Codes we do not serve, and items that are no code, are ignored. */
	T_INTEQ(with("SubscribeDetail", json_string("1,12,99,x,,-4")), VIID_CODE_OK);
	T_INTEQ(it.sub.details, f);
	T_INTEQ(with("SubscribeDetail", json_pack("[i,s,b,n,i]", 1, "x", 1, 31)),
	    VIID_CODE_INVALID_OPERATION);
	T_CHECK(names(it.why, "SubscribeDetail", NULL));

	/* None of ours: invalid operation. */
	static const char *const none[] = { "1,2", "", "5", "abc", "-12", "12.5", "4294967308",
		"99999999999999999999" };
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		T_INTEQ(with("SubscribeDetail", json_string(none[i])),
		    VIID_CODE_INVALID_OPERATION);
		T_CHECK(names(it.why, "SubscribeDetail", NULL));
		T_INTEQ(it.sub.details, 0);
	}
	T_INTEQ(with("SubscribeDetail", json_array()), VIID_CODE_INVALID_OPERATION);
	T_INTEQ(with("SubscribeDetail", json_integer(44)), VIID_CODE_INVALID_OPERATION);
	T_INTEQ(with("SubscribeDetail", json_integer(-4)), VIID_CODE_INVALID_OPERATION);
	/* Not given or of another type: invalid content. */
	T_INTEQ(with("SubscribeDetail", NULL), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "SubscribeDetail", NULL));
	T_INTEQ(with("SubscribeDetail", json_null()), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("SubscribeDetail", json_object()), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("SubscribeDetail", json_true()), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "SubscribeDetail", NULL));
}

static void
test_receive_addr(void)
{
	static const char *const good[] = {
		"http://10.0.0.1:8080/VIID/SubscribeNotifications", "https://platform.example",
		"HTTPS://Platform.Example:443/", "http://[::1]:8080/n",
		"http://host:/p", "http://h?x=1", "http://h#f", "http://a.b-c_d~e/p%20q?r=s&t=u",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		T_INTEQ(with("ReceiveAddr", json_string(good[i])), VIID_CODE_OK);
		T_STREQ(it.sub.receive_addr, good[i]);
	}
	char url[300];
	memset(url, 'a', sizeof(url));
	memcpy(url, "http://h/", 9);
	url[VIID_SUB_URL_MAX] = '\0';
	T_INTEQ(with("ReceiveAddr", json_string(url)), VIID_CODE_OK);	/* 256 bytes */
	T_INTEQ(strlen(it.sub.receive_addr), VIID_SUB_URL_MAX);
	url[VIID_SUB_URL_MAX] = 'a';
	url[VIID_SUB_URL_MAX + 1] = '\0';
	T_INTEQ(with("ReceiveAddr", json_string(url)), VIID_CODE_INVALID_JSON_CONTENT);
	T_STREQ(it.sub.receive_addr, "");

	static const char *const bad[] = {
		"ftp://secrethost/", "http://", "https://", "http:///secrethost", "//secrethost/x",
		"secrethost:80", "http://user:secret@host/", "http://ho st/", "http://host/a b",
		"http://host/\x01", "http://host/\x7f", "http://host:0/", "http://host:65536/",
		"http://host:8a/", "http://host:123456/", "http://[zz]/", "http://[]/",
		"http://[::1/", "http://[::1]x/", "http://\xe4\xb8\xbb/",
		"http://host/\xe4\xb8\xbb",
		"http:/host/", "http://ho<st/", " http://host/", "http://host/\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (with("ReceiveAddr", json_string(bad[i])) != VIID_CODE_INVALID_JSON_CONTENT)
			printf("# accepted: [%s]\n", bad[i]);
		T_INTEQ(it.code, VIID_CODE_INVALID_JSON_CONTENT);
		T_CHECK(names(it.why, "ReceiveAddr", "secret"));
	}
	T_STREQ(it.why, "ReceiveAddr is not an http:// or https:// URL of at most 256 printable "
	    "bytes with a host");
	T_INTEQ(with("ReceiveAddr", NULL), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "ReceiveAddr", NULL));
	T_INTEQ(with("ReceiveAddr", json_string("")), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("ReceiveAddr", json_integer(80)), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("ReceiveAddr", json_null()), VIID_CODE_INVALID_JSON_CONTENT);
}

static void
test_times(void)
{
	int64_t t = utc(2025, 3, 17, 23, 42, 15);

	T_INTEQ(with("BeginTime", json_string("20250318074215")), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, t);
	T_INTEQ(with("BeginTime", json_string("20250318074215123")), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, t + 123000);
	T_INTEQ(with("BeginTime", json_string("1742254935000")), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, t);
	T_INTEQ(with("BeginTime", json_integer(1742254935000LL)), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, t);
	T_INTEQ(with("BeginTime", json_integer(20250318074215LL)), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, t);
	T_INTEQ(with("EndTime", json_string(" 20250320000000 ")), VIID_CODE_OK);
	T_INTEQ(it.sub.end_us, utc(2025, 3, 19, 16, 0, 0));
	/* Not given. */
	T_INTEQ(with("BeginTime", NULL), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, 0);
	T_INTEQ(with("BeginTime", json_string("")), VIID_CODE_OK);
	T_INTEQ(it.sub.begin_us, 0);
	T_INTEQ(with("EndTime", json_null()), VIID_CODE_OK);
	T_INTEQ(it.sub.end_us, 0);
	T_INTEQ(it.sub.begin_us, utc(2025, 3, 17, 23, 41, 0));
	/* Not times. */
	static const char *const bad[] = { "2025-03-18 07:42:15", "20250230074215", "1742254935",
		"x", "20250318074260" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		T_INTEQ(with("BeginTime", json_string(bad[i])), VIID_CODE_INVALID_JSON_CONTENT);
		T_CHECK(names(it.why, "BeginTime", bad[i]));
		T_INTEQ(with("EndTime", json_string(bad[i])), VIID_CODE_INVALID_JSON_CONTENT);
		T_CHECK(names(it.why, "EndTime", bad[i]));
	}
	T_INTEQ(with("BeginTime", json_true()), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("BeginTime", json_integer(-1)), VIID_CODE_INVALID_JSON_CONTENT);
	T_INTEQ(with("EndTime", json_real(1742254935000.0)), VIID_CODE_INVALID_JSON_CONTENT);
	/* The order. */
	T_INTEQ(with2("BeginTime", json_string("20250318074215"), "EndTime",
	    json_string("20250318074214")), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "EndTime", NULL));
	T_INTEQ(with2("BeginTime", json_string("20250318074215"), "EndTime",
	    json_string("20250318074215")), VIID_CODE_OK);
	T_INTEQ(with2("BeginTime", json_null(), "EndTime", json_string("20000101000000")),
	    VIID_CODE_OK);
	T_INTEQ(it.sub.end_us, utc(1999, 12, 31, 16, 0, 0));
}

static void
test_report_interval(void)
{
	T_INTEQ(with("ReportInterval", json_integer(0)), VIID_CODE_OK);
	T_INTEQ(it.sub.report_interval_s, 0);
	T_INTEQ(with("ReportInterval", json_integer(86400)), VIID_CODE_OK);
	T_INTEQ(it.sub.report_interval_s, 86400);
	T_INTEQ(with("ReportInterval", json_string(" 60 ")), VIID_CODE_OK);
	T_INTEQ(it.sub.report_interval_s, 60);
	T_INTEQ(with("ReportInterval", json_real(30.0)), VIID_CODE_OK);
	T_INTEQ(it.sub.report_interval_s, 30);
	T_INTEQ(with("ReportInterval", json_string("")), VIID_CODE_OK);
	T_INTEQ(it.sub.report_interval_s, 0);
	T_INTEQ(with("ReportInterval", NULL), VIID_CODE_OK);
	T_INTEQ(it.sub.report_interval_s, 0);
	json_t *bad[] = { json_integer(-1), json_integer(86401), json_string("6o"),
		json_real(1.5), json_true(), json_string("-5"), json_string("1e3"), json_array() };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		T_INTEQ(with("ReportInterval", bad[i]), VIID_CODE_INVALID_JSON_CONTENT);
		T_CHECK(names(it.why, "ReportInterval", NULL));
	}
	T_STREQ(it.why, "ReportInterval is not a number of seconds 0..86400");
}

static void
test_operate_type(void)
{
	T_INTEQ(with("OperateType", json_integer(0)), VIID_CODE_OK);
	T_CHECK(!it.sub.cancel);
	T_INTEQ(with("OperateType", json_string("0")), VIID_CODE_OK);
	T_CHECK(!it.sub.cancel);
	T_INTEQ(with("OperateType", NULL), VIID_CODE_OK);
	T_CHECK(!it.sub.cancel);
	T_INTEQ(with("OperateType", json_integer(1)), VIID_CODE_OK);
	T_CHECK(it.sub.cancel);
	T_INTEQ(with("OperateType", json_string(" 1")), VIID_CODE_OK);
	T_CHECK(it.sub.cancel);
	json_t *bad[] = { json_integer(2), json_integer(-1), json_string("x"), json_true(),
		json_string("cancel") };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		T_INTEQ(with("OperateType", bad[i]), VIID_CODE_INVALID_JSON_CONTENT);
		T_CHECK(names(it.why, "OperateType", NULL));
	}

	/* A cancel is not refused for its other fields: they are left empty. */
	json_t *o = json_pack("{s:s,s:i,s:s,s:s,s:s,s:s,s:i,s:s}", "SubscribeID", SUB_ID,
	    "OperateType", 1, "ReceiveAddr", "ftp://x", "BeginTime", "x", "EndTime", "y",
	    "ResourceURI", "", "ReportInterval", -1, "CancelReason", "done\tfor now");
	T_INTEQ(read_one(o, &it), 1);
	T_INTEQ(it.code, VIID_CODE_OK);
	T_CHECK(it.sub.cancel);
	T_INTEQ(it.sub.details, 0);
	T_STREQ(it.sub.receive_addr, "");
	T_INTEQ(it.sub.begin_us, 0);
	T_INTEQ(it.sub.end_us, 0);
	T_INTEQ(it.sub.report_interval_s, 0);
	T_STREQ(it.sub.cancel_reason, "done for now");
	json_decref(o);
	/* ... but its right fields are kept. */
	T_INTEQ(with("OperateType", json_integer(1)), VIID_CODE_OK);
	T_STREQ(it.sub.receive_addr, "http://10.20.0.9:8080/VIID/SubscribeNotifications");
	T_INTEQ(it.sub.details, VIID_DETAIL_BIT(12) | VIID_DETAIL_BIT(4));
	/* A cancel still needs its id. */
	o = json_pack("{s:i}", "OperateType", 1);
	T_INTEQ(read_one(o, &it), 1);
	T_INTEQ(it.code, VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "SubscribeID", NULL));
	json_decref(o);
}

static void
test_texts(void)
{
	T_INTEQ(with("Title", json_string("a\x01" "b\tc\x7f" "d\xc2\x85" "e\xc2\xa0" "f")),
	    VIID_CODE_OK);
	T_STREQ(it.sub.title, "a b c d e\xc2\xa0" "f");	/* C0, DEL, C1; NBSP stays */
	T_INTEQ(with("Title", json_integer(7)), VIID_CODE_OK);
	T_STREQ(it.sub.title, "");
	T_INTEQ(with("Title", NULL), VIID_CODE_OK);
	T_STREQ(it.sub.title, "");

	char a[301];
	memset(a, 'a', 300);
	a[300] = '\0';
	T_INTEQ(with("Reason", json_string(a)), VIID_CODE_OK);
	T_INTEQ(strlen(it.sub.reason), VIID_SUB_TEXT_MAX);
	/* 100 three-byte characters: cut at a boundary, 85 of them. */
	char han[301] = "";
	for (int i = 0; i < 100; i++)
		strcat(han, "\xe4\xb8\xad");
	T_INTEQ(with("ApplicantName", json_string(han)), VIID_CODE_OK);
	T_INTEQ(strlen(it.sub.applicant_name), 255);
	T_CHECK(memcmp(it.sub.applicant_name, han, 255) == 0);
	/* A four-byte character at the boundary. */
	char emoji[VIID_SUB_TEXT_MAX + 8];
	memset(emoji, 'x', VIID_SUB_TEXT_MAX - 2);
	strcpy(emoji + VIID_SUB_TEXT_MAX - 2, "\xf0\x9f\x98\x80" "z");
	T_INTEQ(with("ApplicantOrg", json_string(emoji)), VIID_CODE_OK);
	T_INTEQ(strlen(it.sub.applicant_org), VIID_SUB_TEXT_MAX - 2);
	T_INTEQ(with("CancelReason", json_string("\xe2\x80\xa8")), VIID_CODE_OK);
	T_STREQ(it.sub.cancel_reason, "\xe2\x80\xa8");
}

static void
test_resources(void)
{
	struct viid_subscription *s = &it.sub;

	T_INTEQ(with("ResourceURI", json_string(
	    "/VIID/Faces, " GATE " ," GATE ",http://h/VIID/APEs," ANPR ",340104050111900000011,"
	    "3401040501119000000x,North gate")), VIID_CODE_OK);
	T_INTEQ(s->nresources, 2);
	T_STREQ(s->resources[0], GATE);
	T_STREQ(s->resources[1], ANPR);
	T_CHECK(forward_viid_subscribe_covers(s, GATE));
	T_CHECK(forward_viid_subscribe_covers(s, ANPR));
	T_CHECK(!forward_viid_subscribe_covers(s, "34010405011190000002"));
	T_CHECK(!forward_viid_subscribe_covers(s, NULL));
	T_CHECK(!forward_viid_subscribe_covers(s, ""));

	/* An array of such strings. */
	T_INTEQ(with("ResourceURI", json_pack("[s,i,s]", ANPR, 5, GATE "," ANPR)), VIID_CODE_OK);
	T_INTEQ(s->nresources, 2);
	T_STREQ(s->resources[0], ANPR);
	T_STREQ(s->resources[1], GATE);

	/* None: every device. */
	static const char *const none[] = { "", "/VIID/Faces", "the whole community", ",,," };
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		T_INTEQ(with("ResourceURI", json_string(none[i])), VIID_CODE_OK);
		T_INTEQ(s->nresources, 0);
		T_CHECK(forward_viid_subscribe_covers(s, GATE));
		T_CHECK(forward_viid_subscribe_covers(s, NULL));
	}
	T_INTEQ(with("ResourceURI", NULL), VIID_CODE_OK);
	T_INTEQ(s->nresources, 0);
	T_INTEQ(with("ResourceURI", json_null()), VIID_CODE_OK);
	T_INTEQ(s->nresources, 0);

	/* 64 ids, and a repeat of one, are taken; 65 are not. */
	char list[66 * 21 + 1] = "";
	for (int i = 0; i < 64; i++) {
		char id[24];
		snprintf(id, sizeof(id), "340104050111900%05d,", i);
		strcat(list, id);
	}
	strcat(list, "34010405011190000000");
	T_INTEQ(with("ResourceURI", json_string(list)), VIID_CODE_OK);
	T_INTEQ(s->nresources, VIID_SUB_RESOURCES_MAX);
	T_STREQ(s->resources[63], "34010405011190000063");
	strcat(list, ",34010405011190099999");
	T_INTEQ(with("ResourceURI", json_string(list)), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "ResourceURI", "34010405011190099999"));
	T_STREQ(it.why, "ResourceURI lists more than 64 device ids");
	T_INTEQ(s->nresources, 0);

	/* Of another type: refused rather than read as every device. */
	T_INTEQ(with("ResourceURI", json_object()), VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(it.why, "ResourceURI", NULL));
	T_INTEQ(with("ResourceURI", json_integer(3401)), VIID_CODE_INVALID_JSON_CONTENT);
}

/* ---- envelopes --------------------------------------------------------- */

static void
test_envelopes(void)
{
	struct viid_sub_item items[VIID_SUB_MAX + 1];
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];
	json_t *o = base_object();
	char *one = json_dumps(o, JSON_COMPACT);
	char text[8192];

	/* The forms taken. */
	static const char *const forms[] = {
		"{\"SubscribeListObject\":{\"SubscribeObject\":[%s]}}",
		"{\"SubscribeListObject\":{\"SubscribeObject\":%s}}",
		"{\"SubscribeListObject\":[%s]}",
		"{\"SubscribeObject\":%s}",
		"{\"SubscribeObject\":[%s]}",
		"\xef\xbb\xbf{\"SubscribeObject\":[%s]}\n",
		" {\"Other\":1,\"SubscribeObject\":[%s]} ",
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(text, sizeof(text), forms[i], one);
		T_INTEQ(read_text(text, items, 4, &code, why), 1);
		T_INTEQ(code, VIID_CODE_OK);
		T_STREQ(items[0].id, SUB_ID);
		T_INTEQ(items[0].code, VIID_CODE_OK);
	}
	/* NUL bytes after the JSON. */
	snprintf(text, sizeof(text), forms[0], one);
	size_t n = strlen(text);
	memset(text + n, 0, 3);
	T_INTEQ(forward_viid_subscribe_read_list(text, n + 3, items, 4, &code, why), 1);
	/* Not NUL-terminated: only `len` bytes count. */
	snprintf(text, sizeof(text), "%s", "{\"SubscribeObject\":[]}garbage");
	T_INTEQ(forward_viid_subscribe_read_list(text, 22, items, 4, &code, why), -1);
	T_INTEQ(code, VIID_CODE_INVALID_JSON_CONTENT);

	/* An element that is not an object: that one refused. */
	snprintf(text, sizeof(text), "{\"SubscribeObject\":[%s,7]}", one);
	T_INTEQ(read_text(text, items, 4, &code, why), 2);
	T_INTEQ(items[0].code, VIID_CODE_OK);
	T_INTEQ(items[1].code, VIID_CODE_INVALID_JSON_CONTENT);
	T_STREQ(items[1].id, "");
	T_CHECK(names(items[1].why, "SubscribeObject", NULL));

	/* The whole request refused. */
	static const struct {
		const char *body;
		enum viid_code code;
		const char *names;
	} bad[] = {
		{ "", VIID_CODE_INVALID_JSON_FORMAT, "empty" },
		{ "   ", VIID_CODE_INVALID_JSON_FORMAT, "JSON" },
		{ "{\"SubscribeObject\":[{\"Title\":\"secret\"", VIID_CODE_INVALID_JSON_FORMAT,
		  "JSON" },
		{ "secret", VIID_CODE_INVALID_JSON_FORMAT, "JSON" },
		{ "{\"a\":1} {}", VIID_CODE_INVALID_JSON_FORMAT, "JSON" },
		{ "{\"a\":\"\\u0000\"}", VIID_CODE_INVALID_JSON_FORMAT, "JSON" },
		{ "{\"a\":\"\xff\"}", VIID_CODE_INVALID_JSON_FORMAT, "JSON" },
		{ "[]", VIID_CODE_INVALID_JSON_CONTENT, "object" },
		{ "{}", VIID_CODE_INVALID_JSON_CONTENT, "SubscribeObject" },
		{ "{\"SubscribeListObject\":{}}", VIID_CODE_INVALID_JSON_CONTENT,
		  "SubscribeObject" },
		{ "{\"SubscribeListObject\":{\"SubscribeObject\":[]}}",
		  VIID_CODE_INVALID_JSON_CONTENT, "SubscribeObject" },
		{ "{\"SubscribeListObject\":{\"SubscribeObject\":\"secret\"}}",
		  VIID_CODE_INVALID_JSON_CONTENT, "SubscribeObject" },
		{ "{\"SubscribeObject\":null}", VIID_CODE_INVALID_JSON_CONTENT,
		  "SubscribeObject" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		T_INTEQ(read_text(bad[i].body, items, 4, &code, why), -1);
		T_INTEQ(code, bad[i].code);
		T_CHECK(names(why, bad[i].names, "secret"));
	}
	T_INTEQ(forward_viid_subscribe_read_list(NULL, 5, items, 4, &code, why), -1);
	T_INTEQ(code, VIID_CODE_INVALID_JSON_FORMAT);

	/* More objects than the caller has room for, or than VIID_SUB_MAX. */
	snprintf(text, sizeof(text), "{\"SubscribeObject\":[%s,%s,%s]}", one, one, one);
	T_INTEQ(read_text(text, items, 2, &code, why), -1);
	T_INTEQ(code, VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(why, "SubscribeObject", NULL));
	T_INTEQ(read_text(text, items, 3, &code, why), 3);
	T_INTEQ(read_text(text, NULL, 0, &code, why), -1);
	json_t *many = json_array();
	for (int i = 0; i < VIID_SUB_MAX + 1; i++) {
		char id[40];
		snprintf(id, sizeof(id), "3401040501120000000103202503%05d", i);
		json_t *c = json_deep_copy(o);
		json_object_set_new(c, "SubscribeID", json_string(id));
		json_array_append_new(many, c);
	}
	json_t *root = json_pack("{s:{s:O}}", "SubscribeListObject", "SubscribeObject", many);
	char *big = json_dumps(root, JSON_COMPACT);
	T_INTEQ(read_text(big, items, VIID_SUB_MAX + 1, &code, why), -1);
	T_INTEQ(code, VIID_CODE_INVALID_JSON_CONTENT);
	free(big);
	json_array_remove(many, 0);
	big = json_dumps(root, JSON_COMPACT);
	T_INTEQ(read_text(big, items, VIID_SUB_MAX + 1, &code, why), VIID_SUB_MAX);
	T_INTEQ(items[VIID_SUB_MAX - 1].code, VIID_CODE_OK);
	T_STREQ(items[VIID_SUB_MAX - 1].id, "340104050112000000010320250300100");
	free(big);
	json_decref(root);
	json_decref(many);

	/* A body over VIID_SUB_BODY_MAX is not read. */
	size_t huge = VIID_SUB_BODY_MAX + 1;
	char *h = malloc(huge);
	memset(h, ' ', huge);
	memcpy(h, text, strlen(text));
	T_INTEQ(forward_viid_subscribe_read_list(h, huge, items, 4, &code, why), -1);
	T_INTEQ(code, VIID_CODE_INVALID_JSON_CONTENT);
	T_CHECK(names(why, "body", NULL));
	T_INTEQ(forward_viid_subscribe_read_list(h, huge - 1, items, 4, &code, why), 3);
	free(h);

	free(one);
	json_decref(o);
}

static void
test_cancel(void)
{
	struct viid_sub_item c;
	static const struct {
		const char *body;
		int rc;
		enum viid_code code;
	} cases[] = {
		{ "", 0, VIID_CODE_OK },
		{ " \r\n", 0, VIID_CODE_OK },
		{ "{\"SubscribeObject\":{}}", 0, VIID_CODE_OK },
		{ "{\"SubscribeObject\":{\"SubscribeID\":null}}", 0, VIID_CODE_OK },
		{ "{\"SubscribeObject\":{\"SubscribeID\":\"\"}}", 0, VIID_CODE_OK },
		{ "{\"SubscribeObject\":[{\"SubscribeID\":\"" SUB_ID "\"}]}", 0, VIID_CODE_OK },
		{ "{\"SubscribeListObject\":{\"SubscribeObject\":[{\"SubscribeID\":\"" SUB_ID
		  "\"}]}}", 0, VIID_CODE_OK },
		/* OperateType is not read: the path says cancel. */
		{ "{\"SubscribeObject\":{\"OperateType\":0,\"ReceiveAddr\":\"x\"}}", 0,
		  VIID_CODE_OK },
		{ "{\"SubscribeObject\":{\"OperateType\":\"junk\"}}", 0, VIID_CODE_OK },
		{ "{\"SubscribeObject\":{\"SubscribeID\":\"" SUB_ID2 "\"}}", 0,
		  VIID_CODE_INVALID_JSON_CONTENT },
		{ "{\"SubscribeObject\":{\"SubscribeID\":12}}", 0,
		  VIID_CODE_INVALID_JSON_CONTENT },
		{ "x", -1, VIID_CODE_INVALID_JSON_FORMAT },
		{ "{}", -1, VIID_CODE_INVALID_JSON_CONTENT },
		{ "[]", -1, VIID_CODE_INVALID_JSON_CONTENT },
		{ "{\"SubscribeObject\":[]}", -1, VIID_CODE_INVALID_JSON_CONTENT },
		{ "{\"SubscribeObject\":[{},{}]}", -1, VIID_CODE_INVALID_JSON_CONTENT },
		{ "{\"SubscribeObject\":[1]}", -1, VIID_CODE_INVALID_JSON_CONTENT },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = forward_viid_subscribe_read_cancel(cases[i].body, strlen(cases[i].body),
		    SUB_ID, &c);
		if (rc != cases[i].rc || c.code != cases[i].code)
			printf("# case %zu: %s\n", i, cases[i].body);
		T_INTEQ(rc, cases[i].rc);
		T_INTEQ(c.code, cases[i].code);
		if (rc == 0 && c.code == VIID_CODE_OK) {
			T_CHECK(c.sub.cancel);
			T_STREQ(c.id, SUB_ID);
			T_STREQ(c.sub.id, SUB_ID);
		} else {
			T_CHECK(c.why[0] != '\0');
		}
	}
	T_INTEQ(forward_viid_subscribe_read_cancel(NULL, 0, SUB_ID, &c), 0);
	T_CHECK(c.sub.cancel);
	/* The path's id must be one. */
	T_INTEQ(forward_viid_subscribe_read_cancel("", 0, "34010405011200000001", &c), 0);
	T_INTEQ(c.code, VIID_CODE_INVALID_JSON_CONTENT);
	T_STREQ(c.id, "");
	T_CHECK(names(c.why, "SubscribeID", "34010405011200000001"));
	T_INTEQ(forward_viid_subscribe_read_cancel("", 0, NULL, &c), 0);
	T_INTEQ(c.code, VIID_CODE_INVALID_JSON_CONTENT);
}

static void
test_id_list(void)
{
	char ids[4][VIID_BUSINESS_ID_LEN + 1];

	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "," SUB_ID2, ids, 4), 2);
	T_STREQ(ids[0], SUB_ID);
	T_STREQ(ids[1], SUB_ID2);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "%2C" SUB_ID2, ids, 4), 2);
	T_STREQ(ids[1], SUB_ID2);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "%2c" SUB_ID2, ids, 4), 2);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=34010405011200000001032025031800%31", ids,
	    4), 1);
	T_STREQ(ids[0], SUB_ID);
	T_INTEQ(forward_viid_subscribe_id_list("?IDList=" SUB_ID, ids, 4), 1);
	T_STREQ(ids[0], SUB_ID);
	T_INTEQ(forward_viid_subscribe_id_list("a=1&IDList=" SUB_ID "&b", ids, 4), 1);
	T_INTEQ(forward_viid_subscribe_id_list("idlist=" SUB_ID, ids, 4), 1);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "," SUB_ID, ids, 4), 1);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "&IDList=" SUB_ID2, ids, 4), 2);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=+" SUB_ID "+,%20" SUB_ID2 ",,", ids, 4),
	    2);
	T_STREQ(ids[0], SUB_ID);
	T_STREQ(ids[1], SUB_ID2);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "," SUB_ID2, ids, 2), 2);
	/* Refused. */
	static const char *const bad[] = {
		"", "?", "IDList=", "IDList=,,", "IDLists=" SUB_ID, "IDList", "x=" SUB_ID,
		"IDList=" SUB_ID ",123", "IDList=" SUB_ID "x", "IDList=%2" SUB_ID,
		"IDList=" SUB_ID "%2",
		"IDList=" SUB_ID SUB_ID, "IDList=" SUB_ID "%00",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = forward_viid_subscribe_id_list(bad[i], ids, 4);
		if (rc != -1)
			printf("# accepted: [%s]\n", bad[i]);
		T_INTEQ(rc, -1);
	}
	T_INTEQ(forward_viid_subscribe_id_list(NULL, ids, 4), -1);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID "," SUB_ID2, ids, 1), -1);
	T_INTEQ(forward_viid_subscribe_id_list("IDList=" SUB_ID, ids, 0), -1);
}

/* ---- answers ----------------------------------------------------------- */

static void
test_answers(void)
{
	int64_t now = utc(2025, 3, 17, 23, 42, 16);
	size_t len;
	struct viid_answer a[] = {
		{ SUB_ID, VIID_CODE_OK, NULL },
		{ "", VIID_CODE_INVALID_JSON_CONTENT, "SubscribeID is not 33 digits" },
		{ SUB_ID2, VIID_CODE_INVALID_OPERATION, NULL },
		{ NULL, (enum viid_code)42, NULL },
	};

	char *b = forward_viid_answer_body("/VIID/Subscribes", a, 4, false, now, &len);
	T_STREQ(b, "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":["
	    "{\"RequestURL\":\"/VIID/Subscribes\",\"StatusCode\":0,\"StatusString\":\"OK\","
	    "\"Id\":\"" SUB_ID "\",\"LocalTime\":\"20250318074216\"},"
	    "{\"RequestURL\":\"/VIID/Subscribes\",\"StatusCode\":8,\"StatusString\":"
	    "\"SubscribeID is not 33 digits\",\"LocalTime\":\"20250318074216\"},"
	    "{\"RequestURL\":\"/VIID/Subscribes\",\"StatusCode\":4,\"StatusString\":"
	    "\"Invalid Operation\",\"Id\":\"" SUB_ID2 "\",\"LocalTime\":\"20250318074216\"},"
	    "{\"RequestURL\":\"/VIID/Subscribes\",\"StatusCode\":42,\"StatusString\":\"Error\","
	    "\"LocalTime\":\"20250318074216\"}]}}");
	T_INTEQ(len, strlen(b));
	free(b);

	b = forward_viid_answer_body("/VIID/Subscribes/" SUB_ID, a, 1, true, now, &len);
	T_STREQ(b, "{\"ResponseStatusObject\":{\"RequestURL\":\"/VIID/Subscribes/" SUB_ID "\","
	    "\"StatusCode\":0,\"StatusString\":\"OK\",\"Id\":\"" SUB_ID "\",\"LocalTime\":"
	    "\"20250318074216\"}}");
	T_INTEQ(len, strlen(b));
	free(b);

	/* Every code's name as the standard's table. */
	static const char *const names_[] = { "OK", "Other Error", "Device Busy", "Device Error",
		"Invalid Operation", "Invalid XML Format", "Invalid XML Content",
		"Invalid JSON Format", "Invalid JSON Content", "Reboot" };
	for (int c = 0; c < 10; c++) {
		struct viid_answer x = { NULL, (enum viid_code)c, NULL };
		b = forward_viid_answer_body("/", &x, 1, true, now, &len);
		json_t *r = json_loads(b, 0, NULL);
		T_STREQ(str(json_object_get(r, "ResponseStatusObject"), "StatusString"),
		    names_[c]);
		json_decref(r);
		free(b);
	}

	/* The query is cut, odd bytes encoded, a clock out of range leaves
	 * LocalTime out, a text that is not UTF-8 becomes the code's name. */
	struct viid_answer d = { SUB_ID, VIID_CODE_OK, "\xff" };
	b = forward_viid_answer_body("/VIID/Sub scribes\xe4\x01?IDList=" SUB_ID, &d, 1, false,
	    -(1LL << 62), &len);
	T_STREQ(b, "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":[{\"RequestURL\":"
	    "\"/VIID/Sub%20scribes%E4%01\",\"StatusCode\":0,\"StatusString\":\"OK\",\"Id\":\""
	    SUB_ID "\"}]}}");
	free(b);

	/* No answers. */
	b = forward_viid_answer_body("/VIID/Subscribes", NULL, 0, false, now, &len);
	T_STREQ(b, "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":[]}}");
	free(b);
	b = forward_viid_answer_body(NULL, NULL, 0, true, now, &len);
	T_STREQ(b, "{\"ResponseStatusObject\":{\"RequestURL\":\"\",\"StatusCode\":0,"
	    "\"StatusString\":\"OK\",\"LocalTime\":\"20250318074216\"}}");
	free(b);

	/* A long path is cut. */
	char path[600];
	memset(path, 'p', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	b = forward_viid_answer_body(path, a, 1, true, now, &len);
	json_t *r = json_loads(b, 0, NULL);
	T_INTEQ(strlen(str(json_object_get(r, "ResponseStatusObject"), "RequestURL")), 256);
	json_decref(r);
	free(b);

	/* The answers to a request read. */
	char *text = slurp("viid/subscribe_update_request.json", &len);
	struct viid_sub_item items[2];
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];
	int n = forward_viid_subscribe_read_list(text, len, items, 2, &code, why);
	free(text);
	struct viid_answer ans[2];
	for (int i = 0; i < n; i++)
		ans[i] = (struct viid_answer){ items[i].id, items[i].code,
			items[i].code != VIID_CODE_OK ? items[i].why : NULL };
	b = forward_viid_answer_body("/VIID/Subscribes", ans, (size_t)n, false, now, &len);
	T_STREQ(b, "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":["
	    "{\"RequestURL\":\"/VIID/Subscribes\",\"StatusCode\":0,\"StatusString\":\"OK\","
	    "\"Id\":\"" SUB_ID "\",\"LocalTime\":\"20250318074216\"},"
	    "{\"RequestURL\":\"/VIID/Subscribes\",\"StatusCode\":0,\"StatusString\":\"OK\","
	    "\"Id\":\"" SUB_ID2 "\",\"LocalTime\":\"20250318074216\"}]}}");
	free(b);
}

/* ---- notifications ----------------------------------------------------- */

static struct viid_device dev_gate = { .id = GATE };
static struct viid_device dev_anpr = { .id = ANPR };

static const struct viid_device *
devices(void *ctx, const char *community, const char *device)
{
	(void)ctx;
	(void)community;
	if (strcmp(device, GATE) == 0)
		return &dev_gate;
	if (strcmp(device, ANPR) == 0)
		return &dev_anpr;
	return NULL;
}

static const uint8_t jpeg[] = {
	0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
	0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0x2c, 0x00, 0xf0, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3,
	0x11, 1, 0xff, 0xd9,
};
static const struct viid_picture the_jpeg = { jpeg, sizeof(jpeg) };

static const struct viid_picture *
pictures(void *ctx, size_t record, size_t index)
{
	(void)ctx;
	(void)record;
	(void)index;
	return &the_jpeg;
}

/* A hand-made event of `device`: a camera alarm (wrong type for VIID) or
 * a person passage without a picture. */
static void
made_event(struct rec *r, uint8_t id_byte, const char *device, bool alarm)
{
	uint8_t id[16] = { id_byte, 0xaa };
	Gridbridge__V1__Event ev = GRIDBRIDGE__V1__EVENT__INIT;
	Gridbridge__V1__CameraAlarm a = GRIDBRIDGE__V1__CAMERA_ALARM__INIT;
	Gridbridge__V1__PersonPassage pp = GRIDBRIDGE__V1__PERSON_PASSAGE__INIT;

	ev.id.data = id;
	ev.id.len = 16;
	ev.event_time_us = utc(2025, 3, 17, 23, 50, 0);
	ev.community_id = "c";
	ev.device_id = (char *)device;
	if (alarm) {
		ev.body_case = GRIDBRIDGE__V1__EVENT__BODY_CAMERA_ALARM;
		ev.camera_alarm = &a;
	} else {
		ev.body_case = GRIDBRIDGE__V1__EVENT__BODY_PERSON;
		ev.person = &pp;
	}
	memcpy(r->id, id, 16);
	r->len = gridbridge__v1__event__get_packed_size(&ev);
	r->packed = malloc(r->len ? r->len : 1);
	gridbridge__v1__event__pack(&ev, r->packed);
}

static struct forward_record
record(const struct rec *r)
{
	return (struct forward_record){ .id = r->id, .record = r->packed, .len = r->len };
}

/* The first object of an upload body's list, parsed (a new reference). */
static json_t *
upload_object(char *body, const char *list, const char *object)
{
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	json_t *o = json_array_get(json_object_get(json_object_get(root, list), object), 0);
	json_incref(o);
	json_decref(root);
	free(body);
	return o;
}

/* Checks notification `n` for record `rec` against its upload object. */
static void
check_notification(json_t *n, const struct viid_item *item, const char *list,
    const char *object, const char *id_key, json_t *upload, const char *time)
{
	static const char *const keys[] = { "NotificationID", "SubscribeID", "Title",
		"TriggerTime", "InfoIDs" };
	const char *key;
	json_t *v;

	T_INTEQ(json_object_size(n), 6);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		T_CHECK(json_is_string(json_object_get(n, keys[i])));
	json_object_foreach(n, key, v) {
		bool known = strcmp(key, list) == 0;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			known |= strcmp(key, keys[i]) == 0;
		if (!known)
			printf("# extra key %s\n", key);
		T_CHECK(known);
	}
	const char *nid = str(n, "NotificationID");
	T_CHECK(all_digits(nid, VIID_BUSINESS_ID_LEN));
	T_CHECK(strncmp(nid, ORG "04", 14) == 0);
	T_CHECK(strncmp(nid + 14, time, VIID_TIME_LEN) == 0);
	T_STREQ(item->object_id, nid);
	T_INTEQ(item->refusal, VIID_INCLUDED);
	T_STREQ(str(n, "SubscribeID"), SUB_ID);
	T_STREQ(str(n, "Title"), "gate faces");
	T_STREQ(str(n, "TriggerTime"), time);
	json_t *objs = json_object_get(json_object_get(n, list), object);
	T_INTEQ(json_array_size(objs), 1);
	json_t *o = json_array_get(objs, 0);
	T_STREQ(str(n, "InfoIDs"), str(o, id_key));
	T_CHECK(upload != NULL && json_equal(o, upload));
}

static void
test_notifications(void)
{
	struct rec gate, anpr, hb, alarm, nopic, stranger;
	decode_fixture("gate_person_access_hikvision", 0, &gate);
	decode_fixture("vehicle_barrier_anpr_hikvision", 0, &anpr);
	decode_fixture("device_heartbeat_hikvision", 0, &hb);
	made_event(&alarm, 1, GATE, true);
	made_event(&nopic, 2, GATE, false);
	made_event(&stranger, 3, "34010405011190000099", true);
	struct forward_record recs[] = { record(&gate), record(&alarm), record(&anpr),
		record(&nopic), record(&hb), record(&stranger) };
	const size_t nrecs = sizeof(recs) / sizeof(recs[0]);
	struct viid_item items[6], up[1];
	struct viid_params p = { .pictures = VIID_PICTURES_DATA, .device = devices,
		.picture = pictures };
	struct viid_notify s = { .subscribe_id = SUB_ID, .title = "gate faces", .org = ORG };
	size_t len, ulen;

	char *body = forward_viid_notifications_body(recs, nrecs, &p, &s, items, &len);
	printf("# %s\n", body != NULL ? body : "(none)");
	T_CHECK(body != NULL);
	T_INTEQ(len, body != NULL ? strlen(body) : 0);
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	T_INTEQ(json_object_size(root), 1);
	json_t *ns = json_object_get(json_object_get(root, "SubscribeNotificationListObject"),
	    "SubscribeNotificationObject");
	T_INTEQ(json_array_size(ns), 3);

	/* The refused records. */
	T_INTEQ(items[1].refusal, VIID_REFUSED_WRONG_TYPE);
	T_STREQ(items[1].object_id, "");
	T_INTEQ(items[3].refusal, VIID_REFUSED_NO_PICTURE);
	T_STREQ(items[3].object_id, "");
	T_INTEQ(items[5].refusal, VIID_REFUSED_NO_DEVICE);
	T_STREQ(items[5].object_id, "");

	/* A face, a motor vehicle, a device status: each its upload object. */
	json_t *face = upload_object(forward_viid_faces_body(&recs[0], 1, &p, up, &ulen),
	    "FaceListObject", "FaceObject");
	check_notification(json_array_get(ns, 0), &items[0], "FaceObjectList", "FaceObject",
	    "FaceID", face, "20250318074215");
	json_t *mv = upload_object(forward_viid_vehicles_body(&recs[2], 1, &p, up, &ulen),
	    "MotorVehicleListObject", "MotorVehicleObject");
	check_notification(json_array_get(ns, 1), &items[2], "MotorVehicleObjectList",
	    "MotorVehicleObject", "MotorVehicleID", mv, "20250318080533");
	json_t *st = upload_object(forward_viid_ape_status_body(&recs[4], 1, &p, up, &ulen),
	    "APEStatusListObject", "APEStatusObject");
	check_notification(json_array_get(ns, 2), &items[4], "DeviceStatusList",
	    "APEStatusObject", "ApeID", st, "20250318074240");
	T_STREQ(str(json_array_get(ns, 2), "InfoIDs"), GATE);
	T_INTEQ(strlen(str(json_array_get(ns, 0), "InfoIDs")), VIID_OBJECT_ID_LEN);
	/* Three records, three ids. */
	T_CHECK(strcmp(items[0].object_id, items[2].object_id) != 0);
	T_CHECK(strcmp(items[0].object_id, items[4].object_id) != 0);

	/* The same records again: the same bytes. */
	struct viid_item again[6];
	char *body2 = forward_viid_notifications_body(recs, nrecs, &p, &s, again, &ulen);
	T_CHECK(body != NULL && body2 != NULL && strcmp(body, body2) == 0);
	T_STREQ(again[0].object_id, items[0].object_id);
	free(body2);
	/* Alone, a record keeps its id. */
	body2 = forward_viid_notifications_body(&recs[2], 1, &p, &s, again, &ulen);
	T_STREQ(again[0].object_id, items[2].object_id);
	free(body2);

	/* Another subscription: other NotificationIDs, the same objects. */
	struct viid_notify s2 = { .subscribe_id = SUB_ID2, .title = NULL, .org = ORG };
	body2 = forward_viid_notifications_body(recs, nrecs, &p, &s2, again, &ulen);
	json_t *root2 = json_loads(body2 != NULL ? body2 : "{}", 0, NULL);
	json_t *n2 = json_array_get(json_object_get(json_object_get(root2,
	    "SubscribeNotificationListObject"), "SubscribeNotificationObject"), 0);
	T_STREQ(str(n2, "Title"), "");
	T_STREQ(str(n2, "SubscribeID"), SUB_ID2);
	for (size_t i = 0; i < nrecs; i += 2) {
		T_INTEQ(again[i].refusal, VIID_INCLUDED);
		T_CHECK(strcmp(again[i].object_id, items[i].object_id) != 0);
		T_CHECK(strncmp(again[i].object_id, items[i].object_id, 28) == 0);
	}
	T_CHECK(json_equal(json_array_get(json_object_get(json_object_get(n2, "FaceObjectList"),
	    "FaceObject"), 0), face));
	json_decref(root2);
	free(body2);

	/* Another organisation: its code leads the ids. */
	struct viid_notify s3 = { .subscribe_id = SUB_ID, .title = "x", .org = "110000000000" };
	body2 = forward_viid_notifications_body(recs, 1, &p, &s3, again, &ulen);
	T_CHECK(strncmp(again[0].object_id, "11000000000004", 14) == 0);
	T_CHECK(strcmp(again[0].object_id + 12, items[0].object_id + 12) == 0);
	free(body2);

	/* Nothing to notify: no body. */
	body2 = forward_viid_notifications_body(&recs[1], 1, &p, &s, again, &ulen);
	T_CHECK(body2 == NULL);
	T_INTEQ(ulen, 0);
	T_INTEQ(again[0].refusal, VIID_REFUSED_WRONG_TYPE);
	body2 = forward_viid_notifications_body(recs, 0, &p, &s, again, &ulen);
	T_CHECK(body2 == NULL);

	/* A wrong organisation code or SubscribeID builds nothing. */
	static const char *const orgs[] = { "34010405011", "3401040501123", "34010405011x",
		NULL };
	for (size_t i = 0; i < sizeof(orgs) / sizeof(orgs[0]); i++) {
		struct viid_notify b = { .subscribe_id = SUB_ID, .org = orgs[i] };
		body2 = forward_viid_notifications_body(recs, nrecs, &p, &b, again, &ulen);
		T_CHECK(body2 == NULL);
		T_INTEQ(ulen, 0);
		T_INTEQ(again[0].refusal, VIID_REFUSED_BAD_DEVICE_ID);
		T_STREQ(again[0].object_id, "");
	}
	struct viid_notify b = { .subscribe_id = "34010405011200000001032025031800", .org = ORG };
	body2 = forward_viid_notifications_body(recs, nrecs, &p, &b, again, &ulen);
	T_CHECK(body2 == NULL);
	T_INTEQ(again[2].refusal, VIID_REFUSED_BAD_DEVICE_ID);

	json_decref(face);
	json_decref(mv);
	json_decref(st);
	json_decref(root);
	free(body);
	free(gate.packed);
	free(anpr.packed);
	free(hb.packed);
	free(alarm.packed);
	free(nopic.packed);
	free(stranger.packed);
}

static void
test_catalogue(void)
{
	struct viid_device devs[] = {
		{ .id = GATE, .name = "North gate pedestrian lane 1", .model = "face terminal",
		  .function_type = "2", .ip_addr = "10.20.1.31", .port = 80,
		  .place_code = "340104",
		  .has_position = true, .longitude = 117.2272, .latitude = 31.8206 },
		{ .id = "3401040501119000001" },			/* 19 digits */
		{ .id = ANPR },
		{ .id = NULL },
		{ .id = GATE, .name = "again" },
		{ .id = "34010405011190000031", .function_type = "" },
	};
	const char *online[] = { "1", "1", "2", "1", "1", "x" };
	struct viid_notify s = { .subscribe_id = SUB_ID, .title = "catalogue", .org = ORG };
	int64_t made = utc(2025, 3, 17, 23, 41, 0);
	char nid[VIID_BUSINESS_ID_LEN + 1], nid2[VIID_BUSINESS_ID_LEN + 1];
	size_t len, len2;

	char *body = forward_viid_catalogue_body(devs, online, 6, &s, made, nid, &len);
	printf("# %s\n", body != NULL ? body : "(none)");
	T_CHECK(body != NULL);
	T_INTEQ(len, body != NULL ? strlen(body) : 0);
	T_CHECK(all_digits(nid, VIID_BUSINESS_ID_LEN));
	T_CHECK(strncmp(nid, ORG "04" "20250318074100", 28) == 0);
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	json_t *ns = json_object_get(json_object_get(root, "SubscribeNotificationListObject"),
	    "SubscribeNotificationObject");
	T_INTEQ(json_array_size(ns), 1);
	json_t *n = json_array_get(ns, 0);
	T_INTEQ(json_object_size(n), 6);
	T_STREQ(str(n, "NotificationID"), nid);
	T_STREQ(str(n, "SubscribeID"), SUB_ID);
	T_STREQ(str(n, "Title"), "catalogue");
	T_STREQ(str(n, "TriggerTime"), "20250318074100");
	T_STREQ(str(n, "InfoIDs"), GATE "," ANPR ",34010405011190000031");
	json_t *apes = json_object_get(json_object_get(n, "DeviceList"), "APEObject");
	T_INTEQ(json_array_size(apes), 3);
	json_t *g = json_array_get(apes, 0), *a = json_array_get(apes, 1),
	    *c = json_array_get(apes, 2);
	T_STREQ(str(g, "IsOnline"), "1");
	T_STREQ(str(a, "IsOnline"), "2");
	T_STREQ(str(c, "IsOnline"), "9");
	T_STREQ(str(g, "FunctionType"), "2");
	T_STREQ(str(a, "FunctionType"), "99");
	T_STREQ(str(c, "FunctionType"), "99");
	T_STREQ(str(g, "Name"), "North gate pedestrian lane 1");
	T_CHECK(body != NULL && strstr(body, "\"Latitude\":31.8206,") != NULL);
	/* Only the id: nothing invented. */
	T_INTEQ(json_object_size(a), 3);

	/* A device's object is the upload's APEObject of a status record. */
	struct rec hb;
	decode_fixture("device_heartbeat_hikvision", 0, &hb);
	struct forward_record r = record(&hb);
	struct viid_item item;
	struct viid_params p = { .pictures = VIID_PICTURES_URL, .device = devices };
	dev_gate = devs[0];
	json_t *up = upload_object(forward_viid_apes_body(&r, 1, &p, &item, &len2),
	    "APEListObject", "APEObject");
	T_CHECK(up != NULL && json_equal(g, up));
	json_decref(up);
	dev_gate = (struct viid_device){ .id = GATE };
	free(hb.packed);

	/* Stable, and another subscription's is another. */
	char *body2 = forward_viid_catalogue_body(devs, online, 6, &s, made, nid2, &len2);
	T_CHECK(body != NULL && body2 != NULL && strcmp(body, body2) == 0);
	T_STREQ(nid2, nid);
	free(body2);
	struct viid_notify s2 = { .subscribe_id = SUB_ID2, .org = ORG };
	body2 = forward_viid_catalogue_body(devs, online, 6, &s2, made, nid2, &len2);
	T_CHECK(body2 != NULL);
	T_CHECK(strcmp(nid2, nid) != 0);
	T_CHECK(strncmp(nid2, nid, 28) == 0);
	free(body2);
	/* A later catalogue of the same subscription: its time. */
	body2 = forward_viid_catalogue_body(devs, online, 6, &s, made + 60000000, nid2, &len2);
	T_CHECK(strncmp(nid2 + 14, "20250318074200", 14) == 0);
	free(body2);

	/* No states: "9". */
	body2 = forward_viid_catalogue_body(devs, NULL, 1, &s, made, nid2, &len2);
	T_CHECK(body2 != NULL && strstr(body2, "\"IsOnline\":\"9\"") != NULL);
	free(body2);

	/* Nothing to list, a wrong organisation or time: no body. */
	body2 = forward_viid_catalogue_body(devs + 1, online, 1, &s, made, nid2, &len2);
	T_CHECK(body2 == NULL);
	T_INTEQ(len2, 0);
	T_STREQ(nid2, "");
	body2 = forward_viid_catalogue_body(devs, online, 0, &s, made, nid2, &len2);
	T_CHECK(body2 == NULL);
	struct viid_notify bad = { .subscribe_id = SUB_ID, .org = "3401040501" };
	body2 = forward_viid_catalogue_body(devs, online, 6, &bad, made, nid2, &len2);
	T_CHECK(body2 == NULL);
	T_INTEQ(len2, 0);
	T_STREQ(nid2, "");
	bad = (struct viid_notify){ .subscribe_id = "1", .org = ORG };
	body2 = forward_viid_catalogue_body(devs, online, 6, &bad, made, nid2, &len2);
	T_CHECK(body2 == NULL);
	body2 = forward_viid_catalogue_body(devs, online, 6, &s, -(1LL << 62), nid2, &len2);
	T_CHECK(body2 == NULL);
	T_STREQ(nid2, "");

	json_decref(root);
	free(body);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_forward_viid_subscribe FIXTURES_DIR\n");
		return 2;
	}
	fixtures = argv[1];
	test_samples();
	test_subscribe_id();
	test_details();
	test_receive_addr();
	test_times();
	test_report_interval();
	test_operate_type();
	test_texts();
	test_resources();
	test_envelopes();
	test_cancel();
	test_id_list();
	test_answers();
	test_notifications();
	test_catalogue();
	return t_done();
}
