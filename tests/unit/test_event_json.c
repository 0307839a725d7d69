/* Unit tests for event_json.c: an Event as compact JSON text. */
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "event_json.h"
#include "t.h"

int
main(void)
{
	Gridbridge__V1__Event ev = GRIDBRIDGE__V1__EVENT__INIT;
	uint8_t id[2] = { 0xfb, 0xff };

	ev.id.data = id;
	ev.id.len = sizeof(id);
	ev.community_id = "c-1";
	ev.device_class = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_CAMERA;
	ev.severity = GRIDBRIDGE__V1__SEVERITY__SEVERITY_CRITICAL;
	ev.journal_seq = 42;

	char *s = event_json_text(&ev.base);
	/* field order, lowerCamelCase, enums by name, 64-bit as strings,
	 * bytes as base64, defaults left out */
	T_CHECK(s != NULL && strchr(s, ' ') == NULL && strchr(s, '\n') == NULL);
	T_CHECK(s != NULL && strstr(s, "\"id\":\"+/8=\"") == s + 1);
	T_CHECK(s != NULL && strstr(s, "\"communityId\":\"c-1\"") != NULL);
	T_CHECK(s != NULL && strstr(s, "\"deviceClass\":\"DEVICE_CLASS_CAMERA\"") != NULL);
	T_CHECK(s != NULL && strstr(s, "\"severity\":\"SEVERITY_CRITICAL\"") != NULL);
	T_CHECK(s != NULL && strstr(s, "\"journalSeq\":\"42\"") != NULL);
	T_CHECK(s != NULL && strstr(s, "deviceId") == NULL);
	free(s);
	return t_done();
}
