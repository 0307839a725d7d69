/* route.c — topic patterns with named captures.
 *
 * A pattern is an MQTT topic with placeholders, one per level:
 *
 *   sac/{community}/access/{device}/event    {name} captures one level
 *   zigbee2mqtt/{device...}/availability     {name...} one or more levels
 *   tele/+/LWT                               + matches one level, uncaptured
 *
 * Matching is pure (no allocation, no I/O): captures point into the topic.
 */
#ifndef GRIDBRIDGE_ROUTE_H
#define GRIDBRIDGE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTE_MAX_LEVELS 32
#define ROUTE_MAX_CAPTURES 8
#define ROUTE_NAME_MAX 32

enum route_seg_kind {
	ROUTE_LITERAL,
	ROUTE_ANY,		/* + */
	ROUTE_CAPTURE,		/* {name} */
	ROUTE_CAPTURE_MULTI,	/* {name...} */
};

struct route_seg {
	enum route_seg_kind kind;
	const char *text;	/* literal text, or the capture name */
	size_t len;
	int capture;		/* index into captures for CAPTURE kinds */
};

struct route_pattern {
	char *source;		/* owned copy the segments point into */
	struct route_seg segs[ROUTE_MAX_LEVELS];
	int nsegs;
	char names[ROUTE_MAX_CAPTURES][ROUTE_NAME_MAX];
	int ncaptures;
};

struct route_capture {
	const char *value;	/* into the topic */
	size_t len;
};

struct route_match {
	struct route_capture caps[ROUTE_MAX_CAPTURES];
};

/* Compiles `pattern`. Returns 0, or -1 with a message in `err`. */
int route_compile(struct route_pattern *p, const char *pattern, char *err, size_t errlen);
void route_pattern_free(struct route_pattern *p);

/* True when `topic` matches; fills `m` (captures by index). */
bool route_matches(const struct route_pattern *p, const char *topic, size_t topic_len,
    struct route_match *m);

/* The same for many patterns: the topic split into its levels once
 * (route_split: false when it has too many), then matched against each
 * (route_matches_levels). */
struct route_levels {
	int n;
	struct route_capture lv[ROUTE_MAX_LEVELS * 2];
};
bool route_split(const char *topic, size_t topic_len, struct route_levels *l);
bool route_matches_levels(const struct route_pattern *p, const struct route_levels *l,
    struct route_match *m);

/* The capture called `name`, or NULL when the pattern has none. */
const struct route_capture *route_capture(const struct route_pattern *p,
    const struct route_match *m, const char *name);

/* The configuration's check of a [route] pattern (a config_check_fn):
 * report(ctx, why) when it does not compile. */
void route_check_pattern(const char *pattern, void (*report)(void *ctx, const char *why),
    void *ctx);

/* The MQTT subscription filter that covers the pattern ({x} -> +, and
 * anything after a {x...} -> #). */
int route_filter(const struct route_pattern *p, char *out, size_t outlen);

#endif
