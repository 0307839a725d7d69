/* store_lease.c — see store_lease.h. */
#include "store_lease.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "store_ctl.h"
#include "store_int.h"
#include "util.h"

#define US 1000000LL

/* One row per shard taken or kept (none: one row of NULLs), each with the
 * number of other instances alive. FOR UPDATE SKIP LOCKED: a shard another
 * instance is taking right now is not waited for; an expired one it took
 * since our snapshot is seen updated and no longer matches. */
const char store_lease_renew_sql[] =
    "WITH me AS ("
    "  INSERT INTO derive_instances AS i (holder, seen_at) VALUES ($1, now())"
    "  ON CONFLICT (holder) DO UPDATE SET seen_at = now() RETURNING 1),"
    " gone AS (DELETE FROM derive_instances WHERE seen_at < now() - interval '1 day'"
    "  RETURNING 1),"
    " free AS (SELECT shard, holder FROM derive_leases"
    "  WHERE holder = $1 OR expires_at < now() ORDER BY shard FOR UPDATE SKIP LOCKED),"
    " took AS (UPDATE derive_leases AS l SET holder = $1,"
    "  expires_at = now() + make_interval(secs => $2::int)"
    "  FROM free WHERE l.shard = free.shard"
    "  RETURNING l.shard, free.holder IN ($1, '') AS ours),"
    " peers AS (SELECT count(*)::int AS n FROM derive_instances"
    "  WHERE holder <> $1 AND seen_at > now() - make_interval(secs => $2::int))"
    " SELECT took.shard, took.ours, peers.n FROM peers LEFT JOIN took ON true";

/* The newest records of each device asked for, not the derived ones
 * (vendor gridbridge: ours, not the devices'): by event time
 * (events_device_time), and those of a device whose clock is off by
 * receive time (events_skewed, schema version 9), in the order they came. */
static const char fetch_sql[] =
    "SELECT e.record FROM unnest($1::text[], $2::text[], $3::int8[]) AS q(c, d, s)"
    " CROSS JOIN LATERAL ("
    "  (SELECT record, received_at, id FROM events"
    "   WHERE device_id = q.d AND community_id = q.c"
    "    AND event_time > to_timestamp(q.s / 1000000.0::float8) AND vendor <> 'gridbridge'"
    "   ORDER BY event_time DESC LIMIT $4::int)"
    "  UNION ALL"
    "  (SELECT record, received_at, id FROM events"
    "   WHERE device_id = q.d AND community_id = q.c AND clock_skewed"
    "    AND received_at > to_timestamp(q.s / 1000000.0::float8)"
    "    AND event_time <= to_timestamp(q.s / 1000000.0::float8) AND vendor <> 'gridbridge'"
    "   ORDER BY received_at DESC LIMIT $4::int)) AS e"
    " ORDER BY e.received_at, e.id";

/* The rows other instances inserted in the transactions notified: those
 * of each transaction (STORE_NOTE_ROWS, as gridbridgectl tail finds them),
 * not ours ($6, journal_node) nor derived, at most $7 in all, by event
 * time (the order derive.c takes them in best). */
static const char follow_sql[] =
    "SELECT e.record FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[])"
    "  AS n(x, rf, rl, tf, tl)"
    " CROSS JOIN LATERAL (SELECT e.record, e.event_time, e.id FROM events e"
    "  WHERE" STORE_NOTE_ROWS("n.x", "n.rf", "n.rl", "n.tf", "n.tl")
    "   AND e.journal_node <> $6 AND e.vendor <> 'gridbridge'"
    "  LIMIT $7::int) AS e"
    " ORDER BY e.event_time, e.id LIMIT $7::int";

enum query { Q_NONE, Q_RENEW, Q_RELOAD, Q_FETCH, Q_LISTEN, Q_FOLLOW };

struct store_lease {
	struct event_base *base;
	struct store_lease_options o;
	char *host, *port, *dbname, *user, *password;
	char *sslmode, *sslrootcert, *sslcert, *sslkey, *holder;
	PGconn *conn;
	bool connected;
	bool down_logged;
	enum query busy;
	struct event *io;
	int io_fd;
	short io_flags;
	struct event *tick;		/* every second */
	struct event *deadline;		/* connect and answer timeout */

	/* the leases */
	bool known;
	uint64_t shards;
	int peers;
	uint64_t valid_until;		/* monotonic µs */
	uint64_t renew_sent;		/* monotonic µs of the renewal under way */
	uint64_t next_renew;		/* monotonic µs */
	uint64_t r_shards, r_reload;	/* the renewal's answer so far */
	int r_peers;
	bool r_ok;

	uint64_t reload;		/* asked for, not sent */
	uint64_t reloading;		/* sent */
	char *rows[3];			/* its answer */

	/* the fetch: asked for (params), sent (busy), answered */
	bool fetch_wanted;
	char *fparams[4];
	bool fetch_ok;
	uint8_t **recs;
	size_t *lens;
	size_t nrecs, caprecs;
	size_t nrows;			/* rows answered (some records may be left out) */

	/* following other instances (store_lease.h, "follow") */
	char *node;			/* our journal_node */
	bool listen;			/* LISTEN wanted: leases held, others alive */
	bool listening;			/* LISTEN answered on this connection */
	bool listen_sent;		/* LISTEN (not UNLISTEN) is under way */
	struct store_ctl_note *notes;	/* notified, not fetched yet */
	size_t nnotes;
	size_t nsent;			/* of them, sent in the follow under way */
	uint64_t next_follow;		/* monotonic µs */
	bool overflow_logged;
	char *wparams[7];		/* the follow's parameters */
};

static void io_cb(evutil_socket_t fd, short what, void *arg);
static void next_query(struct store_lease *l);

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * US + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
store_lease_trusted_until(uint64_t sent_us, int lease_s)
{
	if (lease_s < 3)
		lease_s = 3;
	/* A fifth of the lease for the clocks' rates, a second for our tick
	 * to notice. */
	return sent_us + (uint64_t)lease_s * US - (uint64_t)lease_s * US / 5 - US;
}

char *
store_lease_text_array(const char *const *v, size_t n)
{
	size_t len = 3;

	for (size_t i = 0; i < n; i++)
		len += 2 * strlen(v[i]) + 3;
	char *out = util_malloc(len), *p = out;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			*p++ = ',';
		*p++ = '"';
		for (const char *c = v[i]; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

static void
watch(struct store_lease *l, short flags)
{
	store_watch(l->base, l->conn, flags, &l->io, &l->io_fd, &l->io_flags, io_cb, l, "lease");
}

static void
clear_records(struct store_lease *l)
{
	for (size_t i = 0; i < l->nrecs; i++)
		free(l->recs[i]);
	l->nrecs = 0;
	l->nrows = 0;
}

static void
fetch_done(struct store_lease *l, bool ok)
{
	if (l->o.records != NULL)
		l->o.records(l->o.ctx, ok, (const uint8_t *const *)l->recs, l->lens,
		    ok ? l->nrecs : 0);
	clear_records(l);
}

/* Tells the pipeline what the follow brought (records `n` of l->recs),
 * `gap`: a notification may have been missed. */
static void
followed(struct store_lease *l, bool gap, size_t n)
{
	if (l->o.followed != NULL)
		l->o.followed(l->o.ctx, gap, (const uint8_t *const *)l->recs, l->lens, n);
}

/* The follow under way was answered (`ok`) or not: its notes are done
 * with either way (failed: a gap, read back). */
static void
follow_done(struct store_lease *l, bool ok)
{
	size_t n = l->nsent <= l->nnotes ? l->nsent : l->nnotes;

	memmove(l->notes, l->notes + n, (l->nnotes - n) * sizeof(*l->notes));
	l->nnotes -= n;
	l->nsent = 0;
	bool full = l->nrows >= STORE_LEASE_FOLLOW_ROWS;
	if (ok && full && !l->overflow_logged)
		log_warn("lease", "other instances' records beyond a follow's bound, reading back "
		    "instead", "rows=%d", STORE_LEASE_FOLLOW_ROWS);
	l->overflow_logged = l->overflow_logged || (ok && full);
	followed(l, !ok || full, ok ? l->nrecs : 0);
	clear_records(l);
}

/* A notification on the lease connection: a batch transaction of any
 * instance committed. Kept while following, up to a bound: beyond it the
 * backlog is dropped and the pipeline reads back instead (said once). */
static void
take_notes(struct store_lease *l)
{
	PGnotify *n;

	while ((n = PQnotifies(l->conn)) != NULL) {
		struct store_ctl_note note;
		if (l->listen && l->listening && store_ctl_note_parse(n->extra, &note) == 0) {
			if (l->nnotes == STORE_LEASE_FOLLOW_BACKLOG) {
				if (!l->overflow_logged)
					log_warn("lease", "other instances' records notified faster than "
					    "followed, reading back instead", "backlog=%d",
					    STORE_LEASE_FOLLOW_BACKLOG);
				l->overflow_logged = true;
				l->nnotes = l->nsent;	/* those under way are answered */
				followed(l, true, 0);
			}
			if (l->notes == NULL)
				l->notes = util_calloc(STORE_LEASE_FOLLOW_BACKLOG, sizeof(*l->notes));
			l->notes[l->nnotes++] = note;
		}
		PQfreemem(n);
	}
}

static void
drop(struct store_lease *l, const char *why)
{
	char err[256];

	if (why == NULL) {
		store_conn_error(l->conn, err, sizeof(err));
		why = err;
	}
	if (!l->down_logged)
		log_info("lease", "derived event leases unavailable", "host=%s port=%s error=%s",
		    l->host, l->port, why);
	l->down_logged = true;
	watch(l, 0);
	evtimer_del(l->deadline);
	if (l->conn != NULL)
		PQfinish(l->conn);
	l->conn = NULL;
	l->connected = false;
	enum query q = l->busy;
	l->busy = Q_NONE;
	if (q == Q_RELOAD) {
		l->reload |= l->reloading;	/* asked for again */
		l->reloading = 0;
	}
	if (q == Q_FETCH)
		fetch_done(l, false);
	/* Listened again once back, then read back (a gap). */
	l->listening = false;
	if (q == Q_FOLLOW)
		follow_done(l, false);
}

/* Whether to follow: the notes of a follow no longer wanted are dropped
 * (but those under way), UNLISTEN is sent by next_query(). */
static void
set_listen(struct store_lease *l, bool listen)
{
	l->listen = listen && l->o.followed != NULL;
	if (!l->listen)
		l->nnotes = l->nsent;
}

static void
lapse(struct store_lease *l)
{
	bool was = l->known;

	l->known = false;
	l->shards = 0;
	set_listen(l, false);
	if (was) {
		log_warn("lease", "derived event leases lapsed, evaluating none", "");
		if (l->o.leases != NULL)
			l->o.leases(l->o.ctx, false, 0, 0, l->peers);
	}
}

static bool
send_query(struct store_lease *l, enum query q, const char *sql, int n, const char *const *vals,
    int format)
{
	if (PQsendQueryParams(l->conn, sql, n, NULL, vals, NULL, NULL, format) == 0) {
		drop(l, NULL);
		return false;
	}
	l->busy = q;
	int f = PQflush(l->conn);
	if (f < 0) {
		drop(l, NULL);
		return false;
	}
	watch(l, f == 1 ? (EV_READ | EV_WRITE | EV_PERSIST) : (EV_READ | EV_PERSIST));
	struct timeval tv = { .tv_sec = l->o.lease_s + 5, .tv_usec = 0 };
	evtimer_add(l->deadline, &tv);
	return true;
}

static void
send_renew(struct store_lease *l)
{
	char secs[16];
	const char *vals[2] = { l->holder, secs };

	snprintf(secs, sizeof(secs), "%d", l->o.lease_s);
	l->renew_sent = mono_us();
	l->next_renew = l->renew_sent + (uint64_t)l->o.lease_s * US / 3;
	l->r_shards = l->r_reload = 0;
	l->r_peers = 0;
	l->r_ok = false;
	send_query(l, Q_RENEW, store_lease_renew_sql, 2, vals, 0);
}

/* Up to STORE_LEASE_FOLLOW_XIDS of the notes, oldest first. */
static void
send_follow(struct store_lease *l)
{
	size_t n = l->nnotes < STORE_LEASE_FOLLOW_XIDS ? l->nnotes : STORE_LEASE_FOLLOW_XIDS;
	size_t len = 3 + n * 22;

	for (int c = 0; c < 5; c++) {
		free(l->wparams[c]);
		char *a = util_malloc(len), *p = a;
		*p++ = '{';
		for (size_t i = 0; i < n; i++) {
			const struct store_ctl_note *t = &l->notes[i];
			int64_t v = c == 0 ? (int64_t)t->txid : c == 1 ? t->recv_first :
			    c == 2 ? t->recv_last : c == 3 ? t->time_first : t->time_last;
			p += snprintf(p, len - (size_t)(p - a), "%s%lld", i > 0 ? "," : "",
			    (long long)v);
		}
		snprintf(p, len - (size_t)(p - a), "}");
		l->wparams[c] = a;
	}
	free(l->wparams[5]);
	l->wparams[5] = util_strdup(l->node);
	char rows[16];
	snprintf(rows, sizeof(rows), "%d", STORE_LEASE_FOLLOW_ROWS);
	free(l->wparams[6]);
	l->wparams[6] = util_strdup(rows);
	l->nsent = n;
	l->next_follow = mono_us() + STORE_LEASE_FOLLOW_US - STORE_LEASE_FOLLOW_US / 10;
	l->fetch_ok = true;
	send_query(l, Q_FOLLOW, follow_sql, 7, (const char *const *)l->wparams, 1);
}

static void
next_query(struct store_lease *l)
{
	if (!l->connected || l->busy != Q_NONE)
		return;
	if (l->o.store != NULL && !store_ready(l->o.store))
		return;
	if (mono_us() >= l->next_renew) {
		send_renew(l);
	} else if (l->reload != 0) {
		l->reloading = l->reload;
		l->reload = 0;
		send_query(l, Q_RELOAD, store_derived_sql, 0, NULL, 0);
	} else if (l->listen != l->listening) {
		l->listen_sent = l->listen;
		l->fetch_ok = true;
		send_query(l, Q_LISTEN, l->listen ? "LISTEN " STORE_NOTIFY_CHANNEL :
		    "UNLISTEN " STORE_NOTIFY_CHANNEL, 0, NULL, 0);
	} else if (l->fetch_wanted) {
		l->fetch_wanted = false;
		l->fetch_ok = true;
		send_query(l, Q_FETCH, fetch_sql, 4, (const char *const *)l->fparams, 1);
	} else if (l->listening && l->nnotes > 0 &&
	    (mono_us() >= l->next_follow || l->nnotes >= STORE_LEASE_FOLLOW_XIDS)) {
		send_follow(l);
	}
}

static void
renew_row(struct store_lease *l, PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (PQnfields(r) != 3)
			return;
		l->r_peers = atoi(PQgetvalue(r, i, 2));
		if (PQgetisnull(r, i, 0))
			continue;
		int shard = atoi(PQgetvalue(r, i, 0));
		if (shard < 0 || shard >= STORE_LEASE_SHARDS)
			continue;
		l->r_shards |= (uint64_t)1 << shard;
		if (strcmp(PQgetvalue(r, i, 1), "t") != 0)
			l->r_reload |= (uint64_t)1 << shard;
	}
	l->r_ok = true;
}

static void
renew_done(struct store_lease *l)
{
	uint64_t until = store_lease_trusted_until(l->renew_sent, l->o.lease_s);

	if (!l->r_ok || mono_us() >= until) {
		lapse(l);
		return;
	}
	bool changed = !l->known || l->shards != l->r_shards || l->r_reload != 0 ||
	    (l->peers == 0) != (l->r_peers == 0);
	if (changed)
		log_info("lease", "derived event shards", "held=%d of=%d taken_over=%d "
		    "other_instances=%d", __builtin_popcountll(l->r_shards), STORE_LEASE_SHARDS,
		    __builtin_popcountll(l->r_reload), l->r_peers);
	l->known = true;
	l->shards = l->r_shards;
	l->peers = l->r_peers;
	set_listen(l, l->shards != 0 && l->peers > 0);
	l->valid_until = until;
	if (l->o.leases != NULL)
		l->o.leases(l->o.ctx, true, l->shards, l->r_reload, l->peers);
}

static void
fetch_row(struct store_lease *l, PGresult *r)
{
	for (int i = 0; i < PQntuples(r) && PQnfields(r) == 1; i++) {
		l->nrows++;
		size_t len = (size_t)PQgetlength(r, i, 0);
		if (PQgetisnull(r, i, 0) || len == 0 || len > STORE_LEASE_RECORD_MAX)
			continue;
		if (l->nrecs == l->caprecs) {
			l->caprecs = l->caprecs ? 2 * l->caprecs : 64;
			l->recs = util_realloc(l->recs, l->caprecs * sizeof(*l->recs));
			l->lens = util_realloc(l->lens, l->caprecs * sizeof(*l->lens));
		}
		l->recs[l->nrecs] = util_malloc(len);
		memcpy(l->recs[l->nrecs], PQgetvalue(r, i, 0), len);
		l->lens[l->nrecs++] = len;
	}
}

static void
take_results(struct store_lease *l)
{
	while (l->busy != Q_NONE && !PQisBusy(l->conn)) {
		PGresult *r = PQgetResult(l->conn);
		if (r == NULL) {
			enum query q = l->busy;
			l->busy = Q_NONE;
			evtimer_del(l->deadline);
			if (q == Q_RENEW) {
				renew_done(l);
			} else if (q == Q_RELOAD) {
				uint64_t shards = l->reloading;
				l->reloading = 0;
				if (l->rows[0] != NULL && l->o.rows != NULL)
					l->o.rows(l->o.ctx, l->rows[0], l->rows[1], l->rows[2], shards);
				else if (l->rows[0] == NULL)
					l->reload |= shards;	/* again */
				for (int i = 0; i < 3; i++) {
					free(l->rows[i]);
					l->rows[i] = NULL;
				}
			} else if (q == Q_FETCH) {
				fetch_done(l, l->fetch_ok);
			} else if (q == Q_LISTEN) {
				bool was = l->listening;
				l->listening = l->fetch_ok ? l->listen_sent : !l->listen_sent;
				if (l->listening != was)
					log_info("lease", l->listening ? "following other instances' records" :
					    "not following other instances' records", "");
				/* What committed before was not notified: read back. */
				if (l->fetch_ok && l->listening)
					followed(l, true, 0);
			} else if (q == Q_FOLLOW) {
				follow_done(l, l->fetch_ok);
			}
			if (l->down_logged && l->known)
				log_info("lease", "derived event leases available again", "");
			if (l->known)
				l->down_logged = false;
			next_query(l);
			return;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK) {
			if (l->busy == Q_RENEW)
				renew_row(l, r);
			else if (l->busy == Q_RELOAD && PQntuples(r) == 1 && PQnfields(r) == 3)
				for (int i = 0; i < 3; i++)
					l->rows[i] = util_strdup(PQgetvalue(r, 0, i));
			else if (l->busy == Q_FETCH || l->busy == Q_FOLLOW)
				fetch_row(l, r);
		} else if (st == PGRES_FATAL_ERROR) {
			const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			if (!l->down_logged)
				log_warn("lease", "lease query failed", "sqlstate=%s error=%s",
				    code != NULL ? code : "",
				    store_loggable_error(code, msg != NULL ? msg : ""));
			l->down_logged = true;
			l->fetch_ok = false;
		}
		PQclear(r);
	}
}

static void
poll_connect(struct store_lease *l)
{
	short flags;
	const char *why;
	int made = store_poll_connect(l->conn, l->deadline, &flags, &why);

	if (made < 0) {
		drop(l, why);
		return;
	}
	if (made == 0) {
		watch(l, flags);
		return;
	}
	l->connected = true;
	watch(l, flags);
	next_query(l);
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_lease *l = arg;

	(void)fd;
	if (!l->connected) {
		poll_connect(l);
		return;
	}
	if ((what & EV_WRITE) && PQflush(l->conn) == 0)
		watch(l, EV_READ | EV_PERSIST);
	if (PQconsumeInput(l->conn) == 0 || PQstatus(l->conn) != CONNECTION_OK) {
		drop(l, NULL);
		return;
	}
	take_notes(l);
	take_results(l);
	if (l->conn != NULL)
		take_notes(l);	/* those read with the results */
}

static void
connect_now(struct store_lease *l)
{
	struct conn_params p;

	store_conn_params_init(&p, l->host, l->port, l->dbname, l->user, l->password,
	    l->sslmode, l->sslrootcert, l->sslcert, l->sslkey);
	store_conn_param(&p, "application_name", "gridbridged-lease");
	char opts[256];
	snprintf(opts, sizeof(opts), "-c TimeZone=UTC -c statement_timeout=%d "
	    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
	    l->o.lease_s * 1000);
	store_conn_param(&p, "options", opts);
	if (store_connect_start(&l->conn, &p, NULL, l, l->deadline,
	    l->o.connect_timeout > 0 ? l->o.connect_timeout : 10) != 0) {
		drop(l, NULL);
		return;
	}
	poll_connect(l);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_lease *l = arg;

	(void)fd;
	(void)what;
	if (l->known && mono_us() >= l->valid_until)
		lapse(l);
	if (l->o.store != NULL && !store_ready(l->o.store))
		return;
	if (l->conn == NULL)
		connect_now(l);
	else
		next_query(l);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drop(arg, "no answer in time");
}

void
store_lease_poke(struct store_lease *l)
{
	tick_cb(-1, 0, l);
}

void
store_lease_reload(struct store_lease *l, uint64_t shards)
{
	l->reload |= shards;
	next_query(l);
}

bool
store_lease_fetch(struct store_lease *l, const char *const *communities,
    const char *const *devices, const int64_t *since_us, size_t n)
{
	if (l->fetch_wanted || l->busy == Q_FETCH || !l->connected || n == 0)
		return false;
	if (n > STORE_LEASE_FETCH_DEVICES)
		n = STORE_LEASE_FETCH_DEVICES;
	for (int i = 0; i < 4; i++)
		free(l->fparams[i]);
	l->fparams[0] = store_lease_text_array(communities, n);
	l->fparams[1] = store_lease_text_array(devices, n);
	size_t len = 3 + n * 21;
	char *s = util_malloc(len), *p = s;
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
		p += snprintf(p, len - (size_t)(p - s), "%s%lld", i > 0 ? "," : "",
		    (long long)since_us[i]);
	snprintf(p, len - (size_t)(p - s), "}");
	l->fparams[2] = s;
	char each[16];
	snprintf(each, sizeof(each), "%d", STORE_LEASE_FETCH_EACH);
	l->fparams[3] = util_strdup(each);
	l->fetch_wanted = true;
	next_query(l);
	return true;
}

bool
store_lease_fetching(const struct store_lease *l)
{
	return l->fetch_wanted || l->busy == Q_FETCH;
}

struct store_lease *
store_lease_new(struct event_base *base, const struct store_lease_options *o)
{
	struct store_lease *l = util_calloc(1, sizeof(*l));
	char port[16];

	l->base = base;
	l->o = *o;
	if (l->o.lease_s < 3)
		l->o.lease_s = 3;
	l->io_fd = -1;
	snprintf(port, sizeof(port), "%d", o->port);
	l->host = util_strdup(o->host != NULL ? o->host : "");
	l->port = util_strdup(port);
	l->dbname = util_strdup(o->dbname != NULL ? o->dbname : "");
	l->user = util_strdup(o->user != NULL ? o->user : "");
	l->password = util_strdup(o->password != NULL ? o->password : "");
	l->sslmode = util_strdup(o->sslmode != NULL ? o->sslmode : "");
	l->sslrootcert = util_strdup(o->sslrootcert != NULL ? o->sslrootcert : "");
	l->sslcert = util_strdup(o->sslcert != NULL ? o->sslcert : "");
	l->sslkey = util_strdup(o->sslkey != NULL ? o->sslkey : "");
	l->holder = util_strdup(o->holder != NULL ? o->holder : "");
	l->node = util_strdup(o->node != NULL ? o->node : "");
	l->o.host = l->o.dbname = l->o.user = l->o.password = NULL;
	l->o.sslmode = l->o.sslrootcert = l->o.sslcert = l->o.sslkey = l->o.holder = NULL;
	l->o.node = NULL;
	l->tick = event_new(base, -1, EV_PERSIST, tick_cb, l);
	l->deadline = evtimer_new(base, deadline_cb, l);
	if (l->tick == NULL || l->deadline == NULL) {
		store_lease_free(l);
		return NULL;
	}
	struct timeval tv = { .tv_sec = 1, .tv_usec = 0 };
	event_add(l->tick, &tv);
	event_active(l->tick, EV_TIMEOUT, 0);
	return l;
}

void
store_lease_free(struct store_lease *l)
{
	if (l == NULL)
		return;
	if (l->io != NULL)
		event_free(l->io);
	if (l->conn != NULL)
		PQfinish(l->conn);
	if (l->tick != NULL)
		event_free(l->tick);
	if (l->deadline != NULL)
		event_free(l->deadline);
	clear_records(l);
	free(l->recs);
	free(l->lens);
	for (int i = 0; i < 4; i++)
		free(l->fparams[i]);
	for (int i = 0; i < 7; i++)
		free(l->wparams[i]);
	free(l->notes);
	free(l->node);
	for (int i = 0; i < 3; i++)
		free(l->rows[i]);
	free(l->host);
	free(l->port);
	free(l->dbname);
	free(l->user);
	if (l->password != NULL)
		memset(l->password, 0, strlen(l->password));
	free(l->password);
	free(l->sslmode);
	free(l->sslrootcert);
	free(l->sslcert);
	free(l->sslkey);
	free(l->holder);
	free(l);
}
