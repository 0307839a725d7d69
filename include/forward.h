/* forward.c — the outbox to the police platform, over HTTPS.
 *
 * Every [forward.target NAME] has two lanes: rows of priority >=
 * alarm_priority travel in the alarm lane, the others in the routine lane.
 * A lane has its own request slots (max_inflight), health, probe and
 * backoff, and claims only rows of its priorities, so a routine batch that
 * fails never keeps an alarm from being claimed and sent.
 *
 * An idle slot claims due outbox rows from the store (highest priority
 * first, leased to this daemon), POSTs them as one batch and records the
 * outcome in the outbox:
 *
 *   2xx                               rows sent
 *   other 4xx than 408, 429           a batch of several rows is split in
 *                                     halves, sent again separately, until
 *                                     the rows at fault are alone: a row
 *                                     refused alone is failed, with the
 *                                     status and the reply (as UTF-8 text)
 *   408, 429, 5xx, timeout, network,  the same batch (same bytes, same
 *   TLS                               Idempotency-Key) is sent again after a
 *                                     capped exponential backoff with full
 *                                     jitter, or Retry-After (at most
 *                                     retry_after_max); the rows stay
 *                                     pending, their attempts counted. A
 *                                     batch that got SPLIT_AFTER answers in
 *                                     a row that may be about its content
 *                                     (408 or 5xx without Retry-After, a
 *                                     timeout or a connection lost after
 *                                     the request went out) is split in
 *                                     halves.
 *
 * A row is given up (failed, with the reason, logged at error) only after a
 * failed attempt that reaches max_attempts or finds it older than max_age.
 *
 * While a lane fails, it claims no rows for its slots and one request at a
 * time probes the platform: a newly claimed batch while the lane holds
 * fewer than max_inflight + 1 batches' worth of rows, else the waiting
 * batch tried least recently, so one batch at fault does not make a
 * working platform look down. The first success sends the other waiting
 * batches at once. A batch that fails again after other requests of its
 * lane succeeded is the batch's problem, not the platform's: it waits
 * out a backoff of its own and the lane carries on. The backlog stays in
 * PostgreSQL. A certificate that fails verification is logged at error on
 * every attempt.
 *
 * What goes in a body and what a reply means come from the target's
 * profile (forward_profile.h: "gridbridge", or "viid" for GA/T 1400,
 * whose session with the platform is forward_viid_session.h: a viid
 * target claims and sends nothing while it is not registered); forward.c
 * keeps the rows, lanes, retries and requests. libcurl's multi interface
 * runs on the daemon's libevent loop through forward_curl.h.
 *
 * Only the forward*.c files include curl.h.
 */
#ifndef GRIDBRIDGE_FORWARD_H
#define GRIDBRIDGE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "outbox.h"

struct event_base;
struct forward;

/* A device's GA/T 1400 id and description, from a [viid.device NAME]
 * section. */
struct forward_viid_device {
	const char *device;		/* as in the events */
	const char *community;		/* "": any */
	const char *id;			/* 20 digits, checked at load */
	/* APEObject fields; NULL or "" (port 0): left out */
	const char *name, *model, *function_type, *ip_addr, *place_code;
	int port;
	bool has_position;		/* longitude and latitude (checked at load) */
	double longitude, latitude;
};

enum forward_auth { FORWARD_AUTH_DIGEST, FORWARD_AUTH_BASIC, FORWARD_AUTH_NONE };

/* One target, as main.c makes it from a [forward.target NAME] section
 * (paths resolved, the token read). */
struct forward_target {
	const char *name;
	const char *url;
	bool json;			/* else protobuf */
	const char *ca_file;		/* "" for the system's */
	const char *cert_file;		/* "" for none */
	const char *key_file;
	const char *token;		/* bearer token; NULL or "" for none */
	const char *proxy;		/* "" for none */
	long connect_timeout;		/* seconds */
	long timeout;			/* seconds, whole request */
	size_t batch_rows;
	size_t batch_bytes;
	int linger_ms;			/* the routine lane after a small batch */
	size_t max_inflight;
	uint32_t retry_base_ms;
	uint32_t retry_cap_ms;
	long long max_attempts;		/* 0: no limit */
	long long max_age;		/* seconds since the row was created; 0: no limit */
	long long retry_after_max;	/* seconds: the longest Retry-After honoured */
	long long lease_margin;		/* seconds: the lease on rows sent is
					 * connect_timeout + timeout + this;
					 * 0: 30 */
	int alarm_priority;		/* this priority and above: the alarm lane */
	bool allow_http;		/* http:// URLs (never with a token) */
	/* profile = viid (else the gridbridge profile, `json` its format) */
	bool viid;
	const char *viid_device_id;	/* ours, 20 digits */
	bool shared_session;		/* one session for the daemons sharing the
					 * database, held under a lease */
	int session_lease_s;		/* shared_session: the lease */
	const char *username;		/* never "" with auth */
	const char *password;		/* NULL or "" with FORWARD_AUTH_NONE */
	enum forward_auth auth;
	long keepalive_s;
	long register_retry_max_s;
	long time_skew_warn_s;
	const struct forward_viid_device *viid_devices;	/* all [viid.device] sections */
	size_t nviid_devices;
	/* picture = data: pictures fetched from the devices */
	bool picture_data;
	size_t picture_max_bytes;
	long picture_timeout;		/* seconds, one fetch */
	const char *picture_ca_file;	/* "" or NULL: the system's */
	const char *picture_username;	/* "" or NULL: no credentials */
	const char *picture_password;
	/* mode = cascade (else false and the fields below unset) */
	bool cascade;
	const char *listen;		/* address:port */
	const char *listen_cert_file;	/* "" or NULL: plain HTTP */
	const char *listen_key_file;	/* resolved */
	const char *listen_ca_file;	/* "" or NULL: no client certificate asked for */
	const char *listen_username;
	const char *listen_password;
	const char *platform_id;	/* "" or NULL: any User-Identify */
	const char *org_code;		/* 12 digits */
	enum forward_auth notify_auth;	/* notifications and the catalogue */
	size_t max_subscriptions;
};

/* Copies what it needs from `outbox` and `targets`. Returns NULL after
 * logging (libcurl that cannot start). */
struct forward *forward_new(struct event_base *base, const struct outbox *outbox,
    const struct forward_target *targets, size_t ntargets);
/* Makes this daemon's leased rows due again, and starts polling. */
void forward_start(struct forward *f);
/* The lanes look for due rows (the poll). */
void forward_kick(void *forward);
/* `nrows` new outbox rows were committed, none above max_priority (the
 * store's outbox hook): the lanes that take such rows look for them. */
void forward_rows_committed(void *forward, int max_priority, size_t nrows);
/* The name of a target that is failing, or NULL when all are well. */
const char *forward_unavailable(const struct forward *f);
/* The daemon is stopping: each shared session it holds is unregistered
 * and its lease given up, so another daemon takes it at once. NULL is
 * fine. */
void forward_stop(struct forward *f);
/* A lease given up and not answered yet: the loop should run a little
 * longer. */
bool forward_stopping(const struct forward *f);
/* Requests in flight are abandoned: their rows are leased to this daemon
 * and sent again after a restart. */
void forward_free(struct forward *f);

/* ---- metrics (admin.c) ----------------------------------------------- */

/* The targets' figures in the Prometheus text format (metrics.h). */
void forward_write_metrics(const struct forward *f, FILE *out);
/* The age in seconds of the oldest outbox row waiting to be sent (0:
 * none), as counted every few seconds; *target (may be NULL) its target. */
double forward_oldest_pending(const struct forward *f, const char **target);
/* The `i`-th target with rows waiting: their number (UINT64_MAX past
 * the last), its name and the oldest's age. */
uint64_t forward_pending_rows(const struct forward *f, size_t i, const char **target,
    double *oldest_s);

/* The `i`-th configured target's name (NULL past the last), whether it
 * takes requests (*up, as gridbridge_forward_target_up) and the events
 * it accepted since the start (*sent). */
const char *forward_target(const struct forward *f, size_t i, bool *up, uint64_t *sent);

#endif
