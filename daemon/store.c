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

#define STORE_RETRY_BASE_MS 500
#define STORE_RETRY_CAP_MS 30000

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
	bool connected;
	bool down_logged;	/* the outage was reported at warn */
};

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
		/* From now on a readable socket means a notice or a lost
		 * connection. */
		watch(s, EV_READ | EV_PERSIST);
		return;
	case PGRES_POLLING_FAILED:
	default:
		schedule_retry(s, NULL);
		return;
	}
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
	backoff_init(&s->backoff, STORE_RETRY_BASE_MS, STORE_RETRY_CAP_MS);
	snprintf(port, sizeof(port), "%d", o->port);
	s->host = strdup(o->host);
	s->port = strdup(port);
	s->dbname = strdup(o->dbname);
	s->user = strdup(o->user);
	s->password = strdup(o->password != NULL ? o->password : "");
	s->retry = evtimer_new(base, connect_now, s);
	s->deadline = evtimer_new(base, deadline_cb, s);
	if (s->host == NULL || s->port == NULL || s->dbname == NULL || s->user == NULL ||
	    s->password == NULL || s->retry == NULL || s->deadline == NULL) {
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
