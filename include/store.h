/* store.c — PostgreSQL, non-blocking libpq on the libevent loop.
 *
 * Connecting uses PQconnectStartParams/PQconnectPoll only (never a blocking
 * connect); an IP address in `host` is passed as `hostaddr` so no DNS lookup
 * blocks the loop. PQsocket() is re-read after every PQconnectPoll(): it can
 * change while libpq tries addresses. A lost connection is noticed from the
 * socket and retried with capped exponential backoff and full jitter.
 *
 * Once connected it brings the schema up to date (schema.c: numbered
 * migrations, each in a transaction under an advisory lock; a database
 * newer than this binary is left alone and reported), makes the daily
 * partitions ahead and applies the retention, then every hour again.
 *
 * This is the only file that includes libpq-fe.h.
 */
#ifndef GRIDBRIDGE_STORE_H
#define GRIDBRIDGE_STORE_H

#include <stdbool.h>

struct event_base;
struct store;

struct store_options {
	const char *host;	/* IP address, host name or socket directory */
	int port;
	const char *dbname;
	const char *user;
	const char *password;	/* NULL or "" for none */
	int connect_timeout;	/* seconds */
	int partitions_ahead;	/* daily partitions created ahead */
	int retention_days;	/* partitions older are dropped; 0 keeps all */
};

/* Copies what it needs from `o`. */
struct store *store_new(struct event_base *base, const struct store_options *o);
/* Starts connecting; failures are retried in the background. */
int store_start(struct store *s);
bool store_connected(const struct store *s);
/* Connected, schema current, partitions made: ready to write. */
bool store_ready(const struct store *s);
void store_free(struct store *s);

#endif
