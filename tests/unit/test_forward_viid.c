/* Unit tests for the GA/T 1400 profile's ids, times and bodies
 * (forward_viid.h). The bodies are built from device fixtures decoded as
 * the daemon decodes them, and compared field by field with the request
 * samples in tests/fixtures/viid/.
 *
 *   test_forward_viid FIXTURES_DIR      (tests/fixtures) */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "event.pb-c.h"
#include "forward_viid.h"
#include "fixture_events.h"
#include "t.h"

/* ---- helpers ----------------------------------------------------------- */

/* UTC microseconds of a civil UTC time. */
static int64_t
utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
		.tm_min = mi, .tm_sec = s };
	return (int64_t)timegm(&tm) * 1000000;
}

static const char *
fmt(int64_t us)
{
	static char out[VIID_TIME_LEN + 1];
	if (forward_viid_time_format(us, out) != 0)
		return "(error)";
	return out;
}

static int64_t
parse(const char *s)
{
	int64_t us;
	return forward_viid_time_parse(s, strlen(s), &us) == 0 ? us : -999;
}

/* A packed record of a device fixture, decoded by the hikvision decoder
 * on the route the golden tests use. */
static void
pack(const Gridbridge__V1__Event *ev, struct rec *r)
{
	memcpy(r->id, ev->id.data, 16);
	r->len = gridbridge__v1__event__get_packed_size(ev);
	r->packed = malloc(r->len ? r->len : 1);
	gridbridge__v1__event__pack(ev, r->packed);
}

static struct forward_record
record(const struct rec *r)
{
	return (struct forward_record){ .id = r->id, .record = r->packed, .len = r->len };
}

/* The configured devices: the fixtures' topics name them by their
 * 20-digit ids already; "bad" maps to an invalid id. */
static struct viid_device dev_gate = { .id = "34010405011190000001" };
static struct viid_device dev_anpr = { .id = "34010405011190000011" };
static struct viid_device dev_bad = { .id = "3401040501119000001" };

static const struct viid_device *
devices(void *ctx, const char *community, const char *device)
{
	(void)ctx;
	(void)community;
	if (strcmp(device, "34010405011190000001") == 0)
		return &dev_gate;
	if (strcmp(device, "34010405011190000011") == 0)
		return &dev_anpr;
	if (strcmp(device, "bad") == 0)
		return &dev_bad;
	return NULL;
}

/* A 240x300 JPEG header: SOI, APP0, SOF0 (and nothing worth decoding). */
static const uint8_t jpeg[] = {
	0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
	0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0x2c, 0x00, 0xf0, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3,
	0x11, 1, 0xff, 0xd9,
};
static struct viid_picture the_jpeg = { jpeg, sizeof(jpeg) };

static const uint8_t png_bytes[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
	'I', 'H', 'D', 'R', 0, 0, 0x07, 0x80, 0, 0, 0x04, 0x38, 8, 2, 0, 0, 0 };
static struct viid_picture the_png = { png_bytes, sizeof(png_bytes) };

/* Record picture 0: the JPEG, picture 1: the PNG. */
static const struct viid_picture *
by_index(void *ctx, size_t record, size_t index)
{
	(void)ctx;
	(void)record;
	return index == 0 ? &the_jpeg : index == 1 ? &the_png : NULL;
}

static const struct viid_picture *
pictures(void *ctx, size_t record, size_t index)
{
	(void)record;
	(void)index;
	return ctx != NULL ? &the_jpeg : NULL;
}

/* Every key of the sample's object `want` is in `got` with the same JSON
 * type, except those listed in `absent` (which must be absent); `got` has
 * no key the sample lacks except those in `extra`. */
static void
same_shape(json_t *got, json_t *want, const char *const *absent, const char *const *extra,
    const char *what)
{
	const char *key;
	json_t *v;
	int ok = 1;

	json_object_foreach(want, key, v) {
		bool gone = false;
		for (const char *const *a = absent; a != NULL && *a != NULL; a++)
			gone |= strcmp(*a, key) == 0;
		json_t *g = json_object_get(got, key);
		if (gone ? g != NULL : g == NULL || json_typeof(g) != json_typeof(v)) {
			printf("# %s: key %s %s\n", what, key, gone ? "present" : "missing or retyped");
			ok = 0;
		}
	}
	json_object_foreach(got, key, v) {
		bool allowed = json_object_get(want, key) != NULL;
		for (const char *const *e = extra; e != NULL && *e != NULL; e++)
			allowed |= strcmp(*e, key) == 0;
		if (!allowed) {
			printf("# %s: extra key %s\n", what, key);
			ok = 0;
		}
	}
	t_report(ok, what, __FILE__, __LINE__);
}

static const char *
str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "(none)";
}

static long long
num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : -999;
}

static bool
all_digits(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* The first object of a body's list. */
static json_t *
first(json_t *root, const char *list, const char *object, size_t *n)
{
	json_t *arr = json_object_get(json_object_get(root, list), object);
	*n = json_array_size(arr);
	return json_array_get(arr, 0);
}

/* ---- ids and times ----------------------------------------------------- */

static void
test_device_ids(void)
{
	T_INTEQ(forward_viid_check_device_id("34010405011190000001"), VIID_ID_OK);
	T_INTEQ(forward_viid_check_device_id(NULL), VIID_ID_LENGTH);
	T_INTEQ(forward_viid_check_device_id(""), VIID_ID_LENGTH);
	T_INTEQ(forward_viid_check_device_id("3401040501119000000"), VIID_ID_LENGTH);
	T_INTEQ(forward_viid_check_device_id("340104050111900000012"), VIID_ID_LENGTH);
	T_INTEQ(forward_viid_check_device_id("3401040X011190000001"), VIID_ID_REGION);
	T_INTEQ(forward_viid_check_device_id("00010405011190000001"), VIID_ID_REGION);
	T_INTEQ(forward_viid_check_device_id("99010405011190000001"), VIID_ID_REGION);
	T_INTEQ(forward_viid_check_device_id("340104050X1190000001"), VIID_ID_INDUSTRY);
	T_INTEQ(forward_viid_check_device_id("34010405011a90000001"), VIID_ID_TYPE);
	T_INTEQ(forward_viid_check_device_id("3401040501119-000001"), VIID_ID_NETWORK);
	T_INTEQ(forward_viid_check_device_id("3401040501119000000x"), VIID_ID_SERIAL);
	/* The first wrong part from the left. */
	T_INTEQ(forward_viid_check_device_id("3401040x0111900000x1"), VIID_ID_REGION);
	T_STREQ(forward_viid_id_part_name(VIID_ID_TYPE), "type (digits 11-13)");
	T_STREQ(forward_viid_id_part_name(VIID_ID_LENGTH), "length (20 digits)");
}

static void
test_time_format(void)
{
	/* The samples' event: 07:42:15 in Beijing is 23:42:15 UTC the day before. */
	T_STREQ(fmt(utc(2025, 3, 17, 23, 42, 15)), "20250318074215");
	T_STREQ(fmt(utc(2025, 3, 17, 23, 42, 15) + 999999), "20250318074215");
	/* Across a UTC midnight: Beijing's day changes at 16:00 UTC. */
	T_STREQ(fmt(utc(2025, 3, 17, 15, 59, 59)), "20250317235959");
	T_STREQ(fmt(utc(2025, 3, 17, 16, 0, 0)), "20250318000000");
	T_STREQ(fmt(utc(2025, 3, 18, 0, 0, 0)), "20250318080000");
	T_STREQ(fmt(utc(2025, 3, 17, 23, 59, 59)), "20250318075959");
	/* A year boundary, and a leap day. */
	T_STREQ(fmt(utc(2024, 12, 31, 15, 59, 59)), "20241231235959");
	T_STREQ(fmt(utc(2024, 12, 31, 16, 0, 0)), "20250101000000");
	T_STREQ(fmt(utc(2025, 1, 1, 0, 0, 0)), "20250101080000");
	T_STREQ(fmt(utc(2024, 2, 28, 16, 0, 0)), "20240229000000");
	T_STREQ(fmt(utc(2100, 2, 28, 16, 0, 0)), "21000301000000");
	/* The epoch and the range. */
	T_STREQ(fmt(0), "19700101080000");
	T_STREQ(fmt(-8LL * 3600 * 1000000), "19700101000000");
	T_STREQ(fmt(-8LL * 3600 * 1000000 - 1), "(error)");
	T_STREQ(fmt(utc(9999, 12, 31, 15, 59, 59)), "99991231235959");
	T_STREQ(fmt(utc(9999, 12, 31, 16, 0, 0)), "(error)");
	T_STREQ(fmt(INT64_MAX), "(error)");
	T_STREQ(fmt(INT64_MIN), "(error)");
}

static void
test_time_parse(void)
{
	int64_t t = utc(2025, 3, 17, 23, 42, 15);

	T_INTEQ(parse("20250318074215"), t);
	T_INTEQ(parse("\"20250318074215\""), t);
	T_INTEQ(parse(" 20250318074215\r\n"), t);
	T_INTEQ(parse("20250318074215123"), t + 123000);
	T_INTEQ(parse("\"20250318074215000\""), t);
	T_INTEQ(parse("1742254935000"), t);
	T_INTEQ(parse("1742254935123"), t + 123000);
	T_INTEQ(parse("\"1742254935000\""), t);
	T_INTEQ(parse("100000000000"), 100000000000000LL);		/* 12 digits: 1973 */
	T_INTEQ(parse("20240229000000"), utc(2024, 2, 28, 16, 0, 0));
	T_INTEQ(parse("20250101000000"), utc(2024, 12, 31, 16, 0, 0));
	T_INTEQ(parse("19700101080000"), 0);
	T_INTEQ(parse("99991231235959"), utc(9999, 12, 31, 15, 59, 59));
	/* Not NUL-terminated: only `len` bytes count. */
	int64_t us = 0;
	T_INTEQ(forward_viid_time_parse("20250318074215XYZ", 14, &us), 0);
	T_INTEQ(us, t);
	T_INTEQ(forward_viid_time_parse("20250318074215", 13, &us), 0);	/* 13 digits: ms */
	T_INTEQ(forward_viid_time_parse(NULL, 0, &us), -1);
	/* Round trip. */
	T_STREQ(fmt(parse("20241231235959")), "20241231235959");
	/* Junk. */
	static const char *const junk[] = {
		"", "\"\"", "\"", " ", "2025-03-18 07:42:15", "2025-03-18T07:42:15+08:00",
		"20251318074215", "20250018074215", "20250230074215", "20230229000000",
		"20250300074215", "20250318246000", "20250318076000", "20250318074260",
		"19691231235959", "1742254935", "17422549350", "17422549350000000000",
		"\"20250318074215", "20250318074215\"", "'20250318074215'", "+1742254935000",
		"-1742254935000", "1.742254935E12", "1742254935000.0", "174225493500x",
		"2025031807421", "202503180742151", "2025031807421512", "202503180742151234",
		"null", "true", "\"\"20250318074215\"\"", "2025 0318074215",
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		int64_t v;
		int rc = forward_viid_time_parse(junk[i], strlen(junk[i]), &v);
		/* 13 digits parse as milliseconds: that one is not junk. */
		if (strcmp(junk[i], "2025031807421") == 0) {
			T_INTEQ(rc, 0);
			continue;
		}
		if (rc != -1)
			printf("# accepted: [%s]\n", junk[i]);
		T_INTEQ(rc, -1);
	}
}

static void
test_ids(void)
{
	static const uint8_t a[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	static const uint8_t b[16] = { 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 };
	const char *dev = "34010405011190000001";
	int64_t t = utc(2025, 3, 17, 23, 42, 15);
	char img0[VIID_IMAGE_ID_LEN + 1], img1[VIID_IMAGE_ID_LEN + 1], again[VIID_IMAGE_ID_LEN + 1];
	char obj[VIID_OBJECT_ID_LEN + 1], src[VIID_IMAGE_ID_LEN + 1], other[VIID_OBJECT_ID_LEN + 1];
	char bid[VIID_BUSINESS_ID_LEN + 1];

	T_INTEQ(forward_viid_image_id(dev, a, t, 0, img0), 0);
	T_INTEQ(strlen(img0), 41);
	T_CHECK(all_digits(img0));
	T_CHECK(strncmp(img0, "3401040501119000000102" "20250318074215", 36) == 0);
	char seq[6];
	snprintf(seq, sizeof(seq), "%05u", forward_viid_sequence(a, 'i'));
	T_STREQ(img0 + 36, seq);
	/* Deterministic, and picture 1 follows picture 0. */
	forward_viid_image_id(dev, a, t, 0, again);
	T_STREQ(again, img0);
	forward_viid_image_id(dev, a, t, 1, img1);
	T_CHECK(strncmp(img1, img0, 36) == 0);
	T_INTEQ(atoi(img1 + 36), (atoi(img0 + 36) + 1) % 100000);
	T_INTEQ(forward_viid_image_id(dev, a, -30000000000000LL, 0, again), -1);
	T_STREQ(again, "");

	forward_viid_object_id(img0, VIID_OBJECT_FACE, a, obj);
	T_INTEQ(strlen(obj), 48);
	T_CHECK(all_digits(obj));
	T_CHECK(strncmp(obj, img0, 41) == 0);
	T_CHECK(strncmp(obj + 41, "06", 2) == 0);
	forward_viid_source_id(obj, src);
	T_INTEQ(strlen(src), 41);
	T_STREQ(src, img0);
	forward_viid_object_id(img0, VIID_OBJECT_MOTOR_VEHICLE, a, other);
	T_CHECK(strncmp(other + 41, "02", 2) == 0);
	T_CHECK(strcmp(other + 43, obj + 43) == 0);

	/* Another event of the same device and second: other sequences. */
	forward_viid_image_id(dev, b, t, 0, again);
	T_CHECK(strcmp(again, img0) != 0);
	T_CHECK(forward_viid_sequence(a, 'i') != forward_viid_sequence(a, 'o'));
	/* 200 events in one second: the expected number of shared sequences
	 * is 200 * 199 / 2 / 100000 = 0.2. */
	static unsigned seen[200];
	size_t distinct = 0;
	bool in_range = true;
	for (unsigned i = 0; i < 200; i++) {
		uint8_t id[16] = { 0 };
		id[0] = (uint8_t)i;
		id[15] = 0x5a;
		unsigned s = forward_viid_sequence(id, 'i');
		bool dup = false;
		for (size_t k = 0; k < distinct; k++)
			dup |= seen[k] == s;
		if (!dup)
			seen[distinct++] = s;
		in_range &= s < 100000;
	}
	T_CHECK(distinct >= 198);
	T_CHECK(in_range);

	/* Subscription and notification ids. */
	T_INTEQ(forward_viid_business_id("340104050111", VIID_BUSINESS_NOTIFICATION, t, a, 16,
	    bid), 0);
	T_INTEQ(strlen(bid), 33);
	T_CHECK(all_digits(bid));
	T_CHECK(strncmp(bid, "340104050111" "04" "20250318074215", 28) == 0);
	char bid2[VIID_BUSINESS_ID_LEN + 1];
	forward_viid_business_id("340104050111", VIID_BUSINESS_NOTIFICATION, t, a, 16, bid2);
	T_STREQ(bid2, bid);
	forward_viid_business_id("340104050111", VIID_BUSINESS_SUBSCRIPTION, t, b, 16, bid2);
	T_INTEQ(strlen(bid2), 33);
	T_CHECK(strncmp(bid2 + 12, "03", 2) == 0);
	T_INTEQ(forward_viid_business_id("34010405011", VIID_BUSINESS_SUBSCRIPTION, t, a, 16,
	    bid2), -1);
	T_INTEQ(forward_viid_business_id("34010405011x", VIID_BUSINESS_SUBSCRIPTION, t, a, 16,
	    bid2), -1);
	T_INTEQ(forward_viid_business_id(NULL, VIID_BUSINESS_SUBSCRIPTION, t, a, 16, bid2), -1);
}

/* ---- code tables and helpers ------------------------------------------- */

static void
test_tables(void)
{
	char plate[33];

	T_STREQ(forward_viid_colour_code("blue"), "5");
	T_STREQ(forward_viid_colour_code("Blue"), "5");
	T_STREQ(forward_viid_colour_code("蓝"), "5");
	T_STREQ(forward_viid_colour_code("蓝色"), "5");
	T_STREQ(forward_viid_colour_code("deep_blue"), "5");
	T_STREQ(forward_viid_colour_code("WHITE"), "2");
	T_STREQ(forward_viid_colour_code("white"), "2");
	T_STREQ(forward_viid_colour_code("yellow"), "6");
	T_STREQ(forward_viid_colour_code("black"), "1");
	T_STREQ(forward_viid_colour_code("silver"), "3");
	T_STREQ(forward_viid_colour_code("gradientGreen"), "9");
	T_STREQ(forward_viid_colour_code("绿色"), "9");
	T_STREQ(forward_viid_colour_code("pink"), "12");
	T_STREQ(forward_viid_colour_code("unknown"), "99");
	T_STREQ(forward_viid_colour_code("other"), "99");
	T_STREQ(forward_viid_colour_code("chartreuse"), "99");
	T_STREQ(forward_viid_colour_code(""), "99");
	T_STREQ(forward_viid_colour_code(NULL), "99");
	T_STREQ(forward_viid_colour_code("色"), "99");
	T_STREQ(forward_viid_colour_code("blueblueblueblueblueblueblueblueblueblueblueblueblueblue"
	    "blueblue"), "99");

	T_INTEQ(forward_viid_plate("皖A12345", plate), 9);
	T_STREQ(plate, "皖A12345");
	forward_viid_plate("皖A·12345", plate);
	T_STREQ(plate, "皖A12345");
	forward_viid_plate("皖A.123 45", plate);
	T_STREQ(plate, "皖A12345");
	forward_viid_plate(" 皖a-123_45\t", plate);
	T_STREQ(plate, "皖A12345");
	forward_viid_plate("皖A\xe2\x80\xa2" "12345\xe3\x80\x80", plate);
	T_STREQ(plate, "皖A12345");
	T_INTEQ(forward_viid_plate("", plate), 0);
	T_INTEQ(forward_viid_plate("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", plate), 32);
	T_INTEQ(forward_viid_plate("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", plate), -1);
	T_INTEQ(forward_viid_plate("A.B.C.D.E.F.G.H.I.J.K.L.M.N.O.P.Q.R.S.T.U.V.W.X.Y.Z.0.1.2.3.4.5",
	    plate), 32);

	int w = 0, h = 0;
	T_INTEQ(forward_viid_image_size(jpeg, sizeof(jpeg), &w, &h), 0);
	T_INTEQ(w, 240);
	T_INTEQ(h, 300);
	T_INTEQ(forward_viid_image_size(jpeg, 25, &w, &h), -1);	/* cut in the SOF */
	T_INTEQ(forward_viid_image_size(jpeg, 2, &w, &h), -1);
	T_INTEQ(forward_viid_image_size((const uint8_t *)"GIF89a", 6, &w, &h), -1);
	T_INTEQ(forward_viid_image_size(NULL, 0, &w, &h), -1);
	static const uint8_t png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
		'I', 'H', 'D', 'R', 0, 0, 0x07, 0x80, 0, 0, 0x04, 0x38, 8, 2, 0, 0, 0 };
	T_INTEQ(forward_viid_image_size(png, sizeof(png), &w, &h), 0);
	T_INTEQ(w, 1920);
	T_INTEQ(h, 1080);
	T_STREQ(forward_viid_refusal_name(VIID_REFUSED_NO_DEVICE), "no_device");
	T_STREQ(forward_viid_refusal_name(VIID_REFUSED_PICTURE_MISSING), "picture_missing");
}

/* ---- bodies ------------------------------------------------------------ */

static void
test_faces(void)
{
	struct rec gate, anpr;
	decode_fixture("gate_person_access_hikvision", 0, &gate);
	decode_fixture("vehicle_barrier_anpr_hikvision", 0, &anpr);
	struct forward_record recs[] = { record(&gate), record(&anpr) };
	struct viid_item items[2];
	struct viid_params p = { .pictures = VIID_PICTURES_DATA, .device = devices,
		.picture = pictures, .picture_ctx = (void *)1 };
	size_t len, n;

	char *body = forward_viid_faces_body(recs, 2, &p, items, &len);
	printf("# %s\n", body != NULL ? body : "(none)");
	T_CHECK(body != NULL);
	T_INTEQ(len, body != NULL ? strlen(body) : 0);
	T_INTEQ(items[0].refusal, VIID_INCLUDED);
	T_INTEQ(items[1].refusal, VIID_REFUSED_WRONG_TYPE);
	T_STREQ(items[1].object_id, "");
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	json_t *face = first(root, "FaceListObject", "FaceObject", &n);
	T_INTEQ(n, 1);

	char *sample_text = slurp("viid/faces_upload_request.json", NULL);
	json_t *sample = json_loads(sample_text, 0, NULL);
	size_t sn;
	json_t *want = first(sample, "FaceListObject", "FaceObject", &sn);
	/* The gate reports no box; IsForeigner is not known. */
	static const char *const face_absent[] = { "LeftTopX", "LeftTopY", "RightBtmX",
		"RightBtmY", "IsForeigner", NULL };
	same_shape(face, want, face_absent, NULL, "FaceObject has the sample's fields");
	T_STREQ(str(face, "FaceID"), items[0].object_id);
	T_INTEQ(strlen(str(face, "FaceID")), 48);
	T_CHECK(strncmp(str(face, "FaceID"), "3401040501119000000102" "20250318074215", 36) == 0);
	T_CHECK(strncmp(str(face, "FaceID") + 41, "06", 2) == 0);
	T_INTEQ(strlen(str(face, "SourceID")), 41);
	T_CHECK(strncmp(str(face, "FaceID"), str(face, "SourceID"), 41) == 0);
	T_INTEQ(num(face, "InfoKind"), 1);
	T_STREQ(str(face, "DeviceID"), str(want, "DeviceID"));
	T_STREQ(str(face, "ShotTime"), str(want, "ShotTime"));
	T_STREQ(str(face, "FaceAppearTime"), "20250318074215");
	T_STREQ(str(face, "FaceDisAppearTime"), "20250318074215");
	static const char *const flags[] = { "IsSuspectedTerrorist", "IsCriminalInvolved",
		"IsDetainees", "IsVictim", "IsSuspiciousPerson", "IsDriver" };
	for (size_t i = 0; i < 6; i++)
		T_INTEQ(num(face, flags[i]), 0);
	/* No personal data. */
	T_CHECK(body != NULL && strstr(body, "ZHANG") == NULL && strstr(body, "B03U") == NULL);

	json_t *subs = json_object_get(json_object_get(face, "SubImageList"), "SubImageInfoObject");
	json_t *wsub = json_array_get(json_object_get(json_object_get(want, "SubImageList"),
	    "SubImageInfoObject"), 1);
	T_INTEQ(json_array_size(subs), 1);
	json_t *sub = json_array_get(subs, 0);
	same_shape(sub, wsub, NULL, NULL, "SubImageInfoObject has the sample's fields");
	T_STREQ(str(sub, "ImageID"), str(face, "SourceID"));
	T_INTEQ(num(sub, "EventSort"), 10);
	T_STREQ(str(sub, "Type"), "11");
	T_STREQ(str(sub, "FileFormat"), "Jpeg");
	T_STREQ(str(sub, "StoragePath"), "");
	T_STREQ(str(sub, "ShotTime"), "20250318074215");
	T_INTEQ(num(sub, "Width"), 240);
	T_INTEQ(num(sub, "Height"), 300);
	T_STREQ(str(sub, "Data"), "/9j/4AAQSkZJRgABAQAAAQABAAD/wAARCAEsAPADASIAAhEBAxEB/9k=");

	/* The same event again: the same bytes. */
	size_t len2;
	char *body2 = forward_viid_faces_body(recs, 2, &p, items, &len2);
	T_CHECK(body2 != NULL && body != NULL && strcmp(body, body2) == 0);
	free(body2);

	/* picture = url: the URL, no Data, no size. */
	p.pictures = VIID_PICTURES_URL;
	body2 = forward_viid_faces_body(recs, 1, &p, items, &len2);
	json_t *r2 = json_loads(body2 != NULL ? body2 : "{}", 0, NULL);
	json_t *sub2 = json_array_get(json_object_get(json_object_get(first(r2, "FaceListObject",
	    "FaceObject", &n), "SubImageList"), "SubImageInfoObject"), 0);
	T_STREQ(str(sub2, "StoragePath"),
	    "http://10.20.0.5:8080/pic/2025/03/18/34010405011190000001_20250318074215_18842.jpg");
	T_CHECK(json_object_get(sub2, "Data") == NULL);
	T_CHECK(json_object_get(sub2, "Width") == NULL);
	T_STREQ(str(sub2, "FileFormat"), "Jpeg");
	T_STREQ(str(sub2, "ImageID"), str(sub, "ImageID"));
	json_decref(r2);
	free(body2);

	/* picture = data, but the caller has no bytes: refused, to retry. */
	p.pictures = VIID_PICTURES_DATA;
	p.picture_ctx = NULL;
	body2 = forward_viid_faces_body(recs, 1, &p, items, &len2);
	T_CHECK(body2 == NULL);
	T_INTEQ(len2, 0);
	T_INTEQ(items[0].refusal, VIID_REFUSED_PICTURE_MISSING);

	json_decref(sample);
	free(sample_text);
	json_decref(root);
	free(body);
	free(gate.packed);
	free(anpr.packed);
}

static void
test_vehicles(void)
{
	struct rec anpr;
	decode_fixture("vehicle_barrier_anpr_hikvision", 0, &anpr);
	struct forward_record recs[] = { record(&anpr) };
	struct viid_item items[1];
	struct viid_params p = { .pictures = VIID_PICTURES_DATA, .device = devices,
		.picture = pictures, .picture_ctx = (void *)1 };
	size_t len, n;

	char *body = forward_viid_vehicles_body(recs, 1, &p, items, &len);
	printf("# %s\n", body != NULL ? body : "(none)");
	T_INTEQ(items[0].refusal, VIID_INCLUDED);
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	json_t *mv = first(root, "MotorVehicleListObject", "MotorVehicleObject", &n);
	T_INTEQ(n, 1);
	char *sample_text = slurp("viid/motorvehicles_upload_request.json", NULL);
	json_t *sample = json_loads(sample_text, 0, NULL);
	json_t *want = first(sample, "MotorVehicleListObject", "MotorVehicleObject", &n);
	static const char *const absent[] = { "LeftTopX", "LeftTopY", "RightBtmX", "RightBtmY",
		NULL };
	static const char *const extra[] = { "StorageUrl2", NULL };
	same_shape(mv, want, absent, extra, "MotorVehicleObject has the sample's fields");
	T_STREQ(str(mv, "MotorVehicleID"), items[0].object_id);
	T_INTEQ(strlen(items[0].object_id), 48);
	T_CHECK(strncmp(items[0].object_id, "3401040501119000001102" "20250318080533", 36) == 0);
	T_CHECK(strncmp(items[0].object_id + 41, "02", 2) == 0);
	T_CHECK(strncmp(str(mv, "SourceID"), items[0].object_id, 41) == 0);
	T_INTEQ(num(mv, "InfoKind"), 1);
	T_STREQ(str(mv, "DeviceID"), str(want, "DeviceID"));
	T_STREQ(str(mv, "StorageUrl1"), str(want, "StorageUrl1"));
	T_STREQ(str(mv, "StorageUrl2"),
	    "http://10.20.0.5:8080/pic/2025/03/18/anpr_20250318080533_plate.jpg");
	T_INTEQ(num(mv, "LaneNo"), num(want, "LaneNo"));
	T_STREQ(str(mv, "HasPlate"), str(want, "HasPlate"));
	T_STREQ(str(mv, "PlateClass"), str(want, "PlateClass"));
	T_STREQ(str(mv, "PlateColor"), str(want, "PlateColor"));
	T_STREQ(str(mv, "PlateNo"), str(want, "PlateNo"));
	T_STREQ(str(mv, "VehicleColor"), str(want, "VehicleColor"));
	T_STREQ(str(mv, "PassTime"), str(want, "PassTime"));
	T_CHECK(json_object_get(mv, "Direction") == NULL);

	json_t *subs = json_object_get(json_object_get(mv, "SubImageList"), "SubImageInfoObject");
	json_t *wsubs = json_object_get(json_object_get(want, "SubImageList"),
	    "SubImageInfoObject");
	T_INTEQ(json_array_size(subs), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *s = json_array_get(subs, i), *w = json_array_get(wsubs, i);
		same_shape(s, w, NULL, NULL, "vehicle SubImageInfoObject has the sample's fields");
		T_STREQ(str(s, "Type"), str(w, "Type"));
		T_INTEQ(num(s, "EventSort"), num(w, "EventSort"));
		T_STREQ(str(s, "DeviceID"), str(w, "DeviceID"));
		T_STREQ(str(s, "ShotTime"), str(w, "ShotTime"));
		T_INTEQ(strlen(str(s, "ImageID")), 41);
	}
	T_STREQ(str(json_array_get(subs, 0), "ImageID"), str(mv, "SourceID"));
	T_CHECK(strcmp(str(json_array_get(subs, 0), "ImageID"),
	    str(json_array_get(subs, 1), "ImageID")) != 0);
	json_decref(root);
	free(body);

	/* The caller is asked for the record's pictures by their index there:
	 * the scene (record picture 1) goes first. */
	p.picture = by_index;
	body = forward_viid_vehicles_body(recs, 1, &p, items, &len);
	root = json_loads(body != NULL ? body : "{}", 0, NULL);
	mv = first(root, "MotorVehicleListObject", "MotorVehicleObject", &n);
	subs = json_object_get(json_object_get(mv, "SubImageList"), "SubImageInfoObject");
	T_STREQ(str(json_array_get(subs, 0), "FileFormat"), "Png");
	T_INTEQ(num(json_array_get(subs, 0), "Width"), 1920);
	T_STREQ(str(json_array_get(subs, 1), "FileFormat"), "Jpeg");
	json_decref(root);
	free(body);

	/* Direction from the lane table only; url pictures. */
	struct viid_lane_direction lanes[] = {
		{ .lane = "2", .code = "4" },
		{ .device = "34010405011190000011", .lane = "1", .direction = 2, .code = "9" },
		{ .device = "34010405011190000011", .lane = "1", .code = "3" },
	};
	p.lanes = lanes;
	p.nlanes = 3;
	p.pictures = VIID_PICTURES_URL;
	body = forward_viid_vehicles_body(recs, 1, &p, items, &len);
	root = json_loads(body != NULL ? body : "{}", 0, NULL);
	mv = first(root, "MotorVehicleListObject", "MotorVehicleObject", &n);
	T_STREQ(str(mv, "Direction"), "3");
	json_t *sub0 = json_array_get(json_object_get(json_object_get(mv, "SubImageList"),
	    "SubImageInfoObject"), 0);
	T_STREQ(str(sub0, "StoragePath"), str(want, "StorageUrl1"));
	T_CHECK(json_object_get(sub0, "Data") == NULL);
	json_decref(root);
	free(body);

	json_decref(sample);
	free(sample_text);
	free(anpr.packed);
}

/* A hand-made vehicle passage. */
static void
vehicle(struct rec *r, uint8_t id_byte, const char *device, const char *plate,
    const char *plate_colour, const char *colour, char **urls, size_t nurls)
{
	uint8_t id[16] = { id_byte };
	Gridbridge__V1__Event ev = GRIDBRIDGE__V1__EVENT__INIT;
	Gridbridge__V1__VehiclePassage v = GRIDBRIDGE__V1__VEHICLE_PASSAGE__INIT;

	ev.id.data = id;
	ev.id.len = 16;
	ev.event_time_us = utc(2024, 12, 31, 16, 0, 0);
	ev.community_id = "c";
	ev.device_id = (char *)device;
	ev.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_VEHICLE_BARRIER;
	ev.event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_VEHICLE_PASSAGE;
	v.plate = (char *)plate;
	v.plate_color = (char *)plate_colour;
	v.vehicle_color = (char *)colour;
	v.lane = "B";
	v.picture_urls = urls;
	v.n_picture_urls = nurls;
	ev.body_case = GRIDBRIDGE__V1__EVENT__BODY_VEHICLE;
	ev.vehicle = &v;
	pack(&ev, r);
}

static void
test_vehicle_cases(void)
{
	char url[300];
	memset(url, 'a', sizeof(url));
	memcpy(url, "http://x/", 9);
	url[sizeof(url) - 1] = '\0';
	char *pic[] = { "http://10.0.0.1/p/1.png" }, *long_pic[] = { url };
	struct rec r[7];
	vehicle(&r[0], 1, "34010405011190000011", "皖A.123 45", "Yellow", "chartreuse", pic, 1);
	vehicle(&r[1], 2, "nowhere", "皖A12345", "blue", "white", pic, 1);
	vehicle(&r[2], 3, "34010405011190000011", "皖A12345", "blue", "white", NULL, 0);
	vehicle(&r[3], 4, "34010405011190000011", "皖A12345", "blue", "white", long_pic, 1);
	vehicle(&r[4], 5, "bad", "皖A12345", "blue", "white", pic, 1);
	vehicle(&r[5], 6, "34010405011190000011", "无车牌", "blue", "", pic, 1);
	vehicle(&r[6], 7, "34010405011190000011",
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", "blue", "white", pic, 1);
	struct forward_record recs[8];
	for (size_t i = 0; i < 7; i++)
		recs[i] = record(&r[i]);
	uint8_t junk[] = { 0xff, 0xff, 0xff };
	recs[7] = (struct forward_record){ .id = junk, .record = junk, .len = sizeof(junk) };
	struct viid_item items[8];
	struct viid_params p = { .pictures = VIID_PICTURES_URL, .device = devices };
	size_t len, n;

	char *body = forward_viid_vehicles_body(recs, 8, &p, items, &len);
	T_INTEQ(items[0].refusal, VIID_INCLUDED);
	T_INTEQ(items[1].refusal, VIID_REFUSED_NO_DEVICE);
	T_INTEQ(items[2].refusal, VIID_REFUSED_NO_PICTURE);
	T_INTEQ(items[3].refusal, VIID_REFUSED_URL_TOO_LONG);
	T_INTEQ(items[4].refusal, VIID_REFUSED_BAD_DEVICE_ID);
	T_INTEQ(items[5].refusal, VIID_INCLUDED);
	T_INTEQ(items[6].refusal, VIID_REFUSED_PLATE_TOO_LONG);
	T_INTEQ(items[7].refusal, VIID_REFUSED_BAD_RECORD);
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	json_t *mv = first(root, "MotorVehicleListObject", "MotorVehicleObject", &n);
	T_INTEQ(n, 2);
	T_STREQ(str(mv, "MotorVehicleID"), items[0].object_id);
	T_STREQ(str(mv, "PlateNo"), "皖A12345");
	T_STREQ(str(mv, "PlateColor"), "6");
	T_STREQ(str(mv, "PlateClass"), "99");
	T_STREQ(str(mv, "VehicleColor"), "99");
	T_STREQ(str(mv, "PassTime"), "20250101000000");
	T_STREQ(str(mv, "StorageUrl1"), "http://10.0.0.1/p/1.png");
	T_CHECK(json_object_get(mv, "StorageUrl2") == NULL);
	T_CHECK(json_object_get(mv, "LaneNo") == NULL);	/* lane "B" */
	json_t *sub = json_array_get(json_object_get(json_object_get(mv, "SubImageList"),
	    "SubImageInfoObject"), 0);
	T_STREQ(str(sub, "FileFormat"), "Png");
	T_STREQ(str(sub, "Type"), "01");
	json_t *none = json_array_get(json_object_get(json_object_get(root,
	    "MotorVehicleListObject"), "MotorVehicleObject"), 1);
	T_STREQ(str(none, "MotorVehicleID"), items[5].object_id);
	T_STREQ(str(none, "HasPlate"), "0");
	T_STREQ(str(none, "PlateNo"), "无车牌");
	T_STREQ(str(none, "PlateColor"), "99");
	T_STREQ(str(none, "VehicleColor"), "99");
	json_decref(root);
	free(body);

	/* Nothing to send: no body. */
	body = forward_viid_vehicles_body(recs + 1, 3, &p, items, &len);
	T_CHECK(body == NULL);
	T_INTEQ(len, 0);
	T_INTEQ(items[0].refusal, VIID_REFUSED_NO_DEVICE);
	for (size_t i = 0; i < 7; i++)
		free(r[i].packed);
}

static void
test_apes(void)
{
	struct rec hb, gate;
	decode_fixture("device_heartbeat_hikvision", 0, &hb);
	decode_fixture("gate_person_access_hikvision", 0, &gate);
	struct forward_record recs[] = { record(&hb), record(&gate) };
	struct viid_item items[2];
	struct viid_device full = { .id = "34010405011190000001",
		.name = "North gate pedestrian lane 1", .model = "face terminal",
		.ip_addr = "10.20.1.31", .port = 80, .place_code = "340104", .has_position = true,
		.longitude = 117.2272, .latitude = 31.8206 };
	struct viid_params p = { .pictures = VIID_PICTURES_URL, .device = devices };
	size_t len, n;

	dev_gate = full;
	char *body = forward_viid_apes_body(recs, 2, &p, items, &len);
	printf("# %s\n", body != NULL ? body : "(none)");
	T_INTEQ(items[0].refusal, VIID_INCLUDED);
	T_STREQ(items[0].object_id, "34010405011190000001");
	T_INTEQ(items[1].refusal, VIID_REFUSED_WRONG_TYPE);
	json_t *root = json_loads(body != NULL ? body : "{}", 0, NULL);
	json_t *ape = first(root, "APEListObject", "APEObject", &n);
	T_INTEQ(n, 1);
	char *sample_text = slurp("viid/apes_status_update_request.json", NULL);
	json_t *sample = json_loads(sample_text, 0, NULL);
	json_t *want = first(sample, "APEListObject", "APEObject", &n);
	same_shape(ape, want, NULL, NULL, "APEObject has the sample's fields");
	T_STREQ(str(ape, "ApeID"), str(want, "ApeID"));
	T_STREQ(str(ape, "FunctionType"), str(want, "FunctionType"));
	T_STREQ(str(ape, "IsOnline"), str(want, "IsOnline"));
	T_STREQ(str(ape, "PlaceCode"), str(want, "PlaceCode"));
	T_INTEQ(num(ape, "Port"), num(want, "Port"));
	T_CHECK(body != NULL && strstr(body, "\"Latitude\":31.8206,") != NULL);
	T_CHECK(body != NULL && strstr(body, "\"Longitude\":117.2272,") != NULL);
	json_decref(root);
	free(body);

	/* A name longer than its type is not sent. */
	char long_name[102];
	memset(long_name, 'n', 101);
	long_name[101] = '\0';
	dev_gate.name = long_name;
	body = forward_viid_apes_body(recs, 1, &p, items, &len);
	T_CHECK(body != NULL && strstr(body, "\"Name\"") == NULL);
	free(body);

	/* Only the id: FunctionType from the class, nothing invented. */
	dev_gate = (struct viid_device){ .id = "34010405011190000001" };
	body = forward_viid_apes_body(recs, 1, &p, items, &len);
	T_STREQ(body, "{\"APEListObject\":{\"APEObject\":[{\"ApeID\":\"34010405011190000001\","
	    "\"FunctionType\":\"2\",\"IsOnline\":\"1\"}]}}");
	free(body);

	body = forward_viid_ape_status_body(recs, 2, &p, items, &len);
	T_STREQ(body, "{\"APEStatusListObject\":{\"APEStatusObject\":[{\"ApeID\":"
	    "\"34010405011190000001\",\"IsOnline\":\"1\",\"CurrentTime\":\"20250318074240\"}]}}");
	T_INTEQ(items[1].refusal, VIID_REFUSED_WRONG_TYPE);
	free(body);

	/* Offline and unknown states. */
	uint8_t id[16] = { 9 };
	Gridbridge__V1__Event ev = GRIDBRIDGE__V1__EVENT__INIT;
	Gridbridge__V1__DeviceStatus st = GRIDBRIDGE__V1__DEVICE_STATUS__INIT;
	ev.id.data = id;
	ev.id.len = 16;
	ev.event_time_us = utc(2025, 3, 17, 16, 0, 0);
	ev.device_id = "34010405011190000001";
	ev.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_GATEWAY;
	ev.body_case = GRIDBRIDGE__V1__EVENT__BODY_STATUS;
	ev.status = &st;
	struct rec off, unk;
	st.state = GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	pack(&ev, &off);
	st.state = GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_UNSPECIFIED;
	pack(&ev, &unk);
	struct forward_record more[] = { record(&off), record(&unk) };
	body = forward_viid_ape_status_body(more, 2, &p, items, &len);
	T_STREQ(body, "{\"APEStatusListObject\":{\"APEStatusObject\":[{\"ApeID\":"
	    "\"34010405011190000001\",\"IsOnline\":\"2\",\"CurrentTime\":\"20250318000000\"},"
	    "{\"ApeID\":\"34010405011190000001\",\"IsOnline\":\"9\",\"CurrentTime\":"
	    "\"20250318000000\"}]}}");
	free(body);
	body = forward_viid_apes_body(more, 1, &p, items, &len);
	T_CHECK(body != NULL && strstr(body, "\"FunctionType\":\"99\"") != NULL);
	free(body);

	json_decref(sample);
	free(sample_text);
	free(hb.packed);
	free(gate.packed);
	free(off.packed);
	free(unk.packed);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_forward_viid FIXTURES_DIR\n");
		return 2;
	}
	fixtures = argv[1];
	test_device_ids();
	test_time_format();
	test_time_parse();
	test_ids();
	test_tables();
	test_faces();
	test_vehicles();
	test_vehicle_cases();
	test_apes();
	return t_done();
}
