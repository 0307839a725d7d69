/* event_json.c — protobuf messages as JSON, in the canonical proto3 JSON
 * mapping (lowerCamelCase names, enums by name, 64-bit integers as
 * strings, bytes as base64, fields at their default omitted), fields in
 * field-number order so the output is stable. Generic: walks the
 * protobuf-c descriptors, so new fields appear without code changes. */
#ifndef GRIDBRIDGE_EVENT_JSON_H
#define GRIDBRIDGE_EVENT_JSON_H

#include <protobuf-c/protobuf-c.h>

struct json_t;

/* A new JSON object for `msg` (the caller json_decref()s it), or NULL. */
struct json_t *event_json(const ProtobufCMessage *msg);

/* The same as compact text, fields in order: what the database's attrs
 * column keeps. Written directly, without jansson values, and byte for
 * byte what json_dumps(event_json(msg), JSON_COMPACT |
 * JSON_PRESERVE_ORDER) gives. The caller frees it; NULL when out of
 * memory. */
char *event_json_text(const ProtobufCMessage *msg);

/* Takes the personal data out of `event`, the JSON object of a
 * gridbridge.v1.Event that event_json() made, in place, for people who
 * watch events go by (gridbridgectl tail):
 *
 *   - identifiers keep their first character and their last two, the
 *     characters between become '*' (a value of fewer than 5 characters
 *     becomes '*' throughout): vehicle.plate, vehicle.plateNormalized,
 *     person.cardRef, person.personRef, and the household of peephole and
 *     welfare (it names the flat of someone living alone);
 *   - person.personName is removed;
 *   - every URL is removed (person.pictureUrl, vehicle.pictureUrls,
 *     cameraAlarm.pictureUrls and clipUrl, peephole.snapshotUrl): a
 *     picture shows faces and plates, and devices put plates, card and
 *     employee numbers into the paths.
 *
 * Characters are UTF-8 sequences ("皖A12345" -> "皖****45"). Everything
 * else stays: ids of devices and communities, topics, times. Not an
 * Event's object, or NULL: nothing is done. */
void event_json_mask(struct json_t *event);

/* Standard base64 of `n` bytes; the caller frees the string. */
char *base64_encode(const uint8_t *p, size_t n);

#endif
