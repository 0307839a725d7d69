/* gridbridgectl_status.c — see gridbridgectl_status.h. */
#include "gridbridgectl_status.h"

#include <curl/curl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define ANSWER_MAX (8u << 20)	/* /metrics of a big registry fits */
#define TIMEOUT_S 5L
#define TARGETS_MAX 64

struct answer {
	char *text;
	size_t len;
	bool cut;
};

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	size_t len = size * n;

	if (a->len + len > ANSWER_MAX) {
		a->cut = true;
		return 0;
	}
	a->text = util_realloc(a->text, a->len + len + 1);
	memcpy(a->text + a->len, data, len);
	a->len += len;
	a->text[a->len] = '\0';
	return len;
}

/* GET http://<listen><path>: the status (0: no answer, *err says why). */
static long
get(const char *listen, const char *path, struct answer *a, char *err, size_t errlen)
{
	char url[256];
	char ebuf[CURL_ERROR_SIZE] = "";
	long status = 0;

	memset(a, 0, sizeof(*a));
	snprintf(url, sizeof(url), "http://%s%s", listen, path);
	CURL *c = curl_easy_init();
	if (c == NULL) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return 0;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(err, errlen, "%s", a->cut ? "answer too long" :
		    ebuf[0] != '\0' ? ebuf : curl_easy_strerror(rc));
	curl_easy_cleanup(c);
	if (a->text == NULL)
		a->text = util_strdup("");
	return status;
}

/* ---- the text format ---------------------------------------------------- */

/* Calls fn for each sample of `name`: its labels (the text inside {},
 * not NUL-terminated: `llen` bytes) and value. */
static void
each_sample(const char *text, const char *name,
    void (*fn)(const char *labels, size_t llen, double v, void *ctx), void *ctx)
{
	size_t nl = strlen(name);

	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		if (len > nl && p[0] != '#' && strncmp(p, name, nl) == 0 &&
		    (p[nl] == ' ' || p[nl] == '{')) {
			const char *labels = "", *q = p + nl;
			size_t llen = 0;
			if (*q == '{') {
				const char *end = memchr(q, '}', len - nl);
				if (end == NULL)
					goto next;
				labels = q + 1;
				llen = (size_t)(end - q - 1);
				q = end + 1;
			}
			char num[64];
			size_t vl = (size_t)(p + len - q);
			if (vl == 0 || vl >= sizeof(num))
				goto next;
			memcpy(num, q, vl);
			num[vl] = '\0';
			char *e;
			double v = strtod(num, &e);
			if (e != num)
				fn(labels, llen, v, ctx);
		}
next:
		p = eol != NULL ? eol + 1 : NULL;
	}
}

struct sum {
	const char *label;
	double total;
	bool any;
};

static bool
has_label(const char *labels, size_t llen, const char *label)
{
	size_t n = strlen(label);

	for (const char *p = labels; p + n <= labels + llen; p++)
		if ((p == labels || p[-1] == ',') && strncmp(p, label, n) == 0 &&
		    (p + n == labels + llen || p[n] == ','))
			return true;
	return false;
}

static void
add_sample(const char *labels, size_t llen, double v, void *ctx)
{
	struct sum *s = ctx;

	if (s->label == NULL || has_label(labels, llen, s->label)) {
		s->total += v;
		s->any = true;
	}
}

double
ctl_metric(const char *text, const char *name, const char *label)
{
	struct sum s = { .label = label };

	each_sample(text, name, add_sample, &s);
	return s.any ? s.total : -1;
}

/* ---- the pending rows per target --------------------------------------- */

struct target {
	char name[128];
	double pending, oldest;
};

struct targets {
	struct target t[TARGETS_MAX];
	size_t n;
	bool oldest;	/* filling .oldest, else .pending */
};

/* The value of label `key` in `labels`, unescaped, into out. */
static void
label_value(const char *labels, size_t llen, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key), o = 0;

	out[0] = '\0';
	for (const char *p = labels; p + kl + 2 <= labels + llen; p++) {
		if ((p != labels && p[-1] != ',') || strncmp(p, key, kl) != 0 || p[kl] != '=' ||
		    p[kl + 1] != '"')
			continue;
		for (const char *q = p + kl + 2; q < labels + llen && *q != '"' && o + 1 < cap; q++) {
			if (*q == '\\' && q + 1 < labels + llen)
				q++;
			out[o++] = *q;
		}
		out[o] = '\0';
		return;
	}
}

static void
add_target(const char *labels, size_t llen, double v, void *ctx)
{
	struct targets *ts = ctx;
	char name[128];
	size_t i;

	label_value(labels, llen, "target", name, sizeof(name));
	for (i = 0; i < ts->n && strcmp(ts->t[i].name, name) != 0; i++)
		;
	if (i == ts->n) {
		if (ts->n == TARGETS_MAX)
			return;
		memset(&ts->t[i], 0, sizeof(ts->t[i]));
		snprintf(ts->t[i].name, sizeof(ts->t[i].name), "%s", name);
		ts->n++;
	}
	if (ts->oldest)
		ts->t[i].oldest = v;
	else
		ts->t[i].pending = v;
}

/* ---- the summary -------------------------------------------------------- */

static void
human_bytes(double b, char *out, size_t cap)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
}

static void
human_duration(double s, char *out, size_t cap)
{
	if (s < 120)
		snprintf(out, cap, "%.0f s", s);
	else if (s < 7200)
		snprintf(out, cap, "%.0f min", s / 60);
	else if (s < 172800)
		snprintf(out, cap, "%.1f h", s / 3600);
	else
		snprintf(out, cap, "%.1f days", s / 86400);
}

static double
stored_now(const char *m)
{
	double e = ctl_metric(m, "gridbridge_events_stored_total", NULL);
	double q = ctl_metric(m, "gridbridge_messages_quarantined_total", NULL);

	return (e > 0 ? e : 0) + (q > 0 ? q : 0);
}

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
print_summary(FILE *out, const char *listen, long ready_status, const char *reasons,
    const char *m, double rate)
{
	char a[32], b[32];
	double v;

	fprintf(out, "gridbridged at %s: %s\n", listen, ready_status == 200 ? "healthy" :
	    "degraded");
	if (ready_status != 200) {
		for (const char *p = reasons; *p != '\0';) {
			size_t n = strcspn(p, "\n");
			if (n > 0)
				fprintf(out, "  not ready: %.*s\n", (int)n, p);
			p += n + (p[n] == '\n');
		}
	}
	fprintf(out, "  broker:     %s (reconnects %.0f)\n",
	    ctl_metric(m, "gridbridge_broker_up", NULL) == 1 ? "connected" : "not connected",
	    fmax(0, ctl_metric(m, "gridbridge_broker_reconnects_total", NULL)));
	fprintf(out, "  database:   %s (reconnects %.0f)\n",
	    ctl_metric(m, "gridbridge_database_up", NULL) == 1 ? "connected" : "not connected",
	    fmax(0, ctl_metric(m, "gridbridge_database_reconnects_total", NULL)));
	double lag = fmax(0, ctl_metric(m, "gridbridge_journal_lag_messages", NULL));
	human_bytes(fmax(0, ctl_metric(m, "gridbridge_journal_bytes", NULL)), a, sizeof(a));
	human_bytes(fmax(0, ctl_metric(m, "gridbridge_journal_cap_bytes", NULL)), b, sizeof(b));
	fprintf(out, "  backlog:    %.0f records not stored yet; journal %s of %s%s\n", lag, a, b,
	    ctl_metric(m, "gridbridge_journal_full", NULL) == 1 ? " (FULL: ingest paused)" : "");
	if (ctl_metric(m, "gridbridge_store_catching_up", NULL) == 1 || lag > 0) {
		if (rate > 0) {
			human_duration(lag / rate, a, sizeof(a));
			fprintf(out, "  catch-up:   %.0f records/s, about %s to go\n", rate, a);
		} else if (rate == 0) {
			fprintf(out, "  catch-up:   not moving\n");
		}
	}
	fprintf(out, "  messages:   %.0f received, %.0f recovered, %.0f stored, %.0f quarantined "
	    "since start\n",
	    fmax(0, ctl_metric(m, "gridbridge_messages_received_total", NULL)),
	    fmax(0, ctl_metric(m, "gridbridge_messages_recovered_total", NULL)),
	    fmax(0, ctl_metric(m, "gridbridge_events_stored_total", NULL)),
	    fmax(0, ctl_metric(m, "gridbridge_messages_quarantined_total", NULL)));

	struct targets ts = { .n = 0 };
	each_sample(m, "gridbridge_forward_events_pending", add_target, &ts);
	ts.oldest = true;
	each_sample(m, "gridbridge_forward_oldest_pending_seconds", add_target, &ts);
	if (ts.n == 0) {
		fprintf(out, "  forwarding: nothing pending\n");
	} else {
		for (size_t i = 0; i < ts.n; i++) {
			human_duration(ts.t[i].oldest, a, sizeof(a));
			char label[160];
			snprintf(label, sizeof(label), "target=\"%s\"", ts.t[i].name);
			double up = ctl_metric(m, "gridbridge_forward_target_up", label);
			fprintf(out, "  forwarding: %s: %.0f pending, oldest %s%s\n", ts.t[i].name,
			    ts.t[i].pending, a, up == 0 ? " (target failing)" : "");
		}
	}
	double total = ctl_metric(m, "gridbridge_devices", NULL);
	double online = ctl_metric(m, "gridbridge_devices_online", NULL);
	if (total > 0)
		fprintf(out, "  devices:    %.0f of %.0f online (%.1f%%)\n", online, total,
		    100.0 * online / total);
	else
		fprintf(out, "  devices:    none known yet\n");
	if ((v = ctl_metric(m, "gridbridge_process_resident_memory_bytes", NULL)) >= 0) {
		human_bytes(v, a, sizeof(a));
		fprintf(out, "  process:    %s resident, %.0f open files\n", a,
		    ctl_metric(m, "gridbridge_process_open_fds", NULL));
	}
}

int
ctl_status(const char *listen, int interval_ms, FILE *out)
{
	struct answer ready, m1, m2 = { 0 };
	char err[CURL_ERROR_SIZE + 64] = "";
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "gridbridgectl: cannot initialise libcurl\n");
		return CTL_STATUS_UNREACHABLE;
	}
	long rs = get(listen, "/readyz", &ready, err, sizeof(err));
	double t1 = mono_s();
	long ms = rs == 200 || rs == 503 ? get(listen, "/metrics", &m1, err, sizeof(err)) : 0;
	if (rs != 200 && rs != 503) {
		if (rs == 0)
			fprintf(stderr, "gridbridgectl: gridbridged not reachable at %s: %s\n", listen,
			    err);
		else
			fprintf(stderr, "gridbridgectl: %s/readyz answered %ld: not gridbridged?\n",
			    listen, rs);
		free(ready.text);
		curl_global_cleanup();
		return CTL_STATUS_UNREACHABLE;
	}
	if (ms != 200 || ctl_metric(m1.text, "gridbridge_build_info", NULL) != 1) {
		if (ms == 0)
			fprintf(stderr, "gridbridgectl: gridbridged not reachable at %s: %s\n", listen,
			    err);
		else
			fprintf(stderr, "gridbridgectl: %s/metrics is not gridbridged's (status %ld)\n",
			    listen, ms);
		free(ready.text);
		free(m1.text);
		curl_global_cleanup();
		return CTL_STATUS_UNREACHABLE;
	}
	const char *m = m1.text;
	double rate = -1;	/* not measured */
	if (interval_ms > 0 && ctl_metric(m1.text, "gridbridge_journal_lag_messages", NULL) > 0) {
		struct timespec ts = { .tv_sec = interval_ms / 1000,
			.tv_nsec = (long)(interval_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
		if (get(listen, "/metrics", &m2, err, sizeof(err)) == 200) {
			double dt = mono_s() - t1;
			rate = dt > 0 ? fmax(0, (stored_now(m2.text) - stored_now(m1.text)) / dt) : -1;
			m = m2.text;
		}
	}
	print_summary(out, listen, rs, ready.text, m, rate);
	rc = rs == 200 ? CTL_STATUS_OK : CTL_STATUS_DEGRADED;
	free(ready.text);
	free(m1.text);
	free(m2.text);
	curl_global_cleanup();
	return rc;
}
