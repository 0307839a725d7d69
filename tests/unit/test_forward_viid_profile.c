/* Unit tests for the GA/T 1400 profile as forward.c sees it
 * (forward_viid_profile.h): kinds and refusals per record, paths, the
 * device table (community first), and per-row outcomes of replies.
 *
 *   test_forward_viid_profile FIXTURES_DIR      (tests/fixtures) */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "event.pb-c.h"
#include "forward_viid_profile.h"
#include "fixture_events.h"
#include "t.h"

static struct forward_record
record(const struct rec *r)
{
	return (struct forward_record){ .id = r->id, .record = r->packed, .len = r->len };
}

/* The values of `key` in the objects of the body's list, in order. */
static size_t
ids_of(const char *body, size_t len, const char *list, const char *item, const char *key,
    char out[][64], size_t max)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	json_t *arr = json_object_get(json_object_get(doc, list), item);
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(arr) && n < max; i++)
		snprintf(out[n++], 64, "%s",
		    json_string_value(json_object_get(json_array_get(arr, i), key)));
	json_decref(doc);
	return n;
}

static const struct forward_viid_device table[] = {
	{ .device = "34010405011190000001", .community = "", .id = "34010405011190000001" },
	{ .device = "34010405011190000001", .community = "340104050101", .id = "34010405011190000002" },
	{ .device = "34010405011190000011", .community = "", .id = "34010405011190000011" },
};

int
main(int argc, char **argv)
{
	fixtures = argc > 1 ? argv[1] : "tests/fixtures";
	struct rec gate[3], anpr, hb;
	for (int i = 0; i < 3; i++)
		decode_fixture("gate_person_access_hikvision", (uint8_t)i, &gate[i]);
	decode_fixture("vehicle_barrier_anpr_hikvision", 0, &anpr);
	decode_fixture("device_heartbeat_hikvision", 0, &hb);

	struct forward_profile *p = forward_profile_viid_new(table, 3, false);
	T_CHECK(p != NULL);
	T_STREQ(p->name, "viid");
	T_STREQ(p->content_type, "Content-Type: application/VIID+JSON;charset=UTF-8");
	T_CHECK(p->reply_keep > 512);

	/* Kinds, and the paths and methods of their batches. */
	const char *why = NULL, *method = NULL;
	struct forward_record r = record(&gate[0]);
	int faces = p->row_kind(p->ctx, &r, &why);
	r = record(&anpr);
	int vehicles = p->row_kind(p->ctx, &r, &why);
	T_CHECK(faces >= 0 && vehicles >= 0 && faces != vehicles);
	T_STREQ(p->kind_path(faces, &method), "/VIID/Faces");
	T_STREQ(method, "POST");
	T_STREQ(p->kind_path(vehicles, &method), "/VIID/MotorVehicles");
	T_STREQ(method, "POST");
	T_STREQ(p->kind_path(2, &method), "/VIID/APEs");
	T_STREQ(method, "PUT");
	/* A device's status (a heartbeat here) is an APE. */
	r = record(&hb);
	T_INTEQ(p->row_kind(p->ctx, &r, &why), 2);

	/* A device without a [viid.device] section is refused: no_device. */
	struct forward_profile *none = forward_profile_viid_new(table + 2, 1, false);
	r = record(&gate[0]);
	T_INTEQ(none->row_kind(none->ctx, &r, &why), -1);
	T_STREQ(why, "no_device");
	forward_profile_viid_free(none);

	/* The section naming the event's community wins over one for any. */
	struct forward_record recs[3];
	for (int i = 0; i < 3; i++)
		recs[i] = record(&gate[i]);
	size_t len;
	char *body = p->build_body_ctx(p->ctx, recs, 3, &len);
	char ids[3][64], dev[3][64];
	T_INTEQ(ids_of(body, len, "FaceListObject", "FaceObject", "FaceID", ids, 3), 3);
	T_INTEQ(ids_of(body, len, "FaceListObject", "FaceObject", "DeviceID", dev, 3), 3);
	T_STREQ(dev[0], "34010405011190000002");
	free(body);

	/* Per row: 0 sent, 8 failed with its StatusString, 2 retried; by Id,
	 * whatever the order of the statuses. */
	char reply[2048];
	snprintf(reply, sizeof(reply), "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":["
	    "{\"Id\":\"%s\",\"StatusCode\":2,\"StatusString\":\"Device Busy\"},"
	    "{\"Id\":\"%s\",\"StatusCode\":0,\"StatusString\":\"OK\"},"
	    "{\"Id\":\"%s\",\"StatusCode\":8,\"StatusString\":\"Invalid JSON Content\"}]}}",
	    ids[2], ids[0], ids[1]);
	struct forward_reply rep = { .code = CURLE_OK, .status = 200,
		.body = (const unsigned char *)reply, .body_len = strlen(reply) };
	struct forward_outcome o;
	p->classify(&rep, &o);
	T_INTEQ(o.verdict, FORWARD_SENT);
	struct forward_row_outcome ro[3];
	p->classify_rows(p->ctx, &rep, recs, 3, ro);
	T_INTEQ(ro[0].verdict, FORWARD_ROW_SENT);
	T_INTEQ(ro[1].verdict, FORWARD_ROW_FAILED);
	T_INTEQ(ro[1].code, 8);
	T_STREQ(ro[1].text, "Invalid JSON Content");
	T_INTEQ(ro[2].verdict, FORWARD_ROW_RETRY);
	T_INTEQ(ro[2].code, 2);
	T_STREQ(ro[2].text, "StatusCode 2 (Device Busy)");

	/* Without Ids: by position. */
	snprintf(reply, sizeof(reply), "{\"ResponseStatusListObject\":{\"ResponseStatusObject\":["
	    "{\"StatusCode\":0},{\"StatusCode\":\"0\"},{\"StatusCode\":6}]}}");
	rep.body_len = strlen(reply);
	p->classify_rows(p->ctx, &rep, recs, 3, ro);
	T_INTEQ(ro[0].verdict, FORWARD_ROW_SENT);
	T_INTEQ(ro[1].verdict, FORWARD_ROW_SENT);
	T_INTEQ(ro[2].verdict, FORWARD_ROW_FAILED);
	T_INTEQ(ro[2].code, 6);

	/* Not a status list: every row retried, with the reason. */
	rep.body = (const unsigned char *)"OK";
	rep.body_len = 2;
	p->classify_rows(p->ctx, &rep, recs, 3, ro);
	for (int i = 0; i < 3; i++) {
		T_INTEQ(ro[i].verdict, FORWARD_ROW_RETRY);
		T_CHECK(ro[i].text[0] != '\0');
	}

	/* 401: the session is gone, the rows are retried (not refused); other
	 * statuses as the gridbridge profile reads them. */
	rep.status = 401;
	p->classify(&rep, &o);
	T_INTEQ(o.verdict, FORWARD_RETRY);
	rep.status = 400;
	p->classify(&rep, &o);
	T_INTEQ(o.verdict, FORWARD_REFUSED);
	rep.status = 503;
	p->classify(&rep, &o);
	T_INTEQ(o.verdict, FORWARD_RETRY_CONTENT);

	forward_profile_viid_free(p);
	for (int i = 0; i < 3; i++)
		free(gate[i].packed);
	free(anpr.packed);
	free(hb.packed);
	return t_done();
}
