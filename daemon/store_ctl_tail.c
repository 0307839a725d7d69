/* store_ctl_tail.c — gridbridgectl tail: the events as they are stored,
 * followed with LISTEN/NOTIFY on a blocking connection of its own.
 *
 * Every batch transaction that stores events notifies STORE_NOTIFY_CHANNEL
 * (store.h) with its transaction id and the ranges of its events' receive
 * and event times. PostgreSQL delivers a notification when its transaction
 * commits, in commit order, and never one of a transaction rolled back. So
 * the rows to show are exactly those each notified transaction inserted
 * (STORE_NOTE_ROWS, store_int.h, shared with store_lease.c):
 * in events, the rows in both ranges (the BRIN index on received_at finds
 * the recent pages, the event time the partitions) that transaction
 * inserted: the row's own xmin, or that of its event_ids row (written by
 * the same statement) for an event that has one. event_ids rows never
 * move, while a maintenance run may move an events row to another
 * partition (a new transaction's row then). The rows it moves are those
 * far from today: in the DEFAULT partition (no daily one for their event
 * time yet) or in a daily one past the retention. Those of a device whose
 * clock is off have an event_ids row; an event without one is within
 * [decode] max_clock_skew of its receive time, so in the daily partition
 * of about when it arrived (see pipeline.c). No order of a column is
 * trusted: receive times come from the daemons' clocks, a journal replayed
 * after an outage commits events received hours before, and several
 * daemons commit side by side; a monotonic column would cost every insert
 * and its values would still not commit in order.
 *
 * The start: LISTEN, then in one read-only repeatable-read transaction
 * the snapshot (txid_current_snapshot()) and, with --since, the events
 * received since then. A notification of a transaction visible in that
 * snapshot is skipped: its rows were there before (and shown by --since
 * when in its window). Every later one is shown once, as it commits.
 *
 * Between notifications the tool waits in poll() on the connection's
 * socket and on a descriptor that says stop: it sends nothing while no
 * event is stored. */
#include "store_ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

/* ---- notifications and snapshots -------------------------------------- */

/* One decimal number of a payload, and the space after it unless `last`:
 * 0, or -1. */
static int
parse_number(const char **p, bool is_signed, bool last, uint64_t *u, int64_t *s)
{
	const char *q = *p;
	bool neg = is_signed && *q == '-';
	uint64_t v = 0;

	if (neg)
		q++;
	if (*q < '0' || *q > '9')
		return -1;
	for (; *q >= '0' && *q <= '9'; q++) {
		if (v > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*q - '0');
	}
	if (*q != (last ? '\0' : ' '))
		return -1;
	if (is_signed) {
		if (v > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
			return -1;
		*s = neg ? (int64_t)(0 - v) : (int64_t)v;
	} else {
		*u = v;
	}
	*p = last ? q : q + 1;
	return 0;
}

int
store_ctl_note_parse(const char *payload, struct store_ctl_note *n)
{
	const char *p = payload;
	int64_t *t[4] = { &n->recv_first, &n->recv_last, &n->time_first, &n->time_last };

	if (parse_number(&p, false, false, &n->txid, NULL) != 0)
		return -1;
	for (int i = 0; i < 4; i++)
		if (parse_number(&p, true, i == 3, NULL, t[i]) != 0)
			return -1;
	return n->recv_first <= n->recv_last && n->time_first <= n->time_last ? 0 : -1;
}

int
store_ctl_snapshot_parse(const char *text, struct store_ctl_snapshot *s)
{
	const char *p = text, *end;
	size_t cap = 0;

	memset(s, 0, sizeof(*s));
	/* xmin:xmax:xip,xip,... (the list may be empty) */
	for (int i = 0; i < 2; i++) {
		uint64_t *v = i == 0 ? &s->xmin : &s->xmax;
		end = strchr(p, ':');
		if (end == NULL)
			return -1;
		char num[32];
		if ((size_t)(end - p) >= sizeof(num))
			return -1;
		memcpy(num, p, (size_t)(end - p));
		num[end - p] = '\0';
		const char *q = num;
		if (parse_number(&q, false, true, v, NULL) != 0)
			return -1;
		p = end + 1;
	}
	if (s->xmin > s->xmax)
		return -1;
	while (*p != '\0') {
		uint64_t x;
		end = p + strcspn(p, ",");
		char num[32];
		if ((size_t)(end - p) >= sizeof(num))
			goto fail;
		memcpy(num, p, (size_t)(end - p));
		num[end - p] = '\0';
		const char *q = num;
		if (parse_number(&q, false, true, &x, NULL) != 0 || x < s->xmin || x >= s->xmax)
			goto fail;	/* running ones are from xmin to before xmax */
		if (s->nxip == cap) {
			cap = cap ? cap * 2 : 16;
			s->xip = util_realloc(s->xip, cap * sizeof(*s->xip));
		}
		s->xip[s->nxip++] = x;
		if (*end == '\0')
			break;
		p = end + 1;
		if (*p == '\0')
			goto fail;	/* a trailing comma */
	}
	return 0;
fail:
	store_ctl_snapshot_clear(s);
	return -1;
}

bool
store_ctl_snapshot_visible(const struct store_ctl_snapshot *s, uint64_t txid)
{
	if (txid < s->xmin)
		return true;
	if (txid >= s->xmax)
		return false;
	for (size_t i = 0; i < s->nxip; i++)
		if (s->xip[i] == txid)
			return false;
	return true;
}

void
store_ctl_snapshot_clear(struct store_ctl_snapshot *s)
{
	free(s->xip);
	memset(s, 0, sizeof(*s));
}

/* ---- the queries ------------------------------------------------------ */

/* $1..$5: the filters (NULL: any). */
#define FILTERS \
    " AND ($1::text IS NULL OR e.device_class = $1) AND ($2::text IS NULL OR e.device_id = $2)" \
    " AND ($3::text IS NULL OR e.community_id = $3) AND ($4::text IS NULL OR e.severity = $4)" \
    " AND ($5::text IS NULL OR e.event_type = $5)"
#define NFILTERS 5
/* A parameter in UTC µs since the epoch as a timestamptz. Through a
 * float8, to within a microsecond: the ranges are widened by a millisecond
 * and the transaction id decides. */
#define US(p) "to_timestamp(" p "::float8 / 1000000)"

/* The rows of one notification (STORE_NOTE_ROWS): $6 its transaction
 * id, $7..$10 its ranges. */
static const char note_sql[] =
    "SELECT e.id, e.record FROM events e"
    " WHERE" STORE_NOTE_ROWS("$6", "$7", "$8", "$9", "$10")
    FILTERS
    " ORDER BY e.received_at, e.id";

/* --since: $6 a time (UTC µs) or $7 seconds before now. */
static const char since_sql[] =
    "SELECT e.id, e.record FROM events e"
    " WHERE e.received_at >= coalesce(" US("$6") ", now() - $7::bigint * interval '1 second')"
    FILTERS
    " ORDER BY e.received_at, e.id";

struct tail {
	PGconn *conn;
	const struct store_ctl_tail *q;
	store_ctl_event_fn fn;
	void *ctx;
	FILE *err;
};

/* Whether stop_fd says stop, without waiting. */
static bool
stopping(const struct tail *t)
{
	struct pollfd p = { .fd = t->q->stop_fd, .events = POLLIN };

	return t->q->stop_fd >= 0 && poll(&p, 1, 0) > 0;
}

/* Runs `sql` (binary results: id and record) in single-row mode, giving
 * each row to the callback as it arrives. 0; 1 when told to stop between
 * two rows (the rest is left to PQfinish()); or -1 after one line on
 * `err` (also when the callback failed: it said why). */
static int
rows(struct tail *t, const char *sql, int n, const char *const *vals)
{
	PGresult *r;
	int rc = 0;

	if (!PQsendQueryParams(t->conn, sql, n, NULL, vals, NULL, NULL, 1)) {
		store_ctl_query_error(t->err, PQerrorMessage(t->conn));
		return -1;
	}
	(void)PQsetSingleRowMode(t->conn);
	while ((r = PQgetResult(t->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
			for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
				const uint8_t *id = (const uint8_t *)PQgetvalue(r, i, 0);
				char text[37];
				if (PQgetlength(r, i, 0) != 16) {
					fprintf(t->err, "gridbridgectl: query failed: an id of %d bytes\n",
					    PQgetlength(r, i, 0));
					rc = -1;
					break;
				}
				snprintf(text, sizeof(text), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
				    "%02x%02x%02x%02x%02x%02x", id[0], id[1], id[2], id[3], id[4], id[5],
				    id[6], id[7], id[8], id[9], id[10], id[11], id[12], id[13], id[14],
				    id[15]);
				if (t->fn(t->ctx, text, (const uint8_t *)PQgetvalue(r, i, 1),
				    (size_t)PQgetlength(r, i, 1)) != 0)
					rc = -1;
			}
			if (rc == 0 && stopping(t)) {
				PQclear(r);
				return 1;
			}
		} else if (rc == 0) {
			store_ctl_query_error(t->err, PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

/* The filters as $1..$5 of `vals`. */
static void
params(const struct store_ctl_tail *q, const char **vals)
{
	vals[0] = q->device_class;
	vals[1] = q->device_id;
	vals[2] = q->community;
	vals[3] = q->severity;
	vals[4] = q->event_type;
}

/* The events of one notification's transaction. */
static int
show_note(struct tail *t, const struct store_ctl_note *n)
{
	char num[5][24];
	const char *vals[NFILTERS + 5];

	params(t->q, vals);
	snprintf(num[0], sizeof(num[0]), "%" PRIu64, n->txid);
	snprintf(num[1], sizeof(num[1]), "%" PRId64, n->recv_first);
	snprintf(num[2], sizeof(num[2]), "%" PRId64, n->recv_last);
	snprintf(num[3], sizeof(num[3]), "%" PRId64, n->time_first);
	snprintf(num[4], sizeof(num[4]), "%" PRId64, n->time_last);
	for (int i = 0; i < 5; i++)
		vals[NFILTERS + i] = num[i];
	return rows(t, note_sql, NFILTERS + 5, vals);
}

/* LISTEN, then the snapshot and --since's events in one read-only
 * transaction. 0; 1 when told to stop; or -1 after one line on `err`. */
static int
start(struct tail *t, struct store_ctl_snapshot *snap)
{
	PGresult *r;

	if (PQsetClientEncoding(t->conn, "UTF8") != 0) {
		store_ctl_query_error(t->err, PQerrorMessage(t->conn));
		return -1;
	}
	if ((r = store_ctl_exec(t->conn, "LISTEN " STORE_NOTIFY_CHANNEL, 0, NULL, t->err)) == NULL)
		return -1;
	PQclear(r);
	if ((r = store_ctl_exec(t->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
	    NULL, t->err)) == NULL)
		return -1;
	PQclear(r);
	if ((r = store_ctl_exec(t->conn, "SELECT txid_current_snapshot()::text", 0, NULL,
	    t->err)) == NULL)
		return -1;
	int rc = PQntuples(r) == 1 ? store_ctl_snapshot_parse(PQgetvalue(r, 0, 0), snap) : -1;
	if (rc != 0)
		fprintf(t->err, "gridbridgectl: query failed: the snapshot is not understood\n");
	PQclear(r);
	if (rc == 0 && t->q->since.kind != STORE_CTL_WHEN_NONE) {
		char at[24], ago[24];
		const char *vals[NFILTERS + 2];
		params(t->q, vals);
		snprintf(at, sizeof(at), "%" PRId64, t->q->since.at_us);
		snprintf(ago, sizeof(ago), "%" PRId64, t->q->since.ago_s);
		vals[NFILTERS] = t->q->since.kind == STORE_CTL_WHEN_AT ? at : NULL;
		vals[NFILTERS + 1] = t->q->since.kind == STORE_CTL_WHEN_AGO ? ago : NULL;
		rc = rows(t, since_sql, NFILTERS + 2, vals);
	}
	if (rc == 0) {
		if ((r = store_ctl_exec(t->conn, "COMMIT", 0, NULL, t->err)) == NULL)
			rc = -1;
		PQclear(r);
	}
	return rc;
}

/* ---- following -------------------------------------------------------- */

int
store_ctl_tail(const struct store_options *o, const struct store_ctl_tail *q,
    store_ctl_event_fn fn, void *ctx, FILE *err)
{
	struct tail t = { .q = q, .fn = fn, .ctx = ctx, .err = err };
	struct store_ctl_snapshot snap = { 0 };
	bool warned = false;
	int rc = 1;

	t.conn = store_ctl_connect(o, err);
	if (t.conn == NULL)
		return 1;
	int st = start(&t, &snap);
	if (st != 0) {
		rc = st > 0 ? 0 : 1;
		goto done;
	}
	for (;;) {
		PGnotify *n;
		int bad = 0;
		while ((n = PQnotifies(t.conn)) != NULL) {
			struct store_ctl_note note;
			if (store_ctl_note_parse(n->extra, &note) != 0) {
				/* Someone else's NOTIFY on the channel: said once. */
				if (!warned)
					fprintf(err, "gridbridgectl: ignoring notifications on %s that are "
					    "not a batch's (payload of %zu bytes)\n", STORE_NOTIFY_CHANNEL,
					    strlen(n->extra));
				warned = true;
			} else if (!store_ctl_snapshot_visible(&snap, note.txid)) {
				bad = show_note(&t, &note);
			}
			PQfreemem(n);
			if (bad != 0) {
				rc = bad > 0 ? 0 : 1;
				goto done;
			}
		}
		struct pollfd pfd[2] = {
			{ .fd = PQsocket(t.conn), .events = POLLIN },
			{ .fd = q->stop_fd, .events = POLLIN },
		};
		if (pfd[0].fd < 0) {
			fprintf(err, "gridbridgectl: database connection lost\n");
			goto done;
		}
		if (poll(pfd, q->stop_fd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(err, "gridbridgectl: poll: %s\n", strerror(errno));
			goto done;
		}
		if (q->stop_fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
			rc = 0;
			goto done;
		}
		if (PQconsumeInput(t.conn) == 0 || PQstatus(t.conn) != CONNECTION_OK) {
			char e[256];
			store_conn_error(t.conn, e, sizeof(e));
			fprintf(err, "gridbridgectl: database connection lost: %s\n", e);
			goto done;
		}
	}
done:
	store_ctl_snapshot_clear(&snap);
	PQfinish(t.conn);
	return rc;
}
