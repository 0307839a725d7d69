/* forward_body.c — the gridbridge profile's bodies and key: see forward_body.h. */
#include "forward_body.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "event_json.h"
#include "sha256.h"
#include "util.h"

char *
forward_body_protobuf(const struct forward_record *recs, size_t n, size_t *len)
{
	Gridbridge__V1__EventBatchFrame frame = GRIDBRIDGE__V1__EVENT_BATCH_FRAME__INIT;
	ProtobufCBinaryData *events = util_malloc(n * sizeof(*events));

	for (size_t i = 0; i < n; i++) {
		/* Packing only reads the bytes. */
		events[i].data = (uint8_t *)recs[i].record;
		events[i].len = recs[i].len;
	}
	frame.n_events = n;
	frame.events = events;
	*len = gridbridge__v1__event_batch_frame__get_packed_size(&frame);
	uint8_t *body = util_malloc(*len);
	gridbridge__v1__event_batch_frame__pack(&frame, body);
	free(events);
	return (char *)body;
}

char *
forward_body_json(const struct forward_record *recs, size_t n, size_t *len)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		Gridbridge__V1__Event *ev = gridbridge__v1__event__unpack(NULL, recs[i].len,
		    recs[i].record);
		if (ev == NULL)
			continue;
		json_array_append_new(arr, event_json(&ev->base));
		gridbridge__v1__event__free_unpacked(ev, NULL);
	}
	json_t *o = json_object();
	json_object_set_new(o, "events", arr);
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL)
		util_oom(0);
	*len = strlen(s);
	return s;
}

void
forward_batch_key(const struct forward_record *recs, size_t n, char key[33])
{
	static const char digits[] = "0123456789abcdef";
	struct sha256 h;
	uint8_t digest[32];

	sha256_init(&h);
	for (size_t i = 0; i < n; i++)
		sha256_update(&h, recs[i].id, 16);
	sha256_final(&h, digest);
	for (size_t i = 0; i < 16; i++) {
		key[2 * i] = digits[digest[i] >> 4];
		key[2 * i + 1] = digits[digest[i] & 15];
	}
	key[32] = '\0';
}
