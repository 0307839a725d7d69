/* routing.c — the glue between the configuration and the code that
 * decides where a message goes: the checks of [route] and [forward.rule]
 * sections that need decode's, route's and rules' knowledge, the decode
 * routes and forwarding rules of a configuration (used by the daemon and
 * gridbridgectl), and the per-route decode counters. */
#ifndef GRIDBRIDGE_ROUTING_H
#define GRIDBRIDGE_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "decode.h"

/* Registers with the configuration loader the checks of [route] pattern,
 * decoder, class and timezone and of [forward.rule] class, event_type and
 * severity. Call it before config_load(): without it a configuration with
 * an unknown decoder is accepted and routes_build() refuses it. */
void routing_register_checks(void);

/* Compiles cfg->routes (already checked by config_load). Returns 0, or -1
 * after logging. Free with routes_free(). */
int routes_build(const struct config *cfg, struct route **out, size_t *n);
void routes_free(struct route *routes, size_t n);

/* Compiles cfg->rules (already checked by config_load). Never NULL; free
 * with rules_free(). */
struct rules;
struct rules *rules_build(const struct config *cfg);

/* The derived events' engine of a configuration ([registry], [device
 * NAME], [welfare HOUSEHOLD], [route] heartbeat_timeout; already checked).
 * Never NULL; free with derive_free(). */
struct derive;
struct derive *derive_build(const struct config *cfg);

/* Decoded and rejected records per route and reason. Reasons with a value
 * part (unsupported:eventType:foo) are counted under their first two parts
 * once many distinct ones were seen, so hostile input cannot grow the
 * table without bound. */
struct decode_stats;
struct decode_stats *decode_stats_new(void);
void decode_stats_free(struct decode_stats *s);
/* route NULL: no route matched; reason NULL: decoded. */
void decode_stats_count(struct decode_stats *s, const char *route, const char *reason);
void decode_stats_foreach(const struct decode_stats *s,
    void (*fn)(const char *route, const char *reason, uint64_t n, void *ctx), void *ctx);

#endif
