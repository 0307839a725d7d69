/* store_status.c — see store_status.h. */
#include "store_status.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "store_int.h"
#include "util.h"

#define US 1000000LL

/* Every column named; nothing else of a row leaves the database. The
 * counts come from event_counts (schema version 11: per UTC minute of
 * event time, a few dozen rows a minute), not from events: a day's
 * partition is millions of rows by evening. The day starts at a minute
 * ($1); the hour is the 60 whole minutes before the one $2 is in (which
 * is not over yet: a chart would show it falling). The alarm lists use
 * the partial index events_alarms (schema version 8). */
const char store_status_sql[] =
    "WITH day AS ("
    "  SELECT device_class, event_type, sum(n)::bigint AS n FROM event_counts"
    "  WHERE minute >= $1::timestamptz AND minute < $1::timestamptz + interval '1 day'"
    "  GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 256),"
    " now_minute AS MATERIALIZED (SELECT date_trunc('minute', $2::timestamptz AT TIME ZONE 'UTC')"
    "  AT TIME ZONE 'UTC' - interval '1 hour' AS t0),"
    " hour AS ("
    "  SELECT device_class, (extract(epoch FROM minute - t0) / 60)::int AS minute,"
    "    sum(n)::bigint AS n"
    "  FROM event_counts, now_minute WHERE minute >= t0 AND minute < t0 + interval '1 hour'"
    "  GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 1024),"
    " alarms AS ("
    "  SELECT id, event_time, community_id, device_id, device_class, severity,"
    "    lower(replace(coalesce(attrs->'cameraAlarm'->>'kind', ''), 'ALARM_KIND_', '')) AS kind"
    "  FROM events WHERE event_type = 'camera_alarm'"
    "    AND event_time <= $2::timestamptz + interval '10 minutes'"
    "  ORDER BY event_time DESC LIMIT 10),"
    " welfare AS ("
    "  SELECT id, event_time, community_id, device_id, device_class, severity,"
    "    lower(replace(coalesce(attrs->'welfare'->>'kind', ''), 'WELFARE_KIND_', '')) AS kind"
    "  FROM events WHERE event_type = 'welfare_alert'"
    "    AND event_time <= $2::timestamptz + interval '10 minutes'"
    "  ORDER BY event_time DESC LIMIT 10),"
    " overdue AS ("
    "  SELECT community_id, building, door, category, opened_at, deadline"
    "  FROM resident_reports WHERE handled_at IS NULL AND closed_at IS NULL"
    "    AND deadline IS NOT NULL AND deadline < $2::timestamptz"
    "  ORDER BY deadline LIMIT 20)"
    " SELECT json_build_object("
    "  'day_start_ms', (extract(epoch FROM $1::timestamptz) * 1000)::bigint,"
    "  'today', coalesce((SELECT json_agg(json_build_object('device_class', device_class,"
    "    'event_type', event_type, 'count', n)) FROM day), '[]'),"
    "  'per_minute', coalesce((SELECT json_agg(json_build_object('device_class', device_class,"
    "    'minute', minute, 'count', n)) FROM hour), '[]'),"
    "  'alarms', coalesce((SELECT json_agg(json_build_object('id', id,"
    "    'time_ms', (extract(epoch FROM event_time) * 1000)::bigint, 'community', community_id,"
    "    'device', device_id, 'device_class', device_class, 'kind', kind, 'severity', severity)"
    "    ORDER BY event_time DESC) FROM alarms), '[]'),"
    "  'welfare', coalesce((SELECT json_agg(json_build_object('id', id,"
    "    'time_ms', (extract(epoch FROM event_time) * 1000)::bigint, 'community', community_id,"
    "    'device', device_id, 'device_class', device_class, 'kind', kind, 'severity', severity)"
    "    ORDER BY event_time DESC) FROM welfare), '[]'),"
    "  'overdue_reports_total', (SELECT count(*) FROM resident_reports"
    "    WHERE handled_at IS NULL AND closed_at IS NULL AND deadline IS NOT NULL"
    "    AND deadline < $2::timestamptz),"
    "  'overdue_reports', coalesce((SELECT json_agg(json_build_object('community', community_id,"
    "    'building', building, 'door', door, 'category', category,"
    "    'opened_ms', (extract(epoch FROM opened_at) * 1000)::bigint,"
    "    'deadline_ms', (extract(epoch FROM deadline) * 1000)::bigint) ORDER BY deadline)"
    "    FROM overdue), '[]'))::text";

struct store_status {
	struct event_base *base;
	struct store_status_options o;
	char *host, *port, *dbname, *user, *password;
	char *sslmode, *sslrootcert, *sslcert, *sslkey;
	PGconn *conn;
	bool connected;
	bool busy;			/* a query sent, its answer not all read */
	bool preparing;			/* what is under way is the statement's PREPARE */
	bool prepared;			/* STATUS_STMT prepared on this connection */
	bool failing;
	bool down_logged;
	struct event *io;
	int io_fd;
	short io_flags;
	struct event *tick;		/* every refresh_s */
	struct event *deadline;		/* connect and answer timeout */
	char *json;
	int64_t as_of_us;
	int64_t sent_us;
	char *answer;			/* of the query under way */
};

static void io_cb(evutil_socket_t fd, short what, void *arg);

int64_t
store_status_day_start(int64_t now_us, int tz_offset_s)
{
	const int64_t day_us = 86400 * US;
	int64_t local_us = now_us + (int64_t)tz_offset_s * US;
	int64_t day = local_us / day_us;

	if (local_us < 0 && local_us % day_us != 0)
		day--;		/* floor, not towards zero */
	return day * day_us - (int64_t)tz_offset_s * US;
}

static void
watch(struct store_status *s, short flags)
{
	store_watch(s->base, s->conn, flags, &s->io, &s->io_fd, &s->io_flags, io_cb, s, "status");
}

static void
drop(struct store_status *s, const char *why)
{
	char err[256];

	if (why == NULL) {
		store_conn_error(s->conn, err, sizeof(err));
		why = err;
	}
	if (!s->down_logged)
		log_info("status", "status figures unavailable", "host=%s port=%s error=%s",
		    s->host, s->port, why);
	s->down_logged = true;
	s->failing = true;
	watch(s, 0);
	evtimer_del(s->deadline);
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	s->connected = false;
	s->busy = false;
	s->preparing = s->prepared = false;
	free(s->answer);
	s->answer = NULL;
}

/* `us` as a timestamp PostgreSQL reads (UTC). */
static void
timestamp_text(char *out, size_t cap, int64_t us)
{
	time_t t = (time_t)(us / US);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)(us % US));
}

/* The statement is prepared once per connection: planned anew at every
 * refresh it cost 38 ms of the server's CPU with 190 daily partitions
 * (the default retention), against 0.04 ms for its cached plan. */
#define STATUS_STMT "gb_status"

static void
send_query(struct store_status *s)
{
	char t1[64], t2[64];
	int64_t now = util_wall_us();
	const char *vals[2] = { t1, t2 };

	timestamp_text(t1, sizeof(t1), store_status_day_start(now, s->o.tz_offset_s));
	timestamp_text(t2, sizeof(t2), now);
	s->preparing = !s->prepared;
	if (s->preparing ? PQsendPrepare(s->conn, STATUS_STMT, store_status_sql, 2, NULL) == 0 :
	    PQsendQueryPrepared(s->conn, STATUS_STMT, 2, vals, NULL, NULL, 0) == 0) {
		drop(s, NULL);
		return;
	}
	s->busy = true;
	s->sent_us = now;
	int f = PQflush(s->conn);
	if (f < 0) {
		drop(s, NULL);
		return;
	}
	watch(s, f == 1 ? (EV_READ | EV_WRITE | EV_PERSIST) : (EV_READ | EV_PERSIST));
	struct timeval tv = { .tv_sec = s->o.refresh_s * 3 + 10, .tv_usec = 0 };
	evtimer_add(s->deadline, &tv);
}

static void
take_results(struct store_status *s)
{
	while (s->busy && !PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (r == NULL) {
			/* the query is over */
			s->busy = false;
			evtimer_del(s->deadline);
			if (s->preparing) {
				s->preparing = false;
				if (s->prepared)
					send_query(s);
				else
					s->failing = true;
				return;
			}
			if (s->answer != NULL) {
				free(s->json);
				s->json = s->answer;
				s->answer = NULL;
				s->as_of_us = s->sent_us;
				s->failing = false;
				if (s->down_logged)
					log_info("status", "status figures available again", "");
				s->down_logged = false;
				if (s->o.refreshed != NULL)
					s->o.refreshed(s->o.ctx);
			} else {
				s->failing = true;
			}
			return;
		}
		ExecStatusType st = PQresultStatus(r);
		if (s->preparing && st == PGRES_COMMAND_OK) {
			s->prepared = true;
		} else if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1 &&
		    !PQgetisnull(r, 0, 0)) {
			size_t len = (size_t)PQgetlength(r, 0, 0);
			free(s->answer);
			s->answer = NULL;
			if (len < STORE_STATUS_MAX_BYTES)
				s->answer = util_strdup(PQgetvalue(r, 0, 0));
			else
				log_warn("status", "status figures too large, left out", "bytes=%zu", len);
		} else if (st == PGRES_FATAL_ERROR) {
			const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			if (!s->down_logged)
				log_warn("status", "status query failed", "sqlstate=%s error=%s",
				    code != NULL ? code : "",
				    store_loggable_error(code, msg != NULL ? msg : ""));
			s->down_logged = true;
			free(s->answer);
			s->answer = NULL;
		}
		PQclear(r);
	}
}

static void
poll_connect(struct store_status *s)
{
	short flags;
	const char *why;
	int made = store_poll_connect(s->conn, s->deadline, &flags, &why);

	if (made < 0) {
		drop(s, why);
		return;
	}
	if (made == 0) {
		watch(s, flags);
		return;
	}
	s->connected = true;
	watch(s, flags);
	send_query(s);
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_status *s = arg;

	(void)fd;
	if (!s->connected) {
		poll_connect(s);
		return;
	}
	if ((what & EV_WRITE) && PQflush(s->conn) == 0)
		watch(s, EV_READ | EV_PERSIST);
	if (PQconsumeInput(s->conn) == 0 || PQstatus(s->conn) != CONNECTION_OK) {
		drop(s, NULL);
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(s->conn)) != NULL)
		PQfreemem(n);
	take_results(s);
}

static void
connect_now(struct store_status *s)
{
	struct conn_params p;

	store_conn_params_init(&p, s->host, s->port, s->dbname, s->user, s->password,
	    s->sslmode, s->sslrootcert, s->sslcert, s->sslkey);
	store_conn_param(&p, "application_name", "gridbridged-status");
	/* Read only, in UTC, never longer than a refresh or two. */
	char opts[256];
	snprintf(opts, sizeof(opts), "-c default_transaction_read_only=on -c TimeZone=UTC "
	    "-c statement_timeout=%d -c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
	    "-c tcp_keepalives_count=3", (s->o.refresh_s * 2 + 5) * 1000);
	store_conn_param(&p, "options", opts);
	if (store_connect_start(&s->conn, &p, NULL, s, s->deadline,
	    s->o.connect_timeout > 0 ? s->o.connect_timeout : 10) != 0) {
		drop(s, NULL);
		return;
	}
	poll_connect(s);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_status *s = arg;

	(void)fd;
	(void)what;
	if (s->o.store != NULL && !store_ready(s->o.store)) {
		s->failing = true;	/* what we have is getting old */
		return;
	}
	if (s->conn == NULL)
		connect_now(s);
	else if (s->connected && !s->busy)
		send_query(s);
	/* else: connecting, or the last query still under way */
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drop(arg, "no answer in time");
}

struct store_status *
store_status_new(struct event_base *base, const struct store_status_options *o)
{
	struct store_status *s = util_calloc(1, sizeof(*s));
	char port[16];

	s->base = base;
	s->o = *o;
	if (s->o.refresh_s < 1)
		s->o.refresh_s = 1;
	s->io_fd = -1;
	snprintf(port, sizeof(port), "%d", o->port);
	s->host = util_strdup(o->host != NULL ? o->host : "");
	s->port = util_strdup(port);
	s->dbname = util_strdup(o->dbname != NULL ? o->dbname : "");
	s->user = util_strdup(o->user != NULL ? o->user : "");
	s->password = util_strdup(o->password != NULL ? o->password : "");
	s->sslmode = util_strdup(o->sslmode != NULL ? o->sslmode : "");
	s->sslrootcert = util_strdup(o->sslrootcert != NULL ? o->sslrootcert : "");
	s->sslcert = util_strdup(o->sslcert != NULL ? o->sslcert : "");
	s->sslkey = util_strdup(o->sslkey != NULL ? o->sslkey : "");
	s->o.host = s->o.dbname = s->o.user = s->o.password = NULL;
	s->o.sslmode = s->o.sslrootcert = s->o.sslcert = s->o.sslkey = NULL;
	s->tick = event_new(base, -1, EV_PERSIST, tick_cb, s);
	s->deadline = evtimer_new(base, deadline_cb, s);
	if (s->tick == NULL || s->deadline == NULL) {
		store_status_free(s);
		return NULL;
	}
	struct timeval tv = { .tv_sec = s->o.refresh_s, .tv_usec = 0 };
	event_add(s->tick, &tv);
	event_active(s->tick, EV_TIMEOUT, 0);
	return s;
}

void
store_status_free(struct store_status *s)
{
	if (s == NULL)
		return;
	if (s->io != NULL)
		event_free(s->io);
	if (s->conn != NULL)
		PQfinish(s->conn);
	if (s->tick != NULL)
		event_free(s->tick);
	if (s->deadline != NULL)
		event_free(s->deadline);
	free(s->json);
	free(s->answer);
	free(s->host);
	free(s->port);
	free(s->dbname);
	free(s->user);
	if (s->password != NULL)
		memset(s->password, 0, strlen(s->password));
	free(s->password);
	free(s->sslmode);
	free(s->sslrootcert);
	free(s->sslcert);
	free(s->sslkey);
	free(s);
}

const char *
store_status_json(const struct store_status *s, int64_t *as_of_us)
{
	if (s == NULL || s->json == NULL)
		return NULL;
	if (as_of_us != NULL)
		*as_of_us = s->as_of_us;
	return s->json;
}

bool
store_status_failing(const struct store_status *s)
{
	return s == NULL || s->failing || s->json == NULL;
}
