/* Unit tests for backoff.c: the delays an operator would see in the logs. */
#include "backoff.h"
#include "t.h"

int
main(void)
{
	struct backoff b;

	backoff_init(&b, 500, 30000);
	/* Ceilings double from the base and stop at the cap. */
	T_INTEQ(backoff_ceiling(&b), 500);
	T_INTEQ(backoff_next(&b, 0xffffffffu), 0xffffffffu % 501);
	T_INTEQ(backoff_ceiling(&b), 1000);
	backoff_next(&b, 0);
	T_INTEQ(backoff_ceiling(&b), 2000);
	for (int i = 0; i < 100; i++)
		backoff_next(&b, 12345);
	T_INTEQ(backoff_ceiling(&b), 30000);

	/* Full jitter: every delay is within [0, ceiling]. */
	int within = 1;
	for (uint32_t r = 0; r < 100000; r += 7)
		if (backoff_next(&b, r * 2654435761u) > 30000)
			within = 0;
	T_CHECK(within);

	/* Success starts over. */
	backoff_reset(&b);
	T_INTEQ(backoff_ceiling(&b), 500);
	T_INTEQ(backoff_next(&b, 500), 500);
	T_INTEQ(backoff_next(&b, 1001), 0);

	/* Degenerate settings do not divide by zero or exceed the cap. */
	backoff_init(&b, 0, 0);
	T_INTEQ(backoff_next(&b, 7), 1);
	T_INTEQ(backoff_ceiling(&b), 1);

	/* Random values differ (the OS is asked, not a constant). */
	uint32_t r1 = backoff_random(), r2 = backoff_random(), r3 = backoff_random();
	T_CHECK(r1 != r2 || r2 != r3);
	return t_done();
}
