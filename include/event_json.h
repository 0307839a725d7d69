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
 * column keeps. The caller frees it; NULL when out of memory. For callers
 * that want the text only and have no other use for jansson. */
char *event_json_text(const ProtobufCMessage *msg);

/* Standard base64 of `n` bytes; the caller frees the string. */
char *base64_encode(const uint8_t *p, size_t n);

#endif
