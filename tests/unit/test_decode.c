/* Unit tests for the decode framework: identity, times, plates, UTF-8,
 * JSON integers; the resident report decoder's identity and fallbacks. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "t.h"
#include "util.h"

static const char access_json[] =
    "{\"dateTime\":\"2025-03-18T07:42:15+08:00\",\"eventType\":\"AccessControllerEvent\","
    "\"eventState\":\"active\",\"AccessControllerEvent\":{\"majorEventType\":5,"
    "\"subEventType\":75,\"employeeNoString\":\"B03U21502-01\",\"serialNo\":18842,"
    "\"currentVerifyMode\":\"cardOrFace\"}}";

static struct route route;

static void
setup_route(enum decoder_id d, const char *pattern)
{
	char err[128];

	route_pattern_free(&route.pattern);
	route.name = "t";
	route.community = "c-default";
	route.tz_offset_min = 480;
	route.utc_is_local = true;
	route.decoder = d;
	route.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_ACCESS_GATE;
	if (route_compile(&route.pattern, pattern, err, sizeof(err)) != 0)
		abort();
}

/* Decodes; returns 0 and the id in `id`, or -1 with the reason printed. */
static int
decode(const char *topic, const char *payload, int64_t received, uint64_t seq,
    uint8_t id[16], char *reason)
{
	struct decode_out out;
	struct route_match m;
	int rc = -1;

	decode_out_init(&out);
	if (route_matches(&route.pattern, topic, strlen(topic), &m)) {
		struct decode_in in = {
			.route = &route, .match = &m, .topic = topic, .topic_len = strlen(topic),
			.payload = (const uint8_t *)payload, .payload_len = strlen(payload),
			.received_us = received, .journal_seq = seq, .max_skew_us = 300000000,
		};
		rc = decode_record(&in, &out);
		if (rc == 0)
			memcpy(id, out.ev.id.data, 16);
		if (reason != NULL)
			strcpy(reason, out.reason);
	}
	decode_out_free(&out);
	return rc;
}

/* decode_json_integer() on the JSON text `js`: the value, or -999 when it
 * is not an integer in [lo, hi]. */
static long long
integer(const char *js, unsigned flags, long long lo, long long hi)
{
	json_t *v = json_loads(js, JSON_DECODE_ANY, NULL);
	long long n = -999;

	if (!decode_json_integer(v, flags, lo, hi, &n))
		n = -999;
	json_decref(v);
	return n;
}

static void
test_json_integer(void)
{
	T_INTEQ(integer("42", 0, LLONG_MIN, LLONG_MAX), 42);
	T_INTEQ(integer("-7", 0, LLONG_MIN, LLONG_MAX), -7);
	T_INTEQ(integer("42.0", 0, LLONG_MIN, LLONG_MAX), 42);
	T_INTEQ(integer("42.5", 0, LLONG_MIN, LLONG_MAX), -999);
	T_INTEQ(integer("1e16", 0, LLONG_MIN, LLONG_MAX), -999);	/* past exact doubles */
	T_INTEQ(integer("\"42\"", 0, LLONG_MIN, LLONG_MAX), -999);
	T_INTEQ(integer("\"42\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), 42);
	T_INTEQ(integer("\"-42\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), -42);
	T_INTEQ(integer("\"4 2\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), -999);
	T_INTEQ(integer("\"\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), -999);
	T_INTEQ(integer("\"-\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), -999);
	T_INTEQ(integer("\"123456789012345678\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX),
	    123456789012345678LL);
	T_INTEQ(integer("\"1234567890123456789\"", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX),
	    -999);
	T_INTEQ(integer("true", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), -999);
	T_INTEQ(integer("null", DECODE_INT_QUOTED, LLONG_MIN, LLONG_MAX), -999);
	T_CHECK(!decode_json_integer(NULL, DECODE_INT_QUOTED, 0, 1, &(long long){ 0 }));
	/* the range applies to every form */
	T_INTEQ(integer("100", 0, 0, 100), 100);
	T_INTEQ(integer("101", 0, 0, 100), -999);
	T_INTEQ(integer("-1", 0, 0, 100), -999);
	T_INTEQ(integer("101.0", 0, 0, 100), -999);
	T_INTEQ(integer("\"101\"", DECODE_INT_QUOTED, 0, 100), -999);
	/* rounding, halves away from zero, then the range */
	T_INTEQ(integer("87.4", DECODE_INT_ROUND, 0, 100), 87);
	T_INTEQ(integer("87.5", DECODE_INT_ROUND, 0, 100), 88);
	T_INTEQ(integer("100.4", DECODE_INT_ROUND, 0, 100), 100);
	T_INTEQ(integer("100.5", DECODE_INT_ROUND, 0, 100), -999);
	T_INTEQ(integer("-0.4", DECODE_INT_ROUND, 0, 100), 0);
	T_INTEQ(integer("-0.5", DECODE_INT_ROUND, 0, 100), -999);
}

/* Decodes a resident report (DECODER_REPORT on `pattern`, route community
 * `route_community`); returns 0 and copies the record's community, device
 * and door (each at most 63 bytes here), or -1 with the reason. */
static int
report(const char *pattern, const char *route_community, const char *topic,
    const char *payload, char community[64], char device[64], char door[64], char *reason)
{
	struct decode_out out;
	struct route_match m;
	int rc = -1;

	setup_route(DECODER_REPORT, pattern);
	route.community = (char *)route_community;
	route.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_REPORT_POINT;
	decode_out_init(&out);
	reason[0] = '\0';
	if (route_matches(&route.pattern, topic, strlen(topic), &m)) {
		struct decode_in in = {
			.route = &route, .match = &m, .topic = topic, .topic_len = strlen(topic),
			.payload = (const uint8_t *)payload, .payload_len = strlen(payload),
			.received_us = 1742256000000000LL, .journal_seq = 1,
			.max_skew_us = 300000000,
		};
		rc = decode_record(&in, &out);
		if (rc == 0) {
			snprintf(community, 64, "%s", out.ev.community_id);
			snprintf(device, 64, "%s", out.ev.device_id);
			snprintf(door, 64, "%s", out.ev.report->door);
		}
		strcpy(reason, out.reason);
	}
	decode_out_free(&out);
	return rc;
}

/* Resident reports: who the record is about when the topic does not say,
 * and what makes two messages the same event. */
static void
test_report(void)
{
	const char *opened = "{\"type\":\"report_opened\",\"report_id\":\"RP-42\","
	    "\"door\":\"B03-U2-east\",\"opened_at\":\"2025-03-18T07:12:05+08:00\","
	    "\"deadline\":\"2025-03-19T07:12:05+08:00\"}";
	const char *topic = "sac/340104050101/report/QR-7/event";
	char community[64], device[64], door[64], reason[96];
	uint8_t a[16], b[16];

	/* The topic names the community and the QR code; the payload's
	 * community does not override it. */
	const char *with_community = "{\"type\":\"report_handled\",\"report_id\":\"RP-42\","
	    "\"community\":\"elsewhere\",\"handled_at\":1742254800}";
	T_INTEQ(report("sac/{community}/report/{device}/event", "", topic, with_community,
	    community, device, door, reason), 0);
	T_STREQ(community, "340104050101");
	T_STREQ(device, "QR-7");
	T_STREQ(door, "QR-7");		/* no door in the payload: the QR code's */
	/* Neither topic nor route names the community: the payload's. */
	T_INTEQ(report("sac/+/report/{device}/event", "", topic, with_community, community,
	    device, door, reason), 0);
	T_STREQ(community, "elsewhere");
	/* The route's community comes before the payload's. */
	T_INTEQ(report("sac/+/report/{device}/event", "c-route", topic, with_community,
	    community, device, door, reason), 0);
	T_STREQ(community, "c-route");
	/* No {device}: the door is the device; without a door, rejected. */
	T_INTEQ(report("sac/{community}/report/+/event", "", topic, opened, community, device,
	    door, reason), 0);
	T_STREQ(device, "B03-U2-east");
	T_STREQ(door, "B03-U2-east");
	T_INTEQ(report("sac/{community}/report/+/event", "", topic, with_community, community,
	    device, door, reason), -1);
	T_STREQ(reason, "missing_field:device");

	/* Identity: the report id, the type and the type's time, not the
	 * bytes: the platform sending the same change again, written another
	 * way, is the same event. */
	setup_route(DECODER_REPORT, "sac/{community}/report/{device}/event");
	T_INTEQ(decode(topic, opened, 1742256000000000LL, 1, a, reason), 0);
	const char *rewritten = "{ \"deadline\": 1742339525, \"opened_at\": 1742253125,\n"
	    "  \"door\": \"B03-U2-east\", \"report_id\": \"RP-42\", \"type\": \"report_opened\" }";
	T_INTEQ(decode(topic, rewritten, 1742256099000000LL, 2, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) == 0);
	/* Another report, another change of it, or the report opened again
	 * later: other events. */
	char other[512];
	snprintf(other, sizeof(other), "%s", opened);
	memcpy(strstr(other, "RP-42"), "RP-43", 5);
	T_INTEQ(decode(topic, other, 1742256000000000LL, 3, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);
	snprintf(other, sizeof(other), "{\"type\":\"report_closed\",\"report_id\":\"RP-42\","
	    "\"closed_at\":\"2025-03-18T07:12:05+08:00\"}");
	T_INTEQ(decode(topic, other, 1742256000000000LL, 4, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);
	snprintf(other, sizeof(other), "%s", opened);
	memcpy(strstr(other, "07:12:05"), "09:12:05", 8);
	T_INTEQ(decode(topic, other, 1742256000000000LL, 5, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);
	route.community = "c-default";
}

int
main(void)
{
	int64_t us;
	uint8_t a[16], b[16];
	char reason[96];

	/* Times. */
	T_INTEQ(decode_time_iso8601("2025-03-18T07:42:15+08:00", 0, &us), 0);
	T_INTEQ(us, 1742254935000000LL);
	T_INTEQ(decode_time_iso8601("2025-03-17T23:42:15Z", 480, &us), 0);
	T_INTEQ(us, 1742254935000000LL);
	T_INTEQ(decode_time_iso8601("2025-03-18 07:42:15.250", 480, &us), 0);	/* local */
	T_INTEQ(us, 1742254935250000LL);
	T_INTEQ(decode_time_iso8601("2025-03-18T07:42:15+0800", 0, &us), 0);
	T_INTEQ(us, 1742254935000000LL);
	T_INTEQ(decode_time_iso8601("2025-02-29T00:00:00Z", 0, &us), -1);
	T_INTEQ(decode_time_iso8601("2025-03-18T24:00:00Z", 0, &us), -1);
	T_INTEQ(decode_time_iso8601("2025-03-18T07:42:15+08:00junk", 0, &us), -1);
	T_INTEQ(decode_time_iso8601("yesterday", 0, &us), -1);
	T_INTEQ(decode_time_epoch(1742254935, &us), 0);
	T_INTEQ(us, 1742254935000000LL);
	T_INTEQ(decode_time_epoch(1742254935123.0, &us), 0);	/* ms */
	T_INTEQ(us, 1742254935123000LL);
	T_INTEQ(decode_time_epoch(-1, &us), -1);
	/* Dahua: local wall clock dressed as epoch seconds. */
	T_INTEQ(decode_time_local_epoch(1742283735, 480), 1742254935000000LL);
	int tz;
	T_INTEQ(decode_parse_tz("+08:00", &tz), 0);
	T_INTEQ(tz, 480);
	T_INTEQ(decode_parse_tz("-0530", &tz), 0);
	T_INTEQ(tz, -330);
	T_INTEQ(decode_parse_tz("Asia/Shanghai", &tz), -1);

	/* Plates: kept as written elsewhere; normalized here. */
	struct arena ar = { 0 };
	T_STREQ(decode_plate_normalize(&ar, "皖A12345"), "皖A12345");
	T_STREQ(decode_plate_normalize(&ar, "皖a·123 45"), "皖A12345");
	T_STREQ(decode_plate_normalize(&ar, "jing-b 88888"), "JINGB88888");
	arena_free(&ar);

	/* UTF-8. */
	T_CHECK(util_utf8_valid((const uint8_t *)"皖A", 4));
	T_CHECK(!util_utf8_valid((const uint8_t *)"\xff", 1));
	T_CHECK(!util_utf8_valid((const uint8_t *)"\xc0\xaf", 2));	/* overlong */
	T_CHECK(!util_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));	/* surrogate */
	T_CHECK(!util_utf8_valid((const uint8_t *)"\xe7\x9a", 2));	/* cut short */

	/* Identity: the same message twice (redelivery, journal replay) has
	 * the same id, whatever the receive time and journal position. */
	setup_route(DECODER_HIKVISION, "sac/{community}/access/{device}/event");
	const char *topic = "sac/340104050101/access/34010405011190000001/event";
	T_INTEQ(decode(topic, access_json, 1742256000000000LL, 7, a, reason), 0);
	T_INTEQ(decode(topic, access_json, 1742256099000000LL, 9123, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) == 0);
	T_INTEQ(a[6] >> 4, 8);		/* UUID version 8 */
	T_INTEQ(a[8] >> 6, 2);		/* RFC 9562 variant */

	/* Two different events never share an id: another serial, another
	 * device, another community, another time. */
	char other[sizeof(access_json) + 8];
	snprintf(other, sizeof(other), "%s", access_json);
	memcpy(strstr(other, "18842"), "18843", 5);
	T_INTEQ(decode(topic, other, 1742256000000000LL, 8, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);
	T_INTEQ(decode("sac/340104050101/access/34010405011190000002/event", access_json,
	    1742256000000000LL, 8, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);
	T_INTEQ(decode("sac/340104050102/access/34010405011190000001/event", access_json,
	    1742256000000000LL, 8, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);
	snprintf(other, sizeof(other), "%s", access_json);
	memcpy(strstr(other, "07:42:15"), "07:42:16", 8);
	T_INTEQ(decode(topic, other, 1742256000000000LL, 8, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);

	/* Without device time or serial, the receive time decides: the same
	 * text at two moments is two events (and a redelivery after a crash is
	 * one of the documented duplicates). */
	setup_route(DECODER_SHELLY_SENSOR, "shellies/{device}/sensor/state");
	T_INTEQ(decode("shellies/door-1/sensor/state", "open", 1742256000000000LL, 1, a, reason), 0);
	T_INTEQ(decode("shellies/door-1/sensor/state", "open", 1742256000000000LL, 2, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) == 0);
	T_INTEQ(decode("shellies/door-1/sensor/state", "open", 1742256005000000LL, 3, b, reason), 0);
	T_CHECK(memcmp(a, b, 16) != 0);

	/* Framework rejections carry their reason. */
	setup_route(DECODER_HIKVISION, "sac/{community}/access/{device}/event");
	T_INTEQ(decode(topic, "", 1, 1, a, reason), -1);
	T_STREQ(reason, "empty");
	T_INTEQ(decode(topic, "{\"a\":\xff}", 1, 1, a, reason), -1);
	T_STREQ(reason, "bad_utf8");
	T_INTEQ(decode(topic, "{\"a\":", 1, 1, a, reason), -1);
	T_STREQ(reason, "bad_json");

	/* A route without {device}: the record needs a device id from the
	 * payload, or it is rejected. */
	setup_route(DECODER_SHELLY_SENSOR, "shellies/+/sensor/state");
	T_INTEQ(decode("shellies/door-1/sensor/state", "open", 1, 1, a, reason), -1);
	T_STREQ(reason, "missing_field:device");

	test_report();
	route_pattern_free(&route.pattern);
	test_json_integer();
	return t_done();
}
