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
 * without. With `picture_data` the pictures go as base64 Data: the
 * profile's picture_urls tells the forwarder what to fetch, and the
 * records bring the bytes. */
struct forward_profile *forward_profile_viid_new(const struct forward_viid_device *devices,
    size_t n, bool picture_data);
/* The profile of a subscription's notifications (cascade), with the
 * devices of `viid` (a profile of forward_profile_viid_new): the records
 * as SubscribeNotificationObjects, one each, POSTed to the target's url
 * (the subscription's ReceiveAddr) and answered per NotificationID.
 * `subscribe_id`, `title` and `org` (12 digits) are copied. */
struct forward_profile *forward_profile_viid_notify_new(const struct forward_profile *viid,
    const char *subscribe_id, const char *title, const char *org);
void forward_profile_viid_free(struct forward_profile *p);

/* A configured device as the body builders take it: dst's strings are
 * copies (NULL when unset), freed by forward_viid_device_free(). */
struct viid_device;
void forward_viid_device_copy(struct viid_device *dst, const struct forward_viid_device *src);
void forward_viid_device_free(struct viid_device *d);

#endif
