/* forward.c — the outbox to the police platform: see forward.h. */
#include "forward.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backoff.h"
#include "forward_curl.h"
#include "forward_profile.h"
#include "forward_viid.h"
#include "forward_viid_cascade.h"
#include "forward_viid_lease.h"
#include "forward_viid_picture.h"
#include "forward_viid_profile.h"
#include "forward_viid_session.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "version.h"

#define POLL_MS 1000		/* due rows (retries, requeued) are looked for */
#define LEASE_MARGIN_S 30
#define SPLIT_AFTER 3		/* answers in a row that may be about a batch's content */
#define PICTURE_FETCHES 4	/* picture = data: fetches at once per target */
#define PICTURE_BATCH_ROWS 4	/* ... and events per request at most */

enum batch_state {
	BATCH_READY,		/* goes when a slot of its lane is free */
	BATCH_SENDING,
	BATCH_WAITING,		/* failed: sent again by a probe, when the lane is
				 * back, or (suspect) at due_ms */
};

/* Counters of one target, since start (logged at stop). */
struct forward_stats {
	uint64_t sent_rows;
	uint64_t sent_requests;
	uint64_t retried_requests;	/* attempts that will be tried again */
	uint64_t failed_rows_4xx;	/* refused by the platform */
	uint64_t failed_rows_other;	/* gone from events, max_attempts or max_age */
	uint64_t splits;		/* batches split to find the rows at fault */
	uint64_t tls_errors;
	uint64_t latency_ms_sum;	/* of answered requests */
	uint64_t latency_ms_max;
	uint64_t latency_count;
	uint64_t requests[5];		/* by status class: none, 2xx, 3xx, 4xx, 5xx */
	struct metrics_hist seconds;	/* request duration, answered or not */
};

static const char *const status_classes[5] = { "none", "2xx", "3xx", "4xx", "5xx" };
static const double request_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
	10, 30, 60 };

/* Pending outbox rows of one target, as the database last said. */
struct pending {
	char target[128];
	uint64_t rows;
	double oldest_s;
};
#define PENDING_MAX 256		/* targets reported at most */
#define PENDING_MS 5000		/* how often the outbox is counted */

/* An outbox row the forwarder holds. */
struct row {
	uint8_t id[16];
	int priority;
	int attempts;		/* requests with an outcome for it, by any process */
	int64_t born_ms;	/* the outbox row's creation, on util_mono_ms()'s clock */
	uint8_t *record;	/* packed Event */
	size_t record_len;
	struct viid_picture *pics;	/* picture = data: fetched, each data malloc'd */
	size_t npics;
};

struct target;
struct lane;
struct slot;
struct fetch;

/* Rows sent together: one body, one Idempotency-Key. */
struct batch {
	struct lane *l;
	struct batch *next;
	enum batch_state state;
	struct row *rows;	/* in body order */
	size_t n;
	int kind;		/* the profile's row_kind of its rows; 0 without */
	char *body;
	size_t body_len;
	char key[33];		/* Idempotency-Key */
	int streak;		/* retryable failures in a row */
	int content_fails;	/* ... that may be about its content (since a split) */
	bool suspect;		/* failed again after other requests of the lane passed */
	uint64_t seen_ok;	/* the lane's `oks` at its last failure */
	int64_t due_ms;		/* a suspect batch waits until then */
	int64_t tried_ms;	/* its last request started */
	struct slot *slot;	/* while sending */
};

/* One request at a time. */
struct slot {
	struct lane *l;
	CURL *easy;
	struct curl_slist *headers;
	struct batch *b;		/* NULL: idle */
	unsigned char *reply;		/* grows up to the profile's reply_keep */
	size_t reply_cap;
	size_t reply_len;
	bool reply_cut;			/* the reply was longer */
	char errbuf[CURL_ERROR_SIZE];
	int64_t started_ms;
	uint64_t session_epoch;		/* viid: the session its handle last sent under */
};

/* The rows of a range of priorities, with their own slots and health. */
struct lane {
	struct target *t;
	const char *name;		/* "alarm" or "routine" */
	int min_priority, max_priority;
	struct slot *slots;
	size_t nslots;
	struct batch *batches;		/* held, in claim order */
	size_t nrows;			/* rows held */
	size_t nbytes;			/* ... their records' bytes */
	bool claiming;			/* a claim is in the store's queue */
	bool again;			/* pump again when the claim is back */
	bool claim_full;		/* the last claim stopped at its rows or bytes:
					 * more may be due */
	bool dirty;			/* rows may have become due since the last claim
					 * began: committed, the poll, the lane back */
	struct event *linger;		/* pending: the lane waits for more rows */
	bool probe_claim;		/* that claim is the probe */
	bool healthy;
	struct backoff backoff;
	struct event *timer;		/* failing: the probe; else the next due batch */
	int64_t outage_started_ms;
	bool tls_outage;		/* the failures began with a TLS error */
	struct batch *probe;		/* the batch probing a failing lane */
	struct fetch *fetch;		/* a claim's rows waiting for their pictures */
	uint64_t oks;			/* requests the platform answered (2xx, 4xx) */
};

struct target {
	struct forward *f;
	char *name;
	char *url;
	const struct forward_profile *profile;
	struct forward_profile *viid_profile;	/* profile viid: ours to free */
	struct viid_session *session;	/* profile viid (a subscription's: its parent's) */
	struct viid_lease *lease;	/* session = shared: held while ours */
	struct viid_cascade *cascade;	/* mode = cascade: the listener, the subscriptions */
	struct viid_fetcher *fetcher;	/* picture = data (a subscription: its parent's) */
	struct target *parent;		/* a subscription's: the cascade target */
	bool retired;			/* a subscription's, ended or replaced: freed once
					 * its lanes' claims are back */
	char *user_identify;		/* "User-Identify: ..." (viid) */
	char *username, *password;	/* viid, auth digest or basic */
	enum forward_auth viid_auth;
	enum forward_auth notify_auth;	/* cascade: its subscriptions' viid_auth */
	bool allow_http;
	char *ca_file, *cert_file, *key_file, *proxy;
	char *auth;			/* "Authorization: Bearer ..." or NULL */
	long connect_timeout, timeout;
	size_t batch_rows, batch_bytes;
	int linger_ms;			/* the routine lane, after a small batch */
	int lease_s;
	long long max_attempts;
	int64_t max_age_ms;		/* 0: no limit */
	long long retry_after_max_s;
	int alarm_priority;
	uint32_t retry_base_ms, retry_cap_ms;
	struct lane lanes[2];
	size_t nlanes;
	struct forward_stats st;
};

struct forward {
	struct event_base *base;
	struct outbox outbox;
	struct forward_curl *curl;
	struct event *poll;
	struct target *targets;
	size_t ntargets;
	/* The subscriptions of cascade targets, each a target of its own
	 * ("<target>/<SubscribeID>"), retired ones included until freed. */
	struct target **subs;
	size_t nsubs, capsubs;
	struct event *count;		/* counts the pending rows (metrics) */
	bool counting;			/* a count is in the store's queue */
	bool counted;			/* `pending` is from the database */
	struct pending *pending;
	size_t npending;
};

static void lane_pump(struct lane *l);
static void request_done(void *forward, CURL *easy, void *slot, CURLcode code);
static void target_reap(struct target *t);
static bool target_failing(const struct target *t);

/* A configured string; an unset one is "". */
static const char *
configured(const char *s)
{
	return s != NULL ? s : "";
}

/* A copy of a configured string; an unset one is "". */
static char *
str_or_empty(const char *s)
{
	return util_strdup(s != NULL ? s : "");
}

static bool
is_https(const char *url)
{
	return strncasecmp(url, "https://", 8) == 0;
}

/* ---- requests' replies ------------------------------------------------- */

static size_t
write_fn(char *data, size_t size, size_t nmemb, void *userp)
{
	struct slot *sl = userp;
	size_t n = size * nmemb;
	size_t keep = sl->l->t->profile->reply_keep;
	if (keep == 0)
		keep = FORWARD_REPLY_KEEP;
	size_t room = keep - sl->reply_len;
	size_t take = n < room ? n : room;

	if (sl->reply_len + take > sl->reply_cap) {
		size_t cap = sl->reply_cap ? sl->reply_cap : FORWARD_REPLY_KEEP;
		while (cap < sl->reply_len + take)
			cap *= 2;
		if (cap > keep)
			cap = keep;
		sl->reply = util_realloc(sl->reply, cap);
		sl->reply_cap = cap;
	}
	if (take > 0)
		memcpy(sl->reply + sl->reply_len, data, take);
	sl->reply_len += take;
	if (take < n)
		sl->reply_cut = true;
	return n;		/* the rest is read and dropped */
}

/* ---- batches ----------------------------------------------------------- */

/* Rows in claim order: priority first, then age (the claim's `order`). */
static int
cmp_rows(const void *a, const void *b)
{
	const struct outbox_row *x = a, *y = b;

	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	return memcmp(x->event_id, y->event_id, 16);
}

/* What a profile sees of a row. */
static struct forward_record
rec_of(const struct row *r)
{
	return (struct forward_record){
		.id = r->id, .record = r->record, .len = r->record_len,
		.pictures = r->pics, .npictures = r->npics,
	};
}

/* Frees what row `r` holds (not `r`). */
static void
row_free(struct row *r)
{
	free(r->record);
	r->record = NULL;
	for (size_t i = 0; i < r->npics; i++)
		free((void *)r->pics[i].data);
	free(r->pics);
	r->pics = NULL;
	r->npics = 0;
}

/* The bytes a row holds in memory. */
static size_t
row_bytes(const struct row *r)
{
	size_t n = r->record_len;

	for (size_t i = 0; i < r->npics; i++)
		n += r->pics[i].len;
	return n;
}

/* The body and the Idempotency-Key of the batch's rows, in body order. */
static void
batch_seal(struct batch *b)
{
	const struct forward_profile *pr = b->l->t->profile;
	struct forward_record *recs = util_malloc(b->n * sizeof(*recs));

	for (size_t i = 0; i < b->n; i++)
		recs[i] = rec_of(&b->rows[i]);
	pr->batch_key(recs, b->n, b->key);
	free(b->body);
	b->body = pr->build_body_ctx != NULL ? pr->build_body_ctx(pr->ctx, recs, b->n, &b->body_len) :
	    pr->build_body(recs, b->n, &b->body_len);
	free(recs);
}

/* The ids of rows [from, from + n) of `b`, 16 bytes each. */
static uint8_t *
batch_ids(const struct batch *b, size_t from, size_t n)
{
	uint8_t *ids = util_malloc(16 * n);
	for (size_t i = 0; i < n; i++)
		memcpy(ids + 16 * i, b->rows[from + i].id, 16);
	return ids;
}

/* A new batch of `rows` (which it owns from now on), last of its lane. */
static struct batch *
batch_new(struct lane *l, struct row *rows, size_t n, int kind, enum batch_state state)
{
	struct batch *b = util_calloc(1, sizeof(*b));
	b->l = l;
	b->rows = rows;
	b->n = n;
	b->kind = kind;
	b->state = state;
	batch_seal(b);
	struct batch **at = &l->batches;
	while (*at != NULL)
		at = &(*at)->next;
	*at = b;
	l->nrows += n;
	for (size_t i = 0; i < n; i++)
		l->nbytes += row_bytes(&rows[i]);
	return b;
}

/* Unlinks `b` from its lane and frees it. */
static void
batch_drop(struct batch *b)
{
	struct lane *l = b->l;

	for (struct batch **at = &l->batches; *at != NULL; at = &(*at)->next) {
		if (*at == b) {
			*at = b->next;
			break;
		}
	}
	if (l->probe == b)
		l->probe = NULL;
	l->nrows -= b->n;
	for (size_t i = 0; i < b->n; i++) {
		l->nbytes -= row_bytes(&b->rows[i]);
		row_free(&b->rows[i]);
	}
	free(b->rows);
	free(b->body);
	free(b);
}

/* Rows for which `drop[i]` is set leave `b` (which may end empty). */
static void
batch_remove(struct batch *b, const bool *drop)
{
	size_t keep = 0;

	for (size_t i = 0; i < b->n; i++) {
		if (drop[i]) {
			b->l->nbytes -= row_bytes(&b->rows[i]);
			row_free(&b->rows[i]);
		} else {
			b->rows[keep++] = b->rows[i];
		}
	}
	b->l->nrows -= b->n - keep;
	b->n = keep;
	if (keep > 0)
		batch_seal(b);
}

/* Splits `b` in halves, the second right after it; both keep b's state
 * and history, each its own body and key. */
static void
batch_split(struct batch *b, const char *why)
{
	struct lane *l = b->l;
	size_t half = b->n / 2;
	struct row *rest = util_malloc((b->n - half) * sizeof(*rest));
	struct batch *c = util_calloc(1, sizeof(*c));
	log_info("forward", "batch split", "target=%s lane=%s events=%zu halves=%zu+%zu why=%s",
	    l->t->name, l->name, b->n, half, b->n - half, why);
	l->t->st.splits++;
	memcpy(rest, b->rows + half, (b->n - half) * sizeof(*rest));
	*c = *b;
	c->rows = rest;
	c->n = b->n - half;
	c->body = NULL;
	c->slot = NULL;
	c->content_fails = 0;
	b->n = half;
	b->content_fails = 0;
	b->next = c;
	batch_seal(b);
	batch_seal(c);
}

static void
settle(struct lane *l, const uint8_t *ids, size_t n, enum outbox_outcome o, int status,
    const char *error, int64_t retry_in_ms)
{
	const struct outbox *ob = &l->t->f->outbox;

	ob->settle(ob->ctx, l->t->name, ids, n, o, status, error, retry_in_ms);
}

static void
settle_batch(struct batch *b, enum outbox_outcome o, int status, const char *error,
    int64_t retry_in_ms)
{
	uint8_t *ids = batch_ids(b, 0, b->n);

	settle(b->l, ids, b->n, o, status, error, retry_in_ms);
	free(ids);
}

/* A lane holds at most one batch's worth of rows and bytes more than its
 * slots send at once (the probe's, while it fails). */
static bool
lane_full(const struct lane *l)
{
	return l->nrows >= (l->nslots + 1) * l->t->batch_rows ||
	    l->nbytes >= (l->nslots + 1) * l->t->batch_bytes;
}

static struct slot *
free_slot(struct lane *l)
{
	for (size_t i = 0; i < l->nslots; i++)
		if (l->slots[i].b == NULL)
			return &l->slots[i];
	return NULL;
}

static void
arm(struct lane *l, int64_t ms)
{
	if (ms < 0)
		ms = 0;
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(l->timer, &tv);
}

/* Waiting batches that may go now become ready: all of them but the
 * suspect ones not yet due, for which the timer is armed. */
static void
promote(struct lane *l)
{
	int64_t now = util_mono_ms(), next = -1;

	for (struct batch *b = l->batches; b != NULL; b = b->next) {
		if (b->state != BATCH_WAITING)
			continue;
		if (!b->suspect || b->due_ms <= now)
			b->state = BATCH_READY;
		else if (next < 0 || b->due_ms < next)
			next = b->due_ms;
	}
	if (next >= 0)
		arm(l, next - now);
}

/* A viid target sends nothing while its session is down. */
static bool
paused(const struct target *t)
{
	return t->session != NULL && !viid_session_is_up(t->session);
}

/* ---- claims ------------------------------------------------------------ */

static void probe(struct lane *l, bool may_claim);
static bool start_batch(struct batch *b);

/* A profile that answers per row: rows it will never send fail now, with
 * its reason; the others go in one batch per kind, in claim order.
 * Returns the first batch (NULL: none). Takes `rs`. */
static struct batch *
batches_by_kind(struct lane *l, struct row *rs, size_t n)
{
	struct target *t = l->t;
	const struct forward_profile *pr = t->profile;
	int *kinds = util_calloc(n ? n : 1, sizeof(*kinds));
	struct batch *first = NULL;
	size_t left = 0;

	for (size_t i = 0; i < n; i++) {
		const char *why = "";
		struct forward_record rec = rec_of(&rs[i]);
		kinds[i] = pr->row_kind(pr->ctx, &rec, &why);
		if (kinds[i] < 0) {
			settle(l, rs[i].id, 1, OUTBOX_FAILED, 0, why, 0);
			t->st.failed_rows_other++;
			log_error("forward", "event not sent, refused by the profile", "target=%s "
			    "lane=%s reason=%s", t->name, l->name, why);
			row_free(&rs[i]);
			continue;
		}
		left++;
	}
	while (left > 0) {
		int kind = -1;
		size_t k = 0;
		struct row *group = util_malloc(left * sizeof(*group));
		for (size_t i = 0; i < n; i++) {
			if (kinds[i] < 0 || (kind >= 0 && kinds[i] != kind))
				continue;
			kind = kinds[i];
			group[k++] = rs[i];
			kinds[i] = -1;
		}
		left -= k;
		struct batch *b = batch_new(l, group, k, kind,
		    l->healthy ? BATCH_READY : BATCH_WAITING);
		if (first == NULL)
			first = b;
	}
	free(kinds);
	free(rs);
	return first;
}

/* A claim's rows, ready (pictures fetched where the profile needs them):
 * batches, then the probe or more claims. `n` rows were claimed, `keep`
 * of them are in `rs` (which this takes). */
static void
rows_ready(struct lane *l, struct row *rs, size_t keep, bool ok, size_t n)
{
	struct target *t = l->t;
	bool probing = l->probe_claim && !l->healthy;
	struct batch *b = NULL;

	l->claiming = false;
	l->probe_claim = false;
	if (keep > 0 && t->profile->row_kind != NULL)
		b = batches_by_kind(l, rs, keep);
	else if (keep > 0)
		b = batch_new(l, rs, keep, 0, l->healthy ? BATCH_READY : BATCH_WAITING);
	else
		free(rs);
	if (probing) {
		if (b != NULL) {
			l->probe = b;
			if (!start_batch(b))
				l->probe = NULL;	/* the requests in flight tell */
		} else if (ok) {
			probe(l, false);	/* with a waiting batch */
		} else {
			arm(l, backoff_next(&l->backoff, backoff_random()));
		}
		return;
	}
	/* Send the batch just made; claim again only if more rows may be due
	 * (the claim was full, or rows were committed while it ran: lane_pump
	 * tells). The rest is found by the poll. */
	if (ok && (n > 0 || l->again))
		lane_pump(l);
}

/* ---- pictures (picture = data) ----------------------------------------- */

/* A claim's rows waiting for their pictures. */
struct fetch {
	struct lane *l;
	struct row *rs;
	size_t keep, n;
	bool ok;
	size_t *row_of, *pic_of;	/* result k is picture pic_of[k] of rs[row_of[k]] */
	size_t nres;
	struct viid_fetch_job *job;
};

static void
fetch_free(struct fetch *fe, bool rows)
{
	for (size_t i = 0; rows && i < fe->keep; i++)
		row_free(&fe->rs[i]);
	if (rows)
		free(fe->rs);
	free(fe->row_of);
	free(fe->pic_of);
	free(fe);
}

/* Gives up row `r` whose picture could not be had: failed now (`failed`,
 * or at max_attempts or max_age), else tried again after a backoff. */
static void
picture_missing(struct lane *l, struct row *r, bool failed, const char *error)
{
	struct target *t = l->t;
	char why[VIID_FETCH_ERROR_MAX + 80];

	r->attempts++;
	bool over = (t->max_attempts > 0 && r->attempts >= t->max_attempts) ||
	    (t->max_age_ms > 0 && util_mono_ms() - r->born_ms >= t->max_age_ms);
	const char *missing = forward_viid_refusal_name(VIID_REFUSED_PICTURE_MISSING);
	if (over && !failed)
		snprintf(why, sizeof(why), "gave up after %d attempts: %s: %s", r->attempts,
		    missing, error);
	else
		snprintf(why, sizeof(why), "%s: %s", missing, error);
	if (failed || over) {
		log_error("forward", "event not sent, picture missing", "target=%s lane=%s error=%s",
		    t->name, l->name, error);
		settle(l, r->id, 1, OUTBOX_FAILED, 0, why, 0);
		t->st.failed_rows_other++;
	} else {
		struct backoff bo;
		backoff_init(&bo, t->retry_base_ms, t->retry_cap_ms);
		bo.attempt = (uint32_t)(r->attempts - 1);
		uint32_t delay = backoff_next(&bo, backoff_random());
		log_warn("forward", "picture not fetched, retrying", "target=%s lane=%s error=%s "
		    "retry_in_ms=%u", t->name, l->name, error, delay);
		settle(l, r->id, 1, OUTBOX_RETRY, 0, why, delay);
	}
	row_free(r);
}

static void
fetched(void *ctx, struct viid_fetch_result *res, size_t nres)
{
	struct fetch *fe = ctx;
	struct lane *l = fe->l;
	struct target *t = l->t;
	size_t kept = 0;

	/* The pictures to their rows; each row's worst result. */
	const struct viid_fetch_result **worst = util_calloc(fe->keep, sizeof(*worst));
	for (size_t k = 0; k < nres && k < fe->nres; k++) {
		struct row *r = &fe->rs[fe->row_of[k]];
		const struct viid_fetch_result **w = &worst[fe->row_of[k]];
		if (res[k].status == VIID_FETCH_OK) {
			r->pics[fe->pic_of[k]] = (struct viid_picture){ res[k].data, res[k].len };
			res[k].data = NULL;	/* the row's now */
		} else if (*w == NULL || res[k].status == VIID_FETCH_FAILED) {
			*w = &res[k];
		}
	}
	for (size_t i = 0; i < fe->keep; i++) {
		struct row *r = &fe->rs[i];
		if (t->retired) {
			settle(l, r->id, 1, OUTBOX_DEFER, 0, NULL, 0);
			row_free(r);
		} else if (worst[i] != NULL) {
			picture_missing(l, r, worst[i]->status == VIID_FETCH_FAILED, worst[i]->error);
		} else {
			fe->rs[kept++] = *r;
		}
	}
	free(worst);
	struct row *rs = fe->rs;
	size_t n = fe->n;
	bool ok = fe->ok;
	l->fetch = NULL;
	fetch_free(fe, false);
	if (t->retired) {
		free(rs);
		l->claiming = false;
		target_reap(t);
		return;
	}
	rows_ready(l, rs, kept, ok, n);
}

/* Fetches the pictures the rows' bodies need, then rows_ready(). */
static void
fetch_pictures(struct lane *l, struct row *rs, size_t keep, bool ok, size_t n)
{
	const struct forward_profile *pr = l->t->profile;
	size_t cap = keep * 2 + 2;
	char **urls = util_malloc(cap * sizeof(*urls));
	struct fetch *fe = util_calloc(1, sizeof(*fe));

	*fe = (struct fetch){ .l = l, .rs = rs, .keep = keep, .n = n, .ok = ok };
	fe->row_of = util_malloc(cap * sizeof(*fe->row_of));
	fe->pic_of = util_malloc(cap * sizeof(*fe->pic_of));
	for (size_t i = 0; i < keep; i++) {
		char *u[VIID_PICTURES_MAX];
		struct forward_record rec = rec_of(&rs[i]);
		size_t m = pr->picture_urls(pr->ctx, &rec, u, VIID_PICTURES_MAX);
		rs[i].pics = util_calloc(m ? m : 1, sizeof(*rs[i].pics));
		rs[i].npics = m;
		for (size_t k = 0; k < m; k++) {
			if (u[k][0] == '\0') {	/* no picture there: none asked for */
				free(u[k]);
				continue;
			}
			if (fe->nres == cap) {
				cap *= 2;
				urls = util_realloc(urls, cap * sizeof(*urls));
				fe->row_of = util_realloc(fe->row_of, cap * sizeof(*fe->row_of));
				fe->pic_of = util_realloc(fe->pic_of, cap * sizeof(*fe->pic_of));
			}
			fe->row_of[fe->nres] = i;
			fe->pic_of[fe->nres] = k;
			urls[fe->nres++] = u[k];
		}
	}
	size_t total = fe->nres;
	if (total == 0) {
		/* Nothing to fetch: the profile refuses those rows (no_picture). */
		free(fe->row_of);
		free(fe->pic_of);
		free(fe);
		free(urls);
		rows_ready(l, rs, keep, ok, n);
		return;
	}
	l->fetch = fe;
	fe->job = viid_fetch(l->t->fetcher, (const char *const *)urls, total, fetched, fe);
	for (size_t k = 0; k < total; k++)
		free(urls[k]);
	free(urls);
}

static void
claimed(void *ctx, struct outbox_row *rows, size_t n, bool ok)
{
	struct lane *l = ctx;
	struct target *t = l->t;
	struct row *rs = NULL;
	size_t keep = 0;

	if (t->retired) {
		/* Leased to a subscription that ended or changed: back to the
		 * outbox at once (a changed one claims them again). */
		for (size_t i = 0; ok && i < n; i++)
			settle(l, rows[i].event_id, 1, OUTBOX_DEFER, 0, NULL, 0);
		l->claiming = false;
		target_reap(t);
		return;
	}
	/* Rows come in the claim's order, each with the record bytes before
	 * it: the first row the byte bound left out had as many before it as
	 * the last one taken, plus that one's. */
	l->claim_full = false;
	if (!ok)
		l->dirty = true;	/* what it would have found is still there */
	if (ok && n > 0) {
		int64_t end = 0;
		for (size_t i = 0; i < n; i++)
			if (rows[i].order + (int64_t)rows[i].record_len > end)
				end = rows[i].order + (int64_t)rows[i].record_len;
		l->claim_full = n >= t->batch_rows || end >= (int64_t)t->batch_bytes;
		qsort(rows, n, sizeof(*rows), cmp_rows);
		rs = util_calloc(n, sizeof(*rs));
		int64_t now = util_mono_ms();
		for (size_t i = 0; i < n; i++) {
			/* Rows whose event retention already removed cannot be sent. */
			if (rows[i].record == NULL) {
				settle(l, rows[i].event_id, 1, OUTBOX_FAILED, 0, "event no longer stored", 0);
				t->st.failed_rows_other++;
				log_error("forward", "event no longer stored, not sent", "target=%s", t->name);
				continue;
			}
			struct row *r = &rs[keep++];
			memcpy(r->id, rows[i].event_id, 16);
			r->priority = rows[i].priority;
			r->attempts = rows[i].attempts;
			r->born_ms = now - rows[i].age_ms;
			r->record_len = rows[i].record_len;
			r->record = util_malloc(r->record_len);
			memcpy(r->record, rows[i].record, r->record_len);
		}
	}
	/* The claim is under way until the pictures are in. */
	if (keep > 0 && t->fetcher != NULL && t->profile->picture_urls != NULL) {
		fetch_pictures(l, rs, keep, ok, n);
		return;
	}
	rows_ready(l, rs, keep, ok, n);
}

/* Claims rows for the lane: never rows it holds already. */
static void
claim(struct lane *l, bool probing)
{
	struct target *t = l->t;
	uint8_t *held = util_malloc(16 * l->nrows);
	size_t k = 0;

	for (struct batch *b = l->batches; b != NULL; b = b->next)
		for (size_t i = 0; i < b->n; i++)
			memcpy(held + 16 * k++, b->rows[i].id, 16);
	struct outbox_claim c = {
		.target = t->name,
		.min_priority = l->min_priority,
		.max_priority = l->max_priority,
		.max_rows = t->batch_rows,
		.max_bytes = t->batch_bytes,
		.lease_s = t->lease_s,
		.fenced = t->lease != NULL,
		.exclude = held,
		.nexclude = k,
	};
	l->claiming = true;
	l->again = false;
	l->dirty = false;
	l->probe_claim = probing;
	t->f->outbox.claim(t->f->outbox.ctx, &c, claimed, l);
	free(held);
}

/* Suspect batches do not keep a lane from claiming: when they fill what
 * it may hold, the one due last goes back to the outbox until its due
 * time (claimed again then, with other rows). */
static void
make_room(struct lane *l)
{
	while (lane_full(l)) {
		struct batch *last = NULL;
		for (struct batch *b = l->batches; b != NULL; b = b->next)
			if (b->state == BATCH_WAITING && b->suspect &&
			    (last == NULL || b->due_ms >= last->due_ms))
				last = b;
		if (last == NULL)
			return;
		int64_t in = last->due_ms - util_mono_ms();
		log_debug("forward", "batch back to the outbox", "target=%s lane=%s events=%zu "
		    "due_in_ms=%lld", l->t->name, l->name, last->n, (long long)in);
		settle_batch(last, OUTBOX_DEFER, 0, NULL, in > 0 ? in : 0);
		batch_drop(last);
	}
}

/* A healthy lane sends what is ready and claims rows for idle slots, one
 * claim at a time. */
static void
lane_pump(struct lane *l)
{
	if (!l->healthy || paused(l->t))
		return;
	for (struct batch *b = l->batches; b != NULL; b = b->next)
		if (b->state == BATCH_READY && !start_batch(b))
			return;		/* no slot free */
	/* A slot that comes free claims only when rows may be due: after a
	 * claim that took every due row, nothing is until rows are committed
	 * or time passes (the poll): at 5,000 events a second, such claims
	 * were most of the forwarder's queries and found nothing. */
	if (!l->dirty && !l->claim_full)
		return;
	if (evtimer_pending(l->linger, NULL))
		return;		/* gathering rows; linger_cb claims */
	if (l->claiming) {
		l->again = true;
		return;
	}
	if (free_slot(l) == NULL)
		return;
	make_room(l);
	if (!lane_full(l))
		claim(l, false);
}

/* ---- requests ---------------------------------------------------------- */

/* A viid request: User-Identify, and the credentials on a handle that is
 * not reset, so that libcurl reuses the platform's Digest nonce. */
static struct curl_slist *
viid_headers(struct slot *sl, struct batch *b, char *url, size_t len)
{
	struct target *t = sl->l->t;
	CURL *e = sl->easy;
	const char *method = "POST";
	const char *path = t->profile->kind_path(b->kind, &method);

	snprintf(url, len, "%s%s", t->url, path);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
	if (t->viid_auth != FORWARD_AUTH_NONE) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, t->viid_auth == FORWARD_AUTH_BASIC ?
		    (long)CURLAUTH_BASIC : (long)CURLAUTH_DIGEST);
		curl_easy_setopt(e, CURLOPT_USERNAME, t->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, t->password);
	}
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, t->profile->content_type);
	h = curl_slist_append(h, "Accept: application/json,application/VIID+JSON");
	h = curl_slist_append(h, t->user_identify);
	h = curl_slist_append(h, "Expect:");
	return h;
}

static int
setup_easy(struct slot *sl, struct batch *b)
{
	struct target *t = sl->l->t;
	CURL *e = sl->easy;
	const char *protocols = t->allow_http ? "https,http" : "https";
	char url[4200];
	struct curl_slist *h = NULL;

	curl_slist_free_all(sl->headers);
	sl->headers = NULL;
	if (t->session != NULL) {
		/* libcurl keeps the Digest nonce per handle: a handle that last
		 * sent under an earlier session would answer the platform with
		 * a nonce it forgot. Reset, it gets a fresh challenge. */
		uint64_t epoch = viid_session_epoch(t->session);
		if (sl->session_epoch != epoch) {
			curl_easy_reset(e);
			sl->session_epoch = epoch;
		}
		h = viid_headers(sl, b, url, sizeof(url));
	} else {
		curl_easy_reset(e);
		snprintf(url, sizeof(url), "%s", t->url);
		char key[64];
		snprintf(key, sizeof(key), "Idempotency-Key: %s", b->key);
		h = curl_slist_append(h, t->profile->content_type);
		h = curl_slist_append(h, key);
		h = curl_slist_append(h, "Expect:");
		if (t->auth != NULL)
			h = curl_slist_append(h, t->auth);
	}
	if (h == NULL)
		return -1;
	sl->headers = h;
	sl->reply_len = 0;
	sl->reply_cut = false;
	sl->errbuf[0] = '\0';
	if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protocols) != CURLE_OK)
		return -1;
	curl_easy_setopt(e, CURLOPT_PRIVATE, sl);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "gridbridge/" GRIDBRIDGE_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fn);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, sl);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, sl->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, t->connect_timeout);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, t->timeout);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	/* "" also keeps proxy environment variables out. */
	curl_easy_setopt(e, CURLOPT_PROXY, t->proxy);
	if (t->ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
	if (t->cert_file[0] != '\0') {
		curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert_file);
		curl_easy_setopt(e, CURLOPT_SSLKEY, t->key_file);
	}
	return 0;
}

/* A request that could not start: the batch waits a second, and a
 * failing lane gets its next probe. */
static void
not_started(struct batch *b)
{
	struct lane *l = b->l;

	b->slot->b = NULL;
	b->slot = NULL;
	b->state = BATCH_WAITING;
	b->suspect = true;
	b->due_ms = util_mono_ms() + 1000;
	if (l->probe == b)
		l->probe = NULL;
	if (l->healthy)
		promote(l);
	else if (!evtimer_pending(l->timer, NULL))
		arm(l, 1000);
}

/* Sends `b` on a free slot of its lane; false when none is free. */
static bool
start_batch(struct batch *b)
{
	struct lane *l = b->l;
	struct slot *sl = paused(l->t) ? NULL : free_slot(l);

	if (sl == NULL)
		return false;
	sl->b = b;
	b->slot = sl;
	b->state = BATCH_SENDING;
	b->tried_ms = util_mono_ms();
	if (sl->easy == NULL)
		sl->easy = curl_easy_init();
	if (sl->easy == NULL || setup_easy(sl, b) != 0) {
		log_error("forward", "cannot set up request", "target=%s", l->t->name);
		not_started(b);
		return true;
	}
	sl->started_ms = b->tried_ms;
	CURLMcode mc = forward_curl_add(l->t->f->curl, sl->easy);
	if (mc != CURLM_OK) {
		log_error("forward", "cannot start request", "target=%s error=%s", l->t->name,
		    curl_multi_strerror(mc));
		not_started(b);
	}
	return true;
}

/* The probe of a failing lane: a new batch while it may hold one, else
 * the waiting batch tried least recently (ones that failed while others
 * passed last). With nothing to probe with, the lane claims again. */
static void
probe(struct lane *l, bool may_claim)
{
	if (l->probe != NULL || paused(l->t))
		return;		/* a session that comes up probes */
	if (l->claiming) {
		l->probe_claim = true;	/* the claim under way is the probe */
		return;
	}
	if (may_claim && !lane_full(l) && free_slot(l) != NULL) {
		claim(l, true);
		return;
	}
	struct batch *best = NULL;
	bool sending = false;
	for (struct batch *b = l->batches; b != NULL; b = b->next) {
		if (b->state == BATCH_SENDING)
			sending = true;
		if (b->state != BATCH_WAITING && b->state != BATCH_READY)
			continue;
		if (best == NULL || (best->suspect && !b->suspect) ||
		    (best->suspect == b->suspect && b->tried_ms < best->tried_ms))
			best = b;
	}
	if (best == NULL) {
		if (sending)
			return;		/* the requests in flight tell */
		l->healthy = true;	/* nothing left to send: claim again */
		l->dirty = true;
		lane_pump(l);
		return;
	}
	l->probe = best;
	if (!start_batch(best))
		l->probe = NULL;	/* no slot free: the requests in flight tell */
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;

	(void)fd;
	(void)what;
	if (!l->healthy) {
		probe(l, true);
		return;
	}
	promote(l);
	lane_pump(l);
}

/* The platform answered: the lane is up, its waiting batches go now (the
 * suspect ones when due), new rows are claimed. */
static void
lane_up(struct lane *l)
{
	if (!l->healthy) {
		log_info("forward", "target available again", "target=%s lane=%s outage_ms=%lld",
		    l->t->name, l->name, (long long)(util_mono_ms() - l->outage_started_ms));
		l->healthy = true;
		l->dirty = true;
	}
	evtimer_del(l->timer);
	l->tls_outage = false;
	l->probe = NULL;
	l->oks++;
	backoff_reset(&l->backoff);
	promote(l);
	lane_pump(l);
}

/* After a failed attempt: rows that reached max_attempts or max_age are
 * failed with the reason, and leave the batch. */
static void
give_up(struct batch *b, const bool *over_attempts, const bool *over_age, int status,
    const char *why)
{
	struct lane *l = b->l;
	struct target *t = l->t;
	const bool *sets[2] = { over_attempts, over_age };
	bool *drop = util_calloc(b->n, sizeof(*drop));
	uint8_t *ids = util_malloc(16 * b->n);

	for (int k = 0; k < 2; k++) {
		size_t n = 0;
		int attempts = 0;
		for (size_t i = 0; i < b->n; i++) {
			if (!sets[k][i] || drop[i])
				continue;
			drop[i] = true;
			memcpy(ids + 16 * n++, b->rows[i].id, 16);
			if (b->rows[i].attempts > attempts)
				attempts = b->rows[i].attempts;
		}
		if (n == 0)
			continue;
		char msg[FORWARD_TEXT_MAX + 160];
		if (k == 0) {
			snprintf(msg, sizeof(msg), "gave up after %d attempts: %s", attempts, why);
			log_error("forward", "events not sent, attempts exhausted", "target=%s lane=%s "
			    "events=%zu attempts=%d error=%s", t->name, l->name, n, attempts, why);
		} else {
			long long age_s = t->max_age_ms / 1000;
			snprintf(msg, sizeof(msg), "gave up after %d attempts, older than max_age "
			    "(%llds): %s", attempts, age_s, why);
			log_error("forward", "events not sent, too old", "target=%s lane=%s events=%zu "
			    "attempts=%d max_age_s=%lld error=%s", t->name, l->name, n, attempts, age_s,
			    why);
		}
		settle(l, ids, n, OUTBOX_FAILED, status, msg, 0);
		t->st.failed_rows_other += n;
	}
	batch_remove(b, drop);
	free(ids);
	free(drop);
}

/* A retryable failure: 408, 429, 5xx, no answer (the outcome says which,
 * and why). */
static void
batch_failed(struct slot *sl, struct batch *b, long status, const struct forward_outcome *o)
{
	struct lane *l = sl->l;
	struct target *t = l->t;
	int64_t now = util_mono_ms();
	const char *why = o->text;
	long long retry_after = o->retry_after_s;

	/* TLS failures stay TLS failures until a request succeeds. */
	bool tls = o->verdict == FORWARD_RETRY_TLS;
	if (tls)
		l->tls_outage = true;
	/* May the batch's content be at fault? A 408 or 5xx answer, or a
	 * request that went out and got no answer (a timeout, a connection
	 * lost). Not a 429 or an answer with Retry-After (about the
	 * platform's state), a refused connection or a TLS failure. */
	bool content = o->verdict == FORWARD_RETRY_CONTENT;
	/* Failing again after other requests of the lane passed: the
	 * batch's problem, not the platform's (and it stays so). */
	bool suspect = content && (b->suspect || (b->streak > 0 && l->oks != b->seen_ok));
	b->streak++;
	if (content)
		b->content_fails++;
	b->seen_ok = l->oks;

	int64_t delay;
	if (suspect && l->healthy) {
		struct backoff own;
		backoff_init(&own, t->retry_base_ms, t->retry_cap_ms);
		own.attempt = (uint32_t)(b->streak - 1);
		delay = backoff_next(&own, backoff_random());
	} else {
		delay = backoff_next(&l->backoff, backoff_random());
	}
	if (retry_after > 0) {
		if (retry_after > t->retry_after_max_s) {
			log_warn("forward", "Retry-After capped", "target=%s lane=%s retry_after_s=%lld "
			    "retry_in_ms=%lld", t->name, l->name, retry_after,
			    t->retry_after_max_s * 1000);
			retry_after = t->retry_after_max_s;
		}
		delay = (int64_t)retry_after * 1000;
	}

	/* Rows at their limit are given up, but not while the batch holds
	 * others and may be failing for one of them: it is split first. */
	bool *over = util_calloc(2 * b->n, sizeof(*over));
	size_t nover = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct row *r = &b->rows[i];
		r->attempts++;
		over[i] = t->max_attempts > 0 && r->attempts >= t->max_attempts;
		over[b->n + i] = t->max_age_ms > 0 && now - r->born_ms >= t->max_age_ms;
		if (over[i] || over[b->n + i])
			nover++;
	}
	if (nover > 0 && content && b->n > 1)
		b->content_fails = SPLIT_AFTER;
	else if (nover > 0)
		give_up(b, over, over + b->n, (int)status, why);
	free(over);

	size_t left = b->n;
	if (left > 0) {
		settle_batch(b, OUTBOX_RETRY, (int)status, why, delay + t->lease_s * 1000LL);
		t->st.retried_requests++;
		b->state = BATCH_WAITING;
		b->suspect = suspect;
		b->due_ms = now + delay;
	} else {
		batch_drop(b);
		b = NULL;
	}
	/* After SPLIT_AFTER, the halves go apart (below, once logged). */
	bool split = b != NULL && b->content_fails >= SPLIT_AFTER && b->n > 1;

	if (suspect && l->healthy) {
		if (left > 0)
			log_warn("forward", "events not accepted, retrying", "target=%s lane=%s "
			    "events=%zu error=%s retry_in_ms=%lld", t->name, l->name, left, why,
			    (long long)delay);
		if (split)
			batch_split(b, "failing");
		promote(l);
		lane_pump(l);
		return;
	}
	if (tls) {
		t->st.tls_errors++;
		log_error("forward", "TLS failed, nothing sent", "target=%s lane=%s error=%s "
		    "retry_in_ms=%lld", t->name, l->name, why, (long long)delay);
	} else if (l->healthy) {
		log_warn("forward", "target unavailable", "target=%s lane=%s error=%s retry_in_ms=%lld",
		    t->name, l->name, why, (long long)delay);
	} else {
		log_debug("forward", "target still unavailable", "target=%s lane=%s error=%s "
		    "retry_in_ms=%lld", t->name, l->name, why, (long long)delay);
	}
	if (l->healthy) {
		l->healthy = false;
		l->outage_started_ms = now;
		evtimer_del(l->timer);
	}
	if (split)
		batch_split(b, "failing");
	/* One probe at a time: requests that were in flight when the lane
	 * failed do not start another while the probe is out. */
	if (l->probe == NULL && !evtimer_pending(l->timer, NULL))
		arm(l, delay);
}

/* What libcurl says about the request of `sl`, for the profile. */
static void
read_reply(struct slot *sl, CURLcode code, struct forward_reply *r)
{
	long status = 0;
	curl_off_t retry_after = 0, app_us = 0, pre_us = 0, total_us = 0;

	curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(sl->easy, CURLINFO_RETRY_AFTER, &retry_after);
	curl_easy_getinfo(sl->easy, CURLINFO_APPCONNECT_TIME_T, &app_us);
	curl_easy_getinfo(sl->easy, CURLINFO_PRETRANSFER_TIME_T, &pre_us);
	curl_easy_getinfo(sl->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	*r = (struct forward_reply){
		.code = code,
		.error = sl->errbuf,
		.status = status,
		.retry_after_s = retry_after,
		.appconnect_us = app_us,
		.pretransfer_us = pre_us,
		.total_us = total_us,
		.body = sl->reply,
		.body_len = sl->reply_len,
		.body_cut = sl->reply_cut,
		.tls_outage = sl->l->tls_outage,
	};
}

/* The platform took the request and answered per row (profile viid):
 * sent rows are sent, refused rows failed with the platform's code and
 * text, the others retried as one failed batch would be. */
static void
rows_answered(struct slot *sl, struct batch *b, const struct forward_reply *r, int64_t ms)
{
	struct lane *l = sl->l;
	struct target *t = l->t;
	const struct forward_profile *pr = t->profile;
	struct forward_record *recs = util_malloc(b->n * sizeof(*recs));
	struct forward_row_outcome *ro = util_calloc(b->n, sizeof(*ro));
	bool *drop = util_calloc(b->n, sizeof(*drop));
	uint8_t *ids = util_malloc(16 * b->n);
	size_t nsent = 0, nfailed = 0, retry_at = b->n;
	bool content = false;

	for (size_t i = 0; i < b->n; i++)
		recs[i] = rec_of(&b->rows[i]);
	pr->classify_rows(pr->ctx, r, recs, b->n, ro);
	for (size_t i = 0; i < b->n; i++) {
		switch (ro[i].verdict) {
		case FORWARD_ROW_SENT:
			memcpy(ids + 16 * nsent++, b->rows[i].id, 16);
			drop[i] = true;
			break;
		case FORWARD_ROW_FAILED:
			log_error("forward", "event refused by the platform", "target=%s lane=%s "
			    "status=%ld code=%lld key=%s", t->name, l->name, r->status, ro[i].code,
			    b->key);
			settle(l, b->rows[i].id, 1, OUTBOX_FAILED, (int)ro[i].code, ro[i].text, 0);
			nfailed++;
			drop[i] = true;
			break;
		case FORWARD_ROW_RETRY_CONTENT:
			content = true;
			/* fall through */
		case FORWARD_ROW_RETRY:
			if (retry_at == b->n)
				retry_at = i;
			break;
		}
	}
	if (nsent > 0) {
		log_debug("forward", "sent", "target=%s lane=%s events=%zu status=%ld ms=%lld key=%s",
		    t->name, l->name, nsent, r->status, (long long)ms, b->key);
		settle(l, ids, nsent, OUTBOX_SENT, (int)r->status, NULL, 0);
		t->st.sent_rows += nsent;
		t->st.sent_requests++;
	}
	t->st.failed_rows_4xx += nfailed;
	struct forward_outcome o = { .verdict = content ? FORWARD_RETRY_CONTENT : FORWARD_RETRY };
	if (retry_at < b->n)
		snprintf(o.text, sizeof(o.text), "%s", ro[retry_at].text);
	free(ids);
	free(ro);
	free(recs);
	batch_remove(b, drop);
	free(drop);
	if (b->n == 0) {
		batch_drop(b);
		lane_up(l);
		return;
	}
	batch_failed(sl, b, r->status, &o);
}

/* forward_curl's done callback: the request of slot `slot` ended. */
static void
request_done(void *forward, CURL *easy, void *slot, CURLcode code)
{
	struct slot *sl = slot;
	struct lane *l = sl->l;
	struct target *t = l->t;
	struct batch *b = sl->b;
	int64_t ms = util_mono_ms() - sl->started_ms;
	struct forward_reply r;
	struct forward_outcome o;

	(void)forward;
	(void)easy;
	read_reply(sl, code, &r);
	t->profile->classify(&r, &o);
	/* A 401 to a request sent under an earlier session is about that
	 * session's nonce: the batch is retried, the session now stays. */
	if (t->session != NULL && code == CURLE_OK && r.status == 401 &&
	    sl->session_epoch == viid_session_epoch(t->session))
		viid_session_lost(t->session, "401 to an upload");
	sl->b = NULL;
	b->slot = NULL;
	if (l->probe == b)
		l->probe = NULL;
	if (t->st.seconds.bounds == NULL) {
		t->st.seconds.bounds = request_bounds;
		t->st.seconds.nbounds = sizeof(request_bounds) / sizeof(request_bounds[0]);
	}
	metrics_observe(&t->st.seconds, (double)ms / 1000.0);
	t->st.requests[code != CURLE_OK || r.status < 200 || r.status > 599 ? 0 :
	    (size_t)(r.status / 100 - 1)]++;
	if (code == CURLE_OK) {
		t->st.latency_count++;
		t->st.latency_ms_sum += (uint64_t)ms;
		if ((uint64_t)ms > t->st.latency_ms_max)
			t->st.latency_ms_max = (uint64_t)ms;
	}

	switch (o.verdict) {
	case FORWARD_SENT:
		if (t->profile->classify_rows != NULL) {
			rows_answered(sl, b, &r, ms);
			return;
		}
		log_debug("forward", "sent", "target=%s lane=%s events=%zu status=%ld ms=%lld key=%s",
		    t->name, l->name, b->n, r.status, (long long)ms, b->key);
		settle_batch(b, OUTBOX_SENT, (int)r.status, NULL, 0);
		t->st.sent_rows += b->n;
		t->st.sent_requests++;
		batch_drop(b);
		lane_up(l);
		return;
	case FORWARD_REFUSED:
		/* Sending it again will not help until someone fixes the cause
		 * (`gridbridgectl outbox retry`). Which rows? Halves are sent
		 * apart until the rows refused are alone. */
		if (b->n > 1) {
			b->state = BATCH_READY;
			batch_split(b, "refused");
		} else {
			log_error("forward", "events refused by the platform", "target=%s lane=%s "
			    "status=%ld events=%zu key=%s", t->name, l->name, r.status, b->n, b->key);
			settle_batch(b, OUTBOX_FAILED, (int)r.status, o.text, 0);
			t->st.failed_rows_4xx += b->n;
			batch_drop(b);
		}
		lane_up(l);	/* the platform answered: it is up */
		return;
	case FORWARD_RETRY:
	case FORWARD_RETRY_CONTENT:
	case FORWARD_RETRY_TLS:
		batch_failed(sl, b, r.status, &o);
		return;
	}
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	forward_kick(arg);
}

/* The poll: rows may have become due by time (retries, rows requeued,
 * leases run out). */
static void
target_pump(struct target *t)
{
	if (t->retired)
		return;
	for (size_t j = 0; j < t->nlanes; j++) {
		t->lanes[j].dirty = true;
		lane_pump(&t->lanes[j]);
	}
}

void
forward_kick(void *forward)
{
	struct forward *f = forward;

	for (size_t i = 0; i < f->ntargets; i++)
		target_pump(&f->targets[i]);
	for (size_t i = 0; i < f->nsubs; i++)
		target_pump(f->subs[i]);
}

/* At a community's rate every batch the store commits holds a few rows
 * to forward, and a request for each costs the database a claim and a
 * settlement and the platform a request: when a batch brings fewer than a
 * quarter of batch_rows, the routine lane waits linger_ms for more. Not
 * the alarm lane, nor a routine lane that carries alarms too (a target
 * without an alarm lane), nor at high rates (a batch of a quarter of
 * batch_rows or more, or a claim that stopped at its bound: more are due). */
static bool
lane_lingers(const struct lane *l, size_t nrows)
{
	const struct target *t = l->t;

	return t->linger_ms > 0 && t->nlanes > 1 && l->max_priority < t->alarm_priority &&
	    nrows < t->batch_rows / 4 && !l->claim_full;
}

static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *l = arg;

	(void)fd;
	(void)what;
	l->dirty = true;
	lane_pump(l);
}

/* A lane whose rows start above the batch's highest priority has nothing
 * new: it is not asked (an alarm lane would claim nothing after every
 * batch of routine rows, each claim a query that reads the leased rows). */
static void
target_rows_committed(struct target *t, int max_priority, size_t nrows)
{
	if (t->retired)
		return;
	for (size_t j = 0; j < t->nlanes; j++) {
		struct lane *l = &t->lanes[j];
		if (l->min_priority > max_priority)
			continue;
		l->dirty = true;
		if (lane_lingers(l, nrows) && l->healthy && !l->claiming) {
			if (!evtimer_pending(l->linger, NULL)) {
				struct timeval tv = { .tv_sec = t->linger_ms / 1000,
					.tv_usec = (t->linger_ms % 1000) * 1000 };
				evtimer_add(l->linger, &tv);
			}
			continue;
		}
		evtimer_del(l->linger);		/* enough rows: no more waiting */
		lane_pump(l);
	}
}

void
forward_rows_committed(void *forward, int max_priority, size_t nrows)
{
	struct forward *f = forward;

	for (size_t i = 0; i < f->ntargets; i++)
		target_rows_committed(&f->targets[i], max_priority, nrows);
	for (size_t i = 0; i < f->nsubs; i++)
		target_rows_committed(f->subs[i], max_priority, nrows);
}

/* The lanes of `t` send again. */
static void
target_resume(struct target *t)
{
	if (t->retired)
		return;
	for (size_t j = 0; j < t->nlanes; j++) {
		struct lane *l = &t->lanes[j];
		if (!l->healthy) {
			probe(l, true);
		} else {
			promote(l);
			l->dirty = true;
			lane_pump(l);
		}
	}
}

/* A viid target's session came up: its lanes send again, and those of
 * its subscriptions (cascade). */
static void
session_up(void *ctx)
{
	struct target *t = ctx;

	target_resume(t);
	for (size_t i = 0; i < t->f->nsubs; i++)
		if (t->f->subs[i]->parent == t)
			target_resume(t->f->subs[i]);
}

/* A shared session's lease was taken (register) or lost (stop without
 * UnRegister: the daemon holding it now may have registered the same id;
 * batches in flight end as they end, their rows under their own leases). */
static void
lease_changed(void *ctx, bool held)
{
	struct target *t = ctx;

	if (held)
		viid_session_start(t->session);
	else
		viid_session_stop(t->session, false);
}

void
forward_stop(struct forward *f)
{
	for (size_t i = 0; f != NULL && i < f->ntargets; i++) {
		struct target *t = &f->targets[i];
		if (t->lease == NULL)
			continue;
		if (viid_lease_held(t->lease))
			viid_session_stop(t->session, true);
		viid_lease_release(t->lease);
	}
}

bool
forward_stopping(const struct forward *f)
{
	for (size_t i = 0; f != NULL && i < f->ntargets; i++)
		if (viid_lease_releasing(f->targets[i].lease))
			return true;
	return false;
}

/* ---- metrics ----------------------------------------------------------- */

static void
counted(void *ctx, const char *json, bool ok)
{
	struct forward *f = ctx;
	json_error_t err;

	f->counting = false;
	if (!ok || json == NULL)
		return;
	json_t *a = json_loads(json, 0, &err);
	if (!json_is_array(a)) {
		json_decref(a);
		return;
	}
	size_t n = json_array_size(a);
	if (n > PENDING_MAX)
		n = PENDING_MAX;
	f->npending = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(a, i);
		const char *name = json_string_value(json_array_get(e, 0));
		json_t *rows = json_array_get(e, 1), *age = json_array_get(e, 2);
		if (name == NULL || !json_is_integer(rows) || !json_is_number(age))
			continue;
		struct pending *p = &f->pending[f->npending++];
		snprintf(p->target, sizeof(p->target), "%s", name);
		p->rows = (uint64_t)json_integer_value(rows);
		p->oldest_s = json_number_value(age);
	}
	f->counted = true;
	json_decref(a);
}

static void
count_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward *f = arg;

	(void)fd;
	(void)what;
	/* One at a time: while the database is away it waits in the queue. */
	if (f->counting || f->outbox.pending == NULL)
		return;
	f->counting = true;
	f->outbox.pending(f->outbox.ctx, counted, f);
}

double
forward_oldest_pending(const struct forward *f, const char **target)
{
	double oldest = 0;

	if (target != NULL)
		*target = NULL;
	for (size_t i = 0; f != NULL && i < f->npending; i++) {
		if (f->pending[i].oldest_s > oldest) {
			oldest = f->pending[i].oldest_s;
			if (target != NULL)
				*target = f->pending[i].target;
		}
	}
	return oldest;
}

uint64_t
forward_pending_rows(const struct forward *f, size_t i, const char **target, double *oldest_s)
{
	if (f == NULL || i >= f->npending)
		return UINT64_MAX;
	*target = f->pending[i].target;
	*oldest_s = f->pending[i].oldest_s;
	return f->pending[i].rows;
}

static void
write_target(FILE *out, const struct target *t, int what)
{
	char name[256], labels[320];

	metrics_escape(name, sizeof(name), t->name);
	switch (what) {
	case 0:
		for (size_t k = 0; k < 5; k++) {
			snprintf(labels, sizeof(labels), "target=\"%s\",status_class=\"%s\"", name,
			    status_classes[k]);
			metrics_sample_u64(out, "gridbridge_forward_requests_total", labels,
			    t->st.requests[k]);
		}
		break;
	case 1:
		snprintf(labels, sizeof(labels), "target=\"%s\"", name);
		metrics_sample_u64(out, "gridbridge_forward_events_sent_total", labels,
		    t->st.sent_rows);
		break;
	case 2:
		snprintf(labels, sizeof(labels), "target=\"%s\"", name);
		metrics_sample_u64(out, "gridbridge_forward_requests_retried_total", labels,
		    t->st.retried_requests);
		break;
	case 3:
		snprintf(labels, sizeof(labels), "target=\"%s\",reason=\"refused\"", name);
		metrics_sample_u64(out, "gridbridge_forward_events_failed_total", labels,
		    t->st.failed_rows_4xx);
		snprintf(labels, sizeof(labels), "target=\"%s\",reason=\"given_up\"", name);
		metrics_sample_u64(out, "gridbridge_forward_events_failed_total", labels,
		    t->st.failed_rows_other);
		break;
	case 4:
		snprintf(labels, sizeof(labels), "target=\"%s\"", name);
		metrics_sample_u64(out, "gridbridge_forward_target_up", labels,
		    target_failing(t) ? 0 : 1);
		break;
	case 6:
		if (t->lease != NULL) {
			snprintf(labels, sizeof(labels), "target=\"%s\"", name);
			metrics_sample_u64(out, "gridbridge_forward_session_held", labels,
			    viid_lease_held(t->lease) ? 1 : 0);
		}
		break;
	case 5:
		if (t->st.seconds.bounds != NULL) {
			snprintf(labels, sizeof(labels), "target=\"%s\"", name);
			metrics_write_hist(out, "gridbridge_forward_request_duration_seconds", labels,
			    &t->st.seconds);
		}
		break;
	}
}

void
forward_write_metrics(const struct forward *f, FILE *out)
{
	static const char *const heads[][3] = {
		{ "gridbridge_forward_requests_total", "counter",
		  "Requests to the target, by status class (none: no HTTP answer)." },
		{ "gridbridge_forward_events_sent_total", "counter",
		  "Events the target accepted." },
		{ "gridbridge_forward_requests_retried_total", "counter",
		  "Requests that failed and will be tried again." },
		{ "gridbridge_forward_events_failed_total", "counter",
		  "Events not forwarded: refused by the target, or given up (max_attempts, "
		  "max_age, gone from the database)." },
		{ "gridbridge_forward_target_up", "gauge",
		  "1 while the target takes requests, 0 while it fails." },
		{ "gridbridge_forward_request_duration_seconds", "histogram",
		  "Request duration, from the start to the answer or the failure." },
		{ "gridbridge_forward_session_held", "gauge",
		  "1 while this daemon holds the target's GA/T 1400 session shared with other "
		  "daemons (session = shared), 0 while another does." },
	};
	char name[256], labels[320];

	for (int w = 0; w < 7; w++) {
		metrics_head(out, heads[w][0], heads[w][1], heads[w][2]);
		for (size_t i = 0; f != NULL && i < f->ntargets; i++)
			write_target(out, &f->targets[i], w);
		for (size_t i = 0; f != NULL && i < f->nsubs; i++)
			if (!f->subs[i]->retired)
				write_target(out, f->subs[i], w);
	}
	metrics_head(out, "gridbridge_forward_events_pending", "gauge",
	    "Outbox rows waiting to be sent, per target (counted every 5 s).");
	for (size_t i = 0; f != NULL && i < f->npending; i++) {
		metrics_escape(name, sizeof(name), f->pending[i].target);
		snprintf(labels, sizeof(labels), "target=\"%s\"", name);
		metrics_sample_u64(out, "gridbridge_forward_events_pending", labels,
		    f->pending[i].rows);
	}
	metrics_head(out, "gridbridge_forward_oldest_pending_seconds", "gauge",
	    "Age of the oldest outbox row waiting to be sent, per target.");
	for (size_t i = 0; f != NULL && i < f->npending; i++) {
		metrics_escape(name, sizeof(name), f->pending[i].target);
		snprintf(labels, sizeof(labels), "target=\"%s\"", name);
		metrics_sample(out, "gridbridge_forward_oldest_pending_seconds", labels,
		    f->pending[i].oldest_s);
	}
}

void
forward_start(struct forward *f)
{
	struct timeval tv = { .tv_sec = POLL_MS / 1000, .tv_usec = (POLL_MS % 1000) * 1000 };

	struct timeval ctv = { .tv_sec = PENDING_MS / 1000, .tv_usec = 0 };

	f->outbox.release(f->outbox.ctx);
	evtimer_add(f->poll, &tv);
	evtimer_add(f->count, &ctv);
	count_cb(-1, 0, f);
	for (size_t i = 0; i < f->ntargets; i++) {
		struct target *t = &f->targets[i];
		log_info("forward", "target", "target=%s format=%s max_inflight=%zu alarm_priority=%d",
		    t->name, t->profile->format, t->lanes[0].nslots, t->alarm_priority);
		if (t->lease != NULL)
			viid_lease_start(t->lease);
		else if (t->session != NULL)
			viid_session_start(t->session);
		if (t->cascade != NULL)
			viid_cascade_start(t->cascade);
	}
	forward_kick(f);
}

static bool
target_failing(const struct target *t)
{
	if (t->retired)
		return false;
	if (t->lease != NULL && !viid_lease_held(t->lease))
		return false;		/* another daemon sends */
	if (paused(t))
		return true;
	for (size_t j = 0; j < t->nlanes; j++)
		if (!t->lanes[j].healthy)
			return true;
	return false;
}

const char *
forward_unavailable(const struct forward *f)
{
	for (size_t i = 0; i < f->ntargets; i++)
		if (target_failing(&f->targets[i]))
			return f->targets[i].name;
	for (size_t i = 0; i < f->nsubs; i++)
		if (target_failing(f->subs[i]))
			return f->subs[i]->name;
	return NULL;
}

const char *
forward_target(const struct forward *f, size_t i, bool *up, uint64_t *sent)
{
	if (f == NULL || i >= f->ntargets)
		return NULL;
	*up = !target_failing(&f->targets[i]);
	*sent = f->targets[i].st.sent_rows;
	return f->targets[i].name;
}

static int
lane_init(struct target *t, struct lane *l, const char *name, int min, int max, size_t nslots)
{
	l->t = t;
	l->name = name;
	l->min_priority = min;
	l->max_priority = max;
	l->dirty = true;
	l->healthy = true;
	backoff_init(&l->backoff, t->retry_base_ms, t->retry_cap_ms);
	l->timer = evtimer_new(t->f->base, timer_cb, l);
	l->linger = evtimer_new(t->f->base, linger_cb, l);
	l->nslots = nslots;
	l->slots = calloc(nslots, sizeof(*l->slots));
	if (l->timer == NULL || l->linger == NULL || l->slots == NULL)
		return -1;
	for (size_t i = 0; i < nslots; i++)
		l->slots[i].l = l;
	return 0;
}

/* The viid profile's part of a target: its profile, its session. */
static int
target_viid(struct target *t, const struct forward_target *c)
{
	size_t n = strlen(t->url);

	while (n > 0 && t->url[n - 1] == '/')
		t->url[--n] = '\0';	/* the platform's base; paths are appended */
	t->viid_profile = forward_profile_viid_new(c->viid_devices, c->nviid_devices,
	    c->picture_data);
	if (c->picture_data) {
		struct viid_fetch_config fc = {
			.target = c->name,
			.max_bytes = c->picture_max_bytes,
			.timeout_s = c->picture_timeout,
			.connect_timeout_s = c->connect_timeout,
			.max_parallel = PICTURE_FETCHES,
			.ca_file = c->picture_ca_file,
			.username = c->picture_username,
			.password = c->picture_password,
		};
		t->fetcher = viid_fetcher_new(t->f->base, &fc);
		if (t->fetcher == NULL)
			return -1;
		/* The pictures of a batch are held until it is answered. */
		if (t->batch_rows > PICTURE_BATCH_ROWS)
			t->batch_rows = PICTURE_BATCH_ROWS;
	}
	t->profile = t->viid_profile;
	t->viid_auth = c->auth;
	t->notify_auth = c->notify_auth;
	t->username = str_or_empty(c->username);
	t->password = str_or_empty(c->password);
	size_t len = strlen(configured(c->viid_device_id)) + 32;
	t->user_identify = util_malloc(len);
	snprintf(t->user_identify, len, "User-Identify: %s", c->viid_device_id);
	t->session = viid_session_new(t->f->base, c, session_up, t);
	if (t->session == NULL)
		return -1;
	if (c->shared_session && (t->lease = viid_lease_new(t->f->base, &t->f->outbox, t->name,
	    c->session_lease_s, lease_changed, t)) == NULL)
		return -1;
	return 0;
}

/* ---- subscriptions of cascade targets ---------------------------------- */

static void target_free(struct forward *f, struct target *t);

/* Frees a retired subscription once none of its lanes waits for a claim
 * (claimed() calls again when one comes back). */
static void
target_reap(struct target *t)
{
	struct forward *f = t->f;

	for (size_t j = 0; j < t->nlanes; j++)
		if (t->lanes[j].claiming)
			return;
	for (size_t i = 0; i < f->nsubs; i++) {
		if (f->subs[i] == t) {
			f->subs[i] = f->subs[--f->nsubs];
			break;
		}
	}
	target_free(f, t);
}

/* A subscription's target stops: requests in flight are abandoned, the
 * rows it holds go back to the outbox (due at once: a subscription that
 * changed claims them again; an ended one's rows failed already). */
static void
target_retire(struct target *t)
{
	struct forward *f = t->f;

	t->retired = true;
	for (size_t j = 0; j < t->nlanes; j++) {
		struct lane *l = &t->lanes[j];
		evtimer_del(l->timer);
		for (size_t k = 0; k < l->nslots; k++) {
			struct slot *sl = &l->slots[k];
			if (sl->b != NULL) {
				forward_curl_remove(f->curl, sl->easy);
				sl->b->slot = NULL;
				sl->b = NULL;
			}
		}
		while (l->batches != NULL) {
			settle_batch(l->batches, OUTBOX_DEFER, 0, NULL, 0);
			batch_drop(l->batches);
		}
	}
	target_reap(t);
}

static char *
joined(const char *a, const char *sep, const char *b)
{
	size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
	char *s = util_malloc(n);

	snprintf(s, n, "%s%s%s", a, sep, b);
	return s;
}

static struct target *
find_sub_target(struct forward *f, const char *name)
{
	for (size_t i = 0; i < f->nsubs; i++)
		if (!f->subs[i]->retired && strcmp(f->subs[i]->name, name) == 0)
			return f->subs[i];
	return NULL;
}

/* The target of subscription `s` of cascade target `p`: p's settings,
 * the subscription's ReceiveAddr as its url, notifications as its body,
 * p's session. */
static struct target *
sub_target_new(struct target *p, const struct viid_subscription *s)
{
	struct target *t = util_calloc(1, sizeof(*t));

	t->f = p->f;
	t->parent = p;
	t->name = joined(p->name, "/", s->id);
	t->url = util_strdup(s->receive_addr);
	t->viid_profile = forward_profile_viid_notify_new(p->viid_profile, s->id, s->title,
	    viid_cascade_org(p->cascade));
	t->profile = t->viid_profile;
	t->session = p->session;
	t->fetcher = p->fetcher;
	t->user_identify = util_strdup(p->user_identify);
	t->username = util_strdup(p->username);
	t->password = util_strdup(p->password);
	t->viid_auth = p->notify_auth;
	t->allow_http = p->allow_http;
	t->ca_file = util_strdup(p->ca_file);
	t->cert_file = util_strdup(p->cert_file);
	t->key_file = util_strdup(p->key_file);
	t->proxy = util_strdup(p->proxy);
	t->connect_timeout = p->connect_timeout;
	t->timeout = p->timeout;
	t->batch_rows = p->batch_rows;
	t->linger_ms = p->linger_ms;
	t->batch_bytes = p->batch_bytes;
	t->lease_s = p->lease_s;
	t->max_attempts = p->max_attempts;
	t->max_age_ms = p->max_age_ms;
	t->retry_after_max_s = p->retry_after_max_s;
	t->alarm_priority = p->alarm_priority;
	t->retry_base_ms = p->retry_base_ms;
	t->retry_cap_ms = p->retry_cap_ms;
	for (size_t j = 0; j < p->nlanes; j++) {
		const struct lane *pl = &p->lanes[j];
		if (lane_init(t, &t->lanes[t->nlanes++], pl->name, pl->min_priority,
		    pl->max_priority, pl->nslots) != 0)
			util_oom(0);
	}
	return t;
}

/* The cascade module's hook: subscription `s` of target `ctx` is active. */
static void
sub_up(void *ctx, const struct viid_subscription *s)
{
	struct target *p = ctx;
	struct forward *f = p->f;
	char *name = joined(p->name, "/", s->id);
	struct target *old = find_sub_target(f, name);

	free(name);
	if (old != NULL)
		target_retire(old);
	if (f->nsubs == f->capsubs) {
		f->capsubs = f->capsubs ? 2 * f->capsubs : 8;
		f->subs = util_realloc(f->subs, f->capsubs * sizeof(*f->subs));
	}
	struct target *t = sub_target_new(p, s);
	f->subs[f->nsubs++] = t;
	target_pump(t);
}

/* ... it ended. */
static void
sub_down(void *ctx, const char *subscribe_id)
{
	struct target *p = ctx;
	char *name = joined(p->name, "/", subscribe_id);
	struct target *t = find_sub_target(p->f, name);

	free(name);
	if (t != NULL)
		target_retire(t);
}

static int
target_init(struct forward *f, struct target *t, const struct forward_target *c)
{
	t->f = f;
	t->name = str_or_empty(c->name);
	t->url = str_or_empty(c->url);
	t->profile = forward_profile_gridbridge(c->json);
	t->allow_http = c->allow_http;
	t->ca_file = str_or_empty(c->ca_file);
	t->cert_file = str_or_empty(c->cert_file);
	t->key_file = str_or_empty(c->key_file);
	t->proxy = str_or_empty(c->proxy);
	t->connect_timeout = c->connect_timeout;
	t->timeout = c->timeout;
	t->batch_rows = c->batch_rows > 0 ? c->batch_rows : 1;
	t->batch_bytes = c->batch_bytes;
	t->linger_ms = c->linger_ms;
	t->lease_s = (int)(c->connect_timeout + c->timeout +
	    (c->lease_margin > 0 ? c->lease_margin : LEASE_MARGIN_S));
	t->max_attempts = c->max_attempts;
	t->max_age_ms = c->max_age * 1000;
	t->retry_after_max_s = c->retry_after_max > 0 ? c->retry_after_max : 1;
	t->alarm_priority = c->alarm_priority;
	t->retry_base_ms = c->retry_base_ms;
	t->retry_cap_ms = c->retry_cap_ms;
	if (c->viid && target_viid(t, c) != 0)
		return -1;
	if (c->viid && c->cascade) {
		struct viid_cascade_hooks hooks = {
			.sub_up = sub_up, .sub_down = sub_down, .ctx = t,
		};
		t->cascade = viid_cascade_new(f->base, c, &f->outbox, &hooks);
		if (t->cascade == NULL)
			return -1;
	}
	if (!is_https(c->url) && !(c->allow_http && strncasecmp(c->url, "http://", 7) == 0)) {
		log_error("forward", "URL refused: not https", "target=%s", c->name);
		return -1;
	}
	if (c->token != NULL && c->token[0] != '\0') {
		if (!is_https(c->url)) {
			log_error("forward", "bearer token refused over plain HTTP", "target=%s",
			    c->name);
			return -1;
		}
		size_t n = strlen(c->token) + 32;
		t->auth = util_malloc(n);
		snprintf(t->auth, n, "Authorization: Bearer %s", c->token);
	}
	/* Rows of alarm_priority and above in the alarm lane (the claim's
	 * priorities are smallint). */
	size_t nslots = c->max_inflight > 0 ? c->max_inflight : 1;
	if (c->alarm_priority <= 9 &&
	    lane_init(t, &t->lanes[t->nlanes++], "alarm", c->alarm_priority, 32767, nslots) != 0)
		return -1;
	if (lane_init(t, &t->lanes[t->nlanes++], "routine", -32768, c->alarm_priority - 1,
	    nslots) != 0)
		return -1;
	return 0;
}

struct forward *
forward_new(struct event_base *base, const struct outbox *outbox,
    const struct forward_target *targets, size_t ntargets)
{
	struct forward *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->base = base;
	f->outbox = *outbox;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("forward", "cannot initialise libcurl", "");
		free(f);
		return NULL;
	}
	f->curl = forward_curl_new(base, request_done, f);
	f->poll = event_new(base, -1, EV_PERSIST, poll_cb, f);
	f->count = event_new(base, -1, EV_PERSIST, count_cb, f);
	f->pending = calloc(PENDING_MAX, sizeof(*f->pending));
	f->targets = calloc(ntargets ? ntargets : 1, sizeof(*f->targets));
	if (f->curl == NULL || f->poll == NULL || f->count == NULL || f->pending == NULL ||
	    f->targets == NULL) {
		forward_free(f);
		return NULL;
	}
	for (size_t i = 0; i < ntargets; i++) {
		f->ntargets++;
		if (target_init(f, &f->targets[i], &targets[i]) != 0) {
			log_error("forward", "cannot set up target", "target=%s", targets[i].name);
			forward_free(f);
			return NULL;
		}
	}
	return f;
}

static void
lane_free(struct forward *f, struct lane *l)
{
	for (size_t j = 0; l->slots != NULL && j < l->nslots; j++) {
		struct slot *sl = &l->slots[j];
		if (sl->easy != NULL) {
			if (sl->b != NULL)
				forward_curl_remove(f->curl, sl->easy);
			curl_easy_cleanup(sl->easy);
		}
		curl_slist_free_all(sl->headers);
		free(sl->reply);
	}
	while (l->batches != NULL)
		batch_drop(l->batches);
	if (l->fetch != NULL) {
		viid_fetch_cancel(l->fetch->job);
		fetch_free(l->fetch, true);
		l->fetch = NULL;
	}
	free(l->slots);
	if (l->timer != NULL)
		event_free(l->timer);
	if (l->linger != NULL)
		event_free(l->linger);
}

/* Logs the totals of `t` and frees what it holds (a subscription: also
 * `t` itself). */
static void
target_free(struct forward *f, struct target *t)
{
	if (t->name != NULL)
		log_info("forward", "totals", "target=%s sent=%llu requests=%llu retried=%llu "
		    "failed_4xx=%llu failed_other=%llu splits=%llu tls_errors=%llu "
		    "latency_ms_avg=%llu latency_ms_max=%llu", t->name,
		    (unsigned long long)t->st.sent_rows,
		    (unsigned long long)t->st.sent_requests,
		    (unsigned long long)t->st.retried_requests,
		    (unsigned long long)t->st.failed_rows_4xx,
		    (unsigned long long)t->st.failed_rows_other,
		    (unsigned long long)t->st.splits,
		    (unsigned long long)t->st.tls_errors,
		    (unsigned long long)(t->st.latency_count ?
		    t->st.latency_ms_sum / t->st.latency_count : 0),
		    (unsigned long long)t->st.latency_ms_max);
	for (size_t j = 0; j < t->nlanes; j++)
		lane_free(f, &t->lanes[j]);
	if (t->parent == NULL) {
		viid_cascade_free(t->cascade);
		viid_lease_free(t->lease);
		viid_session_free(t->session);
		viid_fetcher_free(t->fetcher);
	}
	forward_profile_viid_free(t->viid_profile);
	free(t->user_identify);
	free(t->username);
	if (t->password != NULL) {
		memset(t->password, 0, strlen(t->password));
		free(t->password);
	}
	free(t->name);
	free(t->url);
	free(t->ca_file);
	free(t->cert_file);
	free(t->key_file);
	free(t->proxy);
	if (t->auth != NULL) {
		memset(t->auth, 0, strlen(t->auth));
		free(t->auth);
	}
	if (t->parent != NULL)
		free(t);
}

void
forward_free(struct forward *f)
{
	if (f == NULL)
		return;
	/* Subscriptions first: they share their parents' sessions. */
	for (size_t i = 0; i < f->nsubs; i++)
		target_free(f, f->subs[i]);
	free(f->subs);
	for (size_t i = 0; i < f->ntargets; i++)
		target_free(f, &f->targets[i]);
	free(f->targets);
	forward_curl_free(f->curl);
	if (f->poll != NULL)
		event_free(f->poll);
	if (f->count != NULL)
		event_free(f->count);
	free(f->pending);
	curl_global_cleanup();
	free(f);
}
