/* routing.c — routes from the configuration; per-route decode counters. */
#include "routing.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

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
		if (r->name == NULL || r->community == NULL ||
		    route_compile(&r->pattern, c->pattern, err, sizeof(err)) != 0 ||
		    decoder_by_name(c->decoder, &r->decoder) != 0 ||
		    decode_class_by_name(c->device_class, &r->device_class) != 0 ||
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
