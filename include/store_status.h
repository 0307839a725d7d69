/* store_status.c — the database figures of the status page (admin.c's
 * /api/status), read every few seconds on a PostgreSQL connection of
 * their own, so that the admin listener never waits for the database.
 *
 * Non-blocking libpq on the daemon's libevent loop, as store.c: the
 * connection is started with PQconnectStartParams/PQconnectPoll, one
 * query is sent with PQsendQueryParams and read with PQconsumeInput and
 * PQisBusy as the socket becomes readable. It only reads (no migration,
 * no lock, no write) and runs with a statement_timeout, so a slow query
 * never piles up: a refresh is skipped while the previous one is still
 * under way. A lost connection is tried again at the next refresh.
 *
 * The query answers one JSON object built by PostgreSQL's JSON functions
 * (so it is valid JSON, whatever a device id holds), from these columns
 * only, never a plate, a name, a picture, a payload or a topic:
 *
 *   today            events per device class and type since local
 *                    midnight (event time; `tz_offset_s` east of UTC)
 *   per_minute       events per device class and minute over the last
 *                    hour (minute 0 the oldest, 59 the last)
 *   alarms           the latest camera alarms (id, time, community,
 *                    device id, class, kind, severity)
 *   welfare          the latest welfare alerts (the same, the welfare kind)
 *   overdue_reports  open resident reports past their deadline (count,
 *                    and the oldest ones: community, building, door,
 *                    category, opened, deadline)
 *
 * each list bounded (STORE_STATUS_LATEST, STORE_STATUS_OVERDUE), the
 * answer at most STORE_STATUS_MAX_BYTES (a larger one is dropped).
 */
#ifndef GRIDBRIDGE_STORE_STATUS_H
#define GRIDBRIDGE_STORE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct store_status;

#define STORE_STATUS_LATEST 10		/* alarms, welfare alerts */
#define STORE_STATUS_OVERDUE 20		/* overdue reports listed */
#define STORE_STATUS_MAX_BYTES (256 * 1024)

struct store_status_options {
	/* As store_options (store.h); copied. */
	const char *host;
	int port;
	const char *dbname;
	const char *user;
	const char *password;
	int connect_timeout;		/* seconds */
	const char *sslmode, *sslrootcert, *sslcert, *sslkey;
	int refresh_s;			/* seconds between queries */
	int tz_offset_s;		/* the communities' local time: UTC + this */
	/* The daemon's store: no query while it is not ready (the schema
	 * not there yet, the database away); NULL: always. */
	const struct store *store;
	/* Called after each refresh that succeeded; may be NULL. */
	void (*refreshed)(void *ctx);
	void *ctx;
};

/* The SQL of the query ($1: local midnight, $2: now, both as UTC
 * timestamps), for the tests. */
extern const char store_status_sql[];

/* Local midnight (UTC µs) of the day `now_us` falls in, `tz_offset_s` east. */
int64_t store_status_day_start(int64_t now_us, int tz_offset_s);

/* Starts at once; NULL when out of memory. */
struct store_status *store_status_new(struct event_base *base,
    const struct store_status_options *o);
void store_status_free(struct store_status *s);

/* The last answer (a JSON object, NUL-terminated) and when it was read
 * (the daemon's wall clock, UTC µs); NULL before the first one. Valid
 * until the next refresh: copy it. */
const char *store_status_json(const struct store_status *s, int64_t *as_of_us);
/* Whether the last refresh (or connection) failed: the figures are old. */
bool store_status_failing(const struct store_status *s);

#endif
