/* admin.c — see admin.h. */
#include "admin.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
#include "store_status.h"
#include "util.h"
#include "version.h"

#define HEADERS_MAX 8192	/* request line and headers */
#define BODY_MAX 1024		/* GET has none; a little is tolerated */
#define RETRY_BIND_S 30
#define CENSUS_MAX 1024		/* community x class groups in /metrics */
#define TARGETS_MAX 64		/* forward targets in /api/status */
#define STREAM_BACKLOG_MAX (1024 * 1024)	/* unread bytes of a stream: cut */


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
	struct conn *conns;		/* every connection open */
	int streams;			/* of which /api/events streams */
	struct event *push;		/* the streams' next event */
};

/* One connection: counted, and closed at its deadline whatever it is
 * doing (a client trickling its headers a byte at a time keeps resetting
 * the read timeout, not this). */
struct conn {
	struct admin *a;
	struct conn *next;
	struct bufferevent *bev;
	struct evhttp_connection *evcon;	/* NULL until adopted */
	struct event *deadline;
	struct evhttp_request *stream;	/* an /api/events stream under way */
	uint64_t stream_since_ms;
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

/* ---- the status page: its JSON and its token (pure) -------------------- */

void
admin_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	const unsigned char *end = p + strlen((const char *)p);

	fputc('"', f);
	while (*p != '\0') {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			p++;
		} else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&') {
			fprintf(f, "\\u%04x", c);
			p++;
		} else {
			size_t n = util_utf8_len(p, (size_t)(end - p));
			if (n == 0) {
				fputs("\\ufffd", f);
				p++;
			} else {
				fwrite(p, 1, n, f);
				p += n;
			}
		}
	}
	fputc('"', f);
}

static void
json_ms(FILE *f, const char *key, int64_t us)
{
	fprintf(f, "\"%s\":%lld", key, (long long)(us / 1000));
}

static void
json_tz(FILE *f, int off_s)
{
	int m = off_s / 60;
	char sign = m < 0 ? '-' : '+';

	if (m < 0)
		m = -m;
	fprintf(f, "\"%c%02d:%02d\"", sign, m / 60, m % 60);
}

void
admin_status_write(FILE *f, const struct admin_status_view *v)
{
	/* devices per class, summed over the communities */
	size_t total[DERIVE_CLASSES] = { 0 }, online[DERIVE_CLASSES] = { 0 };

	fputs("{\"version\":", f);
	admin_json_string(f, v->version);
	fputc(',', f);
	json_ms(f, "as_of_ms", v->now_us);
	fputc(',', f);
	json_ms(f, "started_ms", v->started_us);
	fputs(",\"timezone\":", f);
	json_tz(f, v->tz_offset_s);

	fprintf(f, ",\"health\":{\"ready\":%s,\"reasons\":[", v->reasons == NULL ||
	    v->reasons[0] == '\0' ? "true" : "false");
	const char *r = v->reasons != NULL ? v->reasons : "";
	for (bool first = true; *r != '\0';) {
		size_t n = strcspn(r, "\n");
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1), r);
		if (!first)
			fputc(',', f);
		admin_json_string(f, line);
		first = false;
		r += n;
		if (*r == '\n')
			r++;
	}
	fprintf(f, "],\"broker_up\":%s,\"database_up\":%s,\"catching_up\":%s,"
	    "\"journal_lag\":%llu}", v->broker_up ? "true" : "false",
	    v->database_up ? "true" : "false", v->catching_up ? "true" : "false",
	    (unsigned long long)v->journal_lag);

	fputs(",\"devices\":{\"communities\":[", f);
	for (size_t i = 0; i < v->ncensus; i++) {
		const struct derive_census *c = &v->census[i];
		if (i > 0)
			fputc(',', f);
		fputs("{\"community\":", f);
		admin_json_string(f, c->community);
		fputs(",\"device_class\":", f);
		admin_json_string(f, event_class_name(c->device_class));
		fprintf(f, ",\"online\":%zu,\"total\":%zu}", c->online, c->total);
		if (c->device_class >= 0 && c->device_class < DERIVE_CLASSES) {
			total[c->device_class] += c->total;
			online[c->device_class] += c->online;
		}
	}
	fputs("],\"classes\":[", f);
	for (int k = 0, first = 1; k < DERIVE_CLASSES; k++) {
		if (total[k] == 0)
			continue;
		if (!first)
			fputc(',', f);
		first = 0;
		fputs("{\"device_class\":", f);
		admin_json_string(f, event_class_name(k));
		fprintf(f, ",\"online\":%zu,\"total\":%zu}", online[k], total[k]);
	}
	fputs("]},\"forward\":[", f);
	for (size_t i = 0; i < v->ntargets; i++) {
		const struct admin_status_target *t = &v->targets[i];
		if (i > 0)
			fputc(',', f);
		fputs("{\"target\":", f);
		admin_json_string(f, t->name);
		fprintf(f, ",\"up\":%s,\"pending\":%llu,\"oldest_pending_s\":%.0f,\"sent\":%llu}",
		    t->up ? "true" : "false", (unsigned long long)t->pending,
		    t->oldest_pending_s >= 0 && t->oldest_pending_s < 1e12 ? t->oldest_pending_s : 0,
		    (unsigned long long)t->sent);
	}
	fputs("],\"db\":", f);
	if (v->db_json == NULL) {
		fprintf(f, "{\"stale\":true,\"as_of_ms\":null,\"figures\":null}");
	} else {
		fprintf(f, "{\"stale\":%s,", v->db_stale ? "true" : "false");
		json_ms(f, "as_of_ms", v->db_as_of_us);
		fputs(",\"figures\":", f);
		fputs(v->db_json, f);
		fputc('}', f);
	}
	fputs("}\n", f);
}

/* Whether `given` (len bytes, percent-decoded when `encoded`) equals
 * `token`; the time depends on the token's length only. */
static bool
same_token(const char *token, const char *given, size_t len, bool encoded)
{
	size_t tlen = strlen(token), j = 0;
	unsigned diff = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)given[i];
		if (encoded && c == '+')
			c = ' ';
		else if (encoded && c == '%' && i + 2 < len &&
		    util_hex_digit(given[i + 1]) >= 0 && util_hex_digit(given[i + 2]) >= 0) {
			c = util_hex_digit(given[i + 1]) * 16 + util_hex_digit(given[i + 2]);
			i += 2;
		}
		diff |= (unsigned)(j < tlen ? ((unsigned char)token[j] ^ c) : 1);
		j++;
	}
	diff |= (unsigned)(j != tlen);
	return diff == 0;
}

bool
admin_token_ok(const char *token, const char *authorization, const char *query)
{
	if (token == NULL || token[0] == '\0')
		return true;
	if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
		const char *t = authorization + 7;
		while (*t == ' ')
			t++;
		size_t n = strlen(t);
		while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
			n--;
		if (same_token(token, t, n, false))
			return true;
	}
	for (const char *q = query; q != NULL && *q != '\0';) {
		size_t n = strcspn(q, "&;");
		if (n > 6 && strncmp(q, "token=", 6) == 0 && same_token(token, q + 6, n - 6, true))
			return true;
		q += n;
		if (*q != '\0')
			q++;
	}
	return false;
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

/* ---- the status page: serving it --------------------------------------- */

/* /api/status's body, malloc'd; NULL when out of memory. */
static char *
status_json(struct admin *a, size_t *len)
{
	const struct admin_sources *s = &a->src;
	struct admin_status_target targets[TARGETS_MAX];
	struct admin_status_view v = { 0 };
	char reasons[1024];
	char *text = NULL;
	FILE *f;

	v.now_us = util_wall_us();
	v.started_us = metrics.started_us;
	v.version = GRIDBRIDGE_VERSION;
	v.tz_offset_s = a->o.status_tz_offset_s;
	not_ready(a, reasons, sizeof(reasons));
	v.reasons = reasons;
	v.broker_up = s->mqtt != NULL && mqtt_connected(s->mqtt);
	v.database_up = s->store != NULL && store_ready(s->store);
	v.catching_up = s->pipeline != NULL && pipeline_catching_up(s->pipeline);
	v.journal_lag = s->pipeline != NULL ? pipeline_unstored(s->pipeline) : 0;
	v.census = a->census;
	v.ncensus = s->derive != NULL ? derive_census(s->derive, a->census, CENSUS_MAX) : 0;
	for (size_t i = 0; i < TARGETS_MAX; i++) {
		struct admin_status_target *t = &targets[i];
		memset(t, 0, sizeof(*t));
		if ((t->name = forward_target(s->forward, i, &t->up, &t->sent)) == NULL)
			break;
		const char *name;
		double oldest;
		uint64_t n;
		for (size_t j = 0; (n = forward_pending_rows(s->forward, j, &name, &oldest)) !=
		    UINT64_MAX; j++)
			if (strcmp(name, t->name) == 0) {
				t->pending = n;
				t->oldest_pending_s = oldest;
			}
		v.ntargets++;
	}
	v.targets = targets;
	v.db_json = store_status_json(s->status, &v.db_as_of_us);
	v.db_stale = store_status_failing(s->status);
	if ((f = open_memstream(&text, len)) == NULL)
		return NULL;
	admin_status_write(f, &v);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void
security_headers(struct evkeyvalq *h)
{
	evhttp_add_header(h, "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
	    "style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; "
	    "form-action 'none'; frame-ancestors 'none'");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* the page's address may carry the token */
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
}

static struct conn *
conn_of(struct admin *a, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	for (struct conn *c = a->conns; c != NULL; c = c->next)
		if (c->evcon == evcon && evcon != NULL)
			return c;
	return NULL;
}

/* One server-sent event of `json` (one line: it has no newline but its
 * last) to a stream. */
static void
stream_send(struct conn *c, const char *json, size_t len)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		return;
	while (len > 0 && json[len - 1] == '\n')
		len--;
	evbuffer_add(b, "data: ", 6);
	evbuffer_add(b, json, len);
	evbuffer_add(b, "\n\n", 2);
	evhttp_send_reply_chunk(c->stream, b);
	evbuffer_free(b);
}

/* Whether the client of a stream closed its end (evhttp reads nothing
 * while it sends, so a browser gone would hold its place until a write
 * failed). */
static bool
peer_closed(struct bufferevent *bev)
{
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	char ch;

	if (fd < 0)
		return true;
	ssize_t n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void
push_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	char *json = NULL;
	size_t len = 0;
	uint64_t now = util_mono_ms();

	(void)fd;
	(void)what;
	if (a->streams == 0)
		return;
	for (struct conn *c = a->conns, *next; c != NULL; c = next) {
		next = c->next;
		if (c->stream == NULL)
			continue;
		struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
		if (peer_closed(bev) || now - c->stream_since_ms >= (uint64_t)ADMIN_STREAM_MAX_S * 1000 ||
		    (bev != NULL && evbuffer_get_length(bufferevent_get_output(bev)) >
		    STREAM_BACKLOG_MAX)) {
			/* over: the browser reconnects (a reader that does not
			 * read is cut) */
			evhttp_connection_free(c->evcon);	/* frees c */
			continue;
		}
		if (json == NULL && (json = status_json(a, &len)) == NULL)
			return;
		stream_send(c, json, len);
	}
	free(json);
}

static void
serve_stream(struct admin *a, struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct conn *c = conn_of(a, req);
	char *json;
	size_t len;

	if (c == NULL || (a->o.max_connections > 1 && a->streams >= a->o.max_connections - 1)) {
		static const char busy[] = "too many streams: poll /api/status\n";
		reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8", busy,
		    sizeof(busy) - 1);
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		reply_text(req, 200, "OK", "text/event-stream", "", 0);
		return;
	}
	if ((json = status_json(a, &len)) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "Connection", "close");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	security_headers(h);
	evhttp_send_reply_start(req, 200, "OK");
	c->stream = req;
	c->stream_since_ms = util_mono_ms();
	a->streams++;
	/* The stream's own deadline, beyond the listener's timeout. */
	struct timeval tv = { .tv_sec = ADMIN_STREAM_MAX_S + a->o.timeout_s, .tv_usec = 0 };
	if (c->deadline != NULL)
		evtimer_add(c->deadline, &tv);
	struct evbuffer *b = evbuffer_new();
	if (b != NULL) {
		evbuffer_add_printf(b, "retry: %d\n\n", 3000);
		evhttp_send_reply_chunk(req, b);
		evbuffer_free(b);
	}
	stream_send(c, json, len);
	free(json);
}

/* The page's paths; false when `path` is none of them. */
static bool
serve_status(struct admin *a, struct evhttp_request *req, const char *path, size_t plen)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	bool api_status = plen == 11 && strncmp(path, "/api/status", 11) == 0;
	bool api_events = plen == 11 && strncmp(path, "/api/events", 11) == 0;
	const struct admin_asset *asset = NULL;

	for (size_t i = 0; i < admin_nassets; i++)
		if (strlen(admin_assets[i].path) == plen &&
		    strncmp(admin_assets[i].path, path, plen) == 0)
			asset = &admin_assets[i];
	if (plen == 11 && strncmp(path, "/index.html", 11) == 0)
		asset = &admin_assets[0];
	if (asset == NULL && !api_status && !api_events)
		return false;
	/* The page itself and its figures want the token; its style and
	 * script are the same for everybody. */
	bool open = asset != NULL && asset != &admin_assets[0];
	if (!open && !admin_token_ok(a->o.status_token, auth, query)) {
		static const char no[] = "unauthorized: a status token is needed\n";
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		    "Bearer realm=\"gridbridge status\"");
		reply_text(req, 401, "Unauthorized", "text/plain; charset=utf-8", no,
		    sizeof(no) - 1);
		return true;
	}
	if (api_events) {
		serve_stream(a, req);
	} else if (api_status) {
		size_t len;
		char *json = status_json(a, &len);
		if (json == NULL) {
			evhttp_send_error(req, 500, NULL);
			return true;
		}
		security_headers(evhttp_request_get_output_headers(req));
		reply_text(req, 200, "OK", "application/json; charset=utf-8", json, len);
		free(json);
	} else {
		struct evkeyvalq *h = evhttp_request_get_output_headers(req);
		security_headers(h);
		evhttp_add_header(h, "Content-Type", asset->type);
		/* small and compiled in: revalidated, never stale after an upgrade */
		evhttp_add_header(h, "Cache-Control", "no-cache");
		evhttp_add_header(h, "Connection", "close");
		struct evbuffer *b = evbuffer_new();
		if (b == NULL) {
			evhttp_send_error(req, 500, NULL);
			return true;
		}
		evbuffer_add_reference(b, asset->data, asset->len, NULL, NULL);
		evhttp_send_reply(req, 200, "OK", b);
		evbuffer_free(b);
	}
	return true;
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
	} else if (!serve_status(a, req, uri, plen)) {
		static const char nf[] = "not found: /healthz, /readyz, /metrics, /, /api/status, "
		    "/api/events\n";
		reply_text(req, 404, "Not Found", "text/plain; charset=utf-8", nf, sizeof(nf) - 1);
	}
}

static struct evconnlistener *
listener_of(struct admin *a)
{
	return a->bound != NULL ? evhttp_bound_socket_get_listener(a->bound) : NULL;
}


static void
conn_gone(struct conn *c)
{
	struct admin *a = c->a;

	for (struct conn **p = &a->conns; *p != NULL; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	if (c->stream != NULL) {
		a->streams--;
		/* A stream the connection failed under was let go by evhttp
		 * (it stays the sender's until its end): ours to free. One
		 * still attached is freed with its connection. */
		if (evhttp_request_get_connection(c->stream) == NULL)
			evhttp_request_free(c->stream);
	}
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
	c->next = a->conns;
	a->conns = c;
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
	a->o.status_token = o->status_token != NULL && o->status_token[0] != '\0' ?
	    util_strdup(o->status_token) : NULL;
	if (a->o.status_refresh_s < 1)
		a->o.status_refresh_s = 5;
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
	struct timeval ptv = { .tv_sec = a->o.status_refresh_s, .tv_usec = 0 };
	a->push = event_new(base, -1, EV_PERSIST, push_cb, a);
	if (a->push == NULL || event_add(a->push, &ptv) != 0) {
		admin_free(a);
		return NULL;
	}
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
	if (a->push != NULL)
		event_free(a->push);
	if (a->o.status_token != NULL) {
		memset((char *)a->o.status_token, 0, strlen(a->o.status_token));
		free((char *)a->o.status_token);
	}
	free(a->census);
	free((char *)a->o.listen);
	free(a);
}
