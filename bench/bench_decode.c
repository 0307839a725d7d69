/* bench_decode — decoded records per second on one core, against a
 * baseline of parsing the same payloads with jansson alone (json_loadb +
 * json_decref; then again with jansson's memory in the decode arena, as
 * decode_record() parses), in the same run, for two mixes:
 *
 *   samples    every device sample once in turn (heavy: most are 300-1100
 *              byte events)
 *   community  the traffic of a community: heartbeats and availability
 *              dominate (every device reports every minute or so), then door
 *              sensors and passages; alarms are rare (weights below)
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

#include "decode.h"
#include "event_names.h"
#include "util.h"

struct sample {
	char name[64];
	char topic[256];
	char *payload;
	size_t len;
};

static const struct {
	const char *name, *pattern, *decoder, *class;
} routes_def[] = {
	{ "access", "sac/{community}/access/{device}/event", "access", "access_gate" },
	{ "vehicle", "sac/{community}/vehicle/{device}/event", "hikvision", "vehicle_barrier" },
	{ "camera", "sac/{community}/camera/{device}/alarm", "camera_alarm", "camera" },
	{ "peephole", "sac/{community}/peephole/{device}/event", "peephole", "peephole" },
	{ "gateway", "sac/{community}/gateway/{device}/status", "gateway", "gateway" },
	{ "resident-reports", "sac/{community}/report/{device}/event", "report", "report_point" },
	{ "z2m-bridge", "zigbee2mqtt/bridge/state", "z2m_bridge", "gateway" },
	{ "z2m-avail", "zigbee2mqtt/{device...}/availability", "z2m_availability", "door_sensor" },
	{ "z2m", "zigbee2mqtt/{device...}", "z2m_device", "door_sensor" },
	{ "shelly", "shellies/{device}/sensor/state", "shelly_sensor", "door_sensor" },
	{ "tasmota", "tele/{device}/LWT", "tasmota_lwt", "door_sensor" },
};

/* Share of a community's messages, in percent, by sample name. */
static const struct {
	const char *name;
	int weight;
} community_mix[] = {
	{ "device_heartbeat_hikvision", 30 },
	{ "gateway_heartbeat", 8 },
	{ "door_contact_z2m_availability", 12 },
	{ "door_contact_z2m_state", 14 },
	{ "shelly_open", 5 },
	{ "tasmota_online", 3 },
	{ "gate_person_access_hikvision", 12 },
	{ "gate_person_access_dahua", 6 },
	{ "vehicle_barrier_anpr_hikvision", 6 },
	{ "peephole_linger_event", 2 },
	{ "camera_alarm_high_altitude_throwing", 1 },
	{ "gateway_lwt", 1 },
};
#define NROUTES (sizeof(routes_def) / sizeof(routes_def[0]))

static double
now_s(void)
{
	return (double)util_mono_us() / 1e6;
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

/* Times `records` decodes over `order` against jansson alone. */
static void
run(const char *label, struct sample *samples, const size_t *order, size_t n,
    struct route *routes, long records)
{
	/* Baseline: jansson alone (plain-text payloads are not JSON: skipped
	 * by the parser at once, as the decoders skip it). */
	double t0 = now_s();
	for (long i = 0; i < records; i++) {
		struct sample *s = &samples[order[i % (long)n]];
		json_t *j = json_loadb(s->payload, s->len, 0, NULL);
		json_decref(j);
	}
	double base = now_s() - t0;

	/* The same parse with jansson's memory in the decode arena, as
	 * decode_record() runs it: what any decoder on jansson can reach. */
	t0 = now_s();
	for (long i = 0; i < records; i++) {
		struct sample *s = &samples[order[i % (long)n]];
		decode_json_begin();
		json_t *j = json_loadb(s->payload, s->len, 0, NULL);
		decode_json_free(j);
		decode_json_end();
	}
	double arena = now_s() - t0;

	struct decode_out out;
	decode_out_init(&out);
	long ok = 0, rejected = 0;
	t0 = now_s();
	for (long i = 0; i < records; i++) {
		struct sample *s = &samples[order[i % (long)n]];
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
	printf("mix=%s records=%ld decoded=%ld rejected=%ld jansson_parse_per_s=%.0f "
	    "jansson_arena_per_s=%.0f decode_per_s=%.0f ratio=%.2f\n", label, records,
	    ok, rejected, (double)records / base, (double)records / arena,
	    (double)records / ours, base / ours);
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
		snprintf(s->name, sizeof(s->name), "%.*s", (int)(l - 5), de->d_name);
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
		    !event_class_by_name(routes_def[i].class, &routes[i].device_class))
			return 1;
	}

	/* Plain-text devices, which have no JSON sample file. */
	static const struct { const char *name, *topic, *payload; } plain[] = {
		{ "shelly_open", "shellies/door-7/sensor/state", "open" },
		{ "tasmota_online", "tele/sonoff-3/LWT", "Online" },
	};
	for (size_t i = 0; i < 2 && ns < 64; i++, ns++) {
		snprintf(samples[ns].name, sizeof(samples[ns].name), "%s", plain[i].name);
		snprintf(samples[ns].topic, sizeof(samples[ns].topic), "%s", plain[i].topic);
		samples[ns].payload = strdup(plain[i].payload);
		samples[ns].len = strlen(plain[i].payload);
	}

	/* The two schedules: each sample once in turn; the community mix. */
	size_t all[64], mix[100], nall = 0, nmix = 0;
	for (size_t i = 0; i < ns; i++)
		if (strcmp(samples[i].name, "shelly_open") != 0 &&
		    strcmp(samples[i].name, "tasmota_online") != 0)
			all[nall++] = i;
	for (size_t m = 0; m < sizeof(community_mix) / sizeof(community_mix[0]); m++)
		for (size_t i = 0; i < ns; i++)
			if (strcmp(samples[i].name, community_mix[m].name) == 0)
				for (int w = 0; w < community_mix[m].weight && nmix < 100; w++)
					mix[nmix++] = i;

	run("samples", samples, all, nall, routes, records);
	run("community", samples, mix, nmix, routes, records);
	for (size_t i = 0; i < ns; i++)
		free(samples[i].payload);
	for (size_t i = 0; i < NROUTES; i++)
		route_pattern_free(&routes[i].pattern);
	return 0;
}
