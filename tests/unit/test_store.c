/* Unit tests for store.c: which database hosts are this machine (the
 * daemon warns at start when another one is not verified by name); which
 * server messages a log line may carry. */
#include <stdbool.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "t.h"

int
main(void)
{
	log_set_fd(-1);

	/* This machine, by how host is written. */
	T_CHECK(store_host_is_local("127.0.0.1"));
	T_CHECK(store_host_is_local("127.1.2.3"));
	T_CHECK(store_host_is_local("::1"));
	T_CHECK(store_host_is_local("::ffff:127.0.0.1"));
	T_CHECK(store_host_is_local("localhost"));
	T_CHECK(store_host_is_local("LocalHost."));
	T_CHECK(store_host_is_local("/run/postgresql"));
	T_CHECK(store_host_is_local("@pgsocket"));
	T_CHECK(store_host_is_local("127.0.0.1,/run/postgresql"));

	/* Anything else, even names that may resolve to 127.0.0.1. */
	T_CHECK(!store_host_is_local("10.0.0.5"));
	T_CHECK(!store_host_is_local("128.0.0.1"));
	T_CHECK(!store_host_is_local("0.0.0.0"));
	T_CHECK(!store_host_is_local("::"));
	T_CHECK(!store_host_is_local("::ffff:10.0.0.1"));
	T_CHECK(!store_host_is_local("fe80::1"));
	T_CHECK(!store_host_is_local("db.example.net"));
	T_CHECK(!store_host_is_local("localhost.example.net"));
	T_CHECK(!store_host_is_local("mylocalhost"));
	T_CHECK(!store_host_is_local("127.0.0.1,db.example.net"));
	T_CHECK(!store_host_is_local("127.0.0.1,"));
	T_CHECK(!store_host_is_local(""));

	/* Messages that name a constraint, a relation or the server: logged. */
	static const char unique[] = "duplicate key value violates unique constraint \"x\"";
	T_CHECK(store_loggable_error("23505", unique) == unique);
	T_CHECK(store_loggable_error("23514", unique) == unique);
	T_CHECK(store_loggable_error("54000", unique) == unique);
	T_CHECK(store_loggable_error("57P01", unique) == unique);
	T_CHECK(store_loggable_error("42P01", unique) == unique);
	T_CHECK(store_loggable_error("", unique) == unique);	/* libpq's own */
	T_CHECK(store_loggable_error(NULL, unique) == unique);
	/* Data exceptions quote the value, raised texts are anything, and
	 * what is not known is not logged. */
	static const char quoted[] =
	    "invalid input syntax for type bigint: \"\xe4\xba\xac" "B12345\"";
	const char *classes[] = { "22P02", "22001", "P0001", "XX000", "0A000", "HV000", "2200",
		"230", "99999" };
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		const char *got = store_loggable_error(classes[i], quoted);
		T_CHECK(got != quoted && strstr(got, "B12345") == NULL);
	}
	return t_done();
}
