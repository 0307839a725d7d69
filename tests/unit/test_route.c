/* Unit tests for route.c: which topics a route takes, and what it captures. */
#include <string.h>

#include "route.h"
#include "t.h"

static struct route_pattern p;
static struct route_match m;
static char err[128];

static const char *
cap(const char *name)
{
	static char buf[256];
	const struct route_capture *c = route_capture(&p, &m, name);
	if (c == NULL || c->value == NULL)
		return "(none)";
	memcpy(buf, c->value, c->len);
	buf[c->len] = '\0';
	return buf;
}

static int
match(const char *topic)
{
	return route_matches(&p, topic, strlen(topic), &m);
}

int
main(void)
{
	char filter[256];

	T_INTEQ(route_compile(&p, "sac/{community}/access/{device}/event", err, sizeof(err)), 0);
	T_CHECK(match("sac/340104050101/access/34010405011190000001/event"));
	T_STREQ(cap("community"), "340104050101");
	T_STREQ(cap("device"), "34010405011190000001");
	T_STREQ(cap("nosuch"), "(none)");
	T_CHECK(!match("sac/340104050101/access/34010405011190000001"));
	T_CHECK(!match("sac/340104050101/access/34010405011190000001/event/x"));
	T_CHECK(!match("sac/340104050101/vehicle/1/event"));
	T_CHECK(!match("sac//access/1/event"));		/* empty capture */
	T_CHECK(!match(""));
	T_INTEQ(route_filter(&p, filter, sizeof(filter)), 0);
	T_STREQ(filter, "sac/+/access/+/event");
	route_pattern_free(&p);

	/* Multi-level device names, with and without a suffix. */
	T_INTEQ(route_compile(&p, "zigbee2mqtt/{device...}/availability", err, sizeof(err)), 0);
	T_CHECK(match("zigbee2mqtt/b03/u2/1502/entry_door/availability"));
	T_STREQ(cap("device"), "b03/u2/1502/entry_door");
	T_CHECK(match("zigbee2mqtt/door1/availability"));
	T_STREQ(cap("device"), "door1");
	T_CHECK(!match("zigbee2mqtt/availability"));
	T_CHECK(!match("zigbee2mqtt/b03//x/availability"));
	T_INTEQ(route_filter(&p, filter, sizeof(filter)), 0);
	T_STREQ(filter, "zigbee2mqtt/#");
	route_pattern_free(&p);

	T_INTEQ(route_compile(&p, "zigbee2mqtt/{device...}", err, sizeof(err)), 0);
	T_CHECK(match("zigbee2mqtt/b03/u2/1502/entry_door"));
	T_STREQ(cap("device"), "b03/u2/1502/entry_door");
	route_pattern_free(&p);

	/* + matches, does not capture. */
	T_INTEQ(route_compile(&p, "tele/+/LWT", err, sizeof(err)), 0);
	T_CHECK(match("tele/sonoff-1/LWT"));
	T_CHECK(!match("tele/a/b/LWT"));
	route_pattern_free(&p);

	/* Bad patterns say why. */
	T_INTEQ(route_compile(&p, "a/{}/b", err, sizeof(err)), -1);
	T_STREQ(err, "bad capture name in '{}'");
	T_INTEQ(route_compile(&p, "a/{x}/{x}", err, sizeof(err)), -1);
	T_STREQ(err, "capture 'x' used twice");
	T_INTEQ(route_compile(&p, "a/#", err, sizeof(err)), -1);
	T_STREQ(err, "unexpected '#' in level '#'");
	T_INTEQ(route_compile(&p, "{a...}/{b...}", err, sizeof(err)), -1);
	T_STREQ(err, "at most one {name...} capture");
	T_INTEQ(route_compile(&p, "", err, sizeof(err)), -1);
	T_INTEQ(route_compile(&p, "a/{x-y}", err, sizeof(err)), -1);
	return t_done();
}
