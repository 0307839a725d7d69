/* forward_viid_picture.c — fetching the pictures of events from the
 * devices: see forward_viid_picture.h.
 *
 * The choices:
 *
 * - One forward_curl (multi handle) per fetcher, and a pool of easy
 *   handles, at most max_parallel of them: a handle is made when a
 *   transfer needs one and none is idle, and kept for the next. Its options
 *   are set once; a transfer sets only its URL and itself as the handle's
 *   private and write data. Connections to the devices stay open in the
 *   multi handle's cache between transfers, and a handle keeps the Digest
 *   nonce a device gave it.
 * - Transfers wait in one FIFO over all jobs; one starts whenever fewer
 *   than max_parallel run. A job's callback runs from a zero timer, never
 *   from within viid_fetch() nor from within libcurl's callbacks: ready
 *   jobs are delivered one per turn of the loop, in the order they became
 *   ready, so a callback may fetch, cancel other jobs or free the fetcher.
 * - A URL that is not http:// or https://, has a control byte, or is
 *   longer than VIID_FETCH_URL_MAX fails at once, without a transfer.
 *   libcurl may use http and https only, for redirects too, and follows
 *   none: a 3xx is the answer.
 * - The body of a 2xx is kept, up to max_bytes: CURLOPT_MAXFILESIZE_LARGE
 *   refuses a longer Content-Length, the write callback a body without
 *   one that grows past it. The body of any other status is dropped as it
 *   comes (a 401 challenge before the credentials, an error page).
 * - The outcome, in this order:
 *
 *     an answer other than 2xx (even when its body was cut short by
 *     max_bytes):
 *       408, 429, 5xx and above      retry   "HTTP 503"
 *       3xx (not followed: the       failed  "HTTP 302, redirects are
 *         same URL redirects again)            not followed"
 *       other 4xx                    failed  "HTTP 404"
 *       1xx                          retry   "HTTP 101"
 *     no status and no error         retry   "no answer"
 *     larger than max_bytes          failed  "larger than max_bytes"
 *     libcurl refused the URL        failed  libcurl's text for its code:
 *                                            "URL using bad/illegal format
 *                                            or missing URL (curl error 3)"
 *     any other libcurl error        retry   the same: "Timeout was reached
 *       (network, timeout, TLS)                (curl error 28)"
 *     any 2xx: the body decides, as for 200: the magic bytes of a JPEG,
 *       PNG, GIF or BMP (those forward_viid_body.c names) are ok, anything
 *       else (an HTML page, nothing) is retry "HTTP 200, not an image".
 *
 *   A TLS verification error is retried like the network: the device or
 *   ca_file may be put right while the event waits.
 * - The error text is made here from the status or from
 *   curl_easy_strerror(), whose texts are fixed: no CURLOPT_ERRORBUFFER is
 *   set, as libcurl writes the host and URL into it, which may carry
 *   credentials or a person's path.
 * - TLS: peer and host verified, TLS 1.2 at least, ca_file when set; no
 *   proxy, from the configuration or the environment (the devices are on
 *   the community's network).
 * - timeout_s and connect_timeout_s of 0 or less are 10 and 5 s;
 *   max_parallel is taken between 1 and PARALLEL_MAX.
 */
#include "forward_viid_picture.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward_curl.h"
#include "log.h"
#include "util.h"
#include "version.h"

#define PARALLEL_MAX 64
#define TIMEOUT_DEFAULT_S 10
#define CONNECT_TIMEOUT_DEFAULT_S 5
#define BODY_FIRST 16384		/* a body's first allocation */
#define STR_(x) #x
#define STR(x) STR_(x)

/* One URL of a job. */
struct transfer {
	struct viid_fetch_job *job;
	struct transfer *prev, *next;	/* the fetcher's queue, while queued */
	char *url;			/* NULL: refused at once */
	CURL *easy;			/* while running */
	bool queued;
	uint8_t *body;
	size_t len, cap;
	bool too_large;			/* the write callback stopped it */
	int64_t started_ms;
};

struct viid_fetch_job {
	struct viid_fetcher *f;
	struct viid_fetch_job *prev, *next;	/* f->jobs, or f->ready once ready */
	bool ready;				/* all ended: waits for its callback */
	bool delivering;			/* in its callback */
	viid_fetch_done_fn *done;
	void *ctx;
	size_t n;
	size_t left;				/* transfers not ended */
	struct transfer *xfers;			/* n */
	struct viid_fetch_result *results;	/* n */
};

struct job_list {
	struct viid_fetch_job *head, *tail;
};

struct viid_fetcher {
	struct event_base *base;
	struct forward_curl *curl;
	struct event *deliver;		/* zero timer: the callbacks of ready jobs */
	bool curl_global;		/* curl_global_init() succeeded */
	char *target, *ca_file, *username, *password;
	size_t max_bytes, max_parallel;
	long timeout_s, connect_timeout_s;
	CURL **idle;			/* the pool: max_parallel places */
	size_t nidle;
	size_t running;
	struct transfer *qhead, *qtail;	/* waiting for a place, oldest first */
	struct job_list jobs;		/* not ready */
	struct job_list ready;		/* ready, oldest first */
};

/* ---- lists ------------------------------------------------------------- */

static void
jobs_append(struct job_list *l, struct viid_fetch_job *j)
{
	j->prev = l->tail;
	j->next = NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static void
jobs_remove(struct job_list *l, struct viid_fetch_job *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		l->head = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	else
		l->tail = j->prev;
	j->prev = j->next = NULL;
}

static void
queue_append(struct viid_fetcher *f, struct transfer *t)
{
	t->prev = f->qtail;
	t->next = NULL;
	if (f->qtail != NULL)
		f->qtail->next = t;
	else
		f->qhead = t;
	f->qtail = t;
	t->queued = true;
}

static void
queue_remove(struct viid_fetcher *f, struct transfer *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		f->qhead = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	else
		f->qtail = t->prev;
	t->prev = t->next = NULL;
	t->queued = false;
}

/* ---- outcomes ---------------------------------------------------------- */

/* The magic bytes of the formats forward_viid_body.c names. */
static bool
is_image(const uint8_t *p, size_t n)
{
	return (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) ||
	    (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) ||
	    (n >= 4 && memcmp(p, "GIF8", 4) == 0) ||
	    (n >= 2 && memcmp(p, "BM", 2) == 0);
}

/* Why `url` cannot be fetched, or NULL. */
static const char *
url_problem(const char *url)
{
	size_t n = strnlen(url, VIID_FETCH_URL_MAX + 1);

	if (n > VIID_FETCH_URL_MAX)
		return "URL longer than " STR(VIID_FETCH_URL_MAX) " bytes";
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
		return "not an http(s) URL";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] < 0x20 || url[i] == 0x7f)
			return "URL with a control byte";
	return NULL;
}

static enum viid_fetch_status
by_status(long status, char *error, size_t size)
{
	if (status == 408 || status == 429 || status >= 500 || status < 200) {
		snprintf(error, size, "HTTP %ld", status);
		return VIID_FETCH_RETRY;
	}
	if (status < 400) {
		snprintf(error, size, "HTTP %ld, redirects are not followed", status);
		return VIID_FETCH_FAILED;
	}
	snprintf(error, size, "HTTP %ld", status);
	return VIID_FETCH_FAILED;
}

/* The outcome of an ended transfer, into r (its status and error). */
static void
outcome(const struct transfer *t, CURLcode code, struct viid_fetch_result *r)
{
	bool too_large = code == CURLE_FILESIZE_EXCEEDED ||
	    (code == CURLE_WRITE_ERROR && t->too_large);
	bool answered = code == CURLE_OK || too_large;
	long status = r->http_status;

	if (answered && status != 0 && (status < 200 || status > 299))
		r->status = by_status(status, r->error, sizeof(r->error));
	else if (too_large) {
		r->status = VIID_FETCH_FAILED;
		snprintf(r->error, sizeof(r->error), "larger than max_bytes");
	} else if (code != CURLE_OK) {
		r->status = code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL ?
		    VIID_FETCH_FAILED : VIID_FETCH_RETRY;
		snprintf(r->error, sizeof(r->error), "%s (curl error %d)", curl_easy_strerror(code),
		    (int)code);
	} else if (status == 0) {
		r->status = VIID_FETCH_RETRY;
		snprintf(r->error, sizeof(r->error), "no answer");
	} else if (!is_image(t->body, t->len)) {
		r->status = VIID_FETCH_RETRY;
		snprintf(r->error, sizeof(r->error), "HTTP %ld, not an image", status);
	} else {
		r->status = VIID_FETCH_OK;
		r->error[0] = '\0';
	}
}

/* ---- transfers --------------------------------------------------------- */

static size_t
write_fn(char *data, size_t size, size_t nmemb, void *userp)
{
	struct transfer *t = userp;
	size_t n = size * nmemb;
	size_t max = t->job->f->max_bytes;
	long status = 0;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		return n;		/* not a picture: dropped */
	if (n > max - t->len) {
		t->too_large = true;
		return 0;		/* CURLE_WRITE_ERROR */
	}
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap : BODY_FIRST;
		while (cap < t->len + n)
			cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
		if (cap > max)
			cap = max;	/* still >= len + n */
		t->body = util_realloc(t->body, cap);
		t->cap = cap;
	}
	memcpy(t->body + t->len, data, n);
	t->len += n;
	return n;
}

/* A handle with the fetcher's options; NULL when libcurl cannot make one. */
static CURL *
easy_new(struct viid_fetcher *f)
{
	CURL *e = curl_easy_init();
	const curl_off_t off_max = CURL_OFF_T_C(0x7fffffffffffffff);
	curl_off_t max = (uint64_t)f->max_bytes > (uint64_t)off_max ? off_max :
	    (curl_off_t)f->max_bytes;

	if (e == NULL)
		return NULL;
	if (curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK) {
		curl_easy_cleanup(e);
		return NULL;
	}
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "gridbridge/" GRIDBRIDGE_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fn);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, max);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, f->connect_timeout_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, f->timeout_s);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (f->ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, f->ca_file);
	if (f->username[0] != '\0') {
		/* libcurl asks without, then answers the scheme the device names. */
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)(CURLAUTH_DIGEST | CURLAUTH_BASIC));
		curl_easy_setopt(e, CURLOPT_USERNAME, f->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, f->password);
	}
	return e;
}

static CURL *
easy_get(struct viid_fetcher *f)
{
	if (f->nidle > 0)
		return f->idle[--f->nidle];
	return easy_new(f);
}

static void
easy_put(struct viid_fetcher *f, CURL *e)
{
	curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	if (f->nidle < f->max_parallel)
		f->idle[f->nidle++] = e;
	else
		curl_easy_cleanup(e);
}

static void
job_ready(struct viid_fetch_job *j)
{
	struct viid_fetcher *f = j->f;
	static const struct timeval now = { 0, 0 };

	jobs_remove(&f->jobs, j);
	jobs_append(&f->ready, j);
	j->ready = true;
	evtimer_add(f->deliver, &now);
}

/* Transfer i of its job ended. */
static void
ended(struct transfer *t)
{
	struct viid_fetch_job *j = t->job;

	if (--j->left == 0)
		job_ready(j);
}

static void
start(struct viid_fetcher *f, struct transfer *t)
{
	struct viid_fetch_result *r = &t->job->results[t - t->job->xfers];
	CURL *e = easy_get(f);

	if (e != NULL && curl_easy_setopt(e, CURLOPT_URL, t->url) == CURLE_OK) {
		curl_easy_setopt(e, CURLOPT_PRIVATE, t);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
		t->easy = e;
		t->started_ms = util_mono_ms();
		if (forward_curl_add(f->curl, e) == CURLM_OK) {
			f->running++;
			return;
		}
		t->easy = NULL;
	}
	if (e != NULL)
		easy_put(f, e);
	log_warn("forward", "viid picture fetch not started", "target=%s", f->target);
	r->status = VIID_FETCH_RETRY;
	snprintf(r->error, sizeof(r->error), "cannot start the transfer");
	ended(t);
}

/* Starts waiting transfers while there is room. */
static void
pump(struct viid_fetcher *f)
{
	while (f->running < f->max_parallel && f->qhead != NULL) {
		struct transfer *t = f->qhead;
		queue_remove(f, t);
		start(f, t);
	}
}

static void
transfer_done(void *ctx, CURL *easy, void *priv, CURLcode code)
{
	struct viid_fetcher *f = ctx;
	struct transfer *t = priv;
	struct viid_fetch_job *j = t->job;
	struct viid_fetch_result *r = &j->results[t - j->xfers];

	f->running--;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->http_status);
	outcome(t, code, r);
	t->easy = NULL;
	easy_put(f, easy);
	if (r->status == VIID_FETCH_OK) {
		r->data = t->body;
		r->len = t->len;
		t->body = NULL;
	} else {
		free(t->body);
		t->body = NULL;
	}
	log_debug("forward", "viid picture fetched", "target=%s outcome=%s status=%ld bytes=%zu "
	    "ms=%lld error=%s", f->target, r->status == VIID_FETCH_OK ? "ok" :
	    r->status == VIID_FETCH_RETRY ? "retry" : "failed", r->http_status, t->len,
	    (long long)(util_mono_ms() - t->started_ms), r->error);
	ended(t);
	pump(f);
}

/* ---- jobs -------------------------------------------------------------- */

static void
job_free(struct viid_fetch_job *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->xfers[i].body);
		free(j->xfers[i].url);
		free(j->results[i].data);
	}
	free(j->xfers);
	free(j->results);
	free(j);
}

/* Ends j's transfers and frees it, without starting waiting ones. */
static void
job_drop(struct viid_fetch_job *j)
{
	struct viid_fetcher *f = j->f;

	if (j->ready) {
		jobs_remove(&f->ready, j);
		job_free(j);
		return;
	}
	for (size_t i = 0; i < j->n; i++) {
		struct transfer *t = &j->xfers[i];
		if (t->queued)
			queue_remove(f, t);
		if (t->easy != NULL) {
			forward_curl_remove(f->curl, t->easy);
			easy_put(f, t->easy);
			t->easy = NULL;
			f->running--;
		}
	}
	jobs_remove(&f->jobs, j);
	job_free(j);
}

/* One ready job per turn: its callback may free the fetcher, which is not
 * touched after it. */
static void
deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct viid_fetcher *f = arg;
	struct viid_fetch_job *j = f->ready.head;
	static const struct timeval now = { 0, 0 };

	(void)fd;
	(void)what;
	if (j == NULL)
		return;
	jobs_remove(&f->ready, j);
	if (f->ready.head != NULL)
		evtimer_add(f->deliver, &now);
	j->delivering = true;
	j->done(j->ctx, j->results, j->n);
	job_free(j);
}

struct viid_fetch_job *
viid_fetch(struct viid_fetcher *f, const char *const *urls, size_t n,
    viid_fetch_done_fn *done, void *ctx)
{
	struct viid_fetch_job *j = util_calloc(1, sizeof(*j));

	j->f = f;
	j->done = done;
	j->ctx = ctx;
	j->n = n;
	j->xfers = util_calloc(n, sizeof(*j->xfers));
	j->results = util_calloc(n, sizeof(*j->results));
	jobs_append(&f->jobs, j);
	for (size_t i = 0; i < n; i++) {
		struct transfer *t = &j->xfers[i];
		const char *why = url_problem(urls[i]);
		t->job = j;
		if (why != NULL) {
			j->results[i].status = VIID_FETCH_FAILED;
			snprintf(j->results[i].error, sizeof(j->results[i].error), "%s", why);
			continue;
		}
		t->url = util_strdup(urls[i]);
		queue_append(f, t);
		j->left++;
	}
	if (j->left == 0)
		job_ready(j);
	else
		pump(f);
	return j;
}

void
viid_fetch_cancel(struct viid_fetch_job *j)
{
	struct viid_fetcher *f;

	if (j == NULL || j->delivering)
		return;		/* it ended already: it is freed when done returns */
	f = j->f;
	job_drop(j);
	pump(f);
}

/* ---- the fetcher ------------------------------------------------------- */

static char *
dup_or_empty(const char *s)
{
	return util_strdup(s != NULL ? s : "");
}

struct viid_fetcher *
viid_fetcher_new(struct event_base *base, const struct viid_fetch_config *c)
{
	struct viid_fetcher *f = util_calloc(1, sizeof(*f));

	f->base = base;
	f->target = dup_or_empty(c->target);
	f->ca_file = dup_or_empty(c->ca_file);
	f->username = dup_or_empty(c->username);
	f->password = dup_or_empty(c->password);
	f->max_bytes = c->max_bytes;
	f->timeout_s = c->timeout_s > 0 ? c->timeout_s : TIMEOUT_DEFAULT_S;
	f->connect_timeout_s = c->connect_timeout_s > 0 ? c->connect_timeout_s :
	    CONNECT_TIMEOUT_DEFAULT_S;
	f->max_parallel = c->max_parallel < 1 ? 1 :
	    c->max_parallel > PARALLEL_MAX ? PARALLEL_MAX : c->max_parallel;
	f->idle = util_calloc(f->max_parallel, sizeof(*f->idle));
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("forward", "cannot initialise libcurl", "target=%s", f->target);
		viid_fetcher_free(f);
		return NULL;
	}
	f->curl_global = true;
	f->curl = forward_curl_new(base, transfer_done, f);
	f->deliver = evtimer_new(base, deliver_cb, f);
	if (f->curl == NULL || f->deliver == NULL) {
		log_error("forward", "cannot set up picture fetching", "target=%s", f->target);
		viid_fetcher_free(f);
		return NULL;
	}
	return f;
}

void
viid_fetcher_free(struct viid_fetcher *f)
{
	if (f == NULL)
		return;
	while (f->jobs.head != NULL)
		job_drop(f->jobs.head);
	while (f->ready.head != NULL)
		job_drop(f->ready.head);
	forward_curl_free(f->curl);
	for (size_t i = 0; i < f->nidle; i++)
		curl_easy_cleanup(f->idle[i]);
	free(f->idle);
	if (f->deliver != NULL)
		event_free(f->deliver);
	if (f->curl_global)
		curl_global_cleanup();
	memset(f->password, 0, strlen(f->password));
	free(f->password);
	free(f->username);
	free(f->ca_file);
	free(f->target);
	free(f);
}
