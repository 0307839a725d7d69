/* Unit tests for store_lease.c's pure parts: how long leases are trusted,
 * the array parameters of the read-back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_lease.h"
#include "t.h"

#define S 1000000ULL

static void
test_trusted_until(void)
{
	/* 20 s: trusted 15 s after the renewal was sent (the server's expiry
	 * runs from when it executed it, later); renewed every 6.7 s, so two
	 * renewals may be lost before a lapse. */
	T_INTEQ(store_lease_trusted_until(100 * S, 20), 115 * S);
	/* The least: 3 s, trusted 1.4 s; renewed every second. */
	T_INTEQ(store_lease_trusted_until(100 * S, 3), 100 * S + 1400000);
	T_INTEQ(store_lease_trusted_until(100 * S, 1), 100 * S + 1400000);
	/* Always before the server's expiry, after the next renewal. */
	for (int l = 3; l <= 3600; l++) {
		uint64_t u = store_lease_trusted_until(0, l);
		T_CHECK(u < (uint64_t)l * S);
		T_CHECK(u > (uint64_t)l * S / 3);
	}
}

static void
test_text_array(void)
{
	const char *v[] = { "c-0001", "b03/u2/1502/entry_door", "a\"b", "back\\slash", "", "{,}" };
	char *s = store_lease_text_array(v, 6);

	T_STREQ(s, "{\"c-0001\",\"b03/u2/1502/entry_door\",\"a\\\"b\",\"back\\\\slash\",\"\","
	    "\"{,}\"}");
	free(s);
	s = store_lease_text_array(v, 0);
	T_STREQ(s, "{}");
	free(s);
}

static void
test_renew_sql(void)
{
	/* Two instances never take one shard: rows locked, others skipped. */
	T_CHECK(strstr(store_lease_renew_sql, "FOR UPDATE SKIP LOCKED") != NULL);
	T_CHECK(strstr(store_lease_renew_sql, "expires_at < now()") != NULL);
}

int
main(void)
{
	test_trusted_until();
	test_text_array();
	test_renew_sql();
	return t_done();
}
