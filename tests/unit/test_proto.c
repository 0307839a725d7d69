/* Unit test for the generated protobuf code: a record survives a round trip
 * with the field values a downstream consumer reads. */
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "t.h"

int
main(void)
{
	uint8_t id[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
			   0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe };
	Gridbridge__V1__Event ev = GRIDBRIDGE__V1__EVENT__INIT;
	ev.id.data = id;
	ev.id.len = sizeof(id);
	ev.event_time_us = 1732771200000000LL;
	ev.received_time_us = 1732771200123456LL;
	ev.community_id = "c-0001";
	ev.device_id = "gate-07";
	ev.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_ACCESS_GATE;
	ev.severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO;
	ev.source_topic = "sac/c-0001/access/gate-07/event";
	ev.vendor = "hikvision";
	ev.journal_seq = 88121;

	Gridbridge__V1__Event *evs[1] = { &ev };
	Gridbridge__V1__EventBatch batch = GRIDBRIDGE__V1__EVENT_BATCH__INIT;
	batch.n_events = 1;
	batch.events = evs;

	size_t len = gridbridge__v1__event_batch__get_packed_size(&batch);
	uint8_t *buf = malloc(len);
	T_INTEQ(gridbridge__v1__event_batch__pack(&batch, buf), len);

	Gridbridge__V1__EventBatch *back = gridbridge__v1__event_batch__unpack(NULL, len, buf);
	T_CHECK(back != NULL);
	if (back != NULL) {
		T_INTEQ(back->n_events, 1);
		Gridbridge__V1__Event *e = back->events[0];
		T_INTEQ(e->id.len, 16);
		T_CHECK(memcmp(e->id.data, id, 16) == 0);
		T_INTEQ(e->event_time_us, 1732771200000000LL);
		T_INTEQ(e->received_time_us, 1732771200123456LL);
		T_STREQ(e->community_id, "c-0001");
		T_STREQ(e->device_id, "gate-07");
		T_INTEQ(e->device_class, GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_ACCESS_GATE);
		T_STREQ(e->source_topic, "sac/c-0001/access/gate-07/event");
		T_STREQ(e->vendor, "hikvision");
		T_INTEQ(e->journal_seq, 88121);
		gridbridge__v1__event_batch__free_unpacked(back, NULL);
	}

	/* Garbage is refused, not crashed on. */
	uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	T_CHECK(gridbridge__v1__event_batch__unpack(NULL, sizeof(junk), junk) == NULL);
	free(buf);
	return t_done();
}
