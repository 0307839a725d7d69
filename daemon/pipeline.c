/* pipeline.c — journal -> decode -> store; see pipeline.h. */
#include "pipeline.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "decode.h"
#include "derive.h"
#include "event_json.h"
#include "event_names.h"
#include "forward_viid_subscribe.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "repeats.h"
#include "rules.h"
#include "sha256.h"
#include "store.h"
#include "store_batch.h"
#include "store_lease.h"
#include "util.h"

/* The derived events' clock ticks this often. */
#define TICK_MS 1000
/* With other instances alive, the records they stored of the devices an
 * open condition waits on (derive_wanted's `follow`) are read this often. */
#define FOLLOW_US (5 * 1000000LL)
/* Records handled per loop turn before yielding to other events. */
#define PUMP_TURN 2000
/* A record whose quarantine row the database refuses too is tried again
 * after this long. */
#define PIPELINE_REFUSED_RETRY_MS 5000

struct range {
	uint64_t first, last;	/* first > last: checkpoint-only */
	/* Derived events and states that went into the batch with the
	 * records: sent again on their own if the batch is refused. */
	Gridbridge__V1__Event **derived;
	size_t nderived;
	bool states;
};

struct pipeline {
	struct event_base *base;
	struct pipeline_options o;
	char *dir;
	char *node;
	char journal_id[JOURNAL_ID_LEN + 1];
	struct repeats *repeats;
	struct journal *journal;
	struct store *store;
	struct journal_reader *reader;
	bool ready;

	struct decode_out out;
	uint8_t *pack;		/* packed Event scratch */
	struct rule_match *matches;	/* rules_select() scratch */
	size_t packcap;

	struct store_batch *cur;
	uint64_t cur_first, cur_last;
	uint64_t cur_started_us;	/* monotonic, when cur was begun */
	uint64_t durable_since_us;	/* pipeline_durable(): the last sync's */
	struct event *age;	/* submits a partial batch */
	struct event *pump;	/* deferred reading */

	struct range *outstanding;	/* submitted, not confirmed, by first seq */
	size_t nout, capout;
	uint64_t read_through;		/* last seq read */
	uint64_t committed;		/* checkpoint confirmed by the database */
	bool catching_up;		/* a backlog is being stored */
	uint64_t caught_up_rows;
	uint64_t refused_quarantine;	/* seq whose quarantine row was refused */
	struct range *later;		/* resubmitted after a pause */
	size_t nlater, caplater;
	struct event *later_ev;
	struct event *tick;		/* the derived events' clock */
	bool derived_loaded;		/* the derived state came from the database */
	/* The database refused derived rows on their own: until it takes
	 * them again, they are not put into record batches, which they would
	 * only get refused too (one bad row must never hold records back). */
	bool derived_refused;
	bool full_logged;		/* the registry was full: said once */
	uint64_t start_last_seq;	/* the journal's last record before we ran */
	struct ratelimit *limits;	/* NULL: no route and no default has a limit */
	uint64_t batch_serial;		/* the last batch's */
	bool untracked_logged;		/* the rate limit's table was full: said once */
	/* The derived events' leases (NULL: alone by configuration). */
	struct store_lease *lease;
	bool lease_known;		/* the shards held are known: records are read */
	uint64_t lease_shards;		/* held */
	uint64_t reloading;		/* held, their rows asked for: not evaluated yet */
	int peers;			/* other instances alive */
	int64_t followed_us;		/* monotonic; 0: follow at the next tick */
	struct derive_want *wants;	/* derive_wanted() scratch */
};

static void submit_cur(struct pipeline *p);
static void check_clock(struct pipeline *p);

/* ---- outstanding ranges ------------------------------------------------ */

static void
free_derived(Gridbridge__V1__Event **evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		derive_event_free(evs[i]);
	free(evs);
}

static void
out_add(struct pipeline *p, uint64_t first, uint64_t last, Gridbridge__V1__Event **derived,
    size_t nderived, bool states)
{
	if (p->nout == p->capout) {
		size_t cap = p->capout ? p->capout * 2 : 16;
		p->outstanding = util_realloc(p->outstanding, cap * sizeof(*p->outstanding));
		p->capout = cap;
	}
	size_t i = p->nout;
	while (i > 0 && p->outstanding[i - 1].first > first) {
		p->outstanding[i] = p->outstanding[i - 1];
		i--;
	}
	p->outstanding[i] = (struct range){ first, last, derived, nderived, states };
	p->nout++;
}

static struct range *
out_find(struct pipeline *p, uint64_t first, uint64_t last)
{
	for (size_t i = 0; i < p->nout; i++)
		if (p->outstanding[i].first == first && p->outstanding[i].last == last)
			return &p->outstanding[i];
	return NULL;
}

static void
out_remove(struct pipeline *p, uint64_t first, uint64_t last)
{
	for (size_t i = 0; i < p->nout; i++) {
		if (p->outstanding[i].first == first && p->outstanding[i].last == last) {
			free_derived(p->outstanding[i].derived, p->outstanding[i].nderived);
			memmove(&p->outstanding[i], &p->outstanding[i + 1],
			    (p->nout - i - 1) * sizeof(*p->outstanding));
			p->nout--;
			return;
		}
	}
}

/* The checkpoint a batch of [first, last] may write: its own last record
 * (its transaction stores them, and the derived state they led to), unless
 * an older one is not confirmed yet: then just before that. */
static uint64_t
safe_checkpoint(const struct pipeline *p, uint64_t first, uint64_t last)
{
	uint64_t oldest = last >= first ? last + 1 : first;

	for (size_t i = 0; i < p->nout; i++)
		if (p->outstanding[i].first <= p->outstanding[i].last &&
		    p->outstanding[i].first < oldest)
			oldest = p->outstanding[i].first;
	return oldest > 0 ? oldest - 1 : 0;
}

/* ---- one record -------------------------------------------------------- */

static void
add_quarantine(struct store_batch *b, const struct journal_record *rec, const char *reason,
    const char *route)
{
	struct store_quarantine q = {
		.journal_seq = rec->seq,
		.received_us = rec->received_us,
		.topic = rec->topic,
		.topic_len = rec->topic_len,
		.raw = rec->payload,
		.raw_len = rec->payload != NULL ? rec->payload_len : 0,
		.reason = reason,
		.route = route,
	};
	store_batch_add_quarantine(b, &q);
}

/* A report with neither device time nor serial: the same as the last
 * report of its route and topic, it is that event (see repeats.h). */
static void
check_repeat(struct pipeline *p, const struct journal_record *rec, const struct route *r,
    Event *ev)
{
	struct repeat_state st;
	struct sha256 h;
	uint8_t d[32];

	sha256_init(&h);
	sha256_update(&h, r->name, strlen(r->name) + 1);
	sha256_update(&h, rec->topic, rec->topic_len);
	sha256_final(&h, d);
	memcpy(st.key, d, 16);
	sha256_init(&h);
	if (rec->payload != NULL)
		sha256_update(&h, rec->payload, rec->payload_len);
	sha256_final(&h, d);
	memcpy(st.digest, d, 16);
	memcpy(st.id, ev->id.data, 16);
	st.event_time_us = ev->event_time_us;
	st.last_us = rec->received_us;
	if (repeats_decide(p->repeats, rec->seq, (rec->flags & JOURNAL_RETAIN) != 0,
	    p->o.repeat_window_us, &st)) {
		memcpy(ev->id.data, st.id, 16);
		ev->event_time_us = st.event_time_us;
	}
}

/* The GA/T 1400 SubscribeDetail code a cascade target's subscriptions ask
 * for to get `ev`: faces for person passages, motor vehicles for vehicle
 * passages, device status; 0 for what no subscription can ask for. */
static int
subscribe_detail(const Gridbridge__V1__Event *ev)
{
	switch (ev->body_case) {
	case GRIDBRIDGE__V1__EVENT__BODY_PERSON:
		return VIID_DETAIL_FACES;
	case GRIDBRIDGE__V1__EVENT__BODY_VEHICLE:
		return VIID_DETAIL_VEHICLES;
	case GRIDBRIDGE__V1__EVENT__BODY_STATUS:
		return VIID_DETAIL_STATUS;
	default:
		return 0;
	}
}

/* `ev` into `b`, with its outbox rows. by_pk: its id is made from its
 * event time (store_event.by_primary_key). */
static void
add_event(struct pipeline *p, struct store_batch *b, const Event *ev, bool by_pk)
{
	size_t n = gridbridge__v1__event__get_packed_size(ev);
	if (n > p->packcap) {
		p->pack = util_realloc(p->pack, n);
		p->packcap = n;
	}
	gridbridge__v1__event__pack(ev, p->pack);
	char *attrs = p->o.attrs ? event_json_text(&ev->base) : NULL;
	struct store_event e = {
		.id = ev->id.data,
		.event_time_us = ev->event_time_us,
		.received_us = ev->received_time_us,
		.community_id = ev->community_id,
		.device_id = ev->device_id,
		.device_class = event_class_name(ev->device_class),
		.event_type = event_type_name(ev->event_type),
		.severity = event_severity_name(ev->severity),
		.vendor = ev->vendor,
		.route = ev->route,
		.source_topic = ev->source_topic,
		.journal_seq = ev->journal_seq,
		.clock_skewed = ev->clock_skewed,
		.by_primary_key = by_pk,
		.plate = ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_VEHICLE && ev->vehicle != NULL &&
		    ev->vehicle->plate_normalized != NULL && ev->vehicle->plate_normalized[0] ?
		    ev->vehicle->plate_normalized : NULL,
		.record = p->pack,
		.record_len = n,
		.attrs = attrs,
	};
	store_batch_add_event(b, &e);
	free(attrs);
	if (p->o.rules != NULL && p->matches != NULL) {
		struct rule_event re = {
			.device_class = e.device_class, .event_type = e.event_type,
			.severity = e.severity, .community = e.community_id, .route = e.route,
		};
		size_t nm = rules_select(p->o.rules, &re, p->matches);
		for (size_t i = 0; i < nm; i++) {
			int kind = p->matches[i].cascade ? subscribe_detail(ev) : 0;
			if (p->matches[i].cascade && kind == 0)
				continue;	/* nothing a subscription can ask for */
			store_batch_add_outbox(b, e.id, e.event_time_us, p->matches[i].target,
			    p->matches[i].priority, kind);
		}
	}
}

/* ---- rate limits ------------------------------------------------------- */

static void
log_held(const struct rl_entry *e, uint64_t held)
{
	log_warn("pipeline", "rate limit held back messages", "route=%s device=%s held_back=%llu",
	    e->route[0] != '\0' ? e->route : "none", e->device, (unsigned long long)held);
}

static void
expired(void *ctx, const struct rl_entry *e)
{
	(void)ctx;
	log_held(e, e->held);
}

/* Is `rec` over its device's rate limit? Then it is held back: counted in
 * its device's summary row in `b` (ratelimit.h), and true. */
static bool
held_back(struct pipeline *p, struct store_batch *b, const struct journal_record *rec,
    const struct route *r, const struct route_match *m)
{
	int rate = r != NULL ? r->rate_limit : p->o.rate_limit;
	int burst = r != NULL ? r->rate_burst : p->o.rate_burst;

	if (p->limits == NULL || rate <= 0)
		return false;
	/* The device the topic names; the topic when it names none. */
	const char *dev = rec->topic;
	size_t len = rec->topic_len;
	const struct route_capture *c = r != NULL ? route_capture(&r->pattern, m, "device") : NULL;
	if (c != NULL && c->len > 0) {
		dev = c->value;
		len = c->len;
	}
	struct rl_entry *e;
	uint64_t closed;
	enum rl_verdict v = ratelimit_check(p->limits, r != NULL ? r->name : NULL, dev, len, rate,
	    burst, rec->seq, rec->received_us, &e, &closed);
	if (v == RL_PASS) {
		if (ratelimit_untracked(p->limits) > 0 && !p->untracked_logged) {
			log_warn("pipeline", "rate limit table full, new devices not limited",
			    "devices=%zu", ratelimit_devices(p->limits));
			p->untracked_logged = true;
		}
		return false;
	}
	if (v == RL_HOLD_NEW) {
		if (closed > 0)
			log_held(e, closed);
		log_warn("pipeline", "device over its rate limit, holding its messages back",
		    "route=%s device=%s rate_limit=%d rate_burst=%d",
		    e->route[0] != '\0' ? e->route : "none", e->device, rate, burst);
	}
	if (e->batch == b->serial && b->serial != 0) {
		store_batch_held_more(b, e->row, rec->seq, r != NULL ? r->name : NULL);
	} else {
		struct store_quarantine q = {
			.journal_seq = rec->seq, .received_us = rec->received_us,
			.topic = rec->topic, .topic_len = rec->topic_len,
			.raw = rec->payload, .raw_len = rec->payload != NULL ? rec->payload_len : 0,
			.reason = "rate_limited", .route = r != NULL ? r->name : NULL,
		};
		e->row = store_batch_add_held(b, e->first_seq, &q);
		e->batch = b->serial;
	}
	return true;
}

/* Decodes one record into `b`: an event, or a quarantined message. With
 * `force_reason` the record is quarantined with that reason. `limit`: the
 * rate limits apply (not to a refused batch's records, written again one
 * by one). */
static void
add_record(struct pipeline *p, struct store_batch *b, const struct journal_record *rec,
    const char *force_reason, bool limit)
{
	struct route_match m;
	const struct route *r = decode_find_route(p->o.routes, p->o.nroutes, rec->topic,
	    rec->topic_len, &m);

	if (force_reason != NULL) {
		add_quarantine(b, rec, force_reason, r != NULL ? r->name : NULL);
		return;
	}
	if (limit && held_back(p, b, rec, r, &m))
		return;
	if (r == NULL) {
		add_quarantine(b, rec, "no_route", NULL);
		return;
	}
	struct decode_in in = {
		.route = r, .match = &m, .topic = rec->topic, .topic_len = rec->topic_len,
		.payload = rec->payload, .payload_len = rec->payload_len,
		.oversize = (rec->flags & JOURNAL_OVERSIZE) != 0,
		.received_us = rec->received_us, .journal_seq = rec->seq,
		.max_skew_us = p->o.max_skew_us,
	};
	if (decode_record(&in, &p->out) != 0) {
		add_quarantine(b, rec, p->out.reason, r->name);
		return;
	}
	Event *ev = &p->out.ev;
	if (!p->out.has_device_time && p->out.serial == NULL)
		check_repeat(p, rec, r, ev);
	if (p->o.derive != NULL)
		derive_enrich(p->o.derive, ev);
	/* A device time is in the id (decode.c), so every copy has it: the
	 * events' key is enough. Not when the clock is off: such a row may
	 * sit in the DEFAULT partition or one past the retention, which
	 * maintenance moves, and gridbridgectl tail finds a transaction's
	 * moved rows by their event_ids row. */
	add_event(p, b, ev, p->out.has_device_time && !ev->clock_skewed);
	if (p->o.derive != NULL) {
		check_clock(p);
		derive_observe(p->o.derive, ev, util_wall_us());
	}
}

/* ---- batches ----------------------------------------------------------- */

static void
add_report(void *ctx, const struct repeat_state *st)
{
	struct store_report r = {
		.key = st->key, .digest = st->digest, .event_id = st->id,
		.event_time_us = st->event_time_us, .last_us = st->last_us,
	};
	store_batch_add_report(ctx, &r);
}

static struct store_batch *
new_batch(struct pipeline *p)
{
	struct store_batch *b = store_batch_new(p->node, p->journal_id);

	b->serial = ++p->batch_serial;
	return b;
}

/* Submits a batch. What derive.c has for the database (the events and
 * states the records read so far led to) goes into the same transaction,
 * and so do the repeated-report states as they were at its checkpoint:
 * one commit stores the records, what they changed and the checkpoint
 * past them, so a crash finds either all of it or none. `derived`
 * events already in `b` (sent again after a refusal) are kept with it. */
static void
submit_with(struct pipeline *p, struct store_batch *b, uint64_t first, uint64_t last,
    Event **derived, size_t nderived, bool states)
{
	struct derive *d = p->o.derive;

	if (d != NULL && p->derived_loaded && derive_pending(d) &&
	    (first > last || !p->derived_refused)) {
		Event **evs;
		char *devices, *welfare, *reports;
		size_t n = derive_take(d, &evs, &devices, &welfare, &reports);
		if (n > 0) {
			derived = util_realloc(derived, (nderived + n) * sizeof(*derived));
			for (size_t i = 0; i < n; i++) {
				add_event(p, b, evs[i], false);
				derived[nderived++] = evs[i];
			}
		}
		free(evs);
		store_batch_set_states(b, devices, welfare, reports);
		states = states || devices != NULL || welfare != NULL || reports != NULL;
		free(devices);
		free(welfare);
		free(reports);
	}
	uint64_t ckpt = safe_checkpoint(p, first, last);
	repeats_pending(p->repeats, ckpt, add_report, b);
	out_add(p, first, last, derived, nderived, states);
	store_submit(p->store, b, first, last, ckpt);
}

static void
submit(struct pipeline *p, struct store_batch *b, uint64_t first, uint64_t last)
{
	submit_with(p, b, first, last, NULL, 0, false);
}

/* Derived events and states with no records to go with (the clock moved
 * on): a transaction of their own, no journal range (first > last). */
static void
flush_derived(struct pipeline *p)
{
	struct derive *d = p->o.derive;

	if (d == NULL || !p->derived_loaded || !derive_pending(d))
		return;
	submit(p, new_batch(p), p->read_through + 1, p->read_through);
}

static void
submit_cur(struct pipeline *p)
{
	if (p->cur == NULL)
		return;
	evtimer_del(p->age);
	struct store_batch *b = p->cur;
	p->cur = NULL;
	submit(p, b, p->cur_first, p->cur_last);
}

/* When nothing is in flight, bring the checkpoint to the last record read:
 * the batches before wrote only "before the oldest unconfirmed". */
static void
maybe_idle_checkpoint(struct pipeline *p)
{
	if (p->cur != NULL || p->nout > 0 || p->read_through <= p->committed)
		return;
	submit(p, new_batch(p), p->read_through + 1, p->read_through);
}

/* A batch's age counts from its first record's receipt: a record that
 * waited in the journal (ingest's sync delay, a backlog) has used up that
 * much of the linger. The wall clock only says how long ago that was; a
 * clock step is clipped to now and to a second ago. Messages that waited
 * unread in the broker's socket (the sync delay's rest, mqtt.c) used up
 * that wait too: pump() takes the earlier of this and the sync's
 * since_us (pipeline_durable). */
static uint64_t
batch_start_us(const struct journal_record *rec)
{
	uint64_t now = util_mono_us();
	int64_t ago = util_wall_us() - rec->received_us;

	if (ago <= 0)
		return now;
	if (ago > 1000000)
		ago = 1000000;
	return now > (uint64_t)ago ? now - (uint64_t)ago : 0;
}

static void
pump(struct pipeline *p)
{
	struct journal_record rec;
	int n = 0;

	if (!p->ready)
		return;
	/* A record observed while this instance does not know which shards
	 * it evaluates, or while the rows of shards it took over are on their
	 * way (they replace its state), would raise nothing and be lost: none
	 * read until it knows and has them. */
	if (p->lease != NULL && (!p->lease_known || p->reloading != 0))
		return;
	/* Only what an fdatasync covers: a record written but not synced could
	 * vanish in a crash and its number be given to another message. */
	journal_reader_set_limit(p->reader, journal_durable_seq(p->journal));
	if (journal_durable_seq(p->journal) == 0)
		return;
	while (store_backlog(p->store) < p->o.max_backlog) {
		if (n++ == PUMP_TURN) {
			event_active(p->pump, 0, 0);	/* more next turn */
			return;
		}
		int rc = journal_reader_next(p->reader, &rec);
		if (rc == 0)
			break;
		if (rc < 0)
			continue;	/* logged; the reader moved on */
		if (rec.seq <= p->read_through)
			continue;	/* already handed over */
		if (p->cur == NULL) {
			p->cur = new_batch(p);
			p->cur_first = rec.seq;
			p->cur_started_us = batch_start_us(&rec);
			if (p->durable_since_us > 0 && p->durable_since_us < p->cur_started_us)
				p->cur_started_us = p->durable_since_us;
			struct timeval tv = { .tv_sec = p->o.batch_ms / 1000,
				.tv_usec = (p->o.batch_ms % 1000) * 1000 };
			evtimer_add(p->age, &tv);
		}
		add_record(p, p->cur, &rec, NULL, true);
		p->cur_last = rec.seq;
		p->read_through = rec.seq;
		if (store_batch_rows(p->cur) >= p->o.batch_rows ||
		    store_batch_bytes(p->cur) >= p->o.batch_bytes)
			submit_cur(p);
	}
	/* At the end of what is durable: nothing in flight means nobody to
	 * wait for, so send what there is now; or, with linger_ms, once the
	 * batch is that old (at a few messages a second, one transaction for
	 * several instead of one each: the database's cost is per commit).
	 * A batch of linger_rows has enough rows to share that cost: waiting
	 * longer would only add latency (at 5,000/s, the whole linger). */
	if (p->cur != NULL && store_backlog(p->store) == 0) {
		int linger = p->o.linger_ms < p->o.batch_ms ? p->o.linger_ms : p->o.batch_ms;
		uint64_t age = util_mono_us() - p->cur_started_us;
		if (linger <= 0 || age >= (uint64_t)linger * 1000 ||
		    (p->o.linger_rows > 0 && store_batch_rows(p->cur) >= p->o.linger_rows)) {
			submit_cur(p);
		} else {
			uint64_t left = (uint64_t)linger * 1000 - age;
			struct timeval tv = { .tv_sec = (time_t)(left / 1000000),
				.tv_usec = (suseconds_t)(left % 1000000) };
			evtimer_add(p->age, &tv);
		}
	}
	maybe_idle_checkpoint(p);
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

static void
age_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;

	(void)fd;
	(void)what;
	submit_cur(p);
}

/* Run the pump: there may be records to batch. */
static void
pipeline_kick(struct pipeline *p)
{
	if (p != NULL && p->ready)
		event_active(p->pump, 0, 0);
}

void
pipeline_durable(struct pipeline *p, uint64_t since_us)
{
	if (p == NULL)
		return;
	p->durable_since_us = since_us;
	pipeline_kick(p);
}

/* Re-reads [first, last] from the journal into a new batch. */
static void
resubmit(struct pipeline *p, uint64_t first, uint64_t last, const char *force_reason)
{
	struct journal_reader *r = journal_reader_open(p->dir, first);
	struct journal_record rec;
	struct store_batch *b = new_batch(p);
	int rc;

	while (r != NULL && (rc = journal_reader_next(r, &rec)) != 0) {
		if (rc < 0)
			continue;
		if (rec.seq > last)
			break;
		add_record(p, b, &rec, force_reason, false);
	}
	journal_reader_free(r);
	submit(p, b, first, last);
}

/* Resubmits (as quarantine) what was put off by later(). */
static void
later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;

	(void)fd;
	(void)what;
	size_t n = p->nlater;
	p->nlater = 0;
	for (size_t i = 0; i < n; i++) {
		out_remove(p, p->later[i].first, p->later[i].last);
		resubmit(p, p->later[i].first, p->later[i].last, "db_rejected:quarantine_refused");
	}
}

/* Puts a range off for a while; it stays outstanding meanwhile, so the
 * checkpoint does not pass it. */
static void
later(struct pipeline *p, uint64_t first, uint64_t last)
{
	if (p->nlater == p->caplater) {
		size_t cap = p->caplater ? p->caplater * 2 : 4;
		p->later = util_realloc(p->later, cap * sizeof(*p->later));
		p->caplater = cap;
	}
	p->later[p->nlater++] = (struct range){ first, last, NULL, 0, false };
	out_add(p, first, last, NULL, 0, false);
	struct timeval tv = { .tv_sec = PIPELINE_REFUSED_RETRY_MS / 1000,
		.tv_usec = (PIPELINE_REFUSED_RETRY_MS % 1000) * 1000 };
	evtimer_add(p->later_ev, &tv);
}

/* Logs the end of a backlog: everything read is confirmed. */
static void
check_caught_up(struct pipeline *p)
{
	if (!p->catching_up || p->nout > 0 || p->cur != NULL ||
	    p->committed != p->read_through)
		return;
	log_info("pipeline", "caught up", "checkpoint=%llu stored=%llu",
	    (unsigned long long)p->committed, (unsigned long long)p->caught_up_rows);
	p->catching_up = false;
	p->caught_up_rows = 0;
}

/* The test clock: [daemon] clock_offset_file holds seconds (a decimal)
 * added to the system's clock. A file that cannot be read keeps the
 * offset as it was. */
static void
read_clock_offset(const char *path)
{
	char buf[64];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *end;
	double s = strtod(buf, &end);
	if (end != buf && s > -1e9 && s < 1e9)
		util_set_wall_offset_us((int64_t)(s * 1e6));
}

/* Did the system clock step since the last look? Then the derived
 * events' times move with it (derive.h, "Clock steps"). Looked at before
 * every derive_observe and derive_tick, so neither sees the new clock
 * before the state is in its scale. A record received before the step and
 * decoded after it keeps its receive time in the old scale. */
static void
check_clock(struct pipeline *p)
{
	int64_t step = util_clock_step_us();
	char seconds[32];

	if (step == 0)
		return;
	snprintf(seconds, sizeof(seconds), "%+.1f", (double)step / 1e6);
	log_warn("pipeline", "system clock stepped", "seconds=%s", seconds);
	metrics.clock_steps++;
	if (p->o.derive != NULL)
		derive_clock_stepped(p->o.derive, step);
}

/* The derived events' tick, and what it raised written (not while a
 * record batch fills: it goes first). */
static void
derive_now(struct pipeline *p)
{
	derive_tick(p->o.derive, util_wall_us());
	if (p->cur == NULL)
		flush_derived(p);
}

/* The clock moved on. With leases: nothing while the shards held are not
 * known or a read-back is under way; with other instances alive, what
 * the tick would raise is checked first against the records they stored
 * (pipeline_lease_records ticks then). */
static void
derive_clock(struct pipeline *p)
{
	struct derive *d = p->o.derive;

	if (p->lease == NULL) {
		derive_now(p);
		return;
	}
	if (!p->lease_known || store_lease_fetching(p->lease))
		return;
	if (p->peers == 0 || derive_held(d) == 0) {
		derive_now(p);
		return;
	}
	int64_t mono = (int64_t)util_mono_us();
	bool follow = p->followed_us == 0 || mono - p->followed_us >= FOLLOW_US;
	size_t n = derive_wanted(d, util_wall_us(), follow, p->wants, STORE_LEASE_FETCH_DEVICES);
	if (follow)
		p->followed_us = mono;
	if (n == 0) {
		derive_now(p);
		return;
	}
	const char **c = util_calloc(n, sizeof(*c)), **v = util_calloc(n, sizeof(*v));
	int64_t *since = util_calloc(n, sizeof(*since));
	/* Before the device's own clock could have said, within the skew
	 * decode accepts, and a minute for the batches in flight. */
	int64_t slack = p->o.max_skew_us + 60 * 1000000LL;
	for (size_t i = 0; i < n; i++) {
		c[i] = p->wants[i].community;
		v[i] = p->wants[i].device;
		since[i] = p->wants[i].since_us > slack ? p->wants[i].since_us - slack : 0;
	}
	bool asked = store_lease_fetch(p->lease, c, v, since, n);
	free(c);
	free(v);
	free(since);
	if (!asked)
		derive_now(p);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;

	(void)fd;
	(void)what;
	if (p->o.clock_offset_file != NULL && p->o.clock_offset_file[0] != '\0')
		read_clock_offset(p->o.clock_offset_file);
	check_clock(p);
	/* For readers of the directory; the database has the authority. */
	journal_flush_checkpoint(p->journal);
	if (p->limits != NULL)
		ratelimit_expire(p->limits, util_wall_us(), expired, p);
	/* Records made durable by a sync nobody reported (a segment rolled,
	 * then the next write failed and the connection was dropped): without
	 * this nothing would read them until the next message, and a full
	 * journal waits for them to be stored before it takes one. */
	if (p->ready && journal_durable_seq(p->journal) > p->read_through)
		pump(p);
	/* Not while records wait in the journal unread (the database was
	 * away, or a backlog is being stored): a device whose messages are
	 * there is not silent. The clock catches up once they are read. */
	if (p->o.derive != NULL && p->derived_loaded && p->ready && !p->catching_up &&
	    store_ready(p->store)) {
		derive_clock(p);
		size_t online, n = derive_devices(p->o.derive, &online);
		if (n >= p->o.max_devices && !p->full_logged) {
			log_warn("pipeline", "device registry full, new devices not tracked",
			    "devices=%zu", n);
			p->full_logged = true;
		}
	}
	struct timeval tv = { .tv_sec = TICK_MS / 1000, .tv_usec = (TICK_MS % 1000) * 1000 };
	evtimer_add(p->tick, &tv);
}

bool
pipeline_catching_up(const struct pipeline *p)
{
	return p->catching_up;
}

uint64_t
pipeline_unstored(const struct pipeline *p)
{
	struct journal_stat js;
	uint64_t n = 0;

	journal_stat(p->journal, &js);
	if (!p->ready)
		return js.last_seq > js.checkpoint_seq ? js.last_seq - js.checkpoint_seq : 0;
	/* Not read yet, read into the batch being filled, sent and not
	 * confirmed (or put off): a batch confirmed beyond the checkpoint is
	 * stored even though the checkpoint has not passed it yet. */
	if (js.last_seq > p->read_through)
		n += js.last_seq - p->read_through;
	if (p->cur != NULL && p->cur_last >= p->cur_first)
		n += p->cur_last - p->cur_first + 1;
	for (size_t i = 0; i < p->nout; i++)
		if (p->outstanding[i].first <= p->outstanding[i].last)
			n += p->outstanding[i].last - p->outstanding[i].first + 1;
	return n;
}

void
pipeline_set_decode(struct pipeline *p, int64_t max_skew_us, int64_t repeat_window_us)
{
	p->o.max_skew_us = max_skew_us;
	p->o.repeat_window_us = repeat_window_us;
}

void
pipeline_apply(struct pipeline *p, const struct config *cfg)
{
	pipeline_set_decode(p, cfg->decode_max_clock_skew * 1000000LL,
	    cfg->decode_repeat_window * 1000000LL);
}

/* ---- the store's sink -------------------------------------------------- */

void
pipeline_store_report(void *ctx, const struct store_report *r)
{
	struct pipeline *p = ctx;
	struct repeat_state st;

	memcpy(st.key, r->key, 16);
	memcpy(st.digest, r->digest, 16);
	memcpy(st.id, r->event_id, 16);
	st.event_time_us = r->event_time_us;
	st.last_us = r->last_us;
	repeats_load(p->repeats, &st);
}

void
pipeline_store_derived(void *ctx, const char *devices, const char *welfare, const char *reports)
{
	struct pipeline *p = ctx;

	if (p->o.derive == NULL || p->derived_loaded)
		return;
	if (derive_load(p->o.derive, devices, welfare, reports, util_wall_us()) != 0) {
		log_error("pipeline", "derived state unreadable, starting afresh", "");
		derive_load(p->o.derive, NULL, NULL, NULL, util_wall_us());
	}
	size_t online, n = derive_devices(p->o.derive, &online);
	log_info("pipeline", "derived state loaded", "devices=%zu online=%zu", n, online);
	p->derived_loaded = true;
}

void
pipeline_store_ready(void *ctx, uint64_t checkpoint)
{
	struct pipeline *p = ctx;
	struct journal_stat js;

	/* The database's checkpoint is this journal's (it is keyed by the
	 * journal's id); the journal's own can only be behind it, or alone
	 * (a database that never saw this journal). */
	journal_stat(p->journal, &js);
	if (checkpoint > p->start_last_seq) {
		/* The database stored more of this journal than it had when we
		 * started: an older copy of the state directory. What came in
		 * since is numbered after the database's checkpoint. */
		if (journal_renumber(p->journal, p->start_last_seq + 1, checkpoint) != 0) {
			log_error("pipeline", "cannot read the journal", "dir=%s", p->dir);
			return;
		}
		journal_stat(p->journal, &js);
		p->start_last_seq = checkpoint;
	}
	if (js.checkpoint_seq > checkpoint)
		checkpoint = js.checkpoint_seq;
	p->committed = checkpoint;
	p->read_through = checkpoint;
	journal_checkpoint(p->journal, checkpoint);
	/* What an earlier run left unstored (metrics.h: it reconciles). */
	if (p->start_last_seq > checkpoint)
		metrics.recovered += p->start_last_seq - checkpoint;
	p->reader = journal_reader_open(p->dir, checkpoint + 1);
	if (p->reader == NULL) {
		log_error("pipeline", "cannot read the journal", "dir=%s", p->dir);
		return;
	}
	p->ready = true;
	p->catching_up = true;
	if (p->lease != NULL)
		store_lease_poke(p->lease);	/* no record is read before it answers */
	log_info("pipeline", "replaying journal", "from_seq=%llu",
	    (unsigned long long)checkpoint + 1);
	pump(p);
	check_caught_up(p);
}

void
pipeline_store_committed(void *ctx, uint64_t first_seq, uint64_t last_seq, uint64_t checkpoint)
{
	struct pipeline *p = ctx;

	out_remove(p, first_seq, last_seq);
	if (first_seq <= last_seq)
		p->caught_up_rows += last_seq - first_seq + 1;
	else
		p->derived_refused = false;	/* a transaction without records went through */
	if (checkpoint > p->committed) {
		p->committed = checkpoint;
		repeats_persisted(p->repeats, checkpoint);
		journal_checkpoint(p->journal, checkpoint);
	}
	pump(p);
	check_caught_up(p);
}

void
pipeline_store_back(void *ctx)
{
	struct pipeline *p = ctx;

	/* What piled up in the journal meanwhile is the new backlog. */
	p->catching_up = true;
	if (p->lease != NULL)
		store_lease_poke(p->lease);	/* its connection back too, now */
	pump(p);
	check_caught_up(p);
}

void
pipeline_store_rejected(void *ctx, uint64_t first_seq, uint64_t last_seq,
    const char *sqlstate, const char *message)
{
	struct pipeline *p = ctx;
	char reason[320];

	/* What derive.c put into a refused record batch is sent again on its
	 * own, before the records (and while they are still outstanding, so
	 * its checkpoint stays behind them): the split halves will not bring
	 * it back, the state having moved on. */
	struct range *r = out_find(p, first_seq, last_seq);
	if (r != NULL && first_seq <= last_seq && (r->nderived > 0 || r->states)) {
		Event **derived = r->derived;
		size_t nderived = r->nderived;
		bool states = r->states;
		r->derived = NULL;
		r->nderived = 0;
		struct store_batch *b = new_batch(p);
		for (size_t i = 0; i < nderived; i++)
			add_event(p, b, derived[i], false);
		if (states && p->o.derive != NULL)
			derive_retake(p->o.derive);
		submit_with(p, b, p->read_through + 1, p->read_through, derived, nderived, false);
	}
	out_remove(p, first_seq, last_seq);
	/* Its records are written again one by one, without the rate limit:
	 * a summary row in it is not there to add to. */
	if (p->limits != NULL && first_seq <= last_seq)
		ratelimit_reset_intervals(p->limits);
	if (first_seq > last_seq) {
		/* A transaction of derived events and states (checkpoint-only
		 * ones have no data to refuse): written again from what is held.
		 * The store logged the server's message as far as it may be. */
		log_error("pipeline", "derived rows refused by the database", "sqlstate=%s",
		    sqlstate);
		p->derived_refused = true;
		if (p->o.derive != NULL)
			derive_retake(p->o.derive);
		return;
	}
	if (first_seq >= last_seq) {
		if (first_seq == p->refused_quarantine) {
			/* Even its quarantine row was refused: nowhere to put it.
			 * It is not skipped; tried again after a pause. */
			log_error("pipeline", "quarantine row refused by the database, retrying",
			    "seq=%llu sqlstate=%s retry_in_ms=%d", (unsigned long long)first_seq,
			    sqlstate, PIPELINE_REFUSED_RETRY_MS);
			later(p, first_seq, last_seq);
			return;
		}
		/* One record (or none): it goes to quarantine with the reason. */
		snprintf(reason, sizeof(reason), "db_rejected:%s:%s", sqlstate, message);
		log_warn("pipeline", "record refused by the database, quarantined", "seq=%llu "
		    "sqlstate=%s", (unsigned long long)first_seq, sqlstate);
		p->refused_quarantine = first_seq;
		resubmit(p, first_seq, last_seq, reason);
		return;
	}
	uint64_t mid = first_seq + (last_seq - first_seq) / 2;
	log_info("pipeline", "splitting refused batch", "first_seq=%llu last_seq=%llu",
	    (unsigned long long)first_seq, (unsigned long long)last_seq);
	resubmit(p, first_seq, mid, NULL);
	resubmit(p, mid + 1, last_seq, NULL);
}

/* ---- the derived events' leases --------------------------------------- */

void
pipeline_set_lease(struct pipeline *p, struct store_lease *l)
{
	p->lease = l;
	p->lease_known = false;
	if (p->o.derive != NULL)
		derive_hold(p->o.derive, 0);
	if (p->wants == NULL)
		p->wants = util_calloc(STORE_LEASE_FETCH_DEVICES, sizeof(*p->wants));
}

void
pipeline_lease_leases(void *ctx, bool known, uint64_t shards, uint64_t reload, int peers)
{
	struct pipeline *p = ctx;

	p->lease_known = known;
	p->lease_shards = known ? shards : 0;
	p->peers = peers;
	if (p->o.derive == NULL)
		return;
	/* Taken over: evaluated once the rows the last holder wrote are in
	 * (still to come after a lapse; not if another instance has it now:
	 * taken back, it is reloaded again). */
	if (known)
		p->reloading = (p->reloading | reload) & shards;
	derive_hold(p->o.derive, p->lease_shards & ~p->reloading);
	if (reload != 0) {
		store_lease_reload(p->lease, reload);
		p->followed_us = 0;
	}
	if (known && p->reloading == 0)
		pipeline_kick(p);	/* reading was held back until now, maybe */
}

void
pipeline_lease_rows(void *ctx, const char *devices, const char *welfare, const char *reports,
    uint64_t shards)
{
	struct pipeline *p = ctx;
	struct derive *d = p->o.derive;

	if (d == NULL)
		return;
	shards &= p->reloading;
	if (derive_reload(d, devices, welfare, reports, shards, util_wall_us()) != 0)
		log_error("pipeline", "derived state unreadable, shards taken over afresh", "");
	p->reloading &= ~shards;
	derive_hold(d, p->lease_shards & ~p->reloading);
	p->followed_us = 0;	/* what the last holder had not seen yet, at the next tick */
	if (p->reloading == 0)
		pipeline_kick(p);
}

void
pipeline_lease_records(void *ctx, bool ok, const uint8_t *const *recs, const size_t *lens,
    size_t n)
{
	struct pipeline *p = ctx;
	struct derive *d = p->o.derive;

	if (d == NULL || !ok)
		return;		/* no tick without them: again at the next one */
	for (size_t i = 0; i < n; i++) {
		Event *ev = gridbridge__v1__event__unpack(NULL, lens[i], recs[i]);
		if (ev == NULL)
			continue;
		check_clock(p);
		derive_observe(d, ev, util_wall_us());
		gridbridge__v1__event__free_unpacked(ev, NULL);
	}
	if (p->derived_loaded && p->ready && !p->catching_up && store_ready(p->store))
		derive_now(p);
}

void
pipeline_lease_followed(void *ctx, bool gap, const uint8_t *const *recs, const size_t *lens,
    size_t n)
{
	struct pipeline *p = ctx;
	struct derive *d = p->o.derive;

	if (d == NULL)
		return;
	if (gap)
		p->followed_us = 0;	/* what may be missing: read back at the next tick */
	/* Only the shards evaluated now (not those whose rows are on their
	 * way: the reload replaces their state, then they are read back). */
	uint64_t held = p->derived_loaded && p->lease_known ? derive_held(d) : 0;
	if (held == 0)
		return;
	size_t observed = 0;
	for (size_t i = 0; i < n; i++) {
		Event *ev = gridbridge__v1__event__unpack(NULL, lens[i], recs[i]);
		if (ev == NULL)
			continue;
		const char *c = ev->community_id != NULL ? ev->community_id : "";
		const char *v = ev->device_id != NULL ? ev->device_id : "";
		unsigned shard = ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_REPORT ?
		    derive_shard("report", c, ev->report != NULL && ev->report->report_id != NULL ?
		    ev->report->report_id : "") : derive_device_shard(d, c, v);
		bool derived = ev->vendor != NULL && strcmp(ev->vendor, "gridbridge") == 0;
		if (!derived && (held & ((uint64_t)1 << shard)) != 0) {
			check_clock(p);
			derive_observe(d, ev, util_wall_us());
			observed++;
		}
		gridbridge__v1__event__free_unpacked(ev, NULL);
	}
	/* What they raised (a night's alert, a device gone offline) goes out
	 * now, not with the next tick (not while a record batch fills: it
	 * goes with it). */
	if (observed > 0 && p->ready && !p->catching_up && store_ready(p->store) && p->cur == NULL)
		flush_derived(p);
}

/* ---- life -------------------------------------------------------------- */

struct pipeline *
pipeline_new(struct event_base *base, const struct pipeline_options *o,
    struct journal *journal, struct store *store)
{
	struct pipeline *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->base = base;
	p->o = *o;
	if (p->o.batch_rows == 0)
		p->o.batch_rows = 1;
	if (p->o.max_backlog == 0)
		p->o.max_backlog = 1;
	p->journal = journal;
	p->store = store;
	struct journal_stat js;
	journal_stat(journal, &js);
	p->start_last_seq = js.last_seq;
	p->dir = strdup(o->journal_dir);
	p->node = strdup(o->node);
	snprintf(p->journal_id, sizeof(p->journal_id), "%s", journal_id(journal));
	p->repeats = repeats_new(o->repeat_max_topics);
	p->age = evtimer_new(base, age_cb, p);
	p->pump = event_new(base, -1, 0, pump_cb, p);
	p->later_ev = evtimer_new(base, later_cb, p);
	p->tick = evtimer_new(base, tick_cb, p);
	decode_out_init(&p->out);
	bool limited = o->rate_limit > 0;
	for (size_t i = 0; i < o->nroutes; i++)
		limited = limited || o->routes[i].rate_limit > 0;
	if (limited)
		p->limits = ratelimit_new(o->rate_devices > 0 ? o->rate_devices : 100000);
	if (o->rules != NULL && rules_max_targets(o->rules) > 0) {
		p->matches = calloc(rules_max_targets(o->rules), sizeof(*p->matches));
		if (p->matches == NULL) {
			pipeline_free(p);
			return NULL;
		}
	}
	if (p->dir == NULL || p->node == NULL || p->age == NULL || p->pump == NULL ||
	    p->later_ev == NULL || p->tick == NULL) {
		pipeline_free(p);
		return NULL;
	}
	if (o->clock_offset_file != NULL && o->clock_offset_file[0] != '\0')
		read_clock_offset(o->clock_offset_file);
	util_clock_step_us();	/* where steps are measured from */
	struct timeval tv = { .tv_sec = TICK_MS / 1000, .tv_usec = (TICK_MS % 1000) * 1000 };
	evtimer_add(p->tick, &tv);
	return p;
}

void
pipeline_free(struct pipeline *p)
{
	if (p == NULL)
		return;
	if (p->age != NULL)
		event_free(p->age);
	if (p->pump != NULL)
		event_free(p->pump);
	if (p->later_ev != NULL)
		event_free(p->later_ev);
	if (p->tick != NULL)
		event_free(p->tick);
	for (size_t i = 0; i < p->nout; i++)
		free_derived(p->outstanding[i].derived, p->outstanding[i].nderived);
	free(p->later);
	repeats_free(p->repeats);
	ratelimit_free(p->limits);
	store_batch_free(p->cur);
	journal_reader_free(p->reader);
	decode_out_free(&p->out);
	free(p->pack);
	free(p->matches);
	free(p->wants);
	free(p->outstanding);
	free(p->dir);
	free(p->node);
	free(p);
}
