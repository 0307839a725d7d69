/* Unit tests for store_ctl_tail.c's pure parts: a batch's notification
 * payload as the store writes it (store_batch.c), and which transactions
 * a snapshot sees, as PostgreSQL's txid_visible_in_snapshot() decides. */
#include <stdint.h>
#include <string.h>

#include "store.h"
#include "store_batch.h"
#include "store_ctl.h"
#include "t.h"

static void
test_note(void)
{
	struct store_ctl_note n;

	T_INTEQ(store_ctl_note_parse("733 1796510623467848 1796510623966848 -5 "
	    "1800000000000000", &n), 0);
	T_CHECK(n.txid == 733);
	T_CHECK(n.recv_first == 1796510623467848LL && n.recv_last == 1796510623966848LL);
	T_CHECK(n.time_first == -5 && n.time_last == 1800000000000000LL);
	/* The ends of the types. */
	T_INTEQ(store_ctl_note_parse("18446744073709551615 -9223372036854775808 "
	    "9223372036854775807 0 0", &n), 0);
	T_CHECK(n.txid == UINT64_MAX && n.recv_first == INT64_MIN && n.recv_last == INT64_MAX);

	/* Not a batch's: the wrong count, separators, signs, order, range. */
	static const char *const bad[] = {
		"", "1", "1 2 3 4", "1 2 3 4 5 6", "1 2 3 4 5 ", " 1 2 3 4 5", "1  2 3 4 5",
		"1\t2 3 4 5", "-1 2 3 4 5", "1 +2 3 4 5", "1 2 3 4 x", "1 - 3 4 5",
		"1 3 2 4 5",			/* received: first after last */
		"1 2 3 5 4",			/* event time: first after last */
		"18446744073709551616 1 2 3 4",
		"1 9223372036854775808 9223372036854775808 3 4",
		"1 -9223372036854775809 2 3 4",
		"not a batch",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = store_ctl_note_parse(bad[i], &n);
		T_INTEQ(rc, -1);
		if (rc != -1)
			printf("#   \"%s\" taken\n", bad[i]);
	}
}

/* What the daemon sends, with a transaction id as the server prefixes it,
 * reads back. */
static void
test_note_from_batch(void)
{
	static const uint8_t id[16] = { 7 };
	struct store_event e = {
		.id = id, .event_time_us = 1700000000000000LL, .received_us = 1700000000500000LL,
		.community_id = "c", .device_id = "d", .device_class = "k", .event_type = "t",
		.severity = "s", .vendor = "v", .route = "r", .source_topic = "x",
		.record = (const uint8_t *)"", .attrs = NULL,
	};
	struct store_batch *b = store_batch_new("n", "00112233-4455-6677-8899-aabbccddeeff");
	struct store_stmts q;
	struct store_ctl_note n;
	char payload[160];

	store_batch_add_event(b, &e);
	store_batch_statements(b, 1, "n", "00112233-4455-6677-8899-aabbccddeeff", &q);
	snprintf(payload, sizeof(payload), "%s %s", "4294967301", q.stmt[1].vals[0]);
	T_INTEQ(store_ctl_note_parse(payload, &n), 0);
	T_CHECK(n.txid == 4294967301ULL);	/* epoch 1, xid 5 */
	T_CHECK(n.recv_first == e.received_us && n.recv_last == e.received_us);
	T_CHECK(n.time_first == e.event_time_us && n.time_last == e.event_time_us);
	store_batch_free(b);
}

static void
test_snapshot(void)
{
	struct store_ctl_snapshot s;

	T_INTEQ(store_ctl_snapshot_parse("729:733:729,731", &s), 0);
	T_CHECK(s.xmin == 729 && s.xmax == 733 && s.nxip == 2);
	T_CHECK(store_ctl_snapshot_visible(&s, 1));
	T_CHECK(store_ctl_snapshot_visible(&s, 728));
	T_CHECK(!store_ctl_snapshot_visible(&s, 729));	/* running then */
	T_CHECK(store_ctl_snapshot_visible(&s, 730));
	T_CHECK(!store_ctl_snapshot_visible(&s, 731));
	T_CHECK(store_ctl_snapshot_visible(&s, 732));
	T_CHECK(!store_ctl_snapshot_visible(&s, 733));	/* not yet begun */
	T_CHECK(!store_ctl_snapshot_visible(&s, 4294967301ULL));
	store_ctl_snapshot_clear(&s);
	T_CHECK(s.xip == NULL && s.nxip == 0);

	/* None running; epochs past the first; many running (the list grows). */
	T_INTEQ(store_ctl_snapshot_parse("840:840:", &s), 0);
	T_CHECK(store_ctl_snapshot_visible(&s, 839) && !store_ctl_snapshot_visible(&s, 840));
	store_ctl_snapshot_clear(&s);
	T_INTEQ(store_ctl_snapshot_parse("8589934592:8589934600:8589934593", &s), 0);
	T_CHECK(!store_ctl_snapshot_visible(&s, 8589934593ULL));
	T_CHECK(store_ctl_snapshot_visible(&s, 8589934594ULL));
	T_CHECK(store_ctl_snapshot_visible(&s, 5));
	store_ctl_snapshot_clear(&s);
	char many[2048];
	size_t o = (size_t)snprintf(many, sizeof(many), "1000:2000:");
	for (int i = 0; i < 100; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%s%d", i ? "," : "", 1000 + 2 * i);
	T_INTEQ(store_ctl_snapshot_parse(many, &s), 0);
	T_INTEQ(s.nxip, 100);
	T_CHECK(!store_ctl_snapshot_visible(&s, 1198) && store_ctl_snapshot_visible(&s, 1199));
	store_ctl_snapshot_clear(&s);

	static const char *const bad[] = {
		"", "1", "1:2", "1:2:3,", "1:2:,3", "a:2:", "1:b:", "1:2:x", "3:2:",
		"1::", ":1:", "1:2:3;4", "99999999999999999999:1:",
		"5:9:4", "5:9:9", "5:9:6,10",	/* running ones outside xmin..xmax */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = store_ctl_snapshot_parse(bad[i], &s);
		T_INTEQ(rc, -1);
		if (rc != -1)
			printf("#   \"%s\" taken\n", bad[i]);
		T_CHECK(s.xip == NULL);
	}
}

int
main(void)
{
	test_note();
	test_note_from_batch();
	test_snapshot();
	return t_done();
}
