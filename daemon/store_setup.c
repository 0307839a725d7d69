/* store_setup.c — after connecting: the schema brought up to date
 * (schema.c), this daemon's locks, partitions and retention, the
 * checkpoint and the repeated-report states; then pipeline mode. */
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "schema.h"
#include "store_batch.h"
#include "store_int.h"
#include "util.h"

#define STORE_LOCK_ATTEMPTS 5		/* a lock held by another session */

/* Sends one query (possibly several statements); its results arrive in
 * store_setup_results(). */
static void
send_query(struct store *s, enum setup_step step, const char *sql)
{
	s->step = step;
	s->query_failed = false;
	if (PQsendQuery(s->conn, sql) == 0) {
		char err[256];
		store_conn_error(s->conn, err, sizeof(err));
		log_error("store", "cannot send query", "error=%s", err);
		store_schedule_retry(s, err);
		return;
	}
	store_flush(s);
}

/* Partitions and retention, by one daemon at a time: two creating the
 * same partition at once would have one fail, and each moves rows out of
 * the DEFAULT partition. A daemon that finds another at it skips this
 * round (the other does the work; its own next round is an hour later).
 * The statements run in one implicit transaction, which holds the lock.
 * The status page's counts (event_counts) are kept three days, whatever
 * the retention: two deleting them at once is harmless. */
void
store_maintain(struct store *s)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	    "WITH l AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(%lld) AS ok)"
	    " SELECT gridbridge_maintain_partitions(%d, %d) FROM l WHERE l.ok;"
	    "WITH l AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(%lld) AS ok)"
	    " SELECT gridbridge_maintain_outbox(%d) FROM l WHERE l.ok;"
	    "DELETE FROM event_counts WHERE minute < now() - interval '3 days'",
	    SCHEMA_MAINTAIN_LOCK_KEY, s->partitions_ahead, s->retention_days,
	    SCHEMA_MAINTAIN_LOCK_KEY, s->retention_days);
	send_query(s, STEP_MAINTAIN, sql);
}

static void
migrate(struct store *s)
{
	size_t n, len = 0;
	const struct schema_migration *m = schema_migrations(&n);
	char *sql;

	for (size_t i = 0; i < n; i++)
		if (m[i].version > s->db_version)
			len += strlen(m[i].sql) + strlen(m[i].description) + 128;
	sql = malloc(len + 16);
	if (sql == NULL) {
		store_schedule_retry(s, "out of memory");
		return;
	}
	sql[0] = '\0';
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (m[i].version <= s->db_version)
			continue;
		log_info("store", "applying schema migration", "version=%d description=%s",
		    m[i].version, m[i].description);
		o += (size_t)snprintf(sql + o, len + 16 - o,
		    "%s;INSERT INTO schema_migrations (version, description) VALUES (%d, '%s');",
		    m[i].sql, m[i].version, m[i].description);
	}
	snprintf(sql + o, len + 16 - o, "COMMIT");
	send_query(s, STEP_MIGRATE, sql);
	free(sql);
}

/* This daemon's node name and journal are its own: session advisory
 * locks, held as long as the connection. */
static void
take_locks(struct store *s)
{
	char *node = PQescapeLiteral(s->conn, s->node, strlen(s->node));
	size_t len = 1024 + (node != NULL ? strlen(node) : 0);
	char *sql = malloc(len);

	if (node == NULL || sql == NULL) {
		PQfreemem(node);
		free(sql);
		store_reconnect_quietly(s, "out of memory");
		return;
	}
	snprintf(sql, len,
	    "SELECT pg_try_advisory_lock(hashtextextended('" SCHEMA_NODE_LOCK "' || %s, 0)),"
	    " pg_try_advisory_lock(hashtextextended('" SCHEMA_JOURNAL_LOCK "%s', 0))",
	    node, s->journal_id);
	PQfreemem(node);
	s->lock_node_ok = s->lock_journal_ok = false;
	send_query(s, STEP_LOCK, sql);
	free(sql);
}

/* Another session holds a lock: another daemon runs with our node name or
 * our journal, or a session of ours that the server has not seen end yet
 * (a connection we gave up on; a daemon of ours whose host died). Having
 * held the locks on an earlier connection, this process waits for the
 * server to end that session (its keepalive, about a minute); at start it
 * tries a few times, then stops: two writers of one checkpoint lose data. */
static void
lock_refused(struct store *s)
{
	if (s->locked_before || ++s->lock_attempts < STORE_LOCK_ATTEMPTS) {
		if (!s->lock_wait_logged)
			log_warn("store", "lock held by another session, waiting", "node=%s "
			    "journal_id=%s", s->node, s->journal_id);
		s->lock_wait_logged = true;
		store_reconnect_quietly(s, "lock held");
		return;
	}
	if (!s->lock_node_ok)
		log_error("store", "another gridbridged runs with this node name, not starting",
		    "node=%s key=\"[mqtt] client_id\" hint=%s", s->node,
		    "give each daemon its own [mqtt] client_id");
	else
		log_error("store", "another gridbridged uses this journal, not starting",
		    "journal_id=%s hint=%s", s->journal_id,
		    "a copied state directory: give this daemon an empty [daemon] state_dir");
	store_drop_connection(s);
	if (s->sink.fatal != NULL)
		s->sink.fatal(s->sink.ctx, !s->lock_node_ok ? "node name in use" : "journal in use");
}

static int
hex_bytes(const char *h, uint8_t *out, size_t n)
{
	if (strlen(h) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* The last repeated-report states, for the pipeline (before ready). */
static void
take_reports(struct store *s, PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		struct store_report rep;
		uint8_t key[16], digest[16], id[16];
		if (hex_bytes(PQgetvalue(r, i, 0), key, 16) != 0 ||
		    hex_bytes(PQgetvalue(r, i, 1), digest, 16) != 0 ||
		    store_uuid_parse(PQgetvalue(r, i, 2), id) != 0)
			continue;
		rep.key = key;
		rep.digest = digest;
		rep.event_id = id;
		rep.event_time_us = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		rep.last_us = strtoll(PQgetvalue(r, i, 4), NULL, 10);
		if (s->sink.report != NULL)
			s->sink.report(s->sink.ctx, &rep);
	}
}

/* The derived state (derive.h), once: the devices (oldest first), the
 * households, the reports still open or done within the last 30 days (a
 * late duplicate of a done report's opening must not open it again). */
#define US_OF(x) "(extract(epoch FROM " x ") * 1000000)::int8"
const char store_derived_sql[] =
    "SELECT (SELECT coalesce(json_agg(json_build_object('community_id', community_id,"
    "  'device_id', device_id, 'device_class', device_class, 'route', route,"
    "  'vendor', vendor, 'expected', expected, 'first_seen_us', " US_OF("first_seen") ","
    "  'last_seen_us', " US_OF("last_seen") ", 'state', state,"
    "  'state_since_us', " US_OF("state_since") ", 'state_source', state_source,"
    "  'pending_state', pending_state, 'pending_since_us', " US_OF("pending_since") ","
    "  'pending_source', pending_source, 'battery_percent', battery_percent,"
    "  'link_quality', link_quality, 'created_us', " US_OF("created_at") ")"
    "  ORDER BY created_at, community_id, device_id), '[]')"
    "  FROM devices)::text,"
    " (SELECT coalesce(json_agg(json_build_object('household', household,"
    "  'last_activity_us', " US_OF("last_activity") ","
    "  'window_start_us', " US_OF("window_start") ", 'alerts', alerts,"
    "  'alert_window_us', " US_OF("alert_window_start") ","
    "  'sensor_offline', sensor_offline, 'night_start_us', " US_OF("night_start") ","
    "  'night_openings', night_openings, 'night_alerted', night_alerted)), '[]')"
    "  FROM welfare_state)::text,"
    " (SELECT coalesce(json_agg(json_build_object('community_id', community_id,"
    "  'report_id', report_id, 'device_id', device_id, 'building', building, 'door', door,"
    "  'category', category,"
    "  'opened_us', " US_OF("opened_at") ", 'deadline_us', " US_OF("deadline") ","
    "  'handled_us', " US_OF("handled_at") ", 'closed_us', " US_OF("closed_at") ","
    "  'overdue_us', " US_OF("overdue_at") ")), '[]')"
    "  FROM resident_reports WHERE (handled_at IS NULL AND closed_at IS NULL)"
    "   OR greatest(handled_at, closed_at) > now() - interval '30 days')::text";
#undef US_OF

static void become_ready(struct store *s);

/* The batch statements, prepared in one round trip (SQL PREPARE: the
 * parameters' types come from their casts, as for unnamed statements). */
static void
prepare_batches(struct store *s)
{
	const char *const *sqls;
	size_t n = store_batch_sqls(&sqls), len = 1;

	for (size_t i = 0; i < n; i++)
		len += strlen(sqls[i]) + 48;
	char *q = util_malloc(len), *p = q;
	for (size_t i = 0; i < n; i++)
		p += snprintf(p, len - (size_t)(p - q), "PREPARE gb_batch_%zu AS %s;", i, sqls[i]);
	send_query(s, STEP_PREPARE, q);
	free(q);
}

static void
load_derived(struct store *s)
{
	if (s->sink.derived == NULL) {
		become_ready(s);
		return;
	}
	send_query(s, STEP_DERIVED, store_derived_sql);
}

static void
take_derived(struct store *s, PGresult *r)
{
	if (PQntuples(r) != 1 || PQnfields(r) != 3)
		return;
	s->sink.derived(s->sink.ctx, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
	    PQgetvalue(r, 0, 2));
}

/* Setup is done: batches from now on. */
static void
become_ready(struct store *s)
{
	if (!s->prepared) {
		prepare_batches(s);
		return;
	}
	if (PQenterPipelineMode(s->conn) != 1) {
		store_schedule_retry(s, "cannot enter pipeline mode");
		return;
	}
	s->step = STEP_READY;
	if (s->outage) {
		log_info("store", "database available again", "outage_ms=%lld",
		    (long long)(util_mono_ms() - s->outage_started_ms));
		s->outage = false;
	}
	if (!s->announced) {
		log_info("store", "ready", "schema_version=%d checkpoint=%llu partitions_ahead=%d "
		    "retention_days=%d", s->db_version, (unsigned long long)s->db_checkpoint,
		    s->partitions_ahead, s->retention_days);
		s->announced = true;
		if (s->sink.ready != NULL)
			s->sink.ready(s->sink.ctx, s->db_checkpoint);
	} else if (s->sink.back != NULL) {
		s->sink.back(s->sink.ctx);
	}
	store_send_more(s);
}

/* The step that just finished decides what comes next. */
void
store_setup_next(struct store *s)
{
	char sql[256];

	switch (s->step) {
	case STEP_NONE:
		/* Under the lock already: two daemons creating the table at
		 * once on an empty database would have one of them fail
		 * (IF NOT EXISTS does not stop a concurrent CREATE). */
		snprintf(sql, sizeof(sql), "BEGIN;SELECT pg_advisory_xact_lock(%lld);"
		    "CREATE TABLE IF NOT EXISTS schema_migrations ("
		    " version integer PRIMARY KEY,"
		    " applied_at timestamptz NOT NULL DEFAULT now(),"
		    " description text NOT NULL)", SCHEMA_LOCK_KEY);
		send_query(s, STEP_MIGRATIONS_TABLE, sql);
		break;
	case STEP_MIGRATIONS_TABLE:
		send_query(s, STEP_READ_VERSION,
		    "SELECT coalesce(max(version), 0) FROM schema_migrations");
		break;
	case STEP_READ_VERSION:
		if (s->db_version > schema_version()) {
			log_error("store", "database schema is newer than this gridbridged, not writing",
			    "db_version=%d known_version=%d", s->db_version, schema_version());
			send_query(s, STEP_ABANDON, "ROLLBACK");
		} else if (s->db_version < schema_version()) {
			migrate(s);
		} else {
			send_query(s, STEP_MIGRATE, "COMMIT");
		}
		break;
	case STEP_ABANDON:
		s->step = STEP_INCOMPATIBLE;
		break;
	case STEP_MIGRATE:
		if (s->db_version != schema_version())
			log_info("store", "schema migrated", "from=%d to=%d", s->db_version,
			    schema_version());
		s->db_version = schema_version();
		take_locks(s);
		break;
	case STEP_LOCK:
		if (s->lock_node_ok && s->lock_journal_ok) {
			s->lock_attempts = 0;
			s->locked_before = true;
			s->lock_wait_logged = false;
			store_maintain(s);
		} else {
			lock_refused(s);
		}
		break;
	case STEP_MAINTAIN: {
		if (!evtimer_pending(s->maintain, NULL)) {
			struct timeval tv = { .tv_sec = STORE_MAINTAIN_SECONDS, .tv_usec = 0 };
			evtimer_add(s->maintain, &tv);
		}
		char q[512];
		snprintf(q, sizeof(q), "SELECT journal_seq FROM ingest_checkpoint"
		    " WHERE journal_id = '%s'", s->journal_id);
		s->db_checkpoint = 0;
		send_query(s, STEP_CHECKPOINT, q);
		break;
	}
	case STEP_CHECKPOINT:
		if (s->announced) {
			become_ready(s);
			break;
		}
		if (s->max_reports == 0) {
			load_derived(s);
			break;
		}
		snprintf(sql, sizeof(sql), "SELECT encode(report_key, 'hex'), encode(digest, 'hex'),"
		    " event_id, (extract(epoch FROM event_time) * 1000000)::int8,"
		    " (extract(epoch FROM last_at) * 1000000)::int8"
		    " FROM report_state ORDER BY last_at DESC LIMIT %zu", s->max_reports);
		send_query(s, STEP_REPORTS, sql);
		break;
	case STEP_REPORTS:
		load_derived(s);
		break;
	case STEP_DERIVED:
		become_ready(s);
		break;
	case STEP_PREPARE:
		s->prepared = true;
		become_ready(s);
		break;
	case STEP_READY:
	case STEP_INCOMPATIBLE:
		break;
	}
}

static void
take_result(struct store *s, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char err[512];
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		snprintf(err, sizeof(err), "%s", msg != NULL ? msg : PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		log_error("store", "query failed", "step=%d sqlstate=%s error=%s", (int)s->step,
		    code != NULL ? code : "", store_loggable_error(code, err));
		s->query_failed = true;
		return;
	}
	if (s->step == STEP_READ_VERSION && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
		s->db_version = atoi(PQgetvalue(r, 0, 0));
	if (s->step == STEP_CHECKPOINT && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
		s->db_checkpoint = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	if (s->step == STEP_LOCK && st == PGRES_TUPLES_OK && PQnfields(r) == 2 &&
	    PQntuples(r) == 1) {
		s->lock_node_ok = PQgetvalue(r, 0, 0)[0] == 't';
		s->lock_journal_ok = PQgetvalue(r, 0, 1)[0] == 't';
	}
	if (s->step == STEP_REPORTS && st == PGRES_TUPLES_OK && PQnfields(r) == 5)
		take_reports(s, r);
	if (s->step == STEP_DERIVED && st == PGRES_TUPLES_OK && s->sink.derived != NULL)
		take_derived(s, r);
	if (s->step == STEP_MAINTAIN && st == PGRES_TUPLES_OK && PQnfields(r) == 1 &&
	    strcmp(PQfname(r, 0), "gridbridge_maintain_outbox") == 0) {
		if (PQntuples(r) == 1 && atoll(PQgetvalue(r, 0, 0)) > 0)
			log_info("store", "outbox rows deleted by retention", "rows=%s days=%d",
			    PQgetvalue(r, 0, 0), s->retention_days);
		return;
	}
	if (s->step == STEP_MAINTAIN && st == PGRES_TUPLES_OK) {
		for (int i = 0; i < PQntuples(r); i++)
			if (!PQgetisnull(r, i, 0) && PQgetvalue(r, i, 0)[0] != '\0')
				log_info("store", "partition dropped by retention", "partition=%s days=%d",
				    PQgetvalue(r, i, 0), s->retention_days);
	}
}

/* Everything the server has answered; a finished query moves setup on. */
void
store_setup_results(struct store *s)
{
	while (s->conn != NULL && !PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (r == NULL) {
			if (s->step == STEP_READY || s->step == STEP_INCOMPATIBLE ||
			    s->step == STEP_NONE)
				return;
			if (s->query_failed) {
				/* Start over on a fresh connection, after a pause. */
				store_reconnect_quietly(s, "setup query failed");
				return;
			}
			store_setup_next(s);
			if (s->step == STEP_READY) {
				store_take_txn_results(s);
				return;
			}
			if (s->step == STEP_INCOMPATIBLE || s->conn == NULL)
				return;
			continue;
		}
		take_result(s, r);
		PQclear(r);
	}
}

