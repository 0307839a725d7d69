/* forward_viid_session.c — the GA/T 1400 session: see forward_viid_session.h. */
#include "forward_viid_session.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backoff.h"
#include "forward_curl.h"
#include "forward_viid.h"
#include "forward_viid_profile.h"
#include "forward_viid_reply.h"
#include "log.h"
#include "util.h"
#include "version.h"

#define REPLY_KEEP 65536		/* bytes of a session reply read */
#define RETRY_BASE_MS 1000
#define UNREGISTER_TIMEOUT_S 2

enum step { STEP_IDLE, STEP_REGISTER, STEP_TIME, STEP_KEEPALIVE };

struct viid_session {
	struct event_base *base;
	struct forward_curl *curl;
	CURL *easy;
	struct curl_slist *headers;
	struct event *timer;
	char *target, *url, *device_id, *username, *password;
	char *ca_file, *cert_file, *key_file, *proxy;
	enum forward_auth auth;
	bool allow_http;
	long connect_timeout, timeout;
	long keepalive_s, time_skew_warn_s;
	struct backoff retry;
	viid_session_up_fn *up_fn;
	void *up_ctx;

	enum step step;			/* the request in flight; IDLE: none */
	bool up;
	bool lost;			/* lost while a request was in flight */
	uint64_t epoch;			/* sessions come up so far */
	int64_t down_since_ms;
	char body[256];
	char full_url[4200];
	unsigned char *reply;
	size_t reply_len;
	bool reply_cut;
	char errbuf[CURL_ERROR_SIZE];
};

static char *
dup_or_empty(const char *s)
{
	return util_strdup(s != NULL ? s : "");
}

static size_t
write_fn(char *data, size_t size, size_t nmemb, void *userp)
{
	struct viid_session *s = userp;
	size_t n = size * nmemb;
	size_t room = REPLY_KEEP - s->reply_len;
	size_t take = n < room ? n : room;

	memcpy(s->reply + s->reply_len, data, take);
	s->reply_len += take;
	if (take < n)
		s->reply_cut = true;
	return n;
}

/* The options of a session request: `method` `path`, `body` NULL for GET. */
static int
setup(struct viid_session *s, const char *method, const char *path, const char *body)
{
	CURL *e = s->easy;
	const char *protocols = s->allow_http ? "https,http" : "https";
	char ident[64];

	curl_slist_free_all(s->headers);
	s->headers = NULL;
	snprintf(ident, sizeof(ident), "User-Identify: %s", s->device_id);
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, "Content-Type: " FORWARD_VIID_CONTENT_TYPE);
	h = curl_slist_append(h, "Accept: application/json,application/VIID+JSON");
	h = curl_slist_append(h, ident);
	h = curl_slist_append(h, "Expect:");
	if (h == NULL)
		return -1;
	s->headers = h;
	s->reply_len = 0;
	s->reply_cut = false;
	s->errbuf[0] = '\0';
	snprintf(s->full_url, sizeof(s->full_url), "%s%s", s->url, path);
	if (curl_easy_setopt(e, CURLOPT_URL, s->full_url) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protocols) != CURLE_OK)
		return -1;
	curl_easy_setopt(e, CURLOPT_PRIVATE, s);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	if (body != NULL) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 0L);
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	} else {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	}
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") && strcmp(method, "POST")
	    ? method : NULL);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "gridbridge/" GRIDBRIDGE_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fn);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, s->connect_timeout);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, s->timeout);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(e, CURLOPT_PROXY, s->proxy);
	if (s->ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
	if (s->cert_file[0] != '\0') {
		curl_easy_setopt(e, CURLOPT_SSLCERT, s->cert_file);
		curl_easy_setopt(e, CURLOPT_SSLKEY, s->key_file);
	}
	if (s->auth != FORWARD_AUTH_NONE) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, s->auth == FORWARD_AUTH_BASIC ?
		    (long)CURLAUTH_BASIC : (long)CURLAUTH_DIGEST);
		curl_easy_setopt(e, CURLOPT_USERNAME, s->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, s->password);
	}
	return 0;
}

static void arm(struct viid_session *s, int64_t ms);

/* The session is down (or never came up): Register again after a wait. */
static void
down(struct viid_session *s, const char *why)
{
	int64_t delay = backoff_next(&s->retry, backoff_random());

	if (s->up) {
		s->down_since_ms = util_mono_ms();
		log_warn("forward", "viid session down", "target=%s reason=%s retry_in_ms=%lld",
		    s->target, why, (long long)delay);
	} else {
		log_warn("forward", "viid register failed", "target=%s reason=%s retry_in_ms=%lld",
		    s->target, why, (long long)delay);
	}
	s->up = false;
	s->lost = false;
	arm(s, delay);
}

static void
send_request(struct viid_session *s, enum step step)
{
	const char *what = step == STEP_REGISTER ? "Register" : "Keepalive";
	const char *path = step == STEP_REGISTER ? "/VIID/System/Register" :
	    step == STEP_KEEPALIVE ? "/VIID/System/Keepalive" : "/VIID/System/Time";

	if (step == STEP_TIME)
		s->body[0] = '\0';
	else
		snprintf(s->body, sizeof(s->body), "{\"%sObject\":{\"DeviceID\":\"%s\"}}", what,
		    s->device_id);
	s->step = step;
	if (setup(s, step == STEP_TIME ? "GET" : "POST", path,
	    step == STEP_TIME ? NULL : s->body) != 0 ||
	    forward_curl_add(s->curl, s->easy) != CURLM_OK) {
		s->step = STEP_IDLE;
		down(s, "cannot start request");
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct viid_session *s = arg;

	(void)fd;
	(void)what;
	if (s->step != STEP_IDLE)
		return;
	send_request(s, s->up ? STEP_KEEPALIVE : STEP_REGISTER);
}

static void
arm(struct viid_session *s, int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
		.tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(s->timer, &tv);
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The platform's clock against ours, logged when they differ by more
 * than time_skew_warn_s. A platform that does not tell is not an error. */
static void
check_time(struct viid_session *s, CURLcode code, long status)
{
	struct viid_time_reply tr;
	int64_t theirs;

	if (code != CURLE_OK || status != 200 ||
	    !forward_viid_time_reply(s->reply, s->reply_len, s->reply_cut, &tr) ||
	    forward_viid_time_parse(tr.local_time, tr.local_time_len, &theirs) != 0) {
		log_info("forward", "viid platform time unknown", "target=%s status=%ld", s->target,
		    status);
		return;
	}
	long long skew_s = (long long)((now_us() - theirs) / 1000000);
	if (skew_s > s->time_skew_warn_s || -skew_s > s->time_skew_warn_s)
		log_warn("forward", "viid platform clock differs", "target=%s ours_ahead_s=%lld "
		    "warn_s=%ld", s->target, skew_s, s->time_skew_warn_s);
	else
		log_debug("forward", "viid platform clock", "target=%s ours_ahead_s=%lld", s->target,
		    skew_s);
}

static void
done(void *ctx, CURL *easy, void *priv, CURLcode code)
{
	struct viid_session *s = ctx;
	long status = 0;
	enum step step = s->step;
	char why[VIID_REASON_MAX + 64];
	struct viid_session_reply rep;

	(void)priv;
	s->step = STEP_IDLE;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	if (step == STEP_TIME) {
		check_time(s, code, status);
		if (s->lost)
			down(s, "401 to an upload");
		else if (s->up)
			arm(s, (int64_t)s->keepalive_s * 1000);
		return;
	}
	bool ok = false;
	if (code != CURLE_OK)
		snprintf(why, sizeof(why), "%s", s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
	else if (!(ok = forward_viid_session_reply(status, s->reply, s->reply_len, s->reply_cut,
	    &rep)))
		snprintf(why, sizeof(why), "%s%s", status == 401 ? "not authenticated: " : "",
		    rep.reason);
	if (ok && s->lost && step == STEP_KEEPALIVE) {
		ok = false;
		snprintf(why, sizeof(why), "401 to an upload");
	}
	if (!ok) {
		down(s, why);
		return;
	}
	if (step == STEP_REGISTER) {
		long long outage = s->down_since_ms ? util_mono_ms() - s->down_since_ms : 0;
		log_info("forward", "viid session up", "target=%s keepalive_s=%ld outage_ms=%lld",
		    s->target, s->keepalive_s, outage);
		s->up = true;
		s->lost = false;
		s->epoch++;
		s->down_since_ms = 0;
		backoff_reset(&s->retry);
		send_request(s, STEP_TIME);
		if (s->up_fn != NULL)
			s->up_fn(s->up_ctx);
		return;
	}
	log_debug("forward", "viid keepalive", "target=%s", s->target);
	arm(s, (int64_t)s->keepalive_s * 1000);
}

struct viid_session *
viid_session_new(struct event_base *base, const struct forward_target *t,
    viid_session_up_fn *up, void *ctx)
{
	struct viid_session *s = util_calloc(1, sizeof(*s));

	s->base = base;
	s->target = dup_or_empty(t->name);
	/* The url is the platform's base: http(s)://host:port, maybe a prefix. */
	s->url = dup_or_empty(t->url);
	size_t n = strlen(s->url);
	while (n > 0 && s->url[n - 1] == '/')
		s->url[--n] = '\0';
	s->device_id = dup_or_empty(t->viid_device_id);
	s->username = dup_or_empty(t->username);
	s->password = dup_or_empty(t->password);
	s->ca_file = dup_or_empty(t->ca_file);
	s->cert_file = dup_or_empty(t->cert_file);
	s->key_file = dup_or_empty(t->key_file);
	s->proxy = dup_or_empty(t->proxy);
	s->auth = t->auth;
	s->allow_http = t->allow_http;
	s->connect_timeout = t->connect_timeout;
	s->timeout = t->timeout;
	s->keepalive_s = t->keepalive_s > 0 ? t->keepalive_s : 30;
	s->time_skew_warn_s = t->time_skew_warn_s;
	long max_s = t->register_retry_max_s > 0 ? t->register_retry_max_s : 300;
	backoff_init(&s->retry, RETRY_BASE_MS, (uint32_t)max_s * 1000);
	s->up_fn = up;
	s->up_ctx = ctx;
	s->reply = util_malloc(REPLY_KEEP);
	s->curl = forward_curl_new(base, done, s);
	s->easy = curl_easy_init();
	s->timer = evtimer_new(base, timer_cb, s);
	if (s->curl == NULL || s->easy == NULL || s->timer == NULL) {
		viid_session_free(s);
		return NULL;
	}
	return s;
}

void
viid_session_start(struct viid_session *s)
{
	if (s->step == STEP_IDLE && !s->up)
		send_request(s, STEP_REGISTER);
}

bool
viid_session_is_up(const struct viid_session *s)
{
	return s != NULL && s->up;
}

uint64_t
viid_session_epoch(const struct viid_session *s)
{
	return s->epoch;
}

void
viid_session_lost(struct viid_session *s, const char *why)
{
	if (!s->up)
		return;
	if (s->step != STEP_IDLE) {
		s->lost = true;		/* the request in flight ends it */
		return;
	}
	evtimer_del(s->timer);
	down(s, why);
}

/* Tells the platform we go, waiting at most UNREGISTER_TIMEOUT_S: the
 * daemon is stopping (or giving a shared session up) and its loop does
 * not run meanwhile. */
static void
unregister(struct viid_session *s)
{
	char body[128];
	long status = 0;
	struct viid_session_reply rep;

	snprintf(body, sizeof(body), "{\"UnRegisterObject\":{\"DeviceID\":\"%s\"}}", s->device_id);
	if (setup(s, "POST", "/VIID/System/UnRegister", body) != 0)
		return;
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, (long)UNREGISTER_TIMEOUT_S);
	curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT, (long)UNREGISTER_TIMEOUT_S);
	CURLcode code = curl_easy_perform(s->easy);
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	if (code == CURLE_OK && forward_viid_session_reply(status, s->reply, s->reply_len,
	    s->reply_cut, &rep))
		log_info("forward", "viid unregistered", "target=%s", s->target);
	else
		log_warn("forward", "viid unregister failed", "target=%s status=%ld error=%s",
		    s->target, status, code != CURLE_OK ? curl_easy_strerror(code) : rep.reason);
}

void
viid_session_stop(struct viid_session *s, bool unregister_too)
{
	if (s->step != STEP_IDLE) {
		forward_curl_remove(s->curl, s->easy);
		s->step = STEP_IDLE;
	}
	evtimer_del(s->timer);
	if (s->up && unregister_too)
		unregister(s);
	if (s->up) {
		s->down_since_ms = util_mono_ms();
		log_info("forward", "viid session stopped", "target=%s unregistered=%s", s->target,
		    unregister_too ? "yes" : "no");
	}
	s->up = false;
	s->lost = false;
	backoff_reset(&s->retry);
}

void
viid_session_free(struct viid_session *s)
{
	if (s == NULL)
		return;
	if (s->step != STEP_IDLE && s->curl != NULL)
		forward_curl_remove(s->curl, s->easy);
	if (s->up && s->easy != NULL)
		unregister(s);
	forward_curl_free(s->curl);
	if (s->easy != NULL)
		curl_easy_cleanup(s->easy);
	curl_slist_free_all(s->headers);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->password != NULL) {
		memset(s->password, 0, strlen(s->password));
		free(s->password);
	}
	free(s->target);
	free(s->url);
	free(s->device_id);
	free(s->username);
	free(s->ca_file);
	free(s->cert_file);
	free(s->key_file);
	free(s->proxy);
	free(s->reply);
	free(s);
}
