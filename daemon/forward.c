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
#include "event.pb-c.h"
#include "event_json.h"
#include "log.h"
#include "sha256.h"
#include "version.h"

#define POLL_MS 1000		/* due rows (retries, requeued) are looked for */
#define REPLY_KEEP 512		/* bytes of a refusal's reply kept */
#define REPLY_TEXT (4 * REPLY_KEEP + 1)	/* ... as text: each byte \xNN at worst */
#define LEASE_MARGIN_S 30
#define TLS_REFUSAL_US 20000	/* see request_done() */

enum slot_state {
	SLOT_IDLE,
	SLOT_CLAIMING,		/* waiting for the store's rows */
	SLOT_SENDING,		/* request in libcurl */
	SLOT_WAITING,		/* failed; sent again after the backoff */
};

struct target;

/* Counters of one target, since start (logged at stop). */
struct forward_stats {
	uint64_t sent_rows;
	uint64_t sent_requests;
	uint64_t retried_requests;	/* attempts that will be tried again */
	uint64_t failed_rows_4xx;	/* refused by the platform */
	uint64_t failed_rows_other;	/* gone from events, or max_attempts */
	uint64_t tls_errors;
	uint64_t latency_ms_sum;	/* of answered requests */
	uint64_t latency_ms_max;
	uint64_t latency_count;
};

struct slot {
	struct target *t;
	enum slot_state state;
	CURL *easy;
	struct curl_slist *headers;
	uint8_t *ids;			/* 16 bytes per event, in body order */
	size_t n;
	int attempts;			/* of these rows, before this process + ours */
	char *body;
	size_t body_len;
	char key[33];			/* Idempotency-Key */
	unsigned char reply[REPLY_KEEP];
	size_t reply_len;
	bool reply_cut;			/* the reply was longer */
	char errbuf[CURL_ERROR_SIZE];
	int64_t started_ms;
};

struct target {
	struct forward *f;
	char *name;
	char *url;
	bool json;
	bool allow_http;
	char *ca_file, *cert_file, *key_file, *proxy;
	char *auth;			/* "Authorization: Bearer ..." or NULL */
	long connect_timeout, timeout;
	size_t batch_rows, batch_bytes;
	int lease_s;
	long long max_attempts;
	long long retry_after_max_s;
	struct slot *slots;
	size_t nslots;
	bool claiming;			/* a claim is in the store's queue */
	bool again;			/* pump again when the claim is back */
	bool healthy;
	struct backoff backoff;
	struct event *retry;		/* the probe after a failure */
	int64_t outage_started_ms;
	bool tls_outage;		/* the failures began with a TLS error */
	struct slot *probe;		/* the batch probing a failing target */
	struct forward_stats st;
};

struct forward {
	struct event_base *base;
	struct outbox outbox;
	CURLM *multi;
	struct event *timeout;		/* libcurl's timer */
	struct event *poll;
	struct target *targets;
	size_t ntargets;
};

/* One watched socket of libcurl. */
struct sock {
	struct event *ev;
	struct forward *f;
};

static void pump(struct target *t);
static void start_request(struct slot *sl);

static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s != NULL ? s : "");
	if (d == NULL)
		abort();
	return d;
}

static bool
is_https(const char *url)
{
	return strncasecmp(url, "https://", 8) == 0;
}

/* ---- libcurl on libevent ---------------------------------------------- */

static void check_done(struct forward *f);

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sock *so = arg;
	struct forward *f = so->f;
	int running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(f->multi, fd, flags, &running);
	check_done(f);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward *f = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(f);
}

/* CURLMOPT_SOCKETFUNCTION: only changes which events are watched. */
static int
socket_fn(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct forward *f = userp;
	struct sock *so = socketp;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (so != NULL) {
			event_free(so->ev);
			free(so);
			curl_multi_assign(f->multi, s, NULL);
		}
		return 0;
	}
	short ev = EV_PERSIST;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev |= EV_READ;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev |= EV_WRITE;
	if (so == NULL) {
		so = calloc(1, sizeof(*so));
		if (so == NULL)
			return -1;
		so->f = f;
		curl_multi_assign(f->multi, s, so);
	} else {
		event_free(so->ev);
	}
	so->ev = event_new(f->base, s, ev, sock_cb, so);
	if (so->ev == NULL || event_add(so->ev, NULL) != 0)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms our timer. */
static int
timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct forward *f = userp;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(f->timeout);
		return 0;
	}
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	return evtimer_add(f->timeout, &tv) == 0 ? 0 : -1;
}

static size_t
write_fn(char *data, size_t size, size_t nmemb, void *userp)
{
	struct slot *sl = userp;
	size_t n = size * nmemb;
	size_t room = REPLY_KEEP - sl->reply_len;
	size_t take = n < room ? n : room;

	memcpy(sl->reply + sl->reply_len, data, take);
	sl->reply_len += take;
	if (take < n)
		sl->reply_cut = true;
	return n;		/* the rest is read and dropped */
}

/* ---- text for the outbox ----------------------------------------------- */

/* The length of the UTF-8 sequence at p (of n bytes), its code point in
 * *cp; 0 when it is not valid UTF-8 (overlong, surrogate, past U+10FFFF,
 * a stray continuation byte); -1 when the n bytes end inside a sequence
 * that is valid so far. */
static int
utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0];
	uint32_t v, min;
	int len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		v = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		v = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return -1;
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* Bytes from outside (a reply) as text the database takes: valid UTF-8 is
 * kept, any other byte becomes \xNN, control characters (C0, DEL, C1, NUL
 * included) become spaces, and a character that `cut` (the bytes were cut
 * from a longer text) broke at the end is dropped. `out` holds at least
 * 4 * n + 1 bytes. */
static void
safe_text(const unsigned char *p, size_t n, bool cut, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i = 0, o = 0;

	while (i < n) {
		uint32_t cp = 0;
		int len = utf8_seq(p + i, n - i, &cp);
		if (len < 0 && cut)
			break;
		if (len <= 0) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = digits[p[i] >> 4];
			out[o++] = digits[p[i] & 15];
			i++;
			continue;
		}
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
			out[o++] = ' ';
		} else {
			memcpy(out + o, p + i, (size_t)len);
			o += (size_t)len;
		}
		i += (size_t)len;
	}
	out[o] = '\0';
}

/* ---- batches ----------------------------------------------------------- */

static void
hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

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

/* An EventBatch: field 1 (events), length-delimited, once per record. */
static char *
body_protobuf(const struct outbox_row *rows, size_t n, size_t *len)
{
	size_t cap = 0;
	for (size_t i = 0; i < n; i++)
		cap += rows[i].record_len + 11;
	uint8_t *b = malloc(cap ? cap : 1), *p = b;
	if (b == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		*p++ = 0x0a;
		p += put_varint(p, rows[i].record_len);
		memcpy(p, rows[i].record, rows[i].record_len);
		p += rows[i].record_len;
	}
	*len = (size_t)(p - b);
	return (char *)b;
}

/* The EventBatch's proto3 JSON mapping: {"events":[...]}. */
static char *
body_json(const struct outbox_row *rows, size_t n, size_t *len)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		Gridbridge__V1__Event *ev = gridbridge__v1__event__unpack(NULL, rows[i].record_len,
		    rows[i].record);
		if (ev == NULL)
			continue;	/* cannot happen: we packed it */
		json_array_append_new(arr, event_json(&ev->base));
		gridbridge__v1__event__free_unpacked(ev, NULL);
	}
	json_t *o = json_object();
	json_object_set_new(o, "events", arr);
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL)
		abort();
	*len = strlen(s);
	return s;
}

static void
slot_clear(struct slot *sl)
{
	free(sl->ids);
	free(sl->body);
	sl->ids = NULL;
	sl->body = NULL;
	sl->n = 0;
	sl->body_len = 0;
	sl->state = SLOT_IDLE;
}

static void
settle(struct slot *sl, const uint8_t *ids, size_t n, enum outbox_outcome o, int status,
    const char *error, int64_t retry_in_ms)
{
	const struct outbox *ob = &sl->t->f->outbox;

	ob->settle(ob->ctx, sl->t->name, ids, n, o, status, error, retry_in_ms);
}

static void
claimed(void *ctx, struct outbox_row *rows, size_t n, bool ok)
{
	struct slot *sl = ctx;
	struct target *t = sl->t;

	t->claiming = false;
	sl->state = SLOT_IDLE;
	if (!ok || n == 0) {
		/* Rows committed while the claim ran are taken now; the
		 * rest is found by the poll. */
		if (ok && t->again)
			pump(t);
		return;
	}
	qsort(rows, n, sizeof(*rows), cmp_rows);
	/* Rows whose event retention already removed cannot be sent. */
	size_t keep = 0;
	for (size_t i = 0; i < n; i++) {
		if (rows[i].record != NULL) {
			rows[keep++] = rows[i];
			continue;
		}
		settle(sl, rows[i].event_id, 1, OUTBOX_FAILED, 0, "event no longer stored", 0);
		t->st.failed_rows_other++;
		log_error("forward", "event no longer stored, not sent", "target=%s", t->name);
	}
	if (keep > 0) {
		sl->ids = malloc(16 * keep);
		if (sl->ids == NULL)
			abort();
		int attempts = 0;
		for (size_t i = 0; i < keep; i++) {
			memcpy(sl->ids + 16 * i, rows[i].event_id, 16);
			if (rows[i].attempts > attempts)
				attempts = rows[i].attempts;
		}
		sl->n = keep;
		sl->attempts = attempts;
		struct sha256 h;
		uint8_t digest[32];
		sha256_init(&h);
		sha256_update(&h, sl->ids, 16 * keep);
		sha256_final(&h, digest);
		hex(digest, 16, sl->key);
		sl->body = t->json ? body_json(rows, keep, &sl->body_len) :
		    body_protobuf(rows, keep, &sl->body_len);
		if (t->healthy)
			start_request(sl);
		else
			sl->state = SLOT_WAITING;	/* goes with the others */
	}
	pump(t);	/* more rows may be due: fill the other slots */
}

/* Claims rows for an idle slot, one claim at a time per target. */
static void
pump(struct target *t)
{
	if (!t->healthy)
		return;
	if (t->claiming) {
		t->again = true;
		return;
	}
	for (size_t i = 0; i < t->nslots; i++) {
		struct slot *sl = &t->slots[i];
		if (sl->state != SLOT_IDLE)
			continue;
		sl->state = SLOT_CLAIMING;
		t->claiming = true;
		t->again = false;
		t->f->outbox.claim(t->f->outbox.ctx, t->name, t->batch_rows, t->batch_bytes,
		    t->lease_s, claimed, sl);
		return;
	}
}

/* ---- requests ---------------------------------------------------------- */

static int
setup_easy(struct slot *sl)
{
	struct target *t = sl->t;
	CURL *e = sl->easy;
	const char *protocols = t->allow_http ? "https,http" : "https";

	curl_easy_reset(e);
	curl_slist_free_all(sl->headers);
	sl->headers = NULL;
	char key[64];
	snprintf(key, sizeof(key), "Idempotency-Key: %s", sl->key);
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, t->json ? "Content-Type: application/json" :
	    "Content-Type: application/x-protobuf");
	h = curl_slist_append(h, key);
	h = curl_slist_append(h, "Expect:");
	if (t->auth != NULL)
		h = curl_slist_append(h, t->auth);
	if (h == NULL)
		return -1;
	sl->headers = h;
	sl->reply_len = 0;
	sl->reply_cut = false;
	sl->errbuf[0] = '\0';
	if (curl_easy_setopt(e, CURLOPT_URL, t->url) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protocols) != CURLE_OK)
		return -1;
	curl_easy_setopt(e, CURLOPT_PRIVATE, sl);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, sl->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sl->body_len);
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

static void
arm_retry(struct target *t, int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(t->retry, &tv);
}

/* A request that could not start: its rows are claimed again when their
 * lease runs out; a failing target gets its next probe. */
static void
not_started(struct slot *sl)
{
	struct target *t = sl->t;

	slot_clear(sl);
	if (t->probe == sl) {
		t->probe = NULL;
		arm_retry(t, backoff_next(&t->backoff, backoff_random()));
	}
}

static void
start_request(struct slot *sl)
{
	struct target *t = sl->t;

	if (sl->easy == NULL)
		sl->easy = curl_easy_init();
	if (sl->easy == NULL || setup_easy(sl) != 0) {
		log_error("forward", "cannot set up request", "target=%s", t->name);
		not_started(sl);
		return;
	}
	sl->state = SLOT_SENDING;
	sl->started_ms = mono_ms();
	CURLMcode mc = curl_multi_add_handle(t->f->multi, sl->easy);
	if (mc != CURLM_OK) {
		log_error("forward", "cannot start request", "target=%s error=%s", t->name,
		    curl_multi_strerror(mc));
		not_started(sl);
	}
}

static bool
tls_error(CURLcode c)
{
	return c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CACERT_BADFILE ||
	    c == CURLE_SSL_CERTPROBLEM || c == CURLE_SSL_CONNECT_ERROR ||
	    c == CURLE_SSL_ISSUER_ERROR || c == CURLE_SSL_PINNEDPUBKEYNOTMATCH ||
	    c == CURLE_SSL_INVALIDCERTSTATUS || c == CURLE_SSL_CRL_BADFILE;
}

/* Printable text of an error, for logs and the outbox. */
static void
printable(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 && *p != '\t')
			*p = ' ';
}


/* Back to health: the waiting batches go now, new rows are claimed. */
static void
target_up(struct target *t)
{
	if (!t->healthy) {
		log_info("forward", "target available again", "target=%s outage_ms=%lld", t->name,
		    (long long)(mono_ms() - t->outage_started_ms));
		t->healthy = true;
		evtimer_del(t->retry);
	}
	t->tls_outage = false;
	t->probe = NULL;
	backoff_reset(&t->backoff);
	for (size_t i = 0; i < t->nslots; i++)
		if (t->slots[i].state == SLOT_WAITING)
			start_request(&t->slots[i]);
	pump(t);
}

static void
request_done(struct slot *sl, CURLcode code)
{
	struct target *t = sl->t;
	long status = 0;
	curl_off_t retry_after = 0;
	int64_t ms = mono_ms() - sl->started_ms;

	curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(sl->easy, CURLINFO_RETRY_AFTER, &retry_after);
	curl_multi_remove_handle(t->f->multi, sl->easy);
	sl->attempts++;
	if (code == CURLE_OK) {
		t->st.latency_count++;
		t->st.latency_ms_sum += (uint64_t)ms;
		if ((uint64_t)ms > t->st.latency_ms_max)
			t->st.latency_ms_max = (uint64_t)ms;
	}

	if (code == CURLE_OK && status >= 200 && status < 300) {
		log_debug("forward", "sent", "target=%s events=%zu status=%ld ms=%lld key=%s",
		    t->name, sl->n, status, (long long)ms, sl->key);
		settle(sl, sl->ids, sl->n, OUTBOX_SENT, (int)status, NULL, 0);
		t->st.sent_rows += sl->n;
		t->st.sent_requests++;
		slot_clear(sl);
		target_up(t);
		return;
	}
	if (code == CURLE_OK && status >= 400 && status < 500 && status != 408 && status != 429) {
		/* Refused: sending it again will not help until someone
		 * fixes the cause (`gridbridgectl outbox retry`). */
		char text[REPLY_TEXT];
		safe_text(sl->reply, sl->reply_len, sl->reply_cut, text);
		log_error("forward", "events refused by the platform", "target=%s status=%ld "
		    "events=%zu key=%s", t->name, status, sl->n, sl->key);
		settle(sl, sl->ids, sl->n, OUTBOX_FAILED, (int)status, text, 0);
		t->st.failed_rows_4xx += sl->n;
		slot_clear(sl);
		target_up(t);	/* the platform answered: it is up */
		return;
	}

	/* Worth another try: 408, 429, 5xx, or no answer. */
	char why[CURL_ERROR_SIZE + 64];
	if (code != CURLE_OK)
		snprintf(why, sizeof(why), "%s", sl->errbuf[0] ? sl->errbuf : curl_easy_strerror(code));
	else
		snprintf(why, sizeof(why), "HTTP %ld", status);
	printable(why);
	int64_t delay = backoff_next(&t->backoff, backoff_random());
	if (retry_after > 0) {
		if (retry_after > t->retry_after_max_s) {
			log_warn("forward", "Retry-After capped", "target=%s retry_after_s=%lld "
			    "retry_in_ms=%lld", t->name, (long long)retry_after,
			    t->retry_after_max_s * 1000);
			retry_after = t->retry_after_max_s;
		}
		delay = (int64_t)retry_after * 1000;
	}
	if (t->max_attempts > 0 && sl->attempts >= t->max_attempts) {
		char msg[CURL_ERROR_SIZE + 96];
		snprintf(msg, sizeof(msg), "gave up after %d attempts: %s", sl->attempts, why);
		log_error("forward", "events not sent, attempts exhausted", "target=%s events=%zu "
		    "attempts=%d error=%s", t->name, sl->n, sl->attempts, why);
		settle(sl, sl->ids, sl->n, OUTBOX_FAILED, (int)status, msg, 0);
		t->st.failed_rows_other += sl->n;
		slot_clear(sl);
	} else {
		settle(sl, sl->ids, sl->n, OUTBOX_RETRY, (int)status, why, delay + t->lease_s * 1000LL);
		t->st.retried_requests++;
		sl->state = SLOT_WAITING;
	}
	/* The platform refusing our certificate shows, with TLS 1.3, after our
	 * side of the handshake: as an alert, or on later attempts as a
	 * connection the server already closed. Such failures stay TLS
	 * failures until a request succeeds. */
	bool tls = tls_error(code) || (code != CURLE_OK && strstr(why, "alert") != NULL);
	/* ... or as a new connection closed at once after our handshake,
	 * before any answer (a server that merely went away does that at
	 * a random moment, not within milliseconds of the handshake). */
	curl_off_t app_us = 0, total_us = 0;
	curl_easy_getinfo(sl->easy, CURLINFO_APPCONNECT_TIME_T, &app_us);
	curl_easy_getinfo(sl->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	if (!tls && (code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
	    code == CURLE_GOT_NOTHING) && status == 0 && app_us > 0 &&
	    total_us - app_us < TLS_REFUSAL_US) {
		static const char hint[] = " (closed right after the TLS handshake: is our "
		    "client certificate refused?)";
		size_t n = strlen(why);
		if (n + sizeof(hint) <= sizeof(why))
			memcpy(why + n, hint, sizeof(hint));
		tls = true;
	}
	if (tls)
		t->tls_outage = true;
	else if (t->tls_outage && (code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
	    code == CURLE_GOT_NOTHING))
		tls = true;
	if (tls) {
		t->st.tls_errors++;
		log_error("forward", "TLS failed, nothing sent", "target=%s error=%s retry_in_ms=%lld",
		    t->name, why, (long long)delay);
	} else if (t->healthy) {
		log_warn("forward", "target unavailable", "target=%s error=%s retry_in_ms=%lld",
		    t->name, why, (long long)delay);
	} else {
		log_debug("forward", "target still unavailable", "target=%s error=%s retry_in_ms=%lld",
		    t->name, why, (long long)delay);
	}
	if (t->healthy) {
		t->healthy = false;
		t->outage_started_ms = mono_ms();
	}
	/* One probe at a time: requests that were in flight when the target
	 * failed do not start another while the probe is out. */
	if (t->probe == sl)
		t->probe = NULL;
	if (t->probe == NULL && !evtimer_pending(t->retry, NULL))
		arm_retry(t, delay);
}

/* The probe: one waiting batch is sent again. */
static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct target *t = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < t->nslots; i++) {
		if (t->slots[i].state == SLOT_WAITING) {
			t->probe = &t->slots[i];
			start_request(&t->slots[i]);
			return;
		}
	}
	/* Nothing waiting (given up on): claim again. */
	t->healthy = true;
	pump(t);
}

static void
check_done(struct forward *f)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(f->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct slot *sl = NULL;
		CURL *e = m->easy_handle;
		CURLcode code = m->data.result;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&sl);
		if (sl != NULL)
			request_done(sl, code);
	}
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward *f = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < f->ntargets; i++)
		pump(&f->targets[i]);
}

void
forward_kick(void *forward)
{
	struct forward *f = forward;

	for (size_t i = 0; i < f->ntargets; i++)
		pump(&f->targets[i]);
}

void
forward_start(struct forward *f)
{
	struct timeval tv = { .tv_sec = POLL_MS / 1000, .tv_usec = (POLL_MS % 1000) * 1000 };

	f->outbox.release(f->outbox.ctx);
	evtimer_add(f->poll, &tv);
	for (size_t i = 0; i < f->ntargets; i++) {
		log_info("forward", "target", "target=%s format=%s max_inflight=%zu", f->targets[i].name,
		    f->targets[i].json ? "json" : "protobuf", f->targets[i].nslots);
		pump(&f->targets[i]);
	}
}

const char *
forward_unavailable(const struct forward *f)
{
	for (size_t i = 0; i < f->ntargets; i++)
		if (!f->targets[i].healthy)
			return f->targets[i].name;
	return NULL;
}

static int
target_init(struct forward *f, struct target *t, const struct forward_target *c)
{
	t->f = f;
	t->name = xstrdup(c->name);
	t->url = xstrdup(c->url);
	t->json = c->json;
	t->allow_http = c->allow_http;
	t->ca_file = xstrdup(c->ca_file);
	t->cert_file = xstrdup(c->cert_file);
	t->key_file = xstrdup(c->key_file);
	t->proxy = xstrdup(c->proxy);
	t->connect_timeout = c->connect_timeout;
	t->timeout = c->timeout;
	t->batch_rows = c->batch_rows;
	t->batch_bytes = c->batch_bytes;
	t->lease_s = (int)(c->connect_timeout + c->timeout + LEASE_MARGIN_S);
	t->max_attempts = c->max_attempts;
	t->retry_after_max_s = c->retry_after_max > 0 ? c->retry_after_max : 1;
	t->healthy = true;
	backoff_init(&t->backoff, c->retry_base_ms, c->retry_cap_ms);
	t->retry = evtimer_new(f->base, retry_cb, t);
	t->nslots = c->max_inflight;
	t->slots = calloc(t->nslots, sizeof(*t->slots));
	if (t->retry == NULL || t->slots == NULL)
		return -1;
	for (size_t i = 0; i < t->nslots; i++)
		t->slots[i].t = t;
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
		t->auth = malloc(n);
		if (t->auth == NULL)
			abort();
		snprintf(t->auth, n, "Authorization: Bearer %s", c->token);
	}
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
	f->multi = curl_multi_init();
	f->timeout = evtimer_new(base, timeout_cb, f);
	f->poll = event_new(base, -1, EV_PERSIST, poll_cb, f);
	f->targets = calloc(ntargets ? ntargets : 1, sizeof(*f->targets));
	if (f->multi == NULL || f->timeout == NULL || f->poll == NULL || f->targets == NULL) {
		forward_free(f);
		return NULL;
	}
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
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

void
forward_free(struct forward *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->ntargets; i++) {
		struct target *t = &f->targets[i];
		if (t->name != NULL)
			log_info("forward", "totals", "target=%s sent=%llu requests=%llu retried=%llu "
			    "failed_4xx=%llu failed_other=%llu tls_errors=%llu latency_ms_avg=%llu "
			    "latency_ms_max=%llu", t->name, (unsigned long long)t->st.sent_rows,
			    (unsigned long long)t->st.sent_requests,
			    (unsigned long long)t->st.retried_requests,
			    (unsigned long long)t->st.failed_rows_4xx,
			    (unsigned long long)t->st.failed_rows_other,
			    (unsigned long long)t->st.tls_errors,
			    (unsigned long long)(t->st.latency_count ?
			    t->st.latency_ms_sum / t->st.latency_count : 0),
			    (unsigned long long)t->st.latency_ms_max);
		for (size_t j = 0; t->slots != NULL && j < t->nslots; j++) {
			struct slot *sl = &t->slots[j];
			if (sl->easy != NULL) {
				if (sl->state == SLOT_SENDING)
					curl_multi_remove_handle(f->multi, sl->easy);
				curl_easy_cleanup(sl->easy);
			}
			curl_slist_free_all(sl->headers);
			slot_clear(sl);
		}
		free(t->slots);
		if (t->retry != NULL)
			event_free(t->retry);
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
	}
	free(f->targets);
	if (f->multi != NULL)
		curl_multi_cleanup(f->multi);
	if (f->timeout != NULL)
		event_free(f->timeout);
	if (f->poll != NULL)
		event_free(f->poll);
	curl_global_cleanup();
	free(f);
}
