/* rules.c — which stored events are forwarded, to which target, how soon.
 *
 * Pure code: the [forward.rule NAME] sections of the configuration compiled
 * into lists of accepted names. An event is selected by a rule when every
 * criterion the rule sets (class, event type, severity, community, route)
 * lists the event's value. Every rule that selects an event adds its target;
 * an event goes to each target once, at the highest priority of the rules
 * that chose that target.
 */
#ifndef GRIDBRIDGE_RULES_H
#define GRIDBRIDGE_RULES_H

#include <stdbool.h>
#include <stddef.h>

struct rules;

/* One rule as written in a [forward.rule NAME] section. */
struct rule_def {
	const char *target;
	bool cascade;			/* the target is a GA/T 1400 cascade target */
	int priority;
	const char *device_class;	/* each a comma-separated list; "": any */
	const char *event_type;
	const char *severity;
	const char *community;
	const char *route;
};

/* What the rules look at; the names as stored in the events table
 * (access_gate, person_passage, critical, ...). */
struct rule_event {
	const char *device_class;
	const char *event_type;
	const char *severity;
	const char *community;
	const char *route;
};

/* One (target, priority) an event goes to. `target` is the target's name,
 * owned by the rules. */
struct rule_match {
	const char *target;
	int priority;
	bool cascade;			/* the target's rule_def.cascade */
};

/* Compiles `n` rules (already checked by the configuration's checks). Never
 * NULL. rules_build() (routing.h) compiles a configuration's. */
struct rules *rules_new(const struct rule_def *defs, size_t n);
void rules_free(struct rules *r);
size_t rules_count(const struct rules *r);
/* The most targets a single event can go to (the size `out` needs). */
size_t rules_max_targets(const struct rules *r);

/* Fills `out` (room for rules_max_targets()) with the targets `e` goes to;
 * returns how many. */
size_t rules_select(const struct rules *r, const struct rule_event *e, struct rule_match *out);

/* The configuration's check of a criterion (the shape of a
 * config_check_fn, with the judge of one name): report(ctx, "unknown name
 * 'x'") for each name of the comma-separated `list` that valid() refuses. */
void rules_check_names(const char *list, bool (*valid)(const char *name),
    void (*report)(void *ctx, const char *why), void *ctx);

#endif
