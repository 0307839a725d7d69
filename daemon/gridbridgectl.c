/* gridbridgectl — operator commands for a gridbridge installation.
 *
 *   gridbridgectl [-c FILE | -d DIR] journal stat
 *   gridbridgectl [-c FILE | -d DIR] journal dump [--from SEQ]
 *   gridbridgectl [-c FILE] [-d DIR] decode [--from SEQ]
 *   gridbridgectl [-c FILE] outbox stat
 *   gridbridgectl [-c FILE] outbox retry [--target NAME]
 *   gridbridgectl [-c FILE] outbox show EVENT_ID
 *
 * Safe while gridbridged runs: only `outbox retry` writes (it re-queues
 * failed outbox rows, which the daemon then sends). */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "decode.h"
#include "event_json.h"
#include "journal.h"
#include "log.h"
#include "routing.h"
#include "secret.h"
#include "store_ctl.h"
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
	    "       gridbridgectl --version | -h\n"
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
	    "  outbox show ID     the outbox rows of one event\n",
	    GRIDBRIDGE_DEFAULT_CONFIG);
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
	log_set_ratelimit(0, 0);
	struct config *cfg = load_config(config);
	if (cfg == NULL)
		return 1;
	char *pw = secret_load(cfg->store_password, cfg->store_password_file, "store");
	if (pw == NULL) {
		config_free(cfg);
		return 1;
	}
	char sslkey[4096];
	const char *key = secret_key_file(cfg->store_sslkey, sslkey, sizeof(sslkey), "store");
	if (key == NULL) {
		secret_free(pw);
		config_free(cfg);
		return 1;
	}
	struct store_options so = {
		.host = cfg->store_host,
		.port = (int)cfg->store_port,
		.dbname = cfg->store_dbname,
		.user = cfg->store_user,
		.password = pw,
		.connect_timeout = (int)cfg->store_connect_timeout,
		.sslmode = config_enum_name("store", "sslmode", cfg->store_sslmode),
		.sslrootcert = cfg->store_sslrootcert,
		.sslcert = cfg->store_sslcert,
		.sslkey = key,
	};
	int rc = store_ctl_outbox(&so, words[0], n == 2 ? words[1] : target, stdout, stderr);
	secret_free(pw);
	config_free(cfg);
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

/* The most words a command has ("outbox show ID"), and one more to tell
 * that there are too many. */
#define MAX_WORDS 4

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "dir", required_argument, NULL, 'd' },
		{ "from", required_argument, NULL, 'f' },
		{ "target", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = GRIDBRIDGE_DEFAULT_CONFIG, *dir = NULL, *target = NULL;
	const char *words[MAX_WORDS];
	int nwords = 0;
	uint64_t from = 0;
	unsigned long long disk_cap = 0;
	char buf[4096];
	int opt;

	/* One pass, in order: options may come before and after the command's
	 * words, which the leading '-' makes getopt return as 1; after "--"
	 * only words follow. */
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
		case 'd': dir = optarg; break;
		case 't': target = optarg; break;
		case 'f':
			if (parse_seq(optarg, &from) != 0) {
				fprintf(stderr, "gridbridgectl: --from needs a sequence number\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
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
	if (nwords >= 1 && strcmp(words[0], "outbox") == 0)
		return cmd_outbox(config, words + 1, nwords - 1, target);
	bool decode = nwords == 1 && strcmp(words[0], "decode") == 0;
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
