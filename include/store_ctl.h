/* store_ctl.c — the database side of `gridbridgectl outbox`. */
#ifndef GRIDBRIDGE_STORE_CTL_H
#define GRIDBRIDGE_STORE_CTL_H

#include <stdio.h>

#include "store.h"

/* `cmd` stat, retry (`arg`: a target or NULL for all) or show (`arg`: an
 * event id), on a blocking connection of its own. Prints to `out`, errors
 * to `err`; returns the exit status. */
int store_ctl_outbox(const struct store_options *o, const char *cmd, const char *arg,
    FILE *out, FILE *err);

#endif
