/* repeats.c — reports that carry neither a device time nor a serial.
 *
 * Such a message (an LWT, an availability topic, Shelly's `open`,
 * Tasmota's `Online`) can only be identified by its receive time, so the
 * same message delivered again — after a crash, or as a retained message
 * at every subscribe — would be a new event. Here each key (the route and
 * topic the report came on) keeps its last report: a report identical to
 * it (the same payload bytes) is the same event, with the first report's
 * id and event time,
 *
 *   - when it comes within the repeat window of the previous identical
 *     report (the window slides: a state reported again and again without
 *     a change stays one event), or
 *   - at any time when the broker marks it retained.
 *
 * Anything else is a new event: another payload (a state that changed),
 * the same payload after a silence longer than the window, or the same
 * payload received at a time before the previous report's (the system
 * clock went back: how long ago it came is not known).
 *
 * Exactly once across restarts and retries: each decision is kept by the
 * record's journal sequence number until the checkpoint passes it, so a
 * record decoded again (a batch split, resent) gets the same answer; the
 * states are written to the database with each batch *as of the batch's
 * checkpoint*, so after a restart the journal is read on from the
 * checkpoint with the states exactly as they were there.
 *
 * Pure: no I/O, no clock. Bounded: at most `max_keys` states (the least
 * recently reported is forgotten first), and one decision per record not
 * yet behind the checkpoint (the pipeline bounds those).
 */
#ifndef GRIDBRIDGE_REPEATS_H
#define GRIDBRIDGE_REPEATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct repeats;

/* A key's last report. */
struct repeat_state {
	uint8_t key[16];	/* of the route and topic */
	uint8_t digest[16];	/* of the payload */
	uint8_t id[16];		/* the event the report belongs to */
	int64_t event_time_us;	/* ... and its event time */
	int64_t last_us;	/* when the report was last received */
};

struct repeats *repeats_new(size_t max_keys);
void repeats_free(struct repeats *r);

/* A state read back from the database, before any decision. */
void repeats_load(struct repeats *r, const struct repeat_state *st);

/* Decides for the record `seq`. In `st`: key, digest, the record's own id
 * and event time, and last_us = its receive time. Returns true when it is
 * a repeat: st->id and st->event_time_us are then the first report's. A
 * record decided before (by seq) gets the same answer again. */
bool repeats_decide(struct repeats *r, uint64_t seq, bool retained, int64_t window_us,
    struct repeat_state *st);

/* The states as they were after record `upto` (one call per decision at or
 * before it that is not yet persisted, in order: the last for a key wins). */
void repeats_pending(const struct repeats *r, uint64_t upto,
    void (*fn)(void *ctx, const struct repeat_state *st), void *ctx);
/* Everything at or before `seq` is in the database: those decisions go. */
void repeats_persisted(struct repeats *r, uint64_t seq);

size_t repeats_keys(const struct repeats *r);
size_t repeats_decisions(const struct repeats *r);

#endif
