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
 *                                     jitter, or Retry-After; the rows stay
 *                                     pending, their attempts counted
 *   other 4xx                         rows failed, with the status and the
 *                                     first 512 bytes of the reply
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

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct config_target;
struct forward;

/* Counters of one target, since start (for logs and metrics). */
struct forward_stats {
	const char *target;
	uint64_t sent_rows;
	uint64_t sent_requests;
	uint64_t retried_requests;	/* attempts that will be tried again */
	uint64_t failed_rows_4xx;	/* refused by the platform */
	uint64_t failed_rows_other;	/* gone from events, or max_attempts */
	uint64_t tls_errors;
	uint64_t latency_ms_sum;	/* of answered requests */
	uint64_t latency_ms_max;
	uint64_t latency_count;
	int healthy;
};

/* `targets` are copied. Returns NULL after logging (a token or key file
 * that cannot be read, libcurl that cannot start). */
struct forward *forward_new(struct event_base *base, struct store *store,
    const struct config_target *targets, size_t ntargets);
/* Makes this daemon's leased rows due again, and starts polling. */
void forward_start(struct forward *f);
/* New outbox rows were committed (the store's outbox hook). */
void forward_kick(void *forward, int priority);
void forward_stats(const struct forward *f,
    void (*fn)(const struct forward_stats *st, void *ctx), void *ctx);
/* The name of a target that is failing, or NULL when all are well. */
const char *forward_unavailable(const struct forward *f);
/* Requests in flight are abandoned: their rows are leased to this daemon
 * and sent again after a restart. */
void forward_free(struct forward *f);

#endif
