/* Unit tests for derive.c: the events no device sends.
 *
 * Events are built here as decode.c would hand them over, fed with an
 * explicit clock, and what derive_take gives back is checked: the derived
 * events and the JSON rows. A small stand-in for PostgreSQL keeps those
 * rows as the store's upserts merge them (store_batch.c) and gives them
 * back as its load query does (store_setup.c), so a "restart" is a fresh
 * instance loaded from them.
 *
 * The known_bug_* functions at the end show what derive.c does not do as
 * derive.h says. They are not run (the suite stays green); each says what
 * it expects and what happens instead. Call one from main to see it fail.
 * A known bug fixed in derive.c becomes a test of its own, run from main.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derive.h"
#include "t.h"

typedef Gridbridge__V1__Event Event;

#define CLS(x) GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_##x
#define TYPE(x) GRIDBRIDGE__V1__EVENT_TYPE__EVENT_TYPE_##x
#define KIND(x) GRIDBRIDGE__V1__WELFARE_KIND__WELFARE_KIND_##x
#define SRC(x) GRIDBRIDGE__V1__STATUS_SOURCE__STATUS_SOURCE_##x
#define DSTATE(x) GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_##x
#define SEV(x) GRIDBRIDGE__V1__SEVERITY__SEVERITY_##x

#define S 1000000LL
#define MIN (60 * S)
#define HOUR (3600 * S)
/* 2026-01-01T00:00:00Z */
#define T0 1767225600000000LL
/* 9999-12-31T23:59:59Z: derive.h takes times within years 1970..9999. */
#define TIME_MAX (253402300799LL * S)

/* Derived events that broke the envelope's rules (see check_event). */
static int bad_events;

/* ---- records as decode.c hands them over ------------------------------- */

struct msg {
	Event ev;
	uint8_t id[16];
	Gridbridge__V1__DoorContact door;
	Gridbridge__V1__DeviceStatus status;
	Gridbridge__V1__PeepholeEvent peephole;
	Gridbridge__V1__ResidentReport report;
	Gridbridge__V1__Int32Value battery, lq;
};

static Event *
msg_base(struct msg *m, const char *community, const char *device, int cls, int type,
    int64_t t)
{
	memset(m, 0, sizeof(*m));
	gridbridge__v1__event__init(&m->ev);
	memset(m->id, 0x5a, sizeof(m->id));
	m->ev.id.data = m->id;
	m->ev.id.len = sizeof(m->id);
	m->ev.event_time_us = t;
	m->ev.received_time_us = t;
	m->ev.community_id = (char *)community;
	m->ev.device_id = (char *)device;
	m->ev.device_class = cls;
	m->ev.event_type = type;
	m->ev.severity = SEV(INFO);
	m->ev.source_topic = (char *)"site/topic";
	m->ev.vendor = (char *)"zigbee2mqtt";
	m->ev.route = (char *)"z2m";
	return &m->ev;
}

/* Any message without a status body (a passage, an alarm). */
static Event *
ev_plain(struct msg *m, const char *device, int cls, int64_t t)
{
	return msg_base(m, "c-1", device, cls, TYPE(PERSON_PASSAGE), t);
}

static Event *
ev_routed(struct msg *m, const char *device, int cls, const char *route, int64_t t)
{
	Event *ev = ev_plain(m, device, cls, t);

	ev->route = (char *)route;
	return ev;
}

static Event *
ev_status(struct msg *m, const char *device, int cls, int state, int source, int64_t t)
{
	int type = state == DSTATE(OFFLINE) ? TYPE(DEVICE_OFFLINE) :
	    state == DSTATE(ONLINE) ? TYPE(DEVICE_ONLINE) : TYPE(DEVICE_HEARTBEAT);
	Event *ev = msg_base(m, "c-1", device, cls, type, t);

	gridbridge__v1__device_status__init(&m->status);
	m->status.state = state;
	m->status.source = source;
	m->status.reason = (char *)"";
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_STATUS;
	ev->status = &m->status;
	return ev;
}

static Event *
ev_lwt(struct msg *m, const char *device, int cls, int64_t t)
{
	return ev_status(m, device, cls, DSTATE(OFFLINE), SRC(LWT), t);
}

/* An availability topic (Zigbee2MQTT): online or offline. */
static Event *
ev_avail(struct msg *m, const char *device, bool online, int64_t t)
{
	return ev_status(m, device, CLS(DOOR_SENSOR), online ? DSTATE(ONLINE) : DSTATE(OFFLINE),
	    SRC(AVAILABILITY), t);
}

/* A door sensor's reading; `t` is both its time and when it came. */
static Event *
ev_door(struct msg *m, const char *device, bool opened, int64_t t)
{
	Event *ev = msg_base(m, "c-1", device, CLS(DOOR_SENSOR),
	    opened ? TYPE(DOOR_OPENED) : TYPE(DOOR_CLOSED), t);

	gridbridge__v1__door_contact__init(&m->door);
	gridbridge__v1__int32_value__init(&m->battery);
	gridbridge__v1__int32_value__init(&m->lq);
	m->battery.value = 87;
	m->lq.value = 120;
	m->door.state = opened ? GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_OPEN :
	    GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_CLOSED;
	m->door.battery_percent = &m->battery;
	m->door.link_quality = &m->lq;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_DOOR;
	ev->door = &m->door;
	return ev;
}

static Event *
ev_peephole(struct msg *m, const char *community, const char *device, const char *household,
    int64_t t)
{
	Event *ev = msg_base(m, community, device, CLS(PEEPHOLE), TYPE(PEEPHOLE_DOORBELL), t);

	gridbridge__v1__peephole_event__init(&m->peephole);
	m->peephole.household = (char *)household;
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_PEEPHOLE;
	ev->peephole = &m->peephole;
	return ev;
}

/* What the report platform publishes about report `id`. */
static Event *
ev_report(struct msg *m, int type, const char *id, int64_t opened, int64_t deadline,
    int64_t handled, int64_t closed, int64_t t)
{
	Event *ev = msg_base(m, "c-1", "qr-b03-east", CLS(REPORT_POINT), type, t);

	gridbridge__v1__resident_report__init(&m->report);
	m->report.report_id = (char *)id;
	m->report.building = (char *)"b03";
	m->report.door = (char *)"b03-east";
	m->report.category = (char *)"lift";
	m->report.opened_us = opened;
	m->report.deadline_us = deadline;
	m->report.handled_us = handled;
	m->report.closed_us = closed;
	ev->vendor = (char *)"reports";
	ev->route = (char *)"reports";
	ev->body_case = GRIDBRIDGE__V1__EVENT__BODY_REPORT;
	ev->report = &m->report;
	return ev;
}

/* ---- what derive_take gives ------------------------------------------- */

struct out {
	Event **ev;
	size_t n;
	char *rows[3];		/* devices, welfare_state, resident_reports */
};

enum { ROWS_DEVICES, ROWS_WELFARE, ROWS_REPORTS };

static void
out_clear(struct out *o)
{
	for (size_t i = 0; i < o->n; i++)
		derive_event_free(o->ev[i]);
	free(o->ev);
	for (int i = 0; i < 3; i++)
		free(o->rows[i]);
	memset(o, 0, sizeof(*o));
}

/* The envelope every derived event has. */
static void
check_event(const Event *e)
{
	bool ok = e->id.len == 16 && e->id.data != NULL && (e->id.data[6] & 0xf0) == 0x80 &&
	    (e->id.data[8] & 0xc0) == 0x80 && e->vendor != NULL &&
	    strcmp(e->vendor, "gridbridge") == 0 && e->route != NULL && e->community_id != NULL &&
	    e->device_id != NULL;

	if (ok && strcmp(e->route, "registry") == 0)
		ok = (e->event_type == TYPE(DEVICE_ONLINE) || e->event_type == TYPE(DEVICE_OFFLINE)) &&
		    e->body_case == GRIDBRIDGE__V1__EVENT__BODY_STATUS && e->status != NULL;
	else if (ok && strcmp(e->route, "welfare") == 0)
		ok = e->event_type == TYPE(WELFARE_ALERT) &&
		    e->device_class == CLS(DOOR_SENSOR) &&
		    e->body_case == GRIDBRIDGE__V1__EVENT__BODY_WELFARE && e->welfare != NULL;
	else if (ok && strcmp(e->route, "reports") == 0)
		ok = e->event_type == TYPE(REPORT_OVERDUE) && e->device_class == CLS(REPORT_POINT) &&
		    e->body_case == GRIDBRIDGE__V1__EVENT__BODY_REPORT && e->report != NULL;
	else
		ok = false;
	if (!ok) {
		bad_events++;
		printf("# malformed derived event: type %d route %s\n", e->event_type,
		    e->route != NULL ? e->route : "(null)");
	}
}

static size_t
take(struct derive *d, struct out *o)
{
	out_clear(o);
	o->n = derive_take(d, &o->ev, &o->rows[0], &o->rows[1], &o->rows[2]);
	for (size_t i = 0; i < o->n; i++)
		check_event(o->ev[i]);
	return o->n;
}

static size_t
tick_take(struct derive *d, int64_t now, struct out *o)
{
	derive_tick(d, now);
	return take(d, o);
}

static size_t
count_type(const struct out *o, int type)
{
	size_t n = 0;

	for (size_t i = 0; i < o->n; i++)
		n += (int)o->ev[i]->event_type == type;
	return n;
}

/* The `k`th event of `type`, or NULL. */
static const Event *
nth_type(const struct out *o, int type, size_t k)
{
	for (size_t i = 0; i < o->n; i++)
		if ((int)o->ev[i]->event_type == type && k-- == 0)
			return o->ev[i];
	return NULL;
}

static size_t
count_kind(const struct out *o, int kind)
{
	size_t n = 0;

	for (size_t i = 0; i < o->n; i++)
		n += o->ev[i]->body_case == GRIDBRIDGE__V1__EVENT__BODY_WELFARE &&
		    (int)o->ev[i]->welfare->kind == kind;
	return n;
}

static const Event *
nth_kind(const struct out *o, int kind, size_t k)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->ev[i]->body_case == GRIDBRIDGE__V1__EVENT__BODY_WELFARE &&
		    (int)o->ev[i]->welfare->kind == kind && k-- == 0)
			return o->ev[i];
	return NULL;
}

/* The registry event of `device` (any state), or NULL. */
static const Event *
event_of(const struct out *o, const char *device)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->ev[i]->route, "registry") == 0 &&
		    strcmp(o->ev[i]->device_id, device) == 0)
			return o->ev[i];
	return NULL;
}

static size_t
rows_in(const char *text)
{
	json_t *a = text != NULL ? json_loads(text, 0, NULL) : NULL;
	size_t n = json_array_size(a);

	json_decref(a);
	return n;
}

/* The row whose `field` is `value` in a taken JSON array (a new
 * reference), or NULL. */
static json_t *
row_of(const char *text, const char *field, const char *value)
{
	json_t *a = text != NULL ? json_loads(text, 0, NULL) : NULL, *o, *found = NULL;
	size_t i;

	json_array_foreach(a, i, o) {
		const char *s = json_string_value(json_object_get(o, field));
		if (s != NULL && strcmp(s, value) == 0) {
			found = json_incref(o);
			break;
		}
	}
	json_decref(a);
	return found;
}

static const char *
jstr(json_t *row, const char *key)
{
	const char *s = json_string_value(json_object_get(row, key));

	return s != NULL ? s : "(none)";
}

/* An integer field; -1 when absent, -2 when null. */
static long long
jint(json_t *row, const char *key)
{
	json_t *v = json_object_get(row, key);

	if (json_is_null(v))
		return -2;
	return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static bool
same_id(const Event *a, const Event *b)
{
	return a != NULL && b != NULL && a->id.len == 16 && b->id.len == 16 &&
	    memcmp(a->id.data, b->id.data, 16) == 0;
}

/* ---- PostgreSQL, as far as the derived state goes ---------------------- */

/* Rows by primary key, merged as store_batch.c's upserts merge them. */
struct db {
	json_t *devices, *welfare, *reports;
};

static void
db_init(struct db *b)
{
	b->devices = json_object();
	b->welfare = json_object();
	b->reports = json_object();
}

static void
db_free(struct db *b)
{
	json_decref(b->devices);
	json_decref(b->welfare);
	json_decref(b->reports);
}

static void
db_key(char *key, size_t n, json_t *row, const char *a, const char *b)
{
	snprintf(key, n, "%s\x1f%s", json_string_value(json_object_get(row, a)),
	    json_string_value(json_object_get(row, b)));
}

/* least() and greatest() as PostgreSQL has them: NULLs ignored. */
static json_t *
pick_us(json_t *a, json_t *b, bool least)
{
	if (!json_is_integer(a))
		return json_incref(b);
	if (!json_is_integer(b))
		return json_incref(a);
	bool first = least ? json_integer_value(a) <= json_integer_value(b) :
	    json_integer_value(a) >= json_integer_value(b);
	return json_incref(first ? a : b);
}

/* coalesce(a, b) */
static json_t *
coalesce(json_t *a, json_t *b)
{
	return json_incref(a != NULL && !json_is_null(a) ? a : b != NULL ? b : json_null());
}

/* coalesce(nullif(a, ''), b) */
static json_t *
coalesce_text(json_t *a, json_t *b)
{
	const char *s = json_string_value(a);

	return json_incref(s != NULL && s[0] != '\0' ? a : b != NULL ? b : json_null());
}

static void
db_upsert_device(struct db *b, json_t *x)
{
	char key[512];

	db_key(key, sizeof(key), x, "community_id", "device_id");
	json_t *old = json_object_get(b->devices, key), *row = json_deep_copy(x);
	if (old != NULL) {
		json_object_set_new(row, "first_seen_us", pick_us(json_object_get(old,
		    "first_seen_us"), json_object_get(x, "first_seen_us"), true));
		json_object_set_new(row, "last_seen_us", pick_us(json_object_get(old,
		    "last_seen_us"), json_object_get(x, "last_seen_us"), false));
		json_object_set_new(row, "battery_percent", coalesce(json_object_get(x,
		    "battery_percent"), json_object_get(old, "battery_percent")));
		json_object_set_new(row, "link_quality", coalesce(json_object_get(x,
		    "link_quality"), json_object_get(old, "link_quality")));
		/* created_at is not in the update list */
		json_object_set(row, "created_us", json_object_get(old, "created_us"));
	}
	json_object_set_new(b->devices, key, row);
}

static void
db_upsert_report(struct db *b, json_t *x)
{
	static const char *const texts[] = { "device_id", "building", "door", "category" };
	static const char *const times[] = { "opened_us", "deadline_us", "handled_us",
		"closed_us" };
	char key[512];

	db_key(key, sizeof(key), x, "community_id", "report_id");
	json_t *old = json_object_get(b->reports, key), *row = json_deep_copy(x);
	if (old != NULL) {
		for (size_t i = 0; i < 4; i++)
			json_object_set_new(row, texts[i], coalesce_text(json_object_get(x,
			    texts[i]), json_object_get(old, texts[i])));
		for (size_t i = 0; i < 4; i++)
			json_object_set_new(row, times[i], coalesce(json_object_get(x, times[i]),
			    json_object_get(old, times[i])));
		json_object_set_new(row, "overdue_us", coalesce(json_object_get(old,
		    "overdue_us"), json_object_get(x, "overdue_us")));
	}
	json_object_set_new(b->reports, key, row);
}

/* One derived transaction, committed. */
static void
db_write(struct db *b, const struct out *o)
{
	json_t *a, *x;
	size_t i;

	if (o->rows[ROWS_DEVICES] != NULL) {
		a = json_loads(o->rows[ROWS_DEVICES], 0, NULL);
		json_array_foreach(a, i, x)
			db_upsert_device(b, x);
		json_decref(a);
	}
	if (o->rows[ROWS_WELFARE] != NULL) {
		a = json_loads(o->rows[ROWS_WELFARE], 0, NULL);
		json_array_foreach(a, i, x)
			json_object_set(b->welfare, json_string_value(json_object_get(x,
			    "household")), x);
		json_decref(a);
	}
	if (o->rows[ROWS_REPORTS] != NULL) {
		a = json_loads(o->rows[ROWS_REPORTS], 0, NULL);
		json_array_foreach(a, i, x)
			db_upsert_report(b, x);
		json_decref(a);
	}
}

/* The columns of a row as the load query builds them (absent: NULL). */
static json_t *
db_select(json_t *row, const char *const *cols)
{
	json_t *o = json_object();

	for (size_t i = 0; cols[i] != NULL; i++) {
		json_t *v = json_object_get(row, cols[i]);
		json_object_set(o, cols[i], v != NULL ? v : json_null());
	}
	return o;
}

static char *
db_dump(json_t *a)
{
	char *s = json_dumps(a, JSON_COMPACT);

	json_decref(a);
	return s;
}

/* Oldest first, then by community and device: the devices' ORDER BY. */
static int
cmp_device_rows(const void *x, const void *y)
{
	json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	long long ta = (long long)json_integer_value(json_object_get(a, "created_us"));
	long long tb = (long long)json_integer_value(json_object_get(b, "created_us"));
	if (ta != tb)
		return ta < tb ? -1 : 1;
	int c = strcmp(json_string_value(json_object_get(a, "community_id")),
	    json_string_value(json_object_get(b, "community_id")));
	if (c != 0)
		return c;
	return strcmp(json_string_value(json_object_get(a, "device_id")),
	    json_string_value(json_object_get(b, "device_id")));
}

/* What store_setup.c's query gives derive_load at `now`. */
static void
db_read(const struct db *b, int64_t now, char **devices, char **welfare, char **reports)
{
	static const char *const dcols[] = { "community_id", "device_id", "device_class", "route",
		"vendor", "expected", "first_seen_us", "last_seen_us", "state", "state_since_us",
		"state_source", "pending_state", "pending_since_us", "pending_source",
		"battery_percent", "link_quality", "created_us", NULL };
	static const char *const wcols[] = { "household", "last_activity_us", "window_start_us",
		"alerts", "alert_window_us", "sensor_offline", "night_start_us", "night_openings",
		"night_alerted", NULL };
	static const char *const rcols[] = { "community_id", "report_id", "device_id", "building",
		"door", "category", "opened_us", "deadline_us", "handled_us", "closed_us",
		"overdue_us", NULL };
	json_t *dv = json_array(), *wf = json_array(), *rp = json_array(), *row;
	const char *key;

	size_t nrows = json_object_size(b->devices), k = 0;
	json_t **sorted = calloc(nrows ? nrows : 1, sizeof(*sorted));
	json_object_foreach(b->devices, key, row)
		sorted[k++] = row;
	qsort(sorted, nrows, sizeof(*sorted), cmp_device_rows);
	for (k = 0; k < nrows; k++)
		json_array_append_new(dv, db_select(sorted[k], dcols));
	free(sorted);
	json_object_foreach(b->welfare, key, row)
		json_array_append_new(wf, db_select(row, wcols));
	json_object_foreach(b->reports, key, row) {
		/* WHERE (handled_at IS NULL AND closed_at IS NULL)
		 *   OR greatest(handled_at, closed_at) > now() - 30 days */
		json_t *h = json_object_get(row, "handled_us"), *c = json_object_get(row, "closed_us");
		long long done = json_is_integer(h) ? (long long)json_integer_value(h) : 0;
		if (json_is_integer(c) && json_integer_value(c) > done)
			done = (long long)json_integer_value(c);
		if ((json_is_integer(h) || json_is_integer(c)) &&
		    done <= now - 30LL * 24 * 3600 * 1000000)
			continue;
		json_array_append_new(rp, db_select(row, rcols));
	}
	*devices = db_dump(dv);
	*welfare = db_dump(wf);
	*reports = db_dump(rp);
}

/* ---- instances --------------------------------------------------------- */

static struct derive_options
opts(void)
{
	struct derive_options o;

	memset(&o, 0, sizeof(o));
	o.hold_down_us = 0;
	o.expected_grace_us = 5 * MIN;
	o.max_devices = 1000;
	o.persist_every_us = MIN;
	return o;
}

/* A fresh start: nothing in the database. */
static struct derive *
fresh(const struct derive_options *o, int64_t now)
{
	struct derive *d = derive_new(o);

	if (derive_load(d, NULL, NULL, NULL, now) != 0)
		t_report(0, "derive_load takes nothing", __FILE__, __LINE__);
	return d;
}

/* Takes what is waiting and commits it. */
static size_t
flush(struct derive *d, struct out *o, struct db *b)
{
	size_t n = take(d, o);

	if (b != NULL)
		db_write(b, o);
	return n;
}

static size_t
tick_flush(struct derive *d, int64_t now, struct out *o, struct db *b)
{
	derive_tick(d, now);
	return flush(d, o, b);
}

/* The daemon stops and starts again at `now`: what is waiting is lost,
 * the state is what the database holds. */
static struct derive *
restart(struct derive *d, const struct derive_options *o, const struct db *b, int64_t now)
{
	char *dv, *wf, *rp;

	derive_free(d);
	d = derive_new(o);
	db_read(b, now, &dv, &wf, &rp);
	if (derive_load(d, dv, wf, rp, now) != 0)
		t_report(0, "derive_load takes the database's rows", __FILE__, __LINE__);
	free(dv);
	free(wf);
	free(rp);
	return d;
}

/* ---- the registry ------------------------------------------------------ */

static void
test_first_message(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	size_t online = 99;

	T_INTEQ(derive_devices(d, &online), 0);
	T_INTEQ(online, 0);
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_DEVICES] == NULL);

	/* The first stored event: the device is known, online since its
	 * receive time. That is how the registry learns of it: its row, no
	 * event. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 5 * S), T0 + 5 * S + 7);
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(derive_devices(d, &online), 1);
	T_INTEQ(online, 1);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_CHECK(r != NULL);
	T_STREQ(jstr(r, "state"), "online");
	T_STREQ(jstr(r, "state_source"), "message");
	T_STREQ(jstr(r, "device_class"), "access_gate");
	T_STREQ(jstr(r, "community_id"), "c-1");
	T_STREQ(jstr(r, "route"), "z2m");
	T_STREQ(jstr(r, "vendor"), "zigbee2mqtt");
	T_INTEQ(jint(r, "state_since_us"), T0 + 5 * S);
	T_INTEQ(jint(r, "first_seen_us"), T0 + 5 * S);
	T_INTEQ(jint(r, "last_seen_us"), T0 + 5 * S);
	T_INTEQ(jint(r, "created_us"), T0 + 5 * S + 7);
	T_INTEQ(jint(r, "pending_state"), -2);
	json_decref(r);

	/* A change after that is an event: offline (its last will), then
	 * back with a message: one device_online at that message's receive
	 * time, told at the clock's. */
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 6 * S), T0 + 6 * S);
	T_INTEQ(take(d, &out), 1);
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 8 * S), T0 + 8 * S + 7);
	T_INTEQ(take(d, &out), 1);
	const Event *e = out.ev[0];
	T_INTEQ(e->event_type, TYPE(DEVICE_ONLINE));
	T_STREQ(e->route, "registry");
	T_STREQ(e->vendor, "gridbridge");
	T_STREQ(e->community_id, "c-1");
	T_STREQ(e->device_id, "gate-1");
	T_INTEQ(e->device_class, CLS(ACCESS_GATE));
	T_INTEQ(e->severity, SEV(INFO));
	T_INTEQ(e->event_time_us, T0 + 8 * S);
	T_INTEQ(e->received_time_us, T0 + 8 * S + 7);
	T_INTEQ(e->status->state, DSTATE(ONLINE));
	T_INTEQ(e->status->source, SRC(MESSAGE));
	T_STREQ(e->status->reason, "message");
	T_INTEQ(derive_devices(d, &online), 1);
	T_INTEQ(online, 1);

	/* A door sensor's battery and link quality go into its row. */
	derive_observe(d, ev_door(&m, "door-1", false, T0 + 9 * S), T0 + 9 * S);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "door-1");
	T_INTEQ(jint(r, "battery_percent"), 87);
	T_INTEQ(jint(r, "link_quality"), 120);
	json_decref(r);

	/* Nothing more comes of time passing (no timeouts configured). */
	T_INTEQ(tick_take(d, T0 + 30 * 24 * HOUR, &out), 0);
	T_CHECK(!derive_pending(d));
	out_clear(&out);
	derive_free(d);
}

static void
test_lwt_and_availability(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	size_t online;

	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + S), T0 + S);
	T_INTEQ(take(d, &out), 0);

	/* The broker's last will: offline, the source kept. */
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 10 * S), T0 + 10 * S);
	T_INTEQ(take(d, &out), 1);
	const Event *e = out.ev[0];
	T_INTEQ(e->event_type, TYPE(DEVICE_OFFLINE));
	T_INTEQ(e->severity, SEV(NOTICE));
	T_INTEQ(e->event_time_us, T0 + 10 * S);
	T_INTEQ(e->status->state, DSTATE(OFFLINE));
	T_INTEQ(e->status->source, SRC(LWT));
	T_STREQ(e->status->reason, "reported offline");
	T_INTEQ(derive_devices(d, &online), 1);
	T_INTEQ(online, 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gw-1");
	T_STREQ(jstr(r, "state"), "offline");
	T_STREQ(jstr(r, "state_source"), "lwt");
	/* A last will is not a sign of life. */
	T_INTEQ(jint(r, "last_seen_us"), T0 + S);
	json_decref(r);

	/* Availability online: back, source availability. */
	derive_observe(d, ev_avail(&m, "gw-1", true, T0 + 20 * S), T0 + 20 * S);
	T_INTEQ(take(d, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_ONLINE));
	T_INTEQ(out.ev[0]->status->source, SRC(AVAILABILITY));
	T_INTEQ(derive_devices(d, &online), 1);
	T_INTEQ(online, 1);

	/* A device first known from its last will: offline at once, never
	 * seen, and that is an event. */
	derive_observe(d, ev_lwt(&m, "gw-2", CLS(GATEWAY), T0 + 30 * S), T0 + 30 * S);
	T_INTEQ(take(d, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_OFFLINE));
	T_STREQ(out.ev[0]->device_id, "gw-2");
	T_INTEQ(out.ev[0]->event_time_us, T0 + 30 * S);
	T_INTEQ(out.ev[0]->status->source, SRC(LWT));
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gw-2");
	T_INTEQ(jint(r, "first_seen_us"), -2);
	T_INTEQ(jint(r, "last_seen_us"), -2);
	json_decref(r);
	T_INTEQ(derive_devices(d, &online), 2);
	T_INTEQ(online, 1);
	out_clear(&out);
	derive_free(d);
}

static void
test_repeated_state(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0), T0);
	T_INTEQ(take(d, &out), 0);
	/* More messages, a heartbeat, an "online": it is online already. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + S), T0 + S);
	derive_observe(d, ev_status(&m, "gate-1", CLS(ACCESS_GATE), DSTATE(HEARTBEAT),
	    SRC(HEARTBEAT), T0 + 2 * S), T0 + 2 * S);
	derive_observe(d, ev_status(&m, "gate-1", CLS(ACCESS_GATE), DSTATE(ONLINE), SRC(LWT),
	    T0 + 3 * S), T0 + 3 * S);
	T_INTEQ(tick_take(d, T0 + 4 * S, &out), 0);
	/* Offline said twice: one event. */
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 5 * S), T0 + 5 * S);
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 6 * S), T0 + 6 * S);
	T_INTEQ(tick_take(d, T0 + 7 * S, &out), 1);
	T_INTEQ(count_type(&out, TYPE(DEVICE_OFFLINE)), 1);
	const Event *e = nth_type(&out, TYPE(DEVICE_OFFLINE), 0);
	T_CHECK(e != NULL && e->event_time_us == T0 + 5 * S);
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 8 * S), T0 + 8 * S);
	T_INTEQ(tick_take(d, T0 + 9 * S, &out), 0);
	out_clear(&out);
	derive_free(d);
}

static void
test_hold_down(void)
{
	struct derive_options o = opts();
	o.hold_down_us = 10 * S;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	/* The first state counts at once (online: no event). */
	derive_observe(d, ev_avail(&m, "door-1", true, T0), T0);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "door-1");
	T_STREQ(jstr(r, "state"), "online");
	T_INTEQ(jint(r, "state_since_us"), T0);
	T_INTEQ(jint(r, "pending_state"), -2);
	json_decref(r);
	/* So does a first state offline, reported. */
	derive_observe(d, ev_avail(&m, "door-9", false, T0 + S), T0 + S);
	T_INTEQ(take(d, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->event_type == TYPE(DEVICE_OFFLINE) &&
	    out.ev[0]->event_time_us == T0 + S);

	/* Offline and online again within the hold-down: flapping, nothing. */
	derive_observe(d, ev_avail(&m, "door-1", false, T0 + 100 * S), T0 + 100 * S);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "door-1");
	T_STREQ(jstr(r, "state"), "online");
	T_STREQ(jstr(r, "pending_state"), "offline");
	T_INTEQ(jint(r, "pending_since_us"), T0 + 100 * S);
	T_STREQ(jstr(r, "pending_source"), "availability");
	json_decref(r);
	T_INTEQ(tick_take(d, T0 + 105 * S, &out), 0);
	derive_observe(d, ev_avail(&m, "door-1", true, T0 + 108 * S), T0 + 108 * S);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "door-1");
	T_INTEQ(jint(r, "pending_state"), -2);
	json_decref(r);
	T_INTEQ(tick_take(d, T0 + 200 * S, &out), 0);

	/* Offline held past the hold-down: one event, at the time it began. */
	derive_observe(d, ev_avail(&m, "door-1", false, T0 + 300 * S), T0 + 300 * S);
	derive_observe(d, ev_avail(&m, "door-1", false, T0 + 302 * S), T0 + 302 * S);
	T_INTEQ(tick_take(d, T0 + 310 * S - 1, &out), 0);
	T_INTEQ(tick_take(d, T0 + 310 * S, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_OFFLINE));
	T_INTEQ(out.ev[0]->event_time_us, T0 + 300 * S);
	T_INTEQ(out.ev[0]->received_time_us, T0 + 310 * S);
	T_INTEQ(out.ev[0]->status->source, SRC(AVAILABILITY));
	T_INTEQ(tick_take(d, T0 + 400 * S, &out), 0);

	/* Back: after the hold-down, at the time it began. */
	derive_observe(d, ev_plain(&m, "door-1", CLS(DOOR_SENSOR), T0 + 500 * S), T0 + 500 * S);
	T_INTEQ(tick_take(d, T0 + 505 * S, &out), 0);
	T_INTEQ(tick_take(d, T0 + 510 * S, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_ONLINE));
	T_INTEQ(out.ev[0]->event_time_us, T0 + 500 * S);
	T_INTEQ(out.ev[0]->status->source, SRC(MESSAGE));
	out_clear(&out);
	derive_free(d);
}

static void
test_timeout_class(void)
{
	struct derive_options o = opts();
	o.hold_down_us = 10 * S;
	o.class_timeout_us[CLS(ACCESS_GATE)] = 60 * S;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	size_t online;

	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0), T0);
	derive_observe(d, ev_plain(&m, "cam-1", CLS(CAMERA), T0), T0);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_DEVICES]), 2);
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 30 * S), T0 + 30 * S);
	T_INTEQ(tick_take(d, T0 + 90 * S - 1, &out), 0);

	/* Silent for its class's 60 s: offline at last_seen + 60 s. */
	T_INTEQ(tick_take(d, T0 + 90 * S, &out), 1);
	const Event *e = out.ev[0];
	T_STREQ(e->device_id, "gate-1");
	T_INTEQ(e->event_type, TYPE(DEVICE_OFFLINE));
	T_INTEQ(e->event_time_us, T0 + 90 * S);
	T_INTEQ(e->status->source, SRC(TIMEOUT));
	T_STREQ(e->status->reason, "no message within 60s");
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_STREQ(jstr(r, "state_source"), "timeout");
	T_INTEQ(jint(r, "state_since_us"), T0 + 90 * S);
	json_decref(r);
	T_INTEQ(derive_devices(d, &online), 2);
	T_INTEQ(online, 1);
	T_INTEQ(tick_take(d, T0 + 500 * S, &out), 0);

	/* Its next message brings it back once the hold-down passed. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 600 * S), T0 + 600 * S);
	T_INTEQ(tick_take(d, T0 + 605 * S, &out), 0);
	T_INTEQ(tick_take(d, T0 + 610 * S, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_ONLINE));
	T_INTEQ(out.ev[0]->event_time_us, T0 + 600 * S);

	/* A camera has no timeout (0): never offline for silence. */
	T_INTEQ(tick_take(d, T0 + 610 * S + 10 * 24 * HOUR, &out), 1);
	T_CHECK(event_of(&out, "cam-1") == NULL);
	T_CHECK(event_of(&out, "gate-1") != NULL);
	out_clear(&out);
	derive_free(d);
}

static void
test_timeout_route(void)
{
	struct derive_options o = opts();
	struct derive_route_def routes[] = { { "slow", 300 * S }, { "none", 0 } };
	o.class_timeout_us[CLS(ACCESS_GATE)] = 60 * S;
	o.routes = routes;
	o.nroutes = 2;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	derive_observe(d, ev_routed(&m, "g-slow", CLS(ACCESS_GATE), "slow", T0), T0);
	derive_observe(d, ev_routed(&m, "g-none", CLS(ACCESS_GATE), "none", T0), T0);
	derive_observe(d, ev_routed(&m, "g-other", CLS(ACCESS_GATE), "other", T0), T0);
	T_INTEQ(take(d, &out), 0);
	/* At 60 s only the gate on a route without its own timeout. */
	T_INTEQ(tick_take(d, T0 + 60 * S, &out), 1);
	T_CHECK(event_of(&out, "g-other") != NULL);
	T_INTEQ(tick_take(d, T0 + 300 * S - 1, &out), 0);
	/* At 300 s the one on route "slow"; the one on "none" never. */
	T_INTEQ(tick_take(d, T0 + 300 * S, &out), 1);
	T_CHECK(event_of(&out, "g-slow") != NULL);
	T_INTEQ(out.ev[0]->event_time_us, T0 + 300 * S);
	T_STREQ(out.ev[0]->status->reason, "no message within 300s");
	T_INTEQ(tick_take(d, T0 + 30 * 24 * HOUR, &out), 0);
	out_clear(&out);
	derive_free(d);
}

static void
test_timeout_device(void)
{
	struct derive_options o = opts();
	struct derive_route_def routes[] = { { "slow", 300 * S } };
	struct derive_device_def devs[] = {
		{ "c-1", "d-inherit", CLS(ACCESS_GATE), -1, false },
		{ "c-1", "d-never", CLS(ACCESS_GATE), 0, false },
		{ "c-1", "d-30", CLS(ACCESS_GATE), 30 * S, false },
	};
	o.class_timeout_us[CLS(ACCESS_GATE)] = 60 * S;
	o.routes = routes;
	o.nroutes = 1;
	o.devices = devs;
	o.ndevices = 3;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	/* Declared, not expected: the section only sets the timeout; the
	 * devices are not in the registry before they speak. */
	T_INTEQ(derive_devices(d, NULL), 0);
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_DEVICES] == NULL);

	for (size_t i = 0; i < 3; i++)
		derive_observe(d, ev_routed(&m, devs[i].device, CLS(ACCESS_GATE), "slow", T0 + S),
		    T0 + S);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(derive_devices(d, NULL), 3);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "d-30");
	T_STREQ(jstr(r, "state"), "online");
	T_CHECK(json_is_false(json_object_get(r, "expected")));
	T_INTEQ(jint(r, "created_us"), T0 + S);
	json_decref(r);
	/* 30 s: the device's own timeout, before the route's and the class's. */
	T_INTEQ(tick_take(d, T0 + 31 * S - 1, &out), 0);
	T_INTEQ(tick_take(d, T0 + 31 * S, &out), 1);
	T_CHECK(event_of(&out, "d-30") != NULL);
	T_INTEQ(out.ev[0]->event_time_us, T0 + 31 * S);
	/* -1: the route's 300 s, not the class's 60. */
	T_INTEQ(tick_take(d, T0 + 61 * S, &out), 0);
	T_INTEQ(tick_take(d, T0 + 301 * S, &out), 1);
	T_CHECK(event_of(&out, "d-inherit") != NULL);
	/* 0: never, whatever the route and class say. */
	T_INTEQ(tick_take(d, T0 + 30 * 24 * HOUR, &out), 0);
	out_clear(&out);
	derive_free(d);
}

static void
test_replay(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + 1000 * S), T0 + 1000 * S);
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 2000 * S), T0 + 2000 * S);
	T_INTEQ(take(d, &out), 1);
	/* A message received before it went offline, again: nothing. */
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + 1500 * S), T0 + 3000 * S);
	T_INTEQ(tick_take(d, T0 + 3001 * S, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gw-1");
	if (r != NULL) {
		T_STREQ(jstr(r, "state"), "offline");
		T_INTEQ(jint(r, "state_since_us"), T0 + 2000 * S);
		T_INTEQ(jint(r, "pending_state"), -2);
	}
	json_decref(r);
	size_t online;
	derive_devices(d, &online);
	T_INTEQ(online, 0);

	/* With a hold-down: an old last will, again, starts nothing pending. */
	struct derive_options oh = opts();
	oh.hold_down_us = 10 * S;
	struct derive *h = fresh(&oh, T0);
	derive_observe(h, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + 1000 * S), T0 + 1000 * S);
	T_INTEQ(take(h, &out), 0);
	derive_observe(h, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 900 * S), T0 + 1001 * S);
	T_INTEQ(tick_take(h, T0 + 2000 * S, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gw-1");
	if (r != NULL)
		T_INTEQ(jint(r, "pending_state"), -2);
	json_decref(r);
	out_clear(&out);
	derive_free(h);
	derive_free(d);
}

static void
test_expected(void)
{
	struct derive_options o = opts();
	struct derive_device_def devs[] = {
		{ "c-1", "cam-9", CLS(CAMERA), -1, true },
		{ "c-1", "cam-10", CLS(CAMERA), -1, true },
		{ "c-1", "cam-11", CLS(CAMERA), -1, false },
	};
	o.expected_grace_us = 30 * S;
	o.devices = devs;
	o.ndevices = 3;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "cam-9");
	T_STREQ(jstr(r, "state"), "unknown");
	T_CHECK(json_is_true(json_object_get(r, "expected")));
	T_STREQ(jstr(r, "device_class"), "camera");
	json_decref(r);

	/* An expected device heard from online is recorded, no event. */
	derive_observe(d, ev_plain(&m, "cam-10", CLS(CAMERA), T0 + 10 * S), T0 + 10 * S);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "cam-10");
	T_STREQ(jstr(r, "state"), "online");
	json_decref(r);
	T_INTEQ(tick_take(d, T0 + 30 * S - 1, &out), 0);
	/* Never heard from within the grace: offline once, at its end. */
	T_INTEQ(tick_take(d, T0 + 30 * S, &out), 1);
	const Event *e = out.ev[0];
	T_STREQ(e->device_id, "cam-9");
	T_INTEQ(e->event_type, TYPE(DEVICE_OFFLINE));
	T_INTEQ(e->device_class, CLS(CAMERA));
	T_INTEQ(e->event_time_us, T0 + 30 * S);
	T_INTEQ(e->status->source, SRC(TIMEOUT));
	T_STREQ(e->status->reason, "never heard from");
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "cam-9");
	T_STREQ(jstr(r, "state"), "offline");
	T_INTEQ(jint(r, "first_seen_us"), -2);
	json_decref(r);
	/* Not again; the one not expected is never reported. */
	T_INTEQ(tick_take(d, T0 + 31 * S, &out), 0);
	T_INTEQ(tick_take(d, T0 + 30 * 24 * HOUR, &out), 0);
	/* When it speaks at last, it is online. */
	derive_observe(d, ev_plain(&m, "cam-9", CLS(CAMERA), T0 + 40 * 24 * HOUR),
	    T0 + 40 * 24 * HOUR);
	T_INTEQ(take(d, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_ONLINE));
	out_clear(&out);
	derive_free(d);
}

static void
test_max_devices(void)
{
	struct derive_options o = opts();
	struct derive_device_def devs[] = { { "c-1", "declared", CLS(CAMERA), -1, true } };
	o.max_devices = 3;
	o.devices = devs;
	o.ndevices = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	char name[16];
	size_t online;

	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "cam-%d", i);
		derive_observe(d, ev_plain(&m, name, CLS(CAMERA), T0 + i * S), T0 + i * S);
	}
	/* The declared (expected) one and the first two: the rest are not
	 * tracked. */
	T_INTEQ(derive_devices(d, &online), 3);
	T_INTEQ(online, 2);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_DEVICES]), 3);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "cam-1");
	T_CHECK(r != NULL);
	json_decref(r);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "cam-2");
	T_CHECK(r == NULL);
	json_decref(r);
	/* A tracked device still changes state; one not tracked makes no
	 * event. */
	derive_observe(d, ev_lwt(&m, "cam-0", CLS(CAMERA), T0 + 9 * S), T0 + 9 * S);
	derive_observe(d, ev_lwt(&m, "cam-3", CLS(CAMERA), T0 + 9 * S), T0 + 9 * S);
	T_INTEQ(take(d, &out), 1);
	T_CHECK(event_of(&out, "cam-0") != NULL);
	derive_observe(d, ev_plain(&m, "declared", CLS(CAMERA), T0 + 10 * S), T0 + 10 * S);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(derive_devices(d, &online), 3);
	T_INTEQ(online, 2);

	/* max_devices 0 is taken as 1. */
	struct derive_options z = opts();
	z.max_devices = 0;
	struct derive *dz = fresh(&z, T0);
	derive_observe(dz, ev_plain(&m, "a", CLS(CAMERA), T0), T0);
	derive_observe(dz, ev_plain(&m, "b", CLS(CAMERA), T0), T0);
	T_INTEQ(derive_devices(dz, NULL), 1);
	derive_free(dz);
	out_clear(&out);
	derive_free(d);
}

/* Report points are not devices that come and go. */
static void
test_report_points_untracked(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, 0, 0, 0, T0), T0);
	derive_observe(d, msg_base(&m, "c-1", "qr-1", CLS(REPORT_POINT), TYPE(PERSON_PASSAGE), T0),
	    T0);
	T_INTEQ(derive_devices(d, NULL), 0);
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_DEVICES] == NULL);
	out_clear(&out);
	derive_free(d);
}

/* ---- welfare ----------------------------------------------------------- */

static const char *const one_sensor[] = { "door-1", NULL };
static const char *const two_sensors[] = { "door-1", "door-2", NULL };

static struct derive_household
household(const char *const *sensors)
{
	struct derive_household h = {
		.name = "h-1502", .community = "c-1", .sensors = sensors, .peephole = "ph-1502",
		.inactive_us = 12 * HOUR, .repeat_us = 4 * HOUR,
		.night_start_min = -1, .night_end_min = -1, .night_openings = 2,
		.tz_offset_s = 8 * 3600,
	};
	return h;
}

/* The household's sensors say they are online at T0 + 1 s; the door
 * opens at `opened`. */
static void
sensors_up(struct derive *d, const char *const *sensors, int64_t opened)
{
	struct msg m;

	for (size_t i = 0; sensors[i] != NULL; i++)
		derive_observe(d, ev_avail(&m, sensors[i], true, T0 + S), T0 + S);
	if (opened != 0)
		derive_observe(d, ev_door(&m, sensors[0], true, opened), opened);
}

static void
test_inactivity(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	const int64_t t1 = T0 + HOUR;

	sensors_up(d, one_sensor, t1);
	T_INTEQ(take(d, &out), 0);		/* the sensor online: its row */
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), t1);
	T_INTEQ(jint(r, "last_activity_us"), t1);
	T_INTEQ(jint(r, "alerts"), 0);
	T_INTEQ(jint(r, "alert_window_us"), -2);
	json_decref(r);

	T_INTEQ(tick_take(d, t1 + 12 * HOUR - 1, &out), 0);
	/* inactive_hours after the opening: one alert. */
	T_INTEQ(tick_take(d, t1 + 12 * HOUR, &out), 1);
	const Event *e = out.ev[0];
	T_INTEQ(e->event_type, TYPE(WELFARE_ALERT));
	T_STREQ(e->route, "welfare");
	T_STREQ(e->community_id, "c-1");
	T_STREQ(e->device_id, "door-1");
	T_INTEQ(e->device_class, CLS(DOOR_SENSOR));
	T_INTEQ(e->severity, SEV(WARNING));
	T_INTEQ(e->event_time_us, t1 + 12 * HOUR);
	T_INTEQ(e->received_time_us, t1 + 12 * HOUR);
	T_INTEQ(e->welfare->kind, KIND(INACTIVITY));
	T_STREQ(e->welfare->household, "h-1502");
	T_STREQ(e->welfare->sensor_device_id, "door-1");
	T_INTEQ(e->welfare->repeat, 0);
	T_INTEQ(e->welfare->window_start_us, t1);
	T_INTEQ(e->welfare->last_activity_us, t1);
	T_INTEQ(e->welfare->window_sec, 12 * 3600);
	r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "alerts"), 1);
	T_INTEQ(jint(r, "alert_window_us"), t1);
	json_decref(r);

	/* Repeats every repeat_hours while it lasts. */
	T_INTEQ(tick_take(d, t1 + 13 * HOUR, &out), 0);
	T_INTEQ(tick_take(d, t1 + 16 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t1 + 16 * HOUR, &out), 1);
	T_INTEQ(out.ev[0]->welfare->repeat, 1);
	T_INTEQ(out.ev[0]->event_time_us, t1 + 16 * HOUR);
	T_INTEQ(out.ev[0]->welfare->window_start_us, t1);
	T_INTEQ(tick_take(d, t1 + 20 * HOUR + 5 * S, &out), 1);
	T_INTEQ(out.ev[0]->welfare->repeat, 2);
	T_INTEQ(out.ev[0]->event_time_us, t1 + 20 * HOUR);
	T_INTEQ(tick_take(d, t1 + 21 * HOUR, &out), 0);

	/* No repeats when repeat_hours is 0. */
	struct derive_household nr = household(one_sensor);
	nr.repeat_us = 0;
	o.households = &nr;
	struct derive *n = fresh(&o, T0);
	sensors_up(n, one_sensor, t1);
	T_INTEQ(tick_take(n, t1 + 12 * HOUR, &out), 1);
	T_INTEQ(count_kind(&out, KIND(INACTIVITY)), 1);
	T_INTEQ(tick_take(n, t1 + 100 * HOUR, &out), 0);
	derive_free(n);
	out_clear(&out);
	derive_free(d);
}

static void
test_inactivity_catch_up(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	const int64_t t1 = T0 + HOUR;

	sensors_up(d, one_sensor, t1);
	T_INTEQ(take(d, &out), 0);
	/* Down for a day and a half: the repeat due now, not the six missed. */
	T_INTEQ(tick_take(d, t1 + 12 * HOUR + 5 * 4 * HOUR + HOUR, &out), 1);
	T_INTEQ(out.ev[0]->welfare->kind, KIND(INACTIVITY));
	T_INTEQ(out.ev[0]->welfare->repeat, 5);
	T_INTEQ(out.ev[0]->event_time_us, t1 + 32 * HOUR);
	T_INTEQ(tick_take(d, t1 + 35 * HOUR, &out), 0);
	T_INTEQ(tick_take(d, t1 + 36 * HOUR, &out), 1);
	T_INTEQ(out.ev[0]->welfare->repeat, 6);
	out_clear(&out);
	derive_free(d);
}

static void
test_sensor_offline(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(two_sensors);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR, t2 = t1 + 2 * HOUR, t3 = t1 + 31 * HOUR;

	sensors_up(d, two_sensors, t1);
	T_INTEQ(take(d, &out), 0);

	/* A sensor goes offline: its registry event and one sensor_offline. */
	derive_observe(d, ev_avail(&m, "door-2", false, t2), t2);
	T_INTEQ(take(d, &out), 2);
	T_INTEQ(count_type(&out, TYPE(DEVICE_OFFLINE)), 1);
	const Event *e = nth_kind(&out, KIND(SENSOR_OFFLINE), 0);
	T_CHECK(e != NULL);
	if (e != NULL) {
		T_STREQ(e->welfare->sensor_device_id, "door-2");
		T_STREQ(e->device_id, "door-2");
		T_STREQ(e->welfare->household, "h-1502");
		T_INTEQ(e->event_time_us, t2);
		T_INTEQ(e->severity, SEV(WARNING));
	}
	/* The other one too: no second sensor_offline. */
	derive_observe(d, ev_avail(&m, "door-1", false, t2 + HOUR), t2 + HOUR);
	T_INTEQ(take(d, &out), 1);
	T_INTEQ(count_type(&out, TYPE(DEVICE_OFFLINE)), 1);
	/* No inactivity alert while one is offline, however long. */
	T_INTEQ(tick_take(d, t1 + 30 * HOUR, &out), 0);

	/* One back: still not watching. Both back: a new window. */
	derive_observe(d, ev_avail(&m, "door-1", true, t3), t3);
	T_INTEQ(tick_take(d, t3, &out), 1);
	derive_observe(d, ev_avail(&m, "door-2", true, t3 + MIN), t3 + MIN);
	T_INTEQ(take(d, &out), 1);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), t3 + MIN);
	T_CHECK(json_is_false(json_object_get(r, "sensor_offline")));
	json_decref(r);
	T_INTEQ(tick_take(d, t3 + MIN + 12 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t3 + MIN + 12 * HOUR, &out), 1);
	e = nth_kind(&out, KIND(INACTIVITY), 0);
	T_CHECK(e != NULL);
	if (e != NULL) {
		T_INTEQ(e->welfare->window_start_us, t3 + MIN);
		T_INTEQ(e->welfare->last_activity_us, t1);
		T_INTEQ(e->welfare->repeat, 0);
	}

	/* A sensor going offline by its heartbeat timeout counts the same. */
	struct derive_options ot = opts();
	struct derive_household h1 = household(one_sensor);
	ot.class_timeout_us[CLS(DOOR_SENSOR)] = 2 * HOUR;
	ot.households = &h1;
	ot.nhouseholds = 1;
	struct derive *dt = fresh(&ot, T0);
	sensors_up(dt, one_sensor, t1);
	T_INTEQ(take(dt, &out), 0);
	T_INTEQ(tick_take(dt, t1 + 2 * HOUR, &out), 2);
	e = nth_kind(&out, KIND(SENSOR_OFFLINE), 0);
	T_CHECK(e != NULL && e->event_time_us == t1 + 2 * HOUR);
	T_INTEQ(tick_take(dt, t1 + 40 * HOUR, &out), 0);
	derive_free(dt);
	out_clear(&out);
	derive_free(d);
}

static void
test_activity_resumed(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR, t4 = t1 + 13 * HOUR;

	sensors_up(d, one_sensor, t1);
	T_INTEQ(take(d, &out), 0);
	/* An opening without an alert before it closes nothing. */
	derive_observe(d, ev_door(&m, "door-1", true, t1 + HOUR), t1 + HOUR);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(tick_take(d, t1 + 13 * HOUR, &out), 1);
	T_INTEQ(count_kind(&out, KIND(INACTIVITY)), 1);

	/* After an alert, the door opens: activity_resumed, once. */
	derive_observe(d, ev_door(&m, "door-1", true, t4 + HOUR), t4 + HOUR);
	T_INTEQ(take(d, &out), 1);
	const Event *e = nth_kind(&out, KIND(ACTIVITY_RESUMED), 0);
	T_CHECK(e != NULL);
	if (e != NULL) {
		T_INTEQ(e->event_time_us, t4 + HOUR);
		T_INTEQ(e->severity, SEV(INFO));
		T_INTEQ(e->welfare->last_activity_us, t4 + HOUR);
		T_INTEQ(e->welfare->window_start_us, t1 + HOUR);
		T_STREQ(e->welfare->sensor_device_id, "door-1");
	}
	derive_observe(d, ev_door(&m, "door-1", true, t4 + 2 * HOUR), t4 + 2 * HOUR);
	T_INTEQ(take(d, &out), 0);
	/* The door closing is no activity. */
	derive_observe(d, ev_door(&m, "door-1", false, t4 + 3 * HOUR), t4 + 3 * HOUR);
	T_INTEQ(take(d, &out), 0);
	/* A new window from the last opening. */
	T_INTEQ(tick_take(d, t4 + 14 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t4 + 14 * HOUR, &out), 1);
	T_INTEQ(out.ev[0]->welfare->window_start_us, t4 + 2 * HOUR);
	out_clear(&out);
	derive_free(d);
}

/* The local time `h`:`m` on 2026-01-`day`, `tz` seconds east of UTC. */
static int64_t
local(int day, int h, int m, int tz)
{
	return T0 + (((int64_t)(day - 1) * 86400 + h * 3600 + m * 60) - tz) * S;
}

static void
test_night_activity(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	hh.night_start_min = 22 * 60;
	hh.night_end_min = 6 * 60;
	hh.night_openings = 2;
	hh.tz_offset_s = 8 * 3600;
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0 - 24 * HOUR);
	struct out out = { 0 };
	struct msg m;
	const int tz = 8 * 3600;
	int64_t t;

	/* A night across midnight, +08:00: 23:00, 00:30, then 02:00 is the
	 * third opening (more than two): one alert; 03:00 no other. An
	 * opening at noon and one at 06:00 do not count. */
	t = local(1, 12, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(1, 23, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(2, 0, 30, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);		/* the sensor online: no event */
	t = local(2, 2, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 1);
	const Event *e = nth_kind(&out, KIND(NIGHT_ACTIVITY), 0);
	T_CHECK(e != NULL);
	uint8_t first_id[16] = { 0 };
	if (e != NULL) {
		T_INTEQ(e->welfare->openings, 3);
		T_INTEQ(e->event_time_us, local(2, 2, 0, tz));
		T_INTEQ(e->severity, SEV(WARNING));
		T_STREQ(e->welfare->household, "h-1502");
		memcpy(first_id, e->id.data, 16);
	}
	t = local(2, 3, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(2, 6, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(2, 21, 59, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);
	/* The next night: counted afresh, its own alert. */
	t = local(2, 22, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(2, 23, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);
	t = local(3, 5, 59, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 1);
	e = nth_kind(&out, KIND(NIGHT_ACTIVITY), 0);
	T_CHECK(e != NULL && e->welfare->openings == 3 && memcmp(e->id.data, first_id, 16) != 0);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "night_start_us"), local(2, 22, 0, tz));
	T_INTEQ(jint(r, "night_openings"), 3);
	T_CHECK(json_is_true(json_object_get(r, "night_alerted")));
	json_decref(r);
	derive_free(d);

	/* A window within a day, UTC: 01:00-05:00, more than one opening. */
	struct derive_household hd = household(one_sensor);
	hd.night_start_min = 60;
	hd.night_end_min = 5 * 60;
	hd.night_openings = 1;
	hd.tz_offset_s = 0;
	o.households = &hd;
	d = fresh(&o, T0 - 24 * HOUR);
	t = local(1, 0, 59, 0);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(1, 1, 0, 0);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(1, 5, 0, 0);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);		/* the sensor online: no event */
	/* An opening at 04:59:59.999999 that comes after the one at 05:00 is
	 * not later than the last one: a replay, not counted, though it was in
	 * the night. */
	t = local(1, 4, 59, 0) + 60 * S - 1;
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);
	t = local(2, 1, 0, 0);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	t = local(2, 4, 59, 0);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 1);
	e = nth_kind(&out, KIND(NIGHT_ACTIVITY), 0);
	T_CHECK(e != NULL && e->welfare->openings == 2 && e->event_time_us == local(2, 4, 59, 0));
	derive_free(d);

	/* West of UTC (-05:00), 23:00-02:00: 23:30 and 01:00 local are one
	 * night (the UTC date changes between them). */
	struct derive_household hw = household(one_sensor);
	hw.night_start_min = 23 * 60;
	hw.night_end_min = 2 * 60;
	hw.night_openings = 1;
	hw.tz_offset_s = -5 * 3600;
	o.households = &hw;
	d = fresh(&o, T0 - 24 * HOUR);
	t = local(1, 23, 30, -5 * 3600);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);		/* the sensor online: no event */
	t = local(2, 1, 0, -5 * 3600);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 1);
	T_INTEQ(count_kind(&out, KIND(NIGHT_ACTIVITY)), 1);
	t = local(2, 2, 0, -5 * 3600);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(take(d, &out), 0);
	out_clear(&out);
	derive_free(d);
}

static void
test_peephole_enrich(void)
{
	struct derive_options o = opts();
	struct derive_household hh[2] = { household(one_sensor), household(two_sensors) };
	hh[1].name = "h-0301";
	hh[1].community = "";
	hh[1].peephole = "ph-0301";
	o.households = hh;
	o.nhouseholds = 2;
	struct derive *d = fresh(&o, T0);
	struct msg m;
	Event *ev;

	ev = ev_peephole(&m, "c-1", "ph-1502", "", T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "h-1502");
	ev = ev_peephole(&m, "c-1", "ph-1502", NULL, T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "h-1502");
	/* What the device said stays. */
	ev = ev_peephole(&m, "c-1", "ph-1502", "its-own", T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "its-own");
	/* Another community's device of that name is not it. */
	ev = ev_peephole(&m, "c-2", "ph-1502", "", T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "");
	/* A household without a community takes its peephole anywhere. */
	ev = ev_peephole(&m, "c-7", "ph-0301", "", T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "h-0301");
	/* Not a configured peephole. */
	ev = ev_peephole(&m, "c-1", "ph-9999", "", T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "");
	/* Not a peephole event (a door sensor named like one). */
	ev = ev_door(&m, "ph-1502", true, T0);
	derive_enrich(d, ev);
	T_CHECK(ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_DOOR && ev->door == &m.door &&
	    m.door.state == GRIDBRIDGE__V1__DOOR_STATE__DOOR_STATE_OPEN);
	derive_free(d);

	/* A household without a peephole ("" as from the configuration). */
	struct derive_household np = household(one_sensor);
	np.peephole = "";
	o.households = &np;
	o.nhouseholds = 1;
	d = fresh(&o, T0);
	ev = ev_peephole(&m, "c-1", "", "", T0);
	derive_enrich(d, ev);
	T_STREQ(ev->peephole->household, "");
	derive_free(d);
}

/* [welfare] community empty: the sensors' device ids alone decide, in
 * whatever community they are. */
static void
test_household_without_community(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	hh.community = "";
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR;
	Event *ev;

	ev = ev_avail(&m, "door-1", true, T0 + S);
	ev->community_id = (char *)"c-9";
	derive_observe(d, ev, T0 + S);
	ev = ev_door(&m, "door-1", true, t1);
	ev->community_id = (char *)"c-9";
	derive_observe(d, ev, t1);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "last_activity_us"), t1);
	T_INTEQ(jint(r, "window_start_us"), t1);
	json_decref(r);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR, &out), 1);
	const Event *e = nth_kind(&out, KIND(INACTIVITY), 0);
	T_CHECK(e != NULL);
	if (e != NULL) {
		T_INTEQ(e->event_time_us, t1 + 12 * HOUR);
		T_STREQ(e->welfare->household, "h-1502");
		T_STREQ(e->device_id, "door-1");
		T_STREQ(e->community_id, "c-9");	/* its sensor's */
	}
	/* Its sensor going offline is told for the household. */
	ev = ev_avail(&m, "door-1", false, t1 + 13 * HOUR);
	ev->community_id = (char *)"c-9";
	derive_observe(d, ev, t1 + 13 * HOUR);
	T_INTEQ(take(d, &out), 2);
	T_INTEQ(count_kind(&out, KIND(SENSOR_OFFLINE)), 1);
	out_clear(&out);
	derive_free(d);
}

/* Watched only while every sensor is online: a sensor never heard from
 * leaves the household unwatched, and the window starts when the last one
 * is online (the time before is nobody's inactivity). */
static void
test_watched_when_all_online(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(two_sensors);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR, t2 = T0 + 30 * HOUR;

	/* door-1 online and opened; door-2 never heard from. */
	derive_observe(d, ev_avail(&m, "door-1", true, T0 + S), T0 + S);
	derive_observe(d, ev_door(&m, "door-1", true, t1), t1);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR, &out), 0);
	T_INTEQ(tick_take(d, t2 - S, &out), 0);
	/* door-2 heard from at last: watched, the window from then. */
	derive_observe(d, ev_door(&m, "door-2", false, t2), t2);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), t2);
	T_INTEQ(jint(r, "last_activity_us"), t1);
	json_decref(r);
	T_INTEQ(tick_take(d, t2 + 12 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t2 + 12 * HOUR, &out), 1);
	const Event *e = nth_kind(&out, KIND(INACTIVITY), 0);
	T_CHECK(e != NULL && e->welfare->window_start_us == t2 &&
	    e->welfare->last_activity_us == t1 && e->welfare->repeat == 0);
	out_clear(&out);
	derive_free(d);
}

/* A new installation: the sensor is first heard from 10 h after the start;
 * the window starts then, not at the start. */
static void
test_window_from_sensors_online(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	derive_observe(d, ev_avail(&m, "door-1", true, T0 + 10 * HOUR), T0 + 10 * HOUR);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), T0 + 10 * HOUR);
	T_INTEQ(jint(r, "last_activity_us"), -2);
	json_decref(r);
	T_INTEQ(tick_take(d, T0 + 12 * HOUR, &out), 0);
	T_INTEQ(tick_take(d, T0 + 22 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, T0 + 22 * HOUR, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->kind == KIND(INACTIVITY) &&
	    out.ev[0]->welfare->window_start_us == T0 + 10 * HOUR &&
	    out.ev[0]->event_time_us == T0 + 22 * HOUR);
	out_clear(&out);
	derive_free(d);
}

/* An alert, then a sensor outage, then the door opens: the alert is
 * closed (the outage changed nothing about it). */
static void
test_alert_closed_after_outage(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR;

	sensors_up(d, one_sensor, t1);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR, &out), 1);		/* the alert */
	derive_observe(d, ev_avail(&m, "door-1", false, t1 + 13 * HOUR), t1 + 13 * HOUR);
	T_INTEQ(take(d, &out), 2);		/* offline, sensor offline */
	derive_observe(d, ev_avail(&m, "door-1", true, t1 + 14 * HOUR), t1 + 14 * HOUR);
	T_INTEQ(take(d, &out), 1);		/* online */
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), t1 + 14 * HOUR);
	T_INTEQ(jint(r, "alerts"), 0);
	T_INTEQ(jint(r, "alert_window_us"), t1);
	json_decref(r);
	derive_observe(d, ev_door(&m, "door-1", true, t1 + 15 * HOUR), t1 + 15 * HOUR);
	T_INTEQ(take(d, &out), 1);
	const Event *e = nth_kind(&out, KIND(ACTIVITY_RESUMED), 0);
	T_CHECK(e != NULL);
	if (e != NULL) {
		T_INTEQ(e->event_time_us, t1 + 15 * HOUR);
		T_INTEQ(e->welfare->window_start_us, t1);
		T_INTEQ(e->welfare->last_activity_us, t1 + 15 * HOUR);
	}
	r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "alert_window_us"), -2);
	json_decref(r);
	/* Closed once. */
	derive_observe(d, ev_door(&m, "door-1", true, t1 + 16 * HOUR), t1 + 16 * HOUR);
	T_INTEQ(take(d, &out), 0);
	out_clear(&out);
	derive_free(d);
}

/* The message that brings a sensor back is a door opening (its device time
 * a moment before its receive time): the opening counts, and closes the
 * alert of before; the window starts as the sensor is online. */
static void
test_opening_brings_sensor_back(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR, t2 = t1 + 15 * HOUR;

	sensors_up(d, one_sensor, t1);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR, &out), 1);		/* the alert */
	derive_observe(d, ev_avail(&m, "door-1", false, t1 + 13 * HOUR), t1 + 13 * HOUR);
	T_INTEQ(take(d, &out), 2);
	Event *ev = ev_door(&m, "door-1", true, t2 - 200000);
	ev->received_time_us = t2;
	derive_observe(d, ev, t2);
	T_INTEQ(take(d, &out), 2);
	T_INTEQ(count_type(&out, TYPE(DEVICE_ONLINE)), 1);
	const Event *e = nth_kind(&out, KIND(ACTIVITY_RESUMED), 0);
	T_CHECK(e != NULL && e->event_time_us == t2 - 200000 && e->welfare->window_start_us == t1);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "last_activity_us"), t2 - 200000);
	T_INTEQ(jint(r, "window_start_us"), t2);
	T_CHECK(json_is_false(json_object_get(r, "sensor_offline")));
	json_decref(r);
	T_INTEQ(tick_take(d, t2 + 12 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t2 + 12 * HOUR, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->window_start_us == t2);
	out_clear(&out);
	derive_free(d);
}

/* An opening older than the window (the sensors came back after it, its
 * message came late) is activity: the last activity, the night count, an
 * alert closed; the window stays where the sensors being online put it. */
static void
test_opening_before_window(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(two_sensors);
	hh.night_start_min = 22 * 60;
	hh.night_end_min = 6 * 60;
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int tz = 8 * 3600;
	/* T0 is 08:00 local. */
	const int64_t back = T0 + 15 * HOUR, opened = T0 + 14 * HOUR + 30 * MIN;

	sensors_up(d, two_sensors, 0);
	T_INTEQ(tick_take(d, T0 + S + 12 * HOUR, &out), 1);	/* the alert */
	derive_observe(d, ev_avail(&m, "door-2", false, T0 + 13 * HOUR), T0 + 13 * HOUR);
	derive_observe(d, ev_avail(&m, "door-2", true, back), back);
	T_INTEQ(take(d, &out), 3);
	/* door-1's opening at 22:30 local, received after door-2 came back. */
	Event *ev = ev_door(&m, "door-1", true, opened);
	ev->received_time_us = back + MIN;
	derive_observe(d, ev, back + MIN);
	T_INTEQ(take(d, &out), 1);
	const Event *e = nth_kind(&out, KIND(ACTIVITY_RESUMED), 0);
	T_CHECK(e != NULL && e->welfare->window_start_us == T0 + S && e->event_time_us == opened);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "last_activity_us"), opened);
	T_INTEQ(jint(r, "window_start_us"), back);
	T_INTEQ(jint(r, "night_start_us"), local(1, 22, 0, tz));
	T_INTEQ(jint(r, "night_openings"), 1);
	json_decref(r);
	T_INTEQ(tick_take(d, opened + 12 * HOUR, &out), 0);
	T_INTEQ(tick_take(d, back + 12 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, back + 12 * HOUR, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->window_start_us == back &&
	    out.ev[0]->welfare->last_activity_us == opened);
	out_clear(&out);
	derive_free(d);
}

/* An opening not later than the last one is a replay: the night's count
 * does not grow (two openings and the second again are two, not more
 * than night_openings = 2), and the window does not move. */
static void
test_replayed_opening(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	hh.night_start_min = 22 * 60;
	hh.night_end_min = 6 * 60;
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int tz = 8 * 3600;
	const int64_t t1 = local(1, 23, 0, tz), t2 = local(2, 1, 0, tz);

	sensors_up(d, one_sensor, 0);
	derive_observe(d, ev_door(&m, "door-1", true, t1), t1);
	derive_observe(d, ev_door(&m, "door-1", true, t2), t2);
	T_INTEQ(take(d, &out), 0);
	/* The second again, and the first again. */
	derive_observe(d, ev_door(&m, "door-1", true, t2), t2 + MIN);
	derive_observe(d, ev_door(&m, "door-1", true, t1), t2 + 2 * MIN);
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_WELFARE] == NULL);
	/* The window is still the second's. */
	T_INTEQ(tick_take(d, t2 + 12 * HOUR, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->window_start_us == t2);
	/* A replay after the alert closes nothing. */
	derive_observe(d, ev_door(&m, "door-1", true, t2), t2 + 12 * HOUR + MIN);
	T_INTEQ(take(d, &out), 0);
	/* A third opening in that night (late) is more than two. */
	derive_observe(d, ev_door(&m, "door-1", true, t2 + MIN), t2 + 12 * HOUR + 2 * MIN);
	T_INTEQ(take(d, &out), 2);
	T_INTEQ(count_kind(&out, KIND(ACTIVITY_RESUMED)), 1);
	T_INTEQ(count_kind(&out, KIND(NIGHT_ACTIVITY)), 1);
	out_clear(&out);
	derive_free(d);
}

/* A door sensor's clock far off (clock_skewed): the opening is taken at
 * its receive time, so it neither moves the window a year on nor makes the
 * real openings after it replays. */
static void
test_skewed_opening(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t t1 = T0 + HOUR;

	sensors_up(d, one_sensor, 0);
	Event *ev = ev_door(&m, "door-1", true, t1 + 365 * 24 * HOUR);
	ev->received_time_us = t1;
	ev->clock_skewed = true;
	derive_observe(d, ev, t1);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "last_activity_us"), t1);
	T_INTEQ(jint(r, "window_start_us"), t1);
	json_decref(r);
	derive_observe(d, ev_door(&m, "door-1", true, t1 + HOUR), t1 + HOUR);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(tick_take(d, t1 + 13 * HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, t1 + 13 * HOUR, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->kind == KIND(INACTIVITY) &&
	    out.ev[0]->welfare->last_activity_us == t1 + HOUR);
	/* Skewed into the past: at its receive time too, so not a replay. */
	ev = ev_door(&m, "door-1", true, T0 - 365 * 24 * HOUR);
	ev->received_time_us = t1 + 14 * HOUR;
	ev->clock_skewed = true;
	derive_observe(d, ev, t1 + 14 * HOUR);
	T_INTEQ(take(d, &out), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->kind == KIND(ACTIVITY_RESUMED) &&
	    out.ev[0]->event_time_us == t1 + 14 * HOUR);
	out_clear(&out);
	derive_free(d);
}

/* ---- reports ----------------------------------------------------------- */

static void
test_report_overdue(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t deadline = T0 + 2 * HOUR;

	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, deadline, 0, 0, T0), T0);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-1");
	T_INTEQ(jint(r, "deadline_us"), deadline);
	T_INTEQ(jint(r, "opened_us"), T0);
	T_INTEQ(jint(r, "handled_us"), -2);
	T_STREQ(jstr(r, "device_id"), "qr-b03-east");
	T_STREQ(jstr(r, "building"), "b03");
	json_decref(r);

	T_INTEQ(tick_take(d, deadline - 1, &out), 0);
	/* Neither handled nor closed by its deadline: one overdue event. */
	T_INTEQ(tick_take(d, deadline + 3 * S, &out), 1);
	const Event *e = out.ev[0];
	T_INTEQ(e->event_type, TYPE(REPORT_OVERDUE));
	T_STREQ(e->route, "reports");
	T_STREQ(e->vendor, "gridbridge");
	T_STREQ(e->community_id, "c-1");
	T_STREQ(e->device_id, "qr-b03-east");
	T_INTEQ(e->device_class, CLS(REPORT_POINT));
	T_INTEQ(e->severity, SEV(NOTICE));
	T_INTEQ(e->event_time_us, deadline);
	T_INTEQ(e->received_time_us, deadline + 3 * S);
	T_STREQ(e->report->report_id, "r-1");
	T_STREQ(e->report->building, "b03");
	T_STREQ(e->report->door, "b03-east");
	T_STREQ(e->report->category, "lift");
	T_INTEQ(e->report->opened_us, T0);
	T_INTEQ(e->report->deadline_us, deadline);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-1");
	T_INTEQ(jint(r, "overdue_us"), deadline + 3 * S);
	json_decref(r);
	T_INTEQ(tick_take(d, deadline + HOUR, &out), 0);

	/* Handled after it was overdue: nothing more (test_report_kept_a_day:
	 * kept a day, then let go). */
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-1", 0, 0, deadline + 2 * HOUR, 0,
	    deadline + 2 * HOUR), deadline + 2 * HOUR);
	T_INTEQ(tick_take(d, deadline + 2 * HOUR, &out), 0);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-1");
	T_INTEQ(jint(r, "handled_us"), deadline + 2 * HOUR);
	T_INTEQ(jint(r, "deadline_us"), deadline);
	json_decref(r);
	T_INTEQ(tick_take(d, deadline + 3 * HOUR, &out), 0);
	T_CHECK(out.rows[ROWS_REPORTS] == NULL);
	T_CHECK(!derive_pending(d));
	out_clear(&out);
	derive_free(d);
}

static void
test_report_handled_in_time(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t deadline = T0 + 2 * HOUR;

	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-2", T0, deadline, 0, 0, T0), T0);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-3", T0, deadline, 0, 0, T0), T0);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-4", T0, deadline, 0, 0, T0), T0);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-5", T0, 0, 0, 0, T0), T0);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_REPORTS]), 4);
	/* r-2 handled (the time in the body), r-3 handled (only the event's
	 * time says when), r-4 closed; r-5 has no deadline. */
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-2", 0, 0, T0 + HOUR, 0,
	    T0 + HOUR), T0 + HOUR);
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-3", 0, 0, 0, 0, T0 + HOUR),
	    T0 + HOUR);
	derive_observe(d, ev_report(&m, TYPE(REPORT_CLOSED), "r-4", 0, 0, 0, 0, T0 + HOUR),
	    T0 + HOUR);
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-3");
	T_INTEQ(jint(r, "handled_us"), T0 + HOUR);
	json_decref(r);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-4");
	T_INTEQ(jint(r, "closed_us"), T0 + HOUR);
	json_decref(r);
	T_INTEQ(tick_take(d, deadline + HOUR, &out), 0);
	T_INTEQ(tick_take(d, deadline + 100 * HOUR, &out), 0);
	out_clear(&out);
	derive_free(d);
}

/* A report handled or closed is kept for a day after derive.c knew it (its
 * clock): a late duplicate of its opening does not open it again, a
 * retake writes its row again; then it is forgotten (once written). */
static void
test_report_kept_a_day(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t deadline = T0 + HOUR, known = T0 + 10 * MIN;
	json_t *r;

	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, deadline, 0, 0, T0), T0);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-2", T0, deadline, 0, 0, T0), T0);
	T_INTEQ(take(d, &out), 0);
	/* r-1 handled at T0 + 1 min, told at T0 + 10 min; r-2 closed. */
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-1", 0, 0, T0 + MIN, 0, T0 + MIN),
	    known);
	derive_observe(d, ev_report(&m, TYPE(REPORT_CLOSED), "r-2", 0, 0, 0, T0 + MIN, T0 + MIN),
	    known);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_REPORTS]), 2);

	/* That take was refused: both rows again, as handled and closed. */
	derive_retake(d);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-1");
	T_CHECK(r != NULL && jint(r, "handled_us") == T0 + MIN);
	json_decref(r);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-2");
	T_CHECK(r != NULL && jint(r, "closed_us") == T0 + MIN);
	json_decref(r);

	/* Their openings delivered again (MQTT QoS 1): not opened again, no
	 * overdue event at the deadline. */
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, deadline, 0, 0, T0),
	    known + MIN);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-2", T0, deadline, 0, 0, T0),
	    known + MIN);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(tick_take(d, deadline, &out), 0);
	T_INTEQ(tick_take(d, deadline + 12 * HOUR, &out), 0);

	/* Still kept a moment before 30 days after it was known (not after
	 * the time it was handled), forgotten then. */
	T_INTEQ(tick_take(d, known + 30 * 24 * HOUR - 1, &out), 0);
	derive_retake(d);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_REPORTS]), 2);
	T_INTEQ(tick_take(d, known + 30 * 24 * HOUR, &out), 0);
	derive_retake(d);
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_REPORTS] == NULL);

	/* Not before its row is taken: handled, 30 days pass before the
	 * take, its row still comes; forgotten at the next tick. */
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-3", T0, 0, 0, 0, T0), known);
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-3", 0, 0, 0, 0, known), known);
	T_INTEQ(tick_take(d, known + 60 * 24 * HOUR, &out), 0);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-3");
	T_CHECK(r != NULL && jint(r, "handled_us") == known);
	json_decref(r);
	T_INTEQ(tick_take(d, known + 60 * 24 * HOUR + S, &out), 0);
	derive_retake(d);
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_REPORTS] == NULL);
	out_clear(&out);
	derive_free(d);
}

/* A report's device (the QR code it was reported at) is in its row: after
 * a restart, the overdue event is the one it would have been. */
static void
test_report_device_restart(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	struct db b;

	db_init(&b);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0), T0);
	flush(d, &out, &b);
	json_t *r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-1");
	T_STREQ(jstr(r, "device_id"), "qr-b03-east");
	json_decref(r);
	/* A later message without a device does not blank it. */
	Event *ev = ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0);
	ev->device_id = (char *)"";
	derive_observe(d, ev, T0 + S);
	flush(d, &out, &b);
	d = restart(d, &o, &b, T0 + 2 * S);
	T_INTEQ(tick_flush(d, T0 + HOUR, &out, &b), 1);
	T_CHECK(out.n == 1 && strcmp(out.ev[0]->device_id, "qr-b03-east") == 0 &&
	    strcmp(out.ev[0]->report->building, "b03") == 0 &&
	    out.ev[0]->event_time_us == T0 + HOUR);
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

/* ---- ids --------------------------------------------------------------- */

/* A small history, fed to `d` with the clock `skew` later each time. */
static void
history(struct derive *d, int64_t skew, struct out *all)
{
	struct msg m;
	struct out o = { 0 };

	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0), T0 + skew);
	derive_observe(d, ev_plain(&m, "gate-2", CLS(ACCESS_GATE), T0), T0 + skew);
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + MIN), T0 + MIN + skew);
	derive_observe(d, ev_lwt(&m, "gate-2", CLS(ACCESS_GATE), T0 + 2 * MIN),
	    T0 + 2 * MIN + skew);
	derive_observe(d, ev_plain(&m, "gate-2", CLS(ACCESS_GATE), T0 + 3 * MIN),
	    T0 + 3 * MIN + skew);
	derive_observe(d, ev_avail(&m, "door-1", true, T0 + S), T0 + S + skew);
	derive_observe(d, ev_door(&m, "door-1", true, T0 + HOUR), T0 + HOUR + skew);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0),
	    T0 + skew);
	derive_tick(d, T0 + 13 * HOUR + skew);
	derive_tick(d, T0 + 17 * HOUR + skew);
	derive_observe(d, ev_door(&m, "door-1", true, T0 + 18 * HOUR), T0 + 18 * HOUR + skew);
	take(d, &o);
	*all = o;
}

static void
test_ids(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *a = fresh(&o, T0), *b = fresh(&o, T0);
	struct out oa = { 0 }, ob = { 0 };

	history(a, 0, &oa);
	history(b, 7 * S, &ob);
	/* gate-1 offline, gate-2 offline, gate-2 online, inactivity, report
	 * overdue, repeat 1, activity resumed (first states online make
	 * none). */
	T_INTEQ(oa.n, 7);
	T_INTEQ(ob.n, 7);
	bool same = oa.n == ob.n;
	for (size_t i = 0; same && i < oa.n; i++)
		same = same_id(oa.ev[i], ob.ev[i]) && oa.ev[i]->event_type == ob.ev[i]->event_type;
	/* Derived again, later: the same events, the same ids. */
	T_CHECK(same);
	bool distinct = true;
	for (size_t i = 0; i < oa.n; i++)
		for (size_t k = i + 1; k < oa.n; k++)
			if (same_id(oa.ev[i], oa.ev[k]))
				distinct = false;
	/* Different devices, states, times, rules: different ids. */
	T_CHECK(distinct);
	out_clear(&oa);
	out_clear(&ob);
	derive_free(a);
	derive_free(b);

	/* The same device offline at another time: another id; another
	 * community's device of that name: another id. */
	struct msg m;
	struct out x = { 0 }, y = { 0 }, z = { 0 };
	a = fresh(&o, T0);
	b = fresh(&o, T0);
	struct derive *c = fresh(&o, T0);
	derive_observe(a, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0), T0);
	derive_observe(b, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 1), T0 + 1);
	Event *ev = ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0);
	ev->community_id = (char *)"c-2";
	derive_observe(c, ev, T0);
	take(a, &x);
	take(b, &y);
	take(c, &z);
	T_CHECK(x.n == 1 && y.n == 1 && z.n == 1);
	if (x.n == 1 && y.n == 1 && z.n == 1) {
		T_CHECK(!same_id(x.ev[0], y.ev[0]));
		T_CHECK(!same_id(x.ev[0], z.ev[0]));
	}
	out_clear(&x);
	out_clear(&y);
	out_clear(&z);
	derive_free(a);
	derive_free(b);
	derive_free(c);
}

/* ---- persistence ------------------------------------------------------- */

/* Every derived event's id, in the order they came. */
struct ids {
	uint8_t v[64][16];
	int type[64];
	size_t n;
};

static void
ids_add(struct ids *ids, const struct out *o)
{
	for (size_t i = 0; i < o->n && ids->n < 64; i++) {
		memcpy(ids->v[ids->n], o->ev[i]->id.data, 16);
		ids->type[ids->n++] = o->ev[i]->event_type;
	}
}

static bool
ids_equal(const struct ids *a, const struct ids *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (memcmp(a->v[i], b->v[i], 16) != 0 || a->type[i] != b->type[i])
			return false;
	return true;
}

static struct derive_options
registry_opts(struct derive_device_def *devs)
{
	struct derive_options o = opts();

	o.hold_down_us = 10 * S;
	o.expected_grace_us = 30 * S;
	o.class_timeout_us[CLS(ACCESS_GATE)] = 60 * S;
	devs[0] = (struct derive_device_def){ "c-1", "cam-9", CLS(CAMERA), -1, true };
	o.devices = devs;
	o.ndevices = 1;
	return o;
}

/* The registry's story, with a restart after each step when `restarts`:
 * the same events either way, none twice. */
static void
registry_story(bool restarts, struct ids *ids)
{
	struct derive_device_def devs[1];
	struct derive_options o = registry_opts(devs);
	struct db b;
	struct out out = { 0 };
	struct msg m;
	struct derive *d;

	db_init(&b);
	d = fresh(&o, T0);
#define STEP(now) do { if (restarts) d = restart(d, &o, &b, (now)); } while (0)
	flush(d, &out, &b);
	ids_add(ids, &out);
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + S), T0 + S);
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + S), T0 + S);
	flush(d, &out, &b);
	ids_add(ids, &out);
	/* The gateway's last will, not yet held for the hold-down. */
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 5 * S), T0 + 5 * S);
	flush(d, &out, &b);
	STEP(T0 + 6 * S);
	T_INTEQ(tick_flush(d, T0 + 14 * S, &out, &b), 0);
	/* Held: offline at the time it began, once. */
	T_INTEQ(tick_flush(d, T0 + 15 * S, &out, &b), 1);
	T_CHECK(event_of(&out, "gw-1") != NULL && out.ev[0]->event_time_us == T0 + 5 * S);
	ids_add(ids, &out);
	STEP(T0 + 20 * S);
	T_INTEQ(tick_flush(d, T0 + 25 * S, &out, &b), 0);
	/* The declared camera: never heard from, once. */
	T_INTEQ(tick_flush(d, T0 + 31 * S, &out, &b), 1);
	T_CHECK(event_of(&out, "cam-9") != NULL && out.ev[0]->event_time_us == T0 + 30 * S);
	ids_add(ids, &out);
	STEP(T0 + 40 * S);
	T_INTEQ(tick_flush(d, T0 + 45 * S, &out, &b), 0);
	/* The gate's timeout, from its last message before the restarts. */
	T_INTEQ(tick_flush(d, T0 + 61 * S - 1, &out, &b), 0);
	T_INTEQ(tick_flush(d, T0 + 61 * S, &out, &b), 1);
	T_CHECK(event_of(&out, "gate-1") != NULL && out.ev[0]->event_time_us == T0 + 61 * S);
	ids_add(ids, &out);
	STEP(T0 + 70 * S);
	T_INTEQ(tick_flush(d, T0 + 100 * S, &out, &b), 0);
	/* Back on its next message, the hold-down across a restart. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 200 * S), T0 + 200 * S);
	flush(d, &out, &b);
	STEP(T0 + 201 * S);
	T_INTEQ(tick_flush(d, T0 + 210 * S, &out, &b), 1);
	T_CHECK(event_of(&out, "gate-1") != NULL && out.ev[0]->event_type == TYPE(DEVICE_ONLINE));
	ids_add(ids, &out);
	STEP(T0 + 220 * S);
	T_INTEQ(tick_flush(d, T0 + 230 * S, &out, &b), 0);
	size_t online;
	T_INTEQ(derive_devices(d, &online), 3);
	T_INTEQ(online, 1);
#undef STEP
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

static void
welfare_story(bool restarts, struct ids *ids)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	hh.night_start_min = 22 * 60;
	hh.night_end_min = 6 * 60;
	hh.night_openings = 2;
	o.households = &hh;
	o.nhouseholds = 1;
	struct db b;
	struct out out = { 0 };
	struct msg m;
	struct derive *d;
	const int tz = 8 * 3600;
	int64_t t1 = local(1, 23, 0, tz), t;

	db_init(&b);
	d = fresh(&o, T0);
#define STEP(now) do { if (restarts) d = restart(d, &o, &b, (now)); } while (0)
	sensors_up(d, one_sensor, 0);
	flush(d, &out, &b);
	ids_add(ids, &out);
	/* Two openings in the night, a restart, a third: the night alert. */
	t = local(1, 22, 30, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	derive_observe(d, ev_door(&m, "door-1", true, t1), t1);
	flush(d, &out, &b);
	STEP(t1 + S);
	t = local(2, 1, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(flush(d, &out, &b), 1);
	T_INTEQ(count_kind(&out, KIND(NIGHT_ACTIVITY)), 1);
	ids_add(ids, &out);
	STEP(t + S);
	/* A fourth: not again. */
	t1 = local(2, 2, 0, tz);
	derive_observe(d, ev_door(&m, "door-1", true, t1), t1);
	T_INTEQ(flush(d, &out, &b), 0);
	STEP(t1 + S);
	T_INTEQ(tick_flush(d, t1 + 12 * HOUR - 1, &out, &b), 0);
	T_INTEQ(tick_flush(d, t1 + 12 * HOUR, &out, &b), 1);
	T_INTEQ(count_kind(&out, KIND(INACTIVITY)), 1);
	ids_add(ids, &out);
	/* A restart inside the window: no second alert. */
	STEP(t1 + 12 * HOUR + MIN);
	T_INTEQ(tick_flush(d, t1 + 13 * HOUR, &out, &b), 0);
	/* The repeat at its time. */
	T_INTEQ(tick_flush(d, t1 + 16 * HOUR, &out, &b), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->repeat == 1 &&
	    out.ev[0]->event_time_us == t1 + 16 * HOUR);
	ids_add(ids, &out);
	STEP(t1 + 17 * HOUR);
	T_INTEQ(tick_flush(d, t1 + 18 * HOUR, &out, &b), 0);
	/* The door opens: the alert is closed, once. */
	t = t1 + 19 * HOUR;
	derive_observe(d, ev_door(&m, "door-1", true, t), t);
	T_INTEQ(flush(d, &out, &b), 1);
	T_INTEQ(count_kind(&out, KIND(ACTIVITY_RESUMED)), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->window_start_us == t1);
	ids_add(ids, &out);
	STEP(t + S);
	/* A sensor offline, a restart: once, and no inactivity meanwhile. */
	derive_observe(d, ev_avail(&m, "door-1", false, t + HOUR), t + HOUR);
	T_INTEQ(flush(d, &out, &b), 2);
	ids_add(ids, &out);
	STEP(t + 2 * HOUR);
	T_INTEQ(tick_flush(d, t + 40 * HOUR, &out, &b), 0);
	/* Online again, a new window from then. */
	derive_observe(d, ev_avail(&m, "door-1", true, t + 41 * HOUR), t + 41 * HOUR);
	T_INTEQ(flush(d, &out, &b), 1);
	ids_add(ids, &out);
	STEP(t + 42 * HOUR);
	T_INTEQ(tick_flush(d, t + 53 * HOUR - 1, &out, &b), 0);
	T_INTEQ(tick_flush(d, t + 53 * HOUR, &out, &b), 1);
	T_CHECK(out.n == 1 && out.ev[0]->welfare->window_start_us == t + 41 * HOUR);
	ids_add(ids, &out);
#undef STEP
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

static void
reports_story(bool restarts, struct ids *ids)
{
	struct derive_options o = opts();
	struct db b;
	struct out out = { 0 };
	struct msg m;
	struct derive *d;
	const int64_t deadline = T0 + 2 * HOUR;

	db_init(&b);
	d = fresh(&o, T0);
#define STEP(now) do { if (restarts) d = restart(d, &o, &b, (now)); } while (0)
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, deadline, 0, 0, T0), T0);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-2", T0, deadline, 0, 0, T0), T0);
	flush(d, &out, &b);
	STEP(T0 + HOUR);
	/* r-2 handled in time. */
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-2", 0, 0, 0, 0, T0 + HOUR),
	    T0 + HOUR);
	flush(d, &out, &b);
	STEP(T0 + HOUR + S);
	T_INTEQ(tick_flush(d, deadline - 1, &out, &b), 0);
	T_INTEQ(tick_flush(d, deadline, &out, &b), 1);
	T_CHECK(out.n == 1 && strcmp(out.ev[0]->report->report_id, "r-1") == 0 &&
	    out.ev[0]->event_time_us == deadline && out.ev[0]->report->opened_us == T0 &&
	    strcmp(out.ev[0]->report->category, "lift") == 0);
	ids_add(ids, &out);
	STEP(deadline + S);
	T_INTEQ(tick_flush(d, deadline + HOUR, &out, &b), 0);
	/* Handled late: nothing more, before or after a restart. */
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-1", 0, 0, 0, 0, deadline + HOUR),
	    deadline + HOUR);
	T_INTEQ(flush(d, &out, &b), 0);
	STEP(deadline + 2 * HOUR);
	T_INTEQ(tick_flush(d, deadline + 3 * HOUR, &out, &b), 0);
#undef STEP
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

static void
test_persistence(void)
{
	struct ids plain = { .n = 0 }, restarted = { .n = 0 };

	registry_story(false, &plain);
	registry_story(true, &restarted);
	/* gw-1 offline, cam-9 offline, gate-1 offline, gate-1 online (the
	 * first states online make none) */
	T_INTEQ(plain.n, 4);
	T_CHECK(ids_equal(&plain, &restarted));

	memset(&plain, 0, sizeof(plain));
	memset(&restarted, 0, sizeof(restarted));
	welfare_story(false, &plain);
	welfare_story(true, &restarted);
	/* night, inactivity, repeat, resumed, offline + sensor offline,
	 * online, inactivity (the sensor's first state online makes none) */
	T_INTEQ(plain.n, 8);
	T_CHECK(ids_equal(&plain, &restarted));

	memset(&plain, 0, sizeof(plain));
	memset(&restarted, 0, sizeof(restarted));
	reports_story(false, &plain);
	reports_story(true, &restarted);
	T_INTEQ(plain.n, 1);
	T_CHECK(ids_equal(&plain, &restarted));
}

/* A flap (offline, online again within the hold-down) leaves no trace in
 * the state; after a restart the journal replays both records, and only
 * then does the clock tick (derive.h: no tick while replaying): nothing. */
static void
test_replayed_flap(void)
{
	struct derive_options o = opts();
	o.hold_down_us = 10 * S;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	struct db b;
	size_t n;

	db_init(&b);
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0), T0);
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 100 * S), T0 + 100 * S);
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + 102 * S), T0 + 102 * S);
	n = flush(d, &out, &b);
	n += tick_flush(d, T0 + 150 * S, &out, &b);
	T_INTEQ(n, 0);
	d = restart(d, &o, &b, T0 + 200 * S);
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 100 * S), T0 + 200 * S);
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + 102 * S), T0 + 200 * S);
	n = tick_flush(d, T0 + 201 * S, &out, &b);
	n += tick_flush(d, T0 + 300 * S, &out, &b);
	T_INTEQ(n, 0);
	json_t *r = json_object_get(b.devices, "c-1\x1fgw-1");
	T_STREQ(jstr(r, "state"), "online");
	T_INTEQ(jint(r, "state_since_us"), T0);
	T_INTEQ(jint(r, "pending_state"), -2);
	size_t online;
	T_INTEQ(derive_devices(d, &online), 1);
	T_INTEQ(online, 1);
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

/* The rows derive_load is given are read as derive_take writes them. */
static void
test_load_rows(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.hold_down_us = 10 * S;
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	struct db b;

	db_init(&b);
	sensors_up(d, one_sensor, T0 + HOUR);
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0 + S), T0 + S);
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 2 * S), T0 + 2 * S);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0), T0);
	flush(d, &out, &b);
	/* Loaded, then every row written again: the same rows. */
	d = restart(d, &o, &b, T0 + 3 * S);
	derive_retake(d);
	take(d, &out);
	for (int i = 0; i < 3; i++) {
		json_t *a = json_loads(out.rows[i], 0, NULL), *x;
		size_t k;
		bool same = json_array_size(a) > 0;
		json_array_foreach(a, k, x) {
			json_t *y = NULL;
			char key[512];
			if (i == ROWS_DEVICES) {
				db_key(key, sizeof(key), x, "community_id", "device_id");
				y = json_object_get(b.devices, key);
			} else if (i == ROWS_WELFARE) {
				y = json_object_get(b.welfare, json_string_value(json_object_get(x,
				    "household")));
			} else {
				db_key(key, sizeof(key), x, "community_id", "report_id");
				y = json_object_get(b.reports, key);
			}
			if (!json_equal(x, y)) {
				same = false;
				char *sx = json_dumps(x, JSON_COMPACT), *sy = json_dumps(y, JSON_COMPACT);
				printf("#   written: %s\n#   again:   %s\n", sy ? sy : "(none)", sx);
				free(sx);
				free(sy);
			}
		}
		json_decref(a);
		T_CHECK(same);
	}
	/* gw-1's offline is pending: both still online. */
	size_t online;
	T_INTEQ(derive_devices(d, &online), 2);
	T_INTEQ(online, 2);

	/* Texts that are not arrays: refused, nothing taken. */
	struct derive *x = derive_new(&o);
	T_INTEQ(derive_load(x, "{}", NULL, NULL, T0), -1);
	T_INTEQ(derive_load(x, "[]", "not json", "[]", T0), -1);
	T_INTEQ(derive_devices(x, NULL), 0);
	T_INTEQ(derive_load(x, "", "", "", T0), 0);
	derive_free(x);
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

/* Damaged rows: members that are not objects are skipped, a device's
 * second row is not a second device. */
static void
test_load_odd_rows(void)
{
	struct derive_options o = opts();
	struct derive *d = derive_new(&o);
	struct out out = { 0 };
	size_t online;

	T_INTEQ(derive_load(d, "[1, \"x\", null, [], {\"device_id\": \"a\", \"state\": \"online\"},"
	    " {\"device_id\": \"a\", \"state\": \"offline\"}, {\"community_id\": \"c-2\","
	    " \"device_id\": \"a\"}]", "[true, 2]", "[\"r\", {\"report_id\": \"r-1\"}]", T0), 0);
	/* ("", "a") once (one of its rows), ("c-2", "a") */
	T_INTEQ(derive_devices(d, &online), 2);
	T_CHECK(online <= 1);
	derive_retake(d);
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_DEVICES]), 2);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "community_id", "");
	T_CHECK(r != NULL && strcmp(jstr(r, "device_id"), "a") == 0 &&
	    (strcmp(jstr(r, "state"), "online") == 0) == (online == 1));
	json_decref(r);
	T_INTEQ(rows_in(out.rows[ROWS_REPORTS]), 1);
	T_CHECK(out.rows[ROWS_WELFARE] == NULL);
	out_clear(&out);
	derive_free(d);
}

/* ---- derive_pending, derive_retake ------------------------------------- */

static void
test_pending_retake(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = derive_new(&o);
	struct out out = { 0 };
	struct msg m;

	derive_load(d, NULL, NULL, NULL, T0);
	/* A household never watched: its window starts now, to be written. */
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_WELFARE]), 1);
	T_CHECK(out.rows[ROWS_DEVICES] == NULL && out.rows[ROWS_REPORTS] == NULL);
	T_CHECK(!derive_pending(d));
	derive_tick(d, T0 + S);
	T_CHECK(!derive_pending(d));

	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 2 * S), T0 + 2 * S);
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	T_CHECK(!derive_pending(d));
	/* last_seen alone is written at most every persist_every. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 30 * S), T0 + 30 * S);
	T_CHECK(!derive_pending(d));
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 62 * S), T0 + 62 * S);
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_INTEQ(jint(r, "last_seen_us"), T0 + 62 * S);
	json_decref(r);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0), T0);
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	T_CHECK(!derive_pending(d));

	/* The write failed: every row again with the next take. */
	derive_retake(d);
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	T_INTEQ(rows_in(out.rows[ROWS_DEVICES]), derive_devices(d, NULL));
	T_INTEQ(rows_in(out.rows[ROWS_WELFARE]), 1);
	T_INTEQ(rows_in(out.rows[ROWS_REPORTS]), 1);
	T_CHECK(!derive_pending(d));
	out_clear(&out);
	derive_free(d);
	derive_free(NULL);
}

/* A refused take (derive.h: a bug path the caller logs): every row is
 * written again, the events of that take are not derived again. */
static void
test_retake_events_not_again(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 }, lost = { 0 };
	struct msg m;

	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), T0), T0);
	T_INTEQ(take(d, &out), 0);
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + S), T0 + S);
	T_INTEQ(take(d, &lost), 1);		/* the transaction is refused */
	derive_retake(d);
	T_CHECK(derive_pending(d));
	T_INTEQ(tick_take(d, T0 + 2 * S, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gw-1");
	T_STREQ(jstr(r, "state"), "offline");
	T_INTEQ(jint(r, "state_since_us"), T0 + S);
	json_decref(r);
	T_INTEQ(tick_take(d, T0 + HOUR, &out), 0);
	out_clear(&out);
	out_clear(&lost);
	derive_free(d);
}

/* ---- times ------------------------------------------------------------- */

/* Times are taken within years 1970..9999: a time beyond is its end, in
 * the rows and in every sum with a duration (no overflow: the sanitizer
 * build would stop). */
/* ---- the system clock steps -------------------------------------------- */

#define DAY (24 * HOUR)

/* A day forward while devices speak and a household is watched: time that
 * did not pass is not silence. Nothing times out at the step; what was
 * due later falls due as long after it as before. */
static void
test_clock_step_forward(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	struct derive_device_def devs[] = { { "c-1", "gate-x", CLS(ACCESS_GATE), -1, true } };
	o.class_timeout_us[CLS(ACCESS_GATE)] = 5 * MIN;
	o.class_timeout_us[CLS(DOOR_SENSOR)] = 5 * MIN;
	o.hold_down_us = 10 * S;
	o.households = &hh;
	o.nhouseholds = 1;
	o.devices = devs;
	o.ndevices = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct db b;
	struct msg m;
	size_t online;
	const int64_t t1 = T0 + HOUR, step = T0 + 2 * HOUR;

	db_init(&b);
	/* gate-x is expected and never heard from (grace 5 min, from T0); the
	 * door sensor is up and opened at t1; gate-1 and gate-2 speak. */
	sensors_up(d, one_sensor, t1);
	for (int64_t t = t1; t <= step - MIN; t += MIN) {
		derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), t), t);
		derive_observe(d, ev_plain(&m, "gate-2", CLS(ACCESS_GATE), t), t);
		derive_observe(d, ev_door(&m, "door-1", false, t), t);
	}
	/* The expected gate's grace ran out long ago: its offline, then
	 * nothing else up to the step. */
	T_INTEQ(tick_flush(d, step - MIN, &out, &b), 1);
	T_CHECK(event_of(&out, "gate-x") != NULL);
	/* A pending change in flight: gate-1 says offline 5 s before the step. */
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), step - 5 * S), step - 5 * S);
	T_INTEQ(tick_flush(d, step, &out, &b), 0);

	derive_clock_stepped(d, DAY);
	/* At the step: nothing timed out, nobody inactive, the LWT still
	 * within its hold-down. */
	T_INTEQ(tick_flush(d, step + DAY, &out, &b), 0);
	T_INTEQ(derive_devices(d, &online), 4);
	T_INTEQ(online, 3);
	/* The rows that moved are written in the new scale. */
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-2");
	T_INTEQ(jint(r, "last_seen_us"), step - MIN + DAY);
	T_INTEQ(jint(r, "first_seen_us"), t1 + DAY);
	T_INTEQ(jint(r, "state_since_us"), t1 + DAY);
	json_decref(r);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_STREQ(jstr(r, "pending_state"), "offline");
	T_INTEQ(jint(r, "pending_since_us"), step - 5 * S + DAY);
	json_decref(r);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-x");
	T_INTEQ(jint(r, "first_seen_us"), -2);	/* never seen stays never */
	T_INTEQ(jint(r, "last_seen_us"), -2);
	json_decref(r);
	r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), t1 + DAY);
	T_INTEQ(jint(r, "last_activity_us"), t1 + DAY);
	json_decref(r);

	/* The LWT's hold-down runs out 10 s after it, by the time passed. */
	T_INTEQ(tick_flush(d, step + DAY + 5 * S - 1, &out, &b), 0);
	T_INTEQ(tick_flush(d, step + DAY + 5 * S, &out, &b), 1);
	const Event *e = event_of(&out, "gate-1");
	T_CHECK(e != NULL && e->event_type == TYPE(DEVICE_OFFLINE) &&
	    e->event_time_us == step - 5 * S + DAY);

	/* gate-2 goes on speaking: never offline. door-1 falls silent: its
	 * timeout is 5 min after its last message, by the time passed. */
	for (int64_t t = step + DAY + MIN; t <= step + DAY + 30 * MIN; t += MIN) {
		derive_observe(d, ev_plain(&m, "gate-2", CLS(ACCESS_GATE), t), t);
		size_t n = tick_flush(d, t, &out, &b);
		if (t < step + DAY + 4 * MIN) {
			T_INTEQ(n, 0);
		} else if (t == step + DAY + 4 * MIN) {
			T_INTEQ(n, 2);	/* door-1 offline, its household's sensor_offline */
			e = event_of(&out, "door-1");
			T_CHECK(e != NULL && e->event_type == TYPE(DEVICE_OFFLINE) &&
			    e->event_time_us == step - MIN + 5 * MIN + DAY);
			T_INTEQ(count_kind(&out, KIND(SENSOR_OFFLINE)), 1);
		} else {
			T_INTEQ(n, 0);
		}
		T_CHECK(event_of(&out, "gate-2") == NULL);
	}
	T_INTEQ(count_kind(&out, KIND(INACTIVITY)), 0);
	out_clear(&out);
	db_free(&b);
	derive_free(d);

	/* A watched household: its inactivity falls due inactive_hours after
	 * the last opening by the time passed, not at the step. */
	struct derive_options w = opts();
	w.households = &hh;
	w.nhouseholds = 1;
	d = fresh(&w, T0);
	sensors_up(d, one_sensor, t1);
	T_INTEQ(tick_take(d, step, &out), 0);
	derive_clock_stepped(d, DAY);
	T_INTEQ(tick_take(d, step + DAY, &out), 0);
	T_INTEQ(count_kind(&out, KIND(INACTIVITY)), 0);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR + DAY - 1, &out), 0);
	T_INTEQ(tick_take(d, t1 + 12 * HOUR + DAY, &out), 1);
	e = nth_kind(&out, KIND(INACTIVITY), 0);
	T_CHECK(e != NULL && e->event_time_us == t1 + 12 * HOUR + DAY &&
	    e->welfare->repeat == 0 && e->welfare->window_start_us == t1 + DAY);
	/* An alert raised before a step is the one the next opening closes. */
	derive_clock_stepped(d, DAY);
	derive_observe(d, ev_door(&m, "door-1", true, t1 + 13 * HOUR + 2 * DAY),
	    t1 + 13 * HOUR + 2 * DAY);
	T_INTEQ(take(d, &out), 1);
	e = nth_kind(&out, KIND(ACTIVITY_RESUMED), 0);
	T_CHECK(e != NULL && e->welfare->window_start_us == t1 + DAY);
	out_clear(&out);
	derive_free(d);
}

/* An hour back: new messages are not older than the states they change,
 * and a silent device times out after its timeout, not an hour later. */
static void
test_clock_step_back(void)
{
	struct derive_options o = opts();
	o.class_timeout_us[CLS(ACCESS_GATE)] = 5 * MIN;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	const int64_t step = T0 + 10 * MIN, back = step - HOUR;

	for (int64_t t = T0; t <= T0 + 8 * MIN; t += MIN) {
		derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), t), t);
		derive_observe(d, ev_plain(&m, "gate-2", CLS(ACCESS_GATE), t), t);
		derive_observe(d, ev_plain(&m, "gate-3", CLS(ACCESS_GATE), t), t);
	}
	derive_observe(d, ev_lwt(&m, "gw-1", CLS(GATEWAY), T0 + 9 * MIN), T0 + 9 * MIN);
	T_INTEQ(tick_take(d, step, &out), 1);		/* gw-1 offline */
	derive_clock_stepped(d, -HOUR);
	T_INTEQ(tick_take(d, back, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_INTEQ(jint(r, "last_seen_us"), T0 + 8 * MIN - HOUR);
	T_INTEQ(jint(r, "state_since_us"), T0 - HOUR);
	json_decref(r);

	/* gate-1's last will, 30 s after the step: taken. */
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), back + 30 * S), back + 30 * S);
	T_INTEQ(take(d, &out), 1);
	const Event *e = event_of(&out, "gate-1");
	T_CHECK(e != NULL && e->event_type == TYPE(DEVICE_OFFLINE) &&
	    e->event_time_us == back + 30 * S && e->status->source == SRC(LWT));
	/* gw-1 comes back: online. */
	derive_observe(d, ev_plain(&m, "gw-1", CLS(GATEWAY), back + 40 * S), back + 40 * S);
	T_INTEQ(take(d, &out), 1);
	e = event_of(&out, "gw-1");
	T_CHECK(e != NULL && e->event_type == TYPE(DEVICE_ONLINE) &&
	    e->event_time_us == back + 40 * S);
	/* gate-3 goes on speaking, and its last seen follows. */
	derive_observe(d, ev_plain(&m, "gate-3", CLS(ACCESS_GATE), back + MIN), back + MIN);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-3");
	T_INTEQ(jint(r, "last_seen_us"), back + MIN);
	json_decref(r);

	/* gate-2 is silent since T0 + 8 min: offline 5 min later by the time
	 * passed, in the new scale. */
	T_INTEQ(tick_take(d, T0 + 13 * MIN - HOUR - 1, &out), 0);
	T_INTEQ(tick_take(d, T0 + 13 * MIN - HOUR, &out), 1);
	e = event_of(&out, "gate-2");
	T_CHECK(e != NULL && e->event_type == TYPE(DEVICE_OFFLINE) &&
	    e->event_time_us == T0 + 13 * MIN - HOUR && e->status->source == SRC(TIMEOUT));
	/* gate-3, 5 min after its message after the step. */
	T_INTEQ(tick_take(d, back + 6 * MIN - 1, &out), 0);
	T_INTEQ(tick_take(d, back + 6 * MIN, &out), 1);
	T_CHECK(event_of(&out, "gate-3") != NULL);
	out_clear(&out);
	derive_free(d);
}

static void
test_times_bounded(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	hh.repeat_us = 0;
	o.hold_down_us = 10 * S;
	o.class_timeout_us[CLS(ACCESS_GATE)] = 60 * S;
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = derive_new(&o);
	struct out out = { 0 };
	struct msg m;
	char welfare[256], devices[512];
	Event *ev;
	json_t *r;

	/* Rows from a damaged database: a window starting near INT64_MAX, a
	 * gate last seen and pending offline there, created before 1970. */
	snprintf(welfare, sizeof(welfare), "[{\"household\":\"h-1502\",\"window_start_us\":%lld,"
	    "\"alerts\":0,\"sensor_offline\":false}]", (long long)(INT64_MAX - HOUR));
	snprintf(devices, sizeof(devices), "[{\"community_id\":\"c-1\",\"device_id\":\"gate-9\","
	    "\"device_class\":\"access_gate\",\"state\":\"online\",\"state_since_us\":%lld,"
	    "\"last_seen_us\":%lld,\"pending_state\":\"offline\",\"pending_since_us\":%lld,"
	    "\"created_us\":%lld}]", (long long)INT64_MIN, (long long)(INT64_MAX - S),
	    (long long)(INT64_MAX - 2 * S), (long long)INT64_MIN);
	T_INTEQ(derive_load(d, devices, welfare, NULL, T0), 0);
	derive_retake(d);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "window_start_us"), TIME_MAX);
	json_decref(r);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-9");
	T_INTEQ(jint(r, "last_seen_us"), TIME_MAX);
	T_INTEQ(jint(r, "pending_since_us"), TIME_MAX);
	T_INTEQ(jint(r, "state_since_us"), 0);
	T_INTEQ(jint(r, "created_us"), 0);
	json_decref(r);
	sensors_up(d, one_sensor, 0);
	T_INTEQ(take(d, &out), 0);
	/* Not due before the end of time. */
	T_INTEQ(tick_take(d, T0 + HOUR, &out), 0);

	/* Messages with times beyond: the receive time of a message, the
	 * event time of a door opening, a report's deadline. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), INT64_MAX), T0 + 2 * HOUR);
	derive_observe(d, ev_door(&m, "door-1", true, INT64_MAX), T0 + 2 * HOUR);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", INT64_MIN, INT64_MAX, 0, 0,
	    INT64_MAX), T0 + 2 * HOUR);
	T_INTEQ(take(d, &out), 0);
	r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_INTEQ(jint(r, "last_seen_us"), TIME_MAX);
	T_INTEQ(jint(r, "first_seen_us"), TIME_MAX);
	T_INTEQ(jint(r, "state_since_us"), TIME_MAX);
	json_decref(r);
	r = row_of(out.rows[ROWS_WELFARE], "household", "h-1502");
	T_INTEQ(jint(r, "last_activity_us"), TIME_MAX);
	T_INTEQ(jint(r, "window_start_us"), TIME_MAX);
	json_decref(r);
	r = row_of(out.rows[ROWS_REPORTS], "report_id", "r-1");
	T_INTEQ(jint(r, "deadline_us"), TIME_MAX);
	/* The body's opening before 1970 is 1970, none: the event's time. */
	T_INTEQ(jint(r, "opened_us"), TIME_MAX);
	json_decref(r);
	/* A clock beyond too: it is the end of time. The report is due then;
	 * what is due after it (gate-9's hold-down, gate-1's and gate-9's
	 * timeouts, the window) never is. */
	T_INTEQ(tick_take(d, INT64_MAX, &out), 1);
	const Event *e = nth_type(&out, TYPE(REPORT_OVERDUE), 0);
	T_CHECK(e != NULL && e->event_time_us == TIME_MAX && e->received_time_us == TIME_MAX);
	T_INTEQ(tick_take(d, INT64_MAX, &out), 0);
	/* A clock before 1970 is 1970: nothing is due. */
	T_INTEQ(tick_take(d, INT64_MIN, &out), 0);
	ev = ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), INT64_MIN);
	derive_observe(d, ev, INT64_MIN);
	T_INTEQ(tick_take(d, INT64_MIN, &out), 0);
	out_clear(&out);
	derive_free(d);
}

/* ---- edges: clocks, restarts, odd configurations ---------------------- */

/* derive_load's clock is taken within years 1970..9999 too: a declared
 * expected device new at a clock past the end is created at 9999-12-31,
 * and nothing overflows (no "never heard from" dated before the epoch). */
static void
fixed_load_clock_not_bounded(void)
{
	struct derive_options o = opts();
	struct derive_device_def devs[] = { { "c-1", "cam-9", CLS(CAMERA), -1, true } };
	o.devices = devs;
	o.ndevices = 1;
	o.expected_grace_us = 30 * S;
	struct derive *d = derive_new(&o);
	struct out out = { 0 };

	T_INTEQ(derive_load(d, NULL, NULL, NULL, INT64_MAX), 0);
	take(d, &out);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "cam-9");
	T_INTEQ(jint(r, "created_us"), TIME_MAX);
	json_decref(r);
	T_INTEQ(tick_take(d, T0, &out), 0);
	out_clear(&out);
	derive_free(d);
}

/* A handled report loaded from its row is kept 30 days from the load (as
 * when it was learned), then forgotten: a retake writes no row for it. */
static void
fixed_loaded_done_report_kept(void)
{
	struct derive_options o = opts();
	struct derive *d = derive_new(&o);
	struct out out = { 0 };
	char reports[256];

	snprintf(reports, sizeof(reports), "[{\"community_id\":\"c-1\",\"report_id\":\"r-1\","
	    "\"opened_us\":%lld,\"deadline_us\":%lld,\"handled_us\":%lld}]", (long long)T0,
	    (long long)(T0 + HOUR), (long long)(T0 + MIN));
	T_INTEQ(derive_load(d, NULL, NULL, reports, T0 + 2 * MIN), 0);
	T_INTEQ(tick_take(d, T0 + 2 * MIN + 29 * 24 * HOUR, &out), 0);
	derive_retake(d);
	take(d, &out);
	T_CHECK(out.rows[ROWS_REPORTS] != NULL);
	T_INTEQ(tick_take(d, T0 + 2 * MIN + 30 * 24 * HOUR, &out), 0);
	derive_retake(d);
	take(d, &out);
	T_CHECK(out.rows[ROWS_REPORTS] == NULL);
	out_clear(&out);
	derive_free(d);
}

/* A report handled in time, a restart (the store loads reports done
 * within 30 days), then its opening delivered again (MQTT QoS 1): not
 * opened again, no overdue event. */
static void
fixed_report_reopened_after_restart(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	struct db b;

	db_init(&b);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0), T0);
	derive_observe(d, ev_report(&m, TYPE(REPORT_HANDLED), "r-1", 0, 0, T0 + MIN, 0, T0 + MIN),
	    T0 + MIN);
	flush(d, &out, &b);
	d = restart(d, &o, &b, T0 + 2 * MIN);
	derive_observe(d, ev_report(&m, TYPE(REPORT_OPENED), "r-1", T0, T0 + HOUR, 0, 0, T0),
	    T0 + 3 * MIN);
	flush(d, &out, &b);
	T_INTEQ(tick_flush(d, T0 + HOUR, &out, &b), 0);
	out_clear(&out);
	derive_free(d);
	db_free(&b);
}

/* A household of no community whose sensor id is in two communities: the
 * first device created (loaded oldest first) is its sensor, the other no
 * household's; the same events come with and without a restart, whichever
 * of the two goes offline. */
static void
fixed_household_sensor_in_two_communities(void)
{
	static const char *const gone[] = { "c-1", "c-9" };

	for (int g = 0; g < 2; g++) {
		size_t alerts[2] = { 0, 0 };
		for (int restarts = 0; restarts < 2; restarts++) {
			struct derive_options o = opts();
			struct derive_household hh = household(one_sensor);
			hh.community = "";
			o.households = &hh;
			o.nhouseholds = 1;
			struct derive *d = fresh(&o, T0);
			struct out out = { 0 };
			struct msg m;
			struct db b;
			Event *ev;

			db_init(&b);
			derive_observe(d, ev_avail(&m, "door-1", true, T0 + S), T0 + S);
			ev = ev_avail(&m, "door-1", true, T0 + 2 * S);
			ev->community_id = (char *)"c-9";
			derive_observe(d, ev, T0 + 2 * S);
			ev = ev_avail(&m, "door-1", false, T0 + HOUR);
			ev->community_id = (char *)gone[g];
			derive_observe(d, ev, T0 + HOUR);
			flush(d, &out, &b);
			if (restarts)
				d = restart(d, &o, &b, T0 + 2 * HOUR);
			for (int64_t t = T0 + 3 * HOUR; t <= T0 + 48 * HOUR; t += HOUR) {
				tick_flush(d, t, &out, &b);
				alerts[restarts] += count_kind(&out, KIND(INACTIVITY));
			}
			out_clear(&out);
			derive_free(d);
			db_free(&b);
		}
		printf("# %s offline: %zu inactivity alerts without a restart, %zu with\n",
		    gone[g], alerts[0], alerts[1]);
		T_INTEQ(alerts[1], alerts[0]);
	}
}

/* An opening at time 0 (a device clock unset, not flagged skewed) is no
 * opening: the same one delivered three times in a night window raises
 * nothing. */
static void
fixed_opening_at_time_zero_counted_again(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	hh.night_start_min = 23 * 60;
	hh.night_end_min = 60;
	hh.tz_offset_s = 0;
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;

	sensors_up(d, one_sensor, 0);
	take(d, &out);
	for (int i = 0; i < 3; i++) {
		Event *ev = ev_door(&m, "door-1", true, 0);
		ev->received_time_us = T0 + HOUR;
		derive_observe(d, ev, T0 + HOUR + i * S);
	}
	take(d, &out);
	T_INTEQ(count_kind(&out, KIND(NIGHT_ACTIVITY)), 0);
	out_clear(&out);
	derive_free(d);
}

/* ---- several instances: shards and leases ------------------------------ */

static void
test_shards(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(two_sensors);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	size_t per[DERIVE_SHARDS] = { 0 };
	char id[32];

	/* The same in every instance: a function of the names alone. */
	T_INTEQ(derive_shard("device", "c-1", "gate-1"), derive_shard("device", "c-1", "gate-1"));
	T_CHECK(derive_shard("device", "c-1", "gate-1") < DERIVE_SHARDS);
	/* Known values: a change would move every shard of a running site
	 * (the lease table is shared by instances of different releases). */
	T_INTEQ(derive_shard("household", "h-1502", ""), 22);
	T_INTEQ(derive_shard("device", "c-1", "gate-1"), 53);
	T_INTEQ(derive_shard("report", "c-1", "r-1"), 16);
	/* Spread: 6400 device ids, no shard empty or more than twice its share. */
	for (int i = 0; i < 6400; i++) {
		snprintf(id, sizeof(id), "b%02d/u%d/%04d/door", i % 40, i % 7, i);
		per[derive_shard("device", "c-1", id)]++;
	}
	size_t lo = SIZE_MAX, hi = 0;
	for (int i = 0; i < DERIVE_SHARDS; i++) {
		lo = per[i] < lo ? per[i] : lo;
		hi = per[i] > hi ? per[i] : hi;
	}
	T_CHECK(lo > 0);
	T_CHECK(hi <= 2 * 6400 / DERIVE_SHARDS);
	/* A household's sensors are in its shard: one instance sees all of
	 * what its alerts depend on. */
	unsigned hs = derive_shard("household", "h-1502", "");
	T_INTEQ(derive_device_shard(d, "c-1", "door-1"), hs);
	T_INTEQ(derive_device_shard(d, "c-1", "door-2"), hs);
	T_INTEQ(derive_device_shard(d, "c-1", "gate-1"), derive_shard("device", "c-1", "gate-1"));
	/* The key's parts are kept apart: ("ab", "c") is not ("a", "bc"). */
	T_CHECK(derive_shard("device", "ab", "c") != derive_shard("device", "a", "bc") ||
	    derive_shard("device", "ab", "d") != derive_shard("device", "a", "bd"));
	derive_free(d);
}

/* Every shard but `s`. */
#define ALL ((uint64_t)~0ULL)
#define BIT(s) ((uint64_t)1 << (s))

static void
test_shards_not_held(void)
{
	struct derive_options o = opts();
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	unsigned g = derive_shard("device", "c-1", "gate-1");

	T_INTEQ(derive_held(d), ALL);		/* alone: everything */
	derive_hold(d, ALL & ~BIT(g));
	/* Observed, but neither raised nor written: another instance's. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0), T0);
	derive_observe(d, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + S), T0 + S);
	T_CHECK(!derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	T_CHECK(out.rows[ROWS_DEVICES] == NULL);
	/* Not ticked: its timeout is not ours to raise. */
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 2 * S), T0 + 2 * S);
	T_INTEQ(tick_take(d, T0 + 10 * HOUR, &out), 0);
	struct derive_want w[8];
	T_INTEQ(derive_wanted(d, T0 + 10 * HOUR, true, w, 8), 0);
	/* Held again without a reload (nobody else had it): the row that
	 * waited is written. */
	derive_hold(d, ALL);
	T_CHECK(derive_pending(d));
	T_INTEQ(take(d, &out), 0);
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_CHECK(r != NULL);
	json_decref(r);
	out_clear(&out);
	derive_free(d);
}

static void
test_wanted(void)
{
	struct derive_options o = opts();
	o.class_timeout_us[CLS(ACCESS_GATE)] = 15 * MIN;
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct derive *d = fresh(&o, T0);
	struct out out = { 0 };
	struct msg m;
	struct derive_want w[8];
	const int64_t t1 = T0 + HOUR;

	sensors_up(d, one_sensor, t1);
	derive_observe(d, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), t1), t1);
	take(d, &out);
	/* Nothing due: nothing to read back (follow: nothing open). */
	T_INTEQ(derive_wanted(d, t1 + MIN, true, w, 8), 0);
	/* The gate's timeout due: its records since it was last seen. */
	T_INTEQ(derive_wanted(d, t1 + 15 * MIN, false, w, 8), 1);
	T_STREQ(w[0].device, "gate-1");
	T_STREQ(w[0].community, "c-1");
	T_INTEQ(w[0].since_us, t1);
	/* The household due too: its sensors since the last opening. */
	T_INTEQ(derive_wanted(d, t1 + 12 * HOUR, false, w, 8), 2);
	T_STREQ(w[1].device, "door-1");
	T_INTEQ(w[1].since_us, t1);
	T_INTEQ(derive_wanted(d, t1 + 12 * HOUR, false, w, 1), 1);	/* bounded */
	/* Once raised, an open alert and an offline device are followed. */
	T_INTEQ(tick_take(d, t1 + 12 * HOUR, &out), 2);
	T_INTEQ(derive_wanted(d, t1 + 12 * HOUR + S, false, w, 8), 0);
	T_INTEQ(derive_wanted(d, t1 + 12 * HOUR + S, true, w, 8), 2);
	/* Not for shards held elsewhere. */
	derive_hold(d, 0);
	T_INTEQ(derive_wanted(d, t1 + 12 * HOUR + S, true, w, 8), 0);
	out_clear(&out);
	derive_free(d);
}

/* Two instances, the stream split between them: the one holding the
 * household's shard reads back what the other stored before its timer
 * fires (as pipeline.c does through store_lease.c), raises the alert
 * once; the other raises nothing. It dies: the other takes the shard
 * over from the rows and raises the repeat, once, with the same id as the
 * first would have. */
static void
test_split_stream_takeover(void)
{
	struct derive_options o = opts();
	struct derive_household hh = household(one_sensor);
	o.households = &hh;
	o.nhouseholds = 1;
	struct db db;
	db_init(&db);
	struct derive *a = fresh(&o, T0), *b = fresh(&o, T0), *solo = fresh(&o, T0);
	struct out out = { 0 }, sout = { 0 };
	struct msg m;
	struct derive_want w[8];
	const int64_t t1 = T0 + HOUR, t2 = T0 + 3 * HOUR;

	derive_hold(a, ALL);
	derive_hold(b, 0);
	/* The sensor online, seen by both; the first opening by a, the
	 * second by b only. solo sees everything (one instance). */
	sensors_up(a, one_sensor, t1);
	sensors_up(b, one_sensor, 0);
	sensors_up(solo, one_sensor, t1);
	Event *second = ev_door(&m, "door-1", true, t2);
	derive_observe(b, second, t2);
	derive_observe(solo, second, t2);
	flush(a, &out, &db);
	T_INTEQ(flush(b, &out, &db), 0);
	T_CHECK(out.rows[ROWS_WELFARE] == NULL && out.rows[ROWS_DEVICES] == NULL);

	/* At t1 + 12 h, a's view says inactive: it asks first. */
	T_INTEQ(derive_wanted(a, t1 + 12 * HOUR, false, w, 8), 1);
	T_INTEQ(w[0].since_us, t1);
	derive_observe(a, second, t1 + 12 * HOUR);	/* read back: b stored it */
	T_INTEQ(tick_flush(a, t1 + 12 * HOUR, &out, &db), 0);
	T_INTEQ(tick_take(b, t1 + 12 * HOUR, &out), 0);
	/* At t2 + 12 h: one alert, from a; none from b. */
	T_INTEQ(tick_flush(a, t2 + 12 * HOUR, &out, &db), 1);
	T_INTEQ(count_kind(&out, KIND(INACTIVITY)), 1);
	T_INTEQ(out.ev[0]->welfare->window_start_us, t2);
	T_INTEQ(tick_take(solo, t2 + 12 * HOUR, &sout), 1);
	T_CHECK(memcmp(out.ev[0]->id.data, sout.ev[0]->id.data, 16) == 0);
	T_INTEQ(tick_take(b, t2 + 12 * HOUR, &out), 0);

	/* a dies. b's lease takes the shard over: the rows first, then it
	 * evaluates. The alert is not raised again; the repeat is, once. */
	derive_free(a);
	char *dv, *wf, *rp;
	db_read(&db, t2 + 13 * HOUR, &dv, &wf, &rp);
	T_INTEQ(derive_reload(b, dv, wf, rp, ALL, t2 + 13 * HOUR), 0);
	free(dv);
	free(wf);
	free(rp);
	derive_hold(b, ALL);
	T_INTEQ(tick_take(b, t2 + 13 * HOUR, &out), 0);
	T_INTEQ(tick_take(b, t2 + 16 * HOUR, &out), 1);
	T_INTEQ(out.ev[0]->welfare->repeat, 1);
	T_INTEQ(out.ev[0]->welfare->window_start_us, t2);
	T_INTEQ(tick_take(solo, t2 + 16 * HOUR, &sout), 1);
	T_CHECK(memcmp(out.ev[0]->id.data, sout.ev[0]->id.data, 16) == 0);
	T_INTEQ(tick_take(b, t2 + 16 * HOUR + S, &out), 0);
	/* The next opening, seen by b: activity resumed, once. */
	derive_observe(b, ev_door(&m, "door-1", true, t2 + 17 * HOUR), t2 + 17 * HOUR);
	T_INTEQ(take(b, &out), 1);
	T_INTEQ(count_kind(&out, KIND(ACTIVITY_RESUMED)), 1);
	/* A text that is not an array: nothing taken. */
	T_INTEQ(derive_reload(b, "{", NULL, NULL, ALL, t2), -1);
	out_clear(&out);
	out_clear(&sout);
	derive_free(b);
	derive_free(solo);
	db_free(&db);
}

/* A reload drops what the instance made of its own share of a device's
 * stream (a state it never raised), but keeps its latest sighting. */
static void
test_reload_device(void)
{
	struct derive_options o = opts();
	struct derive *a = fresh(&o, T0), *b = fresh(&o, T0);
	struct db db;
	db_init(&db);
	struct out out = { 0 };
	struct msg m;

	derive_hold(b, 0);
	derive_observe(a, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0), T0);
	flush(a, &out, &db);
	/* b saw its last will (a did not): quietly offline in b's view. */
	derive_observe(b, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + S), T0 + S);
	derive_observe(b, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 2 * S), T0 + 2 * S);
	derive_observe(b, ev_plain(&m, "gate-1", CLS(ACCESS_GATE), T0 + 3 * S), T0 + 3 * S);
	derive_observe(b, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 4 * S), T0 + 4 * S);
	char *dv, *wf, *rp;
	db_read(&db, T0 + 5 * S, &dv, &wf, &rp);
	T_INTEQ(derive_reload(b, dv, wf, rp, ALL, T0 + 5 * S), 0);
	free(dv);
	free(wf);
	free(rp);
	derive_hold(b, ALL);
	size_t online = 0;
	T_INTEQ(derive_devices(b, &online), 1);
	T_INTEQ(online, 1);		/* the row's word */
	/* The next last will, seen by b: raised. */
	derive_observe(b, ev_lwt(&m, "gate-1", CLS(ACCESS_GATE), T0 + 6 * S), T0 + 6 * S);
	T_INTEQ(take(b, &out), 1);
	T_INTEQ(out.ev[0]->event_type, TYPE(DEVICE_OFFLINE));
	json_t *r = row_of(out.rows[ROWS_DEVICES], "device_id", "gate-1");
	T_INTEQ(jint(r, "last_seen_us"), T0 + 3 * S);	/* b's sighting kept */
	json_decref(r);
	out_clear(&out);
	derive_free(a);
	derive_free(b);
	db_free(&db);
}

int
main(void)
{
	test_shards();
	test_shards_not_held();
	test_wanted();
	test_split_stream_takeover();
	test_reload_device();
	test_first_message();
	test_lwt_and_availability();
	test_repeated_state();
	test_hold_down();
	test_timeout_class();
	test_timeout_route();
	test_timeout_device();
	test_replay();
	test_expected();
	test_max_devices();
	test_report_points_untracked();
	test_inactivity();
	test_inactivity_catch_up();
	test_sensor_offline();
	test_activity_resumed();
	test_night_activity();
	test_peephole_enrich();
	test_household_without_community();
	test_watched_when_all_online();
	test_window_from_sensors_online();
	test_alert_closed_after_outage();
	test_opening_brings_sensor_back();
	test_opening_before_window();
	test_replayed_opening();
	test_skewed_opening();
	test_report_overdue();
	test_report_handled_in_time();
	test_report_kept_a_day();
	test_report_device_restart();
	test_ids();
	test_persistence();
	test_replayed_flap();
	test_load_rows();
	test_load_odd_rows();
	test_pending_retake();
	test_retake_events_not_again();
	test_times_bounded();
	test_clock_step_forward();
	test_clock_step_back();
	fixed_load_clock_not_bounded();
	fixed_loaded_done_report_kept();
	fixed_report_reopened_after_restart();
	fixed_household_sensor_in_two_communities();
	fixed_opening_at_time_zero_counted_again();
	T_INTEQ(bad_events, 0);
	return t_done();
}
