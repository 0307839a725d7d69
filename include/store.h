/* store.c — PostgreSQL, non-blocking libpq on the libevent loop.
 *
 * Connecting uses PQconnectStartParams/PQconnectPoll only (never a blocking
 * connect); an IP address in `host` is passed as `hostaddr` so no DNS lookup
 * blocks the loop. PQsocket() is re-read after every PQconnectPoll(): it can
 * change while libpq tries addresses. A lost connection is noticed from the
 * socket and retried with capped exponential backoff and full jitter.
 * TLS settings (sslmode, sslrootcert, sslcert, sslkey) go to libpq as they
 * are; with an IP address as `host` it is passed as host too, so that
 * verify-full checks the certificate against it (libpq 15 matches IP
 * addresses in subjectAltName).
 *
 * Once connected it brings the schema up to date (schema.c: numbered
 * migrations, each in a transaction under an advisory lock; a database
 * newer than this binary is left alone and reported), makes the daily
 * partitions ahead and applies the retention, then every hour again.
 *
 * Of the daemon's files only the store's include libpq-fe.h: store.c the
 * connection and the queue of transactions, store_setup.c schema and
 * maintenance, store_outbox.c the forwarder's queries, store_ctl.c and
 * store_ctl_derived.c gridbridgectl's (store_ctl.h); their shared
 * internals are in daemon/store_int.h. store_batch.c, the rows as binary
 * array parameters (store_batch.h), is pure: no libpq, no libevent.
 */
#ifndef GRIDBRIDGE_STORE_H
#define GRIDBRIDGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

struct event_base;
struct store;
struct store_batch;

/* One row for `events`. Strings are NUL-terminated; plate and attrs may be
 * NULL. The batch copies what it needs. */
struct store_event {
	const uint8_t *id;		/* 16 bytes */
	int64_t event_time_us;		/* UTC µs since the Unix epoch */
	int64_t received_us;
	const char *community_id, *device_id, *device_class, *event_type, *severity;
	const char *vendor, *route, *source_topic;
	uint64_t journal_seq;
	bool clock_skewed;
	/* Stored once by the events' primary key alone (id, event_time), no
	 * event_ids row: its id is made from its event time, so every copy
	 * has that time (see store_batch.c). false: an event_ids row. */
	bool by_primary_key;
	const char *plate;
	const uint8_t *record;		/* packed gridbridge.v1.Event */
	size_t record_len;
	const char *attrs;		/* the record as JSON */
};

/* One row for `quarantine`. */
struct store_quarantine {
	uint64_t journal_seq;
	int64_t received_us;
	const char *topic;
	size_t topic_len;
	const uint8_t *raw;
	size_t raw_len;
	const char *reason;
	const char *route;		/* NULL: no route matched */
};

/* One repeated-report state (see pipeline.c): all 16-byte values. */
struct store_report {
	const uint8_t *key, *digest, *event_id;
	int64_t event_time_us;
	int64_t last_us;
};

/* What the store tells the pipeline (wired by main.c). */
struct store_sink {
	/* A repeated-report state from the database, before ready(). */
	void (*report)(void *ctx, const struct store_report *r);
	/* The derived state from the database, before ready(): JSON arrays
	 * of the devices, the households and the open reports (derive.h).
	 * NULL: not read. */
	void (*derived)(void *ctx, const char *devices, const char *welfare, const char *reports);
	/* The schema is ready; `checkpoint` is this node's committed journal
	 * sequence. Called once, on the first successful setup. */
	void (*ready)(void *ctx, uint64_t checkpoint);
	/* Before the first ready(): the database could not be reached (or
	 * stopped answering) and is being retried. */
	void (*unavailable)(void *ctx);
	/* Connected again after an outage; unconfirmed batches are being sent
	 * again. */
	void (*back)(void *ctx);
	/* A batch committed: its journal range and the checkpoint written. */
	void (*committed)(void *ctx, uint64_t first_seq, uint64_t last_seq, uint64_t checkpoint);
	/* The server refused a batch's data (SQLSTATE class 22, 23 or 54,
	 * or another error STORE_BATCH_ATTEMPTS times that is not about the
	 * server or the connection); the batch is dropped here and the
	 * pipeline decides (bisects). */
	void (*rejected)(void *ctx, uint64_t first_seq, uint64_t last_seq, const char *sqlstate,
	    const char *message);
	/* The daemon must not go on (logged): another daemon holds our node
	 * name or our journal. */
	void (*fatal)(void *ctx, const char *why);
	void *ctx;
};

struct store_options {
	const char *host;	/* IP address, host name or socket directory */
	int port;
	const char *dbname;
	const char *user;
	const char *password;	/* NULL or "" for none */
	int connect_timeout;	/* seconds */
	int answer_timeout;	/* seconds a query may wait for its answer; 0: 60 */
	int partitions_ahead;	/* daily partitions created ahead */
	int retention_days;	/* partitions older are dropped; 0 keeps all */
	const char *node;	/* journal_node: this daemon's name (MQTT client id) */
	const char *journal_id;	/* the journal's id (UUID text): keys the checkpoint */
	size_t max_reports;	/* repeated-report states read at start */
	int max_inflight;	/* batches sent and not yet confirmed */
	/* TLS, as libpq's parameters of those names; NULL or "" leaves
	 * libpq's default (sslmode prefer). */
	const char *sslmode;
	const char *sslrootcert, *sslcert, *sslkey;
};

/* Each batch transaction that stores events notifies this channel
 * (pg_notify(), delivered to the listeners when it commits, in commit
 * order, never when it rolls back). The payload is five decimal numbers
 * separated by a space:
 *
 *   TXID RECEIVED_FIRST RECEIVED_LAST TIME_FIRST TIME_LAST
 *
 * the transaction's id (txid_current(): its low 32 bits are the xmin of
 * the rows it inserted), then the earliest and latest received_at and
 * event_time of the batch's events, as UTC µs since the Unix epoch: the
 * rows it inserted are among those in both ranges. An event already
 * stored is not inserted again, so a notification may stand for no new
 * row. While the server's notification queue is over 90% full (a listener
 * that stopped reading) batches notify nothing rather than fail.
 * gridbridgectl tail reads the new events with it (store_ctl.h). */
#define STORE_NOTIFY_CHANNEL "gridbridge_events"

/* Whether `host` is this machine by its spelling: a socket directory (or
 * abstract socket), 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z), or the
 * name localhost. A comma-separated list is local when every entry is.
 * Anything else, even a name that resolves to 127.0.0.1, is not: the
 * daemon warns at start when such a server is not verified by name
 * (sslmode verify-full). */
bool store_host_is_local(const char *host);

/* What a log line may say of the server's error `message` of SQLSTATE
 * `sqlstate`: the message itself, or a constant when messages of its class
 * may quote a row's values (the classes are listed in store.c). */
const char *store_loggable_error(const char *sqlstate, const char *message);

/* Batches: built row by row into binary array parameters, then submitted
 * (the store owns them from then on). */
/* `node` names this daemon (journal_node), `journal_id` its journal. */
struct store_batch *store_batch_new(const char *node, const char *journal_id);
void store_batch_add_event(struct store_batch *b, const struct store_event *e);
void store_batch_add_quarantine(struct store_batch *b, const struct store_quarantine *q);
/* Messages a rate-limited device held back (ratelimit.h): this batch's
 * share of its interval's summary quarantine row, keyed by the interval's
 * first held-back message `key_seq`. `sample` is the first of them in this
 * batch (its seq, received time, topic, raw bytes, route; the reason is
 * rate_limited): the row's content when the row is new. Returns the share's
 * index for store_batch_held_more. Written with an upsert that adds the
 * share's count once (a batch sent again after a lost answer finds its
 * last seq there already and adds nothing). */
size_t store_batch_add_held(struct store_batch *b, uint64_t key_seq,
    const struct store_quarantine *sample);
/* One more message held back, record `seq`, in share `row`. */
void store_batch_held_more(struct store_batch *b, size_t row, uint64_t seq, const char *route);
/* A repeated-report state, written with the batch (newer states win). */
void store_batch_add_report(struct store_batch *b, const struct store_report *r);
/* The derived state's rows (derive.h: JSON arrays for devices,
 * welfare_state and resident_reports; NULL for none), copied, written
 * with the batch. */
void store_batch_set_states(struct store_batch *b, const char *devices, const char *welfare,
    const char *reports);
size_t store_batch_rows(const struct store_batch *b);
size_t store_batch_bytes(const struct store_batch *b);
void store_batch_free(struct store_batch *b);
/* Queues `b` (journal range first..last; first > last for a checkpoint-only
 * batch) to be written in one transaction with ingest_checkpoint =
 * `checkpoint`. Sent at once when connected; kept and resent after a lost
 * connection until the server confirms it. */
void store_submit(struct store *s, struct store_batch *b, uint64_t first_seq,
    uint64_t last_seq, uint64_t checkpoint);
/* Batches submitted and not yet confirmed. */
size_t store_backlog(const struct store *s);

/* An outbox row for an event of the batch (written with it, once per
 * event and target). `kind` 0: for `target`; else `target` is a GA/T 1400
 * cascade target and `kind` the SubscribeDetail code the event answers
 * (12 faces, 13 motor vehicles, 4 device status): one row for each of the
 * target's active subscriptions that wants it ("<target>/<SubscribeID>",
 * see viid_subscriptions in schema.c), none without. */
void store_batch_add_outbox(struct store_batch *b, const uint8_t *event_id,
    int64_t event_time_us, const char *target, int priority, int kind);

/* The outbox for the forwarder (see outbox.h): its queries go ahead of
 * batches not yet sent, each its own transaction. */
void store_outbox(struct store *s, struct outbox *out);
/* Called after a batch with outbox rows committed, with the highest
 * priority among them and their number. */
void store_set_outbox_hook(struct store *s,
    void (*fn)(void *ctx, int max_priority, size_t nrows), void *ctx);

/* Copies what it needs from `o`. */
struct store *store_new(struct event_base *base, const struct store_options *o,
    const struct store_sink *sink);
/* Starts connecting; failures are retried in the background. */
int store_start(struct store *s);
/* Connected, schema current, partitions made: ready to write. */
bool store_ready(const struct store *s);
void store_free(struct store *s);

#endif
