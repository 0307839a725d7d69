/* admin.c — see admin.h. */
#include "admin.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "derive.h"
#include "event_names.h"
#include "forward.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "mqtt.h"
#include "pipeline.h"
#include "store.h"
#include "util.h"
#include "version.h"

#define HEADERS_MAX 8192	/* request line and headers */
#define BODY_MAX 1024		/* GET has none; a little is tolerated */
#define RETRY_BIND_S 30
#define CENSUS_MAX 1024		/* community x class groups in /metrics */

struct admin {
	struct event_base *base;
	struct admin_options o;
	struct admin_sources src;
	char host[64];
	int port;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	bool listening_paused;
	bool closing;			/* admin_free() */
	struct event *retry;		/* binding again */
	bool bind_logged;
	int live;			/* connections open */
	uint64_t refused;		/* connections put off by the limit */
	struct event *stats;
	struct derive_census *census;
};

/* ---- the figures ------------------------------------------------------- */

static uint64_t
rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static long
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = 0;
	struct dirent *e;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own */
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The reasons it is not ready, one per line, into `out`; how many. */
static int
not_ready(const struct admin *a, char *out, size_t cap)
{
	const struct admin_sources *s = &a->src;
	size_t off = 0;
	int n = 0;

#define REASON(...) do { \
		int w_ = snprintf(out + off, cap - off, __VA_ARGS__); \
		if (w_ > 0) \
			off = (size_t)w_ < cap - off ? off + (size_t)w_ : cap - 1; \
		n++; \
	} while (0)
	out[0] = '\0';
	if (s->mqtt == NULL || !mqtt_connected(s->mqtt))
		REASON("broker: not connected\n");
	if (s->store == NULL || !store_ready(s->store))
		REASON("database: not connected\n");
	if (s->journal != NULL && journal_full(s->journal))
		REASON("journal: full (at its disk cap), ingest paused\n");
	if (s->pipeline != NULL && pipeline_catching_up(s->pipeline))
		REASON("store: catching up, %llu records to store\n",
		    (unsigned long long)pipeline_unstored(s->pipeline));
	const char *target = NULL;
	double lag = forward_oldest_pending(s->forward, &target);
	if (a->o.ready_max_forward_lag_s > 0 && lag > a->o.ready_max_forward_lag_s)
		REASON("forward: oldest pending event %.0f s old (target %s, threshold %d s)\n",
		    lag, target != NULL ? target : "?", a->o.ready_max_forward_lag_s);
#undef REASON
	return n;
}

static void
write_census(const struct admin *a, FILE *f)
{
	char comm[METRICS_LABEL_MAX * 2 + 1], labels[256];
	size_t n = a->src.derive != NULL ? derive_census(a->src.derive, a->census, CENSUS_MAX) : 0;

	metrics_head(f, "gridbridge_devices", "gauge",
	    "Devices the registry knows, per community and device class.");
	for (size_t i = 0; i < n; i++) {
		metrics_escape(comm, sizeof(comm), a->census[i].community);
		snprintf(labels, sizeof(labels), "community=\"%s\",device_class=\"%s\"", comm,
		    event_class_name(a->census[i].device_class));
		metrics_sample_u64(f, "gridbridge_devices", labels, a->census[i].total);
	}
	metrics_head(f, "gridbridge_devices_online", "gauge",
	    "Devices online, per community and device class.");
	for (size_t i = 0; i < n; i++) {
		metrics_escape(comm, sizeof(comm), a->census[i].community);
		snprintf(labels, sizeof(labels), "community=\"%s\",device_class=\"%s\"", comm,
		    event_class_name(a->census[i].device_class));
		metrics_sample_u64(f, "gridbridge_devices_online", labels, a->census[i].online);
	}
}

static void
write_metrics(const struct admin *a, FILE *f)
{
	const struct admin_sources *s = &a->src;
	struct journal_stat js = { 0 };
	char labels[128], reasons[1024];

	if (s->journal != NULL)
		journal_stat(s->journal, &js);
	metrics_head(f, "gridbridge_build_info", "gauge", "The running version (always 1).");
	snprintf(labels, sizeof(labels), "version=\"%s\"", GRIDBRIDGE_VERSION);
	metrics_sample(f, "gridbridge_build_info", labels, 1);
	metrics_head(f, "gridbridge_start_time_seconds", "gauge",
	    "When the daemon started, seconds since the Unix epoch.");
	metrics_sample(f, "gridbridge_start_time_seconds", NULL, (double)metrics.started_us / 1e6);
	metrics_head(f, "gridbridge_ready", "gauge", "1 when /readyz answers 200.");
	metrics_sample(f, "gridbridge_ready", NULL, not_ready(a, reasons, sizeof(reasons)) == 0);

	/* messages: received + recovered = stored + quarantined + journal lag */
	metrics_write_family(f, "gridbridge_messages_received_total",
	    "Messages taken from the broker into the journal, per route (none: no route "
	    "matched).", "route", &metrics.received);
	metrics_head(f, "gridbridge_messages_recovered_total", "counter",
	    "Records an earlier run left in the journal unstored, found at start.");
	metrics_sample_u64(f, "gridbridge_messages_recovered_total", NULL, metrics.recovered);
	metrics_write_family(f, "gridbridge_events_stored_total",
	    "Messages stored as events, per device class.", "device_class", &metrics.stored);
	metrics_write_family(f, "gridbridge_messages_quarantined_total",
	    "Messages stored in quarantine, per reason.", "reason", &metrics.quarantined);
	metrics_write_family(f, "gridbridge_messages_rate_limited_total",
	    "Messages a device over its rate limit held back (quarantined as a summary row per "
	    "device and minute), per route.", "route", &metrics.rate_limited);
	metrics_write_family(f, "gridbridge_derived_events_stored_total",
	    "Events gridbridge derived (device online state, welfare, reports) and stored, per "
	    "device class.", "device_class", &metrics.derived);

	metrics_head(f, "gridbridge_journal_lag_messages", "gauge",
	    "Records in the journal not stored yet (events or quarantine).");
	metrics_sample_u64(f, "gridbridge_journal_lag_messages", NULL,
	    s->pipeline != NULL ? pipeline_unstored(s->pipeline) : 0);
	metrics_head(f, "gridbridge_journal_bytes", "gauge", "Journal size on disk.");
	metrics_sample_u64(f, "gridbridge_journal_bytes", NULL, js.bytes);
	metrics_head(f, "gridbridge_journal_cap_bytes", "gauge",
	    "Journal disk cap: ingest pauses at it.");
	metrics_sample_u64(f, "gridbridge_journal_cap_bytes", NULL, js.disk_cap);
	metrics_head(f, "gridbridge_journal_segments", "gauge", "Journal segment files.");
	metrics_sample_u64(f, "gridbridge_journal_segments", NULL, js.segments);
	metrics_head(f, "gridbridge_journal_full", "gauge", "1 while the journal is at its cap.");
	metrics_sample(f, "gridbridge_journal_full", NULL, js.full);
	metrics_head(f, "gridbridge_journal_last_sequence", "gauge",
	    "Sequence number of the last record appended.");
	metrics_sample_u64(f, "gridbridge_journal_last_sequence", NULL, js.last_seq);
	metrics_head(f, "gridbridge_journal_checkpoint_sequence", "gauge",
	    "Sequence number up to which everything is stored.");
	metrics_sample_u64(f, "gridbridge_journal_checkpoint_sequence", NULL, js.checkpoint_seq);
	metrics_head(f, "gridbridge_journal_sync_duration_seconds", "histogram",
	    "fdatasync of the journal before the broker is acknowledged.");
	metrics_write_hist(f, "gridbridge_journal_sync_duration_seconds", NULL,
	    &metrics.fdatasync_seconds);
	metrics_head(f, "gridbridge_journal_sync_messages", "histogram",
	    "Messages one fdatasync made durable (group commit).");
	metrics_write_hist(f, "gridbridge_journal_sync_messages", NULL, &metrics.sync_messages);

	metrics_head(f, "gridbridge_broker_up", "gauge", "1 while connected to the broker.");
	metrics_sample(f, "gridbridge_broker_up", NULL, s->mqtt != NULL && mqtt_connected(s->mqtt));
	metrics_head(f, "gridbridge_broker_reconnects_total", "counter",
	    "Connections to the broker made after the first.");
	metrics_sample_u64(f, "gridbridge_broker_reconnects_total", NULL, metrics.broker_reconnects);
	metrics_head(f, "gridbridge_broker_redeliveries_total", "counter",
	    "Messages the broker sent again after resuming our session that were "
	    "journaled already (acknowledged, not journaled twice).");
	metrics_sample_u64(f, "gridbridge_broker_redeliveries_total", NULL,
	    metrics.broker_redeliveries);
	metrics_head(f, "gridbridge_clock_steps_total", "counter",
	    "Times the system clock stepped (moved more than 1 s apart from the time "
	    "that passed) while the daemon ran.");
	metrics_sample_u64(f, "gridbridge_clock_steps_total", NULL, metrics.clock_steps);

	metrics_head(f, "gridbridge_database_up", "gauge",
	    "1 while connected to the database with the schema ready.");
	metrics_sample(f, "gridbridge_database_up", NULL, s->store != NULL && store_ready(s->store));
	metrics_head(f, "gridbridge_database_reconnects_total", "counter",
	    "Connections to the database made after the first.");
	metrics_sample_u64(f, "gridbridge_database_reconnects_total", NULL, metrics.db_reconnects);
	metrics_head(f, "gridbridge_database_answer_timeouts_total", "counter",
	    "Connections given up because the database did not answer within "
	    "[store] answer_timeout.");
	metrics_sample_u64(f, "gridbridge_database_answer_timeouts_total", NULL,
	    metrics.db_answer_timeouts);
	metrics_head(f, "gridbridge_store_batches_inflight", "gauge",
	    "Transactions sent to the database and not yet confirmed.");
	metrics_sample_u64(f, "gridbridge_store_batches_inflight", NULL,
	    s->store != NULL ? store_backlog(s->store) : 0);
	metrics_head(f, "gridbridge_store_catching_up", "gauge",
	    "1 while a backlog from the journal is being stored.");
	metrics_sample(f, "gridbridge_store_catching_up", NULL,
	    s->pipeline != NULL && pipeline_catching_up(s->pipeline));
	metrics_head(f, "gridbridge_store_batch_duration_seconds", "histogram",
	    "A batch's transaction, from sent to committed.");
	metrics_write_hist(f, "gridbridge_store_batch_duration_seconds", NULL,
	    &metrics.batch_seconds);
	metrics_head(f, "gridbridge_store_batch_rows", "histogram",
	    "Rows (events and quarantine) per committed batch.");
	metrics_write_hist(f, "gridbridge_store_batch_rows", NULL, &metrics.batch_rows);

	forward_write_metrics(s->forward, f);
	write_census(a, f);

	metrics_head(f, "gridbridge_admin_connections", "gauge",
	    "Connections to the admin listener open now.");
	metrics_sample(f, "gridbridge_admin_connections", NULL, a->live);
	metrics_head(f, "gridbridge_admin_connections_deferred_total", "counter",
	    "Times the admin listener stopped accepting at max_connections.");
	metrics_sample_u64(f, "gridbridge_admin_connections_deferred_total", NULL, a->refused);

	metrics_head(f, "gridbridge_process_resident_memory_bytes", "gauge",
	    "Resident memory of the process.");
	metrics_sample_u64(f, "gridbridge_process_resident_memory_bytes", NULL, rss_bytes());
	metrics_head(f, "gridbridge_process_open_fds", "gauge", "Open file descriptors.");
	metrics_sample(f, "gridbridge_process_open_fds", NULL, (double)open_fds());
	metrics_head(f, "gridbridge_process_cpu_seconds_total", "counter",
	    "User and system CPU time of the process.");
	metrics_sample(f, "gridbridge_process_cpu_seconds_total", NULL, cpu_seconds());
}

/* ---- the stats line ---------------------------------------------------- */

static void
stats_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	const struct admin_sources *s = &a->src;
	struct journal_stat js = { 0 };
	size_t devices = 0, online = 0;
	uint64_t pending = 0;
	const char *target;
	double oldest_s;

	(void)fd;
	(void)what;
	if (s->journal != NULL)
		journal_stat(s->journal, &js);
	if (s->derive != NULL)
		devices = derive_devices(s->derive, &online);
	for (size_t i = 0;; i++) {
		uint64_t n = forward_pending_rows(s->forward, i, &target, &oldest_s);
		if (n == UINT64_MAX)
			break;
		pending += n;
	}
	oldest_s = forward_oldest_pending(s->forward, NULL);
	log_info("daemon", "stats", "received=%llu recovered=%llu stored=%llu quarantined=%llu "
	    "derived=%llu journal_lag=%llu journal_bytes=%llu broker=%d database=%d "
	    "catching_up=%d forward_pending=%llu forward_oldest_s=%.0f devices=%zu online=%zu "
	    "rss_bytes=%llu cpu_s=%.2f",
	    (unsigned long long)metrics.received_all, (unsigned long long)metrics.recovered,
	    (unsigned long long)metrics.stored_all, (unsigned long long)metrics.quarantined_all,
	    (unsigned long long)metrics.derived_all,
	    (unsigned long long)(s->pipeline != NULL ? pipeline_unstored(s->pipeline) : 0),
	    (unsigned long long)js.bytes, s->mqtt != NULL && mqtt_connected(s->mqtt),
	    s->store != NULL && store_ready(s->store),
	    s->pipeline != NULL && pipeline_catching_up(s->pipeline),
	    (unsigned long long)pending, oldest_s, devices, online,
	    (unsigned long long)rss_bytes(), cpu_seconds());
}

/* ---- the listener ------------------------------------------------------ */

static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *type,
    const char *body, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "Connection", "close");
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	/* HEAD: libevent sends the headers only. */
	evbuffer_add(b, body, len);
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const char *uri = evhttp_request_get_uri(req);
	size_t plen = strcspn(uri, "?");

	if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
		reply_text(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
	} else if (plen == 7 && strncmp(uri, "/readyz", 7) == 0) {
		char reasons[1024];
		if (not_ready(a, reasons, sizeof(reasons)) == 0)
			reply_text(req, 200, "OK", "text/plain; charset=utf-8", "ready\n", 6);
		else
			reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
			    reasons, strlen(reasons));
	} else if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		if (f == NULL) {
			evhttp_send_error(req, 500, NULL);
			return;
		}
		write_metrics(a, f);
		if (fclose(f) != 0) {
			free(text);
			evhttp_send_error(req, 500, NULL);
			return;
		}
		reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
		free(text);
	} else {
		static const char nf[] = "not found: /healthz, /readyz, /metrics\n";
		reply_text(req, 404, "Not Found", "text/plain; charset=utf-8", nf, sizeof(nf) - 1);
	}
}

static struct evconnlistener *
listener_of(struct admin *a)
{
	return a->bound != NULL ? evhttp_bound_socket_get_listener(a->bound) : NULL;
}

/* One connection: counted, and closed at its deadline whatever it is
 * doing (a client trickling its headers a byte at a time keeps resetting
 * the read timeout, not this). */
struct conn {
	struct admin *a;
	struct bufferevent *bev;
	struct evhttp_connection *evcon;	/* NULL until adopted */
	struct event *deadline;
};

static void
conn_gone(struct conn *c)
{
	struct admin *a = c->a;

	if (c->deadline != NULL)
		event_free(c->deadline);
	free(c);
	a->live--;
	if (!a->closing && a->listening_paused && a->live < a->o.max_connections &&
	    listener_of(a) != NULL) {
		evconnlistener_enable(listener_of(a));
		a->listening_paused = false;
	}
}

static void
connection_closed(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	conn_gone(arg);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct evhttp_connection *evcon = c->evcon;

	(void)fd;
	(void)what;
	/* Its close callback frees c. */
	evhttp_connection_free(evcon);
}

/* Right after the accept (before the loop polls again, so the connection
 * is still there): the connection evhttp made around the bufferevent
 * reports its close to us, and gets its deadline. */
static void
adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	void *evcon = NULL;
	struct timeval tv = { .tv_sec = c->a->o.timeout_s, .tv_usec = 0 };

	(void)fd;
	(void)what;
	bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
	if (evcon == NULL) {
		conn_gone(c);
		return;
	}
	c->evcon = evcon;
	evhttp_connection_set_closecb(c->evcon, connection_closed, c);
	c->deadline = evtimer_new(c->a->base, deadline_cb, c);
	if (c->deadline != NULL)
		evtimer_add(c->deadline, &tv);
}

/* evhttp's new connection: its bufferevent, counted. At the limit the
 * listener stops accepting until a connection closes. */
static struct bufferevent *
new_connection(struct event_base *base, void *arg)
{
	struct admin *a = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct conn *c = calloc(1, sizeof(*c));

	if (bev == NULL || c == NULL) {
		free(c);
		return bev;	/* evhttp copes with NULL; uncounted then */
	}
	a->live++;
	if (a->live >= a->o.max_connections && listener_of(a) != NULL) {
		evconnlistener_disable(listener_of(a));
		a->listening_paused = true;
		a->refused++;
	}
	c->a = a;
	c->bev = bev;
	if (event_base_once(base, -1, EV_TIMEOUT, adopt_cb, c, NULL) != 0)
		conn_gone(c);
	return bev;
}

static int
try_bind(struct admin *a)
{
	a->bound = evhttp_bind_socket_with_handle(a->http, a->host, (ev_uint16_t)a->port);
	if (a->bound == NULL) {
		if (!a->bind_logged)
			log_warn("admin", "cannot listen, trying again", "listen=%s retry_in_s=%d",
			    a->o.listen, RETRY_BIND_S);
		a->bind_logged = true;
		struct timeval tv = { .tv_sec = RETRY_BIND_S, .tv_usec = 0 };
		evtimer_add(a->retry, &tv);
		return -1;
	}
	log_info("admin", "listening", "listen=%s max_connections=%d", a->o.listen,
	    a->o.max_connections);
	return 0;
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	try_bind(arg);
}

/* "host:port" or "[v6]:port" (checked when the configuration was read). */
static int
split_listen(struct admin *a)
{
	const char *s = a->o.listen;
	const char *colon = strrchr(s, ':');

	if (colon == NULL)
		return -1;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(a->host))
		return -1;
	memcpy(a->host, h, hl);
	a->host[hl] = '\0';
	a->port = atoi(colon + 1);
	return a->port > 0 && a->port < 65536 ? 0 : -1;
}

struct admin *
admin_new(struct event_base *base, const struct admin_options *o,
    const struct admin_sources *src)
{
	struct admin *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->base = base;
	a->o = *o;
	a->o.listen = util_strdup(o->listen != NULL ? o->listen : "none");
	a->src = *src;
	if (a->o.max_connections < 1)
		a->o.max_connections = 1;
	a->census = calloc(CENSUS_MAX, sizeof(*a->census));
	if (a->census == NULL) {
		admin_free(a);
		return NULL;
	}
	if (o->stats_interval_s > 0) {
		struct timeval tv = { .tv_sec = o->stats_interval_s, .tv_usec = 0 };
		a->stats = event_new(base, -1, EV_PERSIST, stats_cb, a);
		if (a->stats == NULL || event_add(a->stats, &tv) != 0) {
			admin_free(a);
			return NULL;
		}
	}
	if (strcmp(a->o.listen, "none") == 0 || a->o.listen[0] == '\0')
		return a;
	if (split_listen(a) != 0) {
		log_error("admin", "bad listen address", "listen=%s", a->o.listen);
		return a;
	}
	a->http = evhttp_new(base);
	a->retry = evtimer_new(base, retry_cb, a);
	if (a->http == NULL || a->retry == NULL) {
		admin_free(a);
		return NULL;
	}
	evhttp_set_timeout(a->http, a->o.timeout_s);
	evhttp_set_max_headers_size(a->http, HEADERS_MAX);
	evhttp_set_max_body_size(a->http, BODY_MAX);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_bevcb(a->http, new_connection, a);
	evhttp_set_gencb(a->http, request_cb, a);
	try_bind(a);
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	a->closing = true;
	if (a->http != NULL)
		evhttp_free(a->http);	/* closes its connections (their closecb: us) */
	if (a->retry != NULL)
		event_free(a->retry);
	if (a->stats != NULL)
		event_free(a->stats);
	free(a->census);
	free((char *)a->o.listen);
	free(a);
}
