/* forward_viid_lease.c — the lease on a GA/T 1400 session that several
 * daemons share (a viid target with session = shared).
 *
 * The daemons sharing a database register one viid_device_id with the
 * platform in turn: the one holding the target's row of forward_leases
 * registers, keeps alive and sends; the others store events into the
 * outbox and wait. The holder renews every third of the lease; the others
 * ask as often, and take the lease once it has run out (a daemon that
 * died) or was given up (a daemon that stopped, after its UnRegister).
 *
 * The holder trusts its lease for less than it lasts in the database
 * (store_lease's rule: a fifth of it for the clocks' rates, a second for
 * the timer), counted from when it asked; when a renewal is not answered
 * in that time (the database is away) it stops its session before any
 * other daemon may take the lease. Its claims are fenced in the database
 * besides (outbox.h: fenced), so rows are never claimed by a daemon whose
 * lease has run out. */
#ifndef GRIDBRIDGE_FORWARD_VIID_LEASE_H
#define GRIDBRIDGE_FORWARD_VIID_LEASE_H

#include <stdbool.h>

#include "outbox.h"

struct event_base;
struct viid_lease;

/* The lease was taken (`held`) or is no longer held. */
typedef void viid_lease_fn(void *ctx, bool held);

/* `ob` outlives it. NULL when libevent cannot set it up. */
struct viid_lease *viid_lease_new(struct event_base *base, const struct outbox *ob,
    const char *target, int lease_s, viid_lease_fn *fn, void *ctx);
/* Asks for it now, then as the lease says. */
void viid_lease_start(struct viid_lease *l);
bool viid_lease_held(const struct viid_lease *l);
/* Stops asking and, when held, gives the lease up (the callback is not
 * called): another daemon takes it at its next ask. */
void viid_lease_release(struct viid_lease *l);
/* A release sent and not answered yet. */
bool viid_lease_releasing(const struct viid_lease *l);
void viid_lease_free(struct viid_lease *l);

#endif
