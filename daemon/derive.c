/* derive.c — the events no device sends: see derive.h.
 *
 * State, all in memory, written as JSON rows (store_batch_set_states):
 *
 *   devices       a hash table by (community, device); bounded by
 *                 max_devices (a device past it is not tracked, and that
 *                 is logged by the caller from derive_devices()).
 *   households    one per [welfare HOUSEHOLD], in configuration order.
 *   reports       a hash table of the reports still open; handled or
 *                 closed ones leave it once written.
 *
 * Times: a device's state follows the receive time of its messages (the
 * daemon's clock, as its heartbeat timeout does); welfare follows the
 * event time of door openings (when the door opened) and the times of its
 * sensors' state changes; reports their deadlines.
 */
#include "derive.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "util.h"

typedef Gridbridge__V1__Event Event;

#define DEVICE_BUCKETS 4096
#define REPORT_BUCKETS 1024
#define US 1000000LL
/* Times outside year 1970..9999 are taken as its ends: no sum of a time
 * and a duration can overflow. */
#define TIME_MAX_US (253402300799LL * US)
/* A handled or closed report is kept this long (a late duplicate of its
 * opening must not open it again), then forgotten; the store loads those
 * done within it too. */
#define REPORT_KEEP_US (30 * 24 * 3600 * US)

enum dstate { ST_NONE = -1, ST_UNKNOWN = 0, ST_ONLINE = 1, ST_OFFLINE = 2 };
static const char *const state_names[] = { "unknown", "online", "offline" };
/* gridbridge.v1.StatusSource, as the devices table writes them. */
static const char *const source_names[] = { "", "lwt", "availability", "heartbeat", "timeout",
	"message" };
/* gridbridge.v1.DeviceClass, as the events table writes them. */
static const char *const class_names[DERIVE_CLASSES] = { "unspecified", "access_gate",
	"vehicle_barrier", "camera", "door_sensor", "peephole", "gateway", "report_point" };

struct device {
	struct device *next;
	char *community, *id;
	int cls;
	char *route, *vendor;
	bool expected;
	bool declared;			/* has a [device NAME] section */
	int64_t timeout_us;		/* declared; -1: the route's or the class's */
	int64_t created_us;
	int64_t first_seen_us, last_seen_us, written_seen_us;
	enum dstate state;
	int64_t since_us;
	int source;
	enum dstate pending;		/* ST_NONE: nothing pending */
	int64_t pending_us;
	int pending_source;
	int battery, lq;		/* -1: not known */
	int household;			/* the household it is a sensor of; -1: none */
	unsigned shard;			/* its household's, or its own (derive_device_shard) */
	bool dirty;			/* to be written */
	bool listed;			/* on the dirty list, or parked (shard not held) */
	struct device *next_dirty;
};

struct household {
	const struct derive_household *def;	/* in d->o */
	struct device **sensors;	/* def->sensors' devices; NULL: not heard from */
	size_t nsensors;
	int64_t last_activity_us;	/* 0: none seen */
	int64_t window_start_us;
	int alerts;			/* inactivity alerts raised in this window */
	int64_t alert_window_us;	/* the window of an alert not closed yet; 0: none */
	bool sensor_offline;		/* told for the outage under way */
	bool watching;			/* every sensor online */
	int64_t night_start_us;		/* the night the openings were counted in */
	int night_openings;
	bool night_alerted;
	unsigned shard;
	bool dirty;
};

struct report {
	struct report *next;
	char *community, *id;
	char *device, *building, *door, *category;
	int64_t opened_us, deadline_us, handled_us, closed_us, overdue_us;
	int64_t done_seen_us;		/* when it was known handled or closed (our clock) */
	unsigned shard;
	bool dirty;			/* to be written */
	bool listed;			/* on the dirty list, or parked (shard not held) */
	struct report *next_dirty;
};

struct derive {
	struct derive_options o;
	/* copies of what the options point to */
	struct derive_device_def *defs;
	struct derive_route_def *routes;
	struct derive_household *hdefs;
	char ***sensors;
	struct device *devices[DEVICE_BUCKETS];
	size_t ndevices, nonline;
	struct household *households;
	struct report *reports[REPORT_BUCKETS];
	/* What changed since the last take: no scan of everything per batch. */
	struct device *dirty_devices;
	struct report *dirty_reports;
	bool dirty_households;
	/* Changed, of shards not held: written once they are held again
	 * without being reloaded (derive_hold). */
	struct device *parked_devices;
	struct report *parked_reports;
	uint64_t held;			/* the shards evaluated here (bit n: shard n) */
	bool quiet;			/* observing what another instance evaluates */
	Event **events;			/* derived, not yet taken */
	size_t nevents, capevents;
};

/* ---- small things ------------------------------------------------------ */

static uint32_t
hash2(const char *a, const char *b)
{
	uint32_t h = 2166136261u;

	for (const char *p = a; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ 0xffu) * 16777619u;
	for (const char *p = b; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

static bool
held(const struct derive *d, unsigned shard)
{
	return (d->held >> (shard % DERIVE_SHARDS)) & 1u;
}

unsigned
derive_shard(const char *kind, const char *a, const char *b)
{
	uint32_t h = (hash2(kind, a) ^ 0xffu) * 16777619u;	/* kept apart from b */

	for (const char *p = b; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	/* FNV's low bits mix poorly on their own: fold the high ones in. */
	h ^= h >> 16;
	h ^= h >> 8;
	return h % DERIVE_SHARDS;
}

static int
household_of(const struct derive *d, const char *community, const char *device, size_t *k);

unsigned
derive_device_shard(const struct derive *d, const char *community, const char *device)
{
	int h = household_of(d, community, device, NULL);

	if (h >= 0)
		return derive_shard("household", d->hdefs[h].name, "");
	return derive_shard("device", community, device);
}

static int64_t
clamp_us(int64_t t)
{
	return t < 0 ? 0 : t > TIME_MAX_US ? TIME_MAX_US : t;
}

static char *
dup(const char *s)
{
	return util_strdup(s != NULL ? s : "");
}

/* Replaces *dst with a copy of `s` when they differ: true when it did. */
static bool
set_str(char **dst, const char *s)
{
	if (s == NULL || strcmp(*dst, s) == 0)
		return false;
	free(*dst);
	*dst = util_strdup(s);
	return true;
}

static void
put_field(struct sha256 *h, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);
	uint8_t len[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	sha256_update(h, len, 4);
	sha256_update(h, s, n);
}

static void
put_i64(struct sha256 *h, int64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
	sha256_update(h, b, 8);
}

/* A derived event's id (UUIDv8, as decode.c makes them, in a domain of
 * its own): what it is about and when it began. */
static void
derived_id(uint8_t id[16], const char *rule, const char *a, const char *b, const char *c,
    int64_t t, int64_t n)
{
	struct sha256 h;
	uint8_t d[32];

	sha256_init(&h);
	put_field(&h, "gridbridge/v1/derived");
	put_field(&h, rule);
	put_field(&h, a);
	put_field(&h, b);
	put_field(&h, c);
	put_i64(&h, t);
	put_i64(&h, n);
	sha256_final(&h, d);
	memcpy(id, d, 16);
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x80);	/* version 8 */
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);	/* variant 10 */
}

static int64_t clamp_us(int64_t t);

static int64_t
json_us(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? clamp_us((int64_t)json_integer_value(v)) : 0;
}

static const char *
json_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

static json_t *
us_or_null(int64_t us)
{
	return us != 0 ? json_integer(us) : json_null();
}

static int
index_of(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

static void
touch_device(struct derive *d, struct device *v)
{
	v->dirty = true;
	if (!v->listed) {
		struct device **list = held(d, v->shard) ? &d->dirty_devices : &d->parked_devices;
		v->listed = true;
		v->next_dirty = *list;
		*list = v;
	}
}

static void
touch_report(struct derive *d, struct report *r)
{
	r->dirty = true;
	if (!r->listed) {
		struct report **list = held(d, r->shard) ? &d->dirty_reports : &d->parked_reports;
		r->listed = true;
		r->next_dirty = *list;
		*list = r;
	}
}

static void
touch_household(struct derive *d, struct household *h)
{
	h->dirty = true;
	if (held(d, h->shard))
		d->dirty_households = true;
}

/* ---- derived events ---------------------------------------------------- */

static Event *
new_event(const uint8_t id[16], const char *community, const char *device, int cls,
    int type, int severity, const char *route, int64_t at_us, int64_t now_us)
{
	Event *ev = util_calloc(1, sizeof(*ev));

	gridbridge__v1__event__init(ev);
	ev->id.data = util_malloc(16);
	memcpy(ev->id.data, id, 16);
	ev->id.len = 16;
	ev->event_time_us = at_us;
	ev->received_time_us = now_us;
	ev->community_id = dup(community);
	ev->device_id = dup(device);
	ev->device_class = cls;
	ev->event_type = type;
	ev->severity = severity;
	ev->source_topic = dup("");
	ev->vendor = dup("gridbridge");
	ev->route = dup(route);
	return ev;
}

void derive_event_free(Event *ev);

static void
emit(struct derive *d, Event *ev)
{
	if (d->quiet) {
		/* Another instance evaluates it (derive_hold). */
		derive_event_free(ev);
		return;
	}
	if (d->nevents == d->capevents) {
		d->capevents = d->capevents ? 2 * d->capevents : 16;
		d->events = util_realloc(d->events, d->capevents * sizeof(*d->events));
	}
	d->events[d->nevents++] = ev;
}

void
derive_event_free(Event *ev)
{
	if (ev == NULL)
		return;
	free(ev->id.data);
	free(ev->community_id);
	free(ev->device_id);
	free(ev->source_topic);
	free(ev->vendor);
	free(ev->route);
	switch (ev->body_case) {
	case GRIDBRIDGE__V1__EVENT__BODY_STATUS:
		free(ev->status->reason);
		free(ev->status);
		break;
	case GRIDBRIDGE__V1__EVENT__BODY_WELFARE:
		free(ev->welfare->household);
		free(ev->welfare->sensor_device_id);
		free(ev->welfare);
		break;
	case GRIDBRIDGE__V1__EVENT__BODY_REPORT:
		free(ev->report->report_id);
		free(ev->report->building);
		free(ev->report->door);
		free(ev->report->category);
		free(ev->report);
		break;
	default:
		break;
	}
	free(ev);
}

/* ---- households (welfare) ---------------------------------------------- */

static void welfare_sensor(struct derive *d, struct household *h, const struct device *v,
    int64_t now_us);

/* The household whose sensor (community, device) is, and which of its
 * sensors in *k; -1: none. */
static int
household_of(const struct derive *d, const char *community, const char *device, size_t *k)
{
	for (size_t i = 0; i < d->o.nhouseholds; i++) {
		const struct derive_household *h = &d->hdefs[i];
		if (h->community[0] != '\0' && strcmp(h->community, community) != 0)
			continue;
		for (size_t j = 0; h->sensors[j] != NULL; j++) {
			if (strcmp(h->sensors[j], device) == 0) {
				if (k != NULL)
					*k = j;
				return (int)i;
			}
		}
	}
	return -1;
}

/* ---- the registry ------------------------------------------------------ */

static struct device *
device_find(const struct derive *d, const char *community, const char *id)
{
	for (struct device *v = d->devices[hash2(community, id) % DEVICE_BUCKETS]; v != NULL;
	    v = v->next)
		if (strcmp(v->id, id) == 0 && strcmp(v->community, community) == 0)
			return v;
	return NULL;
}

/* A device new to the registry (NULL when it is full). */
static struct device *
device_add(struct derive *d, const char *community, const char *id, int cls, int64_t now_us)
{
	if (d->ndevices >= d->o.max_devices)
		return NULL;
	struct device *v = util_calloc(1, sizeof(*v));
	uint32_t b = hash2(community, id) % DEVICE_BUCKETS;

	v->community = dup(community);
	v->id = dup(id);
	v->cls = cls >= 0 && cls < DERIVE_CLASSES ? cls : 0;
	v->route = dup("");
	v->vendor = dup("");
	v->timeout_us = -1;
	v->created_us = now_us;
	v->state = ST_UNKNOWN;
	v->pending = ST_NONE;
	v->battery = v->lq = -1;
	/* With a household of no community, a sensor id in two communities:
	 * the first device heard from (or loaded: oldest first) is its sensor,
	 * the other is no household's. */
	size_t k;
	v->household = household_of(d, community, id, &k);
	v->shard = derive_device_shard(d, community, id);
	if (v->household >= 0 && d->households[v->household].sensors[k] == NULL)
		d->households[v->household].sensors[k] = v;
	else
		v->household = -1;
	for (size_t i = 0; i < d->o.ndevices; i++) {
		const struct derive_device_def *def = &d->defs[i];
		if (strcmp(def->device, id) == 0 && strcmp(def->community, community) == 0) {
			v->timeout_us = def->timeout_us;
			v->expected = def->expected;
			v->declared = true;
			if (v->cls == 0)
				v->cls = def->device_class > 0 && def->device_class < DERIVE_CLASSES ?
				    def->device_class : 0;
		}
	}
	touch_device(d, v);
	v->next = d->devices[b];
	d->devices[b] = v;
	d->ndevices++;
	return v;
}

static int64_t
timeout_of(const struct derive *d, const struct device *v)
{
	if (v->timeout_us >= 0)
		return v->timeout_us;
	for (size_t i = 0; i < d->o.nroutes; i++)
		if (strcmp(d->routes[i].route, v->route) == 0)
			return d->routes[i].timeout_us;
	return d->o.class_timeout_us[v->cls];
}

/* The state of `v` is `s` since `since`: confirmed, written, told as one
 * device-status event, and to its household. */
static void
confirm(struct derive *d, struct device *v, enum dstate s, int64_t since, int source,
    const char *reason, int64_t now_us)
{
	v->pending = ST_NONE;
	touch_device(d, v);
	if (s == v->state)
		return;
	if (v->state == ST_ONLINE)
		d->nonline--;
	if (s == ST_ONLINE)
		d->nonline++;
	/* A device first heard from online is how the registry learns of it,
	 * not a change anybody waits for: its row says so, no event. */
	bool quiet = v->state == ST_UNKNOWN && s == ST_ONLINE;
	v->state = s;
	v->since_us = since;
	v->source = source;
	if (quiet) {
		if (v->household >= 0)
			welfare_sensor(d, &d->households[v->household], v, now_us);
		return;
	}

	uint8_t id[16];
	derived_id(id, "registry", v->community, v->id, state_names[s], since, 0);
	Event *ev = new_event(id, v->community, v->id, v->cls, s == ST_ONLINE ?
	    GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_ONLINE :
	    GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DEVICE_OFFLINE, s == ST_ONLINE ?
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO : GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE,
	    "registry", since, now_us);
	Gridbridge__V1__DeviceStatus *st = util_calloc(1, sizeof(*st));
	gridbridge__v1__device_status__init(st);
	st->state = s == ST_ONLINE ? GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_ONLINE :
	    GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	st->source = source;
	st->reason = dup(reason);
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_STATUS;
	ev->status = st;
	emit(d, ev);
	if (v->household >= 0)
		welfare_sensor(d, &d->households[v->household], v, now_us);
}

/* What a message (at `at`, our clock) says the state of `v` is. */
static void
want(struct derive *d, struct device *v, enum dstate s, int64_t at, int source, int64_t now_us)
{
	if (v->state != ST_UNKNOWN && at < v->since_us)
		return;		/* older than the state it is in: a replay */
	if (v->pending != ST_NONE) {
		if (at < v->pending_us)
			return;
		if (s == v->state) {
			v->pending = ST_NONE;	/* back within the hold-down: flapping */
			touch_device(d, v);
			return;
		}
		if (s == v->pending)
			return;		/* still going there, since earlier */
	}
	if (s == v->state)
		return;		/* a repeated report of the state it is in */
	if (d->o.hold_down_us == 0 || v->state == ST_UNKNOWN) {
		confirm(d, v, s, at, source, s == ST_ONLINE ? "message" : "reported offline",
		    now_us);
		return;
	}
	v->pending = s;
	v->pending_us = at;
	v->pending_source = source;
	touch_device(d, v);
}

static void
registry_tick(struct derive *d, struct device *v, int64_t now_us)
{
	if (v->pending != ST_NONE && now_us >= v->pending_us + d->o.hold_down_us)
		confirm(d, v, v->pending, v->pending_us, v->pending_source, v->pending == ST_ONLINE ?
		    "message" : "reported offline", now_us);
	int64_t to = timeout_of(d, v);
	enum dstate going = v->pending != ST_NONE ? v->pending : v->state;
	if (to > 0 && v->last_seen_us > 0 && going == ST_ONLINE && now_us >= v->last_seen_us + to) {
		/* Silence is its own hold-down: no flapping to wait out. */
		char reason[64];
		snprintf(reason, sizeof(reason), "no message within %llds",
		    (long long)(to / US));
		int64_t at = v->last_seen_us + to;
		if (v->state == ST_OFFLINE)
			v->pending = ST_NONE;	/* it never came back */
		else if (at >= v->since_us)
			confirm(d, v, ST_OFFLINE, at, GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_TIMEOUT,
			    reason, now_us);
		touch_device(d, v);
	}
	if (v->expected && v->first_seen_us == 0 && v->state == ST_UNKNOWN &&
	    now_us >= v->created_us + d->o.expected_grace_us)
		confirm(d, v, ST_OFFLINE, v->created_us + d->o.expected_grace_us,
		    GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_TIMEOUT, "never heard from", now_us);
}

static void
registry_observe(struct derive *d, const Event *ev, int64_t now_us)
{
	struct device *v = device_find(d, ev->community_id, ev->device_id);

	if (v == NULL && (v = device_add(d, ev->community_id, ev->device_id, ev->device_class,
	    now_us)) == NULL)
		return;
	int64_t t = clamp_us(ev->received_time_us);
	if (set_str(&v->route, ev->route))
		touch_device(d, v);
	if (set_str(&v->vendor, ev->vendor))
		touch_device(d, v);
	if (v->cls == 0 && ev->device_class > 0 && ev->device_class < DERIVE_CLASSES) {
		v->cls = ev->device_class;
		touch_device(d, v);
	}
	int battery = -1, lq = -1;
	if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_DOOR && ev->door != NULL) {
		battery = ev->door->battery_percent != NULL ? ev->door->battery_percent->value : -1;
		lq = ev->door->link_quality != NULL ? ev->door->link_quality->value : -1;
	} else if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_PEEPHOLE && ev->peephole != NULL &&
	    ev->peephole->battery_percent != NULL) {
		battery = ev->peephole->battery_percent->value;
	}
	if (battery >= 0 && battery != v->battery) {
		v->battery = battery;
		touch_device(d, v);
	}
	if (lq >= 0 && lq != v->lq) {
		v->lq = lq;
		touch_device(d, v);
	}

	bool offline = ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_STATUS && ev->status != NULL &&
	    ev->status->state == GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	if (!offline) {
		/* An LWT comes from the broker, not the device: not a sign of life. */
		if (v->first_seen_us == 0 || t < v->first_seen_us) {
			v->first_seen_us = t;
			touch_device(d, v);
		}
		if (t > v->last_seen_us) {
			v->last_seen_us = t;
			if (t - v->written_seen_us >= d->o.persist_every_us)
				touch_device(d, v);
		}
	}
	int source = GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_MESSAGE;
	if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_STATUS && ev->status != NULL &&
	    ev->status->source != GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_UNSPECIFIED)
		source = ev->status->source;
	want(d, v, offline ? ST_OFFLINE : ST_ONLINE, t, source, now_us);
}

/* ---- welfare ----------------------------------------------------------- */

static Event *
welfare_event(const struct household *h, const uint8_t id[16], int kind, int severity,
    const struct device *sensor, int64_t at_us, int64_t now_us)
{
	const struct derive_household *def = h->def;
	const struct device *v = sensor != NULL ? sensor : h->sensors[0];
	const char *device = v != NULL ? v->id : def->sensors[0];
	/* A household without a community has its sensor's. */
	const char *community = def->community[0] != '\0' || v == NULL ? def->community :
	    v->community;
	Event *ev = new_event(id, community, device,
	    GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_DOOR_SENSOR,
	    GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_WELFARE_ALERT, severity, "welfare", at_us, now_us);
	Gridbridge__V1__WelfareAlert *w = util_calloc(1, sizeof(*w));

	gridbridge__v1__welfare_alert__init(w);
	w->kind = kind;
	w->household = dup(def->name);
	w->last_activity_us = h->last_activity_us;
	w->window_sec = def->inactive_us / US;
	w->sensor_device_id = dup(device);
	w->window_start_us = h->window_start_us;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_WELFARE;
	ev->welfare = w;
	return ev;
}

/* Are all the household's sensors online? */
static bool
sensors_online(const struct household *h)
{
	for (size_t k = 0; k < h->nsensors; k++)
		if (h->sensors[k] == NULL || h->sensors[k]->state != ST_ONLINE)
			return false;
	return h->nsensors > 0;
}

/* A sensor of `h` changed state (confirmed): offline raises one
 * sensor_offline event for the outage; all online starts the watch, and
 * with it a new window (the time nobody could watch is not inactivity). */
static void
welfare_sensor(struct derive *d, struct household *h, const struct device *v, int64_t now_us)
{
	uint8_t id[16];

	if (v->state == ST_OFFLINE) {
		h->watching = false;
		touch_household(d, h);
		if (h->sensor_offline)
			return;
		h->sensor_offline = true;
		derived_id(id, "welfare-offline", h->def->name, v->id, "", v->since_us, 0);
		emit(d, welfare_event(h, id, GRIDBRIDGE__V1__WELFARE_KIND__WELFARE_KIND_SENSOR_OFFLINE,
		    GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING, v, v->since_us, now_us));
		return;
	}
	if (v->state == ST_ONLINE && !h->watching && sensors_online(h)) {
		h->watching = true;
		h->sensor_offline = false;
		if (v->since_us > h->window_start_us) {
			h->window_start_us = v->since_us;
			h->alerts = 0;
		}
		touch_household(d, h);
	}
}

/* The night window containing local minute `m`? Its start (UTC) for the
 * night that holds `t`, else 0. */
static int64_t
night_of(const struct derive_household *def, int64_t t)
{
	if (def->night_start_min < 0)
		return 0;
	int64_t local_s = t / US + def->tz_offset_s;
	int64_t day = local_s >= 0 ? local_s / 86400 : (local_s - 86399) / 86400;
	int m = (int)((local_s - day * 86400) / 60);
	int s = def->night_start_min, e = def->night_end_min;
	int64_t start_day;
	if (s < e) {
		if (m < s || m >= e)
			return 0;
		start_day = day;
	} else {
		if (m >= s)
			start_day = day;
		else if (m < e)
			start_day = day - 1;
		else
			return 0;
	}
	return ((start_day * 86400 + (int64_t)s * 60) - def->tz_offset_s) * US;
}

/* A door of `h` opened at `t`: activity. It closes an alert not yet
 * closed and starts a new window (unless it is older than the window,
 * which began when the sensors were online again), and counts for the
 * night. An opening not after the last one is a replay: nothing. */
static void
welfare_opened(struct derive *d, struct household *h, const struct device *sensor, int64_t t,
    int64_t now_us)
{
	uint8_t id[16];

	if (t == 0 || t <= h->last_activity_us)
		return;		/* no time, or not after the last one: a replay */
	h->last_activity_us = t;
	touch_household(d, h);
	if (h->alert_window_us != 0) {
		derived_id(id, "welfare-resumed", h->def->name, "", "", h->alert_window_us, 0);
		Event *ev = welfare_event(h, id,
		    GRIDBRIDGE__V1__WELFARE_KIND__WELFARE_KIND_ACTIVITY_RESUMED,
		    GRIDBRIDGE__V1__SEVERITY__SEVERITY_INFO, sensor, t, now_us);
		ev->welfare->window_start_us = h->alert_window_us;
		emit(d, ev);
		h->alert_window_us = 0;
	}
	if (t >= h->window_start_us) {
		h->window_start_us = t;
		h->alerts = 0;
	}

	int64_t night = night_of(h->def, t);
	if (night == 0)
		return;
	if (night != h->night_start_us) {
		h->night_start_us = night;
		h->night_openings = 0;
		h->night_alerted = false;
	}
	h->night_openings++;
	if (h->night_openings > h->def->night_openings && !h->night_alerted) {
		h->night_alerted = true;
		derived_id(id, "welfare-night", h->def->name, "", "", night, 0);
		Event *ev = welfare_event(h, id, GRIDBRIDGE__V1__WELFARE_KIND__WELFARE_KIND_NIGHT_ACTIVITY,
		    GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING, sensor, t, now_us);
		ev->welfare->openings = h->night_openings;
		emit(d, ev);
	}
}

static void
welfare_tick(struct derive *d, struct household *h, int64_t now_us)
{
	const struct derive_household *def = h->def;

	if (!h->watching || h->window_start_us == 0)
		return;
	int64_t due = h->window_start_us + def->inactive_us;
	if (now_us < due)
		return;
	/* After a downtime, the repeat due now; not each one missed. */
	int64_t k = def->repeat_us > 0 ? (now_us - due) / def->repeat_us : 0;
	if (h->alerts > k)
		return;
	uint8_t id[16];
	derived_id(id, "welfare-inactive", def->name, "", "", h->window_start_us, k);
	Event *ev = welfare_event(h, id, GRIDBRIDGE__V1__WELFARE_KIND__WELFARE_KIND_INACTIVITY,
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_WARNING, NULL, due + k * def->repeat_us, now_us);
	ev->welfare->repeat = (int32_t)k;
	emit(d, ev);
	h->alerts = (int)k + 1;
	h->alert_window_us = h->window_start_us;
	touch_household(d, h);
}

/* ---- reports ----------------------------------------------------------- */

static struct report **
report_slot(struct derive *d, const char *community, const char *id)
{
	struct report **at = &d->reports[hash2(community, id) % REPORT_BUCKETS];

	while (*at != NULL && (strcmp((*at)->id, id) != 0 || strcmp((*at)->community, community)))
		at = &(*at)->next;
	return at;
}

static struct report *
report_get(struct derive *d, const char *community, const char *id)
{
	struct report **at = report_slot(d, community, id);

	if (*at == NULL) {
		struct report *r = util_calloc(1, sizeof(*r));
		r->community = dup(community);
		r->id = dup(id);
		r->device = dup("");
		r->building = dup("");
		r->door = dup("");
		r->category = dup("");
		r->shard = derive_shard("report", community, id);
		*at = r;
	}
	return *at;
}

static void
report_free(struct report *r)
{
	free(r->community);
	free(r->id);
	free(r->device);
	free(r->building);
	free(r->door);
	free(r->category);
	free(r);
}

/* Takes `v` when it is set (the platform's latest word wins). */
static void
merge_us(struct derive *d, struct report *r, int64_t *dst, int64_t v)
{
	if (v != 0 && *dst != v) {
		*dst = v;
		touch_report(d, r);
	}
}

static void
set_text(struct derive *d, struct report *r, char **dst, const char *v)
{
	if (v != NULL && v[0] != '\0' && set_str(dst, v))
		touch_report(d, r);
}

static void
report_observe(struct derive *d, const Event *ev, int64_t now_us)
{
	const Gridbridge__V1__ResidentReport *rr = ev->report;

	if (rr == NULL || rr->report_id == NULL || rr->report_id[0] == '\0')
		return;
	struct report *r = report_get(d, ev->community_id, rr->report_id);
	set_text(d, r, &r->device, ev->device_id);
	set_text(d, r, &r->building, rr->building);
	set_text(d, r, &r->door, rr->door);
	set_text(d, r, &r->category, rr->category);
	merge_us(d, r, &r->opened_us, clamp_us(rr->opened_us));
	merge_us(d, r, &r->deadline_us, clamp_us(rr->deadline_us));
	merge_us(d, r, &r->handled_us, clamp_us(rr->handled_us));
	merge_us(d, r, &r->closed_us, clamp_us(rr->closed_us));
	int64_t t = clamp_us(ev->event_time_us);
	if (ev->event_type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_HANDLED &&
	    r->handled_us == 0)
		merge_us(d, r, &r->handled_us, t);
	if (ev->event_type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_CLOSED &&
	    r->closed_us == 0)
		merge_us(d, r, &r->closed_us, t);
	if (ev->event_type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_OPENED &&
	    r->opened_us == 0)
		merge_us(d, r, &r->opened_us, t);
	if ((r->handled_us != 0 || r->closed_us != 0) && r->done_seen_us == 0)
		r->done_seen_us = now_us;
}

static void
report_tick(struct derive *d, struct report *r, int64_t now_us)
{
	if (r->deadline_us == 0 || r->handled_us != 0 || r->closed_us != 0 ||
	    r->overdue_us != 0 || now_us < r->deadline_us)
		return;
	uint8_t id[16];
	derived_id(id, "report-overdue", r->community, r->id, "", 0, 0);
	Event *ev = new_event(id, r->community, r->device,
	    GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_REPORT_POINT,
	    GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_REPORT_OVERDUE,
	    GRIDBRIDGE__V1__SEVERITY__SEVERITY_NOTICE, "reports", r->deadline_us, now_us);
	Gridbridge__V1__ResidentReport *rr = util_calloc(1, sizeof(*rr));
	gridbridge__v1__resident_report__init(rr);
	rr->report_id = dup(r->id);
	rr->building = dup(r->building);
	rr->door = dup(r->door);
	rr->category = dup(r->category);
	rr->opened_us = r->opened_us;
	rr->deadline_us = r->deadline_us;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_REPORT;
	ev->report = rr;
	emit(d, ev);
	r->overdue_us = now_us;
	touch_report(d, r);
}

/* ---- the interface ----------------------------------------------------- */

static void observe_device(struct derive *d, const Event *ev, int64_t now_us);

void
derive_enrich(struct derive *d, Event *ev)
{
	if (ev->body_case != GRIDBRIDGE__V1__EVENT__BODY_PEEPHOLE || ev->peephole == NULL ||
	    (ev->peephole->household != NULL && ev->peephole->household[0] != '\0'))
		return;
	for (size_t i = 0; i < d->o.nhouseholds; i++) {
		const struct derive_household *h = &d->hdefs[i];
		if (h->peephole != NULL && strcmp(h->peephole, ev->device_id) == 0 &&
		    (h->community[0] == '\0' || strcmp(h->community, ev->community_id) == 0)) {
			/* The household's name outlives the record (the options' copy). */
			ev->peephole->household = (char *)h->name;
			return;
		}
	}
}

void
derive_observe(struct derive *d, const Event *ev, int64_t now_us)
{
	now_us = clamp_us(now_us);
	if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_REPORT) {
		const char *id = ev->report != NULL && ev->report->report_id != NULL ?
		    ev->report->report_id : "";
		d->quiet = !held(d, derive_shard("report", ev->community_id, id));
		report_observe(d, ev, now_us);
		d->quiet = false;
		return;
	}
	const struct device *known = device_find(d, ev->community_id, ev->device_id);
	d->quiet = !held(d, known != NULL ? known->shard :
	    derive_device_shard(d, ev->community_id, ev->device_id));
	observe_device(d, ev, now_us);
	d->quiet = false;
}

static void
observe_device(struct derive *d, const Event *ev, int64_t now_us)
{
	if (ev->device_class == GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_REPORT_POINT)
		return;		/* a QR code is not a device that comes and goes */
	/* The opening first: when its message also brings the sensor back
	 * online, it still closes the alert of before. */
	if (ev->event_type == GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_DOOR_OPENED) {
		struct device *v = device_find(d, ev->community_id, ev->device_id);
		if (v == NULL)
			v = device_add(d, ev->community_id, ev->device_id, ev->device_class, now_us);
		/* A device clock far off is not when the door opened. */
		int64_t t = clamp_us(ev->clock_skewed ? ev->received_time_us : ev->event_time_us);
		if (v != NULL && v->household >= 0)
			welfare_opened(d, &d->households[v->household], v, t, now_us);
	}
	registry_observe(d, ev, now_us);
}

void
derive_tick(struct derive *d, int64_t now_us)
{
	now_us = clamp_us(now_us);
	for (size_t b = 0; b < DEVICE_BUCKETS; b++)
		for (struct device *v = d->devices[b]; v != NULL; v = v->next)
			if (held(d, v->shard))
				registry_tick(d, v, now_us);
	for (size_t i = 0; i < d->o.nhouseholds; i++)
		if (held(d, d->households[i].shard))
			welfare_tick(d, &d->households[i], now_us);
	for (size_t b = 0; b < REPORT_BUCKETS; b++) {
		struct report **at = &d->reports[b];
		while (*at != NULL) {
			struct report *r = *at;
			if (held(d, r->shard))
				report_tick(d, r, now_us);
			/* Handled or closed a while ago, and written: forgotten. */
			if (r->done_seen_us != 0 && !r->listed &&
			    now_us - r->done_seen_us >= REPORT_KEEP_US) {
				*at = r->next;
				report_free(r);
			} else {
				at = &r->next;
			}
		}
	}
}

/* A time the daemon took from its clock, in the clock's new scale: moved
 * by the step (0, not set, stays 0). */
static bool
shift_us(int64_t *t, int64_t step_us)
{
	if (*t == 0)
		return false;
	int64_t v = clamp_us(*t + step_us);

	if (v == 0)
		v = 1;		/* still set */
	if (v == *t)
		return false;
	*t = v;
	return true;
}

void
derive_clock_stepped(struct derive *d, int64_t step_us)
{
	if (step_us == 0)
		return;
	/* Within the years derive.h takes: no overflow below. */
	if (step_us > TIME_MAX_US)
		step_us = TIME_MAX_US;
	if (step_us < -TIME_MAX_US)
		step_us = -TIME_MAX_US;
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		for (struct device *v = d->devices[b]; v != NULL; v = v->next) {
			bool changed = false;
			changed |= shift_us(&v->created_us, step_us);
			changed |= shift_us(&v->first_seen_us, step_us);
			changed |= shift_us(&v->last_seen_us, step_us);
			changed |= shift_us(&v->since_us, step_us);
			if (v->pending != ST_NONE)
				changed |= shift_us(&v->pending_us, step_us);
			/* What the database has, in the new scale: last_seen alone
			 * is written persist_every after it, as before. */
			shift_us(&v->written_seen_us, step_us);
			if (changed)
				touch_device(d, v);
		}
	}
	for (size_t i = 0; i < d->o.nhouseholds; i++) {
		struct household *h = &d->households[i];
		bool changed = false;
		changed |= shift_us(&h->last_activity_us, step_us);
		changed |= shift_us(&h->window_start_us, step_us);
		if (changed)
			touch_household(d, h);
	}
	/* Only when it was known done is the daemon's; the rest is the report
	 * platform's. Not a column: nothing to write. */
	for (size_t b = 0; b < REPORT_BUCKETS; b++)
		for (struct report *r = d->reports[b]; r != NULL; r = r->next)
			shift_us(&r->done_seen_us, step_us);
}

bool
derive_pending(const struct derive *d)
{
	return d->nevents > 0 || d->dirty_devices != NULL || d->dirty_reports != NULL ||
	    d->dirty_households;
}

static char *
dump_or_null(json_t *arr)
{
	char *s = NULL;

	if (json_array_size(arr) > 0 && (s = json_dumps(arr, JSON_COMPACT)) == NULL)
		util_oom(0);
	json_decref(arr);
	return s;
}

static json_t *
device_json(const struct device *v)
{
	json_t *o = json_object();

	json_object_set_new(o, "community_id", json_string(v->community));
	json_object_set_new(o, "device_id", json_string(v->id));
	json_object_set_new(o, "device_class", json_string(class_names[v->cls]));
	json_object_set_new(o, "route", json_string(v->route));
	json_object_set_new(o, "vendor", json_string(v->vendor));
	json_object_set_new(o, "expected", json_boolean(v->expected));
	json_object_set_new(o, "first_seen_us", us_or_null(v->first_seen_us));
	json_object_set_new(o, "last_seen_us", us_or_null(v->last_seen_us));
	json_object_set_new(o, "state", json_string(state_names[v->state]));
	json_object_set_new(o, "state_since_us", json_integer(v->state != ST_UNKNOWN ?
	    v->since_us : v->created_us));
	json_object_set_new(o, "state_source", json_string(source_names[v->source >= 0 &&
	    v->source < 6 ? v->source : 0]));
	json_object_set_new(o, "pending_state", v->pending != ST_NONE ?
	    json_string(state_names[v->pending]) : json_null());
	json_object_set_new(o, "pending_since_us", v->pending != ST_NONE ?
	    json_integer(v->pending_us) : json_null());
	json_object_set_new(o, "pending_source", v->pending != ST_NONE ?
	    json_string(source_names[v->pending_source >= 0 && v->pending_source < 6 ?
	    v->pending_source : 0]) : json_null());
	json_object_set_new(o, "battery_percent", v->battery >= 0 ? json_integer(v->battery) :
	    json_null());
	json_object_set_new(o, "link_quality", v->lq >= 0 ? json_integer(v->lq) : json_null());
	json_object_set_new(o, "created_us", json_integer(v->created_us));
	return o;
}

size_t
derive_take(struct derive *d, Event ***events, char **devices, char **welfare, char **reports)
{
	json_t *dv = json_array(), *wf = json_array(), *rp = json_array();

	while (d->dirty_devices != NULL) {
		struct device *v = d->dirty_devices;
		d->dirty_devices = v->next_dirty;
		v->listed = false;
		if (!v->dirty)
			continue;
		if (!held(d, v->shard)) {
			touch_device(d, v);	/* parked */
			continue;
		}
		json_array_append_new(dv, device_json(v));
		v->dirty = false;
		v->written_seen_us = v->last_seen_us;
	}
	for (size_t i = 0; d->dirty_households && i < d->o.nhouseholds; i++) {
		struct household *h = &d->households[i];
		if (!h->dirty || !held(d, h->shard))
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "household", json_string(h->def->name));
		json_object_set_new(o, "community_id", json_string(h->def->community));
		json_object_set_new(o, "last_activity_us", us_or_null(h->last_activity_us));
		json_object_set_new(o, "window_start_us", json_integer(h->window_start_us));
		json_object_set_new(o, "alerts", json_integer(h->alerts));
		json_object_set_new(o, "alert_window_us", us_or_null(h->alert_window_us));
		json_object_set_new(o, "sensor_offline", json_boolean(h->sensor_offline));
		json_object_set_new(o, "night_start_us", us_or_null(h->night_start_us));
		json_object_set_new(o, "night_openings", json_integer(h->night_openings));
		json_object_set_new(o, "night_alerted", json_boolean(h->night_alerted));
		json_array_append_new(wf, o);
		h->dirty = false;
	}
	d->dirty_households = false;
	while (d->dirty_reports != NULL) {
		struct report *r = d->dirty_reports;
		d->dirty_reports = r->next_dirty;
		r->listed = false;
		if (r->dirty && !held(d, r->shard)) {
			touch_report(d, r);	/* parked */
		} else if (r->dirty) {
			json_t *o = json_object();
			json_object_set_new(o, "community_id", json_string(r->community));
			json_object_set_new(o, "report_id", json_string(r->id));
			json_object_set_new(o, "device_id", json_string(r->device));
			json_object_set_new(o, "building", json_string(r->building));
			json_object_set_new(o, "door", json_string(r->door));
			json_object_set_new(o, "category", json_string(r->category));
			json_object_set_new(o, "opened_us", us_or_null(r->opened_us));
			json_object_set_new(o, "deadline_us", us_or_null(r->deadline_us));
			json_object_set_new(o, "handled_us", us_or_null(r->handled_us));
			json_object_set_new(o, "closed_us", us_or_null(r->closed_us));
			json_object_set_new(o, "overdue_us", us_or_null(r->overdue_us));
			json_array_append_new(rp, o);
			r->dirty = false;
		}
	}
	*devices = dump_or_null(dv);
	*welfare = dump_or_null(wf);
	*reports = dump_or_null(rp);
	*events = d->events;
	size_t n = d->nevents;
	d->events = NULL;
	d->nevents = d->capevents = 0;
	return n;
}

void
derive_retake(struct derive *d)
{
	for (size_t b = 0; b < DEVICE_BUCKETS; b++)
		for (struct device *v = d->devices[b]; v != NULL; v = v->next)
			touch_device(d, v);
	for (size_t i = 0; i < d->o.nhouseholds; i++)
		touch_household(d, &d->households[i]);
	for (size_t b = 0; b < REPORT_BUCKETS; b++)
		for (struct report *r = d->reports[b]; r != NULL; r = r->next)
			touch_report(d, r);
}

/* ---- shards (several instances) ---------------------------------------- */

void
derive_hold(struct derive *d, uint64_t shards)
{
	uint64_t gained = shards & ~d->held;

	d->held = shards;
	if (gained == 0)
		return;
	/* What changed while another instance had them is written now. */
	struct device *pv = d->parked_devices;
	d->parked_devices = NULL;
	while (pv != NULL) {
		struct device *v = pv;
		pv = v->next_dirty;
		v->listed = false;
		if (v->dirty)
			touch_device(d, v);
	}
	struct report *pr = d->parked_reports;
	d->parked_reports = NULL;
	while (pr != NULL) {
		struct report *r = pr;
		pr = r->next_dirty;
		r->listed = false;
		if (r->dirty)
			touch_report(d, r);
	}
	for (size_t i = 0; i < d->o.nhouseholds; i++)
		if (d->households[i].dirty && held(d, d->households[i].shard))
			d->dirty_households = true;
}

uint64_t
derive_held(const struct derive *d)
{
	return d->held;
}

static bool in_shards(uint64_t shards, unsigned shard)
{
	return (shards >> (shard % DERIVE_SHARDS)) & 1u;
}

static void load_device(struct derive *d, json_t *o, bool replace);
static void load_household(struct derive *d, json_t *o);
static void load_report(struct derive *d, json_t *o, int64_t now_us);
static int parse_rows(const char *devices, const char *welfare, const char *reports,
    json_t **dv, json_t **wf, json_t **rp);
static bool sensors_online(const struct household *h);

int
derive_reload(struct derive *d, const char *devices, const char *welfare, const char *reports,
    uint64_t shards, int64_t now_us)
{
	json_t *dv, *wf, *rp, *o;
	size_t i;

	if (parse_rows(devices, welfare, reports, &dv, &wf, &rp) != 0)
		return -1;
	now_us = clamp_us(now_us);
	/* What this instance made of its share of the stream is no one's
	 * word: the rows are. A device without a row is as if first heard
	 * from (its next message sets its state, quietly). */
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		for (struct device *v = d->devices[b]; v != NULL; v = v->next) {
			if (!in_shards(shards, v->shard))
				continue;
			if (v->state == ST_ONLINE)
				d->nonline--;
			v->state = ST_UNKNOWN;
			v->pending = ST_NONE;
			v->since_us = 0;
			v->dirty = false;
		}
	}
	json_array_foreach(dv, i, o) {
		if (!json_is_object(o))
			continue;
		const char *community = json_str(o, "community_id"), *id = json_str(o, "device_id");
		if (in_shards(shards, derive_device_shard(d, community, id)))
			load_device(d, o, true);
	}
	for (size_t k = 0; k < d->o.nhouseholds; k++) {
		struct household *h = &d->households[k];
		if (!in_shards(shards, h->shard))
			continue;
		int64_t window = clamp_us(now_us);
		h->last_activity_us = 0;
		h->window_start_us = window;
		h->alerts = 0;
		h->alert_window_us = 0;
		h->sensor_offline = false;
		h->night_start_us = 0;
		h->night_openings = 0;
		h->night_alerted = false;
		h->dirty = false;
	}
	json_array_foreach(wf, i, o) {
		if (!json_is_object(o))
			continue;
		const char *name = json_str(o, "household");
		if (in_shards(shards, derive_shard("household", name, "")))
			load_household(d, o);
	}
	for (size_t k = 0; k < d->o.nhouseholds; k++) {
		struct household *h = &d->households[k];
		if (in_shards(shards, h->shard))
			h->watching = sensors_online(h);
	}
	json_array_foreach(rp, i, o) {
		if (!json_is_object(o))
			continue;
		const char *community = json_str(o, "community_id"), *id = json_str(o, "report_id");
		if (in_shards(shards, derive_shard("report", community, id)))
			load_report(d, o, now_us);
	}
	json_decref(dv);
	json_decref(wf);
	json_decref(rp);
	return 0;
}

/* One entry of derive_wanted's list, when there is room. */
static void
want_records(struct derive_want *out, size_t max, size_t *n, const char *community,
    const char *device, int64_t since_us)
{
	if (*n >= max || device == NULL || device[0] == '\0')
		return;
	out[*n].community = community;
	out[*n].device = device;
	out[*n].since_us = since_us;
	(*n)++;
}

size_t
derive_wanted(const struct derive *d, int64_t now_us, bool follow, struct derive_want *out,
    size_t max)
{
	size_t n = 0;

	now_us = clamp_us(now_us);
	/* Due first: what the next tick would raise. */
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		for (const struct device *v = d->devices[b]; v != NULL; v = v->next) {
			if (!held(d, v->shard))
				continue;
			int64_t to = timeout_of(d, v);
			enum dstate going = v->pending != ST_NONE ? v->pending : v->state;
			if (v->pending != ST_NONE && now_us >= v->pending_us + d->o.hold_down_us)
				want_records(out, max, &n, v->community, v->id, v->pending_us);
			else if (to > 0 && v->last_seen_us > 0 && going == ST_ONLINE &&
			    now_us >= v->last_seen_us + to)
				want_records(out, max, &n, v->community, v->id, v->last_seen_us);
			else if (v->expected && v->first_seen_us == 0 && v->state == ST_UNKNOWN &&
			    now_us >= v->created_us + d->o.expected_grace_us)
				want_records(out, max, &n, v->community, v->id, v->created_us);
		}
	}
	for (size_t i = 0; i < d->o.nhouseholds; i++) {
		const struct household *h = &d->households[i];
		const struct derive_household *def = h->def;
		if (!held(d, h->shard))
			continue;
		/* As welfare_tick: an alert (or repeat) not raised yet. */
		int64_t at = h->window_start_us + def->inactive_us;
		bool due = h->watching && h->window_start_us != 0 && now_us >= at &&
		    h->alerts <= (def->repeat_us > 0 ? (now_us - at) / def->repeat_us : 0);
		if (!due && !(follow && h->alert_window_us != 0))
			continue;
		int64_t since = h->last_activity_us > 0 ? h->last_activity_us : h->window_start_us;
		for (size_t k = 0; k < h->nsensors; k++) {
			const struct device *v = h->sensors[k];
			want_records(out, max, &n, v != NULL ? v->community : def->community,
			    def->sensors[k], since);
		}
	}
	for (size_t b = 0; b < REPORT_BUCKETS; b++) {
		for (const struct report *r = d->reports[b]; r != NULL; r = r->next) {
			if (!held(d, r->shard) || r->deadline_us == 0 || r->handled_us != 0 ||
			    r->closed_us != 0 || r->overdue_us != 0 || now_us < r->deadline_us)
				continue;
			want_records(out, max, &n, r->community, r->device, r->opened_us);
		}
	}
	if (!follow)
		return n;
	/* Then what a message elsewhere ends: an offline device coming back. */
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		for (const struct device *v = d->devices[b]; v != NULL; v = v->next) {
			if (held(d, v->shard) && v->state == ST_OFFLINE && v->pending == ST_NONE)
				want_records(out, max, &n, v->community, v->id,
				    v->since_us > v->last_seen_us ? v->since_us : v->last_seen_us);
		}
	}
	return n;
}

size_t
derive_devices(const struct derive *d, size_t *online)
{
	if (online != NULL)
		*online = d->nonline;
	return d->ndevices;
}

#define CENSUS_SLOTS 2048	/* open addressing: at most half full */

size_t
derive_census(const struct derive *d, struct derive_census *out, size_t max)
{
	int32_t slot[CENSUS_SLOTS];
	size_t n = 0;

	if (max > CENSUS_SLOTS / 2)
		max = CENSUS_SLOTS / 2;
	for (size_t i = 0; i < CENSUS_SLOTS; i++)
		slot[i] = -1;
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		for (const struct device *v = d->devices[b]; v != NULL; v = v->next) {
			char cls[4] = { (char)('0' + v->cls % 10), '\0' };
			uint32_t h = hash2(v->community, cls) % CENSUS_SLOTS;
			while (slot[h] >= 0 && (out[slot[h]].device_class != v->cls ||
			    strcmp(out[slot[h]].community, v->community) != 0))
				h = (h + 1) % CENSUS_SLOTS;
			if (slot[h] < 0) {
				if (n == max)
					continue;
				out[n] = (struct derive_census){ .community = v->community,
					.device_class = v->cls };
				slot[h] = (int32_t)n++;
			}
			out[slot[h]].total++;
			if (v->state == ST_ONLINE)
				out[slot[h]].online++;
		}
	}
	return n;
}

/* ---- loading ----------------------------------------------------------- */

static json_t *
parse_array(const char *text)
{
	json_error_t err;

	if (text == NULL || text[0] == '\0')
		return json_array();
	json_t *a = json_loads(text, 0, &err);
	if (!json_is_array(a)) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* The derived state's rows as derive_load and derive_reload take them:
 * 0, or -1 when one is not a JSON array (none is kept). */
static int
parse_rows(const char *devices, const char *welfare, const char *reports, json_t **dv,
    json_t **wf, json_t **rp)
{
	*dv = parse_array(devices);
	*wf = parse_array(welfare);
	*rp = parse_array(reports);
	if (*dv != NULL && *wf != NULL && *rp != NULL)
		return 0;
	json_decref(*dv);
	json_decref(*wf);
	json_decref(*rp);
	return -1;
}

/* A devices row. `replace` (derive_reload): a device already known takes
 * the row's state (its own last sighting kept when later); else it is
 * left as it is (one row per device). */
static void
load_device(struct derive *d, json_t *o, bool replace)
{
	int cls = index_of(class_names, DERIVE_CLASSES, json_str(o, "device_class"));
	const char *community = json_str(o, "community_id"), *id = json_str(o, "device_id");
	struct device *v = device_find(d, community, id);
	int64_t seen = 0, first = 0;

	if (v != NULL && !replace)
		return;		/* one row per device */
	if (v != NULL) {
		seen = v->last_seen_us;
		first = v->first_seen_us;
		if (v->state == ST_ONLINE)
			d->nonline--;
		v->state = ST_UNKNOWN;
		v->pending = ST_NONE;
	} else if ((v = device_add(d, community, id, cls, json_us(o, "created_us"))) == NULL) {
		return;
	}
	free(v->route);
	free(v->vendor);
	v->route = dup(json_str(o, "route"));
	v->vendor = dup(json_str(o, "vendor"));
	v->expected = json_is_true(json_object_get(o, "expected"));
	v->first_seen_us = json_us(o, "first_seen_us");
	if (first != 0 && (v->first_seen_us == 0 || first < v->first_seen_us))
		v->first_seen_us = first;
	v->last_seen_us = v->written_seen_us = json_us(o, "last_seen_us");
	if (seen > v->last_seen_us)
		v->last_seen_us = seen;
	int s = index_of(state_names, 3, json_str(o, "state"));
	v->state = s >= 0 ? (enum dstate)s : ST_UNKNOWN;
	if (v->state == ST_ONLINE)
		d->nonline++;
	v->since_us = json_us(o, "state_since_us");
	int src = index_of(source_names, 6, json_str(o, "state_source"));
	v->source = src >= 0 ? src : 0;
	int p = index_of(state_names, 3, json_str(o, "pending_state"));
	if (p == ST_ONLINE || p == ST_OFFLINE) {
		v->pending = (enum dstate)p;
		v->pending_us = json_us(o, "pending_since_us");
		src = index_of(source_names, 6, json_str(o, "pending_source"));
		v->pending_source = src >= 0 ? src : 0;
	}
	json_t *b = json_object_get(o, "battery_percent"), *q = json_object_get(o, "link_quality");
	v->battery = json_is_integer(b) ? (int)json_integer_value(b) : -1;
	v->lq = json_is_integer(q) ? (int)json_integer_value(q) : -1;
	v->dirty = false;
}

static void
load_household(struct derive *d, json_t *o)
{
	const char *name = json_str(o, "household");

	for (size_t i = 0; i < d->o.nhouseholds; i++) {
		struct household *h = &d->households[i];
		if (strcmp(h->def->name, name) != 0)
			continue;
		h->last_activity_us = json_us(o, "last_activity_us");
		h->window_start_us = json_us(o, "window_start_us");
		int64_t alerts = json_us(o, "alerts");
		h->alerts = alerts > 100000000 ? 100000000 : (int)alerts;
		h->alert_window_us = json_us(o, "alert_window_us");
		h->sensor_offline = json_is_true(json_object_get(o, "sensor_offline"));
		h->night_start_us = json_us(o, "night_start_us");
		int64_t openings = json_us(o, "night_openings");
		h->night_openings = openings > 100000000 ? 100000000 : (int)openings;
		h->night_alerted = json_is_true(json_object_get(o, "night_alerted"));
		h->dirty = false;
		return;
	}
}

static void
load_report(struct derive *d, json_t *o, int64_t now_us)
{
	struct report *r = report_get(d, json_str(o, "community_id"), json_str(o, "report_id"));

	set_str(&r->device, json_str(o, "device_id"));
	set_str(&r->building, json_str(o, "building"));
	set_str(&r->door, json_str(o, "door"));
	set_str(&r->category, json_str(o, "category"));
	r->opened_us = json_us(o, "opened_us");
	r->deadline_us = json_us(o, "deadline_us");
	r->handled_us = json_us(o, "handled_us");
	r->closed_us = json_us(o, "closed_us");
	r->overdue_us = json_us(o, "overdue_us");
	if (r->handled_us != 0 || r->closed_us != 0)
		r->done_seen_us = now_us;	/* kept from now on, as when it was learned */
	r->dirty = false;
}

int
derive_load(struct derive *d, const char *devices, const char *welfare, const char *reports,
    int64_t now_us)
{
	json_t *dv, *wf, *rp, *o;
	size_t i;

	if (parse_rows(devices, welfare, reports, &dv, &wf, &rp) != 0)
		return -1;
	now_us = clamp_us(now_us);
	json_array_foreach(dv, i, o)
		if (json_is_object(o))
			load_device(d, o, false);
	json_array_foreach(wf, i, o)
		if (json_is_object(o))
			load_household(d, o);
	json_array_foreach(rp, i, o)
		if (json_is_object(o))
			load_report(d, o, now_us);
	json_decref(dv);
	json_decref(wf);
	json_decref(rp);

	/* Declared devices: the expected ones are known from now on; devices
	 * no longer declared expected are no longer expected. */
	for (size_t k = 0; k < d->o.ndevices; k++) {
		const struct derive_device_def *def = &d->defs[k];
		struct device *v = device_find(d, def->community, def->device);
		if (v == NULL && !def->expected)
			continue;	/* its settings apply when it appears */
		if (v == NULL && (v = device_add(d, def->community, def->device, def->device_class,
		    now_us)) == NULL)
			continue;
		if (v->cls == 0 && def->device_class > 0) {
			v->cls = def->device_class;
			touch_device(d, v);
		}
		if (v->expected != def->expected) {
			v->expected = def->expected;
			touch_device(d, v);
		}
		v->timeout_us = def->timeout_us;
		v->declared = true;
	}
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		for (struct device *v = d->devices[b]; v != NULL; v = v->next) {
			if (v->expected && !v->declared) {
				v->expected = false;
				touch_device(d, v);
			}
		}
	}
	/* A household never watched before starts its window now (or when
	 * its sensors are all online, later). */
	for (size_t k = 0; k < d->o.nhouseholds; k++) {
		struct household *h = &d->households[k];
		if (h->window_start_us == 0) {
			h->window_start_us = clamp_us(now_us);
			touch_household(d, h);
		}
		h->watching = sensors_online(h);
	}
	return 0;
}

struct derive *
derive_new(const struct derive_options *o)
{
	struct derive *d = util_calloc(1, sizeof(*d));

	d->o = *o;
	d->held = ~(uint64_t)0;		/* alone: every shard (derive_hold) */
	if (d->o.max_devices == 0)
		d->o.max_devices = 1;
	d->defs = util_calloc(o->ndevices ? o->ndevices : 1, sizeof(*d->defs));
	for (size_t i = 0; i < o->ndevices; i++) {
		d->defs[i] = o->devices[i];
		d->defs[i].community = dup(o->devices[i].community);
		d->defs[i].device = dup(o->devices[i].device);
	}
	d->routes = util_calloc(o->nroutes ? o->nroutes : 1, sizeof(*d->routes));
	for (size_t i = 0; i < o->nroutes; i++) {
		d->routes[i] = o->routes[i];
		d->routes[i].route = dup(o->routes[i].route);
	}
	d->hdefs = util_calloc(o->nhouseholds ? o->nhouseholds : 1, sizeof(*d->hdefs));
	d->sensors = util_calloc(o->nhouseholds ? o->nhouseholds : 1, sizeof(*d->sensors));
	d->households = util_calloc(o->nhouseholds ? o->nhouseholds : 1, sizeof(*d->households));
	for (size_t i = 0; i < o->nhouseholds; i++) {
		const struct derive_household *s = &o->households[i];
		size_t n = 0;
		while (s->sensors[n] != NULL)
			n++;
		d->sensors[i] = util_calloc(n + 1, sizeof(char *));
		for (size_t k = 0; k < n; k++)
			d->sensors[i][k] = dup(s->sensors[k]);
		d->hdefs[i] = *s;
		d->hdefs[i].name = dup(s->name);
		d->hdefs[i].community = dup(s->community);
		d->hdefs[i].peephole = s->peephole != NULL && s->peephole[0] != '\0' ?
		    dup(s->peephole) : NULL;
		d->hdefs[i].sensors = (const char *const *)d->sensors[i];
		d->households[i].def = &d->hdefs[i];
		d->households[i].shard = derive_shard("household", s->name, "");
		d->households[i].sensors = util_calloc(n ? n : 1, sizeof(struct device *));
		d->households[i].nsensors = n;
	}
	d->o.devices = d->defs;
	d->o.routes = d->routes;
	d->o.households = d->hdefs;
	return d;
}

void
derive_free(struct derive *d)
{
	if (d == NULL)
		return;
	for (size_t b = 0; b < DEVICE_BUCKETS; b++) {
		while (d->devices[b] != NULL) {
			struct device *v = d->devices[b];
			d->devices[b] = v->next;
			free(v->community);
			free(v->id);
			free(v->route);
			free(v->vendor);
			free(v);
		}
	}
	for (size_t b = 0; b < REPORT_BUCKETS; b++) {
		while (d->reports[b] != NULL) {
			struct report *r = d->reports[b];
			d->reports[b] = r->next;
			report_free(r);
		}
	}
	for (size_t i = 0; i < d->nevents; i++)
		derive_event_free(d->events[i]);
	free(d->events);
	for (size_t i = 0; i < d->o.ndevices; i++) {
		free((char *)d->defs[i].community);
		free((char *)d->defs[i].device);
	}
	free(d->defs);
	for (size_t i = 0; i < d->o.nroutes; i++)
		free((char *)d->routes[i].route);
	free(d->routes);
	for (size_t i = 0; i < d->o.nhouseholds; i++) {
		free(d->households[i].sensors);
		util_strv_free(d->sensors[i]);
		free((char *)d->hdefs[i].name);
		free((char *)d->hdefs[i].community);
		free((char *)d->hdefs[i].peephole);
	}
	free(d->sensors);
	free(d->hdefs);
	free(d->households);
	free(d);
}
