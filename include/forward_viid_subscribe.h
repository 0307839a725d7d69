/* forward_viid_subscribe.c — GA/T 1400 cascade mode (the platform
 * subscribes to us), as pure functions: the subscription requests a
 * platform sends to our listener (POST/PUT/DELETE /VIID/Subscribes, PUT
 * /VIID/Subscribes/{id}), our ResponseStatus answers, and the
 * SubscribeNotificationListObject bodies we push to a subscription's
 * ReceiveAddr (in forward_viid_body.c, beside the upload bodies). No I/O,
 * no clock, no state; every field read is bounded and any bytes at all
 * are answered without a crash.
 *
 * Requests (GA/T 1400.4):
 *
 *   POST   /VIID/Subscribes            SubscribeListObject: subscribe
 *   PUT    /VIID/Subscribes            SubscribeListObject: update (an
 *                                      object with OperateType 1 cancels)
 *   PUT    /VIID/Subscribes/{id}       SubscribeObject: cancel {id}
 *   DELETE /VIID/Subscribes?IDList=    delete the listed subscriptions
 *
 * answered with ResponseStatusListObject (one ResponseStatusObject per
 * subscription, Id = SubscribeID) or, for PUT /{id}, one
 * ResponseStatusObject. The choices where implementations differ are at
 * the top of forward_viid_subscribe.c.
 */
#ifndef GRIDBRIDGE_FORWARD_VIID_SUBSCRIBE_H
#define GRIDBRIDGE_FORWARD_VIID_SUBSCRIBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward_viid.h"

#define VIID_SUB_BODY_MAX (1 << 20)	/* a longer request body is refused */
#define VIID_SUB_MAX 100		/* subscriptions in one request; more: refused */
#define VIID_SUB_TEXT_MAX 256		/* Title, Applicant*, Reason, Cancel*: bytes kept */
#define VIID_SUB_URL_MAX 256		/* ReceiveAddr (GA/T 1400.3 URL type) */
#define VIID_SUB_RESOURCES_MAX 64	/* ids in ResourceURI */
#define VIID_SUB_WHY_MAX 160		/* a refusal's text, NUL included */

/* SubscribeDetail codes (GA/T 1400.4) gridbridge serves. */
enum viid_detail {
	VIID_DETAIL_CATALOGUE = 3,	/* 采集设备目录: the device catalogue */
	VIID_DETAIL_STATUS = 4,		/* 采集设备状态: device status */
	VIID_DETAIL_FACES = 12,		/* 自动采集的人脸信息 */
	VIID_DETAIL_VEHICLES = 13,	/* 自动采集的车辆信息 */
};
#define VIID_DETAIL_BIT(code) (1u << (code))
#define VIID_DETAILS_SERVED (VIID_DETAIL_BIT(VIID_DETAIL_CATALOGUE) | \
    VIID_DETAIL_BIT(VIID_DETAIL_STATUS) | VIID_DETAIL_BIT(VIID_DETAIL_FACES) | \
    VIID_DETAIL_BIT(VIID_DETAIL_VEHICLES))

/* ResponseStatusObject.StatusCode (GA/T 1400.4). */
enum viid_code {
	VIID_CODE_OK = 0,
	VIID_CODE_OTHER = 1,
	VIID_CODE_BUSY = 2,
	VIID_CODE_DEVICE_ERROR = 3,
	VIID_CODE_INVALID_OPERATION = 4,
	VIID_CODE_INVALID_JSON_FORMAT = 7,
	VIID_CODE_INVALID_JSON_CONTENT = 8,
};

/* One subscription as the platform asked for it. Strings are valid UTF-8
 * without control characters, NUL-terminated within their arrays. */
struct viid_subscription {
	char id[VIID_BUSINESS_ID_LEN + 1];		/* SubscribeID: 33 digits */
	char title[VIID_SUB_TEXT_MAX + 1];		/* Title; "" when not given */
	uint32_t details;				/* VIID_DETAIL_BIT of each served
							 * code asked for; never 0 but
							 * in a cancel */
	char receive_addr[VIID_SUB_URL_MAX + 1];	/* http:// or https:// URL */
	/* ResourceURI: the 20-digit ids it lists (comma separated), in
	 * order, without repeats. 0: it was empty or not given. */
	char resources[VIID_SUB_RESOURCES_MAX][VIID_DEVICE_ID_LEN + 1];
	size_t nresources;
	int64_t begin_us, end_us;			/* BeginTime, EndTime (UTC µs);
							 * 0: not given */
	long report_interval_s;				/* ReportInterval; 0: not given */
	char applicant_name[VIID_SUB_TEXT_MAX + 1];
	char applicant_org[VIID_SUB_TEXT_MAX + 1];
	char reason[VIID_SUB_TEXT_MAX + 1];
	bool cancel;					/* OperateType 1 (or the object
							 * came to PUT /{id}) */
	char cancel_reason[VIID_SUB_TEXT_MAX + 1];	/* CancelReason */
};

/* One object of a request: valid (code 0) or refused with a code. */
struct viid_sub_item {
	enum viid_code code;		/* 0: `sub` holds it; else the StatusCode to answer */
	char why[VIID_SUB_WHY_MAX];	/* refused: StatusString (names the field, never
					 * its value); "" when valid */
	/* The SubscribeID when it was 33 digits (also when refused for
	 * another field), for the answer's Id; else "". */
	char id[VIID_BUSINESS_ID_LEN + 1];
	struct viid_subscription sub;
};

/* A SubscribeListObject (POST or PUT /VIID/Subscribes): fills items[0..]
 * (at most `max`) and returns how many objects it held; or -1 when the
 * body is no such envelope (not JSON, no SubscribeListObject, more than
 * VIID_SUB_MAX or `max` objects, longer than VIID_SUB_BODY_MAX), the
 * code to answer the whole request with in *code and why in why[]. A
 * SubscribeObject that is one object instead of a list is taken. `body`
 * is `len` bytes, not necessarily NUL-terminated. */
int forward_viid_subscribe_read_list(const void *body, size_t len, struct viid_sub_item *items,
    size_t max, enum viid_code *code, char why[VIID_SUB_WHY_MAX]);

/* PUT /VIID/Subscribes/{path_id}: {"SubscribeObject":{...}} (a list of
 * one taken too; an empty body is a cancel without a reason), a cancel of
 * `path_id` whatever OperateType says; the object's SubscribeID, when
 * given, must equal `path_id`. Fills *item (item->sub.cancel true when
 * valid; a `path_id` that is not 33 digits refuses it). Returns 0, or -1
 * when the body is no such envelope (item->code and item->why say why). */
int forward_viid_subscribe_read_cancel(const void *body, size_t len, const char *path_id,
    struct viid_sub_item *item);

/* The ids of DELETE /VIID/Subscribes?IDList=a,b (the query, without the
 * '?'; other parameters ignored; percent-encoded commas taken): fills
 * ids[0..] (at most `max`, an id listed twice once) and returns how many,
 * or -1 when there is no IDList or it names no id, more than `max` ids,
 * or one that is not 33 digits. */
int forward_viid_subscribe_id_list(const char *query, char (*ids)[VIID_BUSINESS_ID_LEN + 1],
    size_t max);

/* The ResourceURI ids of `s` include `id` (or list none). A platform
 * that subscribes to all of a lower platform names that platform's own
 * id: the caller asks with its own id too. */
bool forward_viid_subscribe_covers(const struct viid_subscription *s, const char *id);

/* One ResponseStatusObject of an answer. */
struct viid_answer {
	const char *id;			/* Id: the SubscribeID; NULL or "": left out */
	enum viid_code code;
	const char *text;		/* StatusString; NULL: the code's name */
};

/* The answer to a request for `request_url` (the path as requested):
 * {"ResponseStatusListObject":{"ResponseStatusObject":[...]}} of `n`
 * answers, or with `single` {"ResponseStatusObject":{...}} of answers[0].
 * Each object: RequestURL, StatusCode, StatusString, Id (when given),
 * LocalTime (`now_us` as YYYYMMDDhhmmss, Beijing). `single` with `n` 0
 * answers StatusCode 0 without an Id. Returns the body (malloc'd,
 * NUL-terminated, *len bytes). */
char *forward_viid_answer_body(const char *request_url, const struct viid_answer *answers,
    size_t n, bool single, int64_t now_us, size_t *len);

/* ---- notifications (forward_viid_body.c) ------------------------------- */

/* The subscription a notification is for. */
struct viid_notify {
	const char *subscribe_id;	/* 33 digits */
	const char *title;		/* Title; NULL: "" */
	const char *org;		/* 12 digits: NotificationIDs' organisation */
};

/* {"SubscribeNotificationListObject":{"SubscribeNotificationObject":[...]}}
 * with one notification per record that makes an object: a face (as
 * forward_viid_faces_body takes it) in FaceObjectList.FaceObject[], a
 * motor vehicle in MotorVehicleObjectList.MotorVehicleObject[], a device
 * status in DeviceStatusList.APEStatusObject[]. Each notification:
 * NotificationID (forward_viid_business_id: `s->org`, the event time, the
 * key subscribe_id + event id, so a retry keeps it), SubscribeID, Title,
 * TriggerTime (the event time), InfoIDs (the object's id: FaceID,
 * MotorVehicleID or ApeID) and its list. items[i] says what became of
 * recs[i]; an included record's object_id is its NotificationID (the
 * platform answers per NotificationID). Returns the body (malloc'd,
 * *len bytes, NUL-terminated), or NULL (*len 0) when no record was
 * included. `s->org` must be 12 digits and `s->subscribe_id` 33: else
 * nothing is built and every record is VIID_REFUSED_BAD_DEVICE_ID. */
char *forward_viid_notifications_body(const struct forward_record *recs, size_t n,
    const struct viid_params *p, const struct viid_notify *s, struct viid_item *items,
    size_t *len);

/* The device catalogue of a subscription: one notification whose
 * DeviceList.APEObject[] holds `devs` (as forward_viid_apes_body builds
 * them; IsOnline from online[i]: "1", "2" or "9"; FunctionType from the
 * device, else "99"), NotificationID from `s->org`, `made_us` (when the
 * subscription was made) and the key subscribe_id + "catalogue",
 * TriggerTime `made_us`, InfoIDs the ApeIDs. Devices whose id is not a
 * valid 20-digit id are left out, a repeated id listed once. Writes the
 * NotificationID to notification_id. Returns the body, or NULL (*len 0,
 * notification_id "") when no device is left, `s->org` is not 12 digits,
 * `s->subscribe_id` not 33 or `made_us` not within 1970..9999. */
char *forward_viid_catalogue_body(const struct viid_device *devs, const char *const *online,
    size_t n, const struct viid_notify *s, int64_t made_us,
    char notification_id[VIID_BUSINESS_ID_LEN + 1], size_t *len);

#endif
