/* metrics.c — see metrics.h. */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "util.h"

struct metrics metrics;

static const double seconds_fast[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };
static const double seconds_batch[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	0.5, 1, 2.5, 5, 10 };
static const double group_sizes[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };

#define NB(a) (sizeof(a) / sizeof((a)[0]))

static void
hist_init(struct metrics_hist *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nbounds = n < METRICS_BUCKETS ? n : METRICS_BUCKETS;
}

void
metrics_init(void)
{
	memset(&metrics, 0, sizeof(metrics));
	hist_init(&metrics.fdatasync_seconds, seconds_fast, NB(seconds_fast));
	hist_init(&metrics.sync_messages, group_sizes, NB(group_sizes));
	hist_init(&metrics.batch_seconds, seconds_batch, NB(seconds_batch));
	hist_init(&metrics.batch_rows, group_sizes, NB(group_sizes));
	metrics.started_us = util_wall_us();
}

size_t
metrics_label(struct metrics_family *f, const char *value, size_t len)
{
	if (value == NULL)
		value = "";
	if (len == SIZE_MAX)
		len = strlen(value);
	if (len >= METRICS_LABEL_MAX)
		len = METRICS_LABEL_MAX - 1;
	for (size_t i = 0; i < f->n; i++)
		if (strncmp(f->values[i], value, len) == 0 && f->values[i][len] == '\0')
			return i;
	if (f->n == METRICS_LABELS)
		return METRICS_OTHER;
	memcpy(f->values[f->n], value, len);
	f->values[f->n][len] = '\0';
	return f->n++;
}

size_t
metrics_reason(struct metrics_family *f, const char *reason)
{
	if (reason == NULL)
		reason = "";
	return metrics_label(f, reason, strcspn(reason, ":"));
}

void
metrics_observe(struct metrics_hist *h, double v)
{
	size_t i = 0;

	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

void
metrics_tally_event(struct metrics_tally *t, const char *device_class, bool derived)
{
	if (derived)
		t->derived[metrics_label(&metrics.derived, device_class, SIZE_MAX)]++;
	else
		t->stored[metrics_label(&metrics.stored, device_class, SIZE_MAX)]++;
}

void
metrics_tally_quarantine(struct metrics_tally *t, const char *reason)
{
	t->quarantined[metrics_reason(&metrics.quarantined, reason)]++;
}

void
metrics_tally_held(struct metrics_tally *t, const char *route)
{
	t->quarantined[metrics_reason(&metrics.quarantined, "rate_limited")]++;
	t->rate_limited[metrics_label(&metrics.rate_limited, route != NULL ? route : "none",
	    SIZE_MAX)]++;
}

void
metrics_tally_commit(const struct metrics_tally *t)
{
	for (size_t i = 0; i <= METRICS_LABELS; i++) {
		metrics.stored.counts[i] += t->stored[i];
		metrics.stored_all += t->stored[i];
		metrics.derived.counts[i] += t->derived[i];
		metrics.derived_all += t->derived[i];
		metrics.quarantined.counts[i] += t->quarantined[i];
		metrics.quarantined_all += t->quarantined[i];
		metrics.rate_limited.counts[i] += t->rate_limited[i];
	}
}

/* ---- the text format ----------------------------------------------- */

void
metrics_escape(char *out, size_t cap, const char *in)
{
	size_t o = 0;

	if (cap == 0)
		return;
	for (; in != NULL && *in != '\0'; in++) {
		const char *rep = NULL;
		char one[2] = { *in, '\0' };
		if (*in == '\\')
			rep = "\\\\";
		else if (*in == '"')
			rep = "\\\"";
		else if (*in == '\n')
			rep = "\\n";
		else
			rep = one;
		size_t n = strlen(rep);
		if (o + n >= cap)
			break;
		memcpy(out + o, rep, n);
		o += n;
	}
	out[o] = '\0';
}

void
metrics_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
write_number(FILE *f, double v)
{
	if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", f);
	else if (isnan(v))
		fputs("NaN", f);
	else if (v == (double)(int64_t)v && fabs(v) < 9e15)
		fprintf(f, "%" PRId64, (int64_t)v);
	else
		fprintf(f, "%.9g", v);
}

void
metrics_sample(FILE *f, const char *name, const char *labels, double v)
{
	if (labels != NULL && labels[0] != '\0')
		fprintf(f, "%s{%s} ", name, labels);
	else
		fprintf(f, "%s ", name);
	write_number(f, v);
	fputc('\n', f);
}

void
metrics_sample_u64(FILE *f, const char *name, const char *labels, uint64_t v)
{
	if (labels != NULL && labels[0] != '\0')
		fprintf(f, "%s{%s} %" PRIu64 "\n", name, labels, v);
	else
		fprintf(f, "%s %" PRIu64 "\n", name, v);
}

void
metrics_write_family(FILE *f, const char *name, const char *help, const char *label,
    const struct metrics_family *fam)
{
	char esc[METRICS_LABEL_MAX * 2 + 1], labels[METRICS_LABEL_MAX * 2 + 64];

	metrics_head(f, name, "counter", help);
	for (size_t i = 0; i < fam->n; i++) {
		metrics_escape(esc, sizeof(esc), fam->values[i]);
		snprintf(labels, sizeof(labels), "%s=\"%s\"", label, esc);
		metrics_sample_u64(f, name, labels, fam->counts[i]);
	}
	if (fam->counts[METRICS_OTHER] > 0) {
		snprintf(labels, sizeof(labels), "%s=\"other\"", label);
		metrics_sample_u64(f, name, labels, fam->counts[METRICS_OTHER]);
	}
}

void
metrics_write_hist(FILE *f, const char *name, const char *labels,
    const struct metrics_hist *h)
{
	char key[160], all[512];
	uint64_t cum = 0;
	const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";

	if (labels == NULL)
		labels = "";
	snprintf(key, sizeof(key), "%s_bucket", name);
	for (size_t i = 0; i <= h->nbounds; i++) {
		char le[32];
		cum += h->counts[i];
		if (i < h->nbounds)
			snprintf(le, sizeof(le), "%.9g", h->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		snprintf(all, sizeof(all), "%s%sle=\"%s\"", labels, sep, le);
		metrics_sample_u64(f, key, all, cum);
	}
	snprintf(key, sizeof(key), "%s_sum", name);
	metrics_sample(f, key, labels, h->sum);
	snprintf(key, sizeof(key), "%s_count", name);
	metrics_sample_u64(f, key, labels, h->count);
}
