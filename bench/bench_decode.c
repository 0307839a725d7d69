/* bench_decode — decoded records per second on one core for a realistic
 * mix of device payloads, against a baseline of parsing the same payloads
 * with jansson alone (json_loadb + json_decref), in the same run.
 *
 * usage: bench_decode FIXTURES_DIR [RECORDS]
 *   FIXTURES_DIR  tests/fixtures/devices (NAME.topic.txt + NAME.json)
 *   RECORDS       default 1,000,000
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"

struct sample {
	char topic[256];
	char *payload;
	size_t len;
};

static const struct {
	const char *name, *pattern, *decoder, *class;
} routes_def[] = {
	{ "access", "sac/{community}/access/{device}/event", "hikvision", "access_gate" },
	{ "vehicle", "sac/{community}/vehicle/{device}/event", "hikvision", "vehicle_barrier" },
	{ "camera", "sac/{community}/camera/{device}/alarm", "camera_alarm", "camera" },
	{ "peephole", "sac/{community}/peephole/{device}/event", "peephole", "peephole" },
	{ "gateway", "sac/{community}/gateway/{device}/status", "gateway", "gateway" },
	{ "z2m-bridge", "zigbee2mqtt/bridge/state", "z2m_bridge", "gateway" },
	{ "z2m-avail", "zigbee2mqtt/{device...}/availability", "z2m_availability", "door_sensor" },
	{ "z2m", "zigbee2mqtt/{device...}", "z2m_device", "door_sensor" },
};
#define NROUTES (sizeof(routes_def) / sizeof(routes_def[0]))

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
	char *b = malloc((size_t)n + 1);
	if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(b);
		return NULL;
	}
	fclose(f);
	b[n] = '\0';
	*len = (size_t)n;
	return b;
}

int
main(int argc, char **argv)
{
	struct sample samples[64];
	size_t ns = 0;
	struct route routes[NROUTES];
	char err[128];

	if (argc < 2) {
		fprintf(stderr, "usage: bench_decode FIXTURES_DIR [RECORDS]\n");
		return 2;
	}
	long records = argc > 2 ? strtol(argv[2], NULL, 10) : 1000000;
	DIR *d = opendir(argv[1]);
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL && ns < 64) {
		size_t l = strlen(de->d_name);
		if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
			continue;
		char path[512];
		size_t tl;
		snprintf(path, sizeof(path), "%s/%.*s.topic.txt", argv[1], (int)(l - 5), de->d_name);
		char *t = slurp(path, &tl);
		snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
		struct sample *s = &samples[ns];
		s->payload = slurp(path, &s->len);
		if (t == NULL || s->payload == NULL)
			return 1;
		/* Devices send compact JSON; the fixtures are pretty-printed. */
		json_t *j = json_loadb(s->payload, s->len, 0, NULL);
		if (j != NULL) {
			char *c = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
			json_decref(j);
			free(s->payload);
			s->payload = c;
			s->len = strlen(c);
		}
		snprintf(s->topic, sizeof(s->topic), "%s", t);
		s->topic[strcspn(s->topic, "\r\n")] = '\0';
		free(t);
		ns++;
	}
	if (d != NULL)
		closedir(d);
	if (ns == 0) {
		fprintf(stderr, "no samples in %s\n", argv[1]);
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
		    decode_class_by_name(routes_def[i].class, &routes[i].device_class) != 0)
			return 1;
	}

	/* Baseline: jansson alone. */
	double t0 = now_s();
	for (long i = 0; i < records; i++) {
		struct sample *s = &samples[i % (long)ns];
		json_t *j = json_loadb(s->payload, s->len, 0, NULL);
		json_decref(j);
	}
	double base = now_s() - t0;

	/* Route + decode + id, as the daemon does per record. */
	struct decode_out out;
	decode_out_init(&out);
	long ok = 0, rejected = 0;
	t0 = now_s();
	for (long i = 0; i < records; i++) {
		struct sample *s = &samples[i % (long)ns];
		struct route_match m;
		const struct route *r = decode_find_route(routes, NROUTES, s->topic,
		    strlen(s->topic), &m);
		if (r == NULL) {
			rejected++;
			continue;
		}
		struct decode_in in = {
			.route = r, .match = &m, .topic = s->topic, .topic_len = strlen(s->topic),
			.payload = (const uint8_t *)s->payload, .payload_len = s->len,
			.received_us = 1742256000000000LL + i, .journal_seq = (uint64_t)i,
			.max_skew_us = 300000000LL,
		};
		if (decode_record(&in, &out) == 0)
			ok++;
		else
			rejected++;
	}
	double ours = now_s() - t0;
	decode_out_free(&out);

	printf("samples=%zu records=%ld decoded=%ld rejected=%ld\n", ns, records, ok, rejected);
	printf("baseline_json_parse_per_s=%.0f decode_per_s=%.0f ratio=%.2f\n",
	    (double)records / base, (double)records / ours, base / ours);
	for (size_t i = 0; i < ns; i++)
		free(samples[i].payload);
	for (size_t i = 0; i < NROUTES; i++)
		route_pattern_free(&routes[i].pattern);
	return 0;
}
