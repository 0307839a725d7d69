/* forward.c — the outbox to the police platform, over HTTPS.
 *
 * For every [forward.target NAME] a set of request slots (max_inflight).
 * An idle slot claims due outbox rows from the store (highest priority
 * first, leased to this daemon), POSTs them as one batch and records the
 * outcome in the outbox:
 *
 *   2xx                               rows sent
 *   408, 429, 5xx, timeout, network,  the same batch (same bytes, same
 *   TLS                               Idempotency-Key) is sent again after a
 *                                     capped exponential backoff with full
 *                                     jitter, or Retry-After (at most
 *                                     retry_after_max); the rows stay
 *                                     pending, their attempts counted
 *   other 4xx                         rows failed, with the status and the
 *                                     first 512 bytes of the reply (as
 *                                     UTF-8 text)
 *
 * While a target fails, no new rows are claimed and only one waiting batch
 * probes it; the backlog stays in PostgreSQL. The first success sends the
 * other waiting batches at once. A certificate that fails verification is
 * logged at error on every attempt.
 *
 * libcurl's multi interface runs on the daemon's libevent loop: libcurl
 * tells us which sockets and which timeout to watch (its callbacks only
 * change events), and the events call curl_multi_socket_action().
 *
 * This is the only file that includes curl.h.
 */
#ifndef GRIDBRIDGE_FORWARD_H
#define GRIDBRIDGE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

struct event_base;
struct forward;

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
	size_t max_inflight;
	uint32_t retry_base_ms;
	uint32_t retry_cap_ms;
	long long max_attempts;		/* 0: no limit */
	long long retry_after_max;	/* seconds: the longest Retry-After honoured */
	bool allow_http;		/* http:// URLs (never with a token) */
};

/* Copies what it needs from `outbox` and `targets`. Returns NULL after
 * logging (libcurl that cannot start). */
struct forward *forward_new(struct event_base *base, const struct outbox *outbox,
    const struct forward_target *targets, size_t ntargets);
/* Makes this daemon's leased rows due again, and starts polling. */
void forward_start(struct forward *f);
/* New outbox rows were committed (the store's outbox hook). */
void forward_kick(void *forward);
/* The name of a target that is failing, or NULL when all are well. */
const char *forward_unavailable(const struct forward *f);
/* Requests in flight are abandoned: their rows are leased to this daemon
 * and sent again after a restart. */
void forward_free(struct forward *f);

#endif
