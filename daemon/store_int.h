/* store_int.h — what store.c (connection, transaction queue),
 * store_setup.c (schema, maintenance), store_outbox.c (the forwarder's
 * queries), store_ctl*.c (gridbridgectl), store_status.c and
 * store_lease.c share. Not for other files. */
#ifndef GRIDBRIDGE_STORE_INT_H
#define GRIDBRIDGE_STORE_INT_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backoff.h"
#include "store.h"
#include "store_batch.h"

struct event;
struct event_base;
struct store_op;

#define STORE_MAINTAIN_SECONDS 3600	/* partitions ahead, retention */

/* After connecting: schema, then partitions, then ready. */
enum setup_step {
	STEP_NONE,		/* not connected */
	STEP_MIGRATIONS_TABLE,
	STEP_READ_VERSION,	/* in a transaction holding the advisory lock */
	STEP_MIGRATE,		/* ... applies what is missing and commits */
	STEP_ABANDON,		/* ... rolls back: the schema is newer than we are */
	STEP_LOCK,		/* session advisory locks: node name, journal id */
	STEP_MAINTAIN,
	STEP_CHECKPOINT,	/* read this journal's committed sequence */
	STEP_REPORTS,		/* read the last repeated-report states */
	STEP_DERIVED,		/* read the derived state (devices, welfare, reports) */
	STEP_PREPARE,		/* prepare the batch statements (once per connection) */
	STEP_READY,		/* pipeline mode: batches */
	STEP_INCOMPATIBLE,
};

/* What a queued transaction is. */
enum store_txn_kind {
	TXN_BATCH,	/* ingest: a batch's rows and the checkpoint */
	TXN_OUTBOX,	/* a query of the forwarder (claim, settle, release) */
};

/* One transaction in the pipeline, queued until the server confirms it. */
struct store_txn {
	struct store_txn *next;
	enum store_txn_kind kind;
	union {
		struct store_batch *batch;	/* TXN_BATCH */
		struct store_op *op;		/* TXN_OUTBOX */
	} u;
	uint64_t first_seq, last_seq, checkpoint;	/* TXN_BATCH */
	int failures;			/* attempts that failed, not for the data */
	int64_t sent_ms;		/* TXN_BATCH: last sent (util_mono_ms) */
	bool failed;
	char sqlstate[6];
	char error[256];
};

struct store {
	struct event_base *base;
	PGconn *conn;
	struct event *io;
	int io_fd;
	short io_flags;
	struct event *retry;	/* reconnect timer */
	struct event *deadline;	/* connect timeout */
	struct event *answer;	/* answer timeout: a server that hangs */
	int answer_timeout;	/* seconds */
	struct backoff backoff;
	uint64_t connections;	/* made since start */
	char *host, *port, *dbname, *user, *password;
	char *sslmode, *sslrootcert, *sslcert, *sslkey;	/* "" for libpq's default */
	int connect_timeout;
	int partitions_ahead;
	int retention_days;
	bool connected;
	bool down_logged;	/* the outage was reported at warn */
	enum setup_step step;
	bool query_failed;	/* the running step got an error result */
	int db_version;		/* read in STEP_READ_VERSION */
	uint64_t db_checkpoint;	/* read in STEP_CHECKPOINT */
	struct event *maintain;	/* hourly partition maintenance */
	bool maintain_due;
	struct store_sink sink;
	char *node;
	char *journal_id;	/* the journal's UUID as text */
	uint8_t journal_uuid[16];
	bool locked_before;	/* this process held the locks on an earlier connection */
	bool lock_node_ok, lock_journal_ok;
	bool lock_wait_logged;
	int lock_attempts;
	size_t max_reports;
	int max_inflight;
	bool announced;		/* sink->ready() was called */
	bool prepared;		/* this connection has the batch statements prepared */
	/* Transactions: `queue` in submission order (outbox queries ahead of
	 * batches not yet sent); the first `sent` of them are in the current
	 * connection's pipeline. */
	struct store_txn *queue, *queue_tail;
	size_t queued, sent;
	size_t batches;		/* of `queued`, the batches (store_backlog) */
	bool outage;		/* an outage is going on (for its duration) */
	int64_t outage_started_ms;
	void (*outbox_hook)(void *ctx, int max_priority, size_t nrows);
	uint32_t claims;		/* names the next claim's lease */
	void *outbox_ctx;
};

/* ---- store.c: the connection ---- */

/* libpq connection parameters, empty values left out. */
#define CONN_PARAMS_MAX 16
struct conn_params {
	const char *keys[CONN_PARAMS_MAX + 1], *vals[CONN_PARAMS_MAX + 1];
	int n;
};

/* Where and how to connect, for the daemon and for gridbridgectl. */
void store_conn_params_init(struct conn_params *p, const char *host, const char *port,
    const char *dbname, const char *user, const char *password, const char *sslmode,
    const char *sslrootcert, const char *sslcert, const char *sslkey);
void store_conn_param(struct conn_params *p, const char *key, const char *val);
/* The first line of libpq's message, without the trailing newline. It is
 * about the connection: a statement's error, which may quote a value,
 * belongs to its result once that is taken (libpq 15, as Debian 12 has) and is
 * logged through store_loggable_error(). */
void store_conn_error(const PGconn *conn, char *buf, size_t len);
/* libpq's notice receiver: server notices go to our log (debug). */
void store_notice(void *arg, const PGresult *notice);

void store_drop_connection(struct store *s);
/* The database is unavailable: logged, retried after a backoff. */
void store_schedule_retry(struct store *s, const char *why);
/* A fresh connection after a pause, for a reason logged where it happened. */
void store_reconnect_quietly(struct store *s, const char *why);
/* Sends what libpq holds; watches for writing while it holds some. */
void store_flush(struct store *s);

/* ---- store.c: the transaction queue ---- */

/* Queues an outbox query ahead of the batches not yet sent. */
void store_queue_op(struct store *s, struct store_op *op);
/* Sends queued transactions up to the in-flight limit. */
void store_send_more(struct store *s);
/* The pipeline's results, in STEP_READY. */
void store_take_txn_results(struct store *s);

/* ---- store_ctl.c: gridbridgectl's connection ---- */

/* A blocking connection of its own, or NULL after one line on `err`. */
PGconn *store_ctl_connect(const struct store_options *o, FILE *err);
/* PQexecParams() with text parameters: the result, or NULL after one line
 * on `err`. */
PGresult *store_ctl_exec(PGconn *c, const char *sql, int n, const char *const *vals,
    FILE *err);
/* "gridbridgectl: query failed: " and the first line of libpq's `message`. */
void store_ctl_query_error(FILE *err, const char *message);

/* ---- the rows a notified transaction inserted ---- */

/* The condition that an events row `e` is one of those the batch
 * transaction of a notification (STORE_NOTIFY_CHANNEL, store.h) inserted:
 * in both of its ranges (widened by a millisecond: the times go through a
 * float8) and inserted by that transaction: its own xmin is the low 32
 * bits of the transaction id, or, for an event that has one, that of its
 * event_ids row (written by the same statement; event_ids rows never move,
 * while maintenance may move an events row to another partition, and the
 * rows it moves are those of skewed clocks, which have an event_ids row:
 * see store_ctl_tail.c). The arguments are SQL expressions: the transaction
 * id as txid_current() gave it (int8, or text of one), and the ranges in
 * UTC µs since the epoch (int8, or text). gridbridgectl tail
 * (store_ctl_tail.c) and the lease connection's following of other
 * instances (store_lease.c) find a transaction's rows with this alone. */
#define STORE_NOTE_US(x) "to_timestamp((" x ")::float8 / 1000000)"
#define STORE_NOTE_ROWS(txid, recv_first, recv_last, time_first, time_last) \
    " e.received_at BETWEEN " STORE_NOTE_US(recv_first) " - interval '1 ms'" \
    "  AND " STORE_NOTE_US(recv_last) " + interval '1 ms'" \
    " AND e.event_time BETWEEN " STORE_NOTE_US(time_first) " - interval '1 ms'" \
    "  AND " STORE_NOTE_US(time_last) " + interval '1 ms'" \
    " AND (e.xmin = ((" txid ")::int8 & 4294967295)::text::xid" \
    "  OR EXISTS (SELECT 1 FROM event_ids i WHERE i.id = e.id" \
    "   AND i.xmin = ((" txid ")::int8 & 4294967295)::text::xid))"

/* ---- store_setup.c ---- */

/* The derived state's rows (devices, welfare_state, resident_reports) as
 * three JSON arrays, one row: read at start, and by store_lease.c when a
 * shard is taken over. */
extern const char store_derived_sql[];

/* Setup moves on with the connection made (step STEP_NONE). */
void store_setup_next(struct store *s);
/* The setup queries' results, before STEP_READY. */
void store_setup_results(struct store *s);
/* Partitions and retention, between batches (pipeline mode left). */
void store_maintain(struct store *s);

/* ---- store_outbox.c: one queued query of the forwarder ---- */

/* Sends it, with its Sync: 0, or -1 when libpq refused. */
int store_op_send(struct store *s, struct store_op *op);
/* One of its results, of status PGRES_TUPLES_OK. */
void store_op_result(struct store_op *op, PGresult *r);
/* Its Sync arrived: tells the forwarder (`t` says whether it failed). */
void store_op_done(struct store_op *op, const struct store_txn *t);
void store_op_free(struct store_op *op);

/* ---- store.c: connecting on the event loop ---- */

/* store.c, store_status.c and store_lease.c drive their connections alike:
 * store_connect_start(), then store_poll_connect() on each event of the
 * socket until it is made, watching it with store_watch(). */

/* Arms *io for `flags` on the socket of `conn`, making it again only
 * when the socket (new with each connection) or the flags changed; no
 * event without a socket or with flags 0. */
void store_watch(struct event_base *base, PGconn *conn, short flags, struct event **io,
    int *io_fd, short *io_flags, event_callback_fn cb, void *arg, const char *mod);
/* Starts connecting with `p` (PQconnectStartParams), the server's notices
 * going to `notice` (none kept when NULL), `deadline` (the connect
 * timeout) armed for `timeout_s`: 0, or -1 when libpq refused at once,
 * *conn then NULL or a connection whose message says why (to finish). */
int store_connect_start(PGconn **conn, const struct conn_params *p, PQnoticeReceiver notice,
    void *arg, struct event *deadline, int timeout_s);
/* One step of PQconnectPoll() on a connection under way, *flags set to
 * what its socket is to be watched for: 0 while under way; 1 once made,
 * `deadline` stopped and the connection non-blocking; -1 when it failed,
 * *why then the reason, or NULL when libpq's message says it. */
int store_poll_connect(PGconn *conn, struct event *deadline, short *flags, const char **why);

#endif
