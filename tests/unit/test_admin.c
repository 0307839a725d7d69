/* admin.c's status page: the JSON of /api/status (escaping, invalid
 * UTF-8, the database part taken as it is), the token check, the local
 * day, and the page's files (compiled in, nothing from elsewhere). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "derive.h"
#include "store_status.h"
#include "t.h"

static char *
json_of(void (*fn)(FILE *, const void *), const void *arg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fn(f, arg);
	fclose(f);
	return text;
}

static void
write_string(FILE *f, const void *s)
{
	admin_json_string(f, s);
}

static void
write_view(FILE *f, const void *v)
{
	admin_status_write(f, v);
}

static void
test_strings(void)
{
	char *s;

	s = json_of(write_string, "plain 中文");
	T_STREQ(s, "\"plain 中文\"");
	free(s);
	s = json_of(write_string, "q\"b\\n\nt\t<script>&");
	T_STREQ(s, "\"q\\\"b\\\\n\\u000at\\u0009\\u003cscript\\u003e\\u0026\"");
	free(s);
	/* invalid UTF-8: a lone continuation, an overlong '/', a surrogate, a cut sequence */
	s = json_of(write_string, "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe4\xb8");
	T_STREQ(s, "\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffd\"");
	free(s);
	s = json_of(write_string, NULL);
	T_STREQ(s, "\"\"");
	free(s);
}

static void
test_view(void)
{
	struct derive_census census[] = {
		{ .community = "c-0001", .device_class = 4, .total = 4, .online = 3 },
		{ .community = "c-\"0002\"\x01", .device_class = 4, .total = 2, .online = 0 },
		{ .community = "c-0001", .device_class = 2, .total = 1, .online = 1 },
	};
	struct admin_status_target targets[] = {
		{ .name = "police", .up = false, .pending = 7, .oldest_pending_s = 42.4, .sent = 3 },
	};
	struct admin_status_view v = {
		.now_us = 1765000000123456LL, .started_us = 1764990000000000LL, .version = "9.9",
		.tz_offset_s = 8 * 3600, .reasons = "broker: not connected\nstore: catching up\n",
		.broker_up = false, .database_up = true, .journal_lag = 5,
		.census = census, .ncensus = 3, .targets = targets, .ntargets = 1,
		.db_json = "{\"today\":[{\"device_class\":\"camera\",\"event_type\":\"camera_alarm\","
		    "\"count\":2}],\"alarms\":[]}",
		.db_as_of_us = 1765000000000000LL, .db_stale = true,
	};
	char *s = json_of(write_view, &v);
	json_error_t err;
	json_t *j = json_loads(s, 0, &err);

	T_CHECK(j != NULL);
	if (j == NULL) {
		printf("# %s: %s\n", err.text, s);
		free(s);
		return;
	}
	T_INTEQ(json_integer_value(json_object_get(j, "as_of_ms")), 1765000000123LL);
	T_STREQ(json_string_value(json_object_get(j, "timezone")), "+08:00");
	json_t *h = json_object_get(j, "health");
	T_CHECK(json_is_false(json_object_get(h, "ready")));
	T_INTEQ(json_array_size(json_object_get(h, "reasons")), 2);
	T_STREQ(json_string_value(json_array_get(json_object_get(h, "reasons"), 1)),
	    "store: catching up");
	T_CHECK(json_is_true(json_object_get(h, "database_up")));
	json_t *classes = json_object_get(json_object_get(j, "devices"), "classes");
	T_INTEQ(json_array_size(classes), 2);
	/* in class order: vehicle_barrier (2), then door_sensor (4) summed */
	T_STREQ(json_string_value(json_object_get(json_array_get(classes, 0), "device_class")),
	    "vehicle_barrier");
	T_STREQ(json_string_value(json_object_get(json_array_get(classes, 1), "device_class")),
	    "door_sensor");
	T_INTEQ(json_integer_value(json_object_get(json_array_get(classes, 1), "online")), 3);
	T_INTEQ(json_integer_value(json_object_get(json_array_get(classes, 1), "total")), 6);
	json_t *comms = json_object_get(json_object_get(j, "devices"), "communities");
	T_STREQ(json_string_value(json_object_get(json_array_get(comms, 1), "community")),
	    "c-\"0002\"\x01");
	json_t *t = json_array_get(json_object_get(j, "forward"), 0);
	T_STREQ(json_string_value(json_object_get(t, "target")), "police");
	T_CHECK(json_is_false(json_object_get(t, "up")));
	T_INTEQ(json_integer_value(json_object_get(t, "pending")), 7);
	T_INTEQ(json_integer_value(json_object_get(t, "oldest_pending_s")), 42);
	json_t *db = json_object_get(j, "db");
	T_CHECK(json_is_true(json_object_get(db, "stale")));
	T_INTEQ(json_integer_value(json_object_get(db, "as_of_ms")), 1765000000000LL);
	T_INTEQ(json_integer_value(json_object_get(json_array_get(json_object_get(
	    json_object_get(db, "figures"), "today"), 0), "count")), 2);
	json_decref(j);
	free(s);

	/* no database figures yet, no census, no target, ready */
	struct admin_status_view empty = { .version = "1", .reasons = "" };
	s = json_of(write_view, &empty);
	j = json_loads(s, 0, &err);
	T_CHECK(j != NULL);
	T_CHECK(json_is_true(json_object_get(json_object_get(j, "health"), "ready")));
	T_CHECK(json_is_null(json_object_get(json_object_get(j, "db"), "figures")));
	T_STREQ(json_string_value(json_object_get(j, "timezone")), "+00:00");
	json_decref(j);
	free(s);
	empty.tz_offset_s = -(3 * 3600 + 30 * 60);
	s = json_of(write_view, &empty);
	T_CHECK(strstr(s, "\"timezone\":\"-03:30\"") != NULL);
	free(s);
}

static void
test_token(void)
{
	T_CHECK(admin_token_ok(NULL, NULL, NULL));
	T_CHECK(admin_token_ok("", NULL, "x=1"));
	T_CHECK(!admin_token_ok("s3cret", NULL, NULL));
	T_CHECK(!admin_token_ok("s3cret", NULL, ""));
	T_CHECK(admin_token_ok("s3cret", "Bearer s3cret", NULL));
	T_CHECK(admin_token_ok("s3cret", "bearer  s3cret ", NULL));
	T_CHECK(!admin_token_ok("s3cret", "Bearer s3cre", NULL));
	T_CHECK(!admin_token_ok("s3cret", "Bearer s3cret2", NULL));
	T_CHECK(!admin_token_ok("s3cret", "Basic s3cret", NULL));
	T_CHECK(!admin_token_ok("s3cret", "Bearer ", NULL));
	T_CHECK(admin_token_ok("s3cret", NULL, "token=s3cret"));
	T_CHECK(admin_token_ok("s3cret", NULL, "theme=dark&token=s3cret"));
	T_CHECK(admin_token_ok("s3cret", "Bearer wrong", "token=s3cret&theme=dark"));
	T_CHECK(admin_token_ok("a b+c/=", NULL, "token=a+b%2Bc%2f%3D"));
	T_CHECK(!admin_token_ok("s3cret", NULL, "token=s3cre"));
	T_CHECK(!admin_token_ok("s3cret", NULL, "token="));
	T_CHECK(!admin_token_ok("s3cret", NULL, "xtoken=s3cret"));
	T_CHECK(!admin_token_ok("s3cret", NULL, "token=s3cret%"));
	/* a '%' not followed by two hex digits is itself */
	T_CHECK(admin_token_ok("s3cret%", NULL, "token=s3cret%"));
	T_CHECK(admin_token_ok("s3cret%", NULL, "token=s3cret%25"));
	T_CHECK(!admin_token_ok("s3cret", NULL, "token=s3cret%00"));
}

static void
test_day_start(void)
{
	/* 2026-12-06 07:00:00 UTC is 15:00 at +08:00: the day began at 16:00 UTC before */
	int64_t now = 1796540400LL * 1000000;
	T_INTEQ(store_status_day_start(now, 8 * 3600), (1796540400LL - 15 * 3600) * 1000000);
	T_INTEQ(store_status_day_start(now, 0), (1796540400LL - 7 * 3600) * 1000000);
	/* 17:00 UTC is 01:00 the next day at +08:00 */
	int64_t late = (1796540400LL + 10 * 3600) * 1000000;
	T_INTEQ(store_status_day_start(late, 8 * 3600), (1796540400LL + 9 * 3600) * 1000000);
	T_INTEQ(store_status_day_start(now, -5 * 3600), (1796540400LL - 2 * 3600) * 1000000);
	T_INTEQ(store_status_day_start(0, 0), 0);
	T_INTEQ(store_status_day_start(-1, 0), -86400LL * 1000000);
}

static bool
asset_has(const struct admin_asset *a, const char *needle)
{
	size_t n = strlen(needle);
	for (size_t i = 0; i + n <= a->len; i++)
		if (memcmp(a->data + i, needle, n) == 0)
			return true;
	return false;
}

static void
test_assets(void)
{
	T_INTEQ(admin_nassets, 3);
	T_STREQ(admin_assets[0].path, "/");
	T_STREQ(admin_assets[0].type, "text/html; charset=utf-8");
	T_STREQ(admin_assets[1].path, "/status.css");
	T_STREQ(admin_assets[2].path, "/status.js");
	T_STREQ(admin_assets[2].type, "text/javascript; charset=utf-8");
	for (size_t i = 0; i < admin_nassets; i++) {
		const struct admin_asset *a = &admin_assets[i];
		T_CHECK(a->len > 100 && a->data[a->len] == '\0');
		T_INTEQ(strlen((const char *)a->data), a->len);
		/* nothing from elsewhere: no CDN, no web font, no inline script */
		T_CHECK(!asset_has(a, "https://"));
		T_CHECK(!asset_has(a, "@import"));
		T_CHECK(!asset_has(a, "@font-face"));
		T_CHECK(!asset_has(a, "//cdn"));
	}
	T_CHECK(asset_has(&admin_assets[0], "<script src=\"status.js\" defer></script>"));
	T_CHECK(!asset_has(&admin_assets[0], "<script>"));
	T_CHECK(!asset_has(&admin_assets[0], " style=\""));
	/* the hooks the browser test reads */
	T_CHECK(asset_has(&admin_assets[0], "data-testid=\"today-vehicle_passage\""));
	T_CHECK(asset_has(&admin_assets[0], "data-testid=\"latest-alarm\""));
	T_CHECK(asset_has(&admin_assets[2], "\"online-rate-\""));
	T_CHECK(asset_has(&admin_assets[1], "prefers-color-scheme: dark"));
}

int
main(void)
{
	test_strings();
	test_view();
	test_token();
	test_day_start();
	test_assets();
	return t_done();
}
