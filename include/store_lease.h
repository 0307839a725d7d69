/* store_lease.c — which instance evaluates which derived events: the
 * leases of derive.h's shards in PostgreSQL (table derive_leases, schema
 * version 9), and what the evaluating instance reads back of the records
 * other instances stored.
 *
 * A connection of its own (non-blocking libpq on the daemon's loop, as
 * store_status.c), one query at a time:
 *
 *   renew   every lease_s / 3 seconds: this instance's row in
 *           derive_instances is refreshed, and it keeps the shards it
 *           holds and takes every shard whose lease expired (one
 *           statement: SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE,
 *           so two instances never take the same shard), each for
 *           lease_s from the server's now(). The answer: the shards
 *           held, those of them last held by another instance (to be
 *           reloaded), and how many other instances renewed within
 *           lease_s (0: alone, nothing to read back).
 *   reload  after a takeover: the derived rows (store_derived_sql).
 *   fetch   the records of given devices since given times (derive.h,
 *           derive_wanted), newest first per device, bounded.
 *   follow  while this instance holds shards and other instances are
 *           alive: LISTEN on the store's channel (STORE_NOTIFY_CHANNEL,
 *           store.h), keep the notified transactions, and at most every
 *           second (at once when a fetch's worth waits) fetch the rows
 *           they inserted that another instance stored (journal_node
 *           not ours; not derived), found as gridbridgectl tail finds
 *           them (STORE_NOTE_ROWS, store_int.h). Bounded: at most
 *           STORE_LEASE_FOLLOW_XIDS transactions and
 *           STORE_LEASE_FOLLOW_ROWS rows a fetch, a backlog of
 *           STORE_LEASE_FOLLOW_BACKLOG notifications. What may have been
 *           missed (before LISTEN answered, after the connection was
 *           lost, a backlog dropped, a fetch cut at its bound or failed)
 *           is said as a gap: the pipeline reads back instead. Alone, or
 *           holding no shard, it does not listen: nothing more is sent.
 *
 * The shards held are trusted until the renewal's send time plus lease_s
 * less a fifth of it and a second, on the daemon's monotonic clock: before the server's
 * expiry, whatever the clocks say (the server's expiry runs from when it
 * executed the renewal, after it was sent). Past that without an answer,
 * none is held (`known` false) until the next renewal answers.
 */
#ifndef GRIDBRIDGE_STORE_LEASE_H
#define GRIDBRIDGE_STORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct store_lease;

#define STORE_LEASE_SHARDS 64		/* derive.h's DERIVE_SHARDS */
#define STORE_LEASE_FETCH_DEVICES 1024	/* devices a fetch asks for at most */
#define STORE_LEASE_FETCH_EACH 32	/* records of each at most (the newest) */
#define STORE_LEASE_RECORD_MAX (1024 * 1024)	/* a larger record is left out */
#define STORE_LEASE_FOLLOW_US 1000000		/* a follow fetch at most this often */
#define STORE_LEASE_FOLLOW_XIDS 256		/* transactions a follow fetches at most */
#define STORE_LEASE_FOLLOW_ROWS 2000		/* rows a follow fetches at most */
#define STORE_LEASE_FOLLOW_BACKLOG 4096		/* notifications kept at most */

struct store_lease_options {
	/* As store_options (store.h); copied. */
	const char *host;
	int port;
	const char *dbname;
	const char *user;
	const char *password;
	int connect_timeout;		/* seconds */
	const char *sslmode, *sslrootcert, *sslcert, *sslkey;
	const char *holder;		/* this instance's name in the table; copied */
	const char *node;		/* its journal_node (events it stores); copied */
	int lease_s;			/* >= 3 */
	const struct store *store;	/* nothing sent while it is not ready */
	/* After each renewal answered, and when the lease lapsed (known
	 * false, shards 0). `reload`: of `shards`, those another instance
	 * held last. */
	void (*leases)(void *ctx, bool known, uint64_t shards, uint64_t reload, int peers);
	/* The reload's answer (three JSON arrays), for `shards`. */
	void (*rows)(void *ctx, const char *devices, const char *welfare, const char *reports,
	    uint64_t shards);
	/* The fetch's answer: packed gridbridge.v1.Event records, oldest
	 * first; n 0 when it failed (ok false). */
	void (*records)(void *ctx, bool ok, const uint8_t *const *recs, const size_t *lens,
	    size_t n);
	/* What a follow brought: packed records other instances stored
	 * (any shard), by event time. `gap`: records may have been missed
	 * (see "follow" above), read back. NULL: no following. */
	void (*followed)(void *ctx, bool gap, const uint8_t *const *recs, const size_t *lens,
	    size_t n);
	void *ctx;
};

/* Starts at once; NULL when out of memory. */
struct store_lease *store_lease_new(struct event_base *base, const struct store_lease_options *o);
void store_lease_free(struct store_lease *l);

/* The daemon's store became ready: renews now, not at the next second. */
void store_lease_poke(struct store_lease *l);
/* Asks for the rows, for `shards` (merged with a reload not sent yet). */
void store_lease_reload(struct store_lease *l, uint64_t shards);
/* Asks for the records of `n` devices (at most STORE_LEASE_FETCH_DEVICES
 * are asked for) with event time after since_us[i]; the answer comes
 * through `records`. False (nothing asked) while a fetch is under way or
 * the connection is not up. */
bool store_lease_fetch(struct store_lease *l, const char *const *communities,
    const char *const *devices, const int64_t *since_us, size_t n);
/* A fetch asked for and not answered yet. */
bool store_lease_fetching(const struct store_lease *l);

/* Until when (monotonic µs) shards a renewal sent at `sent_us` answered
 * are trusted: before the server's expiry (sent + lease_s), by a fifth of
 * the lease and the second the tick takes to notice; >= 3 s taken. */
uint64_t store_lease_trusted_until(uint64_t sent_us, int lease_s);

/* The text of a PostgreSQL array of `n` strings, {"a","b"} (quotes and
 * backslashes escaped): malloc'd. For the tests. */
char *store_lease_text_array(const char *const *v, size_t n);

/* The SQL, for the tests: the renewal ($1 holder, $2 lease seconds). */
extern const char store_lease_renew_sql[];

#endif
