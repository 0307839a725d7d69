/* forward_outcome.c — the gridbridge profile's reading of a reply, as
 * gridbridge.conf(5) documents it, first rule that matches:
 *
 *   answered 2xx                           sent
 *   answered 408                           retry, maybe the content
 *   answered 429                           retry
 *   answered another 4xx                   refused (the reply kept as text)
 *   answered 5xx                           retry, maybe the content
 *   answered 1xx, 3xx (never followed)     retry
 *   a TLS error of libcurl                 retry, TLS
 *   an error whose text has "alert"        retry, TLS (a TLS alert)
 *   a connection lost (send, receive,      retry, TLS, with a hint: how a
 *     nothing) < 20 ms after our TLS         platform refuses our client
 *     handshake, no status                   certificate under TLS 1.3
 *   a connection lost while the lane's     retry, TLS
 *     failures began with TLS
 *   any other error, once the request      retry, maybe the content (a
 *     went out                               timeout, a connection lost)
 *   any other error before                 retry (refused connection,
 *                                            name not resolved)
 *
 * "Maybe the content" never holds with a Retry-After: that is about the
 * platform's state. */
#ifndef GRIDBRIDGE_FORWARD_OUTCOME_H
#define GRIDBRIDGE_FORWARD_OUTCOME_H

#include "forward_profile.h"

#define FORWARD_TLS_REFUSAL_US 20000	/* closed this soon after the handshake: refused */

void forward_classify(const struct forward_reply *r, struct forward_outcome *out);

#endif
