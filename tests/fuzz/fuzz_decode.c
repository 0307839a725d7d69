/* Fuzz target: one decoder (FUZZ_DECODER, set by the build), fed arbitrary
 * payloads on a fixed topic, then the record packed and printed as JSON.
 * The attrs text the database keeps (event_json_text, written directly)
 * must be byte for byte jansson's dump of the same record: anything else
 * aborts, as a crash would. Then the personal data is masked, as
 * gridbridgectl tail does. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "event_json.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct route r;
	static struct decode_out out;
	static bool ready;
	char err[128];

	if (!ready) {
		r.name = "fuzz";
		r.community = "c0";
		r.tz_offset_min = 480;
		r.utc_is_local = true;
		r.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_CAMERA;
		if (decoder_by_name(FUZZ_DECODER, &r.decoder) != 0 ||
		    route_compile(&r.pattern, "x/{community}/{device}/event", err, sizeof(err)) != 0)
			abort();
		decode_out_init(&out);
		ready = true;
	}
	const char *topic = "x/c1/d1/event";
	struct route_match m;
	if (!route_matches(&r.pattern, topic, strlen(topic), &m))
		abort();
	struct decode_in in = {
		.route = &r, .match = &m, .topic = topic, .topic_len = strlen(topic),
		.payload = data, .payload_len = size, .received_us = 1742256000000000LL,
		.journal_seq = 1, .max_skew_us = 3600000000LL,
	};
	if (decode_record(&in, &out) == 0) {
		size_t n = gridbridge__v1__event__get_packed_size(&out.ev);
		uint8_t *buf = malloc(n ? n : 1);
		if (gridbridge__v1__event__pack(&out.ev, buf) != n)
			abort();
		free(buf);
		json_t *j = event_json(&out.ev.base);
		char *dumped = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
		char *direct = event_json_text(&out.ev.base);
		if (dumped == NULL || direct == NULL || strcmp(dumped, direct) != 0)
			abort();
		free(direct);
		free(dumped);
		event_json_mask(j);	/* what gridbridgectl tail shows */
		free(json_dumps(j, 0));
		json_decref(j);
	} else if (out.reason[0] == '\0') {
		abort();	/* a rejection always says why */
	}
	return 0;
}
