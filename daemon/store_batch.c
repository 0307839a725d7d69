/* store_batch.c — a batch's rows as binary array parameters (see
 * store_batch.h): the encoder, the rows, the insert statements. */
#include "store_batch.h"

#include <ctype.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const uint32_t ev_oids[EV_COLS] = {
	OID_UUID, OID_TIMESTAMPTZ, OID_TIMESTAMPTZ, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,
	OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_BOOL, OID_TEXT,
	OID_BYTEA, OID_JSONB,
};
static const uint32_t q_oids[Q_COLS] = {
	OID_TEXT, OID_UUID, OID_INT8, OID_TIMESTAMPTZ, OID_TEXT, OID_BYTEA, OID_TEXT, OID_TEXT,
};

static const uint32_t h_oids[H_COLS] = {
	OID_TEXT, OID_UUID, OID_INT8, OID_TIMESTAMPTZ, OID_TEXT, OID_BYTEA, OID_TEXT, OID_INT8,
	OID_INT8,
};

static const uint32_t o_oids[O_COLS] = {
	OID_UUID, OID_TIMESTAMPTZ, OID_TEXT, OID_INT2, OID_INT2,
};

static const uint32_t r_oids[R_COLS] = {
	OID_BYTEA, OID_BYTEA, OID_UUID, OID_TIMESTAMPTZ, OID_TIMESTAMPTZ,
};

/* Events and their outbox rows, in one statement. An event whose id is
 * made from its event time (a device time, by_primary_key: $18) is stored
 * once by the events' primary key (id, event_time) alone: every copy has
 * that time, so the same partition and key. Any other event (its time the
 * receive time, which changes when it is delivered again; a device whose
 * clock is off; derived events) needs its id new to event_ids. Of the
 * copies of one id in the batch the first is stored, and the outbox rows
 * and the per-minute counts (event_counts, for the status page) go with
 * the events this statement stored. */
#define INSERT_EVENTS \
    "WITH r AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]," \
    "  $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]," \
    "  $11::text[], $12::text[], $13::int8[], $14::bool[], $15::text[], $16::bytea[]," \
    "  $17::jsonb[], $18::bool[]) WITH ORDINALITY AS r(id, event_time, received_at," \
    "  community_id, device_id, device_class, event_type, severity, vendor, route," \
    "  source_topic, journal_node, journal_seq, clock_skewed, plate, record, attrs, by_pk," \
    "  ord))," \
    " n AS (INSERT INTO event_ids (id, received_at) SELECT id, received_at FROM r" \
    "  WHERE NOT r.by_pk ON CONFLICT DO NOTHING RETURNING id)," \
    " e AS (INSERT INTO events (id, event_time, received_at, community_id, device_id," \
    "  device_class, event_type, severity, vendor, route, source_topic, journal_node," \
    "  journal_seq, clock_skewed, plate, record, attrs)" \
    "  SELECT DISTINCT ON (r.id) r.id, r.event_time, r.received_at, r.community_id," \
    "  r.device_id, r.device_class, r.event_type, r.severity, r.vendor, r.route," \
    "  r.source_topic, r.journal_node, r.journal_seq, r.clock_skewed, r.plate, r.record," \
    "  r.attrs FROM r LEFT JOIN n ON n.id = r.id WHERE r.by_pk OR n.id IS NOT NULL" \
    "  ORDER BY r.id, r.ord ON CONFLICT DO NOTHING" \
    "  RETURNING id, event_time, device_class, event_type, journal_node)," \
    " c AS (INSERT INTO event_counts AS c (minute, device_class, event_type, journal_node, n)" \
    "  SELECT date_trunc('minute', event_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'," \
    "  device_class, event_type, journal_node, count(*) FROM e GROUP BY 1, 2, 3, 4" \
    "  ORDER BY 1, 2, 3, 4 ON CONFLICT (minute, device_class, event_type, journal_node)" \
    "  DO UPDATE SET n = c.n + excluded.n)" \
    " INSERT INTO forward_outbox (event_id, event_time, target, priority)"
static const char insert_events[] =
    INSERT_EVENTS
    " SELECT DISTINCT ON (o.event_id, o.target) o.event_id, o.event_time, o.target,"
    "  o.priority FROM unnest($19::uuid[], $20::timestamptz[], $21::text[], $22::int2[])"
    "  WITH ORDINALITY AS o(event_id, event_time, target, priority, ord)"
    "  JOIN e ON e.id = o.event_id ORDER BY o.event_id, o.target, o.ord"
    " ON CONFLICT DO NOTHING";
/* The same, when some outbox rows are for cascade targets (kind, $23, the
 * SubscribeDetail code the event answers; 0 for other targets): such a
 * row becomes one row per active subscription of its target that asked
 * for its kind, covers its device and is within its time, as target
 * "<target>/<SubscribeID>"; none when there is no such subscription. */
static const char insert_events_fanout[] =
    INSERT_EVENTS
    " SELECT DISTINCT ON (o.event_id, t.target) o.event_id, o.event_time, t.target,"
    "  o.priority FROM unnest($19::uuid[], $20::timestamptz[], $21::text[], $22::int2[],"
    "  $23::int2[]) WITH ORDINALITY AS o(event_id, event_time, target, priority, kind, ord)"
    "  JOIN e ON e.id = o.event_id"
    "  CROSS JOIN LATERAL (SELECT o.target WHERE o.kind = 0"
    "   UNION ALL SELECT o.target || '/' || s.subscribe_id FROM viid_subscriptions s"
    "   WHERE o.kind <> 0 AND s.target = o.target AND s.state = 'active'"
    "    AND o.kind = ANY(s.details)"
    "    AND (s.begin_time IS NULL OR s.begin_time <= now())"
    "    AND (s.end_time IS NULL OR s.end_time > now())"
    "    AND (s.devices IS NULL OR EXISTS (SELECT 1 FROM r WHERE r.id = o.event_id"
    "     AND r.device_id = ANY(s.devices)))) AS t(target)"
    "  ORDER BY o.event_id, t.target, o.ord"
    " ON CONFLICT DO NOTHING";
/* The events' notification (see STORE_NOTIFY_CHANNEL): one statement in
 * the batch's transaction, sent only when it has events. A listener that
 * stops reading holds the server's notification queue (8 GB) back; were
 * it to fill, pg_notify() would fail the batch with a program-limit error,
 * taken for the rows' fault: past 90% the batch notifies nothing instead.
 * txid_current(), not pg_current_xact_id(): the same number, also before
 * PostgreSQL 13. */
static const char notify_events[] =
    "SELECT pg_notify('" STORE_NOTIFY_CHANNEL "', txid_current()::text || ' ' || $1)"
    " WHERE pg_notification_queue_usage() < 0.9";
static const char insert_quarantine[] =
    "INSERT INTO quarantine (journal_node, journal_id, journal_seq, received_at, topic, raw,"
    " reason, route)"
    " SELECT * FROM unnest($1::text[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::text[],"
    " $6::bytea[], $7::text[], $8::text[])"
    " ON CONFLICT DO NOTHING";
/* A rate-limited device's summary row (store_batch_add_held): new, it is
 * this batch's share; there, the share's count is added unless the row
 * already went as far (the same batch sent again after a lost answer).
 * Every other row has held_back NULL: the comparison is NULL, no update. */
static const char upsert_held[] =
    "INSERT INTO quarantine (journal_node, journal_id, journal_seq, received_at, topic, raw,"
    " reason, route, held_back, held_back_through)"
    " SELECT n, j, s, r, t, w, 'rate_limited', ro, c, th FROM unnest($1::text[], $2::uuid[],"
    " $3::int8[], $4::timestamptz[], $5::text[], $6::bytea[], $7::text[], $8::int8[],"
    " $9::int8[]) AS u(n, j, s, r, t, w, ro, c, th)"
    " ON CONFLICT (journal_node, journal_id, journal_seq) DO UPDATE"
    " SET held_back = quarantine.held_back + excluded.held_back,"
    " held_back_through = excluded.held_back_through"
    " WHERE quarantine.held_back_through < excluded.held_back_through";
/* The states are those as of the batch's checkpoint; a batch committed
 * late never takes one back. */
static const char upsert_reports[] =
    "INSERT INTO report_state (report_key, digest, event_id, event_time, last_at)"
    " SELECT DISTINCT ON (k) k, d, i, t, l FROM unnest($1::bytea[], $2::bytea[],"
    "  $3::uuid[], $4::timestamptz[], $5::timestamptz[]) WITH ORDINALITY AS u(k, d, i, t, l, ord)"
    "  ORDER BY k, ord DESC"
    " ON CONFLICT (report_key) DO UPDATE SET digest = excluded.digest,"
    " event_id = excluded.event_id, event_time = excluded.event_time,"
    " last_at = excluded.last_at WHERE report_state.last_at <= excluded.last_at";
/* The derived state (derive.h), as JSON arrays of rows. Times travel as
 * microseconds since the epoch. */
#define TS(x) "to_timestamp((" x ") / 1000000.0::float8)"
static const char upsert_devices[] =
    "INSERT INTO devices AS d (community_id, device_id, device_class, route, vendor, expected,"
    " first_seen, last_seen, state, state_since, state_source, pending_state, pending_since,"
    " pending_source, battery_percent, link_quality, created_at, updated_at)"
    " SELECT community_id, device_id, device_class, route, vendor, expected,"
    " " TS("first_seen_us") ", " TS("last_seen_us") ", state, " TS("state_since_us") ","
    " state_source, pending_state, " TS("pending_since_us") ", pending_source,"
    " battery_percent, link_quality, " TS("created_us") ", now()"
    " FROM jsonb_to_recordset($1::jsonb) AS x(community_id text, device_id text,"
    "  device_class text, route text, vendor text, expected boolean, first_seen_us int8,"
    "  last_seen_us int8, state text, state_since_us int8, state_source text,"
    "  pending_state text, pending_since_us int8, pending_source text,"
    "  battery_percent smallint, link_quality smallint, created_us int8)"
    " ON CONFLICT (community_id, device_id) DO UPDATE SET"
    " device_class = excluded.device_class, route = excluded.route, vendor = excluded.vendor,"
    " expected = excluded.expected,"
    " first_seen = coalesce(least(d.first_seen, excluded.first_seen), excluded.first_seen),"
    " last_seen = greatest(d.last_seen, excluded.last_seen),"
    " state = excluded.state, state_since = excluded.state_since,"
    " state_source = excluded.state_source, pending_state = excluded.pending_state,"
    " pending_since = excluded.pending_since, pending_source = excluded.pending_source,"
    " battery_percent = coalesce(excluded.battery_percent, d.battery_percent),"
    " link_quality = coalesce(excluded.link_quality, d.link_quality), updated_at = now()";
static const char upsert_welfare[] =
    "INSERT INTO welfare_state AS w (household, community_id, last_activity, window_start,"
    " alerts, alert_window_start, sensor_offline, night_start, night_openings, night_alerted,"
    " updated_at)"
    " SELECT household, community_id, " TS("last_activity_us") ", " TS("window_start_us") ","
    " alerts, " TS("alert_window_us") ", sensor_offline, " TS("night_start_us") ","
    " night_openings, night_alerted, now()"
    " FROM jsonb_to_recordset($1::jsonb) AS x(household text, community_id text,"
    "  last_activity_us int8, window_start_us int8, alerts int, alert_window_us int8,"
    "  sensor_offline boolean, night_start_us int8, night_openings int, night_alerted boolean)"
    " ON CONFLICT (household) DO UPDATE SET community_id = excluded.community_id,"
    " last_activity = excluded.last_activity, window_start = excluded.window_start,"
    " alerts = excluded.alerts, alert_window_start = excluded.alert_window_start,"
    " sensor_offline = excluded.sensor_offline,"
    " night_start = excluded.night_start, night_openings = excluded.night_openings,"
    " night_alerted = excluded.night_alerted, updated_at = now()";
/* A report's times merge: what one row does not know, another did. */
static const char upsert_reports_state[] =
    "INSERT INTO resident_reports AS r (community_id, report_id, device_id, building, door,"
    " category, opened_at, deadline, handled_at, closed_at, overdue_at, updated_at)"
    " SELECT community_id, report_id, device_id, building, door, category, " TS("opened_us") ","
    " " TS("deadline_us") ", " TS("handled_us") ", " TS("closed_us") ", " TS("overdue_us") ","
    " now()"
    " FROM jsonb_to_recordset($1::jsonb) AS x(community_id text, report_id text,"
    "  device_id text, building text, door text, category text, opened_us int8,"
    "  deadline_us int8, handled_us int8, closed_us int8, overdue_us int8)"
    " ON CONFLICT (community_id, report_id) DO UPDATE SET"
    " device_id = coalesce(nullif(excluded.device_id, ''), r.device_id),"
    " building = coalesce(nullif(excluded.building, ''), r.building),"
    " door = coalesce(nullif(excluded.door, ''), r.door),"
    " category = coalesce(nullif(excluded.category, ''), r.category),"
    " opened_at = coalesce(excluded.opened_at, r.opened_at),"
    " deadline = coalesce(excluded.deadline, r.deadline),"
    " handled_at = coalesce(excluded.handled_at, r.handled_at),"
    " closed_at = coalesce(excluded.closed_at, r.closed_at),"
    " overdue_at = coalesce(r.overdue_at, excluded.overdue_at), updated_at = now()";
#undef TS
static const char upsert_checkpoint[] =
    "INSERT INTO ingest_checkpoint (journal_node, journal_id, journal_seq)"
    " VALUES ($1, $2::uuid, $3)"
    " ON CONFLICT (journal_id) DO UPDATE SET"
    " journal_seq = greatest(ingest_checkpoint.journal_seq, excluded.journal_seq),"
    " journal_node = excluded.journal_node, updated_at = now()";

/* ---- the encoder ------------------------------------------------------ */

/* ndim, has_null, oid, then size and lower bound of the one dimension. */
#define ARR_HEADER 20

static void
arr_reserve(struct pgarr *a, size_t more)
{
	if (a->len + more <= a->cap)
		return;
	size_t cap = a->cap ? a->cap : 256;
	while (cap < a->len + more)
		cap *= 2;
	a->buf = util_realloc(a->buf, cap);
	a->cap = cap;
}

void
pgarr_init(struct pgarr *a, uint32_t oid)
{
	memset(a, 0, sizeof(*a));
	a->oid = oid;
	arr_reserve(a, ARR_HEADER);
	a->len = ARR_HEADER;
}

void
pgarr_free(struct pgarr *a)
{
	free(a->buf);
	a->buf = NULL;
	a->len = a->cap = 0;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

void
pgarr_add(struct pgarr *a, const void *data, size_t len)
{
	arr_reserve(a, 4 + len);
	if (data == NULL) {
		put_be32(a->buf + a->len, 0xffffffffu);
		a->len += 4;
		a->has_null = true;
	} else {
		put_be32(a->buf + a->len, (uint32_t)len);
		memcpy(a->buf + a->len + 4, data, len);
		a->len += 4 + len;
	}
	a->n++;
}

void
pgarr_add_text(struct pgarr *a, const char *s)
{
	pgarr_add(a, s, s != NULL ? strlen(s) : 0);
}

void
pgarr_add_i64(struct pgarr *a, int64_t v)
{
	uint64_t be = htobe64((uint64_t)v);
	pgarr_add(a, &be, 8);
}

void
pgarr_add_time(struct pgarr *a, int64_t unix_us)
{
	pgarr_add_i64(a, unix_us - PG_EPOCH_US);
}

void
pgarr_add_jsonb(struct pgarr *a, const char *json, size_t n)
{
	if (json == NULL) {
		pgarr_add(a, NULL, 0);
		return;
	}
	arr_reserve(a, 4 + 1 + n);
	put_be32(a->buf + a->len, (uint32_t)(n + 1));
	a->buf[a->len + 4] = 1;
	memcpy(a->buf + a->len + 5, json, n);
	a->len += 5 + n;
	a->n++;
}

const uint8_t *
pgarr_finish(struct pgarr *a, int *len)
{
	if (a->n == 0) {
		put_be32(a->buf + 8, 0);
		put_be32(a->buf + 12, 0);
		put_be32(a->buf + 16, a->oid);
		*len = 12;
		return a->buf + 8;
	}
	put_be32(a->buf, 1);
	put_be32(a->buf + 4, a->has_null ? 1 : 0);
	put_be32(a->buf + 8, a->oid);
	put_be32(a->buf + 12, a->n);
	put_be32(a->buf + 16, 1);
	*len = (int)a->len;
	return a->buf;
}

int
store_uuid_parse(const char *s, uint8_t out[16])
{
	size_t o = 0;

	for (int i = 0; i < 16; i++) {
		if (s[o] == '-')
			o++;
		/* Two digits a byte: the second is not looked at past a NUL. */
		unsigned v;
		if (!isxdigit((unsigned char)s[o]) || !isxdigit((unsigned char)s[o + 1]) ||
		    sscanf(s + o, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
		o += 2;
	}
	return s[o] == '\0' ? 0 : -1;
}

/* ---- the rows --------------------------------------------------------- */

static void
cols_init(struct pgarr *c, const uint32_t *oids, int n)
{
	for (int i = 0; i < n; i++)
		pgarr_init(&c[i], oids[i]);
}

static void
cols_free(struct pgarr *c, int n)
{
	for (int i = 0; i < n; i++)
		pgarr_free(&c[i]);
}

/* The bytes of a row's columns so far: a row's size is the difference. */
static size_t
cols_len(const struct pgarr *c, int n)
{
	size_t len = 0;

	for (int i = 0; i < n; i++)
		len += c[i].len;
	return len;
}

struct store_batch *
store_batch_new(const char *node, const char *journal_id)
{
	struct store_batch *b = util_calloc(1, sizeof(*b));

	b->node = util_strdup(node);
	if (journal_id != NULL && store_uuid_parse(journal_id, b->journal_uuid) != 0)
		abort();
	cols_init(b->ev, ev_oids, EV_COLS);
	pgarr_init(&b->by_pk, OID_BOOL);
	cols_init(b->q, q_oids, Q_COLS);
	cols_init(b->o, o_oids, O_COLS);
	cols_init(b->r, r_oids, R_COLS);
	cols_init(b->h, h_oids, H_COLS);
	return b;
}

void
store_batch_free(struct store_batch *b)
{
	if (b == NULL)
		return;
	cols_free(b->ev, EV_COLS);
	pgarr_free(&b->by_pk);
	cols_free(b->q, Q_COLS);
	cols_free(b->o, O_COLS);
	cols_free(b->r, R_COLS);
	cols_free(b->h, H_COLS);
	for (size_t i = 0; i < b->nheld; i++) {
		free(b->held[i].topic);
		free(b->held[i].raw);
		free(b->held[i].route);
	}
	free(b->held);
	for (int i = 0; i < STORE_STATES; i++)
		free(b->states[i]);
	free(b->node);
	free(b);
}

void
store_batch_add_event(struct store_batch *b, const struct store_event *e)
{
	struct pgarr *c = b->ev;
	uint8_t skewed = e->clock_skewed ? 1 : 0, by_pk = e->by_primary_key ? 1 : 0;
	size_t before = cols_len(c, EV_COLS) + b->by_pk.len;

	pgarr_add(&c[0], e->id, 16);
	pgarr_add_time(&c[1], e->event_time_us);
	pgarr_add_time(&c[2], e->received_us);
	pgarr_add_text(&c[3], e->community_id);
	pgarr_add_text(&c[4], e->device_id);
	pgarr_add_text(&c[5], e->device_class);
	pgarr_add_text(&c[6], e->event_type);
	pgarr_add_text(&c[7], e->severity);
	pgarr_add_text(&c[8], e->vendor);
	pgarr_add_text(&c[9], e->route);
	pgarr_add_text(&c[10], e->source_topic);
	pgarr_add_text(&c[11], b->node);
	pgarr_add_i64(&c[12], (int64_t)e->journal_seq);
	pgarr_add(&c[13], &skewed, 1);
	pgarr_add_text(&c[14], e->plate);
	pgarr_add(&c[15], e->record, e->record_len);
	pgarr_add_jsonb(&c[16], e->attrs, e->attrs != NULL ? strlen(e->attrs) : 0);
	pgarr_add(&b->by_pk, &by_pk, 1);
	b->bytes += cols_len(c, EV_COLS) + b->by_pk.len - before;
	if (b->nevents == 0) {
		b->recv_first = b->recv_last = e->received_us;
		b->time_first = b->time_last = e->event_time_us;
	}
	b->recv_first = e->received_us < b->recv_first ? e->received_us : b->recv_first;
	b->recv_last = e->received_us > b->recv_last ? e->received_us : b->recv_last;
	b->time_first = e->event_time_us < b->time_first ? e->event_time_us : b->time_first;
	b->time_last = e->event_time_us > b->time_last ? e->event_time_us : b->time_last;
	b->nevents++;
	/* Derived events (derive.c) are ours: vendor "gridbridge". */
	metrics_tally_event(&b->tally, e->device_class,
	    e->vendor != NULL && strcmp(e->vendor, "gridbridge") == 0);
}

void
store_batch_add_quarantine(struct store_batch *b, const struct store_quarantine *q)
{
	struct pgarr *c = b->q;
	size_t before = cols_len(c, Q_COLS);

	pgarr_add_text(&c[0], b->node);
	pgarr_add(&c[1], b->journal_uuid, 16);
	pgarr_add_i64(&c[2], (int64_t)q->journal_seq);
	pgarr_add_time(&c[3], q->received_us);
	pgarr_add(&c[4], q->topic, q->topic_len);
	pgarr_add(&c[5], q->raw != NULL ? (const void *)q->raw : "", q->raw_len);
	pgarr_add_text(&c[6], q->reason);
	metrics_tally_quarantine(&b->tally, q->reason);
	pgarr_add_text(&c[7], q->route);
	b->bytes += cols_len(c, Q_COLS) - before;
	b->nquar++;
}

size_t
store_batch_add_held(struct store_batch *b, uint64_t key_seq, const struct store_quarantine *q)
{
	if (b->nheld == b->capheld) {
		b->capheld = b->capheld ? b->capheld * 2 : 8;
		b->held = util_realloc(b->held, b->capheld * sizeof(*b->held));
	}
	struct store_held *h = &b->held[b->nheld];
	*h = (struct store_held){
		.key_seq = key_seq, .through = q->journal_seq, .received_us = q->received_us,
		.topic = util_malloc(q->topic_len), .topic_len = q->topic_len,
		.raw = util_malloc(q->raw_len), .raw_len = q->raw_len,
		.route = q->route != NULL ? util_strdup(q->route) : NULL, .count = 1,
	};
	memcpy(h->topic, q->topic, q->topic_len);
	if (q->raw_len > 0)
		memcpy(h->raw, q->raw, q->raw_len);
	b->bytes += q->topic_len + q->raw_len + 64;
	b->nheld_msgs++;
	metrics_tally_held(&b->tally, q->route);
	return b->nheld++;
}

void
store_batch_held_more(struct store_batch *b, size_t row, uint64_t seq, const char *route)
{
	struct store_held *h = &b->held[row];

	h->count++;
	h->through = seq;
	b->nheld_msgs++;
	metrics_tally_held(&b->tally, route);
}

/* The summary rows' arrays, once (statements may be made again). */
static void
build_held(struct store_batch *b)
{
	if (b->h_built)
		return;
	b->h_built = true;
	for (size_t i = 0; i < b->nheld; i++) {
		const struct store_held *h = &b->held[i];
		pgarr_add_text(&b->h[0], b->node);
		pgarr_add(&b->h[1], b->journal_uuid, 16);
		pgarr_add_i64(&b->h[2], (int64_t)h->key_seq);
		pgarr_add_time(&b->h[3], h->received_us);
		pgarr_add(&b->h[4], h->topic, h->topic_len);
		pgarr_add(&b->h[5], h->raw, h->raw_len);
		pgarr_add_text(&b->h[6], h->route);
		pgarr_add_i64(&b->h[7], (int64_t)h->count);
		pgarr_add_i64(&b->h[8], (int64_t)h->through);
	}
}

void
store_batch_add_outbox(struct store_batch *b, const uint8_t *event_id, int64_t event_time_us,
    const char *target, int priority, int kind)
{
	struct pgarr *c = b->o;
	size_t before = cols_len(c, O_COLS - 1);
	uint16_t prio = htobe16((uint16_t)priority);
	uint16_t k = htobe16((uint16_t)kind);

	pgarr_add(&c[0], event_id, 16);
	pgarr_add_time(&c[1], event_time_us);
	pgarr_add_text(&c[2], target);
	pgarr_add(&c[3], &prio, 2);
	/* The kinds are sent only with cascade rows: not counted. */
	pgarr_add(&c[4], &k, 2);
	b->bytes += cols_len(c, O_COLS - 1) - before;
	if (b->nout == 0 || priority > b->out_max_priority)
		b->out_max_priority = priority;
	b->nout++;
	if (kind != 0)
		b->nfanout++;
}

void
store_batch_add_report(struct store_batch *b, const struct store_report *r)
{
	struct pgarr *c = b->r;
	size_t before = cols_len(c, R_COLS);

	pgarr_add(&c[0], r->key, 16);
	pgarr_add(&c[1], r->digest, 16);
	pgarr_add(&c[2], r->event_id, 16);
	pgarr_add_time(&c[3], r->event_time_us);
	pgarr_add_time(&c[4], r->last_us);
	b->bytes += cols_len(c, R_COLS) - before;
	b->nreports++;
}

void
store_batch_set_states(struct store_batch *b, const char *devices, const char *welfare,
    const char *reports)
{
	const char *v[STORE_STATES] = { devices, welfare, reports };

	for (int i = 0; i < STORE_STATES; i++) {
		free(b->states[i]);
		b->states[i] = v[i] != NULL ? util_strdup(v[i]) : NULL;
		if (v[i] != NULL)
			b->bytes += strlen(v[i]);
	}
}

size_t
store_batch_rows(const struct store_batch *b)
{
	return b->nevents + b->nquar + b->nheld_msgs;
}

size_t
store_batch_bytes(const struct store_batch *b)
{
	return b->bytes;
}

/* ---- the statements --------------------------------------------------- */

/* Appends the arrays `c` as binary parameters of `st`. */
static void
stmt_arrays(struct store_stmt *st, struct pgarr *c, int n)
{
	for (int i = 0; i < n; i++) {
		int k = st->nparams++;
		st->vals[k] = (const char *)pgarr_finish(&c[i], &st->lens[k]);
		st->fmts[k] = 1;
	}
}

static struct store_stmt *
stmt_next(struct store_stmts *out, const char *sql, bool binary)
{
	struct store_stmt *st = &out->stmt[out->n++];

	st->sql = sql;
	st->nparams = 0;
	st->binary = binary;
	return st;
}

void
store_batch_statements(struct store_batch *b, uint64_t checkpoint, const char *node,
    const char *journal_id, struct store_stmts *out)
{
	struct store_stmt *st;

	out->n = 0;
	if (b->nevents > 0) {
		/* Without cascade rows, the kinds (all 0) are not sent. */
		st = stmt_next(out, b->nfanout > 0 ? insert_events_fanout : insert_events, true);
		stmt_arrays(st, b->ev, EV_COLS);
		stmt_arrays(st, &b->by_pk, 1);
		stmt_arrays(st, b->o, b->nfanout > 0 ? O_COLS : O_COLS - 1);
		snprintf(out->times, sizeof(out->times), "%lld %lld %lld %lld",
		    (long long)b->recv_first, (long long)b->recv_last, (long long)b->time_first,
		    (long long)b->time_last);
		st = stmt_next(out, notify_events, false);
		st->vals[0] = out->times;
		st->nparams = 1;
	}
	if (b->nquar > 0)
		stmt_arrays(stmt_next(out, insert_quarantine, true), b->q, Q_COLS);
	if (b->nheld > 0) {
		build_held(b);
		stmt_arrays(stmt_next(out, upsert_held, true), b->h, H_COLS);
	}
	if (b->nreports > 0)
		stmt_arrays(stmt_next(out, upsert_reports, true), b->r, R_COLS);
	static const char *const state_sql[STORE_STATES] = {
		upsert_devices, upsert_welfare, upsert_reports_state,
	};
	for (int i = 0; i < STORE_STATES; i++) {
		if (b->states[i] == NULL)
			continue;
		st = stmt_next(out, state_sql[i], false);
		st->vals[0] = b->states[i];
		st->nparams = 1;
	}
	store_checkpoint_statement(out, checkpoint, node, journal_id);
}

static const char *const all_sqls[] = {
	insert_events, insert_events_fanout, notify_events, insert_quarantine, upsert_held,
	upsert_reports, upsert_devices, upsert_welfare, upsert_reports_state, upsert_checkpoint,
};

size_t
store_batch_sqls(const char *const **out)
{
	*out = all_sqls;
	return sizeof(all_sqls) / sizeof(all_sqls[0]);
}

int
store_batch_sql_index(const char *sql)
{
	for (size_t i = 0; i < sizeof(all_sqls) / sizeof(all_sqls[0]); i++)
		if (all_sqls[i] == sql)
			return (int)i;
	return -1;
}

void
store_checkpoint_statement(struct store_stmts *out, uint64_t checkpoint, const char *node,
    const char *journal_id)
{
	struct store_stmt *st = stmt_next(out, upsert_checkpoint, false);

	snprintf(out->seq, sizeof(out->seq), "%llu", (unsigned long long)checkpoint);
	st->vals[0] = node;
	st->vals[1] = journal_id;
	st->vals[2] = out->seq;
	st->nparams = 3;
}
