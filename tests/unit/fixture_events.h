/* Device fixtures decoded as the daemon decodes them, packed as the
 * outbox holds them: for the unit tests of what is built from records. */
#ifndef GRIDBRIDGE_TEST_FIXTURE_EVENTS_H
#define GRIDBRIDGE_TEST_FIXTURE_EVENTS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "event.pb-c.h"

/* The tests/fixtures directory; main() sets it. */
static const char *fixtures;

struct rec {
	uint8_t id[16];
	uint8_t *packed;
	size_t len;
};

static inline char *
slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", fixtures, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		printf("# cannot open %s\n", path);
		abort();
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		abort();
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

/* A device fixture decoded as the daemon decodes it; `tweak` (0: none)
 * changes the event id's last byte, so one fixture gives several events. */
static inline void
decode_fixture(const char *name, uint8_t tweak, struct rec *r)
{
	char path[256], err[128];
	struct route route = { 0 };
	struct route_match m;
	struct decode_out out;

	route.name = "t";
	route.community = "c-default";
	route.tz_offset_min = 480;
	route.decoder = DECODER_HIKVISION;
	route.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_ACCESS_GATE;
	if (route_compile(&route.pattern, "sac/{community}/{kind}/{device}/event", err,
	    sizeof(err)) != 0)
		abort();
	snprintf(path, sizeof(path), "devices/%s.topic.txt", name);
	char *topic = slurp(path, NULL);
	topic[strcspn(topic, "\r\n")] = '\0';
	snprintf(path, sizeof(path), "devices/%s.json", name);
	size_t plen;
	char *payload = slurp(path, &plen);

	decode_out_init(&out);
	if (!route_matches(&route.pattern, topic, strlen(topic), &m))
		abort();
	struct decode_in in = {
		.route = &route, .match = &m, .topic = topic, .topic_len = strlen(topic),
		.payload = (const uint8_t *)payload, .payload_len = plen,
		.received_us = 1742256000000000LL, .journal_seq = 1, .max_skew_us = 3600000000LL,
	};
	if (decode_record(&in, &out) != 0) {
		printf("# %s: %s\n", name, out.reason);
		abort();
	}
	out.ev.id.data[15] ^= tweak;
	memcpy(r->id, out.ev.id.data, 16);
	r->len = gridbridge__v1__event__get_packed_size(&out.ev);
	r->packed = malloc(r->len);
	gridbridge__v1__event__pack(&out.ev, r->packed);
	decode_out_free(&out);
	route_pattern_free(&route.pattern);
	free(topic);
	free(payload);
}

#endif
