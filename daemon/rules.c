/* rules.c — forwarding rules: see rules.h. */
#include "rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { CRIT_CLASS, CRIT_TYPE, CRIT_SEVERITY, CRIT_COMMUNITY, CRIT_ROUTE, NCRIT };

struct rule {
	char **names[NCRIT];	/* NULL-terminated; NULL: accepts anything */
	size_t target;		/* index into rules.targets */
	int priority;
};

struct rules {
	struct rule *v;
	size_t n;
	char **targets;		/* distinct target names, in first-use order */
	bool *cascade;		/* targets[i] is a cascade target */
	size_t ntargets;
};

struct rules *
rules_new(const struct rule_def *defs, size_t ndefs)
{
	struct rules *r = util_calloc(1, sizeof(*r));

	r->v = util_calloc(ndefs, sizeof(*r->v));
	r->targets = util_calloc(ndefs + 1, sizeof(*r->targets));	/* NULL-terminated */
	r->cascade = util_calloc(ndefs + 1, sizeof(*r->cascade));
	for (size_t i = 0; i < ndefs; i++) {
		const struct rule_def *c = &defs[i];
		struct rule *u = &r->v[r->n++];
		u->names[CRIT_CLASS] = util_split_list(c->device_class);
		u->names[CRIT_TYPE] = util_split_list(c->event_type);
		u->names[CRIT_SEVERITY] = util_split_list(c->severity);
		u->names[CRIT_COMMUNITY] = util_split_list(c->community);
		u->names[CRIT_ROUTE] = util_split_list(c->route);
		u->priority = c->priority;
		size_t t = 0;
		while (t < r->ntargets && strcmp(r->targets[t], c->target) != 0)
			t++;
		if (t == r->ntargets) {
			r->targets[t] = util_strdup(c->target);
			r->cascade[t] = c->cascade;
			r->ntargets++;
		}
		u->target = t;
	}
	return r;
}

void
rules_free(struct rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		for (int c = 0; c < NCRIT; c++)
			util_strv_free(r->v[i].names[c]);
	free(r->v);
	util_strv_free(r->targets);
	free(r->cascade);
	free(r);
}

size_t
rules_count(const struct rules *r)
{
	return r->n;
}

size_t
rules_max_targets(const struct rules *r)
{
	return r->ntargets;
}

static bool
accepts(char *const *names, const char *value)
{
	if (names == NULL)
		return true;
	if (value == NULL)
		return false;
	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], value) == 0)
			return true;
	return false;
}

size_t
rules_select(const struct rules *r, const struct rule_event *e, struct rule_match *out)
{
	const char *values[NCRIT] = { e->device_class, e->event_type, e->severity, e->community,
		e->route };
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++) {
		const struct rule *u = &r->v[i];
		int c = 0;
		while (c < NCRIT && accepts(u->names[c], values[c]))
			c++;
		if (c < NCRIT)
			continue;
		const char *target = r->targets[u->target];
		size_t j = 0;
		while (j < n && out[j].target != target)
			j++;
		if (j == n) {
			out[n].target = target;
			out[n].priority = u->priority;
			out[n].cascade = r->cascade[u->target];
			n++;
		} else if (u->priority > out[j].priority) {
			out[j].priority = u->priority;
		}
	}
	return n;
}

void
rules_check_names(const char *list, bool (*valid)(const char *name),
    void (*report)(void *ctx, const char *why), void *ctx)
{
	char **names = util_split_list(list);
	char why[300];

	for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
		if (!valid(names[i])) {
			snprintf(why, sizeof(why), "unknown name '%.255s'", names[i]);
			report(ctx, why);
		}
	}
	util_strv_free(names);
}
