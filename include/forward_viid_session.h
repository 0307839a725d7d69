/* forward_viid_session.c — a viid target's session with the platform
 * (GA/T 1400.4, upload mode): Register, then System/Time (our clock is
 * compared with the platform's), then Keepalive every keepalive_s, and
 * UnRegister when the daemon stops.
 *
 * Every request carries User-Identify (our viid_device_id) and, with auth
 * digest or basic, the credentials through libcurl on one easy handle
 * kept for the target (a Digest nonce is reused while the platform takes
 * it). A Register or Keepalive that fails (a transport error, an HTTP
 * status other than 200, a StatusCode other than 0), or a 401 to any
 * request of the target (viid_session_lost()), takes the session down:
 * uploads pause (their rows stay pending) and Register is tried again
 * after a random wait, from about a second growing to
 * register_retry_max_s (full jitter). */
#ifndef GRIDBRIDGE_FORWARD_VIID_SESSION_H
#define GRIDBRIDGE_FORWARD_VIID_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"

struct event_base;
struct viid_session;

/* The session went up (uploads may go). */
typedef void viid_session_up_fn(void *ctx);

/* `t` is the target's configuration (copied where kept). NULL when libcurl
 * or libevent cannot set it up. */
struct viid_session *viid_session_new(struct event_base *base, const struct forward_target *t,
    viid_session_up_fn *up, void *ctx);
/* Registers (now). */
void viid_session_start(struct viid_session *s);
bool viid_session_is_up(const struct viid_session *s);
/* How many times the session has come up: a request sent under an
 * earlier one carries that session's Digest nonce, and its 401 says
 * nothing about the session now. */
uint64_t viid_session_epoch(const struct viid_session *s);
/* An upload was answered 401: the platform forgot us. */
void viid_session_lost(struct viid_session *s, const char *why);
/* Ends the session: the request in flight is dropped, no Keepalive
 * follows, and with `unregister_too` the platform is told (UnRegister,
 * waiting at most two seconds) when it was up. viid_session_start()
 * registers again. A shared session whose lease was lost is stopped
 * without UnRegister: the daemon that holds it now may have registered
 * the same id. */
void viid_session_stop(struct viid_session *s, bool unregister_too);
/* UnRegister when registered (waiting at most two seconds), then frees.
 * NULL is fine. */
void viid_session_free(struct viid_session *s);

#endif
