/* pipeline.c — journal -> decode -> store: the daemon's write path.
 *
 * Reads durable journal records (after each group commit) from the
 * checkpoint the database holds, decodes each with the routes, and hands
 * the store batches (by rows, bytes and age) of events and quarantined
 * messages. Glue between stages, like main.c: it includes their headers.
 *
 * Exactly once: every batch is one transaction that also writes this
 * node's checkpoint, and ids make inserts idempotent, so anything replayed
 * after a crash or a lost connection lands once. The checkpoint written
 * with a batch is the journal position before the oldest batch not yet
 * confirmed: it never passes a record that is not in the database, even
 * when a later batch commits before an earlier one is retried. When the
 * pipeline is idle a checkpoint-only transaction brings it to the last
 * record read, and journal segments behind it are deleted.
 *
 * A batch the server refuses for its data (see store.h) is split in two
 * and retried; a single record the server refuses is quarantined with the
 * server's message. Nothing loops forever on one bad row; a record whose
 * quarantine row is refused too is tried again every few seconds, and the
 * checkpoint waits for it.
 *
 * Records with neither a device time nor a serial go through repeats.c:
 * a repeated identical report is the event it repeats.
 *
 * The checkpoint the pipeline starts from is the database's for this
 * journal (keyed by the journal's id), or the journal's own when that is
 * further on (a database that never saw this journal).
 */
#ifndef GRIDBRIDGE_PIPELINE_H
#define GRIDBRIDGE_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct journal;
struct store;
struct route;
struct rules;
struct derive;
struct pipeline;

struct pipeline_options {
	const char *journal_dir;
	const char *node;		/* journal_node in the database */
	const struct route *routes;	/* borrowed; outlive the pipeline */
	size_t nroutes;
	size_t batch_rows;
	size_t batch_bytes;
	int batch_ms;			/* a partial batch waits at most this long */
	int linger_ms;			/* ... and at least this long when nothing is in
					 * flight (0: sent at once) */
	size_t linger_rows;		/* ... unless it has this many rows (0: always) */
	size_t max_backlog;		/* batches queued in the store before reading pauses */
	bool attrs;			/* also store the record as JSON */
	int64_t max_skew_us;
	int64_t repeat_window_us;	/* see repeats.h */
	size_t repeat_max_topics;
	const struct rules *rules;	/* borrowed; NULL: nothing is forwarded */
	struct derive *derive;		/* borrowed; NULL: no derived events */
	size_t max_devices;		/* the registry's bound, for its warning */
	const char *clock_offset_file;	/* tests: seconds added to the wall clock */
	/* The rate limit of topics no route matches (the routes have their
	 * own, struct route), and how many devices are tracked (ratelimit.h). */
	int rate_limit;
	int rate_burst;
	size_t rate_devices;
};

struct pipeline *pipeline_new(struct event_base *base, const struct pipeline_options *o,
    struct journal *journal, struct store *store);
void pipeline_free(struct pipeline *p);

/* A backlog (the journal since the checkpoint, at start or after an
 * outage) is being stored and not all of it is in the database yet. */
bool pipeline_catching_up(const struct pipeline *p);
/* Records in the journal not stored yet: received (or left by an earlier
 * run) and neither an event nor a quarantine row in the database. Before
 * the database is first reached: the records past the journal's own
 * checkpoint. */
uint64_t pipeline_unstored(const struct pipeline *p);

/* New records are durable in the journal (after ingest's sync).
 * `since_us` (util_mono_us(); 0: not known) is from when those records
 * were waited for (struct mqtt_sink's flush). A batch begun with them
 * lingers from then, if that is earlier than its first record's receipt. */
void pipeline_durable(struct pipeline *p, uint64_t since_us);

/* [decode] settings changed by a reload: used for the records decoded
 * from now on. */
void pipeline_set_decode(struct pipeline *p, int64_t max_skew_us, int64_t repeat_window_us);
/* Applies the reloadable [decode] keys of `cfg` (max_clock_skew,
 * repeat_window) on SIGHUP. */
struct config;
void pipeline_apply(struct pipeline *p, const struct config *cfg);

/* The store's sink (see store.h), wired by main.c with the pipeline as ctx. */
struct store_report;
void pipeline_store_report(void *ctx, const struct store_report *r);
void pipeline_store_derived(void *ctx, const char *devices, const char *welfare,
    const char *reports);
void pipeline_store_ready(void *ctx, uint64_t checkpoint);
void pipeline_store_back(void *ctx);
void pipeline_store_committed(void *ctx, uint64_t first_seq, uint64_t last_seq,
    uint64_t checkpoint);
void pipeline_store_rejected(void *ctx, uint64_t first_seq, uint64_t last_seq,
    const char *sqlstate, const char *message);

/* The derived events' leases (store_lease.h; main.c wires its callbacks
 * to these, with the pipeline as ctx). From this call on the pipeline
 * evaluates only the shards the lease holds, reads records only while it
 * knows which those are (and has the rows of those it took over), and, with other instances alive, observes what
 * they store as they store it, and what they stored for a device before
 * it raises a timer's event about it (derive.h, "Several instances"). */
struct store_lease;
void pipeline_set_lease(struct pipeline *p, struct store_lease *l);
void pipeline_lease_leases(void *ctx, bool known, uint64_t shards, uint64_t reload, int peers);
void pipeline_lease_rows(void *ctx, const char *devices, const char *welfare,
    const char *reports, uint64_t shards);
void pipeline_lease_records(void *ctx, bool ok, const uint8_t *const *recs, const size_t *lens,
    size_t n);
/* What the lease connection followed of the other instances' records
 * (store_lease.h, "follow"): those of the shards evaluated are observed
 * as they come; a gap makes the next tick read back. */
void pipeline_lease_followed(void *ctx, bool gap, const uint8_t *const *recs,
    const size_t *lens, size_t n);

#endif
