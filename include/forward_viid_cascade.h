/* forward_viid_cascade.c — a GA/T 1400 cascade target's side that the
 * platform calls (mode = cascade): the listener where it subscribes
 * (POST/PUT/DELETE /VIID/Subscribes, PUT /VIID/Subscribes/{id}), the
 * subscriptions it made (kept in PostgreSQL through the outbox, loaded at
 * start), and the device catalogue pushed once to each new subscription.
 *
 * The listener is libevent's HTTP server on the daemon's loop, with TLS
 * (OpenSSL, optionally asking for a client certificate) unless the target
 * allows plain HTTP, HTTP Digest (forward_viid_digest.h) on every request,
 * and the platform's User-Identify when platform_id is set. A subscription
 * is answered only once PostgreSQL has it, so one the platform was told
 * about survives a restart. The events a subscription asks for are
 * written as outbox rows of their own ("<target>/<SubscribeID>", see
 * store_batch_add_outbox) and sent by forward.c, which learns of each
 * subscription through the hooks below.
 */
#ifndef GRIDBRIDGE_FORWARD_VIID_CASCADE_H
#define GRIDBRIDGE_FORWARD_VIID_CASCADE_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "forward_viid_subscribe.h"
#include "outbox.h"

struct event_base;
struct viid_cascade;

/* What forward.c is told. */
struct viid_cascade_hooks {
	/* `s` is active (made now, changed, or loaded at start): its
	 * notifications go to s->receive_addr from now on. Called again for
	 * the same id when the platform changes it. */
	void (*sub_up)(void *ctx, const struct viid_subscription *s);
	/* The subscription ended (cancelled, deleted): nothing more is sent
	 * to it (its waiting rows failed already). */
	void (*sub_down)(void *ctx, const char *subscribe_id);
	void *ctx;
};

/* The cascade side of target `t` (copied where kept). NULL after logging
 * when the listener cannot be set up (address in use, certificate or key
 * unreadable). */
struct viid_cascade *viid_cascade_new(struct event_base *base, const struct forward_target *t,
    const struct outbox *ob, const struct viid_cascade_hooks *hooks);
/* Loads the subscriptions (each then given to sub_up) and pushes the
 * catalogues still owed. */
void viid_cascade_start(struct viid_cascade *c);
/* The 12-digit organisation code of the target's NotificationIDs. */
const char *viid_cascade_org(const struct viid_cascade *c);
/* Closes the listener; pushes in flight are abandoned (a catalogue not
 * confirmed is pushed again after a restart). NULL is fine. */
void viid_cascade_free(struct viid_cascade *c);

#endif
