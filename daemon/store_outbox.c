/* store_outbox.c — the forwarder's queries (outbox.h): claim, settle,
 * release, each its own transaction in the store's pipeline, queued ahead
 * of the batches not yet sent. */
#include <endian.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "outbox.h"
#include "store_batch.h"
#include "store_int.h"
#include "util.h"

/* A query of the forwarder (claim, settle, release, subscriptions). */
struct store_op {
	enum { OP_CLAIM, OP_SETTLE, OP_RELEASE, OP_SUBS } kind;
	const char *sql;
	int nparams;
	bool resend;			/* sent before, on a connection since lost */
	char *text[8];			/* text parameters (NULL: SQL NULL) */
	struct pgarr ids;		/* $2 of settle, $7 of claim: uuid[] */
	outbox_claim_fn claim_done;
	outbox_subs_fn subs_done;	/* OP_SUBS; NULL: no answer wanted */
	char *answer;			/* OP_SUBS: the first row's first column */
	const char *what;		/* OP_SUBS: what it is, for the log; NULL:
					 * a subscription query */
	void *ctx;
	struct outbox_row *rows;
	size_t nrows;
	uint8_t *data;			/* the rows' records */
};

/* Takes up to $2 rows (and about $3 bytes of records) of target $1 that
 * are due, of a priority in [$6[1], $6[2]] (a lane of the forwarder) and
 * not among the ids $7 (rows the forwarder holds already), highest priority
 * first, and leases them to this node ($5) for $4 seconds: another daemon
 * (or this one after a restart, see release) takes them only when the
 * lease has run out. Each row comes with its age in milliseconds, by the
 * database's clock (max_age). $8 not NULL (a fenced claim): only while
 * node $8 holds the target's session lease (forward_leases). */
static const char outbox_claim_sql[] =
    "WITH c AS ("
    "  SELECT o.event_id, o.target, o.priority, o.created_at, e.record"
    "  FROM forward_outbox o"
    "  LEFT JOIN events e ON e.id = o.event_id AND e.event_time = o.event_time"
    "  WHERE o.target = $1 AND o.state = 'pending' AND o.next_attempt_at <= now()"
    "    AND o.priority BETWEEN ($6::int[])[1] AND ($6::int[])[2]"
    "    AND o.event_id <> ALL($7::uuid[])"
    "    AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM forward_leases f"
    "      WHERE f.target = $1 AND f.holder = $8 AND f.expires_at > now()))"
    "  ORDER BY o.priority DESC, o.created_at"
    "  LIMIT $2::int FOR UPDATE OF o SKIP LOCKED"
    "), w AS ("
    "  SELECT c.*, sum(coalesce(length(c.record), 0)) OVER (ORDER BY c.priority DESC,"
    "    c.created_at, c.event_id ROWS UNBOUNDED PRECEDING)"
    "    - coalesce(length(c.record), 0) AS before"
    "  FROM c"
    ")"
    " UPDATE forward_outbox o SET next_attempt_at = now() + make_interval(secs => $4::int),"
    "   claimed_by = $5"
    " FROM w WHERE o.event_id = w.event_id AND o.target = w.target AND w.before < $3::bigint"
    " RETURNING o.event_id, o.priority::int4, o.attempts, w.record, w.before,"
    "   greatest(0, floor(extract(epoch FROM now() - w.created_at) * 1000))::int8";

static const char outbox_sent_sql[] =
    "UPDATE forward_outbox SET state = 'sent', sent_at = now(), attempts = attempts + 1,"
    " last_status = $3::int, last_error = NULL, claimed_by = NULL"
    " WHERE target = $1 AND event_id = ANY($2::uuid[]) AND state = 'pending'";
static const char outbox_retry_sql[] =
    "UPDATE forward_outbox SET attempts = attempts + 1, last_status = $3::int,"
    " last_error = $4, next_attempt_at = now() + make_interval(secs => $5::double precision)"
    " WHERE target = $1 AND event_id = ANY($2::uuid[]) AND state = 'pending'";
static const char outbox_failed_sql[] =
    "UPDATE forward_outbox SET state = 'failed', attempts = attempts + 1, last_status = $3::int,"
    " last_error = $4, claimed_by = NULL"
    " WHERE target = $1 AND event_id = ANY($2::uuid[]) AND state = 'pending'";
/* Rows the forwarder gives back unsent: due again in $3 seconds. */
static const char outbox_defer_sql[] =
    "UPDATE forward_outbox SET next_attempt_at = now() + make_interval(secs => $3::double precision),"
    " claimed_by = NULL"
    " WHERE target = $1 AND event_id = ANY($2::uuid[]) AND state = 'pending'";
/* After a restart: what this node had leased is due again at once. A
 * claim leases its rows to NODE/TOKEN, a name of its own. */
static const char outbox_release_sql[] =
    "UPDATE forward_outbox SET next_attempt_at = now(), claimed_by = NULL"
    " WHERE state = 'pending' AND (claimed_by = $1 OR starts_with(claimed_by, $1 || '/'))";
/* A claim sent again after a lost connection first gives back what its
 * first sending may have leased (committed, but the answer lost), in the
 * same transaction: no rows wait out a lease nobody holds. */
static const char outbox_unclaim_sql[] =
    "UPDATE forward_outbox SET next_attempt_at = now(), claimed_by = NULL"
    " WHERE target = $1 AND state = 'pending' AND claimed_by = $2";

/* ---- subscriptions of cascade targets (GA/T 1400) ---- */

/* A subscription as the forwarder reads it (outbox.h). */
#define SUB_JSON(s) \
    "json_build_object('id', " s ".subscribe_id, 'details', " s ".details," \
    " 'devices', " s ".devices, 'resources', " s ".resources," \
    " 'receive_addr', " s ".receive_addr, 'title', " s ".title," \
    " 'begin_us', (extract(epoch FROM " s ".begin_time) * 1000000)::int8," \
    " 'end_us', (extract(epoch FROM " s ".end_time) * 1000000)::int8," \
    " 'report_interval', " s ".report_interval," \
    " 'applicant_name', " s ".applicant_name, 'applicant_org', " s ".applicant_org," \
    " 'reason', " s ".reason," \
    " 'made_us', (extract(epoch FROM " s ".created_at) * 1000000)::int8," \
    " 'catalogue', " s ".catalogue_state," \
    " 'catalogue_attempts', " s ".catalogue_attempts)"

static const char subs_load_sql[] =
    "SELECT coalesce(json_agg(" SUB_JSON("s") " ORDER BY s.created_at, s.subscribe_id),"
    " '[]')::text FROM viid_subscriptions s WHERE s.target = $1::text AND s.state = 'active'";
/* A subscription made again after it ended is a new one: its time and
 * its catalogue start again. */
static const char subs_put_sql[] =
    "WITH j AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(id text, details smallint[],"
    "  devices text[], resources text[], receive_addr text, title text, begin_us int8,"
    "  end_us int8, report_interval int, applicant_name text, applicant_org text,"
    "  reason text)),"
    " u AS (INSERT INTO viid_subscriptions AS s (target, subscribe_id, details, devices,"
    "  resources, receive_addr, title, begin_time, end_time, report_interval,"
    "  applicant_name, applicant_org, reason)"
    "  SELECT $1::text, id, details, devices, coalesce(resources, '{}'), receive_addr,"
    "  coalesce(title, ''), to_timestamp(begin_us / 1000000.0::float8),"
    "  to_timestamp(end_us / 1000000.0::float8), report_interval, applicant_name,"
    "  applicant_org, reason FROM j"
    "  ON CONFLICT (target, subscribe_id) DO UPDATE SET details = excluded.details,"
    "  devices = excluded.devices, resources = excluded.resources,"
    "  receive_addr = excluded.receive_addr, title = excluded.title,"
    "  begin_time = excluded.begin_time, end_time = excluded.end_time,"
    "  report_interval = excluded.report_interval,"
    "  applicant_name = excluded.applicant_name, applicant_org = excluded.applicant_org,"
    "  reason = excluded.reason, updated_at = now(),"
    "  created_at = CASE WHEN s.state = 'active' THEN s.created_at ELSE now() END,"
    "  catalogue_state = CASE WHEN s.state = 'active' THEN s.catalogue_state"
    "   ELSE 'pending' END,"
    "  catalogue_attempts = CASE WHEN s.state = 'active' THEN s.catalogue_attempts"
    "   ELSE 0 END,"
    "  catalogue_error = CASE WHEN s.state = 'active' THEN s.catalogue_error END,"
    "  state = 'active', ended_at = NULL, end_reason = NULL"
    "  RETURNING s.*)"
    " SELECT coalesce(json_agg(" SUB_JSON("u") "), '[]')::text FROM u";
/* Rows waiting for an ended subscription will not be sent: failed, with
 * the reason. */
static const char subs_end_sql[] =
    "WITH i AS (SELECT a.id, a.ord FROM jsonb_array_elements_text($2::jsonb)"
    "  WITH ORDINALITY AS a(id, ord)),"
    " e AS (UPDATE viid_subscriptions SET state = $3::text, ended_at = now(),"
    "  end_reason = $4::text, updated_at = now()"
    "  WHERE target = $1::text AND subscribe_id IN (SELECT id FROM i) AND state = 'active'"
    "  RETURNING subscribe_id),"
    " f AS (UPDATE forward_outbox SET state = 'failed',"
    "  last_error = 'subscription ' || $3::text, claimed_by = NULL"
    "  WHERE target IN (SELECT $1::text || '/' || subscribe_id FROM e) AND state = 'pending')"
    " SELECT coalesce(json_agg(json_build_object('id', i.id,"
    "  'known', EXISTS (SELECT 1 FROM viid_subscriptions s WHERE s.target = $1::text"
    "   AND s.subscribe_id = i.id),"
    "  'ended', i.id IN (SELECT subscribe_id FROM e)) ORDER BY i.ord), '[]')::text FROM i";
static const char subs_catalogue_sql[] =
    "UPDATE viid_subscriptions SET catalogue_state = $3::text,"
    " catalogue_attempts = catalogue_attempts + 1, catalogue_error = $4::text"
    " WHERE target = $1::text AND subscribe_id = $2::text";

int
store_op_send(struct store *s, struct store_op *op)
{
	const char *vals[8];
	int lens[8], fmts[8];

	free(op->rows);
	free(op->data);
	free(op->answer);
	op->rows = NULL;
	op->data = NULL;
	op->answer = NULL;
	op->nrows = 0;
	for (int i = 0; i < op->nparams; i++) {
		vals[i] = op->text[i];
		lens[i] = 0;
		fmts[i] = 0;
	}
	/* The ids, a binary uuid[]: $2 of settle, $7 of claim. */
	int at = op->kind == OP_SETTLE ? 1 : op->kind == OP_CLAIM ? 6 : -1;
	if (at >= 0) {
		vals[at] = (const char *)pgarr_finish(&op->ids, &lens[at]);
		fmts[at] = 1;
	}
	if (op->kind == OP_CLAIM && op->resend) {
		const char *un[2] = { op->text[0], op->text[4] };
		if (PQsendQueryParams(s->conn, outbox_unclaim_sql, 2, NULL, un, NULL, NULL, 0) == 0)
			return -1;
	}
	op->resend = true;
	/* Binary results: uuids as 16 bytes, records as they are. */
	if (PQsendQueryParams(s->conn, op->sql, op->nparams, NULL, vals, lens, fmts,
	    op->kind == OP_CLAIM ? 1 : 0) == 0)
		return -1;
	return PQpipelineSync(s->conn) == 0 ? -1 : 0;
}

static uint32_t
get_be32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

/* The claim's rows, copied out of the result. */
static void
take_claim_rows(struct store_op *op, PGresult *r)
{
	int n = PQntuples(r);
	size_t bytes = 0;

	if (n <= 0 || PQnfields(r) != 6)
		return;
	for (int i = 0; i < n; i++)
		bytes += (size_t)PQgetlength(r, i, 3);
	op->rows = util_calloc((size_t)n, sizeof(*op->rows));
	op->data = util_malloc(bytes);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		struct outbox_row *row = &op->rows[op->nrows];
		if (PQgetlength(r, i, 0) != 16 || PQgetlength(r, i, 1) != 4 ||
		    PQgetlength(r, i, 2) != 4)
			continue;
		memcpy(row->event_id, PQgetvalue(r, i, 0), 16);
		row->priority = (int)get_be32(PQgetvalue(r, i, 1));
		row->attempts = (int)get_be32(PQgetvalue(r, i, 2));
		if (PQgetisnull(r, i, 3)) {
			row->record = NULL;
			row->record_len = 0;
		} else {
			size_t len = (size_t)PQgetlength(r, i, 3);
			memcpy(op->data + off, PQgetvalue(r, i, 3), len);
			row->record = op->data + off;
			row->record_len = len;
			off += len;
		}
		uint64_t before = 0, age = 0;
		if (PQgetlength(r, i, 4) == 8)
			memcpy(&before, PQgetvalue(r, i, 4), 8);
		if (PQgetlength(r, i, 5) == 8)
			memcpy(&age, PQgetvalue(r, i, 5), 8);
		row->order = (int64_t)be64toh(before);
		row->age_ms = (int64_t)be64toh(age);
		op->nrows++;
	}
}

static struct store_op *
new_op(int kind, const char *sql, int nparams)
{
	struct store_op *op = util_calloc(1, sizeof(*op));
	op->kind = kind;
	op->sql = sql;
	op->nparams = nparams;
	return op;
}

static char *
fmt_ll(long long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", v);
	return util_strdup(buf);
}

static void
outbox_claim(void *ctx, const struct outbox_claim *c, outbox_claim_fn done, void *done_ctx)
{
	struct store *s = ctx;
	struct store_op *op = new_op(OP_CLAIM, outbox_claim_sql, 8);
	char range[48];

	op->text[0] = util_strdup(c->target);
	op->text[1] = fmt_ll((long long)c->max_rows);
	op->text[2] = fmt_ll((long long)c->max_bytes);
	op->text[3] = fmt_ll(c->lease_s);
	char token[300];
	snprintf(token, sizeof(token), "%s/%08x", s->node, s->claims++);
	op->text[4] = util_strdup(token);
	snprintf(range, sizeof(range), "{%d,%d}", c->min_priority, c->max_priority);
	op->text[5] = util_strdup(range);
	op->text[7] = c->fenced ? util_strdup(s->node) : NULL;
	pgarr_init(&op->ids, OID_UUID);
	for (size_t i = 0; i < c->nexclude; i++)
		pgarr_add(&op->ids, c->exclude + 16 * i, 16);
	op->claim_done = done;
	op->ctx = done_ctx;
	store_queue_op(s, op);
}

static void
outbox_settle(void *ctx, const char *target, const uint8_t *ids, size_t n,
    enum outbox_outcome outcome, int status, const char *error, int64_t retry_in_ms)
{
	struct store *s = ctx;
	const char *sql = outcome == OUTBOX_SENT ? outbox_sent_sql :
	    outcome == OUTBOX_RETRY ? outbox_retry_sql :
	    outcome == OUTBOX_DEFER ? outbox_defer_sql : outbox_failed_sql;
	struct store_op *op = new_op(OP_SETTLE, sql, outcome == OUTBOX_SENT ? 3 :
	    outcome == OUTBOX_RETRY ? 5 : outcome == OUTBOX_DEFER ? 3 : 4);
	char secs[32];

	op->text[0] = util_strdup(target);
	pgarr_init(&op->ids, OID_UUID);
	for (size_t i = 0; i < n; i++)
		pgarr_add(&op->ids, ids + 16 * i, 16);
	snprintf(secs, sizeof(secs), "%.3f", (double)retry_in_ms / 1000.0);
	if (outcome == OUTBOX_DEFER) {
		op->text[2] = util_strdup(secs);
		store_queue_op(s, op);
		return;
	}
	op->text[2] = status > 0 ? fmt_ll(status) : NULL;
	if (outcome != OUTBOX_SENT)
		op->text[3] = util_strdup(error != NULL ? error : "");
	if (outcome == OUTBOX_RETRY)
		op->text[4] = util_strdup(secs);
	store_queue_op(s, op);
}

static void
outbox_release(void *ctx)
{
	struct store *s = ctx;
	struct store_op *op = new_op(OP_RELEASE, outbox_release_sql, 1);

	op->text[0] = util_strdup(s->node);
	store_queue_op(s, op);
}

static void
subs_query(struct store *s, const char *sql, const char *const *params, int n,
    outbox_subs_fn done, void *done_ctx)
{
	struct store_op *op = new_op(OP_SUBS, sql, n);

	for (int i = 0; i < n; i++)
		op->text[i] = params[i] != NULL ? util_strdup(params[i]) : NULL;
	op->subs_done = done;
	op->ctx = done_ctx;
	store_queue_op(s, op);
}

static void
subs_load(void *ctx, const char *target, outbox_subs_fn done, void *done_ctx)
{
	const char *p[] = { target };

	subs_query(ctx, subs_load_sql, p, 1, done, done_ctx);
}

static void
subs_put(void *ctx, const char *target, const char *subs, outbox_subs_fn done, void *done_ctx)
{
	const char *p[] = { target, subs };

	subs_query(ctx, subs_put_sql, p, 2, done, done_ctx);
}

static void
subs_end(void *ctx, const char *target, const char *ids, const char *state, const char *reason,
    outbox_subs_fn done, void *done_ctx)
{
	const char *p[] = { target, ids, state, reason };

	subs_query(ctx, subs_end_sql, p, 4, done, done_ctx);
}

static void
subs_catalogue(void *ctx, const char *target, const char *id, const char *state,
    const char *error)
{
	const char *p[] = { target, id, state, error };

	subs_query(ctx, subs_catalogue_sql, p, 4, NULL, NULL);
}

/* The pending rows per target (outbox.h: pending). The partial index
 * forward_outbox_pending covers it. */
static const char outbox_pending_sql[] =
    "SELECT coalesce(json_agg(json_build_array(target, n, age) ORDER BY target), '[]')::text"
    " FROM (SELECT target, count(*) AS n,"
    "   greatest(0, round(extract(epoch FROM now() - min(created_at))::numeric, 3)) AS age"
    "   FROM forward_outbox WHERE state = 'pending' GROUP BY target ORDER BY target"
    "   LIMIT 256) p";

static void
outbox_pending(void *ctx, outbox_subs_fn done, void *done_ctx)
{
	struct store_op *op = new_op(OP_SUBS, outbox_pending_sql, 0);

	op->subs_done = done;
	op->ctx = done_ctx;
	op->what = "outbox count";
	store_queue_op(ctx, op);
}

/* The session lease of a viid target with session = shared (outbox.h:
 * session_lease): taken when free, run out or ours. The row is always
 * written (the same values when another daemon holds it) so that the
 * answer names the holder as committed, not as this statement's snapshot
 * saw it; two daemons taking an expired lease at once conflict on the
 * row, and the second, once the first commits, finds it neither expired
 * nor its own. */
#define LEASE_OURS "(l.holder = excluded.holder OR l.expires_at < now())"
static const char lease_take_sql[] =
    "INSERT INTO forward_leases AS l (target, holder, expires_at)"
    " VALUES ($1::text, $2::text, now() + make_interval(secs => $3::int))"
    " ON CONFLICT (target) DO UPDATE SET"
    " holder = CASE WHEN " LEASE_OURS " THEN excluded.holder ELSE l.holder END,"
    " expires_at = CASE WHEN " LEASE_OURS " THEN excluded.expires_at ELSE l.expires_at END,"
    " taken_at = CASE WHEN l.holder <> excluded.holder AND l.expires_at < now() THEN now()"
    "  ELSE l.taken_at END"
    " RETURNING CASE WHEN l.holder = $2::text THEN '1' ELSE '0 ' || l.holder END";
/* Given up: the next daemon to ask takes it at once. */
static const char lease_release_sql[] =
    "UPDATE forward_leases SET expires_at = '-infinity'"
    " WHERE target = $1::text AND holder = $2::text RETURNING '0 '";

static void
session_lease(void *ctx, const char *target, int lease_s, bool release, outbox_subs_fn done,
    void *done_ctx)
{
	struct store *s = ctx;
	struct store_op *op = new_op(OP_SUBS, release ? lease_release_sql : lease_take_sql,
	    release ? 2 : 3);

	op->text[0] = util_strdup(target);
	op->text[1] = util_strdup(s->node);
	if (!release)
		op->text[2] = fmt_ll(lease_s);
	op->subs_done = done;
	op->ctx = done_ctx;
	op->what = "session lease";
	store_queue_op(s, op);
}

void
store_outbox(struct store *s, struct outbox *out)
{
	out->claim = outbox_claim;
	out->settle = outbox_settle;
	out->release = outbox_release;
	out->subs_load = subs_load;
	out->subs_put = subs_put;
	out->subs_end = subs_end;
	out->subs_catalogue = subs_catalogue;
	out->pending = outbox_pending;
	out->session_lease = session_lease;
	out->ctx = s;
}

void
store_set_outbox_hook(struct store *s, void (*fn)(void *ctx, int max_priority, size_t nrows),
    void *ctx)
{
	s->outbox_hook = fn;
	s->outbox_ctx = ctx;
}

void
store_op_result(struct store_op *op, PGresult *r)
{
	if (op->kind == OP_CLAIM)
		take_claim_rows(op, r);
	if (op->kind == OP_SUBS && op->answer == NULL && PQntuples(r) > 0 && PQnfields(r) > 0 &&
	    !PQgetisnull(r, 0, 0))
		op->answer = util_strdup(PQgetvalue(r, 0, 0));
}

void
store_op_done(struct store_op *op, const struct store_txn *t)
{
	if (t->failed && op->kind == OP_SUBS)
		log_error("store", op->what == NULL ? "subscription query failed" :
		    strcmp(op->what, "session lease") == 0 ? "session lease query failed" :
		    "outbox count failed", "sqlstate=%s error=%s", t->sqlstate,
		    store_loggable_error(t->sqlstate, t->error));
	else if (t->failed)
		log_error("store", "outbox query failed", "sqlstate=%s error=%s", t->sqlstate,
		    store_loggable_error(t->sqlstate, t->error));
	if (op->kind == OP_CLAIM && op->claim_done != NULL)
		op->claim_done(op->ctx, t->failed ? NULL : op->rows, t->failed ? 0 : op->nrows,
		    !t->failed);
	if (op->kind == OP_SUBS && op->subs_done != NULL)
		op->subs_done(op->ctx, t->failed ? NULL : op->answer != NULL ? op->answer : "[]",
		    !t->failed);
}

void
store_op_free(struct store_op *op)
{
	if (op == NULL)
		return;
	for (int i = 0; i < 8; i++)
		free(op->text[i]);
	pgarr_free(&op->ids);
	free(op->rows);
	free(op->data);
	free(op->answer);
	free(op);
}
