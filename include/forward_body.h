/* forward_body.c — the gridbridge profile's bodies and Idempotency-Key.
 *
 * protobuf: a gridbridge.v1.EventBatch of the records, framed through
 * EventBatchFrame (the same bytes) so that records stored packed are not
 * unpacked and packed again. JSON: the EventBatch's proto3 JSON mapping,
 * {"events":[...]}, compact, fields in field-number order. The key: the
 * first 128 bits of the SHA-256 of the events' ids in body order, in hex
 * (gridbridge.conf(5)). */
#ifndef GRIDBRIDGE_FORWARD_BODY_H
#define GRIDBRIDGE_FORWARD_BODY_H

#include <stddef.h>

#include "forward_profile.h"

char *forward_body_protobuf(const struct forward_record *recs, size_t n, size_t *len);
/* A record that does not unpack is left out (records come from the store,
 * which packed them). */
char *forward_body_json(const struct forward_record *recs, size_t n, size_t *len);
void forward_batch_key(const struct forward_record *recs, size_t n, char key[33]);

#endif
