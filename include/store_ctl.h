/* store_ctl.c — the database side of `gridbridgectl outbox`;
 * store_ctl_derived.c — of `gridbridgectl devices` and `reports`;
 * store_ctl_tail.c — of `gridbridgectl tail`. */
#ifndef GRIDBRIDGE_STORE_CTL_H
#define GRIDBRIDGE_STORE_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store.h"

/* `cmd` stat, retry (`arg`: a target or NULL for all) or show (`arg`: an
 * event id), on a blocking connection of its own. Prints to `out`, errors
 * to `err`; returns the exit status. */
int store_ctl_outbox(const struct store_options *o, const char *cmd, const char *arg,
    FILE *out, FILE *err);

/* ---- store_ctl_derived.c: devices and resident reports ---- */

/* A time given on the command line: none, an absolute time, or a duration
 * before the database's now() (the clock the daemon's rows were written
 * by, and the same for every query of one command). */
enum store_ctl_when_kind {
	STORE_CTL_WHEN_NONE,
	STORE_CTL_WHEN_AT,		/* at_us */
	STORE_CTL_WHEN_AGO,		/* ago_s */
};

struct store_ctl_when {
	enum store_ctl_when_kind kind;
	int64_t at_us;			/* UTC µs since the Unix epoch */
	int64_t ago_s;			/* seconds, >= 0 */
};

/* What `gridbridgectl devices` shows. NULL strings: no filter. */
struct store_ctl_devices {
	const char *state;		/* online, offline or unknown */
	const char *device_class;	/* also selects the rates */
	const char *community;		/* also selects the rates */
	/* Only devices offline since at least then (state_since at or
	 * before it). */
	struct store_ctl_when offline_since;
	bool json;
};

/* What `gridbridgectl reports` counts: reports opened at or after
 * `since` (NONE: STORE_CTL_REPORTS_DAYS days before now) and before
 * `until` (NONE: no end), of one community or all. */
#define STORE_CTL_REPORTS_DAYS 30
struct store_ctl_reports {
	const char *community;
	struct store_ctl_when since;
	struct store_ctl_when until;	/* NONE or AT */
	bool json;
};

/* The devices, then the online rate per community and class; reports
 * per community and their total. Both read one snapshot (a read-only
 * repeatable-read transaction) on a blocking connection of their own,
 * print to `out` row by row (a row in memory at a time) and an error
 * to `err` in one line; they return the exit status, 0 or 1. The columns,
 * JSON fields and how the numbers are counted are in gridbridgectl(8). */
int store_ctl_devices(const struct store_options *o, const struct store_ctl_devices *q,
    FILE *out, FILE *err);
int store_ctl_reports(const struct store_options *o, const struct store_ctl_reports *q,
    FILE *out, FILE *err);

/* ---- store_ctl_tail.c: the events as they are stored ---- */

/* What `gridbridgectl tail` follows. NULL strings: no filter; names as the
 * events table has them (event_names.h). */
struct store_ctl_tail {
	const char *device_class, *device_id, *community, *severity, *event_type;
	/* Also the events received since then, first (NONE: only those
	 * stored from the start on). */
	struct store_ctl_when since;
	/* Readable (or closed): stop and return 0. -1: none. */
	int stop_fd;
};

/* Called with each event: its id as text and its packed
 * gridbridge.v1.Event (events.record). Returns 0, or -1 to stop after
 * saying why in one line. */
typedef int (*store_ctl_event_fn)(void *ctx, const char *id, const uint8_t *record,
    size_t len);

/* Listens on STORE_NOTIFY_CHANNEL (store.h) on a blocking connection of
 * its own and gives `fn` every event stored from then on that the filters
 * let through, once each: a transaction's events as it commits, in commit
 * order, and within one by receive time and id. With `since` those
 * received since then come first. Sends no query while nothing is stored.
 * Returns the exit status: 0 when `stop_fd` became readable; 1 after one
 * line on `err` when the database went away, a query failed or `fn`
 * failed. How the rows are found: store_ctl_tail.c. */
int store_ctl_tail(const struct store_options *o, const struct store_ctl_tail *q,
    store_ctl_event_fn fn, void *ctx, FILE *err);

/* A notification's payload (store.h, STORE_NOTIFY_CHANNEL). */
struct store_ctl_note {
	uint64_t txid;
	int64_t recv_first, recv_last, time_first, time_last;	/* UTC µs */
};

/* Five decimal numbers separated by one space, the firsts not after the
 * lasts: 0, or -1. */
int store_ctl_note_parse(const char *payload, struct store_ctl_note *n);

/* A snapshot, txid_current_snapshot()'s "xmin:xmax:xip,...". */
struct store_ctl_snapshot {
	uint64_t xmin, xmax;
	uint64_t *xip;		/* running when it was taken */
	size_t nxip;
};

/* 0, or -1 (nothing to clear). */
int store_ctl_snapshot_parse(const char *text, struct store_ctl_snapshot *s);
/* Whether transaction `txid` had committed (or ended) when the snapshot
 * was taken, as PostgreSQL sees it: before xmin, or before xmax and not
 * running. */
bool store_ctl_snapshot_visible(const struct store_ctl_snapshot *s, uint64_t txid);
void store_ctl_snapshot_clear(struct store_ctl_snapshot *s);

#endif
