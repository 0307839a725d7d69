/* Unit tests for repeats.c: reports without a device time or serial, the
 * same event when repeated within the window. */
#include <stdint.h>
#include <string.h>

#include "repeats.h"
#include "t.h"

#define S 1000000LL
#define T0 1767225600000000LL	/* 2026-01-01T00:00:00Z */
#define WINDOW (600 * S)

/* A report on key `k` with payload digest `p`, its own id `id`, received
 * at `t`. */
static struct repeat_state
report(uint8_t k, uint8_t p, uint8_t id, int64_t t)
{
	struct repeat_state st;

	memset(&st, 0, sizeof(st));
	memset(st.key, k, sizeof(st.key));
	memset(st.digest, p, sizeof(st.digest));
	memset(st.id, id, sizeof(st.id));
	st.event_time_us = t;
	st.last_us = t;
	return st;
}

static void
test_window(void)
{
	struct repeats *r = repeats_new(16);
	struct repeat_state st;

	st = report(1, 1, 1, T0);
	T_CHECK(!repeats_decide(r, 1, false, WINDOW, &st));
	/* Identical within the window: the first report's id and time. */
	st = report(1, 1, 2, T0 + 60 * S);
	T_CHECK(repeats_decide(r, 2, false, WINDOW, &st));
	T_INTEQ(st.id[0], 1);
	T_INTEQ(st.event_time_us, T0);
	/* The window slides from the last report. */
	st = report(1, 1, 3, T0 + 60 * S + WINDOW);
	T_CHECK(repeats_decide(r, 3, false, WINDOW, &st));
	T_INTEQ(st.id[0], 1);
	/* After a longer silence: a new event. */
	st = report(1, 1, 4, T0 + 60 * S + 2 * WINDOW + 1);
	T_CHECK(!repeats_decide(r, 4, false, WINDOW, &st));
	T_INTEQ(st.id[0], 4);
	/* Another payload: a new event. */
	st = report(1, 2, 5, T0 + 60 * S + 2 * WINDOW + 2);
	T_CHECK(!repeats_decide(r, 5, false, WINDOW, &st));
	/* The same record decided again: the same answer. */
	st = report(1, 1, 2, T0 + 60 * S);
	T_CHECK(repeats_decide(r, 2, false, WINDOW, &st));
	T_INTEQ(st.id[0], 1);
	repeats_free(r);
}

/* The system clock went back: a report received at a time before the last
 * one's came at an unknown time after it, and is a new event (not folded
 * into one an hour old). A retained copy stays a repeat. */
static void
test_clock_back(void)
{
	struct repeats *r = repeats_new(16);
	struct repeat_state st;
	const int64_t t = T0 + 3600 * S;

	st = report(1, 1, 1, t);
	T_CHECK(!repeats_decide(r, 1, false, WINDOW, &st));
	st = report(1, 1, 2, t - 3600 * S + 5 * S);
	T_CHECK(!repeats_decide(r, 2, false, WINDOW, &st));
	T_INTEQ(st.id[0], 2);
	T_INTEQ(st.event_time_us, t - 3600 * S + 5 * S);
	/* Within the window of that one (the new scale): its repeat. */
	st = report(1, 1, 3, t - 3600 * S + 65 * S);
	T_CHECK(repeats_decide(r, 3, false, WINDOW, &st));
	T_INTEQ(st.id[0], 2);
	/* Even one microsecond back. */
	st = report(1, 1, 4, t - 3600 * S + 65 * S - 1);
	T_CHECK(!repeats_decide(r, 4, false, WINDOW, &st));
	T_INTEQ(st.id[0], 4);
	/* The same time to the microsecond: a repeat. */
	st = report(1, 1, 5, t - 3600 * S + 65 * S - 1);
	T_CHECK(repeats_decide(r, 5, false, WINDOW, &st));
	T_INTEQ(st.id[0], 4);
	/* A retained copy, whenever received: a repeat. */
	st = report(1, 1, 6, T0);
	T_CHECK(repeats_decide(r, 6, true, WINDOW, &st));
	T_INTEQ(st.id[0], 4);
	repeats_free(r);
}

int
main(void)
{
	test_window();
	test_clock_back();
	return t_done();
}
