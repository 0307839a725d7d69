/* store.c — PostgreSQL connection on the libevent loop. */
#include "store.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "schema.h"

#define STORE_RETRY_BASE_MS 500
#define STORE_RETRY_CAP_MS 30000
#define STORE_MAINTAIN_SECONDS 3600	/* partitions ahead, retention */

/* After connecting: schema, then partitions, then ready. */
enum setup_step {
	STEP_NONE,		/* not connected */
	STEP_MIGRATIONS_TABLE,
	STEP_READ_VERSION,	/* in a transaction holding the advisory lock */
	STEP_MIGRATE,		/* ... applies what is missing and commits */
	STEP_ABANDON,		/* ... rolls back: the schema is newer than we are */
	STEP_MAINTAIN,
	STEP_READY,
	STEP_INCOMPATIBLE,
};

struct store {
	struct event_base *base;
	PGconn *conn;
	struct event *io;
	int io_fd;
	short io_flags;
	struct event *retry;	/* reconnect timer */
	struct event *deadline;	/* connect timeout */
	struct backoff backoff;
	char *host, *port, *dbname, *user, *password;
	int connect_timeout;
	int partitions_ahead;
	int retention_days;
	bool connected;
	bool down_logged;	/* the outage was reported at warn */
	enum setup_step step;
	bool query_failed;	/* the running step got an error result */
	int db_version;		/* read in STEP_READ_VERSION */
	bool ready_logged;	/* "ready" said for this connection */
	struct event *maintain;	/* hourly partition maintenance */
};

static void setup_next(struct store *s);

static void io_cb(evutil_socket_t fd, short what, void *arg);

static bool
is_ip_address(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void
watch(struct store *s, short flags)
{
	int fd = s->conn != NULL ? PQsocket(s->conn) : -1;

	if (fd == s->io_fd && flags == s->io_flags && s->io != NULL)
		return;
	if (s->io != NULL) {
		event_free(s->io);
		s->io = NULL;
	}
	s->io_fd = fd;
	s->io_flags = flags;
	if (fd < 0 || flags == 0)
		return;
	s->io = event_new(s->base, fd, flags, io_cb, s);
	if (s->io == NULL || event_add(s->io, NULL) != 0)
		log_error("store", "cannot watch socket", "fd=%d", fd);
}

/* The first line of libpq's message, without the trailing newline. */
static void
conn_error(const PGconn *conn, char *buf, size_t len)
{
	const char *msg = conn != NULL ? PQerrorMessage(conn) : "out of memory";

	snprintf(buf, len, "%s", msg);
	buf[strcspn(buf, "\n")] = '\0';
}

static void
drop_connection(struct store *s)
{
	s->step = STEP_NONE;
	s->ready_logged = false;
	watch(s, 0);
	evtimer_del(s->deadline);
	if (s->conn != NULL) {
		PQfinish(s->conn);
		s->conn = NULL;
	}
	s->connected = false;
}

static void
schedule_retry(struct store *s, const char *why)
{
	char err[256];

	conn_error(s->conn, err, sizeof(err));
	if (why != NULL)
		snprintf(err, sizeof(err), "%s", why);
	drop_connection(s);
	uint32_t ms = backoff_next(&s->backoff, backoff_random());
	if (!s->down_logged) {
		log_warn("store", "database unavailable", "host=%s port=%s error=%s retry_in_ms=%u",
		    s->host, s->port, err, ms);
		s->down_logged = true;
	} else {
		log_debug("store", "database still unavailable", "error=%s retry_in_ms=%u attempt=%u",
		    err, ms, s->backoff.attempt);
	}
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(s->retry, &tv);
}

static void
poll_connect(struct store *s)
{
	PostgresPollingStatusType st = PQconnectPoll(s->conn);

	switch (st) {
	case PGRES_POLLING_READING:
		watch(s, EV_READ | EV_PERSIST);
		return;
	case PGRES_POLLING_WRITING:
		watch(s, EV_WRITE | EV_PERSIST);
		return;
	case PGRES_POLLING_OK:
		evtimer_del(s->deadline);
		if (PQsetnonblocking(s->conn, 1) != 0) {
			schedule_retry(s, "cannot set non-blocking mode");
			return;
		}
		s->connected = true;
		s->down_logged = false;
		backoff_reset(&s->backoff);
		log_info("store", "connected", "host=%s port=%s dbname=%s server_version=%d",
		    s->host, s->port, s->dbname, PQserverVersion(s->conn));
		watch(s, EV_READ | EV_PERSIST);
		s->step = STEP_NONE;
		setup_next(s);
		return;
	case PGRES_POLLING_FAILED:
	default:
		schedule_retry(s, NULL);
		return;
	}
}

/* ---- setup: schema and partitions ------------------------------------ */

/* Sends one query (possibly several statements); its results arrive in
 * take_results(). */
static void
send_query(struct store *s, enum setup_step step, const char *sql)
{
	s->step = step;
	s->query_failed = false;
	if (PQsendQuery(s->conn, sql) == 0) {
		char err[256];
		conn_error(s->conn, err, sizeof(err));
		log_error("store", "cannot send query", "error=%s", err);
		schedule_retry(s, err);
		return;
	}
	int f = PQflush(s->conn);
	if (f < 0) {
		schedule_retry(s, NULL);
		return;
	}
	watch(s, f == 1 ? (EV_READ | EV_WRITE | EV_PERSIST) : (EV_READ | EV_PERSIST));
}

static void
maintain(struct store *s)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "SELECT gridbridge_maintain_partitions(%d, %d)",
	    s->partitions_ahead, s->retention_days);
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
		schedule_retry(s, "out of memory");
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

/* The step that just finished decides what comes next. */
static void
setup_next(struct store *s)
{
	char sql[256];

	switch (s->step) {
	case STEP_NONE:
		send_query(s, STEP_MIGRATIONS_TABLE,
		    "CREATE TABLE IF NOT EXISTS schema_migrations ("
		    " version integer PRIMARY KEY,"
		    " applied_at timestamptz NOT NULL DEFAULT now(),"
		    " description text NOT NULL)");
		break;
	case STEP_MIGRATIONS_TABLE:
		snprintf(sql, sizeof(sql), "BEGIN;SELECT pg_advisory_xact_lock(%lld);"
		    "SELECT coalesce(max(version), 0) FROM schema_migrations",
		    SCHEMA_LOCK_KEY);
		send_query(s, STEP_READ_VERSION, sql);
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
		maintain(s);
		break;
	case STEP_MAINTAIN:
		if (!evtimer_pending(s->maintain, NULL)) {
			struct timeval tv = { .tv_sec = STORE_MAINTAIN_SECONDS, .tv_usec = 0 };
			evtimer_add(s->maintain, &tv);
		}
		if (!s->ready_logged)
			log_info("store", "ready", "schema_version=%d partitions_ahead=%d "
			    "retention_days=%d", s->db_version, s->partitions_ahead, s->retention_days);
		else
			log_debug("store", "partitions maintained", "");
		s->ready_logged = true;
		s->step = STEP_READY;
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
		snprintf(err, sizeof(err), "%s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = '\0';
		const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		log_error("store", "query failed", "step=%d sqlstate=%s error=%s", (int)s->step,
		    code != NULL ? code : "", err);
		s->query_failed = true;
		return;
	}
	if (s->step == STEP_READ_VERSION && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
		s->db_version = atoi(PQgetvalue(r, 0, 0));
	if (s->step == STEP_MAINTAIN && st == PGRES_TUPLES_OK) {
		for (int i = 0; i < PQntuples(r); i++)
			if (!PQgetisnull(r, i, 0) && PQgetvalue(r, i, 0)[0] != '\0')
				log_info("store", "partition dropped by retention", "partition=%s days=%d",
				    PQgetvalue(r, i, 0), s->retention_days);
	}
}

/* Everything the server has answered; a finished query moves setup on. */
static void
take_results(struct store *s)
{
	while (s->conn != NULL && !PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (r == NULL) {
			if (s->step == STEP_READY || s->step == STEP_INCOMPATIBLE ||
			    s->step == STEP_NONE)
				return;
			if (s->query_failed) {
				/* Start over on a fresh connection, after a pause. */
				schedule_retry(s, "setup query failed");
				return;
			}
			setup_next(s);
			if (s->step == STEP_READY || s->step == STEP_INCOMPATIBLE)
				return;
			continue;
		}
		take_result(s, r);
		PQclear(r);
	}
}

static void
maintain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (s->step == STEP_READY)
		maintain(s);
	struct timeval tv = { .tv_sec = STORE_MAINTAIN_SECONDS, .tv_usec = 0 };
	evtimer_add(s->maintain, &tv);
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (!s->connected) {
		poll_connect(s);
		return;
	}
	if ((what & EV_WRITE) && PQflush(s->conn) == 0)
		watch(s, EV_READ | EV_PERSIST);
	if (PQconsumeInput(s->conn) == 0 || PQstatus(s->conn) != CONNECTION_OK) {
		char err[256];
		conn_error(s->conn, err, sizeof(err));
		log_warn("store", "connection lost", "error=%s", err);
		schedule_retry(s, err);
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(s->conn)) != NULL)
		PQfreemem(n);
	take_results(s);
}

/* Server notices go to our log (libpq would print them raw on stderr). */
static void
notice_cb(void *arg, const char *message)
{
	char text[256];

	(void)arg;
	snprintf(text, sizeof(text), "%s", message);
	text[strcspn(text, "\n")] = '\0';
	log_debug("store", "server notice", "text=%s", text);
}

static void
connect_now(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	const char *keys[8], *vals[8];
	int i = 0;

	(void)fd;
	(void)what;
	keys[i] = is_ip_address(s->host) ? "hostaddr" : "host";
	vals[i++] = s->host;
	keys[i] = "port"; vals[i++] = s->port;
	keys[i] = "dbname"; vals[i++] = s->dbname;
	keys[i] = "user"; vals[i++] = s->user;
	if (s->password[0] != '\0') {
		keys[i] = "password";
		vals[i++] = s->password;
	}
	keys[i] = "application_name"; vals[i++] = "gridbridged";
	keys[i] = NULL; vals[i] = NULL;

	s->conn = PQconnectStartParams(keys, vals, 0);
	if (s->conn == NULL || PQstatus(s->conn) == CONNECTION_BAD) {
		schedule_retry(s, NULL);
		return;
	}
	PQsetNoticeProcessor(s->conn, notice_cb, s);
	struct timeval tv = { .tv_sec = s->connect_timeout, .tv_usec = 0 };
	evtimer_add(s->deadline, &tv);
	poll_connect(s);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (!s->connected)
		schedule_retry(s, "connect timeout");
}

struct store *
store_new(struct event_base *base, const struct store_options *o)
{
	struct store *s = calloc(1, sizeof(*s));
	char port[16];

	if (s == NULL)
		return NULL;
	s->base = base;
	s->io_fd = -1;
	s->connect_timeout = o->connect_timeout;
	s->partitions_ahead = o->partitions_ahead;
	s->retention_days = o->retention_days;
	backoff_init(&s->backoff, STORE_RETRY_BASE_MS, STORE_RETRY_CAP_MS);
	snprintf(port, sizeof(port), "%d", o->port);
	s->host = strdup(o->host);
	s->port = strdup(port);
	s->dbname = strdup(o->dbname);
	s->user = strdup(o->user);
	s->password = strdup(o->password != NULL ? o->password : "");
	s->retry = evtimer_new(base, connect_now, s);
	s->deadline = evtimer_new(base, deadline_cb, s);
	s->maintain = evtimer_new(base, maintain_cb, s);
	if (s->host == NULL || s->port == NULL || s->dbname == NULL || s->user == NULL ||
	    s->password == NULL || s->retry == NULL || s->deadline == NULL ||
	    s->maintain == NULL) {
		store_free(s);
		return NULL;
	}
	return s;
}

int
store_start(struct store *s)
{
	struct timeval now = { 0, 0 };

	log_info("store", "connecting", "host=%s port=%s dbname=%s", s->host, s->port,
	    s->dbname);
	return evtimer_add(s->retry, &now) == 0 ? 0 : -1;
}

bool
store_connected(const struct store *s)
{
	return s->connected;
}

bool
store_ready(const struct store *s)
{
	return s->step == STEP_READY;
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	if (s->connected)
		log_info("store", "disconnected", "host=%s port=%s", s->host, s->port);
	if (s->io != NULL)
		event_free(s->io);
	if (s->conn != NULL)
		PQfinish(s->conn);
	if (s->retry != NULL)
		event_free(s->retry);
	if (s->deadline != NULL)
		event_free(s->deadline);
	if (s->maintain != NULL)
		event_free(s->maintain);
	log_debug("store", "stopped", "");
	free(s->host);
	free(s->port);
	free(s->dbname);
	free(s->user);
	if (s->password != NULL)
		memset(s->password, 0, strlen(s->password));
	free(s->password);
	free(s);
}
