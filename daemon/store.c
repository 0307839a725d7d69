/* store.c — PostgreSQL connection on the libevent loop. */
#include "store.h"

#include <arpa/inet.h>
#include <endian.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backoff.h"
#include "log.h"
#include "schema.h"

#define STORE_RETRY_BASE_MS 500
#define STORE_RETRY_CAP_MS 5000	/* a database back up is found within 5 s */
#define STORE_MAINTAIN_SECONDS 3600	/* partitions ahead, retention */
#define STORE_LOCK_ATTEMPTS 5		/* a lock held by another session */

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
	STEP_READY,		/* pipeline mode: batches */
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
	/* Batches: `queue` in submission order; the first `sent` of them are
	 * in the current connection's pipeline. */
	struct store_batch *queue, *queue_tail;
	size_t queued, sent;
	bool outage;		/* an outage is going on (for its duration) */
	int64_t outage_started_ms;
	void (*outbox_hook)(void *ctx);
	uint32_t claims;		/* names the next claim's lease */
	void *outbox_ctx;
};

#define EV_COLS 17
#define Q_COLS 8
#define O_COLS 4
#define R_COLS 5
/* A batch that fails for a reason neither about its data nor about the
 * connection is tried this often, then split like a refused one. */
#define STORE_BATCH_ATTEMPTS 3

/* A binary array parameter under construction (PostgreSQL's array_recv
 * format: ndim, has_null, element oid, then per dimension size and lower
 * bound, then length-prefixed elements). */
struct pgarr {
	uint8_t *buf;
	size_t len, cap;
	uint32_t n;
	uint32_t oid;
	bool has_null;
};

/* A query of the forwarder (claim, settle, release) queued with the
 * batches: its own transaction in the pipeline. */
struct store_op {
	enum { OP_CLAIM, OP_SETTLE, OP_RELEASE } kind;
	const char *sql;
	int nparams;
	bool resend;			/* sent before, on a connection since lost */
	char *text[6];			/* text parameters (NULL: SQL NULL) */
	struct pgarr ids;		/* $2 of settle, $7 of claim: uuid[] */
	outbox_claim_fn claim_done;
	void *ctx;
	struct outbox_row *rows;
	size_t nrows;
	uint8_t *data;			/* the rows' records */
};

struct store_batch {
	struct store_batch *next;
	struct store_op *op;		/* non-NULL: not a batch but an op */
	struct pgarr ev[EV_COLS];
	struct pgarr q[Q_COLS];
	struct pgarr o[O_COLS];
	struct pgarr r[R_COLS];
	size_t nevents, nquar, nout, nreports, bytes;
	uint64_t first_seq, last_seq, checkpoint;
	char *node;
	uint8_t journal_uuid[16];
	int failures;			/* attempts that failed, not for the data */
	bool failed;
	char sqlstate[6];
	char error[256];
};

static void setup_next(struct store *s);
static void send_more(struct store *s);
static void maintain(struct store *s);

static void io_cb(evutil_socket_t fd, short what, void *arg);

static bool
is_ip_address(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
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

/* libpq connection parameters, empty values left out. */
#define CONN_PARAMS_MAX 16
struct conn_params {
	const char *keys[CONN_PARAMS_MAX + 1], *vals[CONN_PARAMS_MAX + 1];
	int n;
};

static void
param(struct conn_params *p, const char *key, const char *val)
{
	if (val == NULL || val[0] == '\0' || p->n == CONN_PARAMS_MAX)
		return;
	p->keys[p->n] = key;
	p->vals[p->n++] = val;
	p->keys[p->n] = NULL;
	p->vals[p->n] = NULL;
}

/* Where and how to connect, for the daemon and for gridbridgectl. An IP
 * address is passed as hostaddr, so no DNS lookup blocks, and as host, which
 * sslmode verify-full checks the server's certificate against. */
static void
conn_params_init(struct conn_params *p, const char *host, const char *port,
    const char *dbname, const char *user, const char *password, const char *sslmode,
    const char *sslrootcert, const char *sslcert, const char *sslkey)
{
	p->n = 0;
	p->keys[0] = p->vals[0] = NULL;
	if (is_ip_address(host))
		param(p, "hostaddr", host);
	param(p, "host", host);
	param(p, "port", port);
	param(p, "dbname", dbname);
	param(p, "user", user);
	param(p, "password", password);
	param(p, "sslmode", sslmode);
	param(p, "sslrootcert", sslrootcert);
	param(p, "sslcert", sslcert);
	param(p, "sslkey", sslkey);
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
	s->sent = 0;		/* everything queued is sent again */
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
		if (!s->outage) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			s->outage = true;
			s->outage_started_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		}
	} else {
		log_debug("store", "database still unavailable", "error=%s retry_in_ms=%u attempt=%u",
		    err, ms, s->backoff.attempt);
	}
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(s->retry, &tv);
}

/* Starts again on a fresh connection after a pause, for a reason that is
 * not the database being down (a batch or a setup query failed; logged
 * where it happened): no outage is reported. */
static void
reconnect_quietly(struct store *s, const char *why)
{
	drop_connection(s);
	uint32_t ms = backoff_next(&s->backoff, backoff_random());
	log_debug("store", "reconnecting", "reason=%s retry_in_ms=%u", why, ms);
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

/* ---- batches ------------------------------------------------------------ */

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

static const uint32_t ev_oids[EV_COLS] = {
	OID_UUID, OID_TIMESTAMPTZ, OID_TIMESTAMPTZ, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,
	OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_BOOL, OID_TEXT,
	OID_BYTEA, OID_JSONB,
};
static const uint32_t q_oids[Q_COLS] = {
	OID_TEXT, OID_UUID, OID_INT8, OID_TIMESTAMPTZ, OID_TEXT, OID_BYTEA, OID_TEXT, OID_TEXT,
};

static const uint32_t o_oids[O_COLS] = {
	OID_UUID, OID_TIMESTAMPTZ, OID_TEXT, OID_INT2,
};

static const uint32_t r_oids[R_COLS] = {
	OID_BYTEA, OID_BYTEA, OID_UUID, OID_TIMESTAMPTZ, OID_TIMESTAMPTZ,
};

/* Events and their outbox rows, in one statement: an id new to event_ids
 * makes one row in events (the first of its copies in the batch) and the
 * outbox rows of that copy; an id seen before makes nothing, whatever its
 * event_time (a message with no device time, delivered again, has another
 * one). */
static const char insert_events[] =
    "WITH r AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[],"
    "  $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
    "  $11::text[], $12::text[], $13::int8[], $14::bool[], $15::text[], $16::bytea[],"
    "  $17::jsonb[]) WITH ORDINALITY AS r(id, event_time, received_at, community_id,"
    "  device_id, device_class, event_type, severity, vendor, route, source_topic,"
    "  journal_node, journal_seq, clock_skewed, plate, record, attrs, ord)),"
    " n AS (INSERT INTO event_ids (id, received_at) SELECT id, received_at FROM r"
    "  ON CONFLICT DO NOTHING RETURNING id),"
    " e AS (INSERT INTO events (id, event_time, received_at, community_id, device_id,"
    "  device_class, event_type, severity, vendor, route, source_topic, journal_node,"
    "  journal_seq, clock_skewed, plate, record, attrs)"
    "  SELECT DISTINCT ON (r.id) r.id, r.event_time, r.received_at, r.community_id,"
    "  r.device_id, r.device_class, r.event_type, r.severity, r.vendor, r.route,"
    "  r.source_topic, r.journal_node, r.journal_seq, r.clock_skewed, r.plate, r.record,"
    "  r.attrs FROM r JOIN n ON n.id = r.id ORDER BY r.id, r.ord"
    "  ON CONFLICT DO NOTHING)"
    " INSERT INTO forward_outbox (event_id, event_time, target, priority)"
    " SELECT DISTINCT ON (o.event_id, o.target) o.event_id, o.event_time, o.target,"
    "  o.priority FROM unnest($18::uuid[], $19::timestamptz[], $20::text[], $21::int2[])"
    "  WITH ORDINALITY AS o(event_id, event_time, target, priority, ord)"
    "  JOIN n ON n.id = o.event_id ORDER BY o.event_id, o.target, o.ord"
    " ON CONFLICT DO NOTHING";
static const char insert_quarantine[] =
    "INSERT INTO quarantine (journal_node, journal_id, journal_seq, received_at, topic, raw,"
    " reason, route)"
    " SELECT * FROM unnest($1::text[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::text[],"
    " $6::bytea[], $7::text[], $8::text[])"
    " ON CONFLICT DO NOTHING";
/* The states are those as of the batch's checkpoint; a batch committed
 * late never takes one back. */
static const char upsert_reports[] =
    "INSERT INTO report_state (report_key, digest, event_id, event_time, last_at)"
    " SELECT DISTINCT ON (k) k, d, i, t, l FROM unnest($1::bytea[], $2::bytea[],"
    "  $3::uuid[], $4::timestamptz[], $5::timestamptz[]) WITH ORDINALITY AS u(k, d, i, t, l, ord)"
    "  ORDER BY k, ord DESC"
    " ON CONFLICT (report_key) DO UPDATE SET digest = excluded.digest,"
    " event_id = excluded.event_id, event_time = excluded.event_time,"
    " last_at = excluded.last_at WHERE report_state.last_at <= excluded.last_at";
static const char upsert_checkpoint[] =
    "INSERT INTO ingest_checkpoint (journal_node, journal_id, journal_seq)"
    " VALUES ($1, $2::uuid, $3)"
    " ON CONFLICT (journal_id) DO UPDATE SET"
    " journal_seq = greatest(ingest_checkpoint.journal_seq, excluded.journal_seq),"
    " journal_node = excluded.journal_node, updated_at = now()";

#define ARR_HEADER 20

static void
arr_reserve(struct pgarr *a, size_t more)
{
	if (a->len + more <= a->cap)
		return;
	size_t cap = a->cap ? a->cap : 256;
	while (cap < a->len + more)
		cap *= 2;
	uint8_t *b = realloc(a->buf, cap);
	if (b == NULL)
		abort();
	a->buf = b;
	a->cap = cap;
}

static void
arr_init(struct pgarr *a, uint32_t oid)
{
	memset(a, 0, sizeof(*a));
	a->oid = oid;
	arr_reserve(a, ARR_HEADER);
	a->len = ARR_HEADER;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

/* One element; NULL data means SQL NULL. */
static void
arr_add(struct pgarr *a, const void *data, size_t len)
{
	arr_reserve(a, 4 + len);
	if (data == NULL) {
		put_be32(a->buf + a->len, 0xffffffffu);
		a->len += 4;
		a->has_null = true;
	} else {
		put_be32(a->buf + a->len, (uint32_t)len);
		memcpy(a->buf + a->len + 4, data, len);
		a->len += 4 + len;
	}
	a->n++;
}

static void
arr_add_text(struct pgarr *a, const char *s)
{
	arr_add(a, s, s != NULL ? strlen(s) : 0);
}

static void
arr_add_i64(struct pgarr *a, int64_t v)
{
	uint64_t be = htobe64((uint64_t)v);
	arr_add(a, &be, 8);
}

static void
arr_add_time(struct pgarr *a, int64_t unix_us)
{
	arr_add_i64(a, unix_us - PG_EPOCH_US);
}

/* The header, now that the count is known. An empty array has no
 * dimensions. Returns the parameter's bytes. */
static const uint8_t *
arr_finish(struct pgarr *a, int *len)
{
	if (a->n == 0) {
		put_be32(a->buf + 8, 0);
		put_be32(a->buf + 12, 0);
		put_be32(a->buf + 16, a->oid);
		*len = 12;
		return a->buf + 8;
	}
	put_be32(a->buf, 1);
	put_be32(a->buf + 4, a->has_null ? 1 : 0);
	put_be32(a->buf + 8, a->oid);
	put_be32(a->buf + 12, a->n);
	put_be32(a->buf + 16, 1);
	*len = (int)a->len;
	return a->buf;
}

static int
uuid_parse(const char *s, uint8_t out[16])
{
	size_t o = 0;

	for (int i = 0; i < 16; i++) {
		if (s[o] == '-')
			o++;
		unsigned v;
		if (sscanf(s + o, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
		o += 2;
	}
	return s[o] == '\0' ? 0 : -1;
}

struct store_batch *
store_batch_new(const char *node, const char *journal_id)
{
	struct store_batch *b = calloc(1, sizeof(*b));

	if (b == NULL || (b->node = strdup(node)) == NULL)
		abort();
	if (journal_id != NULL && uuid_parse(journal_id, b->journal_uuid) != 0)
		abort();
	for (int i = 0; i < EV_COLS; i++)
		arr_init(&b->ev[i], ev_oids[i]);
	for (int i = 0; i < Q_COLS; i++)
		arr_init(&b->q[i], q_oids[i]);
	for (int i = 0; i < O_COLS; i++)
		arr_init(&b->o[i], o_oids[i]);
	for (int i = 0; i < R_COLS; i++)
		arr_init(&b->r[i], r_oids[i]);
	return b;
}

void
store_batch_free(struct store_batch *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < EV_COLS; i++)
		free(b->ev[i].buf);
	for (int i = 0; i < Q_COLS; i++)
		free(b->q[i].buf);
	for (int i = 0; i < O_COLS; i++)
		free(b->o[i].buf);
	for (int i = 0; i < R_COLS; i++)
		free(b->r[i].buf);
	if (b->op != NULL) {
		for (int i = 0; i < 6; i++)
			free(b->op->text[i]);
		free(b->op->ids.buf);
		free(b->op->rows);
		free(b->op->data);
		free(b->op);
	}
	free(b->node);
	free(b);
}

void
store_batch_add_event(struct store_batch *b, const struct store_event *e)
{
	struct pgarr *c = b->ev;
	uint8_t skewed = e->clock_skewed ? 1 : 0;
	size_t before = 0;

	for (int i = 0; i < EV_COLS; i++)
		before += c[i].len;
	arr_add(&c[0], e->id, 16);
	arr_add_time(&c[1], e->event_time_us);
	arr_add_time(&c[2], e->received_us);
	arr_add_text(&c[3], e->community_id);
	arr_add_text(&c[4], e->device_id);
	arr_add_text(&c[5], e->device_class);
	arr_add_text(&c[6], e->event_type);
	arr_add_text(&c[7], e->severity);
	arr_add_text(&c[8], e->vendor);
	arr_add_text(&c[9], e->route);
	arr_add_text(&c[10], e->source_topic);
	arr_add_text(&c[11], b->node);
	arr_add_i64(&c[12], (int64_t)e->journal_seq);
	arr_add(&c[13], &skewed, 1);
	if (e->plate != NULL)
		arr_add_text(&c[14], e->plate);
	else
		arr_add(&c[14], NULL, 0);
	arr_add(&c[15], e->record, e->record_len);
	if (e->attrs != NULL) {
		/* jsonb's binary input: a version byte, then the text. */
		size_t n = strlen(e->attrs);
		arr_reserve(&c[16], 4 + 1 + n);
		put_be32(c[16].buf + c[16].len, (uint32_t)(n + 1));
		c[16].buf[c[16].len + 4] = 1;
		memcpy(c[16].buf + c[16].len + 5, e->attrs, n);
		c[16].len += 5 + n;
		c[16].n++;
	} else {
		arr_add(&c[16], NULL, 0);
	}
	size_t after = 0;
	for (int i = 0; i < EV_COLS; i++)
		after += c[i].len;
	b->bytes += after - before;
	b->nevents++;
}

void
store_batch_add_quarantine(struct store_batch *b, const struct store_quarantine *q)
{
	struct pgarr *c = b->q;
	size_t before = 0, after = 0;

	for (int i = 0; i < Q_COLS; i++)
		before += c[i].len;
	arr_add_text(&c[0], b->node);
	arr_add(&c[1], b->journal_uuid, 16);
	arr_add_i64(&c[2], (int64_t)q->journal_seq);
	arr_add_time(&c[3], q->received_us);
	arr_add(&c[4], q->topic, q->topic_len);
	arr_add(&c[5], q->raw != NULL ? (const void *)q->raw : "", q->raw_len);
	arr_add_text(&c[6], q->reason);
	if (q->route != NULL)
		arr_add_text(&c[7], q->route);
	else
		arr_add(&c[7], NULL, 0);
	for (int i = 0; i < Q_COLS; i++)
		after += c[i].len;
	b->bytes += after - before;
	b->nquar++;
}

void
store_batch_add_outbox(struct store_batch *b, const uint8_t *event_id, int64_t event_time_us,
    const char *target, int priority)
{
	struct pgarr *c = b->o;
	size_t before = 0, after = 0;
	uint16_t prio = htobe16((uint16_t)priority);

	for (int i = 0; i < O_COLS; i++)
		before += c[i].len;
	arr_add(&c[0], event_id, 16);
	arr_add_time(&c[1], event_time_us);
	arr_add_text(&c[2], target);
	arr_add(&c[3], &prio, 2);
	for (int i = 0; i < O_COLS; i++)
		after += c[i].len;
	b->bytes += after - before;
	b->nout++;
}

void
store_batch_add_report(struct store_batch *b, const struct store_report *r)
{
	struct pgarr *c = b->r;
	size_t before = 0, after = 0;

	for (int i = 0; i < R_COLS; i++)
		before += c[i].len;
	arr_add(&c[0], r->key, 16);
	arr_add(&c[1], r->digest, 16);
	arr_add(&c[2], r->event_id, 16);
	arr_add_time(&c[3], r->event_time_us);
	arr_add_time(&c[4], r->last_us);
	for (int i = 0; i < R_COLS; i++)
		after += c[i].len;
	b->bytes += after - before;
	b->nreports++;
}

size_t
store_batch_rows(const struct store_batch *b)
{
	return b->nevents + b->nquar;
}

size_t
store_batch_bytes(const struct store_batch *b)
{
	return b->bytes;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the forwarder's queries ----------------------------------------- */

/* Takes up to $2 rows (and about $3 bytes of records) of target $1 that
 * are due, of a priority in [$6[1], $6[2]] (a lane of the forwarder) and
 * not among the ids $7 (rows the forwarder holds already), highest priority
 * first, and leases them to this node ($5) for $4 seconds: another daemon
 * (or this one after a restart, see release) takes them only when the
 * lease has run out. Each row comes with its age in milliseconds, by the
 * database's clock (max_age). */
static const char outbox_claim_sql[] =
    "WITH c AS ("
    "  SELECT o.event_id, o.target, o.priority, o.created_at, e.record"
    "  FROM forward_outbox o"
    "  LEFT JOIN events e ON e.id = o.event_id AND e.event_time = o.event_time"
    "  WHERE o.target = $1 AND o.state = 'pending' AND o.next_attempt_at <= now()"
    "    AND o.priority BETWEEN ($6::int[])[1] AND ($6::int[])[2]"
    "    AND o.event_id <> ALL($7::uuid[])"
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

static int
send_op(struct store *s, struct store_op *op)
{
	const char *vals[7];
	int lens[7], fmts[7];

	free(op->rows);
	free(op->data);
	op->rows = NULL;
	op->data = NULL;
	op->nrows = 0;
	for (int i = 0; i < op->nparams; i++) {
		vals[i] = i < 6 ? op->text[i] : NULL;
		lens[i] = 0;
		fmts[i] = 0;
	}
	/* The ids, a binary uuid[]: $2 of settle, $7 of claim. */
	int at = op->kind == OP_SETTLE ? 1 : op->kind == OP_CLAIM ? 6 : -1;
	if (at >= 0) {
		vals[at] = (const char *)arr_finish(&op->ids, &lens[at]);
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
	op->rows = calloc((size_t)n, sizeof(*op->rows));
	op->data = malloc(bytes ? bytes : 1);
	if (op->rows == NULL || op->data == NULL)
		abort();
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

/* Queues an op ahead of the batches not yet sent (after earlier ops):
 * the forwarder does not wait for ingest's backlog. */
static void
queue_op(struct store *s, struct store_op *op)
{
	struct store_batch *b = calloc(1, sizeof(*b));
	if (b == NULL || (b->node = strdup(s->node)) == NULL)
		abort();
	b->op = op;
	struct store_batch **at = &s->queue;
	size_t i = 0;
	while (*at != NULL && (i < s->sent || (*at)->op != NULL)) {
		at = &(*at)->next;
		i++;
	}
	b->next = *at;
	*at = b;
	if (b->next == NULL)
		s->queue_tail = b;
	s->queued++;
	send_more(s);
}

static struct store_op *
new_op(int kind, const char *sql, int nparams)
{
	struct store_op *op = calloc(1, sizeof(*op));
	if (op == NULL)
		abort();
	op->kind = kind;
	op->sql = sql;
	op->nparams = nparams;
	return op;
}

static char *
xstrdup(const char *v)
{
	char *d = strdup(v);
	if (d == NULL)
		abort();
	return d;
}

static char *
fmt_ll(long long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", v);
	return xstrdup(buf);
}

static void
outbox_claim(void *ctx, const struct outbox_claim *c, outbox_claim_fn done, void *done_ctx)
{
	struct store *s = ctx;
	struct store_op *op = new_op(OP_CLAIM, outbox_claim_sql, 7);
	char range[48];

	op->text[0] = xstrdup(c->target);
	op->text[1] = fmt_ll((long long)c->max_rows);
	op->text[2] = fmt_ll((long long)c->max_bytes);
	op->text[3] = fmt_ll(c->lease_s);
	char token[300];
	snprintf(token, sizeof(token), "%s/%08x", s->node, s->claims++);
	op->text[4] = xstrdup(token);
	snprintf(range, sizeof(range), "{%d,%d}", c->min_priority, c->max_priority);
	op->text[5] = xstrdup(range);
	arr_init(&op->ids, OID_UUID);
	for (size_t i = 0; i < c->nexclude; i++)
		arr_add(&op->ids, c->exclude + 16 * i, 16);
	op->claim_done = done;
	op->ctx = done_ctx;
	queue_op(s, op);
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

	op->text[0] = xstrdup(target);
	arr_init(&op->ids, OID_UUID);
	for (size_t i = 0; i < n; i++)
		arr_add(&op->ids, ids + 16 * i, 16);
	snprintf(secs, sizeof(secs), "%.3f", (double)retry_in_ms / 1000.0);
	if (outcome == OUTBOX_DEFER) {
		op->text[2] = xstrdup(secs);
		queue_op(s, op);
		return;
	}
	op->text[2] = status > 0 ? fmt_ll(status) : NULL;
	if (outcome != OUTBOX_SENT)
		op->text[3] = xstrdup(error != NULL ? error : "");
	if (outcome == OUTBOX_RETRY)
		op->text[4] = xstrdup(secs);
	queue_op(s, op);
}

static void
outbox_release(void *ctx)
{
	struct store *s = ctx;
	struct store_op *op = new_op(OP_RELEASE, outbox_release_sql, 1);

	op->text[0] = xstrdup(s->node);
	queue_op(s, op);
}

void
store_outbox(struct store *s, struct outbox *out)
{
	out->claim = outbox_claim;
	out->settle = outbox_settle;
	out->release = outbox_release;
	out->ctx = s;
}

void
store_set_outbox_hook(struct store *s, void (*fn)(void *ctx), void *ctx)
{
	s->outbox_hook = fn;
	s->outbox_ctx = ctx;
}

/* An op's sync arrived. */
static void
op_done(struct store_batch *b)
{
	struct store_op *op = b->op;

	if (b->failed)
		log_error("store", "outbox query failed", "sqlstate=%s error=%s", b->sqlstate,
		    b->error);
	if (op->kind == OP_CLAIM && op->claim_done != NULL)
		op->claim_done(op->ctx, b->failed ? NULL : op->rows, b->failed ? 0 : op->nrows,
		    !b->failed);
}

/* One transaction in the pipeline: events, quarantine, checkpoint, sync. */
static int
send_batch(struct store *s, struct store_batch *b)
{
	const char *vals[EV_COLS + O_COLS];
	int lens[EV_COLS + O_COLS], fmts[EV_COLS + O_COLS];
	char seq[32];

	b->failed = false;
	if (b->op != NULL)
		return send_op(s, b->op);
	if (b->nevents > 0) {
		for (int i = 0; i < EV_COLS; i++) {
			vals[i] = (const char *)arr_finish(&b->ev[i], &lens[i]);
			fmts[i] = 1;
		}
		for (int i = 0; i < O_COLS; i++) {
			vals[EV_COLS + i] = (const char *)arr_finish(&b->o[i], &lens[EV_COLS + i]);
			fmts[EV_COLS + i] = 1;
		}
		if (PQsendQueryParams(s->conn, insert_events, EV_COLS + O_COLS, NULL, vals, lens,
		    fmts, 0) == 0)
			return -1;
	}
	if (b->nquar > 0) {
		for (int i = 0; i < Q_COLS; i++) {
			vals[i] = (const char *)arr_finish(&b->q[i], &lens[i]);
			fmts[i] = 1;
		}
		if (PQsendQueryParams(s->conn, insert_quarantine, Q_COLS, NULL, vals, lens, fmts,
		    0) == 0)
			return -1;
	}
	if (b->nreports > 0) {
		for (int i = 0; i < R_COLS; i++) {
			vals[i] = (const char *)arr_finish(&b->r[i], &lens[i]);
			fmts[i] = 1;
		}
		if (PQsendQueryParams(s->conn, upsert_reports, R_COLS, NULL, vals, lens, fmts, 0) == 0)
			return -1;
	}
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)b->checkpoint);
	vals[0] = s->node;
	vals[1] = s->journal_id;
	vals[2] = seq;
	if (PQsendQueryParams(s->conn, upsert_checkpoint, 3, NULL, vals, NULL, NULL, 0) == 0)
		return -1;
	if (PQpipelineSync(s->conn) == 0)
		return -1;
	return 0;
}

static void
flush_out(struct store *s)
{
	int f = PQflush(s->conn);
	if (f < 0) {
		schedule_retry(s, NULL);
		return;
	}
	watch(s, f == 1 ? (EV_READ | EV_WRITE | EV_PERSIST) : (EV_READ | EV_PERSIST));
}

/* Sends queued batches up to the in-flight limit. */
static void
send_more(struct store *s)
{
	if (s->step != STEP_READY || s->conn == NULL)
		return;
	if (s->maintain_due && s->sent == 0) {
		s->maintain_due = false;
		if (PQexitPipelineMode(s->conn) == 1) {
			maintain(s);
			return;
		}
	}
	struct store_batch *b = s->queue;
	for (size_t i = 0; i < s->sent && b != NULL; i++)
		b = b->next;
	bool any = false;
	while (b != NULL && s->sent < (size_t)s->max_inflight) {
		if (send_batch(s, b) != 0) {
			char err[256];
			conn_error(s->conn, err, sizeof(err));
			log_warn("store", "cannot send batch", "error=%s", err);
			schedule_retry(s, err);
			return;
		}
		s->sent++;
		any = true;
		b = b->next;
	}
	if (any)
		flush_out(s);
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

/* The head batch's sync arrived: it committed, or its transaction failed. */
static void
batch_done(struct store *s)
{
	struct store_batch *b = s->queue;

	if (b->op != NULL) {
		s->queue = b->next;
		if (s->queue == NULL)
			s->queue_tail = NULL;
		s->queued--;
		s->sent--;
		op_done(b);
		store_batch_free(b);
		return;
	}
	enum failure_kind kind = b->failed ? classify(b->sqlstate) : FAIL_DATA;
	if (b->failed && kind == FAIL_OTHER && ++b->failures >= STORE_BATCH_ATTEMPTS)
		kind = FAIL_DATA;	/* it keeps failing: find the row */
	if (b->failed && kind != FAIL_DATA) {
		/* Not (yet) the data's fault: keep it and start again. */
		log_warn("store", "batch failed, retrying", "sqlstate=%s error=%s first_seq=%llu "
		    "last_seq=%llu attempt=%d", b->sqlstate, b->error,
		    (unsigned long long)b->first_seq, (unsigned long long)b->last_seq,
		    b->failures + 1);
		reconnect_quietly(s, "batch failed");
		return;
	}
	s->queue = b->next;
	if (s->queue == NULL)
		s->queue_tail = NULL;
	s->queued--;
	s->sent--;
	if (b->failed) {
		log_warn("store", "batch refused by the database", "sqlstate=%s error=%s "
		    "first_seq=%llu last_seq=%llu rows=%zu", b->sqlstate, b->error,
		    (unsigned long long)b->first_seq, (unsigned long long)b->last_seq,
		    store_batch_rows(b));
		if (s->sink.rejected != NULL)
			s->sink.rejected(s->sink.ctx, b->first_seq, b->last_seq, b->sqlstate, b->error);
	} else {
		log_debug("store", "batch committed", "events=%zu quarantined=%zu first_seq=%llu "
		    "last_seq=%llu checkpoint=%llu", b->nevents, b->nquar,
		    (unsigned long long)b->first_seq, (unsigned long long)b->last_seq,
		    (unsigned long long)b->checkpoint);
		if (s->sink.committed != NULL)
			s->sink.committed(s->sink.ctx, b->first_seq, b->last_seq, b->checkpoint);
		if (b->nout > 0 && s->outbox_hook != NULL)
			s->outbox_hook(s->outbox_ctx);
	}
	store_batch_free(b);
}

static void
take_batch_results(struct store *s)
{
	while (s->conn != NULL && s->step == STEP_READY && s->sent > 0 && !PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (r == NULL)
			continue;	/* between the results of two statements */
		struct store_batch *b = s->queue;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			batch_done(s);
			continue;
		}
		if (st == PGRES_TUPLES_OK && b != NULL && b->op != NULL && b->op->kind == OP_CLAIM)
			take_claim_rows(b->op, r);
		if (st == PGRES_FATAL_ERROR && b != NULL && !b->failed) {
			const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			b->failed = true;
			snprintf(b->sqlstate, sizeof(b->sqlstate), "%s", code != NULL ? code : "");
			const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			snprintf(b->error, sizeof(b->error), "%s",
			    msg != NULL ? msg : PQresultErrorMessage(r));
			b->error[strcspn(b->error, "\n")] = '\0';
		}
		PQclear(r);
	}
	send_more(s);
}

static void
become_ready(struct store *s)
{
	if (PQenterPipelineMode(s->conn) != 1) {
		schedule_retry(s, "cannot enter pipeline mode");
		return;
	}
	s->step = STEP_READY;
	if (s->outage) {
		log_info("store", "database available again", "outage_ms=%lld",
		    (long long)(mono_ms() - s->outage_started_ms));
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
	send_more(s);
}

void
store_submit(struct store *s, struct store_batch *b, uint64_t first_seq, uint64_t last_seq,
    uint64_t checkpoint)
{
	b->first_seq = first_seq;
	b->last_seq = last_seq;
	b->checkpoint = checkpoint;
	b->next = NULL;
	if (s->queue_tail != NULL)
		s->queue_tail->next = b;
	else
		s->queue = b;
	s->queue_tail = b;
	s->queued++;
	send_more(s);
}

size_t
store_backlog(const struct store *s)
{
	return s->queued;
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
	flush_out(s);
}

static void
maintain(struct store *s)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT gridbridge_maintain_partitions(%d, %d);"
	    "SELECT gridbridge_maintain_outbox(%d)",
	    s->partitions_ahead, s->retention_days, s->retention_days);
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
		reconnect_quietly(s, "out of memory");
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
		reconnect_quietly(s, "lock held");
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
	drop_connection(s);
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
		    uuid_parse(PQgetvalue(r, i, 2), id) != 0)
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
		take_locks(s);
		break;
	case STEP_LOCK:
		if (s->lock_node_ok && s->lock_journal_ok) {
			s->lock_attempts = 0;
			s->locked_before = true;
			s->lock_wait_logged = false;
			maintain(s);
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
		if (s->announced || s->max_reports == 0) {
			become_ready(s);
			break;
		}
		snprintf(sql, sizeof(sql), "SELECT encode(report_key, 'hex'), encode(digest, 'hex'),"
		    " event_id, (extract(epoch FROM event_time) * 1000000)::int8,"
		    " (extract(epoch FROM last_at) * 1000000)::int8"
		    " FROM report_state ORDER BY last_at DESC LIMIT %zu", s->max_reports);
		send_query(s, STEP_REPORTS, sql);
		break;
	case STEP_REPORTS:
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
	if (s->step == STEP_CHECKPOINT && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
		s->db_checkpoint = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	if (s->step == STEP_LOCK && st == PGRES_TUPLES_OK && PQnfields(r) == 2 &&
	    PQntuples(r) == 1) {
		s->lock_node_ok = PQgetvalue(r, 0, 0)[0] == 't';
		s->lock_journal_ok = PQgetvalue(r, 0, 1)[0] == 't';
	}
	if (s->step == STEP_REPORTS && st == PGRES_TUPLES_OK && PQnfields(r) == 5)
		take_reports(s, r);
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
static void
take_results(struct store *s)
{
	if (s->step == STEP_READY) {
		take_batch_results(s);
		return;
	}
	while (s->conn != NULL && !PQisBusy(s->conn)) {
		PGresult *r = PQgetResult(s->conn);
		if (r == NULL) {
			if (s->step == STEP_READY || s->step == STEP_INCOMPATIBLE ||
			    s->step == STEP_NONE)
				return;
			if (s->query_failed) {
				/* Start over on a fresh connection, after a pause. */
				reconnect_quietly(s, "setup query failed");
				return;
			}
			setup_next(s);
			if (s->step == STEP_READY) {
				take_batch_results(s);
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

static void
maintain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	/* Run between batches: pipeline mode is left for it. */
	s->maintain_due = true;
	if (s->step == STEP_READY)
		send_more(s);
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
		log_info("store", "connection lost", "error=%s", err);
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
	struct conn_params p;

	(void)fd;
	(void)what;
	conn_params_init(&p, s->host, s->port, s->dbname, s->user, s->password, s->sslmode,
	    s->sslrootcert, s->sslcert, s->sslkey);
	param(&p, "application_name", "gridbridged");
	/* Keepalive probes make the server end the session of a daemon whose
	 * host died (or of a connection we gave up on) within about a
	 * minute, releasing its locks (see take_locks). */
	param(&p, "options", "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 "
	    "-c tcp_keepalives_count=3");

	s->conn = PQconnectStartParams(p.keys, p.vals, 0);
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
	s->partitions_ahead = o->partitions_ahead;
	s->retention_days = o->retention_days;
	s->max_inflight = o->max_inflight > 0 ? o->max_inflight : 1;
	if (sink != NULL)
		s->sink = *sink;
	s->node = strdup(o->node != NULL ? o->node : "gridbridge");
	s->journal_id = strdup(o->journal_id != NULL ? o->journal_id :
	    "00000000-0000-0000-0000-000000000000");
	if (s->journal_id == NULL || uuid_parse(s->journal_id, s->journal_uuid) != 0) {
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
	s->maintain = evtimer_new(base, maintain_cb, s);
	if (s->host == NULL || s->port == NULL || s->dbname == NULL || s->user == NULL ||
	    s->password == NULL || s->retry == NULL || s->deadline == NULL ||
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
	if (s->maintain != NULL)
		event_free(s->maintain);
	while (s->queue != NULL) {
		struct store_batch *b = s->queue;
		s->queue = b->next;
		store_batch_free(b);
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

/* ---- gridbridgectl outbox: blocking, for the operator's tool ---------- */

static PGconn *
ctl_connect(const struct store_options *o, FILE *err)
{
	struct conn_params p;
	char port[16], timeout[16];

	snprintf(port, sizeof(port), "%d", o->port);
	snprintf(timeout, sizeof(timeout), "%d", o->connect_timeout > 0 ? o->connect_timeout : 10);
	conn_params_init(&p, o->host, port, o->dbname, o->user, o->password, o->sslmode,
	    o->sslrootcert, o->sslcert, o->sslkey);
	param(&p, "connect_timeout", timeout);
	param(&p, "application_name", "gridbridgectl");
	PGconn *c = PQconnectdbParams(p.keys, p.vals, 0);
	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		char e[256];
		conn_error(c, e, sizeof(e));
		fprintf(err, "gridbridgectl: cannot connect to the database: %s\n", e);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, notice_cb, NULL);
	return c;
}

static PGresult *
ctl_exec(PGconn *c, const char *sql, int n, const char *const *vals, FILE *err)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		char e[512];
		snprintf(e, sizeof(e), "%s", PQresultErrorMessage(r));
		e[strcspn(e, "\n")] = '\0';
		fprintf(err, "gridbridgectl: query failed: %s\n", e);
		PQclear(r);
		return NULL;
	}
	return r;
}

static int
ctl_stat(PGconn *c, FILE *out, FILE *err)
{
	PGresult *r = ctl_exec(c,
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
	PGresult *r = ctl_exec(c,
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
	PGresult *r = ctl_exec(c,
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
	PGconn *c = ctl_connect(o, err);
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
