/* event_names.c — lower-case names of the Event enums, from the .proto. */
#include "event_names.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#define NAMES_MAX 32		/* values an enum may have here */
#define NAME_LEN 40		/* a lower-case name, its NUL included */

/* One enum's names, made once from its descriptor. */
struct names {
	const ProtobufCEnumDescriptor *d;
	size_t prefix;			/* strlen("EVENT_TYPE_") and the like */
	size_t n;
	int value[NAMES_MAX];
	char name[NAMES_MAX][NAME_LEN];
};

static struct names classes = { &gridbridge__v1__device_class__descriptor,
	sizeof("DEVICE_CLASS_") - 1, 0, { 0 }, { { 0 } } };
static struct names types = { &gridbridge__v1__event_type__descriptor,
	sizeof("EVENT_TYPE_") - 1, 0, { 0 }, { { 0 } } };
static struct names severities = { &gridbridge__v1__severity__descriptor,
	sizeof("SEVERITY_") - 1, 0, { 0 }, { { 0 } } };
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
fill(struct names *t)
{
	for (unsigned i = 0; i < t->d->n_values && t->n < NAMES_MAX; i++) {
		const char *s = t->d->values[i].name;
		if (strlen(s) <= t->prefix || strlen(s) - t->prefix >= NAME_LEN)
			continue;	/* cannot be: event.proto's names are short */
		char *o = t->name[t->n];
		for (s += t->prefix; *s != '\0'; s++)
			*o++ = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
		*o = '\0';
		t->value[t->n++] = t->d->values[i].value;
	}
}

static void
fill_all(void)
{
	fill(&classes);
	fill(&types);
	fill(&severities);
}

static const char *
name_of(struct names *t, int v)
{
	pthread_once(&once, fill_all);
	for (size_t i = 0; i < t->n; i++)
		if (t->value[i] == v)
			return t->name[i];
	return "unspecified";
}

static bool
value_of(struct names *t, const char *name, int *v)
{
	pthread_once(&once, fill_all);
	for (size_t i = 0; i < t->n; i++) {
		if (t->value[i] != 0 && strcmp(t->name[i], name) == 0) {
			*v = t->value[i];
			return true;
		}
	}
	return false;
}

const char *
event_class_name(Gridbridge__V1__DeviceClass c)
{
	return name_of(&classes, (int)c);
}

const char *
event_type_name(Gridbridge__V1__EventType t)
{
	return name_of(&types, (int)t);
}

const char *
event_severity_name(Gridbridge__V1__Severity s)
{
	return name_of(&severities, (int)s);
}

bool
event_class_by_name(const char *name, Gridbridge__V1__DeviceClass *c)
{
	int v;
	if (!value_of(&classes, name, &v))
		return false;
	*c = (Gridbridge__V1__DeviceClass)v;
	return true;
}

bool
event_type_by_name(const char *name, Gridbridge__V1__EventType *t)
{
	int v;
	if (!value_of(&types, name, &v))
		return false;
	*t = (Gridbridge__V1__EventType)v;
	return true;
}

bool
event_severity_by_name(const char *name, Gridbridge__V1__Severity *s)
{
	int v;
	if (!value_of(&severities, name, &v))
		return false;
	*s = (Gridbridge__V1__Severity)v;
	return true;
}
