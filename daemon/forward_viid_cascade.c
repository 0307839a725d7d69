/* forward_viid_cascade.c — a cascade target's listener, subscriptions and
 * catalogue pushes: see forward_viid_cascade.h.
 *
 * Choices (written in gridbridge.conf(5), GA/T 1400 CASCADE):
 *
 * - Requests: POST /VIID/Subscribes makes the subscriptions of its
 *   SubscribeListObject (one already known is replaced; one that had
 *   ended is made again); PUT /VIID/Subscribes does the same and ends
 *   those with OperateType 1; PUT /VIID/Subscribes/{id} cancels {id};
 *   DELETE /VIID/Subscribes?IDList=... deletes. A trailing '/' is
 *   ignored. Anything else: 404 or 405, with a ResponseStatusObject.
 * - Every request must pass Digest (realm "gridbridge", the target's
 *   listen_username and password); a 401 carries a fresh challenge
 *   (stale=true when the nonce only aged). With platform_id set, a
 *   request whose User-Identify is not that id is answered 403.
 * - A subscription is answered 0 only once PostgreSQL committed it. When
 *   the database does not answer within STORE_WAIT_S, the request is
 *   answered 503 with StatusCode 2 (busy) for the objects not yet stored;
 *   what the database commits later still counts (the platform asking
 *   again finds it made).
 * - ResourceURI: empty, or naming our own viid_device_id, covers every
 *   device; otherwise the [viid.device] sections whose ids it lists (ids
 *   of other devices ignored). One naming none of ours is refused (4).
 * - ReceiveAddr must be https:// unless the target allows http.
 * - Active subscriptions are bounded by max_subscriptions: one more is
 *   refused (4); replacing one already active always passes.
 * - Cancelling or deleting one that had already ended answers 0; one
 *   never made answers 4.
 * - The catalogue: once a subscription is made, one notification with the
 *   devices it covers (DeviceList.APEObject[], IsOnline "9": the
 *   catalogue does not claim a state it does not know; device status
 *   notifications tell it) is POSTed to its ReceiveAddr, retried with
 *   the target's backoff until StatusCode 0 (sent) or 4-8, a refusing
 *   4xx or max_attempts (failed), the outcome kept in PostgreSQL (a
 *   restart pushes one still owed). A 401 is retried: the platform may
 *   not have our session yet.
 */
#include "forward_viid_cascade.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backoff.h"
#include "forward_curl.h"
#include "forward_outcome.h"
#include "forward_viid.h"
#include "forward_viid_digest.h"
#include "forward_viid_profile.h"
#include "forward_viid_reply.h"
#include "log.h"
#include "util.h"
#include "version.h"

#define REALM "gridbridge"
#define NONCE_TTL_S 300
#define NONCES_KEPT 256
#define STORE_WAIT_S 10		/* a request waits this long for the database */
#define LOAD_RETRY_S 5
#define HTTP_TIMEOUT_S 30	/* a connection silent this long is closed */
#define HEADERS_MAX 16384
#define PUSH_REPLY_KEEP 65536

/* One active subscription, as stored. */
struct sub {
	struct sub *next;
	struct viid_cascade *c;
	struct viid_subscription s;
	int64_t made_us;
	/* The catalogue push: owed (pending) until sent or failed. */
	bool cat_owed;
	int cat_attempts;
	struct backoff backoff;
	struct event *timer;
	CURL *easy;			/* while pushing */
	struct curl_slist *headers;
	char *body;
	char notification_id[VIID_BUSINESS_ID_LEN + 1];
	unsigned char *reply;
	size_t reply_len;
	bool reply_cut;
	char errbuf[CURL_ERROR_SIZE];
};

struct viid_cascade {
	struct event_base *base;
	struct outbox ob;
	struct viid_cascade_hooks hooks;
	char *target;
	char *system_id;
	char *platform_id;		/* "": any */
	char *org;
	bool allow_http;
	size_t max_subs;
	struct forward_viid_device *devices;	/* copies of the target's */
	size_t ndevices;
	/* the listener */
	struct evhttp *http;
	SSL_CTX *ssl;
	struct viid_digest *digest;
	/* the subscriptions */
	struct sub *subs;
	size_t nsubs;
	bool loaded;
	struct event *load_retry;
	/* pushes: as the target sends */
	struct forward_curl *curl;
	char *ca_file, *cert_file, *key_file, *proxy;
	char *username, *password;
	enum forward_auth auth;
	long connect_timeout, timeout;
	uint32_t retry_base_ms, retry_cap_ms;
	long long max_attempts;
	char user_identify[64];
};

static char *
dup_or_empty(const char *s)
{
	return util_strdup(s != NULL ? s : "");
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- subscriptions as the store keeps them ----------------------------- */

static struct sub *
find_sub(struct viid_cascade *c, const char *id)
{
	for (struct sub *u = c->subs; u != NULL; u = u->next)
		if (strcmp(u->s.id, id) == 0)
			return u;
	return NULL;
}

static void
copy_text(char *dst, size_t size, json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";

	snprintf(dst, size, "%s", s);
}

/* One subscription of the store's answer (see outbox.h). Returns 0, or
 * -1 when it is not one. */
static int
sub_from_json(json_t *o, struct viid_subscription *s, int64_t *made_us, bool *cat_owed,
    int *cat_attempts)
{
	json_t *id = json_object_get(o, "id");

	memset(s, 0, sizeof(*s));
	if (!json_is_string(id) || strlen(json_string_value(id)) != VIID_BUSINESS_ID_LEN)
		return -1;
	copy_text(s->id, sizeof(s->id), id);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(o, "details"), i, v)
		if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 32)
			s->details |= VIID_DETAIL_BIT(json_integer_value(v));
	json_array_foreach(json_object_get(o, "resources"), i, v) {
		if (s->nresources == VIID_SUB_RESOURCES_MAX)
			break;
		if (json_is_string(v) && strlen(json_string_value(v)) == VIID_DEVICE_ID_LEN)
			copy_text(s->resources[s->nresources++], sizeof(s->resources[0]), v);
	}
	copy_text(s->receive_addr, sizeof(s->receive_addr), json_object_get(o, "receive_addr"));
	copy_text(s->title, sizeof(s->title), json_object_get(o, "title"));
	s->begin_us = json_integer_value(json_object_get(o, "begin_us"));
	s->end_us = json_integer_value(json_object_get(o, "end_us"));
	s->report_interval_s = (long)json_integer_value(json_object_get(o, "report_interval"));
	*made_us = json_integer_value(json_object_get(o, "made_us"));
	json_t *cat = json_object_get(o, "catalogue");
	*cat_owed = json_is_string(cat) && strcmp(json_string_value(cat), "pending") == 0;
	*cat_attempts = (int)json_integer_value(json_object_get(o, "catalogue_attempts"));
	return s->receive_addr[0] != '\0' ? 0 : -1;
}

static void push_catalogue(struct sub *u);

static void
push_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	push_catalogue(arg);
}

static void
push_abandon(struct sub *u)
{
	if (u->easy != NULL) {
		forward_curl_remove(u->c->curl, u->easy);
		curl_easy_cleanup(u->easy);
		u->easy = NULL;
	}
	curl_slist_free_all(u->headers);
	u->headers = NULL;
	free(u->body);
	u->body = NULL;
}

static void
sub_free(struct sub *u)
{
	push_abandon(u);
	if (u->timer != NULL)
		event_free(u->timer);
	free(u->reply);
	free(u);
}

static void
sub_remove(struct viid_cascade *c, const char *id)
{
	for (struct sub **at = &c->subs; *at != NULL; at = &(*at)->next) {
		if (strcmp((*at)->s.id, id) == 0) {
			struct sub *u = *at;
			*at = u->next;
			c->nsubs--;
			sub_free(u);
			return;
		}
	}
}

static void
log_sub(const char *msg, const struct viid_cascade *c, const struct viid_subscription *s)
{
	char details[64] = "";
	size_t len = 0;

	for (int code = 0; code < 32; code++)
		if (s->details & VIID_DETAIL_BIT(code))
			len += (size_t)snprintf(details + len, sizeof(details) - len, "%s%d",
			    len ? "," : "", code);
	log_info("forward", msg, "target=%s subscription=%s details=%s resources=%zu", c->target,
	    s->id, details, s->nresources);
}

/* The store has `o` active: known to forward.c, its catalogue pushed if
 * owed. */
static void
sub_stored(struct viid_cascade *c, json_t *o, bool loading)
{
	struct viid_subscription s;
	int64_t made_us;
	bool owed;
	int attempts;

	if (sub_from_json(o, &s, &made_us, &owed, &attempts) != 0) {
		log_error("forward", "subscription unreadable in the database", "target=%s",
		    c->target);
		return;
	}
	struct sub *u = find_sub(c, s.id);
	if (u == NULL) {
		u = util_calloc(1, sizeof(*u));
		u->c = c;
		u->timer = evtimer_new(c->base, push_timer_cb, u);
		if (u->timer == NULL)
			util_oom(0);
		backoff_init(&u->backoff, c->retry_base_ms, c->retry_cap_ms);
		u->next = c->subs;
		c->subs = u;
		c->nsubs++;
	} else {
		push_abandon(u);
		evtimer_del(u->timer);
	}
	u->s = s;
	u->made_us = made_us;
	u->cat_owed = owed;
	u->cat_attempts = attempts;
	log_sub(loading ? "subscription loaded" : "subscription made", c, &s);
	c->hooks.sub_up(c->hooks.ctx, &u->s);
	if (u->cat_owed)
		push_catalogue(u);
}

/* ---- the catalogue ----------------------------------------------------- */

static size_t
push_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sub *u = userp;
	size_t n = size * nmemb;
	size_t room = PUSH_REPLY_KEEP - u->reply_len;
	size_t take = n < room ? n : room;

	if (u->reply == NULL)
		u->reply = util_malloc(PUSH_REPLY_KEEP);
	memcpy(u->reply + u->reply_len, data, take);
	u->reply_len += take;
	if (take < n)
		u->reply_cut = true;
	return n;
}

/* The subscription covers every device (no ResourceURI, or ours). */
static bool
covers_all(const struct viid_cascade *c, const struct viid_subscription *s)
{
	return s->nresources == 0 || forward_viid_subscribe_covers(s, c->system_id);
}

static void
cat_settle(struct sub *u, const char *state, const char *error)
{
	struct viid_cascade *c = u->c;

	c->ob.subs_catalogue(c->ob.ctx, c->target, u->s.id, state, error);
	if (strcmp(state, "pending") != 0)
		u->cat_owed = false;
}

/* The notification of the devices `u` covers; NULL when none. */
static char *
catalogue_body(struct sub *u)
{
	struct viid_cascade *c = u->c;
	struct viid_device *devs = util_calloc(c->ndevices ? c->ndevices : 1, sizeof(*devs));
	const char **online = util_calloc(c->ndevices ? c->ndevices : 1, sizeof(*online));
	size_t n = 0, len;

	for (size_t i = 0; i < c->ndevices; i++) {
		if (!covers_all(c, &u->s) && !forward_viid_subscribe_covers(&u->s, c->devices[i].id))
			continue;
		/* One APEObject per id (a device may have a section per community). */
		bool seen = false;
		for (size_t j = 0; j < n && !seen; j++)
			seen = strcmp(devs[j].id, c->devices[i].id) == 0;
		if (seen)
			continue;
		forward_viid_device_copy(&devs[n], &c->devices[i]);
		online[n++] = "9";
	}
	struct viid_notify nt = { .subscribe_id = u->s.id, .title = u->s.title, .org = c->org };
	char *body = forward_viid_catalogue_body(devs, online, n, &nt, u->made_us,
	    u->notification_id, &len);
	for (size_t i = 0; i < n; i++)
		forward_viid_device_free(&devs[i]);
	free(devs);
	free(online);
	return body;
}

static int
push_setup(struct sub *u)
{
	struct viid_cascade *c = u->c;
	CURL *e = u->easy;
	const char *protocols = c->allow_http ? "https,http" : "https";
	struct curl_slist *h = NULL;

	h = curl_slist_append(h, "Content-Type: " FORWARD_VIID_CONTENT_TYPE);
	h = curl_slist_append(h, "Accept: application/json,application/VIID+JSON");
	h = curl_slist_append(h, c->user_identify);
	h = curl_slist_append(h, "Expect:");
	if (h == NULL)
		return -1;
	u->headers = h;
	u->reply_len = 0;
	u->reply_cut = false;
	u->errbuf[0] = '\0';
	if (curl_easy_setopt(e, CURLOPT_URL, u->s.receive_addr) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protocols) != CURLE_OK)
		return -1;
	curl_easy_setopt(e, CURLOPT_PRIVATE, u);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, u->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(u->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, u->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "gridbridge/" GRIDBRIDGE_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, push_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, u);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, u->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, c->timeout);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(e, CURLOPT_PROXY, c->proxy);
	if (c->ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	if (c->cert_file[0] != '\0') {
		curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
		curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
	}
	if (c->auth != FORWARD_AUTH_NONE) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, c->auth == FORWARD_AUTH_BASIC ?
		    (long)CURLAUTH_BASIC : (long)CURLAUTH_DIGEST);
		curl_easy_setopt(e, CURLOPT_USERNAME, c->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, c->password);
	}
	return 0;
}

/* Pushes `u`'s catalogue now. */
static void
push_catalogue(struct sub *u)
{
	struct viid_cascade *c = u->c;

	if (!u->cat_owed || u->easy != NULL)
		return;
	u->body = catalogue_body(u);
	if (u->body == NULL) {
		log_warn("forward", "catalogue not pushed, no device", "target=%s subscription=%s",
		    c->target, u->s.id);
		cat_settle(u, "failed", "no [viid.device] the subscription covers");
		return;
	}
	u->easy = curl_easy_init();
	if (u->easy == NULL || push_setup(u) != 0 ||
	    forward_curl_add(c->curl, u->easy) != CURLM_OK) {
		log_error("forward", "cannot start request", "target=%s", c->target);
		push_abandon(u);
		struct timeval tv = { .tv_sec = 1, .tv_usec = 0 };
		evtimer_add(u->timer, &tv);
	}
}

/* The catalogue's answer: sent, failed (why), or to be tried again. */
static void
push_done(void *ctx, CURL *easy, void *priv, CURLcode code)
{
	struct sub *u = priv;
	struct viid_cascade *c = u->c;
	long status = 0;
	struct forward_outcome o;
	char why[FORWARD_TEXT_MAX + 64] = "";
	enum { SENT, FAILED, RETRY } verdict = RETRY;

	(void)ctx;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	struct forward_reply r = {
		.code = code, .error = u->errbuf, .status = status,
		.body = u->reply, .body_len = u->reply_len, .body_cut = u->reply_cut,
	};
	forward_classify(&r, &o);
	if (code == CURLE_OK && status == 401) {
		snprintf(why, sizeof(why), "401: not registered with the platform");
	} else if (o.verdict == FORWARD_SENT) {
		const char *ids[1] = { u->notification_id };
		struct viid_status st;
		struct viid_upload_summary sum;
		forward_viid_upload_reply(u->reply, u->reply_len, u->reply_cut, ids, 1, &st, &sum);
		if (st.verdict == VIID_SENT) {
			verdict = SENT;
		} else {
			verdict = st.verdict == VIID_FAILED ? FAILED : RETRY;
			snprintf(why, sizeof(why), "%s%s%s", sum.reason, sum.reason[0] ? " " : "",
			    st.text[0] != '\0' ? st.text : st.note);
		}
	} else {
		verdict = o.verdict == FORWARD_REFUSED ? FAILED : RETRY;
		snprintf(why, sizeof(why), "%s", o.text);
	}
	push_abandon(u);
	u->cat_attempts++;
	char gave_up[sizeof(why) + 48] = "";
	if (verdict == RETRY && c->max_attempts > 0 && u->cat_attempts >= c->max_attempts) {
		verdict = FAILED;
		snprintf(gave_up, sizeof(gave_up), "gave up after %d attempts: %s",
		    u->cat_attempts, why);
	}
	const char *error = gave_up[0] != '\0' ? gave_up : why;
	switch (verdict) {
	case SENT:
		log_info("forward", "catalogue pushed", "target=%s subscription=%s", c->target,
		    u->s.id);
		backoff_reset(&u->backoff);
		cat_settle(u, "sent", NULL);
		break;
	case FAILED:
		log_error("forward", "catalogue refused by the platform", "target=%s "
		    "subscription=%s status=%ld error=%s", c->target, u->s.id, status, error);
		cat_settle(u, "failed", error);
		break;
	case RETRY: {
		uint32_t delay = backoff_next(&u->backoff, backoff_random());
		log_warn("forward", "catalogue not pushed, retrying", "target=%s subscription=%s "
		    "status=%ld error=%s retry_in_ms=%u", c->target, u->s.id, status, error, delay);
		cat_settle(u, "pending", error);
		struct timeval tv = { .tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000 };
		evtimer_add(u->timer, &tv);
		break;
	}
	}
}

/* ---- loading ----------------------------------------------------------- */

static void load(struct viid_cascade *c);

static void
load_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	load(arg);
}

static void
loaded(void *ctx, const char *answer, bool ok)
{
	struct viid_cascade *c = ctx;
	json_error_t err;

	json_t *arr = ok ? json_loads(answer, 0, &err) : NULL;
	if (!json_is_array(arr)) {
		json_decref(arr);
		log_warn("forward", "subscriptions not loaded, retrying", "target=%s retry_in_s=%d",
		    c->target, LOAD_RETRY_S);
		struct timeval tv = { .tv_sec = LOAD_RETRY_S, .tv_usec = 0 };
		evtimer_add(c->load_retry, &tv);
		return;
	}
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o)
		sub_stored(c, o, true);
	json_decref(arr);
	c->loaded = true;
	log_info("forward", "subscriptions loaded", "target=%s active=%zu", c->target, c->nsubs);
}

static void
load(struct viid_cascade *c)
{
	c->ob.subs_load(c->ob.ctx, c->target, loaded, c);
}

/* ---- the listener: requests -------------------------------------------- */

enum op { OP_NONE, OP_PUT, OP_END };

/* A request waiting for the database. */
struct pending {
	struct viid_cascade *c;
	struct evhttp_request *req;	/* NULL: answered, or the connection is gone */
	struct event *deadline;
	char *url;			/* RequestURL of the answer */
	bool single;			/* PUT /{id}: one ResponseStatusObject */
	struct viid_sub_item *items;
	enum op *ops;			/* what each valid item waits for */
	bool *done;			/* ... and has */
	size_t n;
	int waiting;			/* store queries not answered */
	const char *end_state;		/* "cancelled" or "deleted" */
};

static void
set_json_headers(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", FORWARD_VIID_CONTENT_TYPE);
	evhttp_add_header(h, "Cache-Control", "no-store");
}

/* Answers `req` with `n` statuses (one object when `single`). */
static void
reply_statuses(struct evhttp_request *req, int http_status, const char *url,
    const struct viid_answer *a, size_t n, bool single)
{
	size_t len;
	char *body = forward_viid_answer_body(url, a, n, single, now_us(), &len);
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		util_oom(0);
	evbuffer_add(b, body, len);
	set_json_headers(req);
	evhttp_send_reply(req, http_status, http_status == 200 ? "OK" :
	    http_status == 503 ? "Service Unavailable" : http_status == 404 ? "Not Found" :
	    http_status == 405 ? "Method Not Allowed" : http_status == 403 ? "Forbidden" :
	    http_status == 401 ? "Unauthorized" : "Bad Request", b);
	evbuffer_free(b);
	free(body);
}

static void
reply_one(struct evhttp_request *req, int http_status, const char *url, enum viid_code code,
    const char *text)
{
	struct viid_answer a = { .id = NULL, .code = code, .text = text };

	reply_statuses(req, http_status, url, &a, 1, true);
}

static void
pending_closed(struct evhttp_connection *evcon, void *arg)
{
	struct pending *p = arg;

	(void)evcon;
	p->req = NULL;
}

static void
pending_free(struct pending *p)
{
	if (p->deadline != NULL)
		event_free(p->deadline);
	free(p->url);
	free(p->items);
	free(p->ops);
	free(p->done);
	free(p);
}

/* Answers what is known: stored objects 0, refused ones their code,
 * those the database did not confirm 2 (with 503 when `late`). */
static void
pending_answer(struct pending *p, bool late)
{
	struct evhttp_request *req = p->req;

	if (req == NULL)
		return;
	p->req = NULL;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
	struct viid_answer *a = util_calloc(p->n ? p->n : 1, sizeof(*a));
	bool busy = false;
	for (size_t i = 0; i < p->n; i++) {
		struct viid_sub_item *it = &p->items[i];
		a[i].id = it->id;
		a[i].code = it->code;
		a[i].text = it->code != VIID_CODE_OK ? it->why : NULL;
		if (it->code == VIID_CODE_OK && p->ops[i] != OP_NONE && !p->done[i]) {
			a[i].code = VIID_CODE_BUSY;
			a[i].text = "not stored: the database did not answer";
			busy = true;
		}
	}
	reply_statuses(req, busy || late ? 503 : 200, p->url, a, p->n, p->single);
	free(a);
}

static void
pending_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;

	(void)fd;
	(void)what;
	log_warn("forward", "subscription request not stored in time", "target=%s wait_s=%d",
	    p->c->target, STORE_WAIT_S);
	pending_answer(p, true);
}

static void
pending_step(struct pending *p)
{
	if (--p->waiting > 0)
		return;
	pending_answer(p, false);
	pending_free(p);
}

static void
put_done(void *ctx, const char *answer, bool ok)
{
	struct pending *p = ctx;
	struct viid_cascade *c = p->c;
	json_error_t err;
	json_t *arr = ok ? json_loads(answer, 0, &err) : NULL;
	size_t i;
	json_t *o;

	json_array_foreach(arr, i, o) {
		const char *id = json_string_value(json_object_get(o, "id"));
		for (size_t k = 0; id != NULL && k < p->n; k++)
			if (p->ops[k] == OP_PUT && strcmp(p->items[k].id, id) == 0)
				p->done[k] = true;
		sub_stored(c, o, false);
	}
	json_decref(arr);
	pending_step(p);
}

static void
end_done(void *ctx, const char *answer, bool ok)
{
	struct pending *p = ctx;
	struct viid_cascade *c = p->c;
	json_error_t err;
	json_t *arr = ok ? json_loads(answer, 0, &err) : NULL;
	size_t i;
	json_t *o;

	json_array_foreach(arr, i, o) {
		const char *id = json_string_value(json_object_get(o, "id"));
		if (id == NULL)
			continue;
		bool known = json_is_true(json_object_get(o, "known"));
		bool ended = json_is_true(json_object_get(o, "ended"));
		for (size_t k = 0; k < p->n; k++) {
			if (p->ops[k] != OP_END || strcmp(p->items[k].id, id) != 0)
				continue;
			p->done[k] = true;
			if (!known) {
				p->items[k].code = VIID_CODE_INVALID_OPERATION;
				snprintf(p->items[k].why, sizeof(p->items[k].why),
				    "no such subscription");
			}
		}
		if (ended && find_sub(c, id) != NULL) {
			log_info("forward", "subscription ended", "target=%s subscription=%s state=%s",
			    c->target, id, p->end_state);
			sub_remove(c, id);
			c->hooks.sub_down(c->hooks.ctx, id);
		}
	}
	json_decref(arr);
	pending_step(p);
}

/* What the subscription covers, as the store keeps it: our device ids,
 * or null for all. Returns NULL (refused, why set) when it names no
 * device of ours. */
static json_t *
devices_of(const struct viid_cascade *c, struct viid_sub_item *it)
{
	const struct viid_subscription *s = &it->sub;

	if (covers_all(c, s))
		return json_null();
	json_t *arr = json_array();
	for (size_t i = 0; i < c->ndevices; i++) {
		if (!forward_viid_subscribe_covers(s, c->devices[i].id))
			continue;
		bool seen = false;
		size_t k;
		json_t *v;
		json_array_foreach(arr, k, v)
			seen = seen || strcmp(json_string_value(v), c->devices[i].device) == 0;
		if (!seen)
			json_array_append_new(arr, json_string(c->devices[i].device));
	}
	if (json_array_size(arr) == 0) {
		json_decref(arr);
		it->code = VIID_CODE_INVALID_OPERATION;
		snprintf(it->why, sizeof(it->why), "ResourceURI names no device of ours");
		return NULL;
	}
	return arr;
}

static json_t *
sub_to_json(const struct viid_subscription *s, json_t *devices)
{
	json_t *o = json_object(), *details = json_array(), *res = json_array();

	for (int code = 0; code < 32; code++)
		if (s->details & VIID_DETAIL_BIT(code))
			json_array_append_new(details, json_integer(code));
	for (size_t i = 0; i < s->nresources; i++)
		json_array_append_new(res, json_string(s->resources[i]));
	json_object_set_new(o, "id", json_string(s->id));
	json_object_set_new(o, "details", details);
	json_object_set_new(o, "devices", devices);
	json_object_set_new(o, "resources", res);
	json_object_set_new(o, "receive_addr", json_string(s->receive_addr));
	json_object_set_new(o, "title", json_string(s->title));
	json_object_set_new(o, "begin_us", s->begin_us ? json_integer(s->begin_us) : json_null());
	json_object_set_new(o, "end_us", s->end_us ? json_integer(s->end_us) : json_null());
	json_object_set_new(o, "report_interval", s->report_interval_s ?
	    json_integer(s->report_interval_s) : json_null());
	json_object_set_new(o, "applicant_name", json_string(s->applicant_name));
	json_object_set_new(o, "applicant_org", json_string(s->applicant_org));
	json_object_set_new(o, "reason", json_string(s->reason));
	return o;
}

static char *
dump(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT);

	if (s == NULL)
		util_oom(0);
	json_decref(v);
	return s;
}

/* The valid items of `p` go to the store: subscriptions made or replaced
 * (OP_PUT), ended (OP_END, state p->end_state). Items found wanting here
 * are refused. Answers now when nothing waits. */
static void
pending_submit(struct pending *p)
{
	struct viid_cascade *c = p->c;
	json_t *puts = json_array(), *ends = json_array();
	size_t active = c->nsubs;

	for (size_t i = 0; i < p->n; i++) {
		struct viid_sub_item *it = &p->items[i];
		if (it->code != VIID_CODE_OK)
			continue;
		if (p->ops[i] == OP_END || it->sub.cancel) {
			p->ops[i] = OP_END;
			json_array_append_new(ends, json_string(it->id));
			continue;
		}
		if (!c->allow_http && strncasecmp(it->sub.receive_addr, "https://", 8) != 0) {
			it->code = VIID_CODE_INVALID_JSON_CONTENT;
			snprintf(it->why, sizeof(it->why), "ReceiveAddr must be https://");
			continue;
		}
		json_t *devices = devices_of(c, it);
		if (devices == NULL)
			continue;
		if (find_sub(c, it->id) == NULL && active >= c->max_subs) {
			json_decref(devices);
			it->code = VIID_CODE_INVALID_OPERATION;
			snprintf(it->why, sizeof(it->why), "too many subscriptions (%zu at most)",
			    c->max_subs);
			continue;
		}
		if (find_sub(c, it->id) == NULL)
			active++;
		p->ops[i] = OP_PUT;
		json_array_append_new(puts, sub_to_json(&it->sub, devices));
	}
	p->waiting = 1;		/* until both are sent */
	if (json_array_size(puts) > 0) {
		char *s = dump(puts);
		p->waiting++;
		c->ob.subs_put(c->ob.ctx, c->target, s, put_done, p);
		free(s);
	} else {
		json_decref(puts);
	}
	if (json_array_size(ends) > 0) {
		char *s = dump(ends);
		p->waiting++;
		c->ob.subs_end(c->ob.ctx, c->target, s, p->end_state, p->single ?
		    "cancelled by the platform" : p->end_state, end_done, p);
		free(s);
	} else {
		json_decref(ends);
	}
	if (p->waiting > 1) {
		struct timeval tv = { .tv_sec = STORE_WAIT_S, .tv_usec = 0 };
		p->deadline = evtimer_new(c->base, pending_deadline, p);
		if (p->deadline == NULL)
			util_oom(0);
		evtimer_add(p->deadline, &tv);
		evhttp_connection_set_closecb(evhttp_request_get_connection(p->req),
		    pending_closed, p);
	}
	pending_step(p);
}

static struct pending *
pending_new(struct viid_cascade *c, struct evhttp_request *req, const char *url, size_t n)
{
	struct pending *p = util_calloc(1, sizeof(*p));

	p->c = c;
	p->req = req;
	p->url = util_strdup(url);
	p->n = n;
	p->items = util_calloc(n ? n : 1, sizeof(*p->items));
	p->ops = util_calloc(n ? n : 1, sizeof(*p->ops));
	p->done = util_calloc(n ? n : 1, sizeof(*p->done));
	p->end_state = "cancelled";
	return p;
}

/* The request's body, NUL-terminated (NULL: none), in *len. */
static char *
body_of(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *b = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(b);
	char *s = util_malloc(n + 1);

	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	*len = n;
	return s;
}

/* POST or PUT /VIID/Subscribes. */
static void
subscribe_list(struct viid_cascade *c, struct evhttp_request *req, const char *url)
{
	size_t len;
	char *body = body_of(req, &len);
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];
	struct viid_sub_item *items = util_calloc(VIID_SUB_MAX, sizeof(*items));

	int n = forward_viid_subscribe_read_list(body, len, items, VIID_SUB_MAX, &code, why);
	free(body);
	if (n < 0) {
		log_warn("forward", "subscription request refused", "target=%s code=%d why=\"%s\"",
		    c->target, (int)code, why);
		reply_one(req, 200, url, code, why);
		free(items);
		return;
	}
	struct pending *p = pending_new(c, req, url, (size_t)n);
	memcpy(p->items, items, (size_t)n * sizeof(*items));
	free(items);
	for (size_t i = 0; i < p->n; i++)
		if (p->items[i].code != VIID_CODE_OK)
			log_warn("forward", "subscription refused", "target=%s code=%d why=\"%s\"",
			    c->target, (int)p->items[i].code, p->items[i].why);
	pending_submit(p);
}

/* PUT /VIID/Subscribes/{id}. */
static void
subscribe_cancel(struct viid_cascade *c, struct evhttp_request *req, const char *url,
    const char *id)
{
	size_t len;
	char *body = body_of(req, &len);
	struct pending *p = pending_new(c, req, url, 1);

	p->single = true;
	if (forward_viid_subscribe_read_cancel(body, len, id, &p->items[0]) == 0)
		p->ops[0] = OP_END;
	free(body);
	pending_submit(p);
}

/* DELETE /VIID/Subscribes?IDList=... */
static void
subscribe_delete(struct viid_cascade *c, struct evhttp_request *req, const char *url,
    const char *query)
{
	char (*ids)[VIID_BUSINESS_ID_LEN + 1] = util_calloc(VIID_SUB_MAX, sizeof(*ids));
	int n = forward_viid_subscribe_id_list(query != NULL ? query : "", ids, VIID_SUB_MAX);

	if (n <= 0) {
		reply_one(req, 200, url, VIID_CODE_INVALID_OPERATION,
		    "IDList missing, too long, or not of 33-digit ids");
		free(ids);
		return;
	}
	struct pending *p = pending_new(c, req, url, (size_t)n);
	p->end_state = "deleted";
	for (int i = 0; i < n; i++) {
		memcpy(p->items[i].id, ids[i], sizeof(ids[i]));
		p->ops[i] = OP_END;
	}
	free(ids);
	pending_submit(p);
}

/* Digest and User-Identify: true when the request may go on (else it was
 * answered). */
static bool
admitted(struct viid_cascade *c, struct evhttp_request *req, const char *url)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *method;

	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		method = "GET";
		break;
	case EVHTTP_REQ_POST:
		method = "POST";
		break;
	case EVHTTP_REQ_PUT:
		method = "PUT";
		break;
	case EVHTTP_REQ_DELETE:
		method = "DELETE";
		break;
	default:
		method = "OTHER";
		break;
	}
	enum viid_digest_verdict v = viid_digest_check(c->digest,
	    evhttp_find_header(in, "Authorization"), method, url, util_mono_ms());
	if (v != VIID_DIGEST_OK) {
		char challenge[VIID_DIGEST_CHALLENGE_MAX];
		/* The password was right, the nonce not (aged, from before a
		 * restart, or its count out of order): the client answers a
		 * stale challenge again by itself. */
		bool stale = v == VIID_DIGEST_STALE || v == VIID_DIGEST_UNKNOWN_NONCE ||
		    v == VIID_DIGEST_REPLAY;
		if (v != VIID_DIGEST_MISSING && !stale)
			log_warn("forward", "platform request not authenticated", "target=%s reason=%s",
			    c->target, viid_digest_verdict_name(v));
		viid_digest_challenge(c->digest, util_mono_ms(), stale, challenge, sizeof(challenge));
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		    challenge);
		reply_one(req, 401, url, VIID_CODE_INVALID_OPERATION, "authentication required");
		return false;
	}
	const char *who = evhttp_find_header(in, "User-Identify");
	if (c->platform_id[0] != '\0' && (who == NULL || strcmp(who, c->platform_id) != 0)) {
		log_warn("forward", "platform request refused, wrong User-Identify", "target=%s",
		    c->target);
		reply_one(req, 403, url, VIID_CODE_INVALID_OPERATION,
		    "User-Identify is not the platform's id");
		return false;
	}
	return true;
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	struct viid_cascade *c = arg;
	const char *uri = evhttp_request_get_uri(req);
	char path[512];
	const char *query = NULL;

	/* The request target as sent: what Digest's uri and RequestURL are. */
	if (uri == NULL || strlen(uri) >= 4096) {
		evhttp_send_error(req, 414, NULL);
		return;
	}
	const char *q = strchr(uri, '?');
	size_t plen = q != NULL ? (size_t)(q - uri) : strlen(uri);
	if (q != NULL)
		query = q + 1;
	if (plen >= sizeof(path)) {
		evhttp_send_error(req, 404, NULL);
		return;
	}
	memcpy(path, uri, plen);
	path[plen] = '\0';
	while (plen > 1 && path[plen - 1] == '/')
		path[--plen] = '\0';
	if (!admitted(c, req, uri))
		return;

	static const char base[] = "/VIID/Subscribes";
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (strcasecmp(path, base) == 0) {
		if (!c->loaded) {
			reply_one(req, 503, uri, VIID_CODE_BUSY, "starting: subscriptions not loaded");
			return;
		}
		if (cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT)
			subscribe_list(c, req, uri);
		else if (cmd == EVHTTP_REQ_DELETE)
			subscribe_delete(c, req, uri, query);
		else
			reply_one(req, 405, uri, VIID_CODE_INVALID_OPERATION,
			    "POST, PUT or DELETE expected");
		return;
	}
	if (strncasecmp(path, base, sizeof(base) - 1) == 0 && path[sizeof(base) - 1] == '/') {
		const char *id = path + sizeof(base);
		if (!c->loaded) {
			reply_one(req, 503, uri, VIID_CODE_BUSY, "starting: subscriptions not loaded");
			return;
		}
		if (cmd == EVHTTP_REQ_PUT && strchr(id, '/') == NULL)
			subscribe_cancel(c, req, uri, id);
		else
			reply_one(req, 405, uri, VIID_CODE_INVALID_OPERATION,
			    "PUT expected (a cancel)");
		return;
	}
	reply_one(req, 404, uri, VIID_CODE_INVALID_OPERATION, "not served here");
}

/* ---- the listener: set-up ---------------------------------------------- */

static struct bufferevent *
tls_bev(struct event_base *base, void *arg)
{
	struct viid_cascade *c = arg;
	SSL *ssl = SSL_new(c->ssl);

	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
}

/* OpenSSL's first queued error, for the log. */
static const char *
tls_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return e != 0 ? buf : "unknown";
}

static int
tls_setup(struct viid_cascade *c, const struct forward_target *t)
{
	char err[256];

	c->ssl = SSL_CTX_new(TLS_server_method());
	if (c->ssl == NULL || SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) != 1) {
		log_error("forward", "cannot set up TLS for the listener", "target=%s error=%s",
		    c->target, tls_error(err, sizeof(err)));
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(c->ssl, t->listen_cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c->ssl, t->listen_key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(c->ssl) != 1) {
		log_error("forward", "cannot load the listener's certificate and key", "target=%s "
		    "cert_file=%s error=%s", c->target, t->listen_cert_file,
		    tls_error(err, sizeof(err)));
		return -1;
	}
	if (t->listen_ca_file != NULL && t->listen_ca_file[0] != '\0') {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->listen_ca_file);
		if (names == NULL ||
		    SSL_CTX_load_verify_locations(c->ssl, t->listen_ca_file, NULL) != 1) {
			if (names != NULL)
				sk_X509_NAME_pop_free(names, X509_NAME_free);
			log_error("forward", "cannot load the listener's client CA", "target=%s "
			    "ca_file=%s error=%s", c->target, t->listen_ca_file,
			    tls_error(err, sizeof(err)));
			return -1;
		}
		SSL_CTX_set_client_CA_list(c->ssl, names);
		SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	evhttp_set_bevcb(c->http, tls_bev, c);
	return 0;
}

/* Binds `listen` ("host:port", "[v6]:port"). */
static int
bind_listener(struct viid_cascade *c, const char *listen)
{
	char host[300];
	const char *colon = strrchr(listen, ':');

	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
		return -1;
	size_t n = (size_t)(colon - listen);
	memcpy(host, listen, n);
	host[n] = '\0';
	if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	int port = atoi(colon + 1);
	if (evhttp_bind_socket_with_handle(c->http, host, (ev_uint16_t)port) == NULL) {
		log_error("forward", "cannot listen", "target=%s listen=%s", c->target, listen);
		return -1;
	}
	log_info("forward", "listening for the platform", "target=%s listen=%s tls=%s "
	    "client_cert=%s", c->target, listen, c->ssl != NULL ? "yes" : "no",
	    c->ssl != NULL && SSL_CTX_get_verify_mode(c->ssl) != SSL_VERIFY_NONE ? "required" :
	    "no");
	return 0;
}

const char *
viid_cascade_org(const struct viid_cascade *c)
{
	return c->org;
}

struct viid_cascade *
viid_cascade_new(struct event_base *base, const struct forward_target *t,
    const struct outbox *ob, const struct viid_cascade_hooks *hooks)
{
	struct viid_cascade *c = util_calloc(1, sizeof(*c));

	c->base = base;
	c->ob = *ob;
	c->hooks = *hooks;
	c->target = dup_or_empty(t->name);
	c->system_id = dup_or_empty(t->viid_device_id);
	c->platform_id = dup_or_empty(t->platform_id);
	c->org = dup_or_empty(t->org_code);
	c->allow_http = t->allow_http;
	c->max_subs = t->max_subscriptions > 0 ? t->max_subscriptions : 1;
	c->ndevices = t->nviid_devices;
	c->devices = util_calloc(c->ndevices ? c->ndevices : 1, sizeof(*c->devices));
	for (size_t i = 0; i < c->ndevices; i++) {
		const struct forward_viid_device *d = &t->viid_devices[i];
		c->devices[i] = (struct forward_viid_device){
			.device = dup_or_empty(d->device),
			.community = dup_or_empty(d->community),
			.id = dup_or_empty(d->id),
			.name = dup_or_empty(d->name),
			.model = dup_or_empty(d->model),
			.function_type = dup_or_empty(d->function_type),
			.ip_addr = dup_or_empty(d->ip_addr),
			.place_code = dup_or_empty(d->place_code),
			.port = d->port,
			.has_position = d->has_position,
			.longitude = d->longitude,
			.latitude = d->latitude,
		};
	}
	c->ca_file = dup_or_empty(t->ca_file);
	c->cert_file = dup_or_empty(t->cert_file);
	c->key_file = dup_or_empty(t->key_file);
	c->proxy = dup_or_empty(t->proxy);
	c->username = dup_or_empty(t->username);
	c->password = dup_or_empty(t->password);
	c->auth = t->notify_auth;
	c->connect_timeout = t->connect_timeout;
	c->timeout = t->timeout;
	c->retry_base_ms = t->retry_base_ms;
	c->retry_cap_ms = t->retry_cap_ms;
	c->max_attempts = t->max_attempts;
	snprintf(c->user_identify, sizeof(c->user_identify), "User-Identify: %s", c->system_id);
	c->load_retry = evtimer_new(base, load_retry_cb, c);
	c->curl = forward_curl_new(base, push_done, c);
	c->http = evhttp_new(base);
	c->digest = viid_digest_new(REALM, t->listen_username, t->listen_password, NONCE_TTL_S,
	    NONCES_KEPT);
	if (c->load_retry == NULL || c->curl == NULL || c->http == NULL || c->digest == NULL) {
		log_error("forward", "cannot set up the listener", "target=%s", c->target);
		viid_cascade_free(c);
		return NULL;
	}
	evhttp_set_timeout(c->http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(c->http, HEADERS_MAX);
	evhttp_set_max_body_size(c->http, VIID_SUB_BODY_MAX);
	evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE);
	evhttp_set_default_content_type(c->http, FORWARD_VIID_CONTENT_TYPE);
	evhttp_set_gencb(c->http, request_cb, c);
	if ((t->listen_cert_file != NULL && t->listen_cert_file[0] != '\0' &&
	    tls_setup(c, t) != 0) || bind_listener(c, t->listen) != 0) {
		viid_cascade_free(c);
		return NULL;
	}
	return c;
}

void
viid_cascade_start(struct viid_cascade *c)
{
	load(c);
}

void
viid_cascade_free(struct viid_cascade *c)
{
	if (c == NULL)
		return;
	if (c->http != NULL)
		evhttp_free(c->http);
	while (c->subs != NULL) {
		struct sub *u = c->subs;
		c->subs = u->next;
		sub_free(u);
	}
	forward_curl_free(c->curl);
	if (c->ssl != NULL)
		SSL_CTX_free(c->ssl);
	viid_digest_free(c->digest);
	if (c->load_retry != NULL)
		event_free(c->load_retry);
	for (size_t i = 0; i < c->ndevices; i++) {
		struct forward_viid_device *d = &c->devices[i];
		free((char *)d->device);
		free((char *)d->community);
		free((char *)d->id);
		free((char *)d->name);
		free((char *)d->model);
		free((char *)d->function_type);
		free((char *)d->ip_addr);
		free((char *)d->place_code);
	}
	free(c->devices);
	free(c->target);
	free(c->system_id);
	free(c->platform_id);
	free(c->org);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->proxy);
	free(c->username);
	if (c->password != NULL)
		explicit_bzero(c->password, strlen(c->password));
	free(c->password);
	free(c);
}
