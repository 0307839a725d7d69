/* outbox.h — types only: the forwarding outbox as the forwarder sees it.
 *
 * The store keeps the outbox (forward_outbox in PostgreSQL) and offers it
 * through a struct outbox of function pointers (store_outbox()); main.c
 * hands that to the forwarder, which includes no store header.
 */
#ifndef GRIDBRIDGE_OUTBOX_H
#define GRIDBRIDGE_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One row a claim gives the forwarder. */
struct outbox_row {
	uint8_t event_id[16];
	int priority;
	int attempts;			/* requests tried so far */
	const uint8_t *record;		/* packed Event; NULL: no longer stored */
	size_t record_len;
	int64_t order;			/* record bytes before it in the claim */
	int64_t age_ms;			/* since the row was created, by the database's clock */
};

/* What to claim: due pending rows of `target` whose priority is in
 * [min_priority, max_priority], none of the `nexclude` ids in `exclude`
 * (16 bytes each: rows the forwarder holds already). */
struct outbox_claim {
	const char *target;
	int min_priority, max_priority;
	size_t max_rows;
	size_t max_bytes;
	int lease_s;
	const uint8_t *exclude;
	size_t nexclude;
};

/* `rows` live until the callback returns; ok false: the query failed
 * (logged). */
typedef void (*outbox_claim_fn)(void *ctx, struct outbox_row *rows, size_t n, bool ok);

/* DEFER: given back unsent, due again in `retry_in_ms`, attempts as they
 * were. */
enum outbox_outcome { OUTBOX_SENT, OUTBOX_RETRY, OUTBOX_FAILED, OUTBOX_DEFER };

struct outbox {
	/* Up to `max_rows` rows as `c` says (and about `max_bytes` of
	 * records; at least one row), highest priority first, then oldest,
	 * leased to this daemon for `lease_s` seconds. `c` is copied. */
	void (*claim)(void *ctx, const struct outbox_claim *c, outbox_claim_fn done,
	    void *done_ctx);
	/* The outcome of a request for rows `ids` (16 bytes each): sent
	 * (status), retry (due again in `retry_in_ms`) or failed; `status` 0
	 * when there was no HTTP answer; `error` for retry and failed, UTF-8
	 * text without NUL. Or rows given back (defer). An update that fails
	 * leaves the rows pending: they are sent again. */
	void (*settle)(void *ctx, const char *target, const uint8_t *ids, size_t n,
	    enum outbox_outcome outcome, int status, const char *error, int64_t retry_in_ms);
	/* Makes the rows this daemon had leased due again (once, at start). */
	void (*release)(void *ctx);
	void *ctx;
};

#endif
