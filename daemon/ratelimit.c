/* ratelimit.c — per-device message rate limits; see ratelimit.h. */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct ratelimit {
	struct rl_entry **buckets;
	size_t nbuckets;	/* a power of two */
	size_t n, max;
	size_t open;		/* intervals under way */
	int64_t swept_us;	/* the last sweep (at most one a second) */
	uint64_t untracked;
};

struct ratelimit *
ratelimit_new(size_t max_keys)
{
	struct ratelimit *rl = util_calloc(1, sizeof(*rl));

	rl->max = max_keys > 0 ? max_keys : 1;
	rl->nbuckets = 1024;
	while (rl->nbuckets < rl->max && rl->nbuckets < (1u << 20))
		rl->nbuckets <<= 1;
	rl->buckets = util_calloc(rl->nbuckets, sizeof(*rl->buckets));
	return rl;
}

static void
entry_free(struct rl_entry *e)
{
	free(e->route);
	free(e->device);
	free(e);
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t b = 0; b < rl->nbuckets; b++) {
		struct rl_entry *e = rl->buckets[b];
		while (e != NULL) {
			struct rl_entry *next = e->next;
			entry_free(e);
			e = next;
		}
	}
	free(rl->buckets);
	free(rl);
}

/* The tokens of `e` as of `now_us`, at `rate` a second up to `burst`. */
static void
refill(struct rl_entry *e, int rate, int burst, int64_t now_us)
{
	if (now_us > e->last_us) {
		e->tokens += (double)(now_us - e->last_us) * rate / 1e6;
		if (e->tokens > burst)
			e->tokens = burst;
	}
	e->last_us = now_us;
}

/* Forgets the devices that are idle (bucket full by `now_us`, no
 * interval open): room for new ones. */
static void
sweep(struct ratelimit *rl, int rate, int burst, int64_t now_us)
{
	for (size_t b = 0; b < rl->nbuckets; b++) {
		struct rl_entry **at = &rl->buckets[b];
		while (*at != NULL) {
			struct rl_entry *e = *at;
			double full = e->tokens + (double)(now_us - e->last_us) * rate / 1e6;
			if (e->first_seq == 0 && full >= burst) {
				*at = e->next;
				entry_free(e);
				rl->n--;
			} else {
				at = &e->next;
			}
		}
	}
}

enum rl_verdict
ratelimit_check(struct ratelimit *rl, const char *route, const char *device, size_t len,
    int rate, int burst, uint64_t seq, int64_t now_us, struct rl_entry **out, uint64_t *closed)
{
	*out = NULL;
	*closed = 0;
	if (rate <= 0)
		return RL_PASS;
	if (burst < 1)
		burst = 1;
	if (route == NULL)
		route = "";
	if (len > RL_DEVICE_MAX)
		len = RL_DEVICE_MAX;
	uint64_t h = util_fnv1a64(UTIL_FNV1A64_INIT, route, strlen(route) + 1);
	h = util_fnv1a64(h, device, len);
	struct rl_entry **at = &rl->buckets[h & (rl->nbuckets - 1)];
	struct rl_entry *e = *at;
	while (e != NULL && (e->hash != h || strcmp(e->route, route) != 0 ||
	    strlen(e->device) != len || memcmp(e->device, device, len) != 0))
		e = e->next;
	if (e == NULL) {
		if (rl->n >= rl->max && (now_us - rl->swept_us >= 1000000 || now_us < rl->swept_us)) {
			sweep(rl, rate, burst, now_us);
			rl->swept_us = now_us;
		}
		if (rl->n >= rl->max) {
			rl->untracked++;
			return RL_PASS;
		}
		e = util_calloc(1, sizeof(*e));
		e->route = util_strdup(route);
		e->device = util_strndup(device, len);
		e->hash = h;
		e->tokens = burst;
		e->last_us = now_us;
		e->next = *at;
		*at = e;
		rl->n++;
	}
	refill(e, rate, burst, now_us);
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
		return RL_PASS;
	}
	*out = e;
	if (e->first_seq != 0 && now_us >= e->start_us && now_us - e->start_us < RL_INTERVAL_US) {
		e->held++;
		return RL_HOLD;
	}
	*closed = e->first_seq != 0 ? e->held : 0;
	if (e->first_seq == 0)
		rl->open++;
	e->first_seq = seq;
	e->start_us = now_us;
	e->held = 1;
	e->batch = 0;
	e->row = 0;
	return RL_HOLD_NEW;
}

void
ratelimit_expire(struct ratelimit *rl, int64_t now_us,
    void (*fn)(void *ctx, const struct rl_entry *e), void *ctx)
{
	for (size_t b = 0; b < rl->nbuckets && rl->open > 0; b++) {
		for (struct rl_entry *e = rl->buckets[b]; e != NULL; e = e->next) {
			if (e->first_seq == 0)
				continue;
			/* A start in the future: the clock stepped back; closed too. */
			if (now_us - e->start_us < RL_INTERVAL_US && now_us >= e->start_us)
				continue;
			if (fn != NULL)
				fn(ctx, e);
			rl->open--;
			e->first_seq = 0;
			e->held = 0;
			e->batch = 0;
		}
	}
}

void
ratelimit_reset_intervals(struct ratelimit *rl)
{
	for (size_t b = 0; b < rl->nbuckets && rl->open > 0; b++)
		for (struct rl_entry *e = rl->buckets[b]; e != NULL; e = e->next) {
			if (e->first_seq != 0)
				rl->open--;
			e->first_seq = 0;
			e->held = 0;
			e->batch = 0;
		}
}

size_t
ratelimit_devices(const struct ratelimit *rl)
{
	return rl->n;
}

uint64_t
ratelimit_untracked(const struct ratelimit *rl)
{
	return rl->untracked;
}
