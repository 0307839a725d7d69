/* Unit tests for store_batch.c: PostgreSQL's binary array format byte for
 * byte (array_recv: ndim, has_null, element oid, size and lower bound of
 * the dimension, then length-prefixed elements, -1 for NULL; all integers
 * big-endian), and a batch's rows in the statements' parameters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_batch.h"
#include "t.h"

/* Compares `got` with `want`; on a difference prints both in hex. */
static void
check_bytes(const char *what, const void *got, int got_len, const uint8_t *want,
    size_t want_len, int line)
{
	int ok = got != NULL && got_len >= 0 && (size_t)got_len == want_len &&
	    memcmp(got, want, want_len) == 0;

	t_report(ok, what, __FILE__, line);
	if (ok)
		return;
	printf("#   got:     ");
	for (int i = 0; got != NULL && i < got_len; i++)
		printf("%02x", ((const uint8_t *)got)[i]);
	printf("\n#   expected:");
	for (size_t i = 0; i < want_len; i++)
		printf("%02x", want[i]);
	printf("\n");
}

#define CHECK_BYTES_N(what, got, got_len, want, n) \
	check_bytes(what, got, got_len, want, n, __LINE__)
#define CHECK_BYTES(what, got, got_len, want) \
	CHECK_BYTES_N(what, got, got_len, want, sizeof(want))

/* The bytes of a finished array. */
#define CHECK_ARRAY(what, arr, want) do { \
	int len_; \
	const uint8_t *p_ = pgarr_finish(arr, &len_); \
	CHECK_BYTES(what, p_, len_, want); \
} while (0)

static void
test_int8(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 1,		/* ndim */
		0, 0, 0, 0,		/* no NULL */
		0, 0, 0, 0x14,		/* int8 */
		0, 0, 0, 2,		/* two elements */
		0, 0, 0, 1,		/* from index 1 */
		0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,
		0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
	};
	struct pgarr a;

	pgarr_init(&a, OID_INT8);
	pgarr_add_i64(&a, 1);
	pgarr_add_i64(&a, -2);
	CHECK_ARRAY("int8[] {1,-2}", &a, want);
	/* Finishing again gives the same bytes. */
	CHECK_ARRAY("int8[] finished twice", &a, want);
	pgarr_free(&a);
}

static void
test_text_with_null(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 1,
		0, 0, 0, 1,		/* has a NULL */
		0, 0, 0, 0x19,		/* text */
		0, 0, 0, 3,
		0, 0, 0, 1,
		0, 0, 0, 2, 'a', 'b',
		0xff, 0xff, 0xff, 0xff,	/* NULL: length -1, no bytes */
		0, 0, 0, 0,		/* '' is not NULL */
	};
	struct pgarr a;

	pgarr_init(&a, OID_TEXT);
	pgarr_add_text(&a, "ab");
	pgarr_add_text(&a, NULL);
	pgarr_add_text(&a, "");
	CHECK_ARRAY("text[] {ab,NULL,''}", &a, want);
	pgarr_free(&a);
}

static void
test_bytea(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 1, 0, 0, 0, 0,
		0, 0, 0, 0x11,		/* bytea */
		0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 3, 0x00, 0xff, 0x7f,
		0, 0, 0, 0,		/* empty, not NULL */
	};
	static const uint8_t v[] = { 0x00, 0xff, 0x7f };
	struct pgarr a;

	pgarr_init(&a, OID_BYTEA);
	pgarr_add(&a, v, sizeof(v));
	pgarr_add(&a, "", 0);
	CHECK_ARRAY("bytea[] {\\x00ff7f,''}", &a, want);
	pgarr_free(&a);
}

static void
test_timestamptz(void)
{
	static const uint8_t want[] = {
		0, 0, 0, 1, 0, 0, 0, 0,
		0, 0, 0x04, 0xa0,	/* timestamptz */
		0, 0, 0, 3, 0, 0, 0, 1,
		/* 2023-11-14T22:13:20.123456Z: 753315200123456 µs after 2000 */
		0, 0, 0, 8, 0x00, 0x02, 0xad, 0x22, 0xdc, 0xe8, 0x42, 0x40,
		/* 2000-01-01: 0 */
		0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0,
		/* the Unix epoch: -946684800000000 */
		0, 0, 0, 8, 0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00,
	};
	struct pgarr a;

	pgarr_init(&a, OID_TIMESTAMPTZ);
	pgarr_add_time(&a, 1700000000123456LL);
	pgarr_add_time(&a, PG_EPOCH_US);
	pgarr_add_time(&a, 0);
	CHECK_ARRAY("timestamptz[]", &a, want);
	pgarr_free(&a);
}

static void
test_jsonb_uuid_empty(void)
{
	static const uint8_t jsonb[] = {
		0, 0, 0, 1, 0, 0, 0, 1,
		0, 0, 0x0e, 0xda,	/* jsonb */
		0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 3, 1, '{', '}',	/* version 1, then the text */
		0xff, 0xff, 0xff, 0xff,
	};
	static const uint8_t uuid[] = {
		0, 0, 0, 1, 0, 0, 0, 0,
		0, 0, 0x0b, 0x86,	/* uuid */
		0, 0, 0, 1, 0, 0, 0, 1,
		0, 0, 0, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	};
	/* No elements: no dimensions, 12 bytes. */
	static const uint8_t empty[] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15,	/* int2 */
	};
	static const uint8_t id[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
	struct pgarr a;

	pgarr_init(&a, OID_JSONB);
	pgarr_add_jsonb(&a, "{}", 2);
	pgarr_add_jsonb(&a, NULL, 0);
	CHECK_ARRAY("jsonb[] {{},NULL}", &a, jsonb);
	pgarr_free(&a);

	pgarr_init(&a, OID_UUID);
	pgarr_add(&a, id, 16);
	CHECK_ARRAY("uuid[]", &a, uuid);
	pgarr_free(&a);

	pgarr_init(&a, OID_INT2);
	CHECK_ARRAY("int2[] {}", &a, empty);
	pgarr_free(&a);
}

static void
test_large(void)
{
	struct pgarr a;
	char big[1000];
	int len;

	/* Growing past the first allocation keeps every element. */
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	pgarr_init(&a, OID_TEXT);
	for (int i = 0; i < 100; i++)
		pgarr_add_text(&a, big);
	const uint8_t *p = pgarr_finish(&a, &len);
	T_INTEQ(len, 20 + 100 * (4 + 999));
	T_CHECK(p[15] == 100 && p[20 + 99 * 1003 + 3] == 0xe7 && p[len - 1] == 'x');
	pgarr_free(&a);
}

static void
test_uuid_parse(void)
{
	uint8_t u[16];
	static const uint8_t want[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77 };

	T_INTEQ(store_uuid_parse("01234567-89ab-cdef-0011-223344556677", u), 0);
	CHECK_BYTES("uuid with dashes", u, 16, want);
	T_INTEQ(store_uuid_parse("0123456789ABCDEF0011223344556677", u), 0);
	CHECK_BYTES("uuid without dashes, upper case", u, 16, want);
	T_INTEQ(store_uuid_parse("01234567-89ab-cdef-0011-22334455667", u), -1);
	T_INTEQ(store_uuid_parse("01234567-89ab-cdef-0011-2233445566778", u), -1);
	T_INTEQ(store_uuid_parse("0123456x-89ab-cdef-0011-223344556677", u), -1);
	T_INTEQ(store_uuid_parse("", u), -1);
}

#define JOURNAL "00112233-4455-6677-8899-aabbccddeeff"

/* One element of a one-dimensional array parameter, by index: its bytes
 * (NULL for SQL NULL) and length. */
static const uint8_t *
element(const struct store_stmt *st, int param, uint32_t index, int *len)
{
	const uint8_t *p = (const uint8_t *)st->vals[param] + 20;

	for (uint32_t i = 0;; i++) {
		int32_t n = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		    (uint32_t)p[2] << 8 | p[3]);
		if (i == index) {
			*len = n;
			return n < 0 ? NULL : p + 4;
		}
		p += 4 + (n < 0 ? 0 : n);
	}
}

static void
test_event_batch(void)
{
	static const uint8_t id[16] = { 0xaa, [15] = 0x01 };
	static const uint8_t rec[] = { 0x0a, 0x02, 'h', 'i' };
	struct store_event e = {
		.id = id, .event_time_us = PG_EPOCH_US + 1, .received_us = PG_EPOCH_US + 2,
		.community_id = "c1", .device_id = "d1", .device_class = "access_gate",
		.event_type = "access_granted", .severity = "info", .vendor = "hikvision",
		.route = "access", .source_topic = "sac/c1/access/d1/event",
		.journal_seq = 7, .clock_skewed = true, .plate = NULL,
		.record = rec, .record_len = sizeof(rec), .attrs = "{\"a\":1}",
	};
	struct store_batch *b = store_batch_new("node-1", JOURNAL);
	struct store_stmts q;
	int len;

	store_batch_add_event(b, &e);
	store_batch_add_outbox(b, id, PG_EPOCH_US + 1, "platform", 9, 0);
	T_INTEQ(store_batch_rows(b), 1);
	store_batch_statements(b, 42, "node-1", JOURNAL, &q);
	T_INTEQ(q.n, 3);
	const struct store_stmt *st = &q.stmt[0];
	T_CHECK(st->binary && strstr(st->sql, "INSERT INTO events") != NULL);
	/* No cascade row: the kinds are not sent, nor subscriptions read. */
	T_CHECK(strstr(st->sql, "viid_subscriptions") == NULL);
	T_INTEQ(st->nparams, EV_PARAMS + O_COLS - 1);
	size_t sum = 0;
	for (int i = 0; i < st->nparams; i++) {
		T_CHECK(st->fmts[i] == 1);
		sum += (size_t)st->lens[i] - 20;	/* every array has one row */
	}
	T_INTEQ(store_batch_bytes(b), sum);

	/* The event's columns, in the table's order. */
	static const uint8_t one_us[] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	static const uint8_t seq[] = { 0, 0, 0, 0, 0, 0, 0, 7 };
	static const uint8_t yes[] = { 1 };
	static const uint8_t attrs[] = { 1, '{', '"', 'a', '"', ':', '1', '}' };
	static const uint8_t node[] = { 'n', 'o', 'd', 'e', '-', '1' };
	static const uint8_t topic[] = "sac/c1/access/d1/event";
	const uint8_t *p = element(st, 0, 0, &len);
	CHECK_BYTES_N("id", p, len, id, 16);
	p = element(st, 1, 0, &len);
	CHECK_BYTES("event_time", p, len, one_us);
	p = element(st, 10, 0, &len);
	CHECK_BYTES_N("source_topic", p, len, topic, sizeof(topic) - 1);
	p = element(st, 11, 0, &len);
	CHECK_BYTES("journal_node: the batch's node", p, len, node);
	p = element(st, 12, 0, &len);
	CHECK_BYTES("journal_seq", p, len, seq);
	p = element(st, 13, 0, &len);
	CHECK_BYTES("clock_skewed", p, len, yes);
	T_CHECK(element(st, 14, 0, &len) == NULL && len == -1);	/* no plate */
	T_CHECK(((const uint8_t *)st->vals[14])[7] == 1);	/* has_null */
	p = element(st, 15, 0, &len);
	CHECK_BYTES("record", p, len, rec);
	p = element(st, 16, 0, &len);
	CHECK_BYTES("attrs as jsonb", p, len, attrs);

	/* No device time in the id (the default): an event_ids row. */
	static const uint8_t no[] = { 0 };
	p = element(st, EV_COLS, 0, &len);
	CHECK_BYTES("by_primary_key", p, len, no);

	/* The outbox row: $19..$22. */
	static const uint8_t prio[] = { 0, 9 };
	static const uint8_t target[] = { 'p', 'l', 'a', 't', 'f', 'o', 'r', 'm' };
	p = element(st, EV_PARAMS + 0, 0, &len);
	CHECK_BYTES_N("outbox event_id", p, len, id, 16);
	p = element(st, EV_PARAMS + 2, 0, &len);
	CHECK_BYTES("outbox target", p, len, target);
	p = element(st, EV_PARAMS + 3, 0, &len);
	CHECK_BYTES("outbox priority as int2", p, len, prio);

	/* The notification, after the events: the times of the one event. */
	st = &q.stmt[1];
	T_CHECK(!st->binary && strstr(st->sql, "pg_notify('" STORE_NOTIFY_CHANNEL "'") != NULL);
	T_CHECK(strstr(st->sql, "txid_current()") != NULL);
	T_INTEQ(st->nparams, 1);
	T_STREQ(st->vals[0], "946684800000002 946684800000002 946684800000001 946684800000001");

	/* The checkpoint: text parameters. */
	st = &q.stmt[2];
	T_CHECK(!st->binary && strstr(st->sql, "INSERT INTO ingest_checkpoint") != NULL);
	T_INTEQ(st->nparams, 3);
	T_STREQ(st->vals[0], "node-1");
	T_STREQ(st->vals[1], JOURNAL);
	T_STREQ(st->vals[2], "42");
	store_batch_free(b);
}

/* Outbox rows of a cascade target: the statement that fans them out to
 * the subscriptions, with the kinds as $23. */
static void
test_event_batch_fanout(void)
{
	static const uint8_t id[16] = { 0xbb, [15] = 0x02 };
	struct store_event e = {
		.id = id, .community_id = "c", .device_id = "d", .device_class = "k",
		.event_type = "t", .severity = "s", .vendor = "v", .route = "r",
		.source_topic = "x", .record = (const uint8_t *)"", .attrs = NULL,
		.by_primary_key = true,
	};
	struct store_batch *b = store_batch_new("n", JOURNAL);
	struct store_stmts q;
	int len;

	store_batch_add_event(b, &e);
	store_batch_add_outbox(b, id, PG_EPOCH_US, "police", 5, 0);
	store_batch_add_outbox(b, id, PG_EPOCH_US, "cascade", 5, 12);
	store_batch_statements(b, 1, "n", JOURNAL, &q);
	const struct store_stmt *st = &q.stmt[0];
	T_CHECK(strstr(st->sql, "viid_subscriptions") != NULL);
	T_CHECK(strstr(st->sql, "$23::int2[]") != NULL);
	T_INTEQ(st->nparams, EV_PARAMS + O_COLS);
	static const uint8_t yes[] = { 1 };
	const uint8_t *p = element(st, EV_COLS, 0, &len);
	CHECK_BYTES("by_primary_key", p, len, yes);
	static const uint8_t plain[] = { 0, 0 }, faces[] = { 0, 12 };
	p = element(st, EV_PARAMS + 4, 0, &len);
	CHECK_BYTES("kind of a plain target", p, len, plain);
	p = element(st, EV_PARAMS + 4, 1, &len);
	CHECK_BYTES("kind of a cascade target: SubscribeDetail 12", p, len, faces);
	store_batch_free(b);
}

static void
test_event_without_outbox(void)
{
	static const uint8_t id[16] = { 1 };
	struct store_event e = {
		.id = id, .community_id = "c", .device_id = "d", .device_class = "k",
		.event_type = "t", .severity = "s", .vendor = "v", .route = "r",
		.source_topic = "x", .plate = "AB123", .record = (const uint8_t *)"", .attrs = NULL,
	};
	struct store_batch *b = store_batch_new("n", JOURNAL);
	struct store_stmts q;
	int len;

	store_batch_add_event(b, &e);
	store_batch_statements(b, 0, "n", JOURNAL, &q);
	const struct store_stmt *st = &q.stmt[0];
	static const uint8_t plate[] = { 'A', 'B', '1', '2', '3' };
	const uint8_t *p = element(st, 14, 0, &len);
	CHECK_BYTES("plate", p, len, plate);
	T_CHECK(element(st, 16, 0, &len) == NULL && len == -1);	/* attrs off */
	/* No outbox rows: four empty arrays of their types. */
	static const uint8_t empty_uuid[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0x86 };
	static const uint8_t empty_int2[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15 };
	CHECK_BYTES("empty outbox event_id", st->vals[EV_PARAMS], st->lens[EV_PARAMS], empty_uuid);
	CHECK_BYTES("empty outbox priority", st->vals[EV_PARAMS + 3], st->lens[EV_PARAMS + 3],
	    empty_int2);
	T_STREQ(q.stmt[2].vals[2], "0");
	store_batch_free(b);
}

/* The notification's times are the earliest and latest of the batch's
 * events, whatever their order; a batch without events notifies nothing,
 * with or without other rows. */
static void
test_notification_times(void)
{
	static const int64_t recv[] = { 1700000000000005LL, 1700000000000001LL,
		1700000000000009LL };
	static const int64_t when[] = { -5, 1800000000000000LL, 0 };
	struct store_batch *b = store_batch_new("n", JOURNAL);
	struct store_stmts q;

	for (int i = 0; i < 3; i++) {
		uint8_t id[16] = { (uint8_t)(i + 1) };
		struct store_event e = {
			.id = id, .event_time_us = when[i], .received_us = recv[i],
			.community_id = "c", .device_id = "d", .device_class = "k",
			.event_type = "t", .severity = "s", .vendor = "v", .route = "r",
			.source_topic = "x", .record = (const uint8_t *)"", .attrs = NULL,
		};
		store_batch_add_event(b, &e);
	}
	store_batch_statements(b, 3, "n", JOURNAL, &q);
	T_INTEQ(q.n, 3);
	T_CHECK(strstr(q.stmt[1].sql, "pg_notify") != NULL);
	T_STREQ(q.stmt[1].vals[0], "1700000000000001 1700000000000009 -5 1800000000000000");
	store_batch_free(b);

	/* Quarantine and a derived state only: no notification. */
	struct store_quarantine qr = {
		.journal_seq = 4, .received_us = 1, .topic = "t", .topic_len = 1,
		.raw = (const uint8_t *)"x", .raw_len = 1, .reason = "bad_json",
	};
	b = store_batch_new("n", JOURNAL);
	store_batch_add_quarantine(b, &qr);
	store_batch_set_states(b, "[]", NULL, NULL);
	store_batch_statements(b, 4, "n", JOURNAL, &q);
	T_INTEQ(q.n, 3);
	for (size_t i = 0; i < q.n; i++)
		T_CHECK(strstr(q.stmt[i].sql, "pg_notify") == NULL);
	store_batch_free(b);
}

static void
test_quarantine_and_reports(void)
{
	struct store_quarantine qr = {
		.journal_seq = 3, .received_us = PG_EPOCH_US, .topic = "t/1xx", .topic_len = 3,
		.raw = NULL, .raw_len = 0, .reason = "bad_json", .route = NULL,
	};
	static const uint8_t k[16] = { 0x11 }, d[16] = { 0x22 }, i[16] = { 0x33 };
	struct store_report rp = {
		.key = k, .digest = d, .event_id = i, .event_time_us = PG_EPOCH_US,
		.last_us = PG_EPOCH_US + 1,
	};
	struct store_batch *b = store_batch_new("n", JOURNAL);
	struct store_stmts q;
	int len;

	store_batch_add_quarantine(b, &qr);
	store_batch_add_report(b, &rp);
	T_INTEQ(store_batch_rows(b), 1);	/* report states are not rows */
	store_batch_statements(b, 5, "n", JOURNAL, &q);
	T_INTEQ(q.n, 3);
	const struct store_stmt *st = &q.stmt[0];
	T_CHECK(strstr(st->sql, "INSERT INTO quarantine") != NULL);
	T_INTEQ(st->nparams, Q_COLS);
	static const uint8_t journal[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
		0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
	static const uint8_t topic[] = { 't', '/', '1' };
	const uint8_t *p = element(st, 1, 0, &len);
	CHECK_BYTES("quarantine journal_id", p, len, journal);
	p = element(st, 4, 0, &len);
	CHECK_BYTES("quarantine topic: topic_len bytes", p, len, topic);
	T_CHECK(element(st, 5, 0, &len) != NULL && len == 0);	/* raw: empty, not NULL */
	T_CHECK(element(st, 7, 0, &len) == NULL && len == -1);	/* no route */

	st = &q.stmt[1];
	T_CHECK(strstr(st->sql, "INSERT INTO report_state") != NULL);
	T_INTEQ(st->nparams, R_COLS);
	p = element(st, 0, 0, &len);
	CHECK_BYTES_N("report key", p, len, k, 16);
	static const uint8_t last[] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	p = element(st, 4, 0, &len);
	CHECK_BYTES("report last_at", p, len, last);
	T_CHECK(strstr(q.stmt[2].sql, "INSERT INTO ingest_checkpoint") != NULL);
	store_batch_free(b);
}

/* A rate-limited device's share of its summary row: one row per device
 * and batch, the count and the last seq, built once however often the
 * statements are made (a batch sent again). */
static void
test_held_back(void)
{
	struct store_quarantine first = {
		.journal_seq = 7, .received_us = PG_EPOCH_US, .topic = "z/broken", .topic_len = 8,
		.raw = (const uint8_t *)"{}", .raw_len = 2, .reason = "rate_limited", .route = "z2m",
	};
	struct store_batch *b = store_batch_new("n", JOURNAL);
	struct store_stmts q;
	int len;

	size_t row = store_batch_add_held(b, 5, &first);
	store_batch_held_more(b, row, 9, "z2m");
	store_batch_held_more(b, row, 12, "z2m");
	T_INTEQ(store_batch_rows(b), 3);	/* messages, for the batch's size */
	for (int round = 0; round < 2; round++) {
		store_batch_statements(b, 12, "n", JOURNAL, &q);
		T_INTEQ(q.n, 2);
		const struct store_stmt *st = &q.stmt[0];
		T_CHECK(strstr(st->sql, "held_back = quarantine.held_back + excluded.held_back") != NULL);
		T_INTEQ(st->nparams, H_COLS);
		static const uint8_t key[] = { 0, 0, 0, 0, 0, 0, 0, 5 };
		static const uint8_t n[] = { 0, 0, 0, 0, 0, 0, 0, 3 };
		static const uint8_t through[] = { 0, 0, 0, 0, 0, 0, 0, 12 };
		static const uint8_t topic[] = { 'z', '/', 'b', 'r', 'o', 'k', 'e', 'n' };
		static const uint8_t route[] = { 'z', '2', 'm' };
		const uint8_t *p = element(st, 2, 0, &len);
		CHECK_BYTES("held key: the interval's first seq", p, len, key);
		p = element(st, 4, 0, &len);
		CHECK_BYTES("held sample topic", p, len, topic);
		p = element(st, 6, 0, &len);
		CHECK_BYTES("held route", p, len, route);
		p = element(st, 7, 0, &len);
		CHECK_BYTES("held count", p, len, n);
		p = element(st, 8, 0, &len);
		CHECK_BYTES("held through", p, len, through);
		const uint8_t *h = (const uint8_t *)st->vals[2];
		T_INTEQ(h[12] << 24 | h[13] << 16 | h[14] << 8 | h[15], 1);	/* one row */
	}
	store_batch_free(b);
}

static void
test_checkpoint_only(void)
{
	struct store_batch *b = store_batch_new("n", NULL);
	struct store_stmts q;

	T_INTEQ(store_batch_rows(b), 0);
	T_INTEQ(store_batch_bytes(b), 0);
	store_batch_statements(b, 18446744073709551615ULL, "n", JOURNAL, &q);
	T_INTEQ(q.n, 1);
	T_STREQ(q.stmt[0].vals[2], "18446744073709551615");
	store_batch_free(b);

	/* The same statement alone. */
	struct store_stmts one = { .n = 0 };
	store_checkpoint_statement(&one, 9, "m", JOURNAL);
	T_INTEQ(one.n, 1);
	T_CHECK(one.stmt[0].sql == q.stmt[0].sql && !one.stmt[0].binary);
	T_STREQ(one.stmt[0].vals[0], "m");
	T_STREQ(one.stmt[0].vals[2], "9");
}

int
main(void)
{
	test_int8();
	test_text_with_null();
	test_bytea();
	test_timestamptz();
	test_jsonb_uuid_empty();
	test_large();
	test_uuid_parse();
	test_event_batch();
	test_event_batch_fanout();
	test_event_without_outbox();
	test_notification_times();
	test_quarantine_and_reports();
	test_held_back();
	test_checkpoint_only();
	return t_done();
}
