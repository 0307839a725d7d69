/* routing.c — checks, routes and rules of the configuration; per-route
 * decode counters. */
#include "routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derive.h"
#include "event_names.h"
#include "forward_viid.h"
#include "log.h"
#include "rules.h"
#include "util.h"

/* A [forward.rule] names the values of the Event's enums, as they are
 * stored (event_names.h). */
static bool
valid_class(const char *name)
{
	Gridbridge__V1__DeviceClass c;
	return event_class_by_name(name, &c);
}

static bool
valid_event_type(const char *name)
{
	Gridbridge__V1__EventType t;
	return event_type_by_name(name, &t);
}

static bool
valid_severity(const char *name)
{
	Gridbridge__V1__Severity s;
	return event_severity_by_name(name, &s);
}

static void
check_rule_classes(const char *list, void (*report)(void *ctx, const char *why), void *ctx)
{
	rules_check_names(list, valid_class, report, ctx);
}

static void
check_rule_event_types(const char *list, void (*report)(void *ctx, const char *why), void *ctx)
{
	rules_check_names(list, valid_event_type, report, ctx);
}

static void
check_rule_severities(const char *list, void (*report)(void *ctx, const char *why), void *ctx)
{
	rules_check_names(list, valid_severity, report, ctx);
}

/* A GA/T 1400 device id; the message names the part that is wrong, never
 * the value. Empty passes: whether it is required is the section's rule. */
static void
check_viid_device_id(const char *id, void (*report)(void *ctx, const char *why), void *ctx)
{
	char why[160];

	if (id[0] == '\0')
		return;
	enum viid_id_part part = forward_viid_check_device_id(id);
	if (part == VIID_ID_OK)
		return;
	snprintf(why, sizeof(why), "not a 20-digit GA/T 1400 device id: wrong %s",
	    forward_viid_id_part_name(part));
	report(ctx, why);
}

void
routing_register_checks(void)
{
	config_register_check("route", "pattern", route_check_pattern);
	config_register_check("route", "decoder", decode_check_decoder);
	config_register_check("route", "class", decode_check_class);
	config_register_check("route", "timezone", decode_check_timezone);
	config_register_check("forward.rule", "class", check_rule_classes);
	config_register_check("forward.rule", "event_type", check_rule_event_types);
	config_register_check("forward.rule", "severity", check_rule_severities);
	config_register_check("forward.target", "viid_device_id", check_viid_device_id);
	config_register_check("forward.target", "platform_id", check_viid_device_id);
	config_register_check("device", "class", decode_check_class);
	config_register_check("welfare", "timezone", decode_check_timezone);
	config_register_check("viid.device", "id", check_viid_device_id);
}

struct rules *
rules_build(const struct config *cfg)
{
	struct rule_def *defs = util_calloc(cfg->nrules, sizeof(*defs));

	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct config_rule *c = &cfg->rules[i];
		bool cascade = false;
		for (size_t j = 0; j < cfg->ntargets; j++)
			if (strcmp(cfg->targets[j].name, c->target) == 0)
				cascade = cfg->targets[j].profile == FORWARD_PROFILE_VIID &&
				    cfg->targets[j].viid_mode == VIID_MODE_CASCADE;
		defs[i] = (struct rule_def){
			.target = c->target,
			.cascade = cascade,
			.priority = (int)c->priority,
			.device_class = c->device_class,
			.event_type = c->event_type,
			.severity = c->severity,
			.community = c->community,
			.route = c->route,
		};
	}
	struct rules *r = rules_new(defs, cfg->nrules);
	free(defs);
	return r;
}

struct derive *
derive_build(const struct config *cfg)
{
	struct derive_options o = {
		.hold_down_us = cfg->registry_hold_down * 1000000LL,
		.expected_grace_us = cfg->registry_expected_grace * 1000000LL,
		.max_devices = (size_t)cfg->registry_max_devices,
		.persist_every_us = 60 * 1000000LL,
	};
	for (int c = 0; c < DERIVE_CLASSES; c++)
		o.class_timeout_us[c] = cfg->registry_timeout[c] * 1000000LL;
	struct derive_device_def *devs = util_calloc(cfg->ndevices ? cfg->ndevices : 1,
	    sizeof(*devs));
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct config_device *c = &cfg->devices[i];
		Gridbridge__V1__DeviceClass cls = GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_UNSPECIFIED;
		event_class_by_name(c->device_class, &cls);
		devs[i] = (struct derive_device_def){
			.community = c->community, .device = c->device, .device_class = (int)cls,
			.timeout_us = c->heartbeat_timeout < 0 ? -1 : c->heartbeat_timeout * 1000000LL,
			.expected = c->expected,
		};
	}
	struct derive_route_def *routes = util_calloc(cfg->nroutes ? cfg->nroutes : 1,
	    sizeof(*routes));
	size_t nroutes = 0;
	for (size_t i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].heartbeat_timeout >= 0)
			routes[nroutes++] = (struct derive_route_def){ cfg->routes[i].name,
			    cfg->routes[i].heartbeat_timeout * 1000000LL };
	struct derive_household *hh = util_calloc(cfg->nwelfare ? cfg->nwelfare : 1, sizeof(*hh));
	char ***sensors = util_calloc(cfg->nwelfare ? cfg->nwelfare : 1, sizeof(*sensors));
	for (size_t i = 0; i < cfg->nwelfare; i++) {
		const struct config_welfare *w = &cfg->welfare[i];
		int tz = 0, start, end;
		decode_parse_tz(w->timezone, &tz);
		config_night_window(w->night_window, &start, &end);
		sensors[i] = util_split_list(w->door_sensors);
		hh[i] = (struct derive_household){
			.name = w->name, .community = w->community,
			.sensors = (const char *const *)sensors[i], .peephole = w->peephole,
			.inactive_us = w->inactive_hours * 3600 * 1000000LL,
			.repeat_us = w->repeat_hours * 3600 * 1000000LL,
			.night_start_min = start, .night_end_min = end,
			.night_openings = (int)w->night_openings, .tz_offset_s = tz * 60,
		};
	}
	o.devices = devs;
	o.ndevices = cfg->ndevices;
	o.routes = routes;
	o.nroutes = nroutes;
	o.households = hh;
	o.nhouseholds = cfg->nwelfare;
	struct derive *d = derive_new(&o);
	for (size_t i = 0; i < cfg->nwelfare; i++)
		util_strv_free(sensors[i]);
	free(sensors);
	free(hh);
	free(routes);
	free(devs);
	return d;
}

int
routes_build(const struct config *cfg, struct route **out, size_t *n)
{
	struct route *v = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*v));
	char err[160];

	*out = NULL;
	*n = 0;
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *c = &cfg->routes[i];
		struct route *r = &v[i];
		r->name = strdup(c->name);
		r->community = strdup(c->community);
		r->utc_is_local = c->utc_is_local;
		r->rate_limit = (int)(c->rate_limit >= 0 ? c->rate_limit : cfg->decode_rate_limit);
		r->rate_burst = (int)(c->rate_burst >= 0 ? c->rate_burst : cfg->decode_rate_burst);
		if (r->name == NULL || r->community == NULL ||
		    route_compile(&r->pattern, c->pattern, err, sizeof(err)) != 0 ||
		    decoder_by_name(c->decoder, &r->decoder) != 0 ||
		    !event_class_by_name(c->device_class, &r->device_class) ||
		    decode_parse_tz(c->timezone, &r->tz_offset_min) != 0) {
			log_error("decode", "bad route", "route=%s", c->name);
			routes_free(v, i + 1);
			return -1;
		}
	}
	*out = v;
	*n = cfg->nroutes;
	return 0;
}

void
routes_free(struct route *routes, size_t n)
{
	if (routes == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(routes[i].name);
		free(routes[i].community);
		route_pattern_free(&routes[i].pattern);
	}
	free(routes);
}

#define STATS_MAX 256

struct stat_row {
	char *route;
	char *reason;		/* NULL: decoded */
	uint64_t n;
};

struct decode_stats {
	struct stat_row rows[STATS_MAX];
	size_t nrows;
};

struct decode_stats *
decode_stats_new(void)
{
	return calloc(1, sizeof(struct decode_stats));
}

void
decode_stats_free(struct decode_stats *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nrows; i++) {
		free(s->rows[i].route);
		free(s->rows[i].reason);
	}
	free(s);
}

static bool
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static struct stat_row *
find_row(struct decode_stats *s, const char *route, const char *reason)
{
	for (size_t i = 0; i < s->nrows; i++)
		if (same(s->rows[i].route, route) && same(s->rows[i].reason, reason))
			return &s->rows[i];
	return NULL;
}

void
decode_stats_count(struct decode_stats *s, const char *route, const char *reason)
{
	char kind[96];
	struct stat_row *r;

	if (route == NULL)
		route = "";
	if ((r = find_row(s, route, reason)) != NULL) {
		r->n++;
		return;
	}
	if (reason != NULL && s->nrows >= STATS_MAX / 2) {
		/* Many distinct reasons: count by kind (up to the second ':'). */
		snprintf(kind, sizeof(kind), "%s", reason);
		char *c = strchr(kind, ':');
		if (c != NULL && (c = strchr(c + 1, ':')) != NULL)
			*c = '\0';
		reason = kind;
		if ((r = find_row(s, route, reason)) != NULL) {
			r->n++;
			return;
		}
	}
	if (s->nrows == STATS_MAX)
		return;
	r = &s->rows[s->nrows];
	r->route = strdup(route);
	r->reason = reason != NULL ? strdup(reason) : NULL;
	if (r->route == NULL || (reason != NULL && r->reason == NULL)) {
		free(r->route);
		free(r->reason);
		return;
	}
	r->n = 1;
	s->nrows++;
}

void
decode_stats_foreach(const struct decode_stats *s,
    void (*fn)(const char *route, const char *reason, uint64_t n, void *ctx), void *ctx)
{
	for (size_t i = 0; i < s->nrows; i++)
		fn(s->rows[i].route, s->rows[i].reason, s->rows[i].n, ctx);
}
