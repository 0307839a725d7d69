/* gridbridgectl — operator commands for a gridbridge installation.
 *
 *   gridbridgectl [-c FILE | -d DIR] journal stat
 *   gridbridgectl [-c FILE | -d DIR] journal dump [--from SEQ]
 *   gridbridgectl [-c FILE] [-d DIR] decode [--from SEQ]
 *   gridbridgectl [-c FILE] outbox stat
 *   gridbridgectl [-c FILE] outbox retry [--target NAME]
 *   gridbridgectl [-c FILE] outbox show EVENT_ID
 *   gridbridgectl [-c FILE] devices [--state S] [--class C] [--community ID]
 *                                   [--offline-since WHEN] [--json]
 *   gridbridgectl [-c FILE] reports [--community ID] [--since WHEN]
 *                                   [--until TIME] [--json]
 *   gridbridgectl [-c FILE] tail [--class C] [--device ID] [--community ID]
 *                                [--severity S] [--type T] [--since WHEN]
 *                                [--show-personal-data] [--json]
 *   gridbridgectl decode --proto [FILE|-]
 *
 * Safe while gridbridged runs: only `outbox retry` writes (it re-queues
 * failed outbox rows, which the daemon then sends). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "decode.h"
#include "event_json.h"
#include "event_names.h"
#include "gridbridgectl_status.h"
#include "journal.h"
#include "log.h"
#include "routing.h"
#include "secret.h"
#include "store_ctl.h"
#include "util.h"
#include "version.h"

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: gridbridgectl [-c FILE | -d DIR] journal stat\n"
	    "       gridbridgectl [-c FILE | -d DIR] journal dump [--from SEQ]\n"
	    "       gridbridgectl [-c FILE] [-d DIR] decode [--from SEQ]\n"
	    "       gridbridgectl [-c FILE] outbox stat\n"
	    "       gridbridgectl [-c FILE] outbox retry [--target NAME]\n"
	    "       gridbridgectl [-c FILE] outbox show EVENT_ID\n"
	    "       gridbridgectl [-c FILE] devices [--state STATE] [--class CLASS]\n"
	    "                     [--community ID] [--offline-since DURATION|TIME] [--json]\n"
	    "       gridbridgectl [-c FILE] reports [--community ID] [--since TIME|DURATION]\n"
	    "                     [--until TIME] [--json]\n"
	    "       gridbridgectl [-c FILE] tail [--class CLASS] [--device ID] [--community ID]\n"
	    "                     [--severity SEVERITY] [--type TYPE] [--since DURATION|TIME]\n"
	    "                     [--show-personal-data] [--json]\n"
	    "       gridbridgectl decode --proto [FILE|-]\n"
	    "       gridbridgectl [-c FILE] status [ADDRESS:PORT]\n"
	    "       gridbridgectl COMMAND --help | --version | -h\n"
	    "\n"
	    "  -c, --config FILE  configuration file (default %s);\n"
	    "                     the journal is <state_dir>/journal\n"
	    "  -d, --dir DIR      journal directory, instead of the configuration\n"
	    "\n"
	    "  journal stat       segments, bytes, records, first/last/checkpoint seq\n"
	    "  journal dump       every record as one JSON object per line\n"
	    "  decode             every journal record decoded with the configured routes:\n"
	    "                     the Event as JSON, or its rejection reason; counts per\n"
	    "                     route and reason on stderr\n"
	    "  outbox stat        forwarding outbox rows per target and priority: pending,\n"
	    "                     sent, failed, age of the oldest pending (database of [store])\n"
	    "  outbox retry       re-queue failed rows (of one target with --target)\n"
	    "  outbox show ID     the outbox rows of one event\n"
	    "  devices            devices and their state, the online rate per community\n"
	    "                     and class\n"
	    "  reports            resident reports per community: handled on time, late,\n"
	    "                     open\n"
	    "  tail               the events as they are stored, personal data masked\n"
	    "  decode --proto     an EventBatch or Event as forwarded (protobuf), as JSON\n"
	    "  status             the running daemon's health, backlog, pending forwards and\n"
	    "                     online rate, from its admin listener\n",
	    GRIDBRIDGE_DEFAULT_CONFIG);
}

static void
usage_status(FILE *out)
{
	fprintf(out,
	    "usage: gridbridgectl [-c FILE] status [ADDRESS:PORT]\n"
	    "\n"
	    "Asks the running gridbridged, at [admin] listen of the configuration (or at\n"
	    "ADDRESS:PORT), for /readyz and /metrics and prints a summary: ready or why\n"
	    "not, broker and database, the backlog not stored yet with the catch-up rate\n"
	    "and time to go (measured over a second when there is a backlog), messages\n"
	    "since the start, events pending per forward target and the oldest one's\n"
	    "age, devices online.\n"
	    "\n"
	    "Exit status 0 healthy (ready), 1 degraded (running, not ready), 2 not\n"
	    "reachable (not running, no listener, not gridbridged) or a usage error;\n"
	    "errors are one line on stderr.\n");
}

static struct config *load_config(const char *path);

/* status [ADDRESS:PORT]: the admin listener of `config` (or the one given). */
static int
cmd_status(const char *config, const char *listen)
{
	char addr[160];

	if (listen == NULL) {
		struct config *cfg = load_config(config);
		if (cfg == NULL)
			return CTL_STATUS_UNREACHABLE;
		snprintf(addr, sizeof(addr), "%s", cfg->admin_listen);
		config_free(cfg);
		if (strcmp(addr, "none") == 0) {
			fprintf(stderr, "gridbridgectl: no admin listener: [admin] listen = none in "
			    "%s\n", config);
			return CTL_STATUS_UNREACHABLE;
		}
		listen = addr;
	}
	if (strlen(listen) > 128 || strpbrk(listen, "/?#@ ") != NULL ||
	    strchr(listen, ':') == NULL) {
		fprintf(stderr, "gridbridgectl: status: not ADDRESS:PORT: %s\n", listen);
		return 2;
	}
	return ctl_status(listen, 1000, stdout);
}

/* The largest input decode --proto reads. */
#define DECODE_PROTO_MAX_MIB 64
#define DECODE_PROTO_MAX ((size_t)DECODE_PROTO_MAX_MIB << 20)

static void
usage_tail(FILE *out)
{
	fprintf(out,
	    "usage: gridbridgectl [-c FILE] tail [--class CLASS] [--device ID] [--community ID]\n"
	    "           [--severity SEVERITY] [--type TYPE] [--since DURATION|TIME]\n"
	    "           [--show-personal-data] [--json]\n"
	    "\n"
	    "Follows the events gridbridged stores in the database of [store], one line\n"
	    "each as its batch commits, until interrupted (SIGINT, SIGTERM). Woken by\n"
	    "the batches' notifications (LISTEN %s): no query while\n"
	    "nothing is stored.\n"
	    "\n"
	    "  --class CLASS          only this device class (access_gate, camera, ...)\n"
	    "  --device ID            only this device\n"
	    "  --community ID         only this community\n"
	    "  --severity SEVERITY    only this severity (info, notice, warning, critical)\n"
	    "  --type TYPE            only this event type (person_passage, ...)\n"
	    "  --since WHEN           first the events received since WHEN: a duration\n"
	    "                         before now (90s, 30m, 2h, 7d) or an ISO 8601 time\n"
	    "  --show-personal-data   plates, card and person numbers and households as\n"
	    "                         they are, names and picture URLs too (masked or\n"
	    "                         left out by default)\n"
	    "  --json                 the Event in the proto3 JSON mapping, one per line\n"
	    "\n"
	    "Names are those of the events table (lower case, as in the configuration).\n"
	    "Exit status 0 when interrupted, 1 when the database cannot be reached or goes\n"
	    "away, 2 on a usage error. Output and masking: gridbridgectl(8).\n",
	    STORE_NOTIFY_CHANNEL);
}

static void
usage_decode(FILE *out)
{
	fprintf(out,
	    "usage: gridbridgectl [-c FILE] [-d DIR] decode [--from SEQ]\n"
	    "       gridbridgectl decode --proto [FILE|-]\n"
	    "\n"
	    "Without --proto: every journal record (from SEQ on) decoded with the\n"
	    "configured routes, one JSON object per line: the Event, or the reason the\n"
	    "record would be quarantined; counts per route and reason on stderr.\n"
	    "\n"
	    "With --proto: FILE (or standard input, also as -), at most %d MiB, holds a\n"
	    "gridbridge.v1.EventBatch as gridbridge forwards it, or a single Event;\n"
	    "each Event is printed in the proto3 JSON mapping, one per line, as it is.\n"
	    "It is a batch when it parses as one with events, each with a 16-byte id;\n"
	    "else an Event with a 16-byte id; empty input is a batch of none; anything\n"
	    "else is an error.\n"
	    "\n"
	    "Exit status 0, 1 when the input cannot be read or is neither, 2 on a usage\n"
	    "error.\n", DECODE_PROTO_MAX_MIB);
}

static void
usage_devices(FILE *out)
{
	fprintf(out,
	    "usage: gridbridgectl [-c FILE] devices [--state online|offline|unknown]\n"
	    "           [--class CLASS] [--community ID] [--offline-since DURATION|TIME]\n"
	    "           [--json]\n"
	    "\n"
	    "The devices gridbridged has heard from or that the configuration declares\n"
	    "(expected), by community, class and device; then per community and class\n"
	    "the online rate: online / total, where the total counts every device of it\n"
	    "(unknown ones, declared but never heard from, are not online).\n"
	    "\n"
	    "  --state STATE          only devices in this state\n"
	    "  --class CLASS          only this device class (the rates too)\n"
	    "  --community ID         only this community (the rates too)\n"
	    "  --offline-since WHEN   only devices offline since WHEN or earlier: a\n"
	    "                         duration before now (90s, 30m, 2h, 7d) or an ISO\n"
	    "                         8601 time (2026-11-28T06:00:00Z, 2026-11-28; UTC\n"
	    "                         without an offset)\n"
	    "  --json                 one JSON object per line: \"type\":\"device\", then\n"
	    "                         \"type\":\"online_rate\"\n"
	    "\n"
	    "Times are UTC. Exit status 0, 1 when the database cannot be read, 2 on a\n"
	    "usage error. Columns and fields: gridbridgectl(8).\n");
}

static void
usage_reports(FILE *out)
{
	fprintf(out,
	    "usage: gridbridgectl [-c FILE] reports [--community ID] [--since TIME|DURATION]\n"
	    "           [--until TIME] [--json]\n"
	    "\n"
	    "Resident reports opened in the period, per community and in total: opened,\n"
	    "handled on time (handled, or closed when never handled, by the deadline),\n"
	    "late, open and overdue, open within the deadline, without a deadline, and\n"
	    "on_time_percent = on time / (on time + late + open overdue).\n"
	    "\n"
	    "  --community ID         only this community\n"
	    "  --since WHEN           reports opened at WHEN or later: an ISO 8601 time\n"
	    "                         (2026-11-01T00:00:00Z, 2026-11-01; UTC without an\n"
	    "                         offset) or a duration before now (12h, 7d); default\n"
	    "                         %dd\n"
	    "  --until TIME           reports opened before TIME (default: no end)\n"
	    "  --json                 one JSON object per line: \"type\":\"community\", then\n"
	    "                         \"type\":\"total\"\n"
	    "\n"
	    "Times are UTC; \"overdue\" is as of the database's now. Exit status 0, 1 when\n"
	    "the database cannot be read, 2 on a usage error. Columns and fields:\n"
	    "gridbridgectl(8).\n", STORE_CTL_REPORTS_DAYS);
}

/* A string field when the bytes are UTF-8, else NAME_base64. */
static void
set_bytes(json_t *obj, const char *name, const void *p, size_t n)
{
	json_t *s = json_stringn(p, n);
	if (s != NULL) {
		json_object_set_new(obj, name, s);
		return;
	}
	char key[64];
	char *b = base64_encode(p, n);
	snprintf(key, sizeof(key), "%s_base64", name);
	json_object_set_new(obj, key, json_string(b != NULL ? b : ""));
	free(b);
}

static void
iso_time(int64_t us, char *buf, size_t len)
{
	time_t sec = (time_t)(us / 1000000);
	long frac = (long)(us % 1000000);
	struct tm tm;

	if (frac < 0) {
		frac += 1000000;
		sec--;
	}
	gmtime_r(&sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06ldZ", frac);
}

/* disk_cap is 0 when unknown (-d without a configuration). */
static int
cmd_stat(const char *dir, unsigned long long disk_cap)
{
	struct journal_stat st;
	uint64_t records, damaged;

	if (journal_dir_stat(dir, &st, &records, &damaged) != 0)
		return 1;
	char id[JOURNAL_ID_LEN + 1];
	printf("dir %s\n", dir);
	printf("journal_id %s\n", journal_read_id(dir, id) == 0 ? id : "-");
	printf("segments %u\n", st.segments);
	printf("bytes %" PRIu64 "\n", st.bytes);
	printf("records %" PRIu64 "\n", records);
	printf("first_seq %" PRIu64 "\n", st.first_seq);
	printf("last_seq %" PRIu64 "\n", st.last_seq);
	printf("checkpoint_seq %" PRIu64 "\n", st.checkpoint_seq);
	printf("damaged %" PRIu64 "\n", damaged);
	if (disk_cap > 0) {
		printf("disk_cap %llu\n", disk_cap);
		printf("full %d\n", st.bytes >= disk_cap);
	}
	return damaged ? 1 : 0;
}

static int
cmd_dump(const char *dir, uint64_t from)
{
	struct journal_reader *r = journal_reader_open(dir, from);
	struct journal_record rec;
	int rc, status = 0;
	char when[64];

	if (r == NULL)
		return 1;
	while ((rc = journal_reader_next(r, &rec)) != 0) {
		if (rc < 0) {
			status = 1;
			continue;
		}
		json_t *o = json_object();
		json_object_set_new(o, "seq", json_integer((json_int_t)rec.seq));
		json_object_set_new(o, "received_time_us", json_integer(rec.received_us));
		iso_time(rec.received_us, when, sizeof(when));
		json_object_set_new(o, "received_at", json_string(when));
		json_object_set_new(o, "qos", json_integer(rec.qos));
		json_object_set_new(o, "mid", json_integer(rec.mid));
		set_bytes(o, "topic", rec.topic, rec.topic_len);
		json_object_set_new(o, "payload_len", json_integer(rec.payload_len));
		bool oversize = (rec.flags & JOURNAL_OVERSIZE) != 0;
		json_object_set_new(o, "oversize", json_boolean(oversize));
		json_object_set_new(o, "retained", json_boolean((rec.flags & JOURNAL_RETAIN) != 0));
		if (!oversize)
			set_bytes(o, "payload", rec.payload, rec.payload_len);
		char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (line != NULL) {
			fputs(line, stdout);
			fputc('\n', stdout);
			free(line);
		}
		json_decref(o);
	}
	journal_reader_free(r);
	if (fflush(stdout) != 0)
		status = 1;
	return status;
}

static void
print_count(const char *route, const char *reason, uint64_t n, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "route=%s %s=%llu\n", route[0] ? route : "(none)",
	    reason != NULL ? reason : "decoded", (unsigned long long)n);
}

static int
cmd_decode(const struct config *cfg, const char *dir, uint64_t from)
{
	struct route *routes;
	size_t nroutes;
	struct decode_out out;
	struct journal_record rec;
	int rc, status = 0;

	if (routes_build(cfg, &routes, &nroutes) != 0)
		return 1;
	struct journal_reader *r = journal_reader_open(dir, from);
	struct decode_stats *stats = decode_stats_new();
	if (r == NULL || stats == NULL) {
		journal_reader_free(r);
		decode_stats_free(stats);
		routes_free(routes, nroutes);
		return 1;
	}
	decode_out_init(&out);
	while ((rc = journal_reader_next(r, &rec)) != 0) {
		if (rc < 0) {
			status = 1;
			continue;
		}
		struct route_match m;
		const struct route *rt = decode_find_route(routes, nroutes, rec.topic,
		    rec.topic_len, &m);
		json_t *j;
		if (rt == NULL) {
			decode_stats_count(stats, NULL, "no_route");
			j = json_pack("{s:I,s:s%,s:s}", "journalSeq", (json_int_t)rec.seq,
			    "sourceTopic", rec.topic, rec.topic_len, "rejected", "no_route");
		} else {
			struct decode_in in = {
				.route = rt, .match = &m, .topic = rec.topic,
				.topic_len = rec.topic_len, .payload = rec.payload,
				.payload_len = rec.payload_len,
				.oversize = (rec.flags & JOURNAL_OVERSIZE) != 0,
				.received_us = rec.received_us, .journal_seq = rec.seq,
				.max_skew_us = cfg->decode_max_clock_skew * 1000000LL,
			};
			if (decode_record(&in, &out) == 0) {
				decode_stats_count(stats, rt->name, NULL);
				j = event_json(&out.ev.base);
			} else {
				decode_stats_count(stats, rt->name, out.reason);
				j = json_pack("{s:I,s:s%,s:s,s:s}", "journalSeq", (json_int_t)rec.seq,
				    "sourceTopic", rec.topic, rec.topic_len, "route", rt->name,
				    "rejected", out.reason);
			}
		}
		char *line = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (line != NULL) {
			puts(line);
			free(line);
		}
		json_decref(j);
	}
	decode_stats_foreach(stats, print_count, NULL);
	decode_out_free(&out);
	decode_stats_free(stats);
	journal_reader_free(r);
	routes_free(routes, nroutes);
	if (fflush(stdout) != 0)
		status = 1;
	return status;
}

/* ---- decode --proto ---- */

/* All of `f` into `*buf` (`*len` bytes): 0, or -1 after one line on
 * stderr (`name` says what it is). */
static int
read_all(FILE *f, const char *name, uint8_t **buf, size_t *len)
{
	size_t cap = 65536, n = 0;
	uint8_t *b = malloc(cap);

	if (b == NULL) {
		fprintf(stderr, "gridbridgectl: out of memory\n");
		return -1;
	}
	for (;;) {
		if (n == cap) {
			if (cap > DECODE_PROTO_MAX) {
				fprintf(stderr, "gridbridgectl: %s: larger than %d MiB\n", name,
				    DECODE_PROTO_MAX_MIB);
				free(b);
				return -1;
			}
			uint8_t *nb = realloc(b, cap * 2);
			if (nb == NULL) {
				fprintf(stderr, "gridbridgectl: out of memory\n");
				free(b);
				return -1;
			}
			b = nb;
			cap *= 2;
		}
		size_t got = fread(b + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "gridbridgectl: %s: %s\n", name, strerror(errno));
		free(b);
		return -1;
	}
	if (n > DECODE_PROTO_MAX) {
		fprintf(stderr, "gridbridgectl: %s: larger than %d MiB\n", name,
		    DECODE_PROTO_MAX_MIB);
		free(b);
		return -1;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* Whether every string in `m` and its messages is UTF-8, as proto3 wants
 * (protobuf-c does not check; the JSON would leave such a field out). */
static bool
strings_valid(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		size_t n = 1;
		const void *const *v = (const void *const *)(base + f->offset);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			v = *(const void *const *const *)(base + f->offset);
		}
		for (size_t k = 0; k < n; k++) {
			if (v[k] == NULL)
				continue;
			if (f->type == PROTOBUF_C_TYPE_STRING ?
			    !util_utf8_valid(v[k], strlen(v[k])) : !strings_valid(v[k]))
				return false;
		}
	}
	return true;
}

/* Each event as a JSON line: 0, or 1 after one line on stderr. */
static int
print_events(Gridbridge__V1__Event *const *ev, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (!strings_valid(&ev[i]->base)) {
			fprintf(stderr, "gridbridgectl: %s: event %zu has a string that is not "
			    "UTF-8\n", name, i + 1);
			return 1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		char *line = event_json_text(&ev[i]->base);
		if (line == NULL) {
			fprintf(stderr, "gridbridgectl: out of memory\n");
			return 1;
		}
		puts(line);
		free(line);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "gridbridgectl: cannot write the output\n");
		return 1;
	}
	return 0;
}

/* decode --proto: `path` NULL or "-" for standard input. The input is an
 * EventBatch when it parses as one with at least one event and every
 * event has a 16-byte id; else an Event when it parses as one with a
 * 16-byte id; else, empty, a batch of no events. An Event never parses as
 * such a batch (its field 1 is a 16-byte id, too short to hold an event
 * with one), and a batch never as such an Event (its field 1 elements are
 * whole events, the last of which an Event would take for its id): the
 * readings cannot both succeed. Fields neither message knows are skipped,
 * as proto3 wants. */
static int
cmd_decode_proto(const char *path)
{
	bool in = path == NULL || strcmp(path, "-") == 0;
	const char *name = in ? "standard input" : path;
	FILE *f = in ? stdin : fopen(path, "rb");
	uint8_t *buf;
	size_t len;
	int rc = 1;

	if (f == NULL) {
		fprintf(stderr, "gridbridgectl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	int got = read_all(f, name, &buf, &len);
	if (!in)
		fclose(f);
	if (got != 0)
		return 1;
	Gridbridge__V1__EventBatch *b = gridbridge__v1__event_batch__unpack(NULL, len, buf);
	bool batch = b != NULL && (b->n_events > 0 || len == 0);
	for (size_t i = 0; batch && i < b->n_events; i++)
		batch = b->events[i]->id.len == 16;
	if (batch) {
		rc = print_events(b->events, b->n_events, name);
	} else {
		Gridbridge__V1__Event *ev = gridbridge__v1__event__unpack(NULL, len, buf);
		if (ev != NULL && ev->id.len == 16)
			rc = print_events(&ev, 1, name);
		else
			fprintf(stderr, "gridbridgectl: %s: neither a gridbridge.v1.EventBatch nor "
			    "an Event (%zu bytes; every event has a 16-byte id)\n", name, len);
		if (ev != NULL)
			gridbridge__v1__event__free_unpacked(ev, NULL);
	}
	if (b != NULL)
		gridbridge__v1__event_batch__free_unpacked(b, NULL);
	free(buf);
	return rc;
}

/* The configuration, or NULL after printing its errors. */
static struct config *
load_config(const char *path)
{
	struct config_errors errs = { 0 };

	routing_register_checks();
	struct config *cfg = config_load(path, &errs);
	if (cfg == NULL) {
		config_errors_print(&errs, stderr);
		config_errors_clear(&errs);
	}
	return cfg;
}

/* The configuration's [store] as the store's options, the password and
 * key file read. */
struct ctl_store {
	struct config *cfg;
	char *password;
	char sslkey[4096];
	struct store_options so;
};

/* 0, or -1 after printing why. */
static int
ctl_store_open(struct ctl_store *s, const char *config)
{
	memset(s, 0, sizeof(*s));
	log_set_ratelimit(0, 0);
	s->cfg = load_config(config);
	if (s->cfg == NULL)
		return -1;
	const struct config *cfg = s->cfg;
	s->password = secret_load(cfg->store_password, cfg->store_password_file, "store");
	if (s->password == NULL) {
		config_free(s->cfg);
		return -1;
	}
	const char *key = secret_key_file(cfg->store_sslkey, s->sslkey, sizeof(s->sslkey),
	    "store");
	if (key == NULL) {
		secret_free(s->password);
		config_free(s->cfg);
		return -1;
	}
	s->so = (struct store_options){
		.host = cfg->store_host,
		.port = (int)cfg->store_port,
		.dbname = cfg->store_dbname,
		.user = cfg->store_user,
		.password = s->password,
		.connect_timeout = (int)cfg->store_connect_timeout,
		.sslmode = config_enum_name("store", "sslmode", cfg->store_sslmode),
		.sslrootcert = cfg->store_sslrootcert,
		.sslcert = cfg->store_sslcert,
		.sslkey = key,
	};
	return 0;
}

static void
ctl_store_close(struct ctl_store *s)
{
	secret_free(s->password);
	config_free(s->cfg);
}

/* outbox stat | retry | show ID: `words` after "outbox". */
static int
cmd_outbox(const char *config, const char *const *words, int n, const char *target)
{
	bool ok = (n == 1 && (strcmp(words[0], "stat") == 0 || strcmp(words[0], "retry") == 0)) ||
	    (n == 2 && strcmp(words[0], "show") == 0);
	if (!ok || (target != NULL && strcmp(words[0], "retry") != 0)) {
		usage(stderr);
		return 2;
	}
	struct ctl_store st;
	if (ctl_store_open(&st, config) != 0)
		return 1;
	int rc = store_ctl_outbox(&st.so, words[0], n == 2 ? words[1] : target, stdout, stderr);
	ctl_store_close(&st);
	return rc;
}

/* ---- tail ---- */

struct tail_out {
	bool json;
	bool personal;		/* --show-personal-data */
};

/* A value of a body's field in a text line: a string as it is when it is
 * one word without quotes, '=' or '\', else as a JSON string (control
 * characters escaped); an Int32Value as its number; anything else as
 * compact JSON. */
static void
put_value(FILE *f, json_t *v)
{
	if (json_is_object(v) && json_object_size(v) <= 1 &&
	    (json_object_size(v) == 0 || json_object_get(v, "value") != NULL)) {
		json_t *n = json_object_get(v, "value");
		fprintf(f, "%" JSON_INTEGER_FORMAT, n != NULL ? json_integer_value(n) : 0);
		return;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		bool plain = s[0] != '\0';
		for (const unsigned char *p = (const unsigned char *)s; plain && *p; p++)
			plain = *p > 0x20 && *p != 0x7f && *p != '"' && *p != '=' && *p != '\\';
		if (plain) {
			fputs(s, f);
			return;
		}
	}
	char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
	fputs(t != NULL ? t : "?", f);
	free(t);
}

/* A string of the envelope as put_value() writes it ("" when empty). */
static void
put_string(FILE *f, const char *s)
{
	json_t *v = json_string(s != NULL ? s : "");

	if (v != NULL)
		put_value(f, v);
	else
		fputc('?', f);	/* not UTF-8: cannot be, the store checked */
	json_decref(v);
}

/* An event as a line for people: receive time, community, device, class,
 * type, severity (the names of the events table), then the body's fields
 * as name=value, from `j`, its (masked) JSON. */
static void
put_text(FILE *f, const Gridbridge__V1__Event *ev, json_t *j)
{
	char when[64];
	const char *key;
	json_t *v;

	iso_time(ev->received_time_us, when, sizeof(when));
	when[23] = 'Z';		/* to the millisecond */
	when[24] = '\0';
	fprintf(f, "%s ", when);
	put_string(f, ev->community_id);
	fputc(' ', f);
	put_string(f, ev->device_id);
	fprintf(f, " %s %s %s", event_class_name(ev->device_class),
	    event_type_name(ev->event_type), event_severity_name(ev->severity));
	json_object_foreach(j, key, v) {
		if (!json_is_object(v))
			continue;	/* the envelope: above */
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) {
			fprintf(f, " %s=", k);
			put_value(f, x);
		}
	}
	fputc('\n', f);
}

/* One event from the database: 0, or -1 when the output fails. */
static int
tail_event(void *ctx, const char *id, const uint8_t *record, size_t len)
{
	const struct tail_out *o = ctx;
	Gridbridge__V1__Event *ev = gridbridge__v1__event__unpack(NULL, len, record);

	if (ev == NULL) {
		fprintf(stderr, "gridbridgectl: event %s: its record does not parse, skipped\n", id);
		return 0;
	}
	json_t *j = event_json(&ev->base);
	if (!o->personal)
		event_json_mask(j);
	if (o->json) {
		char *line = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		if (line != NULL)
			puts(line);
		free(line);
	} else if (j != NULL) {
		put_text(stdout, ev, j);
	}
	json_decref(j);
	gridbridge__v1__event__free_unpacked(ev, NULL);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "gridbridgectl: cannot write the output\n");
		return -1;
	}
	return 0;
}

/* The enums the tail's filters name: device class, event type, severity. */
enum tail_enum {
	TAIL_CLASS,
	TAIL_TYPE,
	TAIL_SEVERITY,
};

/* A value's name as the events table has it (event_names.h). */
static const char *
tail_enum_name(enum tail_enum e, int v)
{
	switch (e) {
	case TAIL_CLASS: return event_class_name((Gridbridge__V1__DeviceClass)v);
	case TAIL_TYPE: return event_type_name((Gridbridge__V1__EventType)v);
	case TAIL_SEVERITY: return event_severity_name((Gridbridge__V1__Severity)v);
	}
	return "";
}

/* Whether --`opt`'s `name` is one of enum `e`'s; if not, says which there
 * are, in one line. */
static bool
tail_known(const char *opt, const char *name, enum tail_enum e)
{
	static const ProtobufCEnumDescriptor *const d[] = {
		&gridbridge__v1__device_class__descriptor,
		&gridbridge__v1__event_type__descriptor,
		&gridbridge__v1__severity__descriptor,
	};
	Gridbridge__V1__DeviceClass c;
	Gridbridge__V1__EventType t;
	Gridbridge__V1__Severity s;

	if (name == NULL || (e == TAIL_CLASS && event_class_by_name(name, &c)) ||
	    (e == TAIL_TYPE && event_type_by_name(name, &t)) ||
	    (e == TAIL_SEVERITY && event_severity_by_name(name, &s)))
		return true;
	fprintf(stderr, "gridbridgectl: --%s is one of", opt);
	for (unsigned i = 0, n = 0; i < d[e]->n_values; i++)
		if (d[e]->values[i].value != 0)
			fprintf(stderr, "%s %s", n++ > 0 ? "," : "",
			    tail_enum_name(e, d[e]->values[i].value));
	fputc('\n', stderr);
	return false;
}

static int
cmd_tail(const char *config, struct store_ctl_tail *q, const struct tail_out *o)
{
	sigset_t set;

	if (!tail_known("class", q->device_class, TAIL_CLASS) ||
	    !tail_known("type", q->event_type, TAIL_TYPE) ||
	    !tail_known("severity", q->severity, TAIL_SEVERITY))
		return 2;
	/* SIGINT and SIGTERM are read from a descriptor the wait watches:
	 * the tool stops between two events, never in the middle of a line. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
	    (q->stop_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		fprintf(stderr, "gridbridgectl: signalfd: %s\n", strerror(errno));
		return 1;
	}
	struct ctl_store st;
	int rc = 1;
	if (ctl_store_open(&st, config) == 0) {
		rc = store_ctl_tail(&st.so, q, tail_event, (void *)o, stderr);
		ctl_store_close(&st);
	}
	close(q->stop_fd);
	return rc;
}

/* --from's value: a sequence number, nothing else. */
static int
parse_seq(const char *arg, uint64_t *seq)
{
	char *end;

	if (arg[0] == '\0' || arg[0] == '-')
		return -1;
	*seq = strtoull(arg, &end, 10);
	return *end == '\0' ? 0 : -1;
}

/* The longest duration taken: a century (of 365-day years). */
#define MAX_AGO_S (36500LL * 86400)

/* A duration: a whole number and s, m, h or d (a day is 24 hours). */
static int
parse_duration(const char *arg, int64_t *s)
{
	char *end;
	int64_t unit;

	if (!isdigit((unsigned char)arg[0]))
		return -1;
	errno = 0;
	unsigned long long n = strtoull(arg, &end, 10);
	if (errno != 0 || end[0] == '\0' || end[1] != '\0')
		return -1;
	switch (end[0]) {
	case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	default: return -1;
	}
	if (n > (unsigned long long)(MAX_AGO_S / unit))
		return -1;
	*s = (int64_t)n * unit;
	return 0;
}

/* An ISO 8601 time, 2026-11-28T06:00:00[.frac][Z|+hh:mm], or a date
 * alone (its midnight); without an offset UTC, the zone of the output. */
static int
parse_time(const char *arg, int64_t *us)
{
	char date[sizeof("2026-11-28T00:00:00Z")];

	if (strlen(arg) == 10) {
		snprintf(date, sizeof(date), "%sT00:00:00Z", arg);
		arg = date;
	}
	return decode_time_iso8601(arg, 0, us);
}

/* --NAME's value: a time, or also a duration before now when `ago`. */
static int
parse_when(const char *name, const char *arg, bool ago, struct store_ctl_when *w)
{
	if (ago && parse_duration(arg, &w->ago_s) == 0) {
		w->kind = STORE_CTL_WHEN_AGO;
		return 0;
	}
	if (parse_time(arg, &w->at_us) == 0) {
		w->kind = STORE_CTL_WHEN_AT;
		return 0;
	}
	fprintf(stderr, "gridbridgectl: --%s needs %s\n", name, ago ?
	    "a duration (90s, 30m, 2h, 7d) or an ISO 8601 time (2026-11-28T06:00:00Z)" :
	    "an ISO 8601 time (2026-11-28T06:00:00Z)");
	return -1;
}

/* The options given, to refuse those a command does not take. */
enum {
	SEEN_DIR = 1 << 0,
	SEEN_FROM = 1 << 1,
	SEEN_TARGET = 1 << 2,
	SEEN_STATE = 1 << 3,
	SEEN_CLASS = 1 << 4,
	SEEN_COMMUNITY = 1 << 5,
	SEEN_OFFLINE_SINCE = 1 << 6,
	SEEN_JSON = 1 << 7,
	SEEN_SINCE = 1 << 8,
	SEEN_UNTIL = 1 << 9,
	SEEN_DEVICE = 1 << 10,
	SEEN_SEVERITY = 1 << 11,
	SEEN_TYPE = 1 << 12,
	SEEN_PERSONAL = 1 << 13,
	SEEN_PROTO = 1 << 14,
};
#define DEVICES_OPTS (SEEN_STATE | SEEN_CLASS | SEEN_COMMUNITY | SEEN_OFFLINE_SINCE | SEEN_JSON)
#define REPORTS_OPTS (SEEN_COMMUNITY | SEEN_SINCE | SEEN_UNTIL | SEEN_JSON)
#define TAIL_OPTS (SEEN_CLASS | SEEN_DEVICE | SEEN_COMMUNITY | SEEN_SEVERITY | SEEN_TYPE | \
	SEEN_SINCE | SEEN_PERSONAL | SEEN_JSON)

/* The options of devices, reports and tail. */
struct derived_opts {
	unsigned seen;
	struct store_ctl_devices dev;
	struct store_ctl_reports rep;
	struct store_ctl_tail tail;
	struct tail_out out;
};

/* devices | reports, `words` from the command on. */
static int
cmd_derived(const char *config, const char *const *words, int n, const struct derived_opts *o)
{
	bool devices = strcmp(words[0], "devices") == 0;
	void (*help)(FILE *) = devices ? usage_devices : usage_reports;
	unsigned takes = devices ? DEVICES_OPTS : REPORTS_OPTS;

	if (n != 1 || (o->seen & ~takes) != 0) {
		help(stderr);
		return 2;
	}
	if (devices && o->dev.offline_since.kind != STORE_CTL_WHEN_NONE &&
	    o->dev.state != NULL && strcmp(o->dev.state, "offline") != 0) {
		fprintf(stderr, "gridbridgectl: --offline-since lists offline devices, not %s ones\n",
		    o->dev.state);
		return 2;
	}
	if (!devices && o->rep.since.kind == STORE_CTL_WHEN_AT &&
	    o->rep.until.kind == STORE_CTL_WHEN_AT && o->rep.since.at_us >= o->rep.until.at_us) {
		fprintf(stderr, "gridbridgectl: --since must be before --until\n");
		return 2;
	}
	struct ctl_store st;
	if (ctl_store_open(&st, config) != 0)
		return 1;
	int rc = devices ? store_ctl_devices(&st.so, &o->dev, stdout, stderr) :
	    store_ctl_reports(&st.so, &o->rep, stdout, stderr);
	ctl_store_close(&st);
	return rc;
}

/* The most words a command has ("outbox show ID"), and one more to tell
 * that there are too many. */
#define MAX_WORDS 4

enum {
	OPT_STATE = 256,
	OPT_CLASS,
	OPT_COMMUNITY,
	OPT_OFFLINE_SINCE,
	OPT_JSON,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_DEVICE,
	OPT_SEVERITY,
	OPT_TYPE,
	OPT_PERSONAL,
	OPT_PROTO,
};

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dir", required_argument, NULL, 'd' },
		{ "from", required_argument, NULL, 'f' },
		{ "target", required_argument, NULL, 't' },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "class", required_argument, NULL, OPT_CLASS },
		{ "community", required_argument, NULL, OPT_COMMUNITY },
		{ "offline-since", required_argument, NULL, OPT_OFFLINE_SINCE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "severity", required_argument, NULL, OPT_SEVERITY },
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "show-personal-data", no_argument, NULL, OPT_PERSONAL },
		{ "proto", no_argument, NULL, OPT_PROTO },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = GRIDBRIDGE_DEFAULT_CONFIG, *dir = NULL, *target = NULL;
	const char *words[MAX_WORDS];
	int nwords = 0;
	uint64_t from = 0;
	unsigned long long disk_cap = 0;
	struct derived_opts dopts = { 0 };
	bool help = false;
	char buf[4096];
	int opt;

	/* One pass, in order: options may come before and after the command's
	 * words, which the leading '-' makes getopt return as 1; after "--"
	 * only words follow. --help is answered once the command is known. */
	while ((opt = getopt_long(argc, argv, "-c:d:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 1:
			if (nwords == MAX_WORDS) {
				usage(stderr);
				return 2;
			}
			words[nwords++] = optarg;
			break;
		case 'c': config = optarg; break;
		case 'd': dir = optarg; dopts.seen |= SEEN_DIR; break;
		case 't': target = optarg; dopts.seen |= SEEN_TARGET; break;
		case 'f':
			if (parse_seq(optarg, &from) != 0) {
				fprintf(stderr, "gridbridgectl: --from needs a sequence number\n");
				return 2;
			}
			dopts.seen |= SEEN_FROM;
			break;
		case OPT_STATE:
			if (strcmp(optarg, "online") != 0 && strcmp(optarg, "offline") != 0 &&
			    strcmp(optarg, "unknown") != 0) {
				fprintf(stderr, "gridbridgectl: --state is online, offline or unknown\n");
				return 2;
			}
			dopts.dev.state = optarg;
			dopts.seen |= SEEN_STATE;
			break;
		case OPT_CLASS:
			dopts.dev.device_class = dopts.tail.device_class = optarg;
			dopts.seen |= SEEN_CLASS;
			break;
		case OPT_COMMUNITY:
			dopts.dev.community = dopts.rep.community = dopts.tail.community = optarg;
			dopts.seen |= SEEN_COMMUNITY;
			break;
		case OPT_DEVICE:
			dopts.tail.device_id = optarg;
			dopts.seen |= SEEN_DEVICE;
			break;
		case OPT_SEVERITY:
			dopts.tail.severity = optarg;
			dopts.seen |= SEEN_SEVERITY;
			break;
		case OPT_TYPE:
			dopts.tail.event_type = optarg;
			dopts.seen |= SEEN_TYPE;
			break;
		case OPT_PERSONAL:
			dopts.out.personal = true;
			dopts.seen |= SEEN_PERSONAL;
			break;
		case OPT_PROTO:
			dopts.seen |= SEEN_PROTO;
			break;
		case OPT_OFFLINE_SINCE:
			if (parse_when("offline-since", optarg, true, &dopts.dev.offline_since) != 0)
				return 2;
			dopts.seen |= SEEN_OFFLINE_SINCE;
			break;
		case OPT_JSON:
			dopts.dev.json = dopts.rep.json = dopts.out.json = true;
			dopts.seen |= SEEN_JSON;
			break;
		case OPT_SINCE:
			if (parse_when("since", optarg, true, &dopts.rep.since) != 0)
				return 2;
			dopts.seen |= SEEN_SINCE;
			break;
		case OPT_UNTIL:
			if (parse_when("until", optarg, false, &dopts.rep.until) != 0)
				return 2;
			dopts.seen |= SEEN_UNTIL;
			break;
		case 'h': help = true; break;
		case 'V': printf("gridbridgectl %s\n", GRIDBRIDGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	for (; optind < argc; optind++) {
		if (nwords == MAX_WORDS) {
			usage(stderr);
			return 2;
		}
		words[nwords++] = argv[optind];
	}
	bool derived = nwords >= 1 && (strcmp(words[0], "devices") == 0 ||
	    strcmp(words[0], "reports") == 0);
	bool tail = nwords >= 1 && strcmp(words[0], "tail") == 0;
	bool decode = nwords >= 1 && strcmp(words[0], "decode") == 0;
	bool status = nwords >= 1 && strcmp(words[0], "status") == 0;
	if (help) {
		if (derived)
			(strcmp(words[0], "devices") == 0 ? usage_devices : usage_reports)(stdout);
		else if (tail)
			usage_tail(stdout);
		else if (decode)
			usage_decode(stdout);
		else if (status)
			usage_status(stdout);
		else
			usage(stdout);
		return 0;
	}
	if (derived)
		return cmd_derived(config, words, nwords, &dopts);
	if (tail) {
		if (nwords != 1 || (dopts.seen & ~TAIL_OPTS) != 0) {
			usage_tail(stderr);
			return 2;
		}
		dopts.tail.since = dopts.rep.since;
		return cmd_tail(config, &dopts.tail, &dopts.out);
	}
	if (decode && (dopts.seen & SEEN_PROTO) != 0) {
		/* FILE alone: no journal, no routes, no configuration. */
		if (nwords > 2 || (dopts.seen & ~SEEN_PROTO) != 0) {
			usage_decode(stderr);
			return 2;
		}
		return cmd_decode_proto(nwords == 2 ? words[1] : NULL);
	}
	/* The other commands take none of the options of devices, reports and
	 * tail. */
	if ((dopts.seen & (DEVICES_OPTS | REPORTS_OPTS | TAIL_OPTS | SEEN_PROTO)) != 0) {
		usage(stderr);
		return 2;
	}
	if (nwords >= 1 && strcmp(words[0], "outbox") == 0)
		return cmd_outbox(config, words + 1, nwords - 1, target);
	if (status) {
		if (nwords > 2 || dir != NULL || target != NULL || (dopts.seen & SEEN_FROM) != 0) {
			usage_status(stderr);
			return 2;
		}
		return cmd_status(config, nwords == 2 ? words[1] : NULL);
	}
	decode = decode && nwords == 1;
	if (!decode && (nwords != 2 || strcmp(words[0], "journal") != 0)) {
		usage(stderr);
		return 2;
	}
	log_set_ratelimit(0, 0);
	if (decode) {
		/* Needs the routes, so always the configuration. */
		struct config *cfg = load_config(config);
		if (cfg == NULL)
			return 1;
		if (dir == NULL) {
			snprintf(buf, sizeof(buf), "%s/journal", cfg->state_dir);
			dir = buf;
		}
		int rc = cmd_decode(cfg, dir, from);
		config_free(cfg);
		return rc;
	}
	if (dir == NULL) {
		struct config *cfg = load_config(config);
		if (cfg == NULL)
			return 1;
		snprintf(buf, sizeof(buf), "%s/journal", cfg->state_dir);
		disk_cap = (unsigned long long)cfg->journal_disk_cap;
		config_free(cfg);
		dir = buf;
	}
	if (strcmp(words[1], "stat") == 0)
		return cmd_stat(dir, disk_cap);
	if (strcmp(words[1], "dump") == 0)
		return cmd_dump(dir, from);
	usage(stderr);
	return 2;
}
