/* test_ratelimit.c — per-device token buckets and their intervals. */
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "t.h"

#define S 1000000LL

static enum rl_verdict
check(struct ratelimit *rl, const char *route, const char *dev, int rate, int burst,
    uint64_t seq, int64_t now, struct rl_entry **e, uint64_t *closed)
{
	return ratelimit_check(rl, route, dev, strlen(dev), rate, burst, seq, now, e, closed);
}

/* A burst passes, then the rate; the rest is held back in one interval. */
static void
test_bucket(void)
{
	struct ratelimit *rl = ratelimit_new(16);
	struct rl_entry *e;
	uint64_t closed, seq = 0;
	int pass = 0, held = 0, news = 0;

	/* 10 a second, burst 5: 1,000 messages within one second. */
	for (int i = 0; i < 1000; i++) {
		enum rl_verdict v = check(rl, "z2m", "broken", 10, 5, ++seq, 100 * S + i * 1000,
		    &e, &closed);
		pass += v == RL_PASS;
		held += v != RL_PASS;
		news += v == RL_HOLD_NEW;
	}
	T_INTEQ(pass, 5 + 9);		/* the burst, then 10/s over 0.999 s */
	T_INTEQ(held, 1000 - 14);
	T_INTEQ(news, 1);		/* one interval: one summary row */
	T_CHECK(e != NULL && e->first_seq == 6 && e->held == (uint64_t)held);
	T_STREQ(e->route, "z2m");
	T_STREQ(e->device, "broken");

	/* Another device on the same route is not held back. */
	T_INTEQ(check(rl, "z2m", "fine", 10, 5, ++seq, 100 * S + 999000, &e, &closed), RL_PASS);
	/* Nor the same name on another route. */
	T_INTEQ(check(rl, "shelly", "broken", 10, 5, ++seq, 100 * S + 999000, &e, &closed),
	    RL_PASS);
	/* No limit: nothing is tracked. */
	T_INTEQ(check(rl, "z2m", "broken", 0, 5, ++seq, 100 * S + 999000, &e, &closed), RL_PASS);
	T_INTEQ(ratelimit_devices(rl), 3);

	/* A second later the bucket has 10 again. */
	int later = 0;
	for (int i = 0; i < 20; i++)
		later += check(rl, "z2m", "broken", 10, 5, ++seq, 102 * S, &e, &closed) == RL_PASS;
	T_INTEQ(later, 5);		/* capped at the burst */
	ratelimit_free(rl);
}

static void
count(void *ctx, const struct rl_entry *e)
{
	*(int *)ctx += (int)e->held;
}

/* An interval lasts RL_INTERVAL_US from its first message; the next hold
 * after that starts another and tells the count of the one before. */
static void
test_intervals(void)
{
	struct ratelimit *rl = ratelimit_new(16);
	struct rl_entry *e;
	uint64_t closed;
	int expired = 0;

	T_INTEQ(check(rl, "r", "d", 1, 1, 1, 0, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", "d", 1, 1, 2, 1000, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(closed, 0);
	T_INTEQ(check(rl, "r", "d", 1, 1, 3, 2000, &e, &closed), RL_HOLD);
	T_INTEQ(e->held, 2);
	/* 61 s later: the bucket has a token again. */
	T_INTEQ(check(rl, "r", "d", 1, 1, 4, 61 * S, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", "d", 1, 1, 5, 61 * S + 1, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(closed, 2);
	T_INTEQ(e->first_seq, 5);
	T_INTEQ(e->held, 1);

	/* The tick closes an interval that is over, telling its count. */
	ratelimit_expire(rl, 61 * S + 2, count, &expired);
	T_INTEQ(e->first_seq, 5);		/* not yet over */
	T_INTEQ(expired, 0);
	ratelimit_expire(rl, 122 * S, count, &expired);
	T_INTEQ(e->first_seq, 0);
	T_INTEQ(expired, 1);
	/* Another hold opens a new one. */
	T_INTEQ(check(rl, "r", "d", 1, 1, 6, 122 * S, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", "d", 1, 1, 7, 122 * S, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(closed, 0);

	/* The clock stepped back: no tokens come from it, and the interval
	 * (its start now in the future) is closed by the next hold. */
	T_INTEQ(check(rl, "r", "d", 1, 1, 8, 60 * S, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(closed, 1);
	T_INTEQ(check(rl, "r", "d", 1, 1, 9, 60 * S + 500000, &e, &closed), RL_HOLD);

	ratelimit_reset_intervals(rl);
	T_INTEQ(e->first_seq, 0);
	ratelimit_free(rl);
}

/* A full table forgets idle devices; with none idle, new ones pass. */
static void
test_bounded(void)
{
	struct ratelimit *rl = ratelimit_new(2);
	struct rl_entry *e;
	uint64_t closed;
	char name[16];

	T_INTEQ(check(rl, "r", "a", 1, 1, 1, 0, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", "a", 1, 1, 2, 0, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(check(rl, "r", "b", 1, 1, 3, 0, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", "b", 1, 1, 4, 0, &e, &closed), RL_HOLD_NEW);
	/* Full, both holding: a third device is not limited, and counted. */
	for (int i = 0; i < 5; i++)
		T_INTEQ(check(rl, "r", "c", 1, 1, 5 + i, 0, &e, &closed), RL_PASS);
	T_INTEQ(ratelimit_untracked(rl), 5);
	T_INTEQ(ratelimit_devices(rl), 2);
	/* Once their intervals are over and their buckets full, they go. */
	ratelimit_expire(rl, 100 * S, NULL, NULL);
	T_INTEQ(check(rl, "r", "c", 1, 1, 20, 100 * S, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", "c", 1, 1, 21, 100 * S, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(ratelimit_devices(rl), 1);
	/* Long names are cut, not refused. */
	char longname[600];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	T_INTEQ(check(rl, "r", longname, 1, 1, 30, 200 * S, &e, &closed), RL_PASS);
	T_INTEQ(check(rl, "r", longname, 1, 1, 31, 200 * S, &e, &closed), RL_HOLD_NEW);
	T_INTEQ(strlen(e->device), RL_DEVICE_MAX);
	snprintf(name, sizeof(name), "%s", e->route);
	T_STREQ(name, "r");
	ratelimit_free(rl);
}

int
main(void)
{
	test_bucket();
	test_intervals();
	test_bounded();
	return t_done();
}
