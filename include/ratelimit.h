/* ratelimit.c — per-device message rate limits.
 *
 * A broken sensor that sends thousands of messages a second must not
 * bury the other devices' events, least of all an alarm. Each device
 * (a route and the device its topic names; the whole topic when the
 * route's pattern has no {device}, or no route matched) has a token
 * bucket: `rate` messages a second, `burst` at once. A message over it is
 * held back: not decoded, stored or forwarded, but never dropped
 * silently. The messages a device has held back within an interval
 * (RL_INTERVAL_US, from the first of them) are one summary quarantine
 * row (reason rate_limited): the first message as its sample, and their
 * count. The pipeline (pipeline.c) writes that row with each batch that
 * held some back, so the count is stored with the checkpoint past them.
 *
 * The clock is the messages' receive time (the journal's), so a replay
 * after a restart decides as the first run did, bucket aside (the bucket
 * starts full). A receive time earlier than the bucket's last (the clock
 * stepped back) adds no tokens.
 *
 * Pure: no I/O, no event loop. At most `max_keys` devices are tracked;
 * when the table is full, the devices idle longest (bucket full, no
 * interval open) are forgotten, and a device that still finds no room
 * is not limited (ratelimit_untracked() counts those messages).
 */
#ifndef GRIDBRIDGE_RATELIMIT_H
#define GRIDBRIDGE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The messages a device holds back within this long are one summary row. */
#define RL_INTERVAL_US (60LL * 1000000)
/* A device's name is cut at this many bytes in its key and the log. */
#define RL_DEVICE_MAX 255

struct rl_entry {
	char *route;			/* "" when no route matched */
	char *device;			/* the {device} capture, or the topic */
	double tokens;
	int64_t last_us;		/* receive time the tokens are as of */
	/* The interval of held-back messages under way (first_seq 0: none):
	 * its summary row is keyed by its first message. */
	uint64_t first_seq;
	int64_t start_us;
	uint64_t held;			/* held back in it so far */
	/* The pipeline's: the batch (its serial) holding this interval's
	 * contribution to the summary row, and the row's index in it. */
	uint64_t batch;
	size_t row;
	/* private */
	uint64_t hash;
	struct rl_entry *next;		/* in its hash bucket */
};

enum rl_verdict {
	RL_PASS,	/* within the limit (or not tracked) */
	RL_HOLD,	/* over it: held back in the interval under way */
	RL_HOLD_NEW,	/* over it: held back, the first of a new interval */
};

struct ratelimit;

struct ratelimit *ratelimit_new(size_t max_keys);
void ratelimit_free(struct ratelimit *rl);

/* One message of `device` (`len` bytes) on `route` (NULL: none), journal
 * record `seq`, received at `now_us`, under `rate` messages a second
 * (0: no limit; then nothing is tracked) and `burst`. On a hold, `*e` is
 * the device's entry, its interval updated (a new interval closes the
 * one before: `*closed` gets the count that one held back, else 0). */
enum rl_verdict ratelimit_check(struct ratelimit *rl, const char *route, const char *device,
    size_t len, int rate, int burst, uint64_t seq, int64_t now_us, struct rl_entry **e,
    uint64_t *closed);

/* Closes the intervals that began RL_INTERVAL_US or more before `now_us`,
 * calling `fn` with each (its `held` the interval's count) before it is
 * reset. */
void ratelimit_expire(struct ratelimit *rl, int64_t now_us,
    void (*fn)(void *ctx, const struct rl_entry *e), void *ctx);

/* Forgets every interval's batch: the next message held back starts a new
 * interval (after a batch was refused and its records were quarantined
 * one by one). */
void ratelimit_reset_intervals(struct ratelimit *rl);

size_t ratelimit_devices(const struct ratelimit *rl);
/* Messages that were not limited because the table was full. */
uint64_t ratelimit_untracked(const struct ratelimit *rl);

#endif
