/* metrics.h — the process's counters and histograms, and the Prometheus
 * text format they are written in.
 *
 * One process-wide `metrics` (the daemon is one thread): each stage adds
 * to its own figures where the thing happens; the admin listener
 * (admin.c) writes them out with what it reads from the stages at scrape
 * time (gauges). Names follow Prometheus' conventions: the gridbridge_
 * prefix, _total for counters, seconds and bytes as base units.
 *
 * A labelled counter (struct metrics_family) holds at most METRICS_LABELS
 * label values; more are counted under "other", so a stream of odd values
 * cannot grow it. A value is cut at METRICS_LABEL_MAX bytes.
 *
 * The messages reconcile: since the start,
 *   received + recovered = stored + quarantined + journal lag
 * where recovered counts the records an earlier run left in the journal
 * unstored (known once the database has been reached) and the lag is the
 * records between the checkpoint and the journal's end.
 */
#ifndef GRIDBRIDGE_METRICS_H
#define GRIDBRIDGE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_LABELS 64
#define METRICS_LABEL_MAX 64
#define METRICS_OTHER METRICS_LABELS	/* the index of "other" */
#define METRICS_BUCKETS 16

struct metrics_family {
	size_t n;
	char values[METRICS_LABELS][METRICS_LABEL_MAX];
	uint64_t counts[METRICS_LABELS + 1];
};

/* The index of `value` in `f` (added with count 0 if new, METRICS_OTHER
 * when full). `len` bytes of `value`, or up to its NUL with SIZE_MAX. */
size_t metrics_label(struct metrics_family *f, const char *value, size_t len);
/* A reason's label: the part before its first ':' ("bad_value:x" ->
 * "bad_value"). */
size_t metrics_reason(struct metrics_family *f, const char *reason);

struct metrics_hist {
	const double *bounds;	/* upper bounds, ascending; +Inf implied */
	size_t nbounds;		/* at most METRICS_BUCKETS */
	uint64_t counts[METRICS_BUCKETS + 1];	/* per bucket, not cumulative */
	uint64_t count;
	double sum;
};
void metrics_observe(struct metrics_hist *h, double v);

/* What one store batch adds when it commits (store_batch.c counts its
 * rows into it as they are added). Indexes of the families below. */
struct metrics_tally {
	uint32_t stored[METRICS_LABELS + 1];	/* message events per class */
	uint32_t derived[METRICS_LABELS + 1];	/* derived events per class */
	uint32_t quarantined[METRICS_LABELS + 1];	/* per reason */
	uint32_t rate_limited[METRICS_LABELS + 1];	/* per route */
};
void metrics_tally_event(struct metrics_tally *t, const char *device_class, bool derived);
void metrics_tally_quarantine(struct metrics_tally *t, const char *reason);
/* A message a rate limit held back (quarantined, reason rate_limited):
 * `route` NULL when none matched ("none"). */
void metrics_tally_held(struct metrics_tally *t, const char *route);
void metrics_tally_commit(const struct metrics_tally *t);

struct metrics {
	struct metrics_family received;		/* messages per route ("none") */
	struct metrics_family stored;		/* message events per device class */
	struct metrics_family derived;		/* derived events per device class */
	struct metrics_family quarantined;	/* messages per reason */
	struct metrics_family rate_limited;	/* messages held back, per route */
	uint64_t recovered;			/* unstored records of an earlier run */
	uint64_t received_all;			/* sum of `received` */
	uint64_t stored_all, quarantined_all, derived_all;
	struct metrics_hist fdatasync_seconds;
	struct metrics_hist sync_messages;	/* messages one fdatasync made durable */
	struct metrics_hist batch_seconds;	/* store batch: sent to committed */
	struct metrics_hist batch_rows;
	uint64_t db_reconnects;			/* connections lost or refused */
	uint64_t db_answer_timeouts;		/* connections given up: no answer */
	uint64_t broker_reconnects;
	uint64_t broker_redeliveries;		/* already journaled, not again */
	uint64_t clock_steps;			/* the system clock stepped */
	int64_t started_us;			/* wall clock at start */
};
extern struct metrics metrics;

/* Resets `metrics` (bucket bounds set); the daemon calls it at start. */
void metrics_init(void);

/* ---- the text format ----------------------------------------------- */

/* `in` as a label value: \ " and newline escaped, cut to fit `cap`. */
void metrics_escape(char *out, size_t cap, const char *in);
/* # HELP and # TYPE lines. */
void metrics_head(FILE *f, const char *name, const char *type, const char *help);
/* One sample; `labels` the inside of {} (already escaped) or NULL. */
void metrics_sample(FILE *f, const char *name, const char *labels, double v);
void metrics_sample_u64(FILE *f, const char *name, const char *labels, uint64_t v);
/* A labelled counter, head included; `label` is the label's name. */
void metrics_write_family(FILE *f, const char *name, const char *help, const char *label,
    const struct metrics_family *fam);
/* A histogram's samples (_bucket, _sum, _count); `labels` NULL or as for
 * metrics_sample. The head is the caller's (once per name). */
void metrics_write_hist(FILE *f, const char *name, const char *labels,
    const struct metrics_hist *h);

#endif
