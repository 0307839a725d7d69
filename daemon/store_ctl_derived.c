/* store_ctl_derived.c — gridbridgectl devices and reports: the state the
 * daemon derives from the events (the devices table, resident_reports),
 * read for the operator on a blocking connection of its own.
 *
 * Each command reads one snapshot (a read-only, repeatable-read
 * transaction: the rates agree with the device list printed above them,
 * and now() is one instant for every query). Results come in libpq's
 * single-row mode and are printed as they arrive, so a row is in memory
 * at a time however large the tables are. The SQL takes the command
 * line's values as parameters only; the same statement serves the table
 * and --json, a parameter choosing whether text columns come as they are
 * or as JSON string literals (PostgreSQL's to_json() escapes them; this
 * stage has no JSON library of its own). Times are printed in UTC, ISO
 * 8601 to the second with a Z, whatever the session's TimeZone. */
#include "store_ctl.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "store_int.h"

/* ---- SQL pieces ---- */

/* A timestamptz as 2026-11-28T04:29:38Z (NULL stays NULL). */
#define SQL_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
/* A text value as it is, or as a JSON string when $1 (--json) is true. */
#define SQL_TEXT(expr) \
	"CASE WHEN $1::boolean THEN to_json(" expr ")::text ELSE (" expr ") END"
/* A boolean as yes/no, or true/false for JSON. */
#define SQL_BOOL(col) \
	"CASE WHEN $1::boolean THEN " col "::text WHEN " col " THEN 'yes' ELSE 'no' END"
/* Byte order, not the database's collation: the same order everywhere. */
#define SQL_C " COLLATE \"C\""

#define SNAPSHOT "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

/* ---- printing ---- */

/* One column of a result: its heading in the table (width 0: the last,
 * unpadded; right: a number) and its name in a JSON object. */
struct column {
	const char *heading;
	int width;
	bool right;
	const char *json;
};

/* A table cell: control characters shown as '?' (a row stays one line and
 * a name from a device cannot drive the terminal), padded to `width`
 * columns counting a UTF-8 sequence as one. */
static void
put_cell(FILE *out, const char *s, int width, bool right)
{
	int n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		n += (*p & 0xc0) != 0x80;
	if (right)
		for (int i = n; i < width; i++)
			fputc(' ', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
	if (!right)
		for (int i = n; i < width; i++)
			fputc(' ', out);
}

/* `cols[0..n)` as a table row: the values of row `i` of `r` from column
 * `first` on (NULL as "-"), or the headings when `r` is NULL. `lead`
 * replaces the first value when not NULL. */
static void
put_row(FILE *out, const struct column *cols, int n, const PGresult *r, int i, int first,
    const char *lead)
{
	for (int j = 0; j < n; j++) {
		const char *v = cols[j].heading;
		if (r != NULL)
			v = j == 0 && lead != NULL ? lead : PQgetisnull(r, i, first + j) ? "-" :
			    PQgetvalue(r, i, first + j);
		if (j > 0)
			fputc(' ', out);
		put_cell(out, v, j == n - 1 && !cols[j].right ? 0 : cols[j].width, cols[j].right);
	}
	fputc('\n', out);
}

/* `cols[0..n)` as JSON members of row `i` of `r` from column `first` on,
 * each with its leading comma: the values are JSON already (numbers,
 * true/false, SQL_TEXT strings), NULL is null. */
static void
put_members(FILE *out, const struct column *cols, int n, const PGresult *r, int i, int first)
{
	for (int j = 0; j < n; j++)
		fprintf(out, ",\"%s\":%s", cols[j].json,
		    PQgetisnull(r, i, first + j) ? "null" : PQgetvalue(r, i, first + j));
}

/* A JSON line {"type":TYPE,<cols>}. */
static void
put_json(FILE *out, const char *type, const struct column *cols, int n, const PGresult *r,
    int i, int first)
{
	fprintf(out, "{\"type\":\"%s\"", type);
	put_members(out, cols, n, r, i, first);
	fputs("}\n", out);
}

/* ---- running the queries ---- */

/* Called with each row, row `i` of `r`. */
typedef void (*row_fn)(const PGresult *r, int i, void *ctx);

/* Runs `sql` in single-row mode, giving each row to `row` as it arrives.
 * 0, or -1 after one line on `err` (the rows before the failure were
 * given). */
static int
stream(PGconn *c, const char *sql, int n, const char *const *vals, row_fn row, void *ctx,
    FILE *err)
{
	PGresult *r;
	int rc = 0;

	if (!PQsendQueryParams(c, sql, n, NULL, vals, NULL, NULL, 0)) {
		store_ctl_query_error(err, PQerrorMessage(c));
		return -1;
	}
	/* Without single-row mode (it cannot fail right after sending) the
	 * rows would come in one result: the loop below takes both. */
	(void)PQsetSingleRowMode(c);
	while ((r = PQgetResult(c)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
			for (int i = 0; rc == 0 && i < PQntuples(r); i++)
				row(r, i, ctx);
		} else if (rc == 0) {
			store_ctl_query_error(err, PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

/* A connection in a read-only snapshot, the client's text in UTF-8 (JSON
 * needs it); NULL after one line on `err`. */
static PGconn *
snapshot(const struct store_options *o, FILE *err)
{
	PGconn *c = store_ctl_connect(o, err);

	if (c == NULL)
		return NULL;
	if (PQsetClientEncoding(c, "UTF8") != 0) {
		store_ctl_query_error(err, PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PGresult *r = store_ctl_exec(c, SNAPSHOT, 0, NULL, err);
	if (r == NULL) {
		PQfinish(c);
		return NULL;
	}
	PQclear(r);
	return c;
}

/* Ends the snapshot and the connection; `rc` or, when the output could
 * not be written, 1 after one line on `err`. */
static int
finish(PGconn *c, int rc, FILE *out, FILE *err)
{
	PGresult *r = rc == 0 ? store_ctl_exec(c, "COMMIT", 0, NULL, err) : NULL;

	if (rc == 0 && r == NULL)
		rc = 1;
	PQclear(r);
	PQfinish(c);
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(err, "gridbridgectl: cannot write the output\n");
		rc = 1;
	}
	return rc;
}

/* `w` as two parameters: an absolute time, written with its offset so
 * that the session's TimeZone plays no part, and seconds before now();
 * NULL when `w` is not of that kind. */
static void
when_params(const struct store_ctl_when *w, char *at, size_t atlen, char *ago, size_t agolen,
    const char **vat, const char **vago)
{
	*vat = *vago = NULL;
	if (w->kind == STORE_CTL_WHEN_AT) {
		time_t sec = (time_t)(w->at_us / 1000000);
		long frac = (long)(w->at_us % 1000000);
		struct tm tm;
		if (frac < 0) {
			frac += 1000000;
			sec--;
		}
		if (gmtime_r(&sec, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));	/* not from the parser's range */
		size_t n = strftime(at, atlen, "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(at + n, atlen - n, ".%06ld+00", frac);
		*vat = at;
	} else if (w->kind == STORE_CTL_WHEN_AGO) {
		snprintf(ago, agolen, "%" PRId64, w->ago_s);
		*vago = ago;
	}
}

/* ---- devices ---- */

/* $1 json, $2 state, $3 class, $4 community, $5/$6 --offline-since (an
 * absolute time / seconds before now). */
static const char devices_sql[] =
    "WITH p AS (SELECT coalesce($5::timestamptz, now() - $6::bigint * interval '1 second')"
    "  AS cutoff)"
    " SELECT " SQL_TEXT("community_id") ", " SQL_TEXT("device_id") ","
    "  " SQL_TEXT("device_class") ", " SQL_TEXT("state") ","
    "  " SQL_TEXT(SQL_TIME("state_since")) ", " SQL_TEXT(SQL_TIME("last_seen")) ","
    "  battery_percent::text, link_quality::text, " SQL_BOOL("expected") ","
    "  " SQL_TEXT(SQL_TIME("first_seen")) ", " SQL_TEXT("state_source") ","
    "  " SQL_TEXT("vendor") ", " SQL_TEXT("route")
    " FROM devices, p"
    " WHERE ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR device_class = $3)"
    "  AND ($4::text IS NULL OR community_id = $4)"
    "  AND (p.cutoff IS NULL OR (state = 'offline' AND state_since <= p.cutoff))"
    " ORDER BY community_id" SQL_C ", device_class" SQL_C ", device_id" SQL_C;

/* The table shows the first DEVICE_TABLE_COLS; JSON has them all. */
static const struct column device_cols[] = {
	{ "community", 16, false, "community" },
	{ "device", 24, false, "device" },
	{ "class", 12, false, "class" },
	{ "state", 7, false, "state" },
	{ "since", 20, false, "state_since" },
	{ "last_seen", 20, false, "last_seen" },
	{ "battery", 7, true, "battery_percent" },
	{ "link_quality", 12, true, "link_quality" },
	{ "expected", 0, false, "expected" },
	{ "first_seen", 0, false, "first_seen" },
	{ "state_source", 0, false, "state_source" },
	{ "vendor", 0, false, "vendor" },
	{ "route", 0, false, "route" },
};
#define DEVICE_COLS (int)(sizeof(device_cols) / sizeof(device_cols[0]))
#define DEVICE_TABLE_COLS 9

/* $1 json, $2 class, $3 community. Every device of a community and class
 * is in its total; online counts state 'online' only. The percentage is
 * rounded to one decimal, halves up (numeric arithmetic, no binary
 * fractions). */
static const char rates_sql[] =
    "SELECT " SQL_TEXT("community_id") ", " SQL_TEXT("device_class") ","
    "  count(*) FILTER (WHERE state = 'online'),"
    "  count(*) FILTER (WHERE state = 'offline'),"
    "  count(*) FILTER (WHERE state = 'unknown'),"
    "  count(*),"
    "  round(100.0 * count(*) FILTER (WHERE state = 'online') / count(*), 1)"
    " FROM devices"
    " WHERE ($2::text IS NULL OR device_class = $2) AND ($3::text IS NULL OR community_id = $3)"
    " GROUP BY community_id, device_class"
    " ORDER BY community_id" SQL_C ", device_class" SQL_C;

static const struct column rate_cols[] = {
	{ "community", 16, false, "community" },
	{ "class", 12, false, "class" },
	{ "online", 8, true, "online" },
	{ "offline", 8, true, "offline" },
	{ "unknown", 8, true, "unknown" },
	{ "total", 8, true, "total" },
	{ "online_percent", 14, true, "online_percent" },
};
#define RATE_COLS (int)(sizeof(rate_cols) / sizeof(rate_cols[0]))

struct devices_ctx {
	const struct store_ctl_devices *q;
	FILE *out;
	bool head;		/* the table's headings are printed */
};

/* The headings of a table, once: before its first row, or after an empty
 * result (not before a failure). */
static void
devices_head(struct devices_ctx *x, const struct column *cols, int n)
{
	if (!x->q->json && !x->head)
		put_row(x->out, cols, n, NULL, 0, 0, NULL);
	x->head = true;
}

static void
device_row(const PGresult *r, int i, void *ctx)
{
	struct devices_ctx *x = ctx;

	devices_head(x, device_cols, DEVICE_TABLE_COLS);
	if (x->q->json)
		put_json(x->out, "device", device_cols, DEVICE_COLS, r, i, 0);
	else
		put_row(x->out, device_cols, DEVICE_TABLE_COLS, r, i, 0, NULL);
}

static void
rate_row(const PGresult *r, int i, void *ctx)
{
	struct devices_ctx *x = ctx;

	devices_head(x, rate_cols, RATE_COLS);
	if (x->q->json)
		put_json(x->out, "online_rate", rate_cols, RATE_COLS, r, i, 0);
	else
		put_row(x->out, rate_cols, RATE_COLS, r, i, 0, NULL);
}

int
store_ctl_devices(const struct store_options *o, const struct store_ctl_devices *q, FILE *out,
    FILE *err)
{
	char at[64], ago[32];
	const char *vals[6] = { q->json ? "true" : "false", q->state, q->device_class,
		q->community };
	struct devices_ctx x = { .q = q, .out = out };

	when_params(&q->offline_since, at, sizeof(at), ago, sizeof(ago), &vals[4], &vals[5]);
	PGconn *c = snapshot(o, err);
	if (c == NULL)
		return 1;
	int rc = stream(c, devices_sql, 6, vals, device_row, &x, err);
	if (rc == 0) {
		const char *rvals[3] = { vals[0], q->device_class, q->community };
		devices_head(&x, device_cols, DEVICE_TABLE_COLS);
		if (!q->json)
			fputc('\n', out);
		x.head = false;
		rc = stream(c, rates_sql, 3, rvals, rate_row, &x, err);
		if (rc == 0)
			devices_head(&x, rate_cols, RATE_COLS);
	}
	return finish(c, rc != 0, out, err);
}

/* ---- reports ---- */

/* $1 json, $2 community, $3/$4 since (an absolute time / seconds before
 * now; neither: STORE_CTL_REPORTS_DAYS days), $5 until. Per community and
 * a total (ROLLUP: the total comes even when no report was opened), of the
 * reports opened in the period; each with a deadline falls in exactly one
 * of on time, late, open overdue and open in time, where done is
 * handled_at, or closed_at when it was never handled. */
#define SQL_NUMBER(x) SQL_NUMBER_(x)
#define SQL_NUMBER_(x) #x
static const char reports_sql[] =
    "WITH p AS (SELECT coalesce($3::timestamptz, now() - coalesce($4::bigint, "
    SQL_NUMBER(STORE_CTL_REPORTS_DAYS) " * 86400) * interval '1 second') AS since,"
    "  $5::timestamptz AS until),"
    " r AS (SELECT community_id, deadline, coalesce(handled_at, closed_at) AS done"
    "  FROM resident_reports, p"
    "  WHERE opened_at >= p.since AND (p.until IS NULL OR opened_at < p.until)"
    "   AND ($2::text IS NULL OR community_id = $2)),"
    " n AS (SELECT grouping(community_id) AS total, community_id,"
    "  count(*) AS opened,"
    "  count(*) FILTER (WHERE done <= deadline) AS on_time,"
    "  count(*) FILTER (WHERE done > deadline) AS late,"
    "  count(*) FILTER (WHERE done IS NULL AND now() > deadline) AS open_overdue,"
    "  count(*) FILTER (WHERE done IS NULL AND now() <= deadline) AS open_in_time,"
    "  count(*) FILTER (WHERE deadline IS NULL) AS no_deadline"
    "  FROM r GROUP BY ROLLUP (community_id))"
    " SELECT n.total, " SQL_TEXT("community_id") ", opened, on_time, late, open_overdue,"
    "  open_in_time, no_deadline,"
    "  CASE WHEN on_time + late + open_overdue > 0"
    "   THEN round(100.0 * on_time / (on_time + late + open_overdue), 1) END,"
    "  " SQL_TEXT(SQL_TIME("p.since")) ", " SQL_TEXT(SQL_TIME("p.until")) ","
    "  " SQL_TEXT(SQL_TIME("now()"))
    " FROM n, p"
    " ORDER BY n.total, community_id" SQL_C;

/* From column 1. */
static const struct column report_cols[] = {
	{ "community", 16, false, "community" },
	{ "opened", 8, true, "opened" },
	{ "on_time", 8, true, "on_time" },
	{ "late", 8, true, "late" },
	{ "open_overdue", 12, true, "open_overdue" },
	{ "open_in_time", 12, true, "open_in_time" },
	{ "no_deadline", 11, true, "no_deadline" },
	{ "on_time_percent", 15, true, "on_time_percent" },
};
#define REPORT_COLS (int)(sizeof(report_cols) / sizeof(report_cols[0]))

/* The period's columns: since, until, as_of. */
static const struct column period_cols[] = {
	{ "since", 0, false, "since" },
	{ "until", 0, false, "until" },
	{ "as_of", 0, false, "as_of" },
};
#define PERIOD_COLS 3
#define PERIOD_FIRST 9	/* their first column in the result */

struct report_ctx {
	const struct store_ctl_reports *q;
	FILE *out;
	bool head;		/* the period line is printed */
};

static void
report_row(const PGresult *r, int i, void *ctx)
{
	struct report_ctx *x = ctx;
	bool total = strcmp(PQgetvalue(r, i, 0), "1") == 0;

	if (x->q->json && !total) {
		put_json(x->out, "community", report_cols, REPORT_COLS, r, i, 1);
		return;
	}
	if (x->q->json) {
		/* The counts without a community, then the period. */
		fputs("{\"type\":\"total\"", x->out);
		put_members(x->out, report_cols + 1, REPORT_COLS - 1, r, i, 2);
		put_members(x->out, period_cols, PERIOD_COLS, r, i, PERIOD_FIRST);
		fputs("}\n", x->out);
		return;
	}
	if (!x->head) {
		const char *until = PQgetisnull(r, i, PERIOD_FIRST + 1) ? NULL :
		    PQgetvalue(r, i, PERIOD_FIRST + 1);
		fprintf(x->out, "reports opened from %s%s%s, as of %s\n",
		    PQgetvalue(r, i, PERIOD_FIRST), until != NULL ? " to " : " on",
		    until != NULL ? until : "", PQgetvalue(r, i, PERIOD_FIRST + 2));
		put_row(x->out, report_cols, REPORT_COLS, NULL, 0, 1, NULL);
		x->head = true;
	}
	put_row(x->out, report_cols, REPORT_COLS, r, i, 1, total ? "(total)" : NULL);
}

int
store_ctl_reports(const struct store_options *o, const struct store_ctl_reports *q, FILE *out,
    FILE *err)
{
	char at[64], ago[32], until[64], unused[32];
	const char *vals[5] = { q->json ? "true" : "false", q->community };
	const char *no_ago;
	struct report_ctx x = { .q = q, .out = out };

	when_params(&q->since, at, sizeof(at), ago, sizeof(ago), &vals[2], &vals[3]);
	when_params(&q->until, until, sizeof(until), unused, sizeof(unused), &vals[4], &no_ago);
	PGconn *c = snapshot(o, err);
	if (c == NULL)
		return 1;
	int rc = stream(c, reports_sql, 5, vals, report_row, &x, err);
	return finish(c, rc != 0, out, err);
}
