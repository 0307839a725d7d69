/* forward_viid_picture.c — fetching the pictures of events from the
 * devices (a viid target with picture = data): the police network cannot
 * reach URLs on the community's network, so the bytes are sent instead.
 *
 * Each fetch is a GET through libcurl's multi interface on the daemon's
 * libevent loop (its own multi handle, beside the forwarder's), bounded in
 * size, time and number at once. A job is the pictures of one batch: its
 * callback runs once, when every one of them ended (fetched, or why not).
 *
 *   200 with the bytes of an image      ok
 *     (JPEG, PNG, GIF or BMP)
 *   408, 429, 5xx, timeout, network,    retry: the device may answer later
 *     TLS, a body that is no image
 *   other 4xx (404: the device no       failed: asking again will not help
 *     longer has it), 3xx (redirects
 *     are not followed), larger than
 *     max_bytes, a URL that is not
 *     http(s) or longer than 256 bytes
 *
 * Another 2xx is read as 200 (its body decides). The choices are listed at
 * the top of forward_viid_picture.c.
 */
#ifndef GRIDBRIDGE_FORWARD_VIID_PICTURE_H
#define GRIDBRIDGE_FORWARD_VIID_PICTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct viid_fetcher;
struct viid_fetch_job;

#define VIID_FETCH_URL_MAX 256
#define VIID_FETCH_ERROR_MAX 160	/* a result's error text, NUL included */

struct viid_fetch_config {
	const char *target;		/* for the log */
	size_t max_bytes;		/* one picture; a larger one fails */
	long timeout_s;			/* one whole transfer; <= 0: 10 s */
	long connect_timeout_s;		/* <= 0: 5 s */
	size_t max_parallel;		/* transfers at once, over all jobs (1..64) */
	const char *ca_file;		/* https pictures: "" or NULL for the system's CAs */
	/* The devices' credentials (libcurl answers Digest or Basic, as the
	 * device asks); NULL or "" for none. */
	const char *username, *password;
};

enum viid_fetch_status {
	VIID_FETCH_OK,
	VIID_FETCH_RETRY,
	VIID_FETCH_FAILED,
};

struct viid_fetch_result {
	enum viid_fetch_status status;
	/* ok: the bytes, the fetcher's until done returns; done may keep them
	 * by setting data to NULL (they are then its own, to free()) */
	uint8_t *data;
	size_t len;
	long http_status;		/* 0: no answer */
	/* not ok: why, printable ASCII, for the log and the outbox; never the
	 * URL (it may carry credentials) */
	char error[VIID_FETCH_ERROR_MAX];
};

/* results[i] for urls[i] of the job. */
typedef void viid_fetch_done_fn(void *ctx, struct viid_fetch_result *results, size_t n);

/* `c` is copied. NULL when libcurl or libevent cannot set it up. */
struct viid_fetcher *viid_fetcher_new(struct event_base *base, const struct viid_fetch_config *c);
/* Jobs not done are cancelled (their callbacks never run). NULL is fine. */
void viid_fetcher_free(struct viid_fetcher *f);

/* Fetches urls[0..n-1] (copied; n >= 1). `done` runs from the loop, never
 * from within this call, once all ended; it may fetch, cancel other jobs
 * and free the fetcher. The job is valid until done returns or it is
 * cancelled. Never NULL. */
struct viid_fetch_job *viid_fetch(struct viid_fetcher *f, const char *const *urls, size_t n,
    viid_fetch_done_fn *done, void *ctx);
/* The job ends now; `done` will not run. Within its own `done` it does
 * nothing (the job ended already). */
void viid_fetch_cancel(struct viid_fetch_job *j);

#endif
