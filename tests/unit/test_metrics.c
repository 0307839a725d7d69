/* Unit tests for metrics.c (the Prometheus text format, bounded label
 * sets) and for gridbridgectl status's reading of it (ctl_metric). */
#include <stdlib.h>
#include <string.h>

#include "gridbridgectl_status.h"
#include "metrics.h"
#include "t.h"

static char *
written(void (*fn)(FILE *, void *), void *arg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	fn(f, arg);
	fclose(f);
	return text;
}

static void
write_received(FILE *f, void *arg)
{
	(void)arg;
	metrics_write_family(f, "gridbridge_messages_received_total", "Messages.", "route",
	    &metrics.received);
}

static void
write_hist(FILE *f, void *arg)
{
	metrics_head(f, "gridbridge_x_seconds", "histogram", "X.");
	metrics_write_hist(f, "gridbridge_x_seconds", "target=\"a\"", arg);
}

int
main(void)
{
	metrics_init();

	/* labels: interned, cut, bounded ("other" beyond the limit) */
	size_t a = metrics_label(&metrics.received, "access", SIZE_MAX);
	T_INTEQ(metrics_label(&metrics.received, "access", SIZE_MAX), a);
	T_INTEQ(metrics_label(&metrics.received, "accessX", 6), a);
	char longname[200];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	size_t l = metrics_label(&metrics.received, longname, SIZE_MAX);
	T_INTEQ(strlen(metrics.received.values[l]), METRICS_LABEL_MAX - 1);
	for (int i = 0; i < 100; i++) {
		char name[16];
		snprintf(name, sizeof(name), "r%d", i);
		metrics.received.counts[metrics_label(&metrics.received, name, SIZE_MAX)]++;
	}
	T_INTEQ(metrics.received.n, METRICS_LABELS);
	T_INTEQ(metrics.received.counts[METRICS_OTHER], 100 - (METRICS_LABELS - 2));

	/* reasons: the part before the first colon */
	struct metrics_tally t = { 0 };
	metrics_tally_quarantine(&t, "bad_value:battery");
	metrics_tally_quarantine(&t, "bad_value:contact");
	metrics_tally_quarantine(&t, "no_route");
	metrics_tally_event(&t, "camera", false);
	metrics_tally_event(&t, "camera", true);
	metrics_tally_commit(&t);
	T_INTEQ(metrics.quarantined_all, 3);
	T_INTEQ(metrics.stored_all, 1);
	T_INTEQ(metrics.derived_all, 1);
	T_INTEQ(metrics.quarantined.counts[metrics_reason(&metrics.quarantined, "bad_value")], 2);

	/* escaping: backslash, quote, newline */
	char esc[64];
	metrics_escape(esc, sizeof(esc), "a\"b\\c\nd");
	T_STREQ(esc, "a\\\"b\\\\c\\nd");
	metrics_escape(esc, 4, "abcdef");
	T_STREQ(esc, "abc");

	/* a family: HELP, TYPE, one sample per value, then "other" */
	char *text = written(write_received, NULL);
	T_CHECK(strncmp(text, "# HELP gridbridge_messages_received_total Messages.\n"
	    "# TYPE gridbridge_messages_received_total counter\n", 99) == 0);
	T_CHECK(strstr(text, "gridbridge_messages_received_total{route=\"r0\"} 1\n") != NULL);
	T_CHECK(strstr(text, "gridbridge_messages_received_total{route=\"other\"} 38\n") != NULL);
	T_CHECK(ctl_metric(text, "gridbridge_messages_received_total", NULL) == 100);
	T_CHECK(ctl_metric(text, "gridbridge_messages_received_total", "route=\"r5\"") == 1);
	T_CHECK(ctl_metric(text, "gridbridge_messages_received_total", "route=\"r\"") == -1);
	T_CHECK(ctl_metric(text, "gridbridge_messages_received", NULL) == -1);
	free(text);

	/* a histogram: cumulative buckets, +Inf, sum and count */
	static const double bounds[] = { 0.1, 1 };
	struct metrics_hist h = { .bounds = bounds, .nbounds = 2 };
	metrics_observe(&h, 0.05);
	metrics_observe(&h, 0.1);
	metrics_observe(&h, 0.5);
	metrics_observe(&h, 7);
	text = written(write_hist, &h);
	T_CHECK(strstr(text, "gridbridge_x_seconds_bucket{target=\"a\",le=\"0.1\"} 2\n") != NULL);
	T_CHECK(strstr(text, "gridbridge_x_seconds_bucket{target=\"a\",le=\"1\"} 3\n") != NULL);
	T_CHECK(strstr(text, "gridbridge_x_seconds_bucket{target=\"a\",le=\"+Inf\"} 4\n") != NULL);
	T_CHECK(strstr(text, "gridbridge_x_seconds_sum{target=\"a\"} 7.65\n") != NULL);
	T_CHECK(strstr(text, "gridbridge_x_seconds_count{target=\"a\"} 4\n") != NULL);
	T_CHECK(ctl_metric(text, "gridbridge_x_seconds_count", "target=\"a\"") == 4);
	free(text);

	/* hostile text does not trip the reader */
	T_CHECK(ctl_metric("gridbridge_a{x=\"1\" 5\ngridbridge_a 2\n#gridbridge_a 9\n"
	    "gridbridge_a {} \ngridbridge_a 1e400\n", "gridbridge_a", NULL) > 1e300);
	T_CHECK(ctl_metric("", "gridbridge_a", NULL) == -1);
	return t_done();
}
