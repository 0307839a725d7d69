/* forward_viid_profile.c — the GA/T 1400 (viid) profile for forward.c:
 * which object kind a record is (a batch holds one kind: Faces,
 * MotorVehicles or APEs), the records it refuses (with the reason the
 * outbox keeps), the body and path of a batch, and what the platform's
 * per-object statuses mean for each row. Pure, like forward_viid_body.c:
 * the per-target state is the device table it is made with. */
#ifndef GRIDBRIDGE_FORWARD_VIID_PROFILE_H
#define GRIDBRIDGE_FORWARD_VIID_PROFILE_H

#include <stddef.h>

#include "forward.h"
#include "forward_profile.h"

#define FORWARD_VIID_CONTENT_TYPE "application/VIID+JSON;charset=UTF-8"

/* The profile of a viid target: `devices` (copied) give the 20-digit ids
 * of our devices; a section naming the event's community wins over one
 * without. NULL when memory runs out. */
struct forward_profile *forward_profile_viid_new(const struct forward_viid_device *devices,
    size_t n);
void forward_profile_viid_free(struct forward_profile *p);

#endif
