/* golden — decoder golden-file tests.
 *
 *   golden [--update] DIR...
 *
 * Each DIR (tests/decode/<decoder>/) holds a `route` file and cases:
 *
 *   route       key = value lines: decoder, pattern, class, community,
 *               timezone, utc_is_local (the same keys as a [route NAME]
 *               section of gridbridge.conf)
 *   NN.topic    the MQTT topic (one line)
 *   NN.in       the payload, byte for byte
 *   NN.out      the expected record as JSON (canonical proto3 mapping,
 *               pretty-printed), or {"rejected": "<reason>"}
 *
 * Every case is decoded as journal record NN received at
 * 2025-03-18T00:00:00Z with a clock-skew limit of one hour, so outputs are
 * stable. --update rewrites the .out files (check them by eye). A
 * directory with fewer than 6 cases fails.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "event_json.h"
#include "event_names.h"

#define RECEIVED_US 1742256000000000LL	/* 2025-03-18T00:00:00Z */
#define MAX_SKEW_US 3600000000LL

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

static char *
trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
	    s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static int
load_route(const char *dir, struct route *r)
{
	char path[512], line[512], err[128];
	FILE *f;

	memset(r, 0, sizeof(*r));
	r->name = strdup("golden");
	r->community = strdup("");
	r->tz_offset_min = 480;
	r->utc_is_local = true;
	snprintf(path, sizeof(path), "%s/route", dir);
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "%s: missing\n", path);
		return -1;
	}
	int rc = 0;
	bool have_pattern = false;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *l = trim(line);
		if (l[0] == '\0' || l[0] == '#' || l[0] == ';')
			continue;
		char *eq = strchr(l, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		char *k = trim(l), *v = trim(eq + 1);
		if (strcmp(k, "decoder") == 0) {
			if (decoder_by_name(v, &r->decoder) != 0)
				rc = -1;
		} else if (strcmp(k, "pattern") == 0) {
			if (route_compile(&r->pattern, v, err, sizeof(err)) != 0) {
				fprintf(stderr, "%s: pattern: %s\n", path, err);
				rc = -1;
			}
			have_pattern = true;
		} else if (strcmp(k, "class") == 0) {
			if (!event_class_by_name(v, &r->device_class))
				rc = -1;
		} else if (strcmp(k, "community") == 0) {
			free(r->community);
			r->community = strdup(v);
		} else if (strcmp(k, "timezone") == 0) {
			if (decode_parse_tz(v, &r->tz_offset_min) != 0)
				rc = -1;
		} else if (strcmp(k, "utc_is_local") == 0) {
			r->utc_is_local = strcmp(v, "true") == 0;
		} else {
			fprintf(stderr, "%s: unknown key %s\n", path, k);
			rc = -1;
		}
	}
	fclose(f);
	if (!have_pattern)
		rc = -1;
	if (rc != 0)
		fprintf(stderr, "%s: bad route file\n", path);
	return rc;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Decoded events whose attrs text (event_json_text, written directly)
 * differs from jansson's dump of event_json(): each is a failure. */
static int text_mismatches;

static void
check_text(const char *topic, const ProtobufCMessage *msg, json_t *j)
{
	char *direct = event_json_text(msg);
	char *dumped = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (direct == NULL || dumped == NULL || strcmp(direct, dumped) != 0) {
		printf("not ok - %s: attrs text differs from jansson's\n# direct:  %s\n"
		    "# jansson: %s\n", topic, direct != NULL ? direct : "(null)",
		    dumped != NULL ? dumped : "(null)");
		text_mismatches++;
	}
	free(direct);
	free(dumped);
}

/* The JSON text for one case. */
static char *
run_case(const struct route *r, const char *topic, const uint8_t *payload, size_t len,
    unsigned long seq)
{
	struct decode_out out;
	struct route_match m;
	json_t *j;

	decode_out_init(&out);
	if (!route_matches(&r->pattern, topic, strlen(topic), &m)) {
		j = json_pack("{s:s}", "rejected", "no_route");
	} else {
		struct decode_in in = {
			.route = r, .match = &m, .topic = topic, .topic_len = strlen(topic),
			.payload = payload, .payload_len = len, .received_us = RECEIVED_US,
			.journal_seq = seq, .max_skew_us = MAX_SKEW_US,
		};
		if (decode_record(&in, &out) == 0) {
			j = event_json(&out.ev.base);
			check_text(topic, &out.ev.base, j);
		} else
			j = json_pack("{s:s}", "rejected", out.reason);
	}
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	decode_out_free(&out);
	size_t n = strlen(text);
	char *withnl = malloc(n + 2);
	memcpy(withnl, text, n);
	withnl[n] = '\n';
	withnl[n + 1] = '\0';
	free(text);
	return withnl;
}

static int
run_dir(const char *dir, bool update, int *cases)
{
	struct route r;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int failed = 0;

	if (load_route(dir, &r) != 0)
		return 1;
	d = opendir(dir);
	while (d != NULL && (de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 3 && strcmp(de->d_name + l - 3, ".in") == 0) {
			names = realloc(names, (n + 1) * sizeof(*names));
			names[n++] = strndup(de->d_name, l - 3);
		}
	}
	if (d != NULL)
		closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char path[512];
		size_t len;
		snprintf(path, sizeof(path), "%s/%s.topic", dir, names[i]);
		char *topic = slurp(path, NULL);
		snprintf(path, sizeof(path), "%s/%s.in", dir, names[i]);
		char *payload = slurp(path, &len);
		if (topic == NULL || payload == NULL) {
			printf("not ok - %s/%s: missing .topic or .in\n", dir, names[i]);
			failed++;
			free(topic);
			free(payload);
			continue;
		}
		char *got = run_case(&r, trim(topic), (const uint8_t *)payload, len,
		    strtoul(names[i], NULL, 10));
		snprintf(path, sizeof(path), "%s/%s.out", dir, names[i]);
		if (update) {
			FILE *f = fopen(path, "w");
			fputs(got, f);
			fclose(f);
		}
		char *want = slurp(path, NULL);
		if (want != NULL && strcmp(want, got) == 0) {
			printf("ok - %s/%s\n", dir, names[i]);
		} else {
			printf("not ok - %s/%s\n# expected:\n%s# got:\n%s", dir, names[i],
			    want != NULL ? want : "(no .out file)\n", got);
			failed++;
		}
		(*cases)++;
		free(want);
		free(got);
		free(topic);
		free(payload);
		free(names[i]);
	}
	free(names);
	if (n < 6) {
		printf("not ok - %s: %zu cases, at least 6 wanted\n", dir, n);
		failed++;
	}
	route_pattern_free(&r.pattern);
	free(r.name);
	free(r.community);
	return failed;
}

int
main(int argc, char **argv)
{
	bool update = false;
	int failed = 0, cases = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--update") == 0) {
			update = true;
			continue;
		}
		failed += run_dir(argv[i], update, &cases);
	}
	failed += text_mismatches;
	printf("# %d cases, %d failed\n", cases, failed);
	return failed == 0 && cases > 0 ? 0 : 1;
}
