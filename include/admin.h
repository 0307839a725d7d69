/* admin.c — what operators look at: the admin listener (/healthz,
 * /readyz, /metrics) and the periodic stats line.
 *
 * The listener is libevent's HTTP server on the daemon's own loop,
 * bounded so that no client can hold the loop or the daemon's memory:
 * GET and HEAD only, a header size limit, a tiny body limit, a timeout
 * for the whole exchange, every answer closes its connection, and at
 * most `max_connections` at once (beyond that the listening socket is
 * not accepted from until one closes: further clients wait in the
 * kernel's backlog, ingest does not). Every answer is built from figures
 * in memory; none waits for the database.
 *
 *   /healthz  200 "ok": the loop answers.
 *   /readyz   200 "ready", or 503 with one line per reason: the broker
 *             or the database not connected, the journal at its cap,
 *             a stored backlog being caught up, the oldest event waiting
 *             to be forwarded older than `ready_max_forward_lag`.
 *   /metrics  Prometheus text format 0.0.4 (metrics.h).
 *
 * It is glue: it reads every stage, and no stage knows it.
 */
#ifndef GRIDBRIDGE_ADMIN_H
#define GRIDBRIDGE_ADMIN_H

#include <stdint.h>

struct event_base;
struct journal;
struct mqtt;
struct store;
struct pipeline;
struct forward;
struct derive;

struct admin_options {
	const char *listen;		/* "address:port" (IPv6 in []), or "none" */
	int max_connections;
	int timeout_s;			/* for a whole request and answer */
	int ready_max_forward_lag_s;	/* 0: not a reason */
	int stats_interval_s;		/* the stats line; 0: none */
};

/* What it reads; any may be NULL (a stage not started). */
struct admin_sources {
	struct journal *journal;
	struct mqtt *mqtt;
	struct store *store;
	struct pipeline *pipeline;
	struct forward *forward;
	struct derive *derive;
};

struct admin;

/* Starts the listener (a port that cannot be bound is logged and tried
 * again every 30 s: ingest goes on without it) and the stats line.
 * NULL only when out of memory. */
struct admin *admin_new(struct event_base *base, const struct admin_options *o,
    const struct admin_sources *src);
void admin_free(struct admin *a);

#endif
