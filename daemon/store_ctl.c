/* store_ctl.c — gridbridgectl's connection and `outbox`: blocking SQL on
 * a connection of its own, for the operator's tool (not the daemon's
 * event loop). `devices` and `reports` are in store_ctl_derived.c. */
#include "store_ctl.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

/* ---- the connection ---- */

PGconn *
store_ctl_connect(const struct store_options *o, FILE *err)
{
	struct conn_params p;
	char port[16], timeout[16];

	snprintf(port, sizeof(port), "%d", o->port);
	snprintf(timeout, sizeof(timeout), "%d", o->connect_timeout > 0 ? o->connect_timeout : 10);
	store_conn_params_init(&p, o->host, port, o->dbname, o->user, o->password, o->sslmode,
	    o->sslrootcert, o->sslcert, o->sslkey);
	store_conn_param(&p, "connect_timeout", timeout);
	store_conn_param(&p, "application_name", "gridbridgectl");
	/* A server gone without a word (its host down, the network cut) is
	 * noticed within about a minute, not the system's two hours: `tail`
	 * waits on the connection for as long as it runs. */
	store_conn_param(&p, "keepalives_idle", "30");
	store_conn_param(&p, "keepalives_interval", "10");
	store_conn_param(&p, "keepalives_count", "3");
	PGconn *c = PQconnectdbParams(p.keys, p.vals, 0);
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		char e[256];
		store_conn_error(c, e, sizeof(e));
		fprintf(err, "gridbridgectl: cannot connect to the database: %s\n", e);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeReceiver(c, store_notice, NULL);
	return c;
}

void
store_ctl_query_error(FILE *err, const char *message)
{
	char e[512];

	snprintf(e, sizeof(e), "%s", message);
	e[strcspn(e, "\n")] = '\0';
	fprintf(err, "gridbridgectl: query failed: %s\n", e);
}

PGresult *
store_ctl_exec(PGconn *c, const char *sql, int n, const char *const *vals, FILE *err)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		store_ctl_query_error(err, r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	return r;
}

/* ---- outbox ---- */

static int
ctl_stat(PGconn *c, FILE *out, FILE *err)
{
	PGresult *r = store_ctl_exec(c,
	    "SELECT target, priority,"
	    " count(*) FILTER (WHERE state = 'pending'),"
	    " count(*) FILTER (WHERE state = 'sent'),"
	    " count(*) FILTER (WHERE state = 'failed'),"
	    " coalesce(round(extract(epoch FROM now() - min(created_at)"
	    "   FILTER (WHERE state = 'pending'))::numeric, 1)::text, '-')"
	    " FROM forward_outbox GROUP BY target, priority ORDER BY target, priority DESC",
	    0, NULL, err);
	if (r == NULL)
		return 1;
	fprintf(out, "%-16s %8s %10s %10s %10s %16s\n", "target", "priority", "pending", "sent",
	    "failed", "oldest_pending_s");
	for (int i = 0; i < PQntuples(r); i++)
		fprintf(out, "%-16s %8s %10s %10s %10s %16s\n", PQgetvalue(r, i, 0),
		    PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
		    PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
	PQclear(r);
	return 0;
}

static int
ctl_retry(PGconn *c, const char *target, FILE *out, FILE *err)
{
	const char *vals[1] = { target };
	PGresult *r = store_ctl_exec(c,
	    "UPDATE forward_outbox SET state = 'pending', next_attempt_at = now(), claimed_by = NULL"
	    " WHERE state = 'failed' AND ($1::text IS NULL OR target = $1)", 1, vals, err);
	if (r == NULL)
		return 1;
	fprintf(out, "requeued %s rows\n", PQcmdTuples(r));
	PQclear(r);
	return 0;
}

static int
ctl_show(PGconn *c, const char *id, FILE *out, FILE *err)
{
	const char *vals[1] = { id };
	PGresult *r = store_ctl_exec(c,
	    "SELECT o.event_id, o.target, o.priority, o.state, o.attempts,"
	    " coalesce(o.last_status::text, ''), coalesce(o.last_error, ''), o.created_at,"
	    " coalesce(o.sent_at::text, ''), o.next_attempt_at, coalesce(o.claimed_by, ''),"
	    " o.event_time, coalesce(e.device_class || ' ' || e.event_type || ' ' || e.severity,"
	    "   '(event no longer stored)')"
	    " FROM forward_outbox o LEFT JOIN events e"
	    "   ON e.id = o.event_id AND e.event_time = o.event_time"
	    " WHERE o.event_id = $1::uuid ORDER BY o.target", 1, vals, err);
	if (r == NULL)
		return 1;
	static const char *const names[] = { "event_id", "target", "priority", "state",
		"attempts", "last_status", "last_error", "created_at", "sent_at",
		"next_attempt_at", "claimed_by", "event_time", "event" };
	int n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		if (i > 0)
			fputc('\n', out);
		for (int j = 0; j < PQnfields(r) && j < 13; j++)
			fprintf(out, "%s: %s\n", names[j], PQgetvalue(r, i, j));
	}
	PQclear(r);
	if (n == 0) {
		fprintf(err, "gridbridgectl: no outbox rows for event %s\n", id);
		return 1;
	}
	return 0;
}

int
store_ctl_outbox(const struct store_options *o, const char *cmd, const char *arg, FILE *out,
    FILE *err)
{
	PGconn *c = store_ctl_connect(o, err);
	int rc;

	if (c == NULL)
		return 1;
	if (strcmp(cmd, "stat") == 0)
		rc = ctl_stat(c, out, err);
	else if (strcmp(cmd, "retry") == 0)
		rc = ctl_retry(c, arg, out, err);
	else
		rc = ctl_show(c, arg, out, err);
	PQfinish(c);
	return rc;
}
