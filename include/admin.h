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
 * The status page, for the community's display screen and the duty room:
 *
 *   /, /status.css, /status.js   the page, compiled into the daemon
 *             (web/), with a strict Content-Security-Policy;
 *   /api/status   its figures as JSON (admin_status_write): health, the
 *             registry's online rates, forwarding, and the database
 *             figures store_status.c reads every few seconds;
 *   /api/events   the same as server-sent events, at once and then every
 *             refresh; a stream ends after ADMIN_STREAM_MAX_S (the
 *             browser reconnects) and streams take at most
 *             max_connections - 1 connections.
 *
 * With a status token, /, /api/status and /api/events want it
 * (Authorization: Bearer, or ?token=), compared in constant time; the
 * other paths are as before. Nothing of the page names a person: no
 * plate, name, picture or ID number is read for it.
 *
 * It is glue: it reads every stage, and no stage knows it.
 */
#ifndef GRIDBRIDGE_ADMIN_H
#define GRIDBRIDGE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct event_base;
struct journal;
struct mqtt;
struct store;
struct pipeline;
struct forward;
struct derive;
struct derive_census;
struct store_status;

#define ADMIN_STREAM_MAX_S 600		/* one /api/events stream */

struct admin_options {
	const char *listen;		/* "address:port" (IPv6 in []), or "none" */
	int max_connections;
	int timeout_s;			/* for a whole request and answer */
	int ready_max_forward_lag_s;	/* 0: not a reason */
	int stats_interval_s;		/* the stats line; 0: none */
	const char *status_token;	/* NULL or "": the status page is open */
	int status_refresh_s;		/* /api/events pushes this often */
	int status_tz_offset_s;		/* the communities' local time: UTC + this */
};

/* What it reads; any may be NULL (a stage not started). */
struct admin_sources {
	struct journal *journal;
	struct mqtt *mqtt;
	struct store *store;
	struct pipeline *pipeline;
	struct forward *forward;
	struct derive *derive;
	struct store_status *status;	/* the database figures of /api/status */
};

struct admin;

/* Starts the listener (a port that cannot be bound is logged and tried
 * again every 30 s: ingest goes on without it) and the stats line.
 * NULL only when out of memory. */
struct admin *admin_new(struct event_base *base, const struct admin_options *o,
    const struct admin_sources *src);
void admin_free(struct admin *a);

/* ---- the status page (pure, for the tests) ----------------------------- */

/* A file of the page, compiled in (web/, see web/embed.py). */
struct admin_asset {
	const char *path;		/* "/", "/status.css", ... */
	const char *type;		/* Content-Type */
	const unsigned char *data;
	size_t len;
};
extern const struct admin_asset admin_assets[];
extern const size_t admin_nassets;

struct admin_status_target {
	const char *name;
	bool up;
	uint64_t pending;
	double oldest_pending_s;
	uint64_t sent;
};

/* What /api/status says. */
struct admin_status_view {
	int64_t now_us, started_us;
	const char *version;
	int tz_offset_s;
	const char *reasons;		/* not ready: one per line; "" when ready */
	bool broker_up, database_up, catching_up;
	uint64_t journal_lag;
	const struct derive_census *census;
	size_t ncensus;
	const struct admin_status_target *targets;
	size_t ntargets;
	const char *db_json;		/* store_status_json(); NULL: none yet */
	int64_t db_as_of_us;
	bool db_stale;
};
/* The JSON object of `v`, every string escaped (invalid UTF-8 replaced,
 * <, > and & as \u escapes); db_json is valid JSON from PostgreSQL and
 * goes in as it is. */
void admin_status_write(FILE *f, const struct admin_status_view *v);
/* `s` as a JSON string, quotes included. */
void admin_json_string(FILE *f, const char *s);
/* Whether a request with these (NULL: absent) Authorization header and
 * query string carries `token` (constant time in the token's length). */
bool admin_token_ok(const char *token, const char *authorization, const char *query);

#endif
