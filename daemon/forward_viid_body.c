/* forward_viid_body.c — GA/T 1400 request bodies: see forward_viid.h.
 *
 * Choices where the standard leaves room, implementations differ, or the
 * record does not say (to move to gridbridge.conf(5) with the profile):
 *
 * Every object
 * - InfoKind 1 (automatic collection, GA/T 1400.3); DeviceID and the ids'
 *   first 20 digits are the configured VIID device of the event's
 *   (community, device); an event without one is refused (no_device).
 * - Times are the event time (the device's), YYYYMMDDhhmmss, Beijing.
 * - Strings are bounded as GA/T 1400.3 types them: StoragePath and
 *   StorageUrlN 256 bytes (a longer URL refuses the record: cutting it
 *   would send a wrong address), PlateNo 32 bytes.
 *
 * Faces (POST /VIID/Faces, FaceObject)
 * - A person passage with a picture_url. The access terminal's snapshot
 *   is one picture framed on the face: sent as SubImageInfo Type "11"
 *   (face), EventSort 10 as in the samples. SourceID is its ImageID.
 * - ShotTime, FaceAppearTime and FaceDisAppearTime are all the event time
 *   (a gate reports one instant).
 * - IsSuspectedTerrorist, IsCriminalInvolved, IsDetainees, IsVictim and
 *   IsSuspiciousPerson, mandatory, are 0: a gate does not judge. IsDriver
 *   0 (a pedestrian gate). IsForeigner is left out: the gate does not
 *   know (the sample's 0 would be a claim).
 * - LeftTopX/Y, RightBtmX/Y are left out: the record carries no box.
 * - Name, card and person numbers are never sent: the platform gets the
 *   picture, not the community's register.
 *
 * Motor vehicles (POST /VIID/MotorVehicles, MotorVehicleObject)
 * - The record does not say which picture is which. A picture whose
 *   file name (the URL's last path segment) contains "plate" is the
 *   plate picture (Type "02"), the others vehicle pictures (Type "01");
 *   vehicle pictures go first, so SourceID (image 0) is a vehicle picture
 *   when there is one. StorageUrl1 (always sent) is the first of them;
 *   StorageUrl2 the plate picture when there is one. EventSort 12 as in
 *   the samples. No picture: refused (StorageUrl1 is mandatory).
 * - PlateNo: the plate as written without separators, ASCII upper case.
 *   "无车牌", "无牌", "无牌车", "UNKNOWN", "NOPLATE", "NONE" mean no plate
 *   was read: HasPlate "0", PlateNo "无车牌", PlateColor "99".
 * - PlateColor and VehicleColor: GA/T 1400.3 ColorType codes (1 black,
 *   2 white, 3 grey, 4 red, 5 blue, 6 yellow, 7 orange, 8 brown, 9 green,
 *   10 purple, 11 cyan, 12 pink, 13 transparent, 99 other), from the
 *   English (any case) or Chinese names devices use; silver counts as
 *   grey, dark blue as blue, the new-energy greens ("gradientGreen",
 *   "yellowGreen") as green; anything else "99". GA 24.8's lettered
 *   vehicle colour codes (A white ... Z other) are not used: the platforms
 *   and samples use ColorType.
 * - PlateClass (GA 24.7): the record has no plate type; a blue plate is
 *   "02" (small vehicle, GA 36 issues blue plates to no other class),
 *   every other "99" (other).
 * - LaneNo: the record's lane when it is a number 1..99, else left out.
 * - Direction only for a lane of the caller's table (lane and, when
 *   given, the record's in/out direction); codes differ between
 *   platforms, so the table's code is sent as it is (1-2 digits).
 *
 * Pictures
 * - picture = data: the caller fetched the bytes; they go base64 into
 *   Data and StoragePath is "" (as in the samples: the platform cannot
 *   reach the device's URL). A picture the caller has no bytes for
 *   refuses the record (picture_missing) so that the caller can retry it.
 *   Width and Height come from the JPEG's (or PNG's) header, and are left
 *   out when it has none; FileFormat from the bytes ("Jpeg", "Png",
 *   "Bmp", "Gif", else "Other").
 * - picture = url: StoragePath is the device's URL, no Data; Width and
 *   Height left out (unknown without fetching); FileFormat from the URL's
 *   extension, "Jpeg" when it has none (device snapshots are JPEG).
 *
 * Devices (APEObject, APEStatusObject)
 * - IsOnline "1" online (also a heartbeat), "2" offline, "9" other.
 * - FunctionType from the configuration, else from the device class:
 *   access gate "2" (person checkpoint), vehicle barrier "1" (vehicle
 *   checkpoint), camera "5" (general surveillance), others "99".
 * - The other APEObject fields (Name, Model, IPAddr, Port, Longitude,
 *   Latitude, PlaceCode) only when the configuration gives them, and only
 *   within their types (Name and Model 100 bytes, FunctionType 30,
 *   IPAddr 39, PlaceCode 6, a port 1..65535, degrees in range): the
 *   configuration checks them; the builder never sends one that does
 *   not fit.
 *
 * Notifications (cascade mode, SubscribeNotificationObject)
 * - One notification per record, so that the platform's answer per
 *   NotificationID is the record's. The object is the upload's, byte for
 *   byte: a FaceObject or MotorVehicleObject as POSTed in upload mode, a
 *   device status as the APEStatusObject (ApeID, IsOnline, CurrentTime).
 * - A record is tried as a face, a motor vehicle, then a device status;
 *   the first that takes its type decides, its refusal included (a person
 *   passage without a picture is no_picture, not wrong_type). Which kinds
 *   a subscription asked for is the caller's to filter.
 * - NotificationID: the business id of the configured organisation, the
 *   event time (not the clock's: a retry must keep the id) and the key
 *   SubscribeID + event id, so another subscription's notification of the
 *   same event has another id. TriggerTime is the event time, Title the
 *   subscription's ("" without), InfoIDs the object's id.
 * - An organisation code that is not 12 digits or a SubscribeID that is
 *   not 33 digits (the configuration and the subscription reader check
 *   them) builds nothing: every record bad_device_id, the identifiers
 *   notifications are made of being wrong.
 * - The catalogue (SubscribeDetail 3) is one notification listing every
 *   device in DeviceList.APEObject[], with the upload's APEObject fields.
 *   IsOnline is the caller's ("1", "2", "9"; anything else is sent as
 *   "9"); FunctionType the configured one when it fits its type, else
 *   "99": there is no event whose device class could say. A device whose
 *   id is not a valid 20-digit id is left out, a repeated id listed once.
 *   NotificationID from the time the subscription was made and the key
 *   SubscribeID + "catalogue": a catalogue sent again keeps its id.
 */
#include "forward_viid.h"
#include "forward_viid_subscribe.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "event.pb-c.h"
#include "event_json.h"
#include "util.h"

#define URL_MAX 256
#define PLATE_MAX 32
#define PICTURES_MAX 16

typedef Gridbridge__V1__Event Event;

const char *
forward_viid_refusal_name(enum viid_refusal r)
{
	switch (r) {
	case VIID_INCLUDED:
		return "included";
	case VIID_REFUSED_BAD_RECORD:
		return "bad_record";
	case VIID_REFUSED_WRONG_TYPE:
		return "wrong_type";
	case VIID_REFUSED_NO_DEVICE:
		return "no_device";
	case VIID_REFUSED_BAD_DEVICE_ID:
		return "bad_device_id";
	case VIID_REFUSED_NO_PICTURE:
		return "no_picture";
	case VIID_REFUSED_PICTURE_MISSING:
		return "picture_missing";
	case VIID_REFUSED_URL_TOO_LONG:
		return "url_too_long";
	case VIID_REFUSED_PLATE_TOO_LONG:
		return "plate_too_long";
	case VIID_REFUSED_BAD_TIME:
		return "bad_time";
	}
	return "unknown";
}

/* ---- code tables ------------------------------------------------------- */

static const struct {
	const char *name;		/* lower case, without spaces, '_' and '-' */
	const char *code;
} colours[] = {
	{ "black", "1" }, { "黑", "1" },
	{ "white", "2" }, { "白", "2" },
	{ "gray", "3" }, { "grey", "3" }, { "灰", "3" }, { "silver", "3" }, { "银", "3" },
	{ "deepgray", "3" }, { "darkgray", "3" }, { "darkgrey", "3" }, { "深灰", "3" },
	{ "red", "4" }, { "红", "4" },
	{ "blue", "5" }, { "蓝", "5" }, { "deepblue", "5" }, { "darkblue", "5" },
	{ "深蓝", "5" },
	{ "yellow", "6" }, { "黄", "6" },
	{ "orange", "7" }, { "橙", "7" },
	{ "brown", "8" }, { "棕", "8" },
	{ "green", "9" }, { "绿", "9" }, { "gradientgreen", "9" }, { "yellowgreen", "9" },
	{ "newenergygreen", "9" }, { "渐变绿", "9" }, { "黄绿", "9" },
	{ "purple", "10" }, { "紫", "10" },
	{ "cyan", "11" }, { "青", "11" },
	{ "pink", "12" }, { "粉", "12" },
	{ "transparent", "13" }, { "透明", "13" },
};

const char *
forward_viid_colour_code(const char *name)
{
	char key[64];
	size_t o = 0;

	if (name == NULL)
		return "99";
	for (const char *c = name; *c != '\0'; c++) {
		if (*c == ' ' || *c == '_' || *c == '-')
			continue;
		if (o + 1 >= sizeof(key))
			return "99";
		key[o++] = *c >= 'A' && *c <= 'Z' ? (char)(*c - 'A' + 'a') : *c;
	}
	key[o] = '\0';
	/* "蓝色": the colour word's suffix (UTF-8 e8 89 b2). */
	if (o > 3 && strcmp(key + o - 3, "\xe8\x89\xb2") == 0)
		key[o - 3] = '\0';
	for (size_t i = 0; i < sizeof(colours) / sizeof(colours[0]); i++)
		if (strcmp(key, colours[i].name) == 0)
			return colours[i].code;
	return "99";
}

int
forward_viid_plate(const char *plate, char out[PLATE_MAX + 1])
{
	const unsigned char *p = (const unsigned char *)plate;
	size_t n = strlen(plate), o = 0;

	for (size_t i = 0; i < n;) {
		size_t skip = 0;
		if (p[i] == ' ' || p[i] == '.' || p[i] == '-' || p[i] == '_' || p[i] == '\t')
			skip = 1;
		else if (p[i] == 0xc2 && i + 1 < n && p[i + 1] == 0xb7)		/* · */
			skip = 2;
		else if (p[i] == 0xe2 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] == 0xa2)
			skip = 3;						/* • */
		else if (p[i] == 0xe3 && i + 2 < n && p[i + 1] == 0x80 && p[i + 2] == 0x80)
			skip = 3;						/* ideographic space */
		if (skip > 0) {
			i += skip;
			continue;
		}
		if (o >= PLATE_MAX) {
			out[0] = '\0';
			return -1;
		}
		out[o++] = p[i] >= 'a' && p[i] <= 'z' ? (char)(p[i] - 'a' + 'A') : (char)p[i];
		i++;
	}
	out[o] = '\0';
	return (int)o;
}

static bool
no_plate(const char *plate)
{
	static const char *const marks[] = { "无车牌", "无牌", "无牌车", "UNKNOWN", "NOPLATE", "NONE" };
	if (plate[0] == '\0')
		return true;
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		if (strcmp(plate, marks[i]) == 0)
			return true;
	return false;
}

/* ---- pictures ---------------------------------------------------------- */

static unsigned
be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int
forward_viid_image_size(const uint8_t *p, size_t n, int *width, int *height)
{
	if (p == NULL)
		return -1;
	if (n >= 24 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(p + 12, "IHDR", 4) == 0) {
		uint32_t w = be32(p + 16), h = be32(p + 20);
		if (w == 0 || h == 0 || w > 0x7fffffff || h > 0x7fffffff)
			return -1;
		*width = (int)w;
		*height = (int)h;
		return 0;
	}
	if (n < 4 || p[0] != 0xff || p[1] != 0xd8)
		return -1;
	/* Segments: ff, marker, 2-byte length (including itself), payload. */
	for (size_t i = 2; i + 4 <= n;) {
		if (p[i] != 0xff)
			return -1;
		uint8_t m = p[i + 1];
		if (m == 0xff) {		/* fill byte */
			i++;
			continue;
		}
		if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {	/* no length */
			i += 2;
			continue;
		}
		if (m == 0xd9 || m == 0xda)	/* end, or the scan before any frame */
			return -1;
		size_t len = be16(p + i + 2);
		if (len < 2)
			return -1;
		/* SOF0..SOF15 but DHT (c4), JPG (c8) and DAC (cc). */
		if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			if (len < 7 || i + 9 > n)
				return -1;
			unsigned h = be16(p + i + 5), w = be16(p + i + 7);
			if (w == 0 || h == 0)
				return -1;
			*width = (int)w;
			*height = (int)h;
			return 0;
		}
		i += 2 + len;
	}
	return -1;
}

static const char *
format_of_bytes(const uint8_t *p, size_t n)
{
	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return "Jpeg";
	if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
		return "Png";
	if (n >= 4 && memcmp(p, "GIF8", 4) == 0)
		return "Gif";
	if (n >= 2 && memcmp(p, "BM", 2) == 0)
		return "Bmp";
	return "Other";
}

/* The URL's last path segment: [*seg, *seg + *len). */
static void
last_segment(const char *url, const char **seg, size_t *len)
{
	size_t end = strcspn(url, "?#");
	size_t start = end;
	while (start > 0 && url[start - 1] != '/')
		start--;
	*seg = url + start;
	*len = end - start;
}

static bool
ends_with_ci(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	if (n < k)
		return false;
	for (size_t i = 0; i < k; i++) {
		char c = s[n - k + i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != suffix[i])
			return false;
	}
	return true;
}

static const char *
format_of_url(const char *url)
{
	const char *seg;
	size_t len;

	last_segment(url, &seg, &len);
	if (ends_with_ci(seg, len, ".png"))
		return "Png";
	if (ends_with_ci(seg, len, ".bmp"))
		return "Bmp";
	if (ends_with_ci(seg, len, ".gif"))
		return "Gif";
	return "Jpeg";
}

static bool
plate_picture(const char *url)
{
	const char *seg;
	size_t len;

	last_segment(url, &seg, &len);
	for (size_t i = 0; i + 5 <= len; i++)
		if (strncasecmp(seg + i, "plate", 5) == 0)
			return true;
	return false;
}

/* ---- the objects ------------------------------------------------------- */

/* One picture to send: where it is in the record, its URL and type. */
struct pic {
	size_t index;			/* in the record, for the picture callback */
	const char *url;
	const char *type;		/* SubImageInfo Type */
};

/* What every object of one record shares. */
struct ctx {
	const Event *ev;
	size_t rec;
	const struct viid_params *p;
	const struct viid_device *dev;
	char time[VIID_TIME_LEN + 1];
	char object_id[VIID_OBJECT_ID_LEN + 1];
	char source_id[VIID_IMAGE_ID_LEN + 1];
};

static void
set_str(json_t *o, const char *key, const char *v)
{
	json_object_set_new(o, key, json_string(v));
}

static void
set_int(json_t *o, const char *key, long long v)
{
	json_object_set_new(o, key, json_integer(v));
}

/* The SubImageList of `pics`, or NULL with the refusal. */
static json_t *
sub_images(const struct ctx *c, const struct pic *pics, size_t npics, int event_sort,
    enum viid_refusal *why)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < npics; i++) {
		char image_id[VIID_IMAGE_ID_LEN + 1];
		const struct viid_picture *pic = NULL;

		if (c->p->pictures == VIID_PICTURES_DATA) {
			if (c->p->picture != NULL)
				pic = c->p->picture(c->p->picture_ctx, c->rec, pics[i].index);
			if (pic == NULL || pic->data == NULL) {
				json_decref(arr);
				*why = VIID_REFUSED_PICTURE_MISSING;
				return NULL;
			}
		}
		/* The time was formatted already: this cannot fail. */
		forward_viid_image_id(c->dev->id, c->ev->id.data, c->ev->event_time_us,
		    (unsigned)i, image_id);
		json_t *o = json_object();
		set_str(o, "ImageID", image_id);
		set_int(o, "EventSort", event_sort);
		set_str(o, "DeviceID", c->dev->id);
		set_str(o, "StoragePath", pic != NULL ? "" : pics[i].url);
		set_str(o, "Type", pics[i].type);
		set_str(o, "FileFormat", pic != NULL ? format_of_bytes(pic->data, pic->len) :
		    format_of_url(pics[i].url));
		set_str(o, "ShotTime", c->time);
		int w, h;
		if (pic != NULL && forward_viid_image_size(pic->data, pic->len, &w, &h) == 0) {
			set_int(o, "Width", w);
			set_int(o, "Height", h);
		}
		if (pic != NULL) {
			char *b = base64_encode(pic->data, pic->len);
			if (b == NULL)
				util_oom(pic->len);
			set_str(o, "Data", b);
			free(b);
		}
		json_array_append_new(arr, o);
	}
	json_t *list = json_object();
	json_object_set_new(list, "SubImageInfoObject", arr);
	return list;
}

/* The object's ids, from picture 0. */
static void
object_ids(struct ctx *c, enum viid_object kind)
{
	char image0[VIID_IMAGE_ID_LEN + 1];

	forward_viid_image_id(c->dev->id, c->ev->id.data, c->ev->event_time_us, 0, image0);
	forward_viid_object_id(image0, kind, c->ev->id.data, c->object_id);
	forward_viid_source_id(c->object_id, c->source_id);
}

static json_t *
face_object(struct ctx *c, enum viid_refusal *why)
{
	const Gridbridge__V1__PersonPassage *pp = c->ev->person;

	if (c->ev->body_case != GRIDBRIDGE__V1__EVENT__BODY_PERSON || pp == NULL) {
		*why = VIID_REFUSED_WRONG_TYPE;
		return NULL;
	}
	if (pp->picture_url == NULL || pp->picture_url[0] == '\0') {
		*why = VIID_REFUSED_NO_PICTURE;
		return NULL;
	}
	if (strlen(pp->picture_url) > URL_MAX) {
		*why = VIID_REFUSED_URL_TOO_LONG;
		return NULL;
	}
	struct pic pic = { 0, pp->picture_url, "11" };
	json_t *subs = sub_images(c, &pic, 1, 10, why);
	if (subs == NULL)
		return NULL;
	object_ids(c, VIID_OBJECT_FACE);

	json_t *o = json_object();
	set_str(o, "FaceID", c->object_id);
	set_int(o, "InfoKind", 1);
	set_str(o, "SourceID", c->source_id);
	set_str(o, "DeviceID", c->dev->id);
	set_str(o, "ShotTime", c->time);
	set_str(o, "FaceAppearTime", c->time);
	set_str(o, "FaceDisAppearTime", c->time);
	set_int(o, "IsDriver", 0);
	set_int(o, "IsSuspectedTerrorist", 0);
	set_int(o, "IsCriminalInvolved", 0);
	set_int(o, "IsDetainees", 0);
	set_int(o, "IsVictim", 0);
	set_int(o, "IsSuspiciousPerson", 0);
	json_object_set_new(o, "SubImageList", subs);
	return o;
}

/* The lane as LaneNo (1..99), or 0. */
static int
lane_number(const char *lane)
{
	if (lane == NULL || lane[0] == '\0' || strlen(lane) > 2)
		return 0;
	int v = 0;
	for (const char *s = lane; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static const char *
lane_direction(const struct ctx *c, const Gridbridge__V1__VehiclePassage *v)
{
	for (size_t i = 0; i < c->p->nlanes; i++) {
		const struct viid_lane_direction *l = &c->p->lanes[i];
		if (l->device != NULL && strcmp(l->device, c->ev->device_id) != 0)
			continue;
		if (l->lane == NULL || v->lane == NULL || strcmp(l->lane, v->lane) != 0)
			continue;
		if (l->direction != 0 && l->direction != (int)v->direction)
			continue;
		size_t n = l->code != NULL ? strlen(l->code) : 0;
		if (n < 1 || n > 2 || l->code[0] < '0' || l->code[0] > '9' ||
		    (n == 2 && (l->code[1] < '0' || l->code[1] > '9')))
			continue;	/* the configuration checks codes; never send a bad one */
		return l->code;
	}
	return NULL;
}

static json_t *
vehicle_object(struct ctx *c, enum viid_refusal *why)
{
	const Gridbridge__V1__VehiclePassage *v = c->ev->vehicle;
	struct pic pics[PICTURES_MAX];
	size_t npics = 0;
	char plate[PLATE_MAX + 1];

	if (c->ev->body_case != GRIDBRIDGE__V1__EVENT__BODY_VEHICLE || v == NULL) {
		*why = VIID_REFUSED_WRONG_TYPE;
		return NULL;
	}
	/* Vehicle pictures first, then plate pictures. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < v->n_picture_urls && npics < PICTURES_MAX; i++) {
			const char *url = v->picture_urls[i];
			if (url == NULL || url[0] == '\0' || plate_picture(url) != (pass == 1))
				continue;
			if (strlen(url) > URL_MAX) {
				*why = VIID_REFUSED_URL_TOO_LONG;
				return NULL;
			}
			pics[npics++] = (struct pic){ i, url, pass == 0 ? "01" : "02" };
		}
	}
	if (npics == 0) {
		*why = VIID_REFUSED_NO_PICTURE;
		return NULL;
	}
	if (forward_viid_plate(v->plate != NULL ? v->plate : "", plate) < 0) {
		*why = VIID_REFUSED_PLATE_TOO_LONG;
		return NULL;
	}
	json_t *subs = sub_images(c, pics, npics, 12, why);
	if (subs == NULL)
		return NULL;
	object_ids(c, VIID_OBJECT_MOTOR_VEHICLE);

	bool has_plate = !no_plate(plate);
	const char *plate_colour = has_plate ? forward_viid_colour_code(v->plate_color) : "99";
	json_t *o = json_object();
	set_str(o, "MotorVehicleID", c->object_id);
	set_int(o, "InfoKind", 1);
	set_str(o, "SourceID", c->source_id);
	set_str(o, "DeviceID", c->dev->id);
	set_str(o, "StorageUrl1", pics[0].url);
	if (strcmp(pics[npics - 1].type, "02") == 0 && strcmp(pics[0].type, "01") == 0)
		set_str(o, "StorageUrl2", pics[npics - 1].url);
	int lane = lane_number(v->lane);
	if (lane > 0)
		set_int(o, "LaneNo", lane);
	set_str(o, "HasPlate", has_plate ? "1" : "0");
	set_str(o, "PlateClass", strcmp(plate_colour, "5") == 0 ? "02" : "99");
	set_str(o, "PlateColor", plate_colour);
	set_str(o, "PlateNo", has_plate ? plate : "无车牌");
	set_str(o, "VehicleColor", forward_viid_colour_code(v->vehicle_color));
	const char *dir = lane_direction(c, v);
	if (dir != NULL)
		set_str(o, "Direction", dir);
	set_str(o, "PassTime", c->time);
	json_object_set_new(o, "SubImageList", subs);
	return o;
}

static const char *
is_online(const Event *ev)
{
	Gridbridge__V1__DeviceState s = ev->status->state;

	if (s == GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_ONLINE ||
	    s == GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_HEARTBEAT)
		return "1";
	if (s == GRIDBRIDGE__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE)
		return "2";
	return "9";
}

static const char *
function_type(const struct ctx *c)
{
	if (c->dev->function_type != NULL)
		return c->dev->function_type;
	switch (c->ev->device_class) {
	case GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_ACCESS_GATE:
		return "2";
	case GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_VEHICLE_BARRIER:
		return "1";
	case GRIDBRIDGE__V1__DEVICE_CLASS__DEVICE_CLASS_CAMERA:
		return "5";
	default:
		return "99";
	}
}

static bool
status_record(struct ctx *c, enum viid_refusal *why)
{
	if (c->ev->body_case != GRIDBRIDGE__V1__EVENT__BODY_STATUS || c->ev->status == NULL) {
		*why = VIID_REFUSED_WRONG_TYPE;
		return false;
	}
	memcpy(c->object_id, c->dev->id, VIID_DEVICE_ID_LEN + 1);
	return true;
}

/* A configured string, sent when it fits its GA/T 1400.3 type. */
static void
set_bounded(json_t *o, const char *key, const char *v, size_t max)
{
	if (v != NULL && v[0] != '\0' && strlen(v) <= max)
		set_str(o, key, v);
}

/* The APEObject of device `d`: the upload's (from a status record) and the
 * catalogue's (from the configuration). */
static json_t *
ape_fields(const struct viid_device *d, const char *function, const char *online)
{
	json_t *o = json_object();
	set_str(o, "ApeID", d->id);
	set_bounded(o, "Name", d->name, 100);
	set_bounded(o, "Model", d->model, 100);
	set_bounded(o, "FunctionType", function, 30);
	set_bounded(o, "IPAddr", d->ip_addr, 39);	/* IPv6 text at most */
	if (d->port > 0 && d->port <= 65535)
		set_int(o, "Port", d->port);
	if (d->has_position && d->longitude >= -180 && d->longitude <= 180 &&
	    d->latitude >= -90 && d->latitude <= 90) {
		json_object_set_new(o, "Longitude", json_real(d->longitude));
		json_object_set_new(o, "Latitude", json_real(d->latitude));
	}
	set_bounded(o, "PlaceCode", d->place_code, 6);
	set_str(o, "IsOnline", online);
	return o;
}

static json_t *
ape_object(struct ctx *c, enum viid_refusal *why)
{
	if (!status_record(c, why))
		return NULL;
	return ape_fields(c->dev, function_type(c), is_online(c->ev));
}

static json_t *
ape_status_object(struct ctx *c, enum viid_refusal *why)
{
	if (!status_record(c, why))
		return NULL;
	json_t *o = json_object();
	set_str(o, "ApeID", c->dev->id);
	set_str(o, "IsOnline", is_online(c->ev));
	set_str(o, "CurrentTime", c->time);
	return o;
}

/* ---- the bodies -------------------------------------------------------- */

typedef json_t *(*object_fn)(struct ctx *c, enum viid_refusal *why);

/* What one() made an object of, for a notification. */
struct made {
	size_t fn;			/* the index of the function that made it */
	int64_t time_us;		/* the event time */
	char time[VIID_TIME_LEN + 1];	/* ... as sent */
	uint8_t event_id[16];
};

/* The object of one record, made by the first of fns[0..nfns) that takes
 * its type (does not refuse it as wrong_type); or NULL with
 * item->refusal. *m, when given, says which function and the event. */
static json_t *
one(const struct forward_record *r, size_t rec, const struct viid_params *p,
    const object_fn *fns, size_t nfns, struct viid_item *item, struct made *m)
{
	struct ctx c = { .rec = rec, .p = p };
	enum viid_refusal why = VIID_INCLUDED;
	json_t *o = NULL;

	Event *ev = gridbridge__v1__event__unpack(NULL, r->len, r->record);
	if (ev == NULL || ev->id.len != 16) {
		why = VIID_REFUSED_BAD_RECORD;
		goto out;
	}
	c.ev = ev;
	c.dev = p->device != NULL ? p->device(p->device_ctx, ev->community_id, ev->device_id) :
	    NULL;
	if (c.dev == NULL) {
		why = VIID_REFUSED_NO_DEVICE;
		goto out;
	}
	if (forward_viid_check_device_id(c.dev->id) != VIID_ID_OK) {
		why = VIID_REFUSED_BAD_DEVICE_ID;
		goto out;
	}
	if (forward_viid_time_format(ev->event_time_us, c.time) != 0) {
		why = VIID_REFUSED_BAD_TIME;
		goto out;
	}
	for (size_t k = 0; k < nfns; k++) {
		o = fns[k](&c, &why);
		if (o != NULL || why != VIID_REFUSED_WRONG_TYPE) {
			if (m != NULL)
				m->fn = k;
			break;
		}
	}
	if (o != NULL && m != NULL) {
		m->time_us = ev->event_time_us;
		memcpy(m->time, c.time, sizeof(m->time));
		memcpy(m->event_id, ev->id.data, sizeof(m->event_id));
	}
out:
	item->refusal = o != NULL ? VIID_INCLUDED : why;
	if (o != NULL)
		memcpy(item->object_id, c.object_id, sizeof(item->object_id));
	else
		item->object_id[0] = '\0';
	if (ev != NULL)
		gridbridge__v1__event__free_unpacked(ev, NULL);
	return o;
}

/* {list:{object:arr}} as sent (arr is taken), or NULL when arr is empty. */
static char *
wrap(json_t *arr, const char *list, const char *object, size_t *len)
{
	*len = 0;
	if (json_array_size(arr) == 0) {
		json_decref(arr);
		return NULL;
	}
	json_t *inner = json_object(), *root = json_object();
	json_object_set_new(inner, object, arr);
	json_object_set_new(root, list, inner);
	/* Reals are only degrees: 12 significant digits keep micro-degrees
	 * and print 31.8206 as such, not as 31.820599999999999. */
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
	json_decref(root);
	if (s == NULL)
		util_oom(0);
	*len = strlen(s);
	return s;
}

static char *
body(const char *list, const char *object, object_fn fn, const struct forward_record *recs,
    size_t n, const struct viid_params *p, struct viid_item *items, size_t *len)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++) {
		json_t *o = one(&recs[i], i, p, &fn, 1, &items[i], NULL);
		if (o != NULL)
			json_array_append_new(arr, o);
	}
	return wrap(arr, list, object, len);
}

char *
forward_viid_faces_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len)
{
	return body("FaceListObject", "FaceObject", face_object, recs, n, p, items, len);
}

char *
forward_viid_vehicles_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len)
{
	return body("MotorVehicleListObject", "MotorVehicleObject", vehicle_object, recs, n, p,
	    items, len);
}

char *
forward_viid_apes_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len)
{
	return body("APEListObject", "APEObject", ape_object, recs, n, p, items, len);
}

char *
forward_viid_ape_status_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len)
{
	return body("APEStatusListObject", "APEStatusObject", ape_status_object, recs, n, p,
	    items, len);
}

/* ---- notifications (cascade) ------------------------------------------- */

/* What a notification carries, by the function that made its object. */
static const object_fn notified_fns[] = { face_object, vehicle_object, ape_status_object };
static const struct {
	const char *list, *object;
} notified[] = {
	{ "FaceObjectList", "FaceObject" },
	{ "MotorVehicleObjectList", "MotorVehicleObject" },
	{ "DeviceStatusList", "APEStatusObject" },
};
_Static_assert(sizeof(notified_fns) / sizeof(notified_fns[0]) ==
    sizeof(notified) / sizeof(notified[0]), "one list per object function");

static bool
all_digits(const char *s, size_t n)
{
	if (s == NULL || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool
notify_ok(const struct viid_notify *s)
{
	return s != NULL && all_digits(s->subscribe_id, VIID_BUSINESS_ID_LEN) &&
	    all_digits(s->org, VIID_ORG_LEN);
}

/* A SubscribeNotificationObject with `objects` (taken) in list.object. */
static json_t *
notification(const char *id, const struct viid_notify *s, const char *when,
    const char *info_ids, const char *list, const char *object, json_t *objects)
{
	json_t *o = json_object(), *inner = json_object();
	json_t *title = json_string(s->title != NULL ? s->title : "");

	set_str(o, "NotificationID", id);
	set_str(o, "SubscribeID", s->subscribe_id);
	/* A title that is not UTF-8 (the reader never keeps one) is sent empty. */
	json_object_set_new(o, "Title", title != NULL ? title : json_string(""));
	set_str(o, "TriggerTime", when);
	set_str(o, "InfoIDs", info_ids);
	json_object_set_new(inner, object, objects);
	json_object_set_new(o, list, inner);
	return o;
}

char *
forward_viid_notifications_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, const struct viid_notify *s, struct viid_item *items,
    size_t *len)
{
	json_t *arr = json_array();
	bool ok = notify_ok(s);

	for (size_t i = 0; i < n; i++) {
		struct made m;
		if (!ok) {
			items[i].refusal = VIID_REFUSED_BAD_DEVICE_ID;
			items[i].object_id[0] = '\0';
			continue;
		}
		json_t *o = one(&recs[i], i, p, notified_fns,
		    sizeof(notified_fns) / sizeof(notified_fns[0]), &items[i], &m);
		if (o == NULL)
			continue;
		uint8_t key[VIID_BUSINESS_ID_LEN + sizeof(m.event_id)];
		char id[VIID_BUSINESS_ID_LEN + 1];
		memcpy(key, s->subscribe_id, VIID_BUSINESS_ID_LEN);
		memcpy(key + VIID_BUSINESS_ID_LEN, m.event_id, sizeof(m.event_id));
		/* The organisation was checked and the time formatted: this cannot fail. */
		forward_viid_business_id(s->org, VIID_BUSINESS_NOTIFICATION, m.time_us, key,
		    sizeof(key), id);
		json_t *objects = json_array();
		json_array_append_new(objects, o);
		json_array_append_new(arr, notification(id, s, m.time, items[i].object_id,
		    notified[m.fn].list, notified[m.fn].object, objects));
		memcpy(items[i].object_id, id, sizeof(id));
	}
	return wrap(arr, "SubscribeNotificationListObject", "SubscribeNotificationObject", len);
}

static const char *
online_code(const char *const *online, size_t i)
{
	const char *v = online != NULL ? online[i] : NULL;

	if (v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "2") == 0))
		return v;
	return "9";
}

char *
forward_viid_catalogue_body(const struct viid_device *devs, const char *const *online,
    size_t n, const struct viid_notify *s, int64_t made_us,
    char notification_id[VIID_BUSINESS_ID_LEN + 1], size_t *len)
{
	static const char label[] = "catalogue";
	uint8_t key[VIID_BUSINESS_ID_LEN + sizeof(label) - 1];
	char id[VIID_BUSINESS_ID_LEN + 1], when[VIID_TIME_LEN + 1];

	notification_id[0] = '\0';
	*len = 0;
	if (!notify_ok(s) || forward_viid_time_format(made_us, when) != 0)
		return NULL;
	memcpy(key, s->subscribe_id, VIID_BUSINESS_ID_LEN);
	memcpy(key + VIID_BUSINESS_ID_LEN, label, sizeof(label) - 1);
	forward_viid_business_id(s->org, VIID_BUSINESS_NOTIFICATION, made_us, key, sizeof(key),
	    id);

	json_t *apes = json_array();
	char *info = util_malloc(n * (VIID_DEVICE_ID_LEN + 1) + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		const struct viid_device *d = &devs[i];
		if (forward_viid_check_device_id(d->id) != VIID_ID_OK)
			continue;
		bool repeated = false;
		for (size_t k = 0; k < i && !repeated; k++)
			repeated = devs[k].id != NULL && strcmp(devs[k].id, d->id) == 0;
		if (repeated)
			continue;
		const char *f = d->function_type;
		if (f == NULL || f[0] == '\0' || strlen(f) > 30)
			f = "99";
		json_array_append_new(apes, ape_fields(d, f, online_code(online, i)));
		if (o > 0)
			info[o++] = ',';
		memcpy(info + o, d->id, VIID_DEVICE_ID_LEN);
		o += VIID_DEVICE_ID_LEN;
	}
	info[o] = '\0';
	if (json_array_size(apes) == 0) {
		json_decref(apes);
		free(info);
		return NULL;
	}
	json_t *arr = json_array();
	json_array_append_new(arr, notification(id, s, when, info, "DeviceList", "APEObject",
	    apes));
	free(info);
	memcpy(notification_id, id, sizeof(id));
	return wrap(arr, "SubscribeNotificationListObject", "SubscribeNotificationObject", len);
}
