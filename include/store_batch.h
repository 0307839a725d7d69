/* store_batch.c — a batch's rows as PostgreSQL binary array parameters.
 *
 * Pure: no connection, no event loop. From rows (store.h's
 * store_batch_add_*) to the bytes of the parameters of the statements that
 * write them; store.c sends those, the unit tests check them byte for byte
 * and bench_store measures them.
 */
#ifndef GRIDBRIDGE_STORE_BATCH_H
#define GRIDBRIDGE_STORE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "store.h"

/* Element type oids (pg_type.h). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_TEXT 25
#define OID_TIMESTAMPTZ 1184
#define OID_UUID 2950
#define OID_JSONB 3802

/* µs between the Unix epoch and PostgreSQL's (2000-01-01). */
#define PG_EPOCH_US 946684800000000LL

/* A binary array parameter under construction (PostgreSQL's array_recv
 * format: ndim, has_null, element oid, then per dimension size and lower
 * bound, then length-prefixed elements, -1 for NULL). One dimension with
 * lower bound 1; the header is written by pgarr_finish(). */
struct pgarr {
	uint8_t *buf;
	size_t len, cap;
	uint32_t n;
	uint32_t oid;
	bool has_null;
};

/* An empty array of elements of type `oid`. */
void pgarr_init(struct pgarr *a, uint32_t oid);
void pgarr_free(struct pgarr *a);
/* One element of `len` bytes as they are; NULL data means SQL NULL. */
void pgarr_add(struct pgarr *a, const void *data, size_t len);
/* A string without its NUL (NULL: SQL NULL). */
void pgarr_add_text(struct pgarr *a, const char *s);
/* int8, big-endian. */
void pgarr_add_i64(struct pgarr *a, int64_t v);
/* timestamptz: µs since the Unix epoch, sent as µs since PostgreSQL's. */
void pgarr_add_time(struct pgarr *a, int64_t unix_us);
/* jsonb: the version byte 1, then `n` bytes of JSON text (NULL: SQL NULL). */
void pgarr_add_jsonb(struct pgarr *a, const char *json, size_t n);
/* Writes the header, now that the count is known, and returns the
 * parameter's bytes (`*len` of them): valid until the next change. An
 * empty array has no dimensions. May be called again. */
const uint8_t *pgarr_finish(struct pgarr *a, int *len);

/* A UUID in text (with or without dashes) as its 16 bytes: 0, or -1. */
int store_uuid_parse(const char *s, uint8_t out[16]);

/* Columns of the statements' arrays. */
#define EV_COLS 17	/* events, in the table's column order */
#define EV_PARAMS (EV_COLS + 1)	/* ... and by_primary_key (store_event) */
#define Q_COLS 8	/* quarantine */
#define O_COLS 5	/* forward_outbox: event_id, event_time, target, priority,
			 * kind (see store_batch_add_outbox) */
#define R_COLS 5	/* report_state */
#define H_COLS 9	/* quarantine summary rows: node, journal id, seq, received_at,
			 * topic, raw, route, held_back, held_back_through */

/* A summary row's share (see store_batch_add_held). */
struct store_held {
	uint64_t key_seq, through;
	int64_t received_us;
	char *topic;
	size_t topic_len;
	uint8_t *raw;
	size_t raw_len;
	char *route;
	uint64_t count;
};

/* The derived state's tables: devices, welfare_state, resident_reports. */
#define STORE_STATES 3

struct store_batch {
	struct pgarr ev[EV_COLS];
	struct pgarr by_pk;		/* bool: by_primary_key of each event */
	struct pgarr q[Q_COLS];
	struct pgarr o[O_COLS];
	struct pgarr r[R_COLS];
	struct pgarr h[H_COLS];		/* built from `held` when the batch is sent */
	struct store_held *held;
	size_t nheld, capheld;
	size_t nheld_msgs;		/* messages the shares stand for */
	bool h_built;
	size_t nevents, nquar, nout, nreports, bytes;
	size_t nfanout;		/* outbox rows of kind != 0 */
	int out_max_priority;	/* the highest of the outbox rows (nout > 0) */
	/* The events' received and event times, earliest and latest (UTC
	 * µs): the notification's payload. Valid when nevents > 0. */
	int64_t recv_first, recv_last, time_first, time_last;
	char *states[STORE_STATES];	/* JSON arrays of rows; NULL: none */
	char *node;
	uint8_t journal_uuid[16];
	struct metrics_tally tally;	/* added to the metrics when it commits */
	uint64_t serial;		/* the caller's name for it; 0 from store_batch_new */
};

/* One statement of a batch's transaction, ready for PQsendQueryParams. */
#define STORE_STMT_PARAMS (EV_PARAMS + O_COLS)
struct store_stmt {
	const char *sql;
	int nparams;
	bool binary;		/* every parameter binary; else every one text */
	const char *vals[STORE_STMT_PARAMS];
	int lens[STORE_STMT_PARAMS], fmts[STORE_STMT_PARAMS];
};

/* A batch's transaction, in the order sent: the events with their outbox
 * rows ($1..$17 the events' columns, $18 by_primary_key, $19..$22 the
 * outbox's, $23 their kinds with cascade rows) and the notification of STORE_NOTIFY_CHANNEL
 * (text: the payload's times, "RECEIVED_FIRST RECEIVED_LAST TIME_FIRST
 * TIME_LAST"; the server adds the transaction's id), the quarantine rows,
 * the rate-limited devices' summary rows, the report states, the derived states (text: a JSON array each; each
 * only when the batch has such rows), then the checkpoint upsert (text:
 * node, journal id, `checkpoint`). */
#define STORE_BATCH_STMTS (6 + STORE_STATES)
struct store_stmts {
	struct store_stmt stmt[STORE_BATCH_STMTS];
	size_t n;
	char seq[32];		/* the checkpoint's text */
	char times[96];		/* the notification's */
};

/* The parameters point into `b` and `out`: valid while both are and `b`
 * gets no more rows. */
void store_batch_statements(struct store_batch *b, uint64_t checkpoint, const char *node,
    const char *journal_id, struct store_stmts *out);
/* Appends the checkpoint upsert alone to `out` (of fewer than
 * STORE_BATCH_STMTS statements): journal `journal_id` of `node` has
 * committed up to `checkpoint`. */
void store_checkpoint_statement(struct store_stmts *out, uint64_t checkpoint, const char *node,
    const char *journal_id);

/* Every statement a batch may send, in a fixed order: prepared once per
 * connection as "gb_batch_<index>" (the server then neither parses nor
 * plans them per batch, which at a few rows per transaction was most of
 * its work). Returns how many; store_batch_sql_index() finds one. */
size_t store_batch_sqls(const char *const **out);
int store_batch_sql_index(const char *sql);

#endif
