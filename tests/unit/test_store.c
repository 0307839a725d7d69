/* Unit tests for store.c: which database hosts are this machine (the
 * daemon warns at start when another one is not verified by name). */
#include <stdbool.h>

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
	return t_done();
}
