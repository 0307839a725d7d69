/* Unit tests for fetching pictures (forward_viid_picture.h), against an
 * HTTP/1.1 server of this process on 127.0.0.1 (an ephemeral port, a
 * thread per connection, keep-alive) that answers by path:
 *
 *   /a.jpg /b.png /c.gif /d.bmp   a small picture of that format
 *   /page                         200, text/html
 *   /empty                        200, no body
 *   /status/NNN                   NNN with a small page
 *   /moved                        302 to /a.jpg
 *   /big, /big-close              200, MAX_BYTES + 1 bytes, with and without
 *                                 a Content-Length
 *   /exact                        200, a JPEG of exactly MAX_BYTES
 *   /slow                         a JPEG after SLOW_MS
 *   /stall                        200, then 3 of the 1,000 bytes it promised
 *   /auth.jpg                     a JPEG for Basic user:secret, else 401
 *
 * It counts connections and requests, the /slow requests it waits on at
 * once (it stops counting one before it answers, so that the client cannot
 * send the next request while it is still counted), and keeps the request
 * targets, so that a test can tell that a URL was
 * never asked for. */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "forward_viid_picture.h"
#include "t.h"

#define MAX_BYTES 4096
#define SLOW_MS 300
#define CONNS_MAX 256
#define SEEN_MAX 512
#define TARGET_MAX 400
#define RESULTS_MAX 32

/* SOI, SOF0 (16 x 16, three components), EOI. */
static const uint8_t jpeg[] = {
	0xff, 0xd8,
	0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03,
	0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01,
	0xff, 0xd9,
};
/* The signature, IHDR (16 x 16, RGB) and IEND; the CRCs are not checked. */
static const uint8_t png[] = {
	0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
	0x00, 0x00, 0x00, 0x0d, 'I', 'H', 'D', 'R', 0x00, 0x00, 0x00, 0x10,
	0x00, 0x00, 0x00, 0x10, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x91, 0x68, 0x36,
	0x00, 0x00, 0x00, 0x00, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82,
};
static const uint8_t gif[] = { 'G', 'I', 'F', '8', '9', 'a', 0x01, 0x00, 0x01, 0x00, 0x00,
	0x00, 0x00, ';' };
static const uint8_t bmp[] = { 'B', 'M', 0x1e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x1a, 0x00, 0x00, 0x00 };
static const char page[] = "<html><body>camera login</body></html>";

/* ---- the server -------------------------------------------------------- */

static struct {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	bool stop;
	int conns;			/* accepted */
	int requests;
	int busy, busy_max;		/* /slow requests waited on at once */
	pthread_t conn_threads[CONNS_MAX];
	int nconn_threads;
	char seen[SEEN_MAX][TARGET_MAX];	/* request targets */
	int nseen;
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void
sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

static bool
send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}

/* A whole answer with a Content-Length. */
static bool
answer(int fd, const char *status, const char *type, const char *extra, const void *body,
    size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\n%s\r\n", status, type, len, extra);
	return send_all(fd, head, (size_t)n) && send_all(fd, body, len);
}

/* A JPEG's first bytes, padded to len. */
static uint8_t *
jpeg_of(size_t len)
{
	uint8_t *p = calloc(1, len);
	memcpy(p, jpeg, sizeof(jpeg) - 2);
	return p;
}

/* Answers one request; false: close the connection. */
static bool
serve(int fd, const char *req)
{
	char target[TARGET_MAX] = "";
	char path[TARGET_MAX];
	bool keep = true;

	if (sscanf(req, "GET %399s HTTP/1.1", target) != 1)
		return false;
	snprintf(path, sizeof(path), "%s", target);
	path[strcspn(path, "?")] = '\0';
	pthread_mutex_lock(&srv.lock);
	srv.requests++;
	if (srv.nseen < SEEN_MAX)
		snprintf(srv.seen[srv.nseen++], TARGET_MAX, "%s", target);
	pthread_mutex_unlock(&srv.lock);

	if (strcmp(path, "/a.jpg") == 0) {
		keep = answer(fd, "200 OK", "image/jpeg", "", jpeg, sizeof(jpeg));
	} else if (strcmp(path, "/b.png") == 0) {
		keep = answer(fd, "200 OK", "image/png", "", png, sizeof(png));
	} else if (strcmp(path, "/c.gif") == 0) {
		keep = answer(fd, "200 OK", "image/gif", "", gif, sizeof(gif));
	} else if (strcmp(path, "/d.bmp") == 0) {
		keep = answer(fd, "200 OK", "image/bmp", "", bmp, sizeof(bmp));
	} else if (strcmp(path, "/page") == 0) {
		keep = answer(fd, "200 OK", "text/html", "", page, strlen(page));
	} else if (strcmp(path, "/empty") == 0) {
		keep = answer(fd, "200 OK", "image/jpeg", "", "", 0);
	} else if (strncmp(path, "/status/", 8) == 0) {
		char status[64];
		bool bodyless = strncmp(path + 8, "204", 3) == 0;
		snprintf(status, sizeof(status), "%.3s Whatever", path + 8);
		keep = answer(fd, status, "text/plain", "", "status page", bodyless ? 0 : 11);
	} else if (strcmp(path, "/moved") == 0) {
		keep = answer(fd, "302 Found", "text/plain", "Location: /a.jpg\r\n", "moved", 5);
	} else if (strcmp(path, "/big") == 0 || strcmp(path, "/exact") == 0) {
		size_t len = strcmp(path, "/big") == 0 ? MAX_BYTES + 1 : MAX_BYTES;
		uint8_t *p = jpeg_of(len);
		keep = answer(fd, "200 OK", "image/jpeg", "", p, len);
		free(p);
	} else if (strcmp(path, "/big-close") == 0) {
		static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
		    "Connection: close\r\n\r\n";
		uint8_t *p = jpeg_of(MAX_BYTES + 1);
		if (send_all(fd, head, strlen(head)))
			send_all(fd, p, MAX_BYTES + 1);
		free(p);
		keep = false;
	} else if (strcmp(path, "/slow") == 0) {
		pthread_mutex_lock(&srv.lock);
		if (++srv.busy > srv.busy_max)
			srv.busy_max = srv.busy;
		pthread_mutex_unlock(&srv.lock);
		sleep_ms(SLOW_MS);
		pthread_mutex_lock(&srv.lock);
		srv.busy--;
		pthread_mutex_unlock(&srv.lock);
		keep = answer(fd, "200 OK", "image/jpeg", "", jpeg, sizeof(jpeg));
	} else if (strcmp(path, "/stall") == 0) {
		static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
		    "Content-Length: 1000\r\n\r\n";
		if (send_all(fd, head, strlen(head)) && send_all(fd, jpeg, 3)) {
			/* until the client gives up (or 5 s) */
			struct pollfd p = { .fd = fd, .events = POLLIN };
			poll(&p, 1, 5000);
		}
		keep = false;
	} else if (strcmp(path, "/auth.jpg") == 0) {
		if (strstr(req, "\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n") != NULL)
			keep = answer(fd, "200 OK", "image/jpeg", "", jpeg, sizeof(jpeg));
		else
			keep = answer(fd, "401 Unauthorized", "text/plain",
			    "WWW-Authenticate: Basic realm=\"camera\"\r\n", "who?", 4);
	} else {
		keep = answer(fd, "404 Not Found", "text/plain", "", "no", 2);
	}
	return keep;
}

static void *
conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[8192];
	char req[sizeof(buf) + 1];
	size_t len = 0;

	for (;;) {
		char *end;
		while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
			if (len == sizeof(buf))
				goto out;
			ssize_t r = read(fd, buf + len, sizeof(buf) - len);
			if (r <= 0)
				goto out;
			len += (size_t)r;
		}
		size_t hlen = (size_t)(end + 4 - buf);
		memcpy(req, buf, hlen);
		req[hlen] = '\0';
		memmove(buf, buf + hlen, len - hlen);
		len -= hlen;
		if (!serve(fd, req))
			break;
	}
out:
	close(fd);
	return NULL;
}

static bool
stopping(void)
{
	pthread_mutex_lock(&srv.lock);
	bool stop = srv.stop;
	pthread_mutex_unlock(&srv.lock);
	return stop;
}

static void *
accept_main(void *arg)
{
	(void)arg;
	while (!stopping()) {
		struct pollfd p = { .fd = srv.fd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		int c = accept(srv.fd, NULL, NULL);
		if (c < 0)
			continue;
		pthread_mutex_lock(&srv.lock);
		srv.conns++;
		if (srv.nconn_threads < CONNS_MAX &&
		    pthread_create(&srv.conn_threads[srv.nconn_threads], NULL, conn_main,
		    (void *)(intptr_t)c) == 0)
			srv.nconn_threads++;
		else
			close(c);
		pthread_mutex_unlock(&srv.lock);
	}
	return NULL;
}

/* A socket bound to 127.0.0.1 on an ephemeral port: its port. */
static int
bind_loopback(int fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	socklen_t alen = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
		return -1;
	return ntohs(a.sin_port);
}

static int
server_start(void)
{
	srv.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (srv.fd < 0 || (srv.port = bind_loopback(srv.fd)) < 0 || listen(srv.fd, 64) != 0)
		return -1;
	return pthread_create(&srv.thread, NULL, accept_main, NULL) == 0 ? 0 : -1;
}

/* After every fetcher is freed: their connections are closed. */
static void
server_stop(void)
{
	pthread_mutex_lock(&srv.lock);
	srv.stop = true;
	pthread_mutex_unlock(&srv.lock);
	pthread_join(srv.thread, NULL);
	close(srv.fd);
	for (int i = 0; i < srv.nconn_threads; i++)
		pthread_join(srv.conn_threads[i], NULL);
}

/* Requests whose target contains `s`. */
static int
seen(const char *s)
{
	int n = 0;
	pthread_mutex_lock(&srv.lock);
	for (int i = 0; i < srv.nseen; i++)
		if (strstr(srv.seen[i], s) != NULL)
			n++;
	pthread_mutex_unlock(&srv.lock);
	return n;
}

static int
counter(const int *c)
{
	pthread_mutex_lock(&srv.lock);
	int n = *c;
	pthread_mutex_unlock(&srv.lock);
	return n;
}

/* ---- the client side --------------------------------------------------- */

static struct event_base *base;
static int pending;			/* callbacks awaited */
static bool awaiting;			/* run_until_done() is running */
static int delivered;			/* callbacks so far, over all jobs */
static int timeouts;			/* run_until_done() gave up */

/* What a job's callback got. */
struct got {
	struct viid_fetch_job *job;
	struct viid_fetcher *free_me;	/* the callback frees this fetcher */
	bool cancel_self;		/* the callback cancels its own job */
	bool in_fetch;
	bool during_fetch;		/* called from within viid_fetch() */
	int calls;
	int order;			/* its place among all callbacks */
	size_t n;
	struct viid_fetch_result r[RESULTS_MAX];
};

static void
on_done(void *ctx, struct viid_fetch_result *results, size_t n)
{
	struct got *g = ctx;

	g->calls++;
	g->order = ++delivered;
	g->during_fetch = g->in_fetch;
	g->n = n;
	for (size_t i = 0; i < n && i < RESULTS_MAX; i++) {
		g->r[i] = results[i];
		results[i].data = NULL;		/* taken */
	}
	if (g->cancel_self)
		viid_fetch_cancel(g->job);
	if (g->free_me != NULL)
		viid_fetcher_free(g->free_me);
	if (--pending == 0 && awaiting)
		event_base_loopbreak(base);
}

static void
got_free(struct got *g)
{
	for (size_t i = 0; i < g->n && i < RESULTS_MAX; i++)
		free(g->r[i].data);
	g->n = 0;
}

static void
fetch(struct viid_fetcher *f, struct got *g, const char *const *urls, size_t n)
{
	g->in_fetch = true;
	g->job = viid_fetch(f, urls, n, on_done, g);
	g->in_fetch = false;
	pending++;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (awaiting)
		timeouts++;
	event_base_loopbreak(base);
}

/* Runs the loop for `ms`. */
static void
run_for(long ms)
{
	struct event *stop = evtimer_new(base, stop_cb, NULL);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	evtimer_add(stop, &tv);
	event_base_dispatch(base);
	event_free(stop);
}

/* Runs the loop until the callbacks awaited ran; 5 s at most. */
static void
run_until_done(void)
{
	if (pending == 0)
		return;
	awaiting = true;
	run_for(5000);
	awaiting = false;
	if (pending > 0)
		printf("# the loop stopped with %d callbacks awaited\n", pending);
}

static char urlbuf[RESULTS_MAX][512];

/* http://127.0.0.1:PORT/path, in the i'th buffer. */
static const char *
url(int i, const char *path)
{
	snprintf(urlbuf[i], sizeof(urlbuf[i]), "http://127.0.0.1:%d%s", srv.port, path);
	return urlbuf[i];
}

static struct viid_fetch_config
config(size_t max_parallel)
{
	return (struct viid_fetch_config){
		.target = "test",
		.max_bytes = MAX_BYTES,
		.timeout_s = 1,
		.connect_timeout_s = 1,
		.max_parallel = max_parallel,
	};
}

/* The error text is printable ASCII and names neither host nor path. */
static bool
clean_error(const struct viid_fetch_result *r)
{
	if (memchr(r->error, '\0', sizeof(r->error)) == NULL)
		return false;
	for (const char *c = r->error; *c != '\0'; c++)
		if (*c < 0x20 || *c > 0x7e)
			return false;
	return strstr(r->error, "127.0.0.1") == NULL && strstr(r->error, "://") == NULL &&
	    strstr(r->error, "jpg") == NULL && strstr(r->error, "xxxx") == NULL &&
	    strstr(r->error, "stall") == NULL && strstr(r->error, "status") == NULL;
}

static bool
is(const struct viid_fetch_result *r, const uint8_t *p, size_t len)
{
	return r->status == VIID_FETCH_OK && r->http_status == 200 && r->len == len &&
	    r->data != NULL && memcmp(r->data, p, len) == 0 && r->error[0] == '\0';
}

static bool
not_ok(const struct viid_fetch_result *r, enum viid_fetch_status status, long http,
    const char *error)
{
	bool ok = r->status == status && r->http_status == http && r->data == NULL &&
	    r->len == 0 && strstr(r->error, error) != NULL && clean_error(r);
	if (!ok)
		printf("#   status %d http %ld len %zu error \"%s\"\n", (int)r->status,
		    r->http_status, r->len, r->error);
	return ok;
}

/* ---- the tests --------------------------------------------------------- */

/* One job of every kind of answer: one callback, results in URL order. */
static void
test_outcomes(void)
{
	struct viid_fetch_config c = config(4);
	struct viid_fetcher *f = viid_fetcher_new(base, &c);
	struct got g = { 0 };
	int closed = socket(AF_INET, SOCK_STREAM, 0);
	int closed_port = bind_loopback(closed);
	char refused[64];

	close(closed);
	snprintf(refused, sizeof(refused), "http://127.0.0.1:%d/a.jpg", closed_port);
	const char *urls[] = {
		url(0, "/a.jpg"), url(1, "/b.png"), url(2, "/c.gif"), url(3, "/d.bmp"),
		url(4, "/exact"), url(5, "/status/404"), url(6, "/status/403"),
		url(7, "/status/401"), url(8, "/status/503"), url(9, "/status/500"),
		url(10, "/status/429"), url(11, "/status/408"), url(12, "/page"),
		url(13, "/empty"), url(14, "/big"), url(15, "/big-close"), url(16, "/moved"),
		url(17, "/stall"), refused, url(19, "/status/204"),
	};
	size_t n = sizeof(urls) / sizeof(urls[0]);

	T_CHECK(f != NULL);
	fetch(f, &g, urls, n);
	T_INTEQ(g.calls, 0);
	run_until_done();
	T_INTEQ(g.calls, 1);
	T_CHECK(!g.during_fetch);
	T_INTEQ(g.n, n);
	T_CHECK(is(&g.r[0], jpeg, sizeof(jpeg)));
	T_CHECK(is(&g.r[1], png, sizeof(png)));
	T_CHECK(is(&g.r[2], gif, sizeof(gif)));
	T_CHECK(is(&g.r[3], bmp, sizeof(bmp)));
	T_CHECK(g.r[4].status == VIID_FETCH_OK && g.r[4].len == MAX_BYTES);
	T_CHECK(not_ok(&g.r[5], VIID_FETCH_FAILED, 404, "HTTP 404"));
	T_CHECK(not_ok(&g.r[6], VIID_FETCH_FAILED, 403, "HTTP 403"));
	T_CHECK(not_ok(&g.r[7], VIID_FETCH_FAILED, 401, "HTTP 401"));
	T_CHECK(not_ok(&g.r[8], VIID_FETCH_RETRY, 503, "HTTP 503"));
	T_CHECK(not_ok(&g.r[9], VIID_FETCH_RETRY, 500, "HTTP 500"));
	T_CHECK(not_ok(&g.r[10], VIID_FETCH_RETRY, 429, "HTTP 429"));
	T_CHECK(not_ok(&g.r[11], VIID_FETCH_RETRY, 408, "HTTP 408"));
	T_CHECK(not_ok(&g.r[12], VIID_FETCH_RETRY, 200, "not an image"));
	T_CHECK(not_ok(&g.r[13], VIID_FETCH_RETRY, 200, "not an image"));
	T_CHECK(not_ok(&g.r[14], VIID_FETCH_FAILED, 200, "larger than max_bytes"));
	T_CHECK(not_ok(&g.r[15], VIID_FETCH_FAILED, 200, "larger than max_bytes"));
	T_CHECK(not_ok(&g.r[16], VIID_FETCH_FAILED, 302, "redirects are not followed"));
	T_CHECK(not_ok(&g.r[17], VIID_FETCH_RETRY, 200, "imeout"));
	T_CHECK(not_ok(&g.r[18], VIID_FETCH_RETRY, 0, "onnect"));
	T_CHECK(not_ok(&g.r[19], VIID_FETCH_RETRY, 204, "not an image"));
	/* The redirect was not followed: /a.jpg was asked for once. */
	T_INTEQ(seen("/a.jpg"), 1);
	got_free(&g);
	viid_fetcher_free(f);
}

/* URLs refused without a connection, and the callback still from the loop. */
static void
test_bad_urls(void)
{
	struct viid_fetch_config c = config(2);
	struct viid_fetcher *f = viid_fetcher_new(base, &c);
	struct got g = { 0 }, h = { 0 };
	char longest[VIID_FETCH_URL_MAX + 2], ctl[128];

	/* http://127.0.0.1:PORT/a.jpg?xxxx...: exactly 256 bytes, then 257. */
	int len = snprintf(longest, sizeof(longest), "http://127.0.0.1:%d/a.jpg?", srv.port);
	memset(longest + len, 'x', sizeof(longest) - (size_t)len - 1);
	longest[VIID_FETCH_URL_MAX + 1] = '\0';
	snprintf(ctl, sizeof(ctl), "http://127.0.0.1:%d/a.jpg\r\nX-Injected: 1", srv.port);
	char ftp[64];
	snprintf(ftp, sizeof(ftp), "ftp://127.0.0.1:%d/a.jpg", srv.port);
	const char *bad[] = { ftp, longest, ctl, "file:///etc/passwd", "", "127.0.0.1/a.jpg" };
	size_t nbad = sizeof(bad) / sizeof(bad[0]);
	int conns = counter(&srv.conns), requests = counter(&srv.requests);

	fetch(f, &g, bad, nbad);
	T_INTEQ(g.calls, 0);
	run_until_done();
	T_INTEQ(g.calls, 1);
	T_CHECK(!g.during_fetch);
	T_INTEQ(g.n, nbad);
	T_CHECK(not_ok(&g.r[0], VIID_FETCH_FAILED, 0, "not an http(s) URL"));
	T_CHECK(not_ok(&g.r[1], VIID_FETCH_FAILED, 0, "longer than 256 bytes"));
	T_CHECK(not_ok(&g.r[2], VIID_FETCH_FAILED, 0, "control byte"));
	T_CHECK(not_ok(&g.r[3], VIID_FETCH_FAILED, 0, "not an http(s) URL"));
	T_CHECK(not_ok(&g.r[4], VIID_FETCH_FAILED, 0, "not an http(s) URL"));
	T_CHECK(not_ok(&g.r[5], VIID_FETCH_FAILED, 0, "not an http(s) URL"));
	T_INTEQ(counter(&srv.conns), conns);
	T_INTEQ(counter(&srv.requests), requests);

	/* 256 bytes are fine; a good URL beside a bad one. */
	longest[VIID_FETCH_URL_MAX] = '\0';
	const char *mixed[] = { ftp, longest };
	fetch(f, &h, mixed, 2);
	run_until_done();
	T_INTEQ(h.calls, 1);
	T_CHECK(not_ok(&h.r[0], VIID_FETCH_FAILED, 0, "not an http(s) URL"));
	T_CHECK(is(&h.r[1], jpeg, sizeof(jpeg)));
	T_INTEQ(counter(&srv.requests), requests + 1);

	/* http(s), but libcurl cannot read them: failed, with no request. */
	struct got k = { 0 };
	const char *unreadable[] = { "http://", "http://[::1/a.jpg", "https://127.0.0.1:99999/a" };
	conns = counter(&srv.conns);
	fetch(f, &k, unreadable, 3);
	run_until_done();
	T_INTEQ(k.calls, 1);
	for (size_t i = 0; i < 3; i++)
		T_CHECK(not_ok(&k.r[i], VIID_FETCH_FAILED, 0, "(curl error 3)"));
	T_INTEQ(counter(&srv.conns), conns);
	got_free(&g);
	got_free(&h);
	got_free(&k);
	viid_fetcher_free(f);
}

/* max_parallel over all jobs, FIFO; one connection kept alive. */
static void
test_parallel(void)
{
	struct viid_fetch_config c = config(2);
	struct viid_fetcher *f = viid_fetcher_new(base, &c);
	struct got g1 = { 0 }, g2 = { 0 };
	const char *u1[] = { url(0, "/slow?j1-0"), url(1, "/slow?j1-1"), url(2, "/slow?j1-2") };
	const char *u2[] = { url(3, "/slow?j2-0"), url(4, "/slow?j2-1"), url(5, "/slow?j2-2") };

	pthread_mutex_lock(&srv.lock);
	srv.busy_max = 0;
	pthread_mutex_unlock(&srv.lock);
	fetch(f, &g1, u1, 3);
	fetch(f, &g2, u2, 3);
	run_until_done();
	T_INTEQ(g1.calls, 1);
	T_INTEQ(g2.calls, 1);
	T_INTEQ(counter(&srv.busy_max), 2);
	T_CHECK(g1.order < g2.order);
	for (size_t i = 0; i < 3; i++) {
		T_CHECK(is(&g1.r[i], jpeg, sizeof(jpeg)));
		T_CHECK(is(&g2.r[i], jpeg, sizeof(jpeg)));
	}
	got_free(&g1);
	got_free(&g2);
	viid_fetcher_free(f);

	/* One at a time: the three pictures come over one connection. */
	struct viid_fetch_config c1 = config(1);
	struct got g3 = { 0 };
	const char *u3[] = { url(0, "/a.jpg?k0"), url(1, "/b.png?k1"), url(2, "/a.jpg?k2") };
	f = viid_fetcher_new(base, &c1);
	int conns = counter(&srv.conns);
	fetch(f, &g3, u3, 3);
	run_until_done();
	T_INTEQ(g3.calls, 1);
	T_CHECK(is(&g3.r[0], jpeg, sizeof(jpeg)));
	T_CHECK(is(&g3.r[1], png, sizeof(png)));
	T_CHECK(is(&g3.r[2], jpeg, sizeof(jpeg)));
	T_INTEQ(counter(&srv.conns), conns + 1);
	got_free(&g3);
	viid_fetcher_free(f);
}

/* Cancelled jobs never call back: running, queued, ready; and freeing the
 * fetcher with jobs in flight, from a callback too. */
static void
test_cancel(void)
{
	struct viid_fetch_config c = config(1);
	struct viid_fetcher *f = viid_fetcher_new(base, &c);
	struct got x = { 0 }, y = { 0 }, z = { 0 }, w = { 0 };
	const char *ux[] = { url(0, "/slow?x1"), url(1, "/slow?x2") };
	const char *uy[] = { url(2, "/a.jpg?y") };
	const char *uz[] = { url(3, "/a.jpg?z") };
	const char *uw[] = { "ftp://127.0.0.1/w" };

	fetch(f, &x, ux, 2);		/* x1 runs, x2 waits */
	fetch(f, &y, uy, 1);		/* waits */
	fetch(f, &z, uz, 1);		/* waits, and is cancelled */
	fetch(f, &w, uw, 1);		/* ready, and is cancelled */
	viid_fetch_cancel(z.job);
	viid_fetch_cancel(w.job);
	pending -= 3;			/* x, z, w */
	run_for(100);			/* x1 is being answered */
	T_INTEQ(seen("x1"), 1);
	viid_fetch_cancel(x.job);
	run_until_done();		/* y */
	T_INTEQ(x.calls, 0);
	T_INTEQ(z.calls, 0);
	T_INTEQ(w.calls, 0);
	T_INTEQ(y.calls, 1);
	T_CHECK(is(&y.r[0], jpeg, sizeof(jpeg)));
	run_for(SLOW_MS);		/* x1's answer would have come */
	T_INTEQ(x.calls, 0);
	T_INTEQ(seen("x2"), 0);
	T_INTEQ(seen("?z"), 0);
	got_free(&y);

	/* The fetcher freed with a job in flight and one queued. */
	struct got v = { 0 }, u = { 0 };
	const char *uv[] = { url(0, "/stall?v"), url(1, "/slow?v") };
	const char *uu[] = { url(2, "/a.jpg?u") };
	fetch(f, &v, uv, 2);
	fetch(f, &u, uu, 1);
	pending -= 2;
	run_for(100);
	viid_fetcher_free(f);
	run_for(SLOW_MS);
	T_INTEQ(v.calls, 0);
	T_INTEQ(u.calls, 0);
	T_INTEQ(seen("?u"), 0);

	/* A callback that frees the fetcher, with another job in flight and a
	 * ready one; and one that cancels its own job (it ended: nothing). */
	struct got s = { 0 }, t = { 0 }, r = { 0 }, q = { 0 };
	const char *us[] = { url(0, "/a.jpg?s") };
	const char *ut[] = { url(1, "/slow?t") };
	c = config(2);
	f = viid_fetcher_new(base, &c);
	s.free_me = f;
	s.cancel_self = true;
	fetch(f, &s, us, 1);
	fetch(f, &t, ut, 1);
	pending--;			/* t */
	run_until_done();
	T_INTEQ(s.calls, 1);
	T_CHECK(is(&s.r[0], jpeg, sizeof(jpeg)));
	run_for(SLOW_MS + 100);
	T_INTEQ(t.calls, 0);
	got_free(&s);

	f = viid_fetcher_new(base, &c);
	r.free_me = f;
	fetch(f, &r, uw, 1);		/* ready at once */
	fetch(f, &q, uw, 1);		/* ready after it: never delivered */
	pending--;
	run_until_done();
	run_for(50);
	T_INTEQ(r.calls, 1);
	T_INTEQ(q.calls, 0);
	got_free(&r);
}

/* The devices' credentials: libcurl answers the scheme asked for. */
static void
test_credentials(void)
{
	struct viid_fetch_config c = config(2);
	const char *u[] = { url(0, "/auth.jpg") };
	struct got g = { 0 }, h = { 0 }, k = { 0 };

	c.username = "user";
	c.password = "secret";
	struct viid_fetcher *f = viid_fetcher_new(base, &c);
	fetch(f, &g, u, 1);
	run_until_done();
	T_CHECK(is(&g.r[0], jpeg, sizeof(jpeg)));
	viid_fetcher_free(f);

	c.password = "wrong";
	f = viid_fetcher_new(base, &c);
	fetch(f, &h, u, 1);
	run_until_done();
	T_CHECK(not_ok(&h.r[0], VIID_FETCH_FAILED, 401, "HTTP 401"));
	viid_fetcher_free(f);

	c.username = NULL;
	c.password = NULL;
	f = viid_fetcher_new(base, &c);
	fetch(f, &k, u, 1);
	run_until_done();
	T_CHECK(not_ok(&k.r[0], VIID_FETCH_FAILED, 401, "HTTP 401"));
	viid_fetcher_free(f);
	got_free(&g);
	got_free(&h);
	got_free(&k);
}

int
main(void)
{
	base = event_base_new();
	if (base == NULL || server_start() != 0) {
		printf("Bail out! cannot start the loop or the server\n");
		return 1;
	}
	test_outcomes();
	test_bad_urls();
	test_parallel();
	test_cancel();
	test_credentials();
	T_INTEQ(timeouts, 0);
	viid_fetcher_free(NULL);
	event_base_free(base);
	server_stop();
	return t_done();
}
