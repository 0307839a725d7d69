/* event_names.c — the names of an Event's device class, type and severity.
 *
 * The configuration ([route] device_class, [forward.rule] criteria), the
 * database's events columns and the rules all spell these enums one way:
 * the .proto value name in lower case, without the enum's prefix,
 *
 *   DEVICE_CLASS_ACCESS_GATE -> "access_gate"
 *   EVENT_TYPE_PERSON_PASSAGE -> "person_passage"
 *   SEVERITY_CRITICAL -> "critical"
 *
 * so the names come from the protobuf-c descriptors and no table repeats
 * them. (JSON output, event_json.c, uses the .proto names as they are.)
 */
#ifndef GRIDBRIDGE_EVENT_NAMES_H
#define GRIDBRIDGE_EVENT_NAMES_H

#include <stdbool.h>

#include "event.pb-c.h"

/* The name of a value; "unspecified" for 0 and for values the .proto does
 * not have. The strings are static. */
const char *event_class_name(Gridbridge__V1__DeviceClass c);
const char *event_type_name(Gridbridge__V1__EventType t);
const char *event_severity_name(Gridbridge__V1__Severity s);

/* The value a name stands for. False for unknown names, for names not in
 * lower case and for "unspecified", which no configuration may ask for. */
bool event_class_by_name(const char *name, Gridbridge__V1__DeviceClass *c);
bool event_type_by_name(const char *name, Gridbridge__V1__EventType *t);
bool event_severity_by_name(const char *name, Gridbridge__V1__Severity *s);

#endif
