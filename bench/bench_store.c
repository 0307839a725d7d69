/* bench_store — rows/s into `events`, the daemon's way against the
 * alternatives, in one run against a freshly created schema:
 *
 *   a  unnest_bin        INSERT INTO events SELECT * FROM unnest($1::uuid[], ...)
 *                        ON CONFLICT DO NOTHING, 17 binary array parameters
 *                        (encoded by the daemon's daemon/store_batch.c), attrs on
 *   b  unnest_bin_noattrs  the same, attrs NULL ([store] attrs = false)
 *   c  copy_staging      COPY events_staging FROM STDIN (FORMAT binary) into a
 *                        TEMP table (created once per connection, ON COMMIT
 *                        DELETE ROWS), then INSERT INTO events SELECT * FROM
 *                        events_staging ON CONFLICT DO NOTHING, attrs on
 *   d  unnest_text       as a, the arrays as text literals (reference)
 *   e  copy_staging_noattrs  as c, attrs NULL
 *   f  copy_direct       COPY straight into events, no ON CONFLICT: a ceiling
 *                        only — the daemon cannot use it (one redelivered row
 *                        fails the whole batch)
 *   g  unnest_bin_noconflict  as a without ON CONFLICT DO NOTHING (reference:
 *                        what the conflict check costs; not usable either)
 *
 * The daemon's whole batch, and changes of it, one at a time:
 *
 *   h  daemon            store_batch_statements()'s statements as daemon/store.c
 *                        sends them: INSERT_EVENTS (event_ids, events, outbox
 *                        rows), pg_notify, the checkpoint upsert, Sync; unnamed
 *                        statements. Outbox rows as under the shipped rules
 *                        (passages, camera alarms: 52 % of the rows)
 *   i  daemon_noattrs    h, attrs NULL
 *   j  daemon_no_secondary_idx  h without events_device_time, events_plate,
 *                        events_community_time (dropped before, made again after)
 *   k  daemon_pk_dedupe  h without event_ids: events' primary key decides
 *   l  daemon_events_noconflict  h, the events insert without ON CONFLICT
 *   m  daemon_no_notify  h without pg_notify
 *   n  daemon_no_checkpoint  h without the checkpoint upsert
 *   o  daemon_outbox_none  h, no event matches a rule
 *   p  daemon_outbox_all   h, every event matches one
 *   q  daemon_prepared   h as named statements prepared once per connection
 *   v, w, r              q with attrs NULL; without the secondary indexes; both
 *   u                    r deduplicated as k
 *   x                    u with no outbox rows: the events insert alone
 *   y                    q without pg_notify and the checkpoint upsert
 *   z                    q with an event_ids row for every event (the daemon's
 *                        batch before by_primary_key; now only events without
 *                        a device time, or with a clock that is off, get one)
 *   s  copy_raw_batch    COPY raw (topic text, payload text) FROM STDIN, the
 *                        received topic and payload, one transaction per batch
 *   t  copy_pipe         the same, every row in one COPY: what
 *                        `mosquitto_sub | psql -c 'COPY raw FROM STDIN'` costs
 *                        the server (bench/e2e.py's baseline (a))
 *
 * Every batch is one transaction, and as in the daemon it also upserts the
 * ingest_checkpoint row: the unnest variants send INSERT + upsert + Sync in
 * pipeline mode (one round trip, like store.c); the COPY variants send one
 * simple query "BEGIN; COPY ...; INSERT ...; upsert; COMMIT" and stream the
 * COPY data in the middle of it (also one round trip).
 *
 * Rows: the device samples (FIXTURES, NAME.topic.txt + NAME.json) decoded by
 * the real routes and decoders, then per row a unique id (UUIDv8 from
 * SHA-256, random-looking like the real ids), an event time today (ascending,
 * between midnight and now in the server's time zone, so in today's
 * partition), received time, journal seq, one of 4 communities and 8 devices
 * per sample; `record` is the packed gridbridge.v1.Event and `attrs` its
 * canonical JSON, exactly as daemon/pipeline.c makes them. All rows are made
 * before the timing; the timed part is building the parameters (or COPY
 * data) from the rows, sending, and the server's work up to the commit.
 *
 * The schema: `DROP SCHEMA bench_store CASCADE`, CREATE, then the daemon's
 * migrations (schema_migrations()) and gridbridge_maintain_partitions(7, 0)
 * in it. A warm-up pass (untimed, method a), then before every variant:
 * TRUNCATE events, CHECKPOINT (when the role may: pg_checkpoint), a new
 * connection.
 *
 * usage: bench_store [-v VARIANTS] [-f FIXTURES] [-s SEED] [-k] [-W]
 *                    [-p RECORD_FACTOR:ATTRS_FACTOR] CONNINFO [ROWS [BATCH]]
 *   VARIANTS  letters in the order to run, default "abcdef"
 *   ROWS      default 200000; BATCH default 500 (the daemon's batch_rows)
 *   -k        keep the bench_store schema afterwards
 *   -W        no warm-up (by default all rows are inserted once by method a,
 *             in batches of at least 500, untimed, before the variants: WAL
 *             segment files, caches)
 *   -w N      the first N batches of every variant untimed (default 5)
 *   -p        make every row's record and attrs that many times bigger
 *             (padding, see pad_row), e.g. -p 2:1.6: bigger devices' rows
 *
 * After each variant the stored rows are checksummed (untimed): variants
 * with the same attrs setting must have stored the same rows, or it fails.
 *
 * One line per variant on stdout:
 *   variant=h method=daemon attrs=on batch=... rows=... xacts=... seconds=...
 *   rows_per_s=... ratio=... client_cpu_us_row=... server_cpu_us_row=...
 *   cluster_cpu_us_row=... wal_bytes_row=... table_bytes_row=... outbox_rows=...
 * ratio is rows/s over variant a's in this run ("-" without a). server CPU
 * is the backend's, cluster CPU the postmaster's and all its children's
 * (and the ended ones': the postmaster's cutime + cstime), from
 * /proc/PID/schedstat (same machine). The first -w batches (default 5) of
 * each variant are not timed (a new backend's caches); rows= is the number
 * timed.
 * Exit status 0, 1 on a database error, 2 on a usage error.
 */
#include <dirent.h>
#include <endian.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "event_json.h"
#include "event_names.h"
#include "schema.h"
#include "sha256.h"
#include "store.h"
#include "store_batch.h"
#include "util.h"

#ifndef FIXTURES_DIR
#define FIXTURES_DIR "tests/fixtures/devices"
#endif

#define SCHEMA "bench_store"
#define NODE "bench-store"
/* The journal whose checkpoint the batches move (any UUID: one row). */
#define JOURNAL_ID "00000000-0000-4000-8000-00000000b5e7"

/* ---- rows ------------------------------------------------------------- */

struct row {
	uint8_t id[16];
	int64_t event_time_us, received_us;
	const char *community_id, *device_id;	/* shared strings */
	const char *device_class, *event_type, *severity, *vendor, *route, *source_topic;
	uint64_t journal_seq;
	bool clock_skewed;
	const char *plate;
	uint8_t *record;
	size_t record_len;
	char *attrs;
	size_t attrs_len;
	/* the message as received (the COPY pipe's two columns) */
	const char *payload;
	size_t payload_len;
	/* the priority of its outbox row under the shipped rules, -1: none */
	int rule_priority;
};

struct sample {
	char name[64];
	char topic[256];
	char *payload;
	size_t len;
	/* strings of the decoded sample, shared by its rows */
	char *device_class, *event_type, *severity, *vendor, *route, *source_topic, *plate;
	char *devices[8];
};

static const struct {
	const char *name, *pattern, *decoder, *class;
} routes_def[] = {
	{ "access", "sac/{community}/access/{device}/event", "access", "access_gate" },
	{ "vehicle", "sac/{community}/vehicle/{device}/event", "hikvision", "vehicle_barrier" },
	{ "camera", "sac/{community}/camera/{device}/alarm", "camera_alarm", "camera" },
	{ "peephole", "sac/{community}/peephole/{device}/event", "peephole", "peephole" },
	{ "gateway", "sac/{community}/gateway/{device}/status", "gateway", "gateway" },
	{ "z2m-bridge", "zigbee2mqtt/bridge/state", "z2m_bridge", "gateway" },
	{ "z2m-avail", "zigbee2mqtt/{device...}/availability", "z2m_availability", "door_sensor" },
	{ "z2m", "zigbee2mqtt/{device...}", "z2m_device", "door_sensor" },
};
#define NROUTES (sizeof(routes_def) / sizeof(routes_def[0]))

/* The stored events of a community, by sample: gate and door events
 * dominate, heartbeats and availability are stored too. Weights in
 * percent; samples not listed are not used. */
static const struct {
	const char *name;
	int weight;
} mix[] = {
	{ "gate_person_access_hikvision", 22 },
	{ "gate_person_access_dahua", 12 },
	{ "vehicle_barrier_anpr_hikvision", 14 },
	{ "door_contact_z2m_state", 14 },
	{ "door_contact_z2m_availability", 8 },
	{ "device_heartbeat_hikvision", 14 },
	{ "gateway_heartbeat", 6 },
	{ "peephole_linger_event", 5 },
	{ "camera_alarm_high_altitude_throwing", 4 },
	{ "gateway_lwt", 1 },
};

static const char *communities[4] = {
	"340104050101", "340104050102", "340104050103", "340104050104",
};

static double
now_s(void)
{
	return (double)util_mono_us() / 1e6;
}

static double
cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n != 0 ? n : 1);
	if (p == NULL) {
		fprintf(stderr, "bench_store: out of memory\n");
		exit(1);
	}
	return p;
}

static char *
xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = xmalloc((size_t)n + 1);
	if (n < 0 || fread(b, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(b);
		return NULL;
	}
	fclose(f);
	b[n] = '\0';
	*len = (size_t)n;
	return b;
}

static int
load_samples(const char *dir, struct sample *samples, size_t max, size_t *ns)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	*ns = 0;
	if (d == NULL) {
		fprintf(stderr, "bench_store: cannot open %s\n", dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL && *ns < max) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
			continue;
		char path[1024];
		size_t tl;
		struct sample *s = &samples[*ns];
		memset(s, 0, sizeof(*s));
		snprintf(path, sizeof(path), "%s/%.*s.topic.txt", dir, (int)(l - 5), de->d_name);
		char *t = slurp(path, &tl);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		s->payload = slurp(path, &s->len);
		if (t == NULL || s->payload == NULL) {
			free(t);
			free(s->payload);
			continue;
		}
		/* Devices send compact JSON; the fixtures are pretty-printed. */
		json_t *j = json_loadb(s->payload, s->len, 0, NULL);
		if (j != NULL) {
			char *c = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
			json_decref(j);
			free(s->payload);
			s->payload = c;
			s->len = strlen(c);
		}
		t[strcspn(t, "\r\n")] = '\0';
		snprintf(s->topic, sizeof(s->topic), "%s", t);
		snprintf(s->name, sizeof(s->name), "%.*s", (int)(l - 5), de->d_name);
		free(t);
		(*ns)++;
	}
	closedir(d);
	return 0;
}

/* Padding (-p): rows made bigger than the samples' by factors, with
 * pseudo-random lower-case text (about as compressible as URLs and ids):
 * `record` gets an unknown length-delimited field (number 15000; a decoder
 * skips it, so the bytes stay a valid Event), `attrs` a "pad" member. */
static uint32_t pad_state = 12345;

static void
pad_text(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		pad_state = pad_state * 1664525u + 1013904223u;
		p[i] = (char)('a' + (pad_state >> 8) % 26);
	}
}

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static void
pad_row(struct row *r, double rec_factor, double attrs_factor)
{
	size_t want = (size_t)((double)r->record_len * rec_factor);
	if (want > r->record_len + 8) {
		size_t body = want - r->record_len - 6;
		uint8_t *n = xmalloc(want + 16);
		memcpy(n, r->record, r->record_len);
		size_t o = r->record_len;
		o += put_varint(n + o, (15000u << 3) | 2);
		o += put_varint(n + o, body);
		pad_text((char *)n + o, body);
		o += body;
		free(r->record);
		r->record = n;
		r->record_len = o;
	}
	want = (size_t)((double)r->attrs_len * attrs_factor);
	if (want > r->attrs_len + 12 && r->attrs_len >= 2 && r->attrs[r->attrs_len - 1] == '}') {
		size_t body = want - r->attrs_len - 10;
		char *n = xmalloc(want + 16);
		memcpy(n, r->attrs, r->attrs_len - 1);
		size_t o = r->attrs_len - 1;
		memcpy(n + o, ",\"pad\":\"", 8);
		o += 8;
		pad_text(n + o, body);
		o += body;
		memcpy(n + o, "\"}", 3);
		o += 2;
		free(r->attrs);
		r->attrs = n;
		r->attrs_len = o;
	}
}

struct gen_stats {
	double pack_s, json_s;
	size_t record_bytes, attrs_bytes;
	size_t record_min, record_max, attrs_min, attrs_max;
};

/* Makes `n` rows with event times spread over [t0, t1]. */
static struct row *
make_rows(size_t n, struct sample *samples, size_t ns, struct route *routes, uint32_t seed,
    int64_t t0, int64_t t1, double rec_factor, double attrs_factor, struct gen_stats *st)
{
	size_t order[100], norder = 0;
	struct row *rows = calloc(n, sizeof(*rows));
	struct decode_out out;
	uint8_t *pack = NULL;
	size_t packcap = 0;

	if (rows == NULL) {
		fprintf(stderr, "bench_store: out of memory\n");
		exit(1);
	}
	for (size_t m = 0; m < sizeof(mix) / sizeof(mix[0]); m++)
		for (size_t i = 0; i < ns; i++)
			if (strcmp(samples[i].name, mix[m].name) == 0)
				for (int w = 0; w < mix[m].weight && norder < 100; w++)
					order[norder++] = i;
	if (norder == 0) {
		fprintf(stderr, "bench_store: none of the mix's samples found\n");
		exit(1);
	}
	/* A fixed shuffle of the schedule, so classes interleave. */
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = norder - 1; i > 0; i--) {
		x = x * 1664525u + 1013904223u;
		size_t j = (x >> 8) % (i + 1);
		size_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}

	memset(st, 0, sizeof(*st));
	st->record_min = st->attrs_min = SIZE_MAX;
	decode_out_init(&out);
	for (size_t i = 0; i < n; i++) {
		struct sample *s = &samples[order[i % norder]];
		struct row *r = &rows[i];
		struct route_match m;
		const struct route *rt = decode_find_route(routes, NROUTES, s->topic,
		    strlen(s->topic), &m);
		int64_t et = t0 + (int64_t)((double)(t1 - t0) * (double)i / (double)n);
		if (rt == NULL) {
			fprintf(stderr, "bench_store: no route for %s\n", s->topic);
			exit(1);
		}
		struct decode_in in = {
			.route = rt, .match = &m, .topic = s->topic, .topic_len = strlen(s->topic),
			.payload = (const uint8_t *)s->payload, .payload_len = s->len,
			.received_us = et + 150000, .journal_seq = i + 1,
			.max_skew_us = 300000000LL,
		};
		if (decode_record(&in, &out) != 0) {
			fprintf(stderr, "bench_store: %s does not decode: %s\n", s->name, out.reason);
			exit(1);
		}
		Event *ev = &out.ev;
		/* Unique id: a UUIDv8 over SHA-256 of (seed, row), as random as the
		 * daemon's. */
		struct sha256 h;
		uint8_t dig[32];
		char key[64];
		int kl = snprintf(key, sizeof(key), "bench_store/%u/%zu", seed, i);
		sha256_init(&h);
		sha256_update(&h, key, (size_t)kl);
		sha256_final(&h, dig);
		memcpy(r->id, dig, 16);
		r->id[6] = (uint8_t)((r->id[6] & 0x0f) | 0x80);
		r->id[8] = (uint8_t)((r->id[8] & 0x3f) | 0x80);
		ev->id.data = r->id;
		ev->id.len = 16;
		ev->event_time_us = et;
		ev->received_time_us = et + 150000;
		ev->clock_skewed = false;
		size_t dev = (i / norder + i) % 8;
		if (s->devices[0] == NULL) {
			/* The sample's own strings, once. */
			for (int k = 0; k < 8; k++) {
				char b[256];
				snprintf(b, sizeof(b), "%s-%02d", ev->device_id, k + 1);
				s->devices[k] = xstrdup(b);
			}
			s->device_class = xstrdup(event_class_name(ev->device_class));
			s->event_type = xstrdup(event_type_name(ev->event_type));
			s->severity = xstrdup(event_severity_name(ev->severity));
			s->vendor = xstrdup(ev->vendor);
			s->route = xstrdup(ev->route);
			s->source_topic = xstrdup(ev->source_topic);
			if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_VEHICLE && ev->vehicle != NULL &&
			    ev->vehicle->plate_normalized != NULL && ev->vehicle->plate_normalized[0])
				s->plate = xstrdup(ev->vehicle->plate_normalized);
		}
		ev->device_id = s->devices[dev];
		ev->community_id = (char *)communities[(i / 8) % 4];

		double c0 = cpu_s();
		size_t pn = gridbridge__v1__event__get_packed_size(ev);
		if (pn > packcap) {
			free(pack);
			packcap = pn * 2;
			pack = xmalloc(packcap);
		}
		gridbridge__v1__event__pack(ev, pack);
		r->record = xmalloc(pn);
		memcpy(r->record, pack, pn);
		r->record_len = pn;
		double c1 = cpu_s();
		r->attrs = event_json_text(&ev->base);
		double c2 = cpu_s();
		if (r->attrs == NULL) {
			fprintf(stderr, "bench_store: event_json failed\n");
			exit(1);
		}
		r->attrs_len = strlen(r->attrs);
		st->pack_s += c1 - c0;
		st->json_s += c2 - c1;
		if (rec_factor > 1 || attrs_factor > 1) {
			pad_row(r, rec_factor, attrs_factor);
			Event *chk = gridbridge__v1__event__unpack(NULL, r->record_len, r->record);
			if (chk == NULL || chk->journal_seq != i + 1) {
				fprintf(stderr, "bench_store: padded record does not unpack\n");
				exit(1);
			}
			gridbridge__v1__event__free_unpacked(chk, NULL);
		}

		r->event_time_us = et;
		r->received_us = et + 150000;
		r->community_id = ev->community_id;
		r->device_id = ev->device_id;
		r->device_class = s->device_class;
		r->event_type = s->event_type;
		r->severity = s->severity;
		r->vendor = s->vendor;
		r->route = s->route;
		r->source_topic = s->source_topic;
		r->journal_seq = i + 1;
		r->clock_skewed = false;
		r->plate = s->plate;
		r->payload = s->payload;
		r->payload_len = s->len;
		/* conf/gridbridge.conf's rules: camera alarms (7; high-altitude
		 * throwing 9), passages (3); device status only from the registry,
		 * welfare alerts only derived: none among the samples. */
		if (strcmp(s->event_type, "camera_alarm") == 0)
			r->rule_priority = 7;
		else if (strcmp(s->event_type, "person_passage") == 0 ||
		    strcmp(s->event_type, "vehicle_passage") == 0)
			r->rule_priority = 3;
		else
			r->rule_priority = -1;

		st->record_bytes += r->record_len;
		st->attrs_bytes += r->attrs_len;
		if (r->record_len < st->record_min)
			st->record_min = r->record_len;
		if (r->record_len > st->record_max)
			st->record_max = r->record_len;
		if (r->attrs_len < st->attrs_min)
			st->attrs_min = r->attrs_len;
		if (r->attrs_len > st->attrs_max)
			st->attrs_max = r->attrs_len;
	}
	decode_out_free(&out);
	free(pack);
	return rows;
}

/* ---- a growable buffer ------------------------------------------------ */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void
buf_reserve(struct buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *n = realloc(b->p, cap);
	if (n == NULL) {
		fprintf(stderr, "bench_store: out of memory\n");
		exit(1);
	}
	b->p = n;
	b->cap = cap;
}

static void
buf_put(struct buf *b, const void *d, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void
buf_be16(struct buf *b, uint16_t v)
{
	v = htobe16(v);
	buf_put(b, &v, 2);
}

static void
buf_be32(struct buf *b, uint32_t v)
{
	v = htobe32(v);
	buf_put(b, &v, 4);
}

static void
buf_be64(struct buf *b, uint64_t v)
{
	v = htobe64(v);
	buf_put(b, &v, 8);
}

static void
buf_str(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* ---- text arrays ------------------------------------------------------ */

static const char hexd[] = "0123456789abcdef";

/* One quoted element of an array literal; `s` escaped for it. */
static void
tarr_quoted(struct buf *b, const char *s, size_t n)
{
	buf_reserve(b, 2 * n + 3);
	b->p[b->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '"' || c == '\\')
			b->p[b->len++] = '\\';
		b->p[b->len++] = (uint8_t)c;
	}
	b->p[b->len++] = '"';
}

static void
tarr_sep(struct buf *b, size_t i)
{
	buf_put(b, i == 0 ? "{" : ",", 1);
}

static void
tarr_text(struct buf *b, size_t i, const char *s)
{
	tarr_sep(b, i);
	if (s == NULL)
		buf_str(b, "NULL");
	else
		tarr_quoted(b, s, strlen(s));
}

static void
tarr_time(struct buf *b, size_t i, int64_t us)
{
	char t[64];
	time_t sec = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	size_t n = strftime(t, sizeof(t), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(t + n, sizeof(t) - n, ".%06lld+00", (long long)(us % 1000000));
	tarr_sep(b, i);
	tarr_quoted(b, t, strlen(t));
}

static void
tarr_uuid(struct buf *b, size_t i, const uint8_t *id)
{
	char t[40];
	size_t o = 0;
	for (int k = 0; k < 16; k++) {
		if (k == 4 || k == 6 || k == 8 || k == 10)
			t[o++] = '-';
		t[o++] = hexd[id[k] >> 4];
		t[o++] = hexd[id[k] & 15];
	}
	t[o] = '\0';
	tarr_sep(b, i);
	buf_str(b, t);
}

static void
tarr_bytea(struct buf *b, size_t i, const uint8_t *p, size_t n)
{
	tarr_sep(b, i);
	buf_reserve(b, 2 * n + 6);
	/* "\\x..." : the array literal's backslash escapes bytea's. */
	memcpy(b->p + b->len, "\"\\\\x", 4);
	b->len += 4;
	for (size_t k = 0; k < n; k++) {
		b->p[b->len++] = (uint8_t)hexd[p[k] >> 4];
		b->p[b->len++] = (uint8_t)hexd[p[k] & 15];
	}
	b->p[b->len++] = '"';
}

static void
tarr_raw(struct buf *b, size_t i, const char *s)
{
	tarr_sep(b, i);
	buf_str(b, s);
}

static void
tarr_end(struct buf *b)
{
	buf_put(b, "}", 2);	/* with the NUL: text parameters are C strings */
}

/* ---- the database ----------------------------------------------------- */

static const char insert_events[] =
    "INSERT INTO events (id, event_time, received_at, community_id, device_id,"
    " device_class, event_type, severity, vendor, route, source_topic, journal_node,"
    " journal_seq, clock_skewed, plate, record, attrs)"
    " SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::text[], $13::int8[], $14::bool[], $15::text[], $16::bytea[], $17::jsonb[])"
    " ON CONFLICT DO NOTHING";
static const char insert_events_noconflict[] =
    "INSERT INTO events (id, event_time, received_at, community_id, device_id,"
    " device_class, event_type, severity, vendor, route, source_topic, journal_node,"
    " journal_seq, clock_skewed, plate, record, attrs)"
    " SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],"
    " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::text[], $13::int8[], $14::bool[], $15::text[], $16::bytea[], $17::jsonb[])";
#define COPY_CHECKPOINT \
    "INSERT INTO ingest_checkpoint (journal_node, journal_id, journal_seq)" \
    " VALUES ('" NODE "', '" JOURNAL_ID "'::uuid, %llu)" \
    " ON CONFLICT (journal_id) DO UPDATE SET" \
    " journal_seq = greatest(ingest_checkpoint.journal_seq, excluded.journal_seq)," \
    " journal_node = excluded.journal_node, updated_at = now();COMMIT"
#define EVENT_COLUMNS "id, event_time, received_at, community_id, device_id," \
    " device_class, event_type, severity, vendor, route, source_topic, journal_node," \
    " journal_seq, clock_skewed, plate, record, attrs"

/* The daemon's batch (store_batch.c) with one thing changed; the same
 * parameters ($1..$17 the events, $18 by_primary_key, $19..$22 the
 * outbox rows). */
#define D_ROWS \
    "WITH r AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]," \
    "  $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]," \
    "  $11::text[], $12::text[], $13::int8[], $14::bool[], $15::text[], $16::bytea[]," \
    "  $17::jsonb[], $18::bool[]) WITH ORDINALITY AS r(id, event_time, received_at," \
    "  community_id, device_id, device_class, event_type, severity, vendor, route," \
    "  source_topic, journal_node, journal_seq, clock_skewed, plate, record, attrs, by_pk," \
    "  ord)),"
#define D_EVENTS_INSERT \
    " INSERT INTO events (id, event_time, received_at, community_id, device_id," \
    "  device_class, event_type, severity, vendor, route, source_topic, journal_node," \
    "  journal_seq, clock_skewed, plate, record, attrs)" \
    "  SELECT DISTINCT ON (r.id) r.id, r.event_time, r.received_at, r.community_id," \
    "  r.device_id, r.device_class, r.event_type, r.severity, r.vendor, r.route," \
    "  r.source_topic, r.journal_node, r.journal_seq, r.clock_skewed, r.plate, r.record," \
    "  r.attrs FROM r"
#define D_OUTBOX \
    " INSERT INTO forward_outbox (event_id, event_time, target, priority)" \
    " SELECT DISTINCT ON (o.event_id, o.target) o.event_id, o.event_time, o.target," \
    "  o.priority FROM unnest($19::uuid[], $20::timestamptz[], $21::text[], $22::int2[])" \
    "  WITH ORDINALITY AS o(event_id, event_time, target, priority, ord)" \
    "  JOIN n ON n.id = o.event_id ORDER BY o.event_id, o.target, o.ord" \
    " ON CONFLICT DO NOTHING"
/* k: no event_ids; the events' primary key (id, event_time) decides. */
static const char daemon_pk_only[] =
    D_ROWS " n AS (" D_EVENTS_INSERT " ORDER BY r.id, r.ord ON CONFLICT DO NOTHING RETURNING id)"
    D_OUTBOX;
/* l: event_ids decides, the events insert has no ON CONFLICT (a row of
 * events whose id is not in event_ids would fail the batch). */
static const char daemon_events_noconflict[] =
    D_ROWS " n AS (INSERT INTO event_ids (id, received_at) SELECT id, received_at FROM r"
    "  ON CONFLICT DO NOTHING RETURNING id),"
    " e AS (" D_EVENTS_INSERT " JOIN n ON n.id = r.id ORDER BY r.id, r.ord)" D_OUTBOX;

static PGconn *
db_connect(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench_store: cannot connect: %s", PQerrorMessage(c));
		exit(1);
	}
	PGresult *r = PQexec(c, "SET search_path = " SCHEMA "; SET client_min_messages = warning");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "bench_store: %s", PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
	return c;
}

/* Runs `sql`; exits on an error unless `may_fail`. Returns the result
 * (the caller PQclear()s it) or NULL when it failed. */
static PGresult *
db_exec(PGconn *c, const char *sql, bool may_fail)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		if (!may_fail) {
			fprintf(stderr, "bench_store: %.60s...: %s", sql, PQerrorMessage(c));
			exit(1);
		}
		PQclear(r);
		return NULL;
	}
	return r;
}

static long long
db_int8(PGconn *c, const char *sql)
{
	PGresult *r = db_exec(c, sql, false);
	long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ?
	    strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	return v;
}

static void
create_schema(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	size_t n;
	const struct schema_migration *m = schema_migrations(&n);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bench_store: cannot connect: %s", PQerrorMessage(c));
		exit(1);
	}
	PQclear(db_exec(c, "SET client_min_messages = warning;"
	    "DROP SCHEMA IF EXISTS " SCHEMA " CASCADE; CREATE SCHEMA " SCHEMA ";"
	    "SET search_path = " SCHEMA ";"
	    "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
	    " applied_at timestamptz NOT NULL DEFAULT now(), description text NOT NULL)",
	    false));
	for (size_t i = 0; i < n; i++) {
		PQclear(db_exec(c, "BEGIN", false));
		PQclear(db_exec(c, m[i].sql, false));
		char q[512];
		snprintf(q, sizeof(q), "INSERT INTO schema_migrations (version, description)"
		    " VALUES (%d, '%s')", m[i].version, m[i].description);
		PQclear(db_exec(c, q, false));
		PQclear(db_exec(c, "COMMIT", false));
	}
	PQclear(db_exec(c, "SELECT gridbridge_maintain_partitions(7, 0)", false));
	/* the COPY pipe's table (bench/e2e.py baseline (a)) */
	PQclear(db_exec(c, "CREATE TABLE raw (topic text, payload text)", false));
	PQfinish(c);
}

static void
drop_schema(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) == CONNECTION_OK)
		PQclear(db_exec(c, "SET client_min_messages = warning;"
		    "DROP SCHEMA IF EXISTS " SCHEMA " CASCADE", true));
	PQfinish(c);
}

/* CPU seconds process `pid` has run, from /proc/PID/schedstat (ns), or
 * -1. */
static double
proc_run_s(int pid)
{
	char path[64];
	unsigned long long ns;
	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	int ok = fscanf(f, "%llu", &ns);
	fclose(f);
	return ok == 1 ? (double)ns / 1e9 : -1;
}

/* The parent of process `pid`, or -1. */
static int
proc_ppid(int pid)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	char *p = strrchr(line, ')');
	int ppid;
	if (p == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* The whole cluster's CPU seconds: the postmaster `pm` and its live
 * children (schedstat, ns), plus the children that ended (the
 * postmaster's cutime + cstime, 10 ms ticks: autovacuum workers). */
static double
cluster_cpu_s(int pm)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pm);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	char *p = strrchr(line, ')');
	unsigned long long cut = 0, cst = 0;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u"
	    " %llu %llu", &cut, &cst) != 2)
		return -1;
	double total = (double)(cut + cst) / (double)sysconf(_SC_CLK_TCK) + proc_run_s(pm);
	DIR *d = opendir("/proc");
	struct dirent *de;
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		int pid = atoi(de->d_name);
		if (pid <= 0 || proc_ppid(pid) != pm)
			continue;
		double t = proc_run_s(pid);
		if (t > 0)
			total += t;
	}
	closedir(d);
	return total;
}

/* ---- variants --------------------------------------------------------- */

enum method { M_UNNEST_BIN, M_UNNEST_TEXT, M_COPY_STAGING, M_COPY_DIRECT,
	M_UNNEST_BIN_NOCONFLICT, M_DAEMON, M_COPY_RAW, M_COPY_PIPE };

enum outbox_rows { OB_RULES, OB_NONE, OB_ALL };

struct variant {
	char letter;
	const char *name;
	enum method method;
	bool attrs;
	/* M_DAEMON: the daemon's batch, store_batch_statements(), unless: */
	const char *events_sql;		/* another first statement (same parameters) */
	enum outbox_rows outbox;	/* which events have an outbox row */
	bool no_notify, no_checkpoint;
	bool prepared;			/* named statements, prepared once per connection */
	bool no_secondary;		/* without events' three btree indexes */
	bool ids_all;			/* an event_ids row for every event, as
					 * before by_primary_key (store.h) */
};

/* events' secondary indexes (migration 1); events_received (BRIN) stays */
static const char drop_secondary[] =
    "DROP INDEX events_device_time; DROP INDEX events_plate; DROP INDEX events_community_time";
static const char create_secondary[] =
    "CREATE INDEX events_device_time ON events (device_id, event_time);"
    "CREATE INDEX events_plate ON events (plate, event_time) WHERE plate IS NOT NULL;"
    "CREATE INDEX events_community_time ON events (community_id, event_time)";

#define V(l, n, m, at) .letter = l, .name = n, .method = m, .attrs = at
static const struct variant variants[] = {
	{ V('a', "unnest_bin", M_UNNEST_BIN, true) },
	{ V('b', "unnest_bin_noattrs", M_UNNEST_BIN, false) },
	{ V('c', "copy_staging", M_COPY_STAGING, true) },
	{ V('d', "unnest_text", M_UNNEST_TEXT, true) },
	{ V('e', "copy_staging_noattrs", M_COPY_STAGING, false) },
	{ V('f', "copy_direct", M_COPY_DIRECT, true) },
	{ V('g', "unnest_bin_noconflict", M_UNNEST_BIN_NOCONFLICT, true) },
	{ V('h', "daemon", M_DAEMON, true) },
	{ V('i', "daemon_noattrs", M_DAEMON, false) },
	{ V('j', "daemon_no_secondary_idx", M_DAEMON, true), .no_secondary = true },
	{ V('k', "daemon_pk_dedupe", M_DAEMON, true), .events_sql = daemon_pk_only },
	{ V('l', "daemon_events_noconflict", M_DAEMON, true),
	  .events_sql = daemon_events_noconflict },
	{ V('m', "daemon_no_notify", M_DAEMON, true), .no_notify = true },
	{ V('n', "daemon_no_checkpoint", M_DAEMON, true), .no_checkpoint = true },
	{ V('o', "daemon_outbox_none", M_DAEMON, true), .outbox = OB_NONE },
	{ V('p', "daemon_outbox_all", M_DAEMON, true), .outbox = OB_ALL },
	{ V('q', "daemon_prepared", M_DAEMON, true), .prepared = true },
	{ V('r', "daemon_prepared_noattrs_no_secondary", M_DAEMON, false), .prepared = true,
	  .no_secondary = true },
	{ V('s', "copy_raw_batch", M_COPY_RAW, false) },
	{ V('t', "copy_pipe", M_COPY_PIPE, false) },
	{ V('u', "daemon_prepared_noattrs_no_secondary_pk_dedupe", M_DAEMON, false),
	  .events_sql = daemon_pk_only, .prepared = true, .no_secondary = true },
	{ V('v', "daemon_prepared_noattrs", M_DAEMON, false), .prepared = true },
	{ V('w', "daemon_prepared_no_secondary", M_DAEMON, true), .prepared = true,
	  .no_secondary = true },
	{ V('x', "daemon_prepared_noattrs_no_secondary_pk_dedupe_outbox_none", M_DAEMON, false),
	  .events_sql = daemon_pk_only, .prepared = true, .no_secondary = true,
	  .outbox = OB_NONE },
	{ V('y', "daemon_prepared_no_notify_no_checkpoint", M_DAEMON, true), .prepared = true,
	  .no_notify = true, .no_checkpoint = true },
	{ V('z', "daemon_prepared_event_ids_all", M_DAEMON, true), .prepared = true,
	  .ids_all = true },
};
#undef V

struct enc {
	struct buf text[EV_COLS];
	struct buf copy;
	char sql[1024];
};

/* Reads results up to the pipeline's Sync; exits on an error. */
static void
pipeline_results(PGconn *c)
{
	for (;;) {
		PGresult *r = PQgetResult(c);
		if (r == NULL) {
			if (PQstatus(c) != CONNECTION_OK) {
				fprintf(stderr, "bench_store: connection lost: %s", PQerrorMessage(c));
				exit(1);
			}
			continue;	/* between two statements' results */
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			return;
		}
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			fprintf(stderr, "bench_store: batch failed: %s", PQresultErrorMessage(r));
			exit(1);
		}
		PQclear(r);
	}
}

/* The rows as the daemon encodes them (store_batch.c): the batch's first
 * statement has the events' 17 columns as $1..$17; the checkpoint upsert
 * is the daemon's too. */
static struct store_batch *
encode_events(const struct row *rows, size_t n, bool attrs, struct store_stmts *q)
{
	struct store_batch *b = store_batch_new(NODE, JOURNAL_ID);

	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		struct store_event ev = {
			.id = r->id, .event_time_us = r->event_time_us,
			.received_us = r->received_us, .community_id = r->community_id,
			.device_id = r->device_id, .device_class = r->device_class,
			.event_type = r->event_type, .severity = r->severity, .vendor = r->vendor,
			.route = r->route, .source_topic = r->source_topic,
			.journal_seq = r->journal_seq, .clock_skewed = r->clock_skewed,
			.plate = r->plate, .record = r->record, .record_len = r->record_len,
			.attrs = attrs ? r->attrs : NULL,
		};
		store_batch_add_event(b, &ev);
	}
	store_batch_statements(b, rows[n - 1].journal_seq, NODE, JOURNAL_ID, q);
	return b;
}

static void
batch_unnest_bin(PGconn *c, const struct row *rows, size_t n, bool attrs, const char *sql)
{
	struct store_stmts q;
	struct store_batch *b = encode_events(rows, n, attrs, &q);
	const struct store_stmt *ev = &q.stmt[0], *ck = &q.stmt[q.n - 1];

	if (PQsendQueryParams(c, sql, EV_COLS, NULL, ev->vals, ev->lens, ev->fmts, 0) == 0 ||
	    PQsendQueryParams(c, ck->sql, ck->nparams, NULL, ck->vals, NULL, NULL, 0) == 0 ||
	    PQpipelineSync(c) == 0) {
		fprintf(stderr, "bench_store: send failed: %s", PQerrorMessage(c));
		exit(1);
	}
	pipeline_results(c);
	store_batch_free(b);
}

static void
batch_unnest_text(PGconn *c, struct enc *e, const struct row *rows, size_t n, bool attrs)
{
	struct buf *t = e->text;
	const char *vals[EV_COLS];
	char num[32];

	for (int k = 0; k < EV_COLS; k++)
		t[k].len = 0;
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		tarr_uuid(&t[0], i, r->id);
		tarr_time(&t[1], i, r->event_time_us);
		tarr_time(&t[2], i, r->received_us);
		tarr_text(&t[3], i, r->community_id);
		tarr_text(&t[4], i, r->device_id);
		tarr_text(&t[5], i, r->device_class);
		tarr_text(&t[6], i, r->event_type);
		tarr_text(&t[7], i, r->severity);
		tarr_text(&t[8], i, r->vendor);
		tarr_text(&t[9], i, r->route);
		tarr_text(&t[10], i, r->source_topic);
		tarr_text(&t[11], i, NODE);
		snprintf(num, sizeof(num), "%llu", (unsigned long long)r->journal_seq);
		tarr_raw(&t[12], i, num);
		tarr_raw(&t[13], i, r->clock_skewed ? "t" : "f");
		tarr_text(&t[14], i, r->plate);
		tarr_bytea(&t[15], i, r->record, r->record_len);
		if (attrs) {
			tarr_sep(&t[16], i);
			tarr_quoted(&t[16], r->attrs, r->attrs_len);
		} else {
			tarr_raw(&t[16], i, "NULL");
		}
	}
	for (int k = 0; k < EV_COLS; k++) {
		tarr_end(&t[k]);
		vals[k] = (const char *)t[k].p;
	}
	struct store_stmts q = { .n = 0 };
	store_checkpoint_statement(&q, rows[n - 1].journal_seq, NODE, JOURNAL_ID);
	const struct store_stmt *ck = &q.stmt[0];
	if (PQsendQueryParams(c, insert_events, EV_COLS, NULL, vals, NULL, NULL, 0) == 0 ||
	    PQsendQueryParams(c, ck->sql, ck->nparams, NULL, ck->vals, NULL, NULL, 0) == 0 ||
	    PQpipelineSync(c) == 0) {
		fprintf(stderr, "bench_store: send failed: %s", PQerrorMessage(c));
		exit(1);
	}
	pipeline_results(c);
}

/* One field of a binary COPY tuple. */
static void
copy_field(struct buf *b, const void *d, size_t n)
{
	if (d == NULL) {
		buf_be32(b, 0xffffffffu);
		return;
	}
	buf_be32(b, (uint32_t)n);
	buf_put(b, d, n);
}

static void
copy_text(struct buf *b, const char *s)
{
	copy_field(b, s, s != NULL ? strlen(s) : 0);
}

static void
copy_i64(struct buf *b, int64_t v)
{
	buf_be32(b, 8);
	buf_be64(b, (uint64_t)v);
}

static void
batch_copy(PGconn *c, struct enc *e, const struct row *rows, size_t n, bool attrs,
    bool direct)
{
	struct buf *b = &e->copy;
	static const uint8_t sig[11] = { 'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0 };

	b->len = 0;
	buf_put(b, sig, sizeof(sig));
	buf_be32(b, 0);		/* flags */
	buf_be32(b, 0);		/* header extension */
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		uint8_t skewed = r->clock_skewed ? 1 : 0;
		buf_be16(b, EV_COLS);
		copy_field(b, r->id, 16);
		copy_i64(b, r->event_time_us - PG_EPOCH_US);
		copy_i64(b, r->received_us - PG_EPOCH_US);
		copy_text(b, r->community_id);
		copy_text(b, r->device_id);
		copy_text(b, r->device_class);
		copy_text(b, r->event_type);
		copy_text(b, r->severity);
		copy_text(b, r->vendor);
		copy_text(b, r->route);
		copy_text(b, r->source_topic);
		copy_text(b, NODE);
		copy_i64(b, (int64_t)r->journal_seq);
		copy_field(b, &skewed, 1);
		copy_text(b, r->plate);
		copy_field(b, r->record, r->record_len);
		if (attrs) {
			buf_be32(b, (uint32_t)(r->attrs_len + 1));
			uint8_t v = 1;
			buf_put(b, &v, 1);
			buf_put(b, r->attrs, r->attrs_len);
		} else {
			copy_field(b, NULL, 0);
		}
	}
	buf_be16(b, 0xffff);	/* trailer */

	/* One simple query, the COPY data streamed in its middle: one round
	 * trip, one transaction. The checkpoint upsert is the daemon's with
	 * its values inline. */
	if (direct)
		snprintf(e->sql, sizeof(e->sql), "BEGIN;"
		    "COPY events (" EVENT_COLUMNS ") FROM STDIN (FORMAT binary);"
		    COPY_CHECKPOINT,
		    (unsigned long long)rows[n - 1].journal_seq);
	else
		snprintf(e->sql, sizeof(e->sql), "BEGIN;"
		    "COPY events_staging FROM STDIN (FORMAT binary);"
		    "INSERT INTO events SELECT * FROM events_staging ON CONFLICT DO NOTHING;"
		    COPY_CHECKPOINT,
		    (unsigned long long)rows[n - 1].journal_seq);
	if (PQsendQuery(c, e->sql) == 0) {
		fprintf(stderr, "bench_store: send failed: %s", PQerrorMessage(c));
		exit(1);
	}
	PGresult *r;
	bool copied = false;
	while ((r = PQgetResult(c)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_COPY_IN && !copied) {
			copied = true;
			PQclear(r);
			if (PQputCopyData(c, (const char *)b->p, (int)b->len) != 1 ||
			    PQputCopyEnd(c, NULL) != 1) {
				fprintf(stderr, "bench_store: COPY failed: %s", PQerrorMessage(c));
				exit(1);
			}
			continue;
		}
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			fprintf(stderr, "bench_store: batch failed: %s", PQresultErrorMessage(r));
			exit(1);
		}
		PQclear(r);
	}
	if (!copied) {
		fprintf(stderr, "bench_store: the server asked for no COPY data\n");
		exit(1);
	}
}

/* The daemon's batch (daemon/store.c send_batch()): the statements of
 * store_batch_statements() — events + event_ids + outbox rows in one
 * statement, the notification, the checkpoint upsert — in one pipelined
 * transaction, unless the variant changes one of them. */
static const char *const prep_names[3] = { "bench_events", "bench_notify", "bench_checkpoint" };

static void
batch_daemon(PGconn *c, const struct variant *v, const struct row *rows, size_t n)
{
	struct store_stmts q;
	struct store_batch *b = store_batch_new(NODE, JOURNAL_ID);

	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		struct store_event ev = {
			.id = r->id, .event_time_us = r->event_time_us,
			.received_us = r->received_us, .community_id = r->community_id,
			.device_id = r->device_id, .device_class = r->device_class,
			.event_type = r->event_type, .severity = r->severity, .vendor = r->vendor,
			.route = r->route, .source_topic = r->source_topic,
			.journal_seq = r->journal_seq, .clock_skewed = r->clock_skewed,
			.plate = r->plate, .record = r->record, .record_len = r->record_len,
			.attrs = v->attrs ? r->attrs : NULL,
			/* device times of today, the clock right: as pipeline.c */
			.by_primary_key = !v->ids_all,
		};
		store_batch_add_event(b, &ev);
		int prio = v->outbox == OB_ALL ? (r->rule_priority >= 0 ? r->rule_priority : 1) :
		    v->outbox == OB_NONE ? -1 : r->rule_priority;
		if (prio >= 0)
			store_batch_add_outbox(b, r->id, r->event_time_us, "police", prio, 0);
	}
	store_batch_statements(b, rows[n - 1].journal_seq, NODE, JOURNAL_ID, &q);
	/* events (+ outbox), notify, checkpoint */
	if (q.n != 3) {
		fprintf(stderr, "bench_store: %zu statements, expected 3\n", (size_t)q.n);
		exit(1);
	}
	for (size_t k = 0; k < q.n; k++) {
		const struct store_stmt *st = &q.stmt[k];
		if ((k == 1 && v->no_notify) || (k == 2 && v->no_checkpoint))
			continue;
		int ok;
		if (v->prepared)
			ok = PQsendQueryPrepared(c, prep_names[k], st->nparams, st->vals,
			    st->binary ? st->lens : NULL, st->binary ? st->fmts : NULL, 0);
		else
			ok = PQsendQueryParams(c, k == 0 && v->events_sql != NULL ? v->events_sql :
			    st->sql, st->nparams, NULL, st->vals, st->binary ? st->lens : NULL,
			    st->binary ? st->fmts : NULL, 0);
		if (ok == 0) {
			fprintf(stderr, "bench_store: send failed: %s", PQerrorMessage(c));
			exit(1);
		}
	}
	if (PQpipelineSync(c) == 0) {
		fprintf(stderr, "bench_store: send failed: %s", PQerrorMessage(c));
		exit(1);
	}
	pipeline_results(c);
	store_batch_free(b);
}

/* Prepares the daemon's statements (of a batch of one row: the SQL does
 * not depend on the rows) on `c`, outside pipeline mode. */
static void
prepare_daemon(PGconn *c, const struct variant *v, const struct row *rows)
{
	struct store_stmts q;
	struct store_batch *b = store_batch_new(NODE, JOURNAL_ID);
	struct store_event ev = {
		.id = rows[0].id, .community_id = "", .device_id = "", .device_class = "",
		.event_type = "", .severity = "", .vendor = "", .route = "", .source_topic = "",
		.record = rows[0].record, .record_len = rows[0].record_len,
	};

	store_batch_add_event(b, &ev);
	store_batch_statements(b, 1, NODE, JOURNAL_ID, &q);
	for (size_t k = 0; k < q.n && k < 3; k++) {
		const char *sql = k == 0 && v->events_sql != NULL ? v->events_sql : q.stmt[k].sql;
		PGresult *r = PQprepare(c, prep_names[k], sql, q.stmt[k].nparams, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "bench_store: prepare failed: %s", PQerrorMessage(c));
			exit(1);
		}
		PQclear(r);
	}
	store_batch_free(b);
}

/* One COPY text line: topic TAB payload, escaped for COPY. */
static void
copy_raw_line(struct buf *b, const struct row *r)
{
	buf_str(b, r->source_topic);
	buf_put(b, "\t", 1);
	buf_reserve(b, 2 * r->payload_len + 1);
	for (size_t i = 0; i < r->payload_len; i++) {
		char ch = r->payload[i];
		const char *esc = ch == '\\' ? "\\\\" : ch == '\t' ? "\\t" : ch == '\n' ? "\\n" :
		    ch == '\r' ? "\\r" : NULL;
		if (esc != NULL) {
			memcpy(b->p + b->len, esc, 2);
			b->len += 2;
		} else {
			b->p[b->len++] = (uint8_t)ch;
		}
	}
	buf_put(b, "\n", 1);
}

/* COPY raw FROM STDIN of `n` rows, each call its own transaction (s);
 * copy_pipe (t) sends every row in one COPY, in pieces of 64 KiB, as
 * `mosquitto_sub | psql -c 'COPY raw FROM STDIN'` does. */
static void
copy_raw(PGconn *c, struct enc *e, const struct row *rows, size_t n)
{
	struct buf *b = &e->copy;
	PGresult *r = PQexec(c, "COPY raw FROM STDIN");

	if (PQresultStatus(r) != PGRES_COPY_IN) {
		fprintf(stderr, "bench_store: COPY raw: %s", PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
	b->len = 0;
	for (size_t i = 0; i < n; i++) {
		copy_raw_line(b, &rows[i]);
		if (b->len >= 65536 || i == n - 1) {
			if (PQputCopyData(c, (const char *)b->p, (int)b->len) != 1) {
				fprintf(stderr, "bench_store: COPY failed: %s", PQerrorMessage(c));
				exit(1);
			}
			b->len = 0;
		}
	}
	if (PQputCopyEnd(c, NULL) != 1) {
		fprintf(stderr, "bench_store: COPY failed: %s", PQerrorMessage(c));
		exit(1);
	}
	while ((r = PQgetResult(c)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "bench_store: COPY raw: %s", PQresultErrorMessage(r));
			exit(1);
		}
		PQclear(r);
	}
}

struct result {
	double seconds, client_cpu, server_cpu, cluster_cpu;
	long long wal_bytes, table_bytes, rows_stored, rows_default, outbox_rows, xacts;
	long long timed_rows;	/* the rows after the warm-up batches */
	char content[64];	/* a checksum of every stored row's text */
};

static const char table_size_sql[] =
    "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::int8 FROM pg_inherits"
    " WHERE inhparent = '" SCHEMA ".events'::regclass";

static bool
is_raw(const struct variant *v)
{
	return v->method == M_COPY_RAW || v->method == M_COPY_PIPE;
}

static size_t warm_batches = 5;

static struct result
run_variant(const char *conninfo, const struct variant *v, const struct row *rows, size_t n,
    size_t batch, bool *checkpoint_ok)
{
	struct result res = { 0 };
	struct enc e;
	PGconn *c = db_connect(conninfo);

	memset(&e, 0, sizeof(e));
	PQclear(db_exec(c, "TRUNCATE events, event_ids, forward_outbox, ingest_checkpoint, raw",
	    false));
	if (v->no_secondary)
		PQclear(db_exec(c, drop_secondary, false));
	PGresult *cr = db_exec(c, "CHECKPOINT", true);
	*checkpoint_ok = cr != NULL;
	PQclear(cr);
	if (v->method == M_COPY_STAGING)
		PQclear(db_exec(c, "CREATE TEMP TABLE events_staging (LIKE events)"
		    " ON COMMIT DELETE ROWS", false));
	if (v->method == M_DAEMON && v->prepared)
		prepare_daemon(c, v, rows);
	long long wal0 = db_int8(c, "SELECT (pg_current_wal_lsn() - '0/0')::int8");
	int pid = PQbackendPID(c), pm = proc_ppid(pid);
	if ((v->method == M_UNNEST_BIN || v->method == M_UNNEST_TEXT ||
	    v->method == M_UNNEST_BIN_NOCONFLICT || v->method == M_DAEMON) &&
	    PQenterPipelineMode(c) != 1) {
		fprintf(stderr, "bench_store: cannot enter pipeline mode\n");
		exit(1);
	}

	/* The first warm_batches batches are not timed: a new backend builds
	 * its caches (relations, indexes, plans) with them, which the daemon's
	 * long-lived connection does once. */
	size_t warm = v->method == M_COPY_PIPE ? 0 : warm_batches * batch;
	if (warm > n / 2)
		warm = n / 2 / batch * batch;
	double k0 = 0, s0 = 0, c0 = 0, t0 = 0;
	if (v->method == M_COPY_PIPE) {
		k0 = cluster_cpu_s(pm);
		s0 = proc_run_s(pid), c0 = cpu_s(), t0 = now_s();
		copy_raw(c, &e, rows, n);
	}
	for (size_t i = 0; i < n && v->method != M_COPY_PIPE; i += batch) {
		size_t k = n - i < batch ? n - i : batch;
		if (i == warm) {
			k0 = cluster_cpu_s(pm);
			s0 = proc_run_s(pid), c0 = cpu_s(), t0 = now_s();
		}
		switch (v->method) {
		case M_UNNEST_BIN:
			batch_unnest_bin(c, rows + i, k, v->attrs, insert_events);
			break;
		case M_UNNEST_BIN_NOCONFLICT:
			batch_unnest_bin(c, rows + i, k, v->attrs, insert_events_noconflict);
			break;
		case M_UNNEST_TEXT:
			batch_unnest_text(c, &e, rows + i, k, v->attrs);
			break;
		case M_COPY_STAGING:
			batch_copy(c, &e, rows + i, k, v->attrs, false);
			break;
		case M_COPY_DIRECT:
			batch_copy(c, &e, rows + i, k, v->attrs, true);
			break;
		case M_DAEMON:
			batch_daemon(c, v, rows + i, k);
			break;
		case M_COPY_RAW:
			copy_raw(c, &e, rows + i, k);
			break;
		case M_COPY_PIPE:
			break;
		}
	}
	res.seconds = now_s() - t0;
	res.client_cpu = cpu_s() - c0;
	double s1 = proc_run_s(pid);
	/* the walwriter's and the backend's last flushes are done by now */
	double k1 = cluster_cpu_s(pm);
	res.server_cpu = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
	res.cluster_cpu = k0 >= 0 && k1 >= 0 ? k1 - k0 : -1;

	if (PQpipelineStatus(c) != PQ_PIPELINE_OFF)
		PQexitPipelineMode(c);
	res.wal_bytes = db_int8(c, "SELECT (pg_current_wal_lsn() - '0/0')::int8") - wal0;
	res.timed_rows = (long long)(n - warm);
	res.xacts = v->method == M_COPY_PIPE ? 1 : (long long)((n - warm + batch - 1) / batch);
	if (is_raw(v)) {
		res.rows_stored = db_int8(c, "SELECT count(*) FROM raw");
		res.table_bytes = db_int8(c, "SELECT pg_total_relation_size('raw')");
		snprintf(res.content, sizeof(res.content), "-");
	} else {
		res.rows_stored = db_int8(c, "SELECT count(*) FROM events");
		res.rows_default = db_int8(c, "SELECT count(*) FROM events_default");
		res.outbox_rows = db_int8(c, "SELECT count(*) FROM forward_outbox");
		res.table_bytes = db_int8(c, table_size_sql);
		PGresult *h = db_exec(c,
		    "SELECT sum(hashtextextended(e::text, 0))::text FROM events e", false);
		snprintf(res.content, sizeof(res.content), "%s", PQgetvalue(h, 0, 0));
		PQclear(h);
	}
	if (v->no_secondary)
		PQclear(db_exec(c, create_secondary, false));
	PQfinish(c);
	for (int k = 0; k < EV_COLS; k++)
		free(e.text[k].p);
	free(e.copy.p);
	return res;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_store [-v VARIANTS] [-f FIXTURES] [-s SEED] [-k] [-W] [-w N]"
	    " [-p RECORD_FACTOR:ATTRS_FACTOR]"
	    " CONNINFO [ROWS [BATCH]]\n"
	    "  VARIANTS: letters, default abcdef: a unnest_bin, b unnest_bin_noattrs,"
	    " c copy_staging, d unnest_text, e copy_staging_noattrs, f copy_direct,"
	    " g unnest_bin_noconflict; h..r, u..z the daemon's batch and changes of it;"
	    " s COPY raw per batch, t COPY pipe (see the top of bench_store.c)\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *vlist = "abcdef", *fixtures = FIXTURES_DIR;
	uint32_t seed = 1;
	bool keep = false, warmup = true;
	int opt;

	double rec_factor = 1, attrs_factor = 1;
	while ((opt = getopt(argc, argv, "v:f:s:kp:Ww:")) != -1) {
		switch (opt) {
		case 'w':
			warm_batches = (size_t)strtoul(optarg, NULL, 10);
			break;
		case 'W':
			warmup = false;
			break;
		case 'p':
			if (sscanf(optarg, "%lf:%lf", &rec_factor, &attrs_factor) != 2 ||
			    rec_factor < 1 || attrs_factor < 1 || rec_factor > 100 || attrs_factor > 100)
				usage();
			break;
		case 'v':
			vlist = optarg;
			break;
		case 'f':
			fixtures = optarg;
			break;
		case 's':
			seed = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'k':
			keep = true;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc || argc - optind > 3)
		usage();
	const char *conninfo = argv[optind];
	long nrows = optind + 1 < argc ? strtol(argv[optind + 1], NULL, 10) : 200000;
	long batch = optind + 2 < argc ? strtol(argv[optind + 2], NULL, 10) : 500;
	if (nrows <= 0 || batch <= 0)
		usage();
	const struct variant *run[32];
	size_t nrun = 0;
	for (const char *p = vlist; *p != '\0'; p++) {
		const struct variant *v = NULL;
		for (size_t k = 0; k < sizeof(variants) / sizeof(variants[0]); k++)
			if (variants[k].letter == *p)
				v = &variants[k];
		if (v == NULL || nrun == 32)
			usage();
		run[nrun++] = v;
	}

	/* Rows, decoded by the real routes and decoders. */
	struct sample samples[64];
	size_t ns;
	struct route routes[NROUTES];
	char err[128];
	if (load_samples(fixtures, samples, 64, &ns) != 0 || ns == 0) {
		fprintf(stderr, "bench_store: no samples in %s\n", fixtures);
		return 1;
	}
	for (size_t i = 0; i < NROUTES; i++) {
		memset(&routes[i], 0, sizeof(routes[i]));
		routes[i].name = (char *)routes_def[i].name;
		routes[i].community = (char *)"";
		routes[i].tz_offset_min = 480;
		routes[i].utc_is_local = true;
		if (route_compile(&routes[i].pattern, routes_def[i].pattern, err, sizeof(err)) != 0 ||
		    decoder_by_name(routes_def[i].decoder, &routes[i].decoder) != 0 ||
		    !event_class_by_name(routes_def[i].class, &routes[i].device_class)) {
			fprintf(stderr, "bench_store: route %s: %s\n", routes_def[i].name, err);
			return 1;
		}
	}

	create_schema(conninfo);
	/* Event times: today in the server's time zone, before now. */
	PGconn *c = db_connect(conninfo);
	int64_t now_us = db_int8(c, "SELECT (extract(epoch FROM now()) * 1000000)::int8");
	int64_t day_us = db_int8(c,
	    "SELECT (extract(epoch FROM current_date::timestamptz) * 1000000)::int8");
	char sv[16];
	snprintf(sv, sizeof(sv), "%d", PQserverVersion(c));
	PQfinish(c);
	int64_t span = (int64_t)nrows * 1000;	/* 1 ms apart */
	int64_t t1 = now_us - 1000000;
	if (t1 - span < day_us)
		span = t1 - day_us > 0 ? t1 - day_us : 0;
	if (t1 < day_us)
		t1 = day_us;

	struct gen_stats gs;
	double g0 = now_s();
	struct row *rows = make_rows((size_t)nrows, samples, ns, routes, seed, t1 - span, t1,
	    rec_factor, attrs_factor, &gs);
	printf("rows=%ld batch=%ld pad=%g:%g server_version=%s samples=%zu gen_seconds=%.1f"
	    " record_bytes_mean=%zu record_bytes_min=%zu record_bytes_max=%zu"
	    " attrs_bytes_mean=%zu attrs_bytes_min=%zu attrs_bytes_max=%zu"
	    " pack_us_row=%.2f attrs_json_us_row=%.2f\n",
	    nrows, batch, rec_factor, attrs_factor, sv, ns, now_s() - g0,
	    gs.record_bytes / (size_t)nrows, gs.record_min, gs.record_max,
	    gs.attrs_bytes / (size_t)nrows, gs.attrs_min, gs.attrs_max,
	    gs.pack_s * 1e6 / (double)nrows, gs.json_s * 1e6 / (double)nrows);
	fflush(stdout);

	double base_rate = -1;	/* variant a's rows/s */
	struct result res[32];
	bool ckpt = true;
	if (warmup) {
		/* Untimed: a fresh cluster creates its WAL segment files (zero-filled)
		 * as it first needs them, later runs recycle them; and caches warm
		 * up. Without this the first variant pays for both. */
		bool ok;
		struct result w = run_variant(conninfo, &variants[0], rows, (size_t)nrows,
		    batch > 500 ? (size_t)batch : 500, &ok);
		printf("warmup method=%s seconds=%.2f rows_per_s=%.0f (not counted)\n",
		    variants[0].name, w.seconds, (double)nrows / w.seconds);
		fflush(stdout);
	}
	for (size_t k = 0; k < nrun; k++) {
		bool ok;
		res[k] = run_variant(conninfo, run[k], rows, (size_t)nrows, (size_t)batch, &ok);
		ckpt = ckpt && ok;
		if (res[k].rows_stored != nrows) {
			fprintf(stderr, "bench_store: variant %c stored %lld rows of %ld\n",
			    run[k]->letter, res[k].rows_stored, nrows);
			return 1;
		}
		if (!is_raw(run[k]) && res[k].rows_default != 0)
			fprintf(stderr, "bench_store: warning: variant %c: %lld rows in"
			    " events_default, not in a daily partition\n", run[k]->letter,
			    res[k].rows_default);
		/* Every variant with the same attrs setting stores the same rows. */
		for (size_t j = 0; j < k; j++)
			if (run[j]->attrs == run[k]->attrs && !is_raw(run[j]) && !is_raw(run[k]) &&
			    strcmp(res[j].content, res[k].content) != 0) {
				fprintf(stderr, "bench_store: variants %c and %c stored different rows\n",
				    run[j]->letter, run[k]->letter);
				return 1;
			}
		if (run[k]->letter == 'a')
			base_rate = (double)res[k].timed_rows / res[k].seconds;
	}
	for (size_t k = 0; k < nrun; k++) {
		const struct result *r = &res[k];
		double tr = (double)r->timed_rows, rate = tr / r->seconds;
		char ratio[16], scpu[32], kcpu[32];
		if (base_rate > 0)
			snprintf(ratio, sizeof(ratio), "%.2f", rate / base_rate);
		else
			snprintf(ratio, sizeof(ratio), "-");
		if (r->server_cpu >= 0)
			snprintf(scpu, sizeof(scpu), "%.1f", r->server_cpu * 1e6 / tr);
		else
			snprintf(scpu, sizeof(scpu), "-");
		if (r->cluster_cpu >= 0)
			snprintf(kcpu, sizeof(kcpu), "%.1f", r->cluster_cpu * 1e6 / tr);
		else
			snprintf(kcpu, sizeof(kcpu), "-");
		printf("variant=%c method=%s attrs=%s batch=%ld rows=%lld xacts=%lld seconds=%.2f"
		    " rows_per_s=%.0f ratio=%s client_cpu_us_row=%.1f server_cpu_us_row=%s"
		    " cluster_cpu_us_row=%s wal_bytes_row=%lld table_bytes_row=%lld"
		    " outbox_rows=%lld\n", run[k]->letter, run[k]->name,
		    run[k]->attrs ? "on" : "off", batch, r->timed_rows, r->xacts, r->seconds, rate,
		    ratio, r->client_cpu * 1e6 / tr, scpu, kcpu, r->wal_bytes / nrows,
		    r->table_bytes / nrows, r->outbox_rows);
	}
	if (!ckpt)
		printf("note: CHECKPOINT not permitted for this role (grant pg_checkpoint);"
		    " variants ran without one before them\n");
	if (!keep)
		drop_schema(conninfo);

	for (long i = 0; i < nrows; i++) {
		free(rows[i].record);
		free(rows[i].attrs);
	}
	free(rows);
	for (size_t i = 0; i < ns; i++) {
		free(samples[i].payload);
		free(samples[i].device_class);
		free(samples[i].event_type);
		free(samples[i].severity);
		free(samples[i].vendor);
		free(samples[i].route);
		free(samples[i].source_topic);
		free(samples[i].plate);
		for (int k = 0; k < 8; k++)
			free(samples[i].devices[k]);
	}
	for (size_t i = 0; i < NROUTES; i++)
		route_pattern_free(&routes[i].pattern);
	return 0;
}
