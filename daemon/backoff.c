/* backoff.c — capped exponential backoff with full jitter. */
#include "backoff.h"

#include <sys/random.h>
#include <time.h>

void
backoff_init(struct backoff *b, uint32_t base_ms, uint32_t cap_ms)
{
	b->base_ms = base_ms > 0 ? base_ms : 1;
	b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
	b->attempt = 0;
}

uint32_t
backoff_ceiling(const struct backoff *b)
{
	uint64_t c = b->base_ms;

	for (uint32_t i = 0; i < b->attempt && c < b->cap_ms; i++)
		c *= 2;
	return c < b->cap_ms ? (uint32_t)c : b->cap_ms;
}

uint32_t
backoff_next(struct backoff *b, uint32_t rnd)
{
	uint32_t ceiling = backoff_ceiling(b);

	if (b->attempt < UINT32_MAX)
		b->attempt++;
	return (uint32_t)((uint64_t)rnd % ((uint64_t)ceiling + 1));
}

void
backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}

uint32_t
backoff_random(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)ts.tv_nsec * 2654435761u;
}
