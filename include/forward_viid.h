/* forward_viid_id.c, forward_viid_body.c — the GA/T 1400 (VIID) profile's
 * identifiers, times and request bodies, as pure functions: no I/O, no
 * clock, no state beyond const tables. The same event always gives the
 * same ids and the same bytes, so a retried request carries the ids of
 * the first attempt and the platform can drop what it already has.
 *
 * Identifiers (GA/T 1400.1, the coding rules of the basic and semantic
 * objects and of the business objects):
 *
 *   device id     20  region(8) industry(2) type(3) network(1) serial(6)
 *                     (GB/T 28181 annex D.1)
 *   image id      41  device id + "02" (image) + YYYYMMDDhhmmss + seq(5)
 *   object id     48  image id + "06" face | "02" motor vehicle + seq(5)
 *   SourceID      41  the first 41 digits of the object id
 *   business id   33  organisation(12) + "03" subscription | "04"
 *                     notification + YYYYMMDDhhmmss + seq(5)
 *
 * Every time field is YYYYMMDDhhmmss in Beijing time (UTC+8, no DST). The
 * choices where implementations and platforms differ are listed at the
 * top of forward_viid_id.c and forward_viid_body.c.
 */
#ifndef GRIDBRIDGE_FORWARD_VIID_H
#define GRIDBRIDGE_FORWARD_VIID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward_profile.h"

#define VIID_DEVICE_ID_LEN 20
#define VIID_IMAGE_ID_LEN 41
#define VIID_OBJECT_ID_LEN 48
#define VIID_BUSINESS_ID_LEN 33
#define VIID_ORG_LEN 12
#define VIID_TIME_LEN 14		/* YYYYMMDDhhmmss */
#define VIID_PICTURES_MAX 16		/* pictures of one object sent at most */

/* ---- device ids (forward_viid_id.c) ------------------------------------ */

/* The part of a 20-digit device id that is wrong: the first one, reading
 * from the left, after the length. */
enum viid_id_part {
	VIID_ID_OK,
	VIID_ID_LENGTH,			/* not exactly 20 characters */
	VIID_ID_REGION,			/* digits 1-8: not digits, or no province (GB/T 2260) */
	VIID_ID_INDUSTRY,		/* digits 9-10 */
	VIID_ID_TYPE,			/* digits 11-13 */
	VIID_ID_NETWORK,		/* digit 14 */
	VIID_ID_SERIAL,			/* digits 15-20 */
};

enum viid_id_part forward_viid_check_device_id(const char *id);
/* For a configuration error message: "length", "administrative region
 * (digits 1-8)", ... Never the id itself. */
const char *forward_viid_id_part_name(enum viid_id_part part);

/* ---- times (forward_viid_id.c) ----------------------------------------- */

/* `us` (UTC microseconds since the epoch) as YYYYMMDDhhmmss in Beijing
 * time, the fraction dropped (rounded down, also before 1970). Returns 0,
 * or -1 (out[0] = '\0') when the year is not within 1970..9999. */
int forward_viid_time_format(int64_t us, char out[VIID_TIME_LEN + 1]);

/* A platform's time: "YYYYMMDDhhmmss" or "YYYYMMDDhhmmssSSS" (Beijing
 * time), or milliseconds since the epoch (12 or 13 digits); each bare or
 * as a JSON string (in double quotes), with ASCII white space around it.
 * `s` need not be NUL-terminated. Returns 0 and UTC microseconds in *us,
 * or -1 for anything else (a date that does not exist included). */
int forward_viid_time_parse(const char *s, size_t len, int64_t *us);

/* ---- object ids (forward_viid_id.c) ------------------------------------ */

enum viid_object {
	VIID_OBJECT_MOTOR_VEHICLE = 2,	/* "02" */
	VIID_OBJECT_FACE = 6,		/* "06" */
};

enum viid_business {
	VIID_BUSINESS_SUBSCRIPTION = 3,	/* "03" */
	VIID_BUSINESS_NOTIFICATION = 4,	/* "04" */
};

/* The 5-digit base sequence of an event's images (`kind` 'i') or of its
 * object ('o'): from the SHA-256 of the event id, so it is the same on
 * every attempt. Picture k's sequence is (base + k) mod 100000, so the
 * pictures of one event never share an id. */
unsigned forward_viid_sequence(const uint8_t event_id[16], char kind);

/* The image id of the event's picture `index` (0 first): `device` (20
 * digits, checked by the caller), the event time and the sequence.
 * Returns 0, or -1 when the time cannot be formatted. */
int forward_viid_image_id(const char *device, const uint8_t event_id[16], int64_t time_us,
    unsigned index, char out[VIID_IMAGE_ID_LEN + 1]);
/* The object id: the image id of picture 0, the type, the sequence. */
void forward_viid_object_id(const char *image_id, enum viid_object kind,
    const uint8_t event_id[16], char out[VIID_OBJECT_ID_LEN + 1]);
/* SourceID: the first 41 digits of the object id. */
void forward_viid_source_id(const char *object_id, char out[VIID_IMAGE_ID_LEN + 1]);
/* A subscription or notification id: `org` (12 digits), the type, `time_us`
 * and a sequence from the SHA-256 of the `n` bytes at `key` (for a
 * notification: what it notifies, so that a retry reuses its id). Returns
 * 0, or -1 when `org` is not 12 digits or the time cannot be formatted. */
int forward_viid_business_id(const char *org, enum viid_business kind, int64_t time_us,
    const void *key, size_t n, char out[VIID_BUSINESS_ID_LEN + 1]);

/* ---- bodies (forward_viid_body.c) -------------------------------------- */

/* What the configuration says about a device, by its gridbridge ids.
 * Strings may be NULL (left out). */
struct viid_device {
	const char *id;			/* 20 digits */
	const char *name;		/* APEObject.Name */
	const char *model;
	const char *function_type;	/* APEObject.FunctionType; NULL: from the class */
	const char *ip_addr;
	int port;			/* 0: left out */
	const char *place_code;
	bool has_position;
	double longitude, latitude;
};

/* The device of an event (community id, device id as in the record), or
 * NULL when none is configured. */
typedef const struct viid_device *(*viid_device_fn)(void *ctx, const char *community,
    const char *device);

/* A lane's compass direction, as the platform codes it (Direction is sent
 * only for a lane listed here; its meaning differs between platforms). */
struct viid_lane_direction {
	const char *device;		/* the record's device id; NULL: any */
	const char *lane;		/* the record's lane */
	int direction;			/* the record's direction (gridbridge.v1.Direction); 0: any */
	const char *code;		/* 1 or 2 digits */
};

/* A picture the caller fetched (picture = data). data NULL: not fetched. */
struct viid_picture {
	const uint8_t *data;
	size_t len;
};

/* Picture `index` of record `record` of the batch. */
typedef const struct viid_picture *(*viid_picture_fn)(void *ctx, size_t record,
    size_t index);

enum viid_pictures {
	VIID_PICTURES_DATA,		/* base64 Data, StoragePath "" */
	VIID_PICTURES_URL,		/* StoragePath: the device's URL only */
};

struct viid_params {
	enum viid_pictures pictures;
	viid_device_fn device;
	void *device_ctx;
	viid_picture_fn picture;	/* VIID_PICTURES_DATA */
	void *picture_ctx;
	const struct viid_lane_direction *lanes;
	size_t nlanes;
};

/* Why a record is not in a body. The names (forward_viid_refusal_name)
 * are what the outbox records; they never carry the record's data. */
enum viid_refusal {
	VIID_INCLUDED,
	VIID_REFUSED_BAD_RECORD,	/* does not unpack */
	VIID_REFUSED_WRONG_TYPE,	/* not a person / vehicle passage / device status */
	VIID_REFUSED_NO_DEVICE,		/* no VIID device configured for the event's device */
	VIID_REFUSED_BAD_DEVICE_ID,	/* the configured id is not a valid 20-digit id */
	VIID_REFUSED_NO_PICTURE,	/* a face or vehicle without a picture */
	VIID_REFUSED_PICTURE_MISSING,	/* picture = data and the caller has no bytes */
	VIID_REFUSED_URL_TOO_LONG,	/* a picture URL over 256 bytes (StoragePath) */
	VIID_REFUSED_PLATE_TOO_LONG,	/* over 32 bytes without separators */
	VIID_REFUSED_BAD_TIME,		/* the event time is not within 1970..9999 */
};

const char *forward_viid_refusal_name(enum viid_refusal r);

/* What became of one record of a batch. */
struct viid_item {
	enum viid_refusal refusal;
	char object_id[VIID_OBJECT_ID_LEN + 1];	/* included: FaceID / MotorVehicleID;
						 * APEs: the ApeID; else "" */
};

/* {"FaceListObject":{"FaceObject":[...]}} of the person passages with a
 * picture; items[i] says what became of recs[i]. Returns the body
 * (malloc'd, *len bytes, NUL-terminated), or NULL (*len 0) when no record
 * was included. */
char *forward_viid_faces_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len);
/* {"MotorVehicleListObject":{"MotorVehicleObject":[...]}}, the same way. */
char *forward_viid_vehicles_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len);
/* {"APEListObject":{"APEObject":[...]}} of device status records (PUT
 * /VIID/APEs in upload mode). */
char *forward_viid_apes_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len);
/* {"APEStatusListObject":{"APEStatusObject":[{ApeID, IsOnline,
 * CurrentTime}...]}}: device status for notifications (cascade). */
char *forward_viid_ape_status_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len);

/* GA/T 1400 colour codes (ColorType: "1" black ... "13" transparent, "99"
 * other) of a colour as devices name it ("blue", "Blue", "蓝", "蓝色").
 * "99" when unknown. */
const char *forward_viid_colour_code(const char *name);
/* `plate` without separators (space, '.', '-', '_', '·', '•', ideographic
 * space), ASCII upper-cased, into out (at most 32 bytes and a NUL).
 * Returns its length, or -1 when longer than 32 bytes. */
int forward_viid_plate(const char *plate, char out[33]);
/* The width and height of a JPEG (from its first SOFn segment) or a PNG
 * (IHDR). Returns 0, or -1 when the bytes are neither or are cut short. */
int forward_viid_image_size(const uint8_t *p, size_t n, int *width, int *height);

#endif
