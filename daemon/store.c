/* store.c — PostgreSQL connection on the libevent loop, and the queue of
 * transactions in its pipeline (batches and the forwarder's queries). */
#include "store.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backoff.h"
#include "log.h"
#include "metrics.h"
#include "store_batch.h"
#include "store_int.h"
#include "util.h"

/* Reconnects wait up to a second (full jitter): a database back up is found
 * within a second, so a backlog starts draining at once. An attempt costs
 * a refused or timed-out connection; they are not made faster than that. */
#define STORE_RETRY_BASE_MS 250
#define STORE_RETRY_CAP_MS 1000

/* A batch that fails for a reason neither about its data nor about the
 * connection is tried this often, then split like a refused one. */
#define STORE_BATCH_ATTEMPTS 3

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* ---- the connection --------------------------------------------------- */

/* An IP address, or a comma-separated list of them (libpq takes a list
 * for host and hostaddr alike). */
static bool
is_ip_address(const char *s)
{
	unsigned char buf[16];
	char one[64];

	for (;;) {
		size_t n = strcspn(s, ",");
		if (n == 0 || n >= sizeof(one))
			return false;
		memcpy(one, s, n);
		one[n] = '\0';
		if (inet_pton(AF_INET, one, buf) != 1 && inet_pton(AF_INET6, one, buf) != 1)
			return false;
		if (s[n] == '\0')
			return true;
		s += n + 1;
	}
}

/* One host of a list: see store_host_is_local(). */
static bool
one_host_is_local(const char *h, size_t len)
{
	char s[256];
	unsigned char a[16];

	if (len == 0 || len >= sizeof(s))
		return false;
	memcpy(s, h, len);
	s[len] = '\0';
	if (s[0] == '/' || s[0] == '@')
		return true;	/* a Unix socket */
	if (strcasecmp(s, "localhost") == 0 || strcasecmp(s, "localhost.") == 0)
		return true;
	if (inet_pton(AF_INET, s, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, s, a) == 1) {
		static const unsigned char loop6[16] = { [15] = 1 };
		static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
		return memcmp(a, loop6, 16) == 0 ||
		    (memcmp(a, mapped, 12) == 0 && a[12] == 127);
	}
	return false;
}

bool
store_host_is_local(const char *host)
{
	const char *h = host;

	for (;;) {
		size_t n = strcspn(h, ",");
		if (!one_host_is_local(h, n))
			return false;
		if (h[n] == '\0')
			return true;
		h += n + 1;
	}
}
void
store_conn_param(struct conn_params *p, const char *key, const char *val)
{
	if (val == NULL || val[0] == '\0' || p->n == CONN_PARAMS_MAX)
		return;
	p->keys[p->n] = key;
	p->vals[p->n++] = val;
	p->keys[p->n] = NULL;
	p->vals[p->n] = NULL;
}

/* An IP address is passed as hostaddr, so no DNS lookup blocks, and as
 * host, which sslmode verify-full checks the server's certificate against.
 * `host` may list several servers (a primary and its standbys, by IP
 * address, on one port): libpq tries them in turn and keeps the first that
 * is not a standby (target_session_attrs), so after a failover the daemon
 * reconnects to the promoted standby. */
void
store_conn_params_init(struct conn_params *p, const char *host, const char *port,
    const char *dbname, const char *user, const char *password, const char *sslmode,
    const char *sslrootcert, const char *sslcert, const char *sslkey)
{
	p->n = 0;
	p->keys[0] = p->vals[0] = NULL;
	if (is_ip_address(host))
		store_conn_param(p, "hostaddr", host);
	store_conn_param(p, "host", host);
	store_conn_param(p, "port", port);
	store_conn_param(p, "dbname", dbname);
	store_conn_param(p, "user", user);
	store_conn_param(p, "password", password);
	store_conn_param(p, "sslmode", sslmode);
	store_conn_param(p, "sslrootcert", sslrootcert);
	store_conn_param(p, "sslcert", sslcert);
	store_conn_param(p, "sslkey", sslkey);
	/* primary, not read-write: the status connection sets
	 * default_transaction_read_only, which read-write would refuse */
	store_conn_param(p, "target_session_attrs", "primary");
}

void
store_watch(struct event_base *base, PGconn *conn, short flags, struct event **io, int *io_fd,
    short *io_flags, event_callback_fn cb, void *arg, const char *mod)
{
	int fd = conn != NULL ? PQsocket(conn) : -1;

	if (fd == *io_fd && flags == *io_flags && *io != NULL)
		return;
	if (*io != NULL) {
		event_free(*io);
		*io = NULL;
	}
	*io_fd = fd;
	*io_flags = flags;
	if (fd < 0 || flags == 0)
		return;
	*io = event_new(base, fd, flags, cb, arg);
	if (*io == NULL || event_add(*io, NULL) != 0)
		log_error(mod, "cannot watch socket", "fd=%d", fd);
}

static void
quiet_notice(void *arg, const PGresult *r)
{
	(void)arg;
	(void)r;
}

int
store_connect_start(PGconn **conn, const struct conn_params *p, PQnoticeReceiver notice,
    void *arg, struct event *deadline, int timeout_s)
{
	*conn = PQconnectStartParams(p->keys, p->vals, 0);
	if (*conn == NULL || PQstatus(*conn) == CONNECTION_BAD)
		return -1;
	PQsetNoticeReceiver(*conn, notice != NULL ? notice : quiet_notice, arg);
	struct timeval tv = { .tv_sec = timeout_s, .tv_usec = 0 };
	evtimer_add(deadline, &tv);
	return 0;
}

int
store_poll_connect(PGconn *conn, struct event *deadline, short *flags, const char **why)
{
	*flags = 0;
	*why = NULL;
	switch (PQconnectPoll(conn)) {
	case PGRES_POLLING_READING:
		*flags = EV_READ | EV_PERSIST;
		return 0;
	case PGRES_POLLING_WRITING:
		*flags = EV_WRITE | EV_PERSIST;
		return 0;
	case PGRES_POLLING_OK:
		evtimer_del(deadline);
		if (PQsetnonblocking(conn, 1) != 0) {
			*why = "cannot set non-blocking mode";
			return -1;
		}
		*flags = EV_READ | EV_PERSIST;
		return 1;
	case PGRES_POLLING_FAILED:
	default:
		return -1;
	}
}

static void
watch(struct store *s, short flags)
{
	store_watch(s->base, s->conn, flags, &s->io, &s->io_fd, &s->io_flags, io_cb, s, "store");
}

void
store_conn_error(const PGconn *conn, char *buf, size_t len)
{
	const char *msg = conn != NULL ? PQerrorMessage(conn) : "out of memory";

	snprintf(buf, len, "%s", msg);
	buf[strcspn(buf, "\n")] = '\0';
}

/* The classes of SQLSTATE whose primary message is logged. These speak of
 * the connection, the server, the schema or a constraint by its name, never
 * of a value: 08 connection, 23 integrity ("duplicate key value violates
 * unique constraint ..."; the row is in DETAIL, which is never read), 25
 * transaction state, 28 authorization, 3D database, 40 rollback, 42
 * statement and privileges (our statements are constants, their values go
 * apart as parameters), 53 resources, 54 program limits ("index row size
 * ... exceeds maximum"), 55 object state, 57 operator intervention, 58
 * system. Any other class is logged by its SQLSTATE alone: 22 quotes the
 * value at fault (invalid input syntax for type bigint: "<the value>"), a
 * trigger or function raises any text it likes (P0), and a class not
 * listed here is not known to be safe. A message without a SQLSTATE is
 * libpq's own, about the connection. The whole message stays in the
 * quarantine reason (db_rejected:...), in the database with the record. */
static const char *const loggable_classes[] = { "08", "23", "25", "28", "3D", "40", "42",
	"53", "54", "55", "57", "58" };

const char *
store_loggable_error(const char *sqlstate, const char *message)
{
	if (sqlstate == NULL || sqlstate[0] == '\0')
		return message;		/* libpq's own, about the connection */
	if (strlen(sqlstate) == 5)
		for (size_t i = 0; i < sizeof(loggable_classes) / sizeof(loggable_classes[0]); i++)
			if (strncmp(sqlstate, loggable_classes[i], 2) == 0)
				return message;
	return "(not logged: it may quote data)";
}

void
store_drop_connection(struct store *s)
{
	s->step = STEP_NONE;
	s->sent = 0;		/* everything queued is sent again */
	watch(s, 0);
	evtimer_del(s->deadline);
	evtimer_del(s->answer);
	if (s->conn != NULL) {
		PQfinish(s->conn);
		s->conn = NULL;
	}
	s->connected = false;
}

void
store_schedule_retry(struct store *s, const char *why)
{
	char err[256];

	store_conn_error(s->conn, err, sizeof(err));
	if (why != NULL)
		snprintf(err, sizeof(err), "%s", why);
	store_drop_connection(s);
	uint32_t ms = backoff_next(&s->backoff, backoff_random());
	if (!s->down_logged) {
		log_warn("store", "database unavailable", "host=%s port=%s error=%s retry_in_ms=%u",
		    s->host, s->port, err, ms);
		s->down_logged = true;
		if (!s->outage) {
			s->outage = true;
			s->outage_started_ms = util_mono_ms();
		}
	} else {
		log_debug("store", "database still unavailable", "error=%s retry_in_ms=%u attempt=%u",
		    err, ms, s->backoff.attempt);
	}
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(s->retry, &tv);
	if (!s->announced && s->sink.unavailable != NULL)
		s->sink.unavailable(s->sink.ctx);
}

/* Not the database being down (a batch or a setup query failed): no
 * outage is reported. */
void
store_reconnect_quietly(struct store *s, const char *why)
{
	store_drop_connection(s);
	uint32_t ms = backoff_next(&s->backoff, backoff_random());
	log_debug("store", "reconnecting", "reason=%s retry_in_ms=%u", why, ms);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(s->retry, &tv);
}

static void
poll_connect(struct store *s)
{
	short flags;
	const char *why;
	int made = store_poll_connect(s->conn, s->deadline, &flags, &why);

	if (made < 0) {
		store_schedule_retry(s, why);
		return;
	}
	if (made == 0) {
		watch(s, flags);
		return;
	}
	s->connected = true;
	if (s->connections++ > 0)
		metrics.db_reconnects++;
	s->down_logged = false;
	backoff_reset(&s->backoff);
	/* server: which of the hosts listed, after a failover the promoted
	 * standby */
	log_info("store", "connected", "host=%s port=%s dbname=%s server=%s server_version=%d",
	    s->host, s->port, s->dbname, PQhost(s->conn) != NULL ? PQhost(s->conn) : "",
	    PQserverVersion(s->conn));
	watch(s, flags);
	s->step = STEP_NONE;
	store_setup_next(s);
}

/* Whether a query that was sent still waits for (part of) its answer. */
static bool
awaiting_answer(const struct store *s)
{
	if (s->conn == NULL || !s->connected)
		return false;
	if (s->step == STEP_READY)
		return s->sent > 0;
	return PQtransactionStatus(s->conn) == PQTRANS_ACTIVE;
}

/* The answer timer runs from the oldest unanswered send and starts again
 * on every answer that arrives: it measures a server that stopped, not one
 * that is slow with a long queue. */
static void
arm_answer(struct store *s)
{
	struct timeval tv = { .tv_sec = s->answer_timeout, .tv_usec = 0 };
	evtimer_add(s->answer, &tv);
}

void
store_flush(struct store *s)
{
	int f = PQflush(s->conn);
	if (f < 0) {
		store_schedule_retry(s, NULL);
		return;
	}
	watch(s, f == 1 ? (EV_READ | EV_WRITE | EV_PERSIST) : (EV_READ | EV_PERSIST));
	if (!evtimer_pending(s->answer, NULL))
		arm_answer(s);
}

/* ---- the transaction queue -------------------------------------------- */

static struct store_txn *
txn_new(enum store_txn_kind kind)
{
	struct store_txn *t = util_calloc(1, sizeof(*t));

	t->kind = kind;
	return t;
}

static void
txn_free(struct store_txn *t)
{
	switch (t->kind) {
	case TXN_BATCH:
		store_batch_free(t->u.batch);
		break;
	case TXN_OUTBOX:
		store_op_free(t->u.op);
		break;
	}
	free(t);
}

/* A batch's transaction: events and their notification, quarantine,
 * reports, derived states, checkpoint, sync. */
static int
send_batch(struct store *s, struct store_txn *t)
{
	struct store_stmts q;

	t->sent_ms = util_mono_ms();
	store_batch_statements(t->u.batch, t->checkpoint, s->node, s->journal_id, &q);
	for (size_t i = 0; i < q.n; i++) {
		const struct store_stmt *st = &q.stmt[i];
		int k = s->prepared ? store_batch_sql_index(st->sql) : -1;
		char name[32];
		snprintf(name, sizeof(name), "gb_batch_%d", k);
		if (k >= 0 ? PQsendQueryPrepared(s->conn, name, st->nparams, st->vals,
		    st->binary ? st->lens : NULL, st->binary ? st->fmts : NULL, 0) == 0 :
		    PQsendQueryParams(s->conn, st->sql, st->nparams, NULL, st->vals,
		    st->binary ? st->lens : NULL, st->binary ? st->fmts : NULL, 0) == 0)
			return -1;
	}
	return PQpipelineSync(s->conn) == 0 ? -1 : 0;
}

static int
send_txn(struct store *s, struct store_txn *t)
{
	t->failed = false;
	switch (t->kind) {
	case TXN_BATCH:
		return send_batch(s, t);
	case TXN_OUTBOX:
		return store_op_send(s, t->u.op);
	}
	return -1;
}

void
store_send_more(struct store *s)
{
	if (s->step != STEP_READY || s->conn == NULL)
		return;
	if (s->maintain_due && s->sent == 0) {
		s->maintain_due = false;
		if (PQexitPipelineMode(s->conn) == 1) {
			store_maintain(s);
			return;
		}
	}
	struct store_txn *t = s->queue;
	for (size_t i = 0; i < s->sent && t != NULL; i++)
		t = t->next;
	bool any = false;
	while (t != NULL && s->sent < (size_t)s->max_inflight) {
		if (send_txn(s, t) != 0) {
			char err[256];
			store_conn_error(s->conn, err, sizeof(err));
			log_warn("store", "cannot send batch", "error=%s", err);
			store_schedule_retry(s, err);
			return;
		}
		s->sent++;
		any = true;
		t = t->next;
	}
	if (any)
		store_flush(s);
}

void
store_queue_op(struct store *s, struct store_op *op)
{
	struct store_txn *t = txn_new(TXN_OUTBOX);
	struct store_txn **at = &s->queue;
	size_t i = 0;

	t->u.op = op;
	/* Ahead of the batches not yet sent, after earlier queries: the
	 * forwarder does not wait for ingest's backlog. */
	while (*at != NULL && (i < s->sent || (*at)->kind == TXN_OUTBOX)) {
		at = &(*at)->next;
		i++;
	}
	t->next = *at;
	*at = t;
	if (t->next == NULL)
		s->queue_tail = t;
	s->queued++;
	store_send_more(s);
}

/* What a failed batch's SQLSTATE says. */
enum failure_kind {
	FAIL_DATA,	/* about its rows: split it, quarantine the offender */
	FAIL_SERVER,	/* about the server, the connection or the schema: try again */
	FAIL_OTHER,	/* neither: tried STORE_BATCH_ATTEMPTS times, then split */
};

static enum failure_kind
classify(const char *sqlstate)
{
	/* 22 data exception, 23 integrity constraint, 54 program limit
	 * (an index entry over ~2,700 bytes). */
	static const char *const data[] = { "22", "23", "54" };
	/* 08 connection, 25 transaction state, 28 authorization, 3D
	 * database, 40 rollback (serialization, deadlock), 42 statement
	 * (privileges, missing tables: never a row's fault), 53 resources
	 * (disk full), 55 object state (locks), 57 operator intervention
	 * (shutdown, cancel, statement timeout), 58 system (I/O). */
	static const char *const server[] = { "08", "25", "28", "3D", "40", "42", "53", "55",
		"57", "58" };

	for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++)
		if (strncmp(sqlstate, data[i], 2) == 0)
			return FAIL_DATA;
	for (size_t i = 0; i < sizeof(server) / sizeof(server[0]); i++)
		if (strncmp(sqlstate, server[i], 2) == 0)
			return FAIL_SERVER;
	return FAIL_OTHER;
}

/* Takes the head transaction off the queue. */
static void
dequeue(struct store *s)
{
	if (s->queue->kind == TXN_BATCH)
		s->batches--;
	s->queue = s->queue->next;
	if (s->queue == NULL)
		s->queue_tail = NULL;
	s->queued--;
	s->sent--;
}

/* The batch's sync arrived: it committed, or its transaction failed.
 * Returns false when it stays queued (the connection is started again). */
static bool
batch_done(struct store *s, struct store_txn *t)
{
	const struct store_batch *b = t->u.batch;
	enum failure_kind kind = t->failed ? classify(t->sqlstate) : FAIL_DATA;

	if (t->failed && kind == FAIL_OTHER && ++t->failures >= STORE_BATCH_ATTEMPTS)
		kind = FAIL_DATA;	/* it keeps failing: find the row */
	if (t->failed && kind != FAIL_DATA) {
		/* Not (yet) the data's fault: keep it and start again. */
		log_warn("store", "batch failed, retrying", "sqlstate=%s error=%s first_seq=%llu "
		    "last_seq=%llu attempt=%d", t->sqlstate,
		    store_loggable_error(t->sqlstate, t->error),
		    (unsigned long long)t->first_seq, (unsigned long long)t->last_seq,
		    t->failures + 1);
		store_reconnect_quietly(s, "batch failed");
		return false;
	}
	dequeue(s);
	if (t->failed) {
		log_warn("store", "batch refused by the database", "sqlstate=%s error=%s "
		    "first_seq=%llu last_seq=%llu rows=%zu", t->sqlstate,
		    store_loggable_error(t->sqlstate, t->error),
		    (unsigned long long)t->first_seq, (unsigned long long)t->last_seq,
		    store_batch_rows(b));
		if (s->sink.rejected != NULL)
			s->sink.rejected(s->sink.ctx, t->first_seq, t->last_seq, t->sqlstate, t->error);
	} else {
		log_debug("store", "batch committed", "events=%zu quarantined=%zu first_seq=%llu "
		    "last_seq=%llu checkpoint=%llu", b->nevents, b->nquar,
		    (unsigned long long)t->first_seq, (unsigned long long)t->last_seq,
		    (unsigned long long)t->checkpoint);
		metrics_tally_commit(&b->tally);
		if (t->first_seq <= t->last_seq || store_batch_rows(b) > 0) {
			metrics_observe(&metrics.batch_seconds,
			    (double)(util_mono_ms() - t->sent_ms) / 1000.0);
			metrics_observe(&metrics.batch_rows, (double)store_batch_rows(b));
		}
		if (s->sink.committed != NULL)
			s->sink.committed(s->sink.ctx, t->first_seq, t->last_seq, t->checkpoint);
		if (b->nout > 0 && s->outbox_hook != NULL)
			s->outbox_hook(s->outbox_ctx, b->out_max_priority, b->nout);
	}
	return true;
}

/* The head transaction's sync arrived. */
static void
txn_done(struct store *s)
{
	struct store_txn *t = s->queue;

	switch (t->kind) {
	case TXN_BATCH:
		if (!batch_done(s, t))
			return;
		break;
	case TXN_OUTBOX:
		dequeue(s);
		store_op_done(t->u.op, t);
		break;
	}
	txn_free(t);
}

void
store_take_txn_results(struct store *s)
{
	while (s->conn != NULL && s->step == STEP_READY && s->sent > 0 && !PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (r == NULL)
			continue;	/* between the results of two statements */
		struct store_txn *t = s->queue;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			txn_done(s);
			continue;
		}
		if (st == PGRES_TUPLES_OK && t != NULL && t->kind == TXN_OUTBOX)
			store_op_result(t->u.op, r);
		if (st == PGRES_FATAL_ERROR && t != NULL && !t->failed) {
			const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			t->failed = true;
			snprintf(t->sqlstate, sizeof(t->sqlstate), "%s", code != NULL ? code : "");
			const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			snprintf(t->error, sizeof(t->error), "%s",
			    msg != NULL ? msg : PQresultErrorMessage(r));
			t->error[strcspn(t->error, "\n")] = '\0';
		}
		PQclear(r);
	}
	store_send_more(s);
}

void
store_submit(struct store *s, struct store_batch *b, uint64_t first_seq, uint64_t last_seq,
    uint64_t checkpoint)
{
	struct store_txn *t = txn_new(TXN_BATCH);

	t->u.batch = b;
	t->first_seq = first_seq;
	t->last_seq = last_seq;
	t->checkpoint = checkpoint;
	if (s->queue_tail != NULL)
		s->queue_tail->next = t;
	else
		s->queue = t;
	s->queue_tail = t;
	s->queued++;
	s->batches++;
	store_send_more(s);
}

/* Batches only: the forwarder's queries finish without telling the
 * pipeline, which would wait for room that came (reading paused with
 * nothing of its own in flight, until the next message). */
size_t
store_backlog(const struct store *s)
{
	return s->batches;
}

/* ---- events and the store's life -------------------------------------- */

static void
maintain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	/* Run between batches: pipeline mode is left for it. */
	s->maintain_due = true;
	if (s->step == STEP_READY)
		store_send_more(s);
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
		store_conn_error(s->conn, err, sizeof(err));
		log_info("store", "connection lost", "error=%s", err);
		store_schedule_retry(s, err);
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(s->conn)) != NULL)
		PQfreemem(n);
	if (s->step == STEP_READY)
		store_take_txn_results(s);
	else
		store_setup_results(s);
	if (awaiting_answer(s))
		arm_answer(s);
	else if (s->conn != NULL)
		evtimer_del(s->answer);
}

void
store_notice(void *arg, const PGresult *notice)
{
	const char *code = PQresultErrorField(notice, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
	char text[256];

	(void)arg;
	snprintf(text, sizeof(text), "%s", msg != NULL ? msg : "");
	text[strcspn(text, "\n")] = '\0';
	log_debug("store", "server notice", "sqlstate=%s text=%s", code != NULL ? code : "",
	    store_loggable_error(code, text));
}

static void
connect_now(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	struct conn_params p;

	(void)fd;
	(void)what;
	store_conn_params_init(&p, s->host, s->port, s->dbname, s->user, s->password, s->sslmode,
	    s->sslrootcert, s->sslcert, s->sslkey);
	store_conn_param(&p, "application_name", "gridbridged");
	/* Keepalive probes make the server end the session of a daemon whose
	 * host died (or of a connection we gave up on) within about a
	 * minute, releasing its locks (see take_locks). */
	store_conn_param(&p, "options", "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
	    "-c tcp_keepalives_count=3");

	s->prepared = false;
	if (store_connect_start(&s->conn, &p, store_notice, s, s->deadline,
	    s->connect_timeout) != 0) {
		store_schedule_retry(s, NULL);
		return;
	}
	poll_connect(s);
}

static void
answer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (!awaiting_answer(s))
		return;
	log_warn("store", "database not answering", "host=%s port=%s answer_timeout_s=%d "
	    "in_flight=%zu", s->host, s->port, s->answer_timeout,
	    s->step == STEP_READY ? s->sent : (size_t)1);
	metrics.db_answer_timeouts++;
	store_schedule_retry(s, "no answer within answer_timeout");
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (!s->connected)
		store_schedule_retry(s, "connect timeout");
}

struct store *
store_new(struct event_base *base, const struct store_options *o,
    const struct store_sink *sink)
{
	struct store *s = calloc(1, sizeof(*s));
	char port[16];

	if (s == NULL)
		return NULL;
	s->base = base;
	s->io_fd = -1;
	s->connect_timeout = o->connect_timeout;
	s->answer_timeout = o->answer_timeout > 0 ? o->answer_timeout : 60;
	s->partitions_ahead = o->partitions_ahead;
	s->retention_days = o->retention_days;
	s->max_inflight = o->max_inflight > 0 ? o->max_inflight : 1;
	if (sink != NULL)
		s->sink = *sink;
	s->node = strdup(o->node != NULL ? o->node : "gridbridge");
	s->journal_id = strdup(o->journal_id != NULL ? o->journal_id :
	    "00000000-0000-0000-0000-000000000000");
	if (s->journal_id == NULL || store_uuid_parse(s->journal_id, s->journal_uuid) != 0) {
		free(s->journal_id);
		s->journal_id = NULL;
	}
	s->max_reports = o->max_reports;
	s->claims = backoff_random();
	backoff_init(&s->backoff, STORE_RETRY_BASE_MS, STORE_RETRY_CAP_MS);
	snprintf(port, sizeof(port), "%d", o->port);
	s->host = strdup(o->host);
	s->port = strdup(port);
	s->dbname = strdup(o->dbname);
	s->user = strdup(o->user);
	s->password = strdup(o->password != NULL ? o->password : "");
	s->sslmode = strdup(o->sslmode != NULL ? o->sslmode : "");
	s->sslrootcert = strdup(o->sslrootcert != NULL ? o->sslrootcert : "");
	s->sslcert = strdup(o->sslcert != NULL ? o->sslcert : "");
	s->sslkey = strdup(o->sslkey != NULL ? o->sslkey : "");
	s->retry = evtimer_new(base, connect_now, s);
	s->deadline = evtimer_new(base, deadline_cb, s);
	s->answer = evtimer_new(base, answer_cb, s);
	s->maintain = evtimer_new(base, maintain_cb, s);
	if (s->host == NULL || s->port == NULL || s->dbname == NULL || s->user == NULL ||
	    s->password == NULL || s->retry == NULL || s->deadline == NULL || s->answer == NULL ||
	    s->maintain == NULL || s->node == NULL || s->journal_id == NULL ||
	    s->sslmode == NULL || s->sslrootcert == NULL || s->sslcert == NULL ||
	    s->sslkey == NULL) {
		store_free(s);
		return NULL;
	}
	/* Only verify-full checks that the server is the one named. */
	if (!store_host_is_local(s->host) && strcmp(s->sslmode, "verify-full") != 0)
		log_warn("store", "database server not verified",
		    "host=%s sslmode=%s section=store key=sslmode want=verify-full", s->host,
		    s->sslmode[0] != '\0' ? s->sslmode : "prefer");
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
	if (s->answer != NULL)
		event_free(s->answer);
	if (s->maintain != NULL)
		event_free(s->maintain);
	while (s->queue != NULL) {
		struct store_txn *t = s->queue;
		s->queue = t->next;
		txn_free(t);
	}
	free(s->node);
	free(s->journal_id);
	log_debug("store", "stopped", "");
	free(s->host);
	free(s->port);
	free(s->dbname);
	free(s->user);
	free(s->sslmode);
	free(s->sslrootcert);
	free(s->sslcert);
	free(s->sslkey);
	if (s->password != NULL)
		memset(s->password, 0, strlen(s->password));
	free(s->password);
	free(s);
}
