/* store_ctl.c — the database side of `gridbridgectl outbox`;
 * store_ctl_derived.c — of `gridbridgectl devices` and `reports`. */
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

#endif
