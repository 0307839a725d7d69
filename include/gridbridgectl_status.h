/* gridbridgectl_status.c — `gridbridgectl status`: the daemon's /readyz
 * and /metrics (admin.h) as a summary for people.
 */
#ifndef GRIDBRIDGE_GRIDBRIDGECTL_STATUS_H
#define GRIDBRIDGE_GRIDBRIDGECTL_STATUS_H

#include <stdio.h>

/* Exit codes: the daemon ready, degraded (not ready: /readyz 503), or
 * not reachable (no listener, no answer, an answer that is not its). */
enum { CTL_STATUS_OK = 0, CTL_STATUS_DEGRADED = 1, CTL_STATUS_UNREACHABLE = 2 };

/* Asks the admin listener at `listen` ("address:port", IPv6 in []) and
 * prints the summary to `out`, errors to stderr in one line. With a
 * backlog and `interval_ms` > 0, /metrics is read again that much later
 * for the catch-up rate. */
int ctl_status(const char *listen, int interval_ms, FILE *out);

/* The sum of the samples of metric `name` in the text format `text`
 * whose labels contain `label` (`key="value"`, or NULL for all); -1 when
 * there is none. */
double ctl_metric(const char *text, const char *name, const char *label);

#endif
