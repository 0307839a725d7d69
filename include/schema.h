/* schema.c — the database schema as numbered, append-only migrations.
 *
 *   schema_migrations  version, applied_at, description
 *   events             one row per event id, partitioned by day on
 *                      event_time (+ a DEFAULT partition); record bytea is
 *                      the packed gridbridge.v1.Event, attrs jsonb the same
 *                      as JSON; a BRIN index on received_at (the
 *                      rows gridbridgectl tail reads)
 *   quarantine         messages no decoder took: raw bytes and the reason
 *   forward_outbox     one row per (event, target): what went to the police
 *                      platform and when
 *   event_ids          one row per id of the events whose event_time the
 *                      id does not fix (no device time: the receive time;
 *                      a clock that is off; derived events); the others
 *                      are kept once by events' own key (store_batch.c)
 *   report_state       the last report of each topic whose messages carry
 *                      neither a device time nor a serial
 *   ingest_checkpoint  per journal (journal_id; journal_node names the
 *                      daemon): the journal sequence number committed with
 *                      the rows
 *
 * gridbridge_maintain_partitions(ahead, retention_days) creates daily
 * partitions ahead and applies the retention by receive time.
 */
#ifndef GRIDBRIDGE_SCHEMA_H
#define GRIDBRIDGE_SCHEMA_H

#include <stddef.h>

/* Advisory lock key held while migrating (several daemons may start at
 * once). */
#define SCHEMA_LOCK_KEY 7262000100LL
/* Advisory lock key held (for one transaction) by the daemon that creates
 * partitions and applies the retention: one at a time. */
#define SCHEMA_MAINTAIN_LOCK_KEY 7262000101LL
/* Session advisory locks of a running daemon: hashtextextended() of this
 * prefix and its node name, and of this prefix and its journal id. */
#define SCHEMA_NODE_LOCK "gridbridge/node/"
#define SCHEMA_JOURNAL_LOCK "gridbridge/journal/"

struct schema_migration {
	int version;
	const char *description;
	const char *sql;	/* one or more statements, run in one transaction */
};

const struct schema_migration *schema_migrations(size_t *n);
/* The newest version this binary knows. */
int schema_version(void);

#endif
