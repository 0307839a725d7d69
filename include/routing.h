/* routing.c — the decode routes of a configuration (glue between config.c
 * and decode.c, used by the daemon and gridbridgectl), and the per-route
 * decode counters. */
#ifndef GRIDBRIDGE_ROUTING_H
#define GRIDBRIDGE_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "decode.h"

/* Compiles cfg->routes (already checked by config_load). Returns 0, or -1
 * after logging. Free with routes_free(). */
int routes_build(const struct config *cfg, struct route **out, size_t *n);
void routes_free(struct route *routes, size_t n);

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
