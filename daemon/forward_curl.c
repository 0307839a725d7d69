/* forward_curl.c — libcurl's multi interface on libevent: see forward_curl.h. */
#include "forward_curl.h"

#include <event2/event.h>
#include <stdlib.h>

struct forward_curl {
	struct event_base *base;
	CURLM *multi;
	struct event *timeout;		/* libcurl's timer */
	forward_curl_done_fn *done;
	void *ctx;
};

/* One watched socket of libcurl. */
struct sock {
	struct event *ev;
	struct forward_curl *c;
};

/* Hands every transfer that ended to `done`. */
static void
check_done(struct forward_curl *c)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode code = m->data.result;
		char *priv = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		if (priv == NULL)
			continue;	/* not ours */
		curl_multi_remove_handle(c->multi, e);
		c->done(c->ctx, e, priv, code);
	}
}

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sock *so = arg;
	struct forward_curl *c = so->c;
	int running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, fd, flags, &running);
	check_done(c);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct forward_curl *c = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(c);
}

/* CURLMOPT_SOCKETFUNCTION: only changes which events are watched. */
static int
socket_fn(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct forward_curl *c = userp;
	struct sock *so = socketp;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (so != NULL) {
			event_free(so->ev);
			free(so);
			curl_multi_assign(c->multi, s, NULL);
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
		so->c = c;
		curl_multi_assign(c->multi, s, so);
	} else {
		event_free(so->ev);
	}
	so->ev = event_new(c->base, s, ev, sock_cb, so);
	if (so->ev == NULL || event_add(so->ev, NULL) != 0)
		return -1;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms our timer. */
static int
timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct forward_curl *c = userp;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(c->timeout);
		return 0;
	}
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	return evtimer_add(c->timeout, &tv) == 0 ? 0 : -1;
}

struct forward_curl *
forward_curl_new(struct event_base *base, forward_curl_done_fn *done, void *ctx)
{
	struct forward_curl *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->base = base;
	c->done = done;
	c->ctx = ctx;
	c->multi = curl_multi_init();
	c->timeout = evtimer_new(base, timeout_cb, c);
	if (c->multi == NULL || c->timeout == NULL) {
		forward_curl_free(c);
		return NULL;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	return c;
}

CURLMcode
forward_curl_add(struct forward_curl *c, CURL *easy)
{
	return curl_multi_add_handle(c->multi, easy);
}

void
forward_curl_remove(struct forward_curl *c, CURL *easy)
{
	curl_multi_remove_handle(c->multi, easy);
}

void
forward_curl_free(struct forward_curl *c)
{
	if (c == NULL)
		return;
	if (c->multi != NULL)
		curl_multi_cleanup(c->multi);
	if (c->timeout != NULL)
		event_free(c->timeout);
	free(c);
}
