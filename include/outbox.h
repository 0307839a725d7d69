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
	/* Only while this daemon holds the target's session lease (a viid
	 * target with session = shared): checked by the database in the
	 * claim itself, so a daemon whose lease ran out claims nothing even
	 * before it learns so. */
	bool fenced;
};

/* `rows` live until the callback returns; ok false: the query failed
 * (logged). */
typedef void (*outbox_claim_fn)(void *ctx, struct outbox_row *rows, size_t n, bool ok);

/* A query of a cascade target's subscriptions: `json` its answer (see
 * struct outbox), NULL when the query failed (ok false, logged). */
typedef void (*outbox_subs_fn)(void *ctx, const char *json, bool ok);

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

	/* GA/T 1400 subscriptions of the cascade target `target`
	 * (viid_subscriptions). A subscription travels as a JSON object:
	 *   {"id": SubscribeID, "details": [codes], "devices": [our device
	 *    ids] or null (all), "resources": [ids], "receive_addr", "title",
	 *    "begin_us", "end_us" (UTC µs or null), "report_interval",
	 *    "applicant_name", "applicant_org", "reason"}
	 * and comes back with "made_us" (when it was made, UTC µs),
	 * "catalogue" ("pending", "sent" or "failed") and
	 * "catalogue_attempts" added. */
	/* The active ones: a JSON array. */
	void (*subs_load)(void *ctx, const char *target, outbox_subs_fn done, void *done_ctx);
	/* Makes or replaces (active again, if it had ended) each one of the
	 * JSON array `subs`; answers with them as stored. */
	void (*subs_put)(void *ctx, const char *target, const char *subs, outbox_subs_fn done,
	    void *done_ctx);
	/* Ends the subscriptions whose ids are in the JSON array `ids`: state
	 * "cancelled" or "deleted", `reason` kept; their pending outbox rows
	 * fail. Answers [{"id", "known": ever made, "ended": ended now}] in
	 * the order of `ids`. */
	void (*subs_end)(void *ctx, const char *target, const char *ids, const char *state,
	    const char *reason, outbox_subs_fn done, void *done_ctx);
	/* What became of a subscription's catalogue push: state "pending"
	 * (tried and failed; attempts counted), "sent" or "failed", `error`
	 * NULL for none. */
	void (*subs_catalogue)(void *ctx, const char *target, const char *id, const char *state,
	    const char *error);

	/* The lease on the GA/T 1400 session of `target` (session =
	 * shared), held by one daemon of those sharing the database: taken
	 * or renewed for `lease_s` seconds when it is free, has run out or
	 * is this daemon's own (`release` false), or given up (`release`
	 * true). Answers "1" when this daemon holds it now, else "0 " and
	 * the holder's node name ("0 " alone: unknown); NULL when the query
	 * failed (logged). `done` may be NULL. */
	void (*session_lease)(void *ctx, const char *target, int lease_s, bool release,
	    outbox_subs_fn done, void *done_ctx);

	/* The pending rows per target: a JSON array of [target, rows,
	 * seconds since the oldest was made], at most 256 targets. */
	void (*pending)(void *ctx, outbox_subs_fn done, void *done_ctx);
	void *ctx;
};

#endif
