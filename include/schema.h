/* schema.c — the database schema as numbered, append-only migrations.
 *
 *   schema_migrations  version, applied_at, description
 *   events             one row per event id, partitioned by day on
 *                      event_time (+ a DEFAULT partition); record bytea is
 *                      the packed gridbridge.v1.Event, attrs jsonb the same
 *                      as JSON
 *   quarantine         messages no decoder took: raw bytes and the reason
 *   forward_outbox     one row per (event, target): what went to the police
 *                      platform and when
 *   ingest_checkpoint  per daemon (journal_node): the journal sequence
 *                      number committed with the rows
 *
 * gridbridge_maintain_partitions(ahead, retention_days) creates daily
 * partitions ahead and drops those past the retention.
 */
#ifndef GRIDBRIDGE_SCHEMA_H
#define GRIDBRIDGE_SCHEMA_H

#include <stddef.h>

/* Advisory lock key held while migrating (several daemons may start at
 * once). */
#define SCHEMA_LOCK_KEY 7262000100LL

struct schema_migration {
	int version;
	const char *description;
	const char *sql;	/* one or more statements, run in one transaction */
};

const struct schema_migration *schema_migrations(size_t *n);
/* The newest version this binary knows. */
int schema_version(void);

#endif
