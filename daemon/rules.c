/* rules.c — forwarding rules: see rules.h. */
#include "rules.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"

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
	size_t ntargets;
};

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (p == NULL)
		abort();
	return p;
}

/* "a, b,c" -> {"a","b","c",NULL}; empty -> NULL. */
static char **
split(const char *list)
{
	size_t cap = 1;
	for (const char *s = list; *s; s++)
		if (*s == ',')
			cap++;
	char **v = xcalloc(cap + 1, sizeof(*v));
	size_t n = 0;
	const char *s = list;
	while (*s != '\0') {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		size_t len = strcspn(s, ",");
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (len == 0)
			break;
		v[n] = strndup(s, len);
		if (v[n] == NULL)
			abort();
		n++;
		s += len;
		while (*s == ' ' || *s == '\t')
			s++;
	}
	if (n == 0) {
		free(v);
		return NULL;
	}
	return v;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

struct rules *
rules_new(const struct rule_def *defs, size_t ndefs)
{
	struct rules *r = xcalloc(1, sizeof(*r));

	r->v = xcalloc(ndefs, sizeof(*r->v));
	r->targets = xcalloc(ndefs + 1, sizeof(*r->targets));	/* NULL-terminated */
	for (size_t i = 0; i < ndefs; i++) {
		const struct rule_def *c = &defs[i];
		struct rule *u = &r->v[r->n++];
		u->names[CRIT_CLASS] = split(c->device_class);
		u->names[CRIT_TYPE] = split(c->event_type);
		u->names[CRIT_SEVERITY] = split(c->severity);
		u->names[CRIT_COMMUNITY] = split(c->community);
		u->names[CRIT_ROUTE] = split(c->route);
		u->priority = c->priority;
		size_t t = 0;
		while (t < r->ntargets && strcmp(r->targets[t], c->target) != 0)
			t++;
		if (t == r->ntargets) {
			r->targets[t] = strdup(c->target);
			if (r->targets[t] == NULL)
				abort();
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
			strv_free(r->v[i].names[c]);
	free(r->v);
	strv_free(r->targets);
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
			n++;
		} else if (u->priority > out[j].priority) {
			out[j].priority = u->priority;
		}
	}
	return n;
}

/* `name` (lower case, as stored) is a value of the enum whose values are
 * spelt PREFIX_NAME, other than the unspecified one. */
static bool
valid_enum_name(const ProtobufCEnumDescriptor *d, const char *prefix, const char *name)
{
	char buf[96];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);

	for (const char *s = name; *s != '\0'; s++) {
		if (n + 1 >= sizeof(buf) || !(islower((unsigned char)*s) || *s == '_' ||
		    isdigit((unsigned char)*s)))
			return false;
		buf[n++] = (char)toupper((unsigned char)*s);
	}
	buf[n] = '\0';
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(d, buf);
	return v != NULL && v->value != 0;
}

bool
rules_valid_event_type(const char *name)
{
	return valid_enum_name(&gridbridge__v1__event_type__descriptor, "EVENT_TYPE_", name);
}

bool
rules_valid_severity(const char *name)
{
	return valid_enum_name(&gridbridge__v1__severity__descriptor, "SEVERITY_", name);
}

void
rules_check_names(const char *list, bool (*valid)(const char *name),
    void (*report)(void *ctx, const char *why), void *ctx)
{
	char **names = split(list);
	char why[300];

	for (size_t i = 0; names != NULL && names[i] != NULL; i++) {
		if (!valid(names[i])) {
			snprintf(why, sizeof(why), "unknown name '%.255s'", names[i]);
			report(ctx, why);
		}
	}
	strv_free(names);
}
