/* backoff.c — capped exponential backoff with full jitter.
 *
 * The n-th retry waits a uniformly random time in [0, min(cap, base * 2^n)]
 * (full jitter), so many clients that failed together do not retry
 * together. Pure: the caller supplies the random number.
 */
#ifndef GRIDBRIDGE_BACKOFF_H
#define GRIDBRIDGE_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint32_t base_ms;
	uint32_t cap_ms;
	uint32_t attempt;	/* failures since the last success */
};

void backoff_init(struct backoff *b, uint32_t base_ms, uint32_t cap_ms);
/* Delay before the next attempt, given a random 32-bit value; counts the
 * attempt. */
uint32_t backoff_next(struct backoff *b, uint32_t rnd);
/* The ceiling backoff_next() draws under for the next attempt. */
uint32_t backoff_ceiling(const struct backoff *b);
void backoff_reset(struct backoff *b);

/* A random value for backoff_next() from the operating system. */
uint32_t backoff_random(void);

#endif
