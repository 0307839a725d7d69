/* forward_curl.c — libcurl's multi interface on a libevent loop.
 *
 * libcurl tells which sockets to watch and when its timeout is (its
 * callbacks only change events); the events call
 * curl_multi_socket_action(), and every transfer that ended is handed to
 * `done`, already out of the multi handle. */
#ifndef GRIDBRIDGE_FORWARD_CURL_H
#define GRIDBRIDGE_FORWARD_CURL_H

#include <curl/curl.h>

struct event_base;
struct forward_curl;

/* A transfer ended: `priv` is its CURLOPT_PRIVATE, `code` libcurl's
 * result; CURLINFO_* of `easy` still tell about it. `done` may add and
 * remove transfers. */
typedef void forward_curl_done_fn(void *ctx, CURL *easy, void *priv, CURLcode code);

/* NULL when libcurl or libevent cannot set it up. */
struct forward_curl *forward_curl_new(struct event_base *base, forward_curl_done_fn *done,
    void *ctx);
/* Starts a transfer: curl_multi_add_handle(). */
CURLMcode forward_curl_add(struct forward_curl *c, CURL *easy);
/* Abandons a transfer that has not ended. */
void forward_curl_remove(struct forward_curl *c, CURL *easy);
/* Transfers still added are abandoned (their easy handles stay the
 * caller's). NULL is fine. */
void forward_curl_free(struct forward_curl *c);

#endif
