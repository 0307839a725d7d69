/* derive.c — the events no device sends: whether each device is online
 * (the registry), welfare alerts for elderly people living alone, and
 * resident reports not handled by their deadline.
 *
 * Pure: stored events and a clock in, derived events and state rows out.
 * The glue (pipeline.c) hands it every event it stores (derive_observe),
 * calls derive_tick() with the clock every second, and writes what comes
 * out (derive_take) in a transaction of its own, right after the batch
 * whose records caused it. Its state is loaded from PostgreSQL at start
 * (derive_load), so a restart neither repeats nor misses a derived event:
 *
 * - Every update is ordered by time: a record replayed from the journal
 *   after a restart (already reflected in the state loaded) changes
 *   nothing, and the records after the checkpoint bring the state up to
 *   date as before.
 * - A derived event's id comes from what it is about and when it began
 *   (device + state + since; household + rule + window start + repeat;
 *   report + "overdue"), never from the clock: derived again, it is the
 *   same event, and the store keeps it once.
 *
 * The registry. A device is known from its first stored event (or its
 * [device NAME] section: expected, reported offline when it is never heard
 * from within expected_grace). It wants to be offline when an LWT or
 * availability message says so, or when nothing came from it within its
 * heartbeat timeout (class, route or device; 0: none); online on any
 * other message. A change of state is confirmed once it held for
 * hold_down (a change back within it confirms nothing: flapping), and then
 * makes one device_online or device_offline event (route "registry",
 * vendor "gridbridge") at the time the change began; the first state of a
 * device heard from online is recorded without an event (it is how the
 * registry learns of it), one first heard from offline makes one. A report
 * of the state the device is in changes nothing.
 *
 * Welfare. Each [welfare HOUSEHOLD] watches its door sensors: a door
 * opening is activity (at its event time; at its receive time when the
 * device's clock is off, clock_skewed). The household is watched while
 * every sensor is online; no activity for inactive_hours since the window
 * began (the last opening, or every sensor being online, whichever is
 * later: time nobody could watch is not inactivity) raises an inactivity
 * alert, repeated every repeat_hours while it lasts; the next opening
 * closes it with an activity_resumed event, also after a sensor outage in
 * between. A sensor going offline raises one sensor_offline event for the
 * outage (never an inactivity alert while one is offline). More than
 * night_openings openings within the night window raise one
 * night_activity alert a night. An opening not later than the last one is
 * a replay: it changes nothing. A peephole event of the household's
 * peephole is given its household.
 *
 * Reports. A report opened with a deadline and neither handled nor closed
 * by then raises one report_overdue event. A report handled or closed is
 * kept for a day after that was known (a late duplicate of its opening does
 * not open it again), then forgotten.
 *
 * Times are taken within years 1970..9999. derive_tick must not run while
 * the records after the checkpoint are being replayed (the pipeline runs
 * it only once the journal is read through): a device whose messages wait
 * there is not silent.
 *
 * Catching up: after the daemon was down longer than a threshold, each
 * rule raises what is due now once, at the time it became due: one
 * offline event per silent device, the latest inactivity repeat of a
 * window (not the ones missed), one overdue event per report.
 *
 * Clock steps. The timers run on the daemon's wall clock, so a step of the
 * system clock would read as time passing (a day forward: every device
 * silent, every household inactive) or going back (an hour back: new
 * messages older than the states they would change, taken as replays;
 * timeouts an hour late). When the glue sees a step (util_clock_step_us)
 * it calls derive_clock_stepped(), which moves the times the daemon took
 * from its own clock by the step, so that the time elapsed since each is
 * what it was: a device's first and last seen, its state's and pending
 * change's since, its creation; a household's last activity and window
 * start (door openings without a device time, or with one further from
 * ours than max_clock_skew, are at their receive time: ours); when a
 * report was known done. Not moved: the times of the report platform (a
 * report's opening, deadline, handling, closing) and of what was raised
 * already (an open alert's window names the alert the activity_resumed
 * event closes; the night an opening counted in is a wall-clock night).
 * The rows that changed are written again; the devices table keeps the
 * latest last_seen and the earliest first_seen it was given, so after a
 * step back it shows the times before the step until the clock passes
 * them. Limits: a record received before the step and observed after it
 * carries a time in the old scale (after a step back: a last_seen that
 * far ahead, a timeout that much later, until the clock passes it); a
 * step while the daemon is stopped cannot be told from downtime (no
 * reference survives a restart), so the catch-up rules apply then.
 *
 * Several instances. Several daemons may share one MQTT subscription
 * ([mqtt] shared_group) and one database: any of them may get any
 * device's message, so each sees a part of every device's stream, and
 * each one's view of a device or household is incomplete. So exactly one
 * instance evaluates each of them, and it follows what the others store
 * (and reads back what they stored before a timer of its fires):
 *
 * - Devices, households and reports fall into DERIVE_SHARDS shards by a
 *   hash of their names (derive_shard; a household's sensors in their
 *   household's). Each shard has a lease in PostgreSQL (store_lease.h:
 *   table derive_leases, [registry] lease seconds, on the server's clock).
 *   An instance renews its leases every third of that and takes the
 *   expired ones; it trusts them until its renewal's send time plus the
 *   lease less a fifth and a second (before the server's expiry), and
 *   reads no record while it does not know which shards it holds or the
 *   rows of shards it took over are on their way.
 * - An instance observes every event it stores, but raises and writes
 *   (events, devices / welfare_state / resident_reports rows) only for the
 *   shards it holds (derive_hold): the others' are another instance's.
 * - The holder follows what the others store (store_lease.h, "follow"):
 *   while it holds shards and another instance is alive, its lease
 *   connection LISTENs on the store's channel, and at most every second
 *   fetches the rows the notified transactions inserted that another
 *   instance stored (not derived ones), as gridbridgectl tail finds them;
 *   the pipeline observes those of the shards it evaluates. So an LWT, a
 *   night-time opening or a device heard by another instance only is
 *   observed by the holder about a second after it was stored. Bounded
 *   (transactions and rows a fetch, notifications kept): what may have
 *   been missed (before LISTEN answered, after the connection was lost,
 *   a backlog dropped, a fetch cut at its bound) makes the next tick read
 *   back as below.
 * - Before the holder's tick raises a timer's event (a timeout, a
 *   hold-down confirmed, an inactivity alert or its repeat, an overdue
 *   report), it observes the records the database has of the devices
 *   concerned since its last sighting (derive_wanted; newest 32 each,
 *   event time from the sighting less max_clock_skew and a minute, or
 *   receive time for a device whose clock is off: clock_skewed); every
 *   5 s also those of offline devices and of households with an open
 *   alert, so that a message to another instance brings a device back
 *   or closes an alert. Observing is idempotent (a record seen twice is a
 *   replay): its own records read back change nothing. Alone (no other
 *   instance renewed within a lease), nothing is read back or followed:
 *   one lease renewal every few seconds is all a single instance pays;
 *   an instance holding no shard follows nothing either.
 * - A shard taken over from another instance (its holder died: its lease
 *   expired) is reloaded from the rows that instance wrote
 *   (derive_reload), then read back as above before the first tick. So
 *   an alert due is raised by the new holder within a lease and a tick of
 *   the death, once: the rows say what was raised (alerts, alert window,
 *   state since), and a derived event computed twice has one id anyway.
 *
 * Limits: a record another instance stores later than a minute after
 * its event time (its journal replayed after it was down or the database
 * was away) may come after the holder raised a timer's event (then the
 * record ends it, as a late message does for one instance). A record
 * followed that is
 * not later than what the holder already saw of the device or household
 * is a replay: a night-time opening another instance stored within a
 * second or two before one the holder received itself is not counted. What
 * a gap missed (see above) is learnt only as the read-back finds it: an LWT
 * then shows as a timeout's offline event, later; a night-time opening or
 * a device heard only then is not counted or tracked until its next
 * record. Batches notify nothing while the server's notification queue is
 * over 90% full (store.h): the holder cannot tell those were missed. The
 * records of a shard taken over are observed once its rows are in (then
 * read back), not while they are on their way. The holder reads every
 * record the others store once more (the database's work grows with the
 * stream; a record over 1 MiB is left out). A batch of the old holder
 * committed after its lease expired may write a row over the new
 * holder's. Leases are taken first come: the first instance holds every
 * shard until it dies (no balancing), and so follows the whole stream.
 */
#ifndef GRIDBRIDGE_DERIVE_H
#define GRIDBRIDGE_DERIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.pb-c.h"

struct derive;

#define DERIVE_CLASSES 8		/* gridbridge.v1.DeviceClass values, 0..7 */

/* A [device NAME] section: a device declared in the configuration. */
struct derive_device_def {
	const char *community;
	const char *device;
	int device_class;		/* gridbridge.v1.DeviceClass */
	int64_t timeout_us;		/* heartbeat timeout; -1: the route's or the class's */
	bool expected;			/* reported offline when never heard from */
};

/* A [route NAME] heartbeat_timeout other than the class's. */
struct derive_route_def {
	const char *route;
	int64_t timeout_us;		/* 0: none */
};

/* A [welfare HOUSEHOLD] section. */
struct derive_household {
	const char *name;
	const char *community;
	const char *const *sensors;	/* door sensor device ids, NULL-terminated, >= 1 */
	const char *peephole;		/* its device id; NULL or "": none */
	int64_t inactive_us;
	int64_t repeat_us;		/* 0: no repeats */
	int night_start_min;		/* minutes after local midnight; -1: no night rule */
	int night_end_min;
	int night_openings;		/* more than this many raise the alert */
	int tz_offset_s;		/* local time = UTC + this */
};

struct derive_options {
	int64_t class_timeout_us[DERIVE_CLASSES];	/* 0: none */
	int64_t hold_down_us;
	int64_t expected_grace_us;
	size_t max_devices;		/* the registry holds at most this many */
	int64_t persist_every_us;	/* last_seen alone is written at most this often */
	const struct derive_device_def *devices;
	size_t ndevices;
	const struct derive_route_def *routes;
	size_t nroutes;
	const struct derive_household *households;
	size_t nhouseholds;
};

/* `o` and everything it points to are copied. */
struct derive *derive_new(const struct derive_options *o);
void derive_free(struct derive *d);

/* The state the database holds (outbox.h-like JSON arrays, as written by
 * derive_take; NULL or "" for none), then the declared devices not in it.
 * Before any other call but derive_new. Returns 0, or -1 (nothing taken)
 * when a text is not such an array. */
int derive_load(struct derive *d, const char *devices, const char *welfare,
    const char *reports, int64_t now_us);

/* An event just put in a batch: a peephole's household is filled in
 * (before it is packed). */
void derive_enrich(struct derive *d, Gridbridge__V1__Event *ev);
/* An event just stored (not derived): the registry, the households and
 * the reports it concerns. */
void derive_observe(struct derive *d, const Gridbridge__V1__Event *ev, int64_t now_us);
/* The clock moved on: confirms changes past their hold-down, times out
 * silent devices and inactive households, reports overdue reports. */
void derive_tick(struct derive *d, int64_t now_us);

/* The daemon's clock stepped by `step_us` (new - old, microseconds) since
 * the last call: the times taken from it move with it (see "Clock steps"
 * above); what moved is written with the next take. */
void derive_clock_stepped(struct derive *d, int64_t step_us);

/* What is waiting to be written: derived events, and the rows that
 * changed (JSON arrays for devices, welfare_state and resident_reports;
 * NULL when none changed). The events and texts are the caller's (free
 * each Event with derive_event_free, the texts with free); `d` forgets
 * them. Returns the number of events. */
size_t derive_take(struct derive *d, Gridbridge__V1__Event ***events, char **devices,
    char **welfare, char **reports);
void derive_event_free(Gridbridge__V1__Event *ev);
/* Something is waiting to be written. */
bool derive_pending(const struct derive *d);
/* What was taken could not be written (the database refused it: a bug,
 * every field being bounded): every row is written again with the next
 * take. The events of that take are not derived again (their state moved
 * on); the caller logs it. */
void derive_retake(struct derive *d);

/* ---- several instances (see "Several instances" above) ---- */

#define DERIVE_SHARDS 64	/* bits of a uint64_t; rows of derive_leases */

/* The shard (0..DERIVE_SHARDS-1) of `kind` "device" (community, device),
 * "household" (name, "") or "report" (community, report id): FNV-1a, the
 * same in every instance and release (the lease table is shared). */
unsigned derive_shard(const char *kind, const char *a, const char *b);
/* A device's shard: its household's when it is a household's sensor. */
unsigned derive_device_shard(const struct derive *d, const char *community,
    const char *device);

/* The shards this instance evaluates (bit n: shard n; derive_new: all).
 * The devices, households and reports of the others are still observed,
 * but raise nothing, are not ticked, and their rows are not written: a
 * change to one is kept and written when its shard is held again without
 * a reload (derive_reload). */
void derive_hold(struct derive *d, uint64_t shards);
uint64_t derive_held(const struct derive *d);

/* Taken over from another instance: the state of `shards` becomes the
 * database's rows (as derive_load reads them); what this instance made of
 * its own share of the stream is dropped, but for a device's last and
 * first sighting. A device of those shards without a row is as if first
 * heard from. Returns 0, or -1 (nothing taken) when a text is not an
 * array. */
int derive_reload(struct derive *d, const char *devices, const char *welfare,
    const char *reports, uint64_t shards, int64_t now_us);

/* A device whose stored records, from `since_us` (event time) on, the
 * evaluating instance must have observed before its next tick. */
struct derive_want {
	const char *community, *device;	/* valid until the next call but this */
	int64_t since_us;
};
/* What the next derive_tick would raise for the shards held, and with
 * `follow` also what a record stored by another instance would end (an
 * offline device coming back, an open inactivity alert's household),
 * as the devices whose records to observe first: at most `max`,
 * returns how many (the due ones first). */
size_t derive_wanted(const struct derive *d, int64_t now_us, bool follow,
    struct derive_want *out, size_t max);

/* For the log and the status line: devices known, online. */
size_t derive_devices(const struct derive *d, size_t *online);

/* The devices of one community and class (metrics). */
struct derive_census {
	const char *community;	/* valid until the registry changes */
	int device_class;	/* Gridbridge__V1__DeviceClass */
	size_t total, online;
};
/* The registry by community and class, at most `max` groups (more are
 * left out); returns how many. */
size_t derive_census(const struct derive *d, struct derive_census *out, size_t max);

#endif
