/* Unit tests for the gridbridge profile's bodies and Idempotency-Key
 * (forward_body.h): the protobuf body framed from packed records is the
 * EventBatch of the same events, byte for byte, and the JSON body is its
 * proto3 JSON mapping. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "forward_body.h"
#include "forward_profile.h"
#include "t.h"

static uint8_t id_a[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
			    0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe };
static uint8_t id_b[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

/* A door sensor event; `topic` sets its size (records of 1, 2 and 3
 * varint bytes of length). */
static void
door_event(Gridbridge__V1__Event *ev, Gridbridge__V1__DoorContact *door, uint8_t *id,
    char *topic)
{
	*ev = (Gridbridge__V1__Event)GRIDBRIDGE__V1__EVENT__INIT;
	*door = (Gridbridge__V1__DoorContact)GRIDBRIDGE__V1__DOOR_CONTACT__INIT;
	ev->id.data = id;
	ev->id.len = 16;
	ev->event_time_us = 1742254935000000LL;
	ev->received_time_us = 1742254935123456LL;
	ev->community_id = "c-0001";
	ev->device_id = "door-3-1201";
	ev->device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_DOOR_SENSOR;
	ev->event_type = GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DOOR_OPENED;
	ev->severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
	ev->source_topic = topic;
	ev->vendor = "zigbee2mqtt";
	ev->journal_seq = 42;
	ev->route = "z2m";
	door->state = GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_OPEN;
	door->tamper = 1;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_DOOR;
	ev->door = door;
}

static uint8_t *
pack_event(const Gridbridge__V1__Event *ev, size_t *len)
{
	*len = gridbridge__v1__event__get_packed_size(ev);
	uint8_t *p = malloc(*len ? *len : 1);
	if (p == NULL)
		abort();
	gridbridge__v1__event__pack(ev, p);
	return p;
}

/* The framing forward.c wrote by hand before: field 1, wire type 2, a
 * varint length, the record; once per record. */
static uint8_t *
hand_framed(const struct forward_record *recs, size_t n, size_t *len)
{
	size_t cap = 1;
	for (size_t i = 0; i < n; i++)
		cap += recs[i].len + 11;
	uint8_t *b = malloc(cap), *p = b;
	if (b == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		*p++ = 0x0a;
		uint64_t v = recs[i].len;
		while (v >= 0x80) {
			*p++ = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		*p++ = (uint8_t)v;
		memcpy(p, recs[i].record, recs[i].len);
		p += recs[i].len;
	}
	*len = (size_t)(p - b);
	return b;
}

/* The body through EventBatch with unpacked events, through
 * EventBatchFrame with the packed ones, and framed by hand: the same bytes. */
static void
check_protobuf_body(size_t topic_len)
{
	enum { N = 3 };
	Gridbridge__V1__Event evs[N];
	Gridbridge__V1__DoorContact doors[N];
	Gridbridge__V1__Event *evp[N];
	struct forward_record recs[N];
	uint8_t ids[N][16];
	char *topic = malloc(topic_len + 1);

	memset(topic, 'z', topic_len);
	topic[topic_len] = '\0';
	for (size_t i = 0; i < N; i++) {
		memcpy(ids[i], id_a, 16);
		ids[i][15] = (uint8_t)i;
		door_event(&evs[i], &doors[i], ids[i], i == 1 ? "zigbee2mqtt/door" : topic);
		evp[i] = &evs[i];
		size_t len;
		uint8_t *rec = pack_event(&evs[i], &len);
		recs[i] = (struct forward_record){ .id = ids[i], .record = rec, .len = len };
	}

	Gridbridge__V1__EventBatch batch = GRIDBRIDGE__V1__EVENT_BATCH__INIT;
	batch.n_events = N;
	batch.events = evp;
	size_t want_len = gridbridge__v1__event_batch__get_packed_size(&batch);
	uint8_t *want = malloc(want_len);
	gridbridge__v1__event_batch__pack(&batch, want);

	size_t got_len, hand_len;
	char *got = forward_body_protobuf(recs, N, &got_len);
	uint8_t *hand = hand_framed(recs, N, &hand_len);
	T_INTEQ(got_len, want_len);
	T_CHECK(got_len == want_len && memcmp(got, want, want_len) == 0);
	T_INTEQ(hand_len, want_len);
	T_CHECK(hand_len == want_len && memcmp(hand, want, want_len) == 0);

	/* ... and consumers read it as an EventBatch. */
	Gridbridge__V1__EventBatch *back = gridbridge__v1__event_batch__unpack(NULL, got_len,
	    (const uint8_t *)got);
	T_CHECK(back != NULL && back->n_events == N);
	if (back != NULL) {
		T_STREQ(back->events[2]->source_topic, topic);
		T_INTEQ(back->events[1]->door->state, GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_OPEN);
		gridbridge__v1__event_batch__free_unpacked(back, NULL);
	}
	free(got);
	free(hand);
	free(want);
	for (size_t i = 0; i < N; i++)
		free((void *)recs[i].record);
	free(topic);
}

int
main(void)
{
	/* Records whose lengths take 1, 2 and 3 varint bytes. */
	check_protobuf_body(10);
	check_protobuf_body(200);
	check_protobuf_body(20000);

	/* No records: an empty body. */
	size_t len = 99;
	char *body = forward_body_protobuf(NULL, 0, &len);
	T_INTEQ(len, 0);
	free(body);

	/* JSON: the proto3 mapping (int64 as strings, enums by name, bytes in
	 * base64), compact, in field-number order. */
	Gridbridge__V1__Event ev;
	Gridbridge__V1__DoorContact door;
	door_event(&ev, &door, id_a, "zigbee2mqtt/door-3-1201");
	size_t rec_len;
	uint8_t *rec = pack_event(&ev, &rec_len);
	struct forward_record recs[2] = {
		{ .id = id_a, .record = rec, .len = rec_len },
		{ .id = id_b, .record = rec, .len = rec_len },
	};
	static const char one[] = "{\"id\":\"ASNFZ4mrze8QMlR2mLrc/g==\","
	    "\"eventTimeUs\":\"1742254935000000\",\"receivedTimeUs\":\"1742254935123456\","
	    "\"communityId\":\"c-0001\",\"deviceId\":\"door-3-1201\","
	    "\"deviceClass\":\"DEVICE_CLASS_DOOR_SENSOR\",\"eventType\":\"EVENT_TYPE_DOOR_OPENED\","
	    "\"severity\":\"SEVERITY_INFO\",\"sourceTopic\":\"zigbee2mqtt/door-3-1201\","
	    "\"vendor\":\"zigbee2mqtt\",\"journalSeq\":\"42\",\"route\":\"z2m\","
	    "\"door\":{\"state\":\"DOOR_STATE_OPEN\",\"tamper\":true}}";
	char want[2 * sizeof(one) + 32];
	snprintf(want, sizeof(want), "{\"events\":[%s,%s]}", one, one);
	body = forward_body_json(recs, 2, &len);
	T_STREQ(body, want);
	T_INTEQ(len, strlen(want));
	free(body);
	body = forward_body_json(NULL, 0, &len);
	T_STREQ(body, "{\"events\":[]}");
	free(body);
	/* A record that does not unpack is left out. */
	static const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	struct forward_record bad[2] = {
	    { .id = id_b, .record = junk, .len = sizeof(junk) },
	    { .id = id_a, .record = rec, .len = rec_len },
	};
	body = forward_body_json(bad, 2, &len);
	snprintf(want, sizeof(want), "{\"events\":[%s]}", one);
	T_STREQ(body, want);
	free(body);
	free(rec);

	/* The key: the first 128 bits of SHA-256 over the ids in body order
	 * (what tests/integration/test_forward.py computes with hashlib). */
	char key[33];
	forward_batch_key(recs, 1, key);
	T_STREQ(key, "cd7cfe7aa91aafe8dea8d5d81d7445ac");
	forward_batch_key(recs, 2, key);
	T_STREQ(key, "64fab178f67713475736234debd8b00e");
	forward_batch_key(NULL, 0, key);
	T_STREQ(key, "e3b0c44298fc1c149afbf4c8996fb924");

	/* The gridbridge profile's two formats. */
	const struct forward_profile *pb = forward_profile_gridbridge(false);
	const struct forward_profile *js = forward_profile_gridbridge(true);
	T_STREQ(pb->name, "gridbridge");
	T_STREQ(pb->format, "protobuf");
	T_STREQ(pb->content_type, "Content-Type: application/x-protobuf");
	T_CHECK(pb->build_body == forward_body_protobuf);
	T_STREQ(js->name, "gridbridge");
	T_STREQ(js->format, "json");
	T_STREQ(js->content_type, "Content-Type: application/json");
	T_CHECK(js->build_body == forward_body_json);
	T_CHECK(pb->batch_key == forward_batch_key && js->batch_key == forward_batch_key);
	return t_done();
}
