/* forward_viid_profile.c — the GA/T 1400 profile: see forward_viid_profile.h.
 *
 * - A record's kind is the first builder that takes it: a person passage
 *   with a picture is a face (POST /VIID/Faces), a vehicle passage a motor
 *   vehicle (POST /VIID/MotorVehicles), a device status an APE (PUT
 *   /VIID/APEs, as GA/T 1400.4 updates devices); a builder's refusal
 *   (no_device, no_picture, ...) fails the row with that reason.
 * - A reply is read per object (forward_viid_reply.c) by the objects' ids,
 *   which the builders give again for the same records: a retried batch
 *   carries the same ids. A failed row keeps the StatusCode as its status
 *   and the StatusString as its error.
 * - 401 is not a refusal: the platform forgot our session (forward.c
 *   registers again); the rows are retried.
 */
#include "forward_viid_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.pb-c.h"
#include "forward_body.h"
#include "forward_outcome.h"
#include "forward_viid.h"
#include "forward_viid_reply.h"
#include "forward_viid_subscribe.h"
#include "util.h"

enum viid_kind { KIND_FACES, KIND_VEHICLES, KIND_APES, NKINDS };

typedef char *viid_builder(const struct forward_record *recs, size_t n,
    const struct viid_params *p, struct viid_item *items, size_t *len);

static viid_builder *const builders[NKINDS] = {
	forward_viid_faces_body, forward_viid_vehicles_body, forward_viid_apes_body,
};

struct viid_profile {
	struct forward_profile pr;	/* first: the profile is the context */
	struct viid_device *devices;
	char **communities;		/* devices[i]'s; "" any */
	char **names;			/* devices[i]'s device id, as in events */
	size_t n;
	struct viid_params params;
	/* A subscription's notifications (cascade): its id, title and the
	 * NotificationIDs' organisation; notify.subscribe_id NULL: uploads. */
	struct viid_notify notify;
};

/* The device of an event: the section naming its community first, else
 * one for any community. */
static const struct viid_device *
find_device(void *ctx, const char *community, const char *device)
{
	const struct viid_profile *v = ctx;
	const struct viid_device *any = NULL;

	for (size_t i = 0; i < v->n; i++) {
		if (strcmp(v->names[i], device) != 0)
			continue;
		if (community != NULL && strcmp(v->communities[i], community) == 0)
			return &v->devices[i];
		if (v->communities[i][0] == '\0' && any == NULL)
			any = &v->devices[i];
	}
	return any;
}

/* picture = data: picture `index` of recs[rec], as fetched. */
static const struct viid_picture *
rec_picture(void *ctx, size_t rec, size_t index)
{
	const struct forward_record *recs = ctx;

	if (recs[rec].pictures == NULL || index >= recs[rec].npictures)
		return NULL;
	return &recs[rec].pictures[index];
}

/* The profile's parameters for building a body of `recs`. */
static struct viid_params
params_for(const struct viid_profile *v, const struct forward_record *recs)
{
	struct viid_params p = v->params;

	p.picture_ctx = (void *)recs;
	return p;
}

/* picture = data: the URLs of the record's pictures, by their place in the
 * record (the builders' picture index), "" where it has none. */
static size_t
picture_urls(void *ctx, const struct forward_record *rec, char **urls, size_t max)
{
	Gridbridge__V1__Event *ev = gridbridge__v1__event__unpack(NULL, rec->len, rec->record);
	size_t n = 0;

	(void)ctx;
	if (ev == NULL)
		return 0;
	if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_PERSON && ev->person != NULL && max > 0) {
		urls[n++] = util_strdup(ev->person->picture_url != NULL ?
		    ev->person->picture_url : "");
	} else if (ev->body_case == GRIDBRIDGE__V1__EVENT__BODY_VEHICLE && ev->vehicle != NULL) {
		for (size_t i = 0; i < ev->vehicle->n_picture_urls && n < max; i++)
			urls[n++] = util_strdup(ev->vehicle->picture_urls[i] != NULL ?
			    ev->vehicle->picture_urls[i] : "");
	}
	gridbridge__v1__event__free_unpacked(ev, NULL);
	return n;
}

static int
row_kind(void *ctx, const struct forward_record *rec, const char **why)
{
	const struct viid_profile *v = ctx;
	struct viid_item item;
	size_t len;
	struct viid_params p = params_for(v, rec);

	*why = forward_viid_refusal_name(VIID_REFUSED_WRONG_TYPE);
	for (int k = 0; k < NKINDS; k++) {
		char *body = builders[k](rec, 1, &p, &item, &len);
		free(body);
		if (item.refusal == VIID_INCLUDED)
			return k;
		if (item.refusal != VIID_REFUSED_WRONG_TYPE) {
			*why = forward_viid_refusal_name(item.refusal);
			return -1;
		}
	}
	return -1;
}

static const char *
kind_path(int kind, const char **method)
{
	*method = kind == KIND_APES ? "PUT" : "POST";
	switch (kind) {
	case KIND_FACES:
		return "/VIID/Faces";
	case KIND_VEHICLES:
		return "/VIID/MotorVehicles";
	default:
		return "/VIID/APEs";
	}
}

/* The records' kind is recs[0]'s: forward.c batches one kind. */
static char *
build(const struct viid_profile *v, const struct forward_record *recs, size_t n,
    struct viid_item *items, size_t *len)
{
	const char *why;
	int k = n > 0 ? row_kind((void *)v, &recs[0], &why) : -1;
	struct viid_params p = params_for(v, recs);
	char *body = k >= 0 ? builders[k](recs, n, &p, items, len) : NULL;

	if (body == NULL) {
		body = util_strdup("");
		*len = 0;
	}
	return body;
}

static char *
build_body(void *ctx, const struct forward_record *recs, size_t n, size_t *len)
{
	struct viid_item *items = util_calloc(n ? n : 1, sizeof(*items));
	char *body = build(ctx, recs, n, items, len);

	free(items);
	return body;
}

static void
classify(const struct forward_reply *r, struct forward_outcome *out)
{
	if (r->code == CURLE_OK && r->status == 401) {
		*out = (struct forward_outcome){ .verdict = FORWARD_RETRY };
		snprintf(out->text, sizeof(out->text), "401: not registered with the platform");
		return;
	}
	forward_classify(r, out);
}

/* Why a row was not sent, for the log and the outbox: a failed row's
 * StatusString (else the code's name), a retried row's code and note. */
static void
row_text(const struct viid_status *st, char *out, size_t len)
{
	const char *name = st->has_code ? forward_viid_code_name(st->code) : NULL;

	if (st->verdict == VIID_FAILED) {
		snprintf(out, len, "%s", st->text[0] != '\0' ? st->text :
		    name != NULL ? name : st->note);
	} else if (st->has_code) {
		snprintf(out, len, "StatusCode %lld (%s)%s%s", st->code,
		    name != NULL ? name : "unknown", st->note[0] != '\0' ? ": " : "", st->note);
	} else {
		snprintf(out, len, "%s", st->note[0] != '\0' ? st->note : "no status");
	}
}

/* What the reply says of each of `n` objects, whose ids items[i] gives. */
static void
answer_rows(const struct forward_reply *r, const struct viid_item *items, size_t n,
    struct forward_row_outcome *rows)
{
	const char **ids = util_calloc(n ? n : 1, sizeof(*ids));
	struct viid_status *st = util_calloc(n ? n : 1, sizeof(*st));
	struct viid_upload_summary sum;

	for (size_t i = 0; i < n; i++)
		ids[i] = items[i].object_id[0] != '\0' ? items[i].object_id : NULL;
	bool list = forward_viid_upload_reply(r->body, r->body_len, r->body_cut, ids, n, st, &sum);
	for (size_t i = 0; i < n; i++) {
		struct forward_row_outcome *o = &rows[i];
		o->code = st[i].has_code ? st[i].code : 0;
		o->text[0] = '\0';
		switch (st[i].verdict) {
		case VIID_SENT:
			o->verdict = FORWARD_ROW_SENT;
			break;
		case VIID_FAILED:
			o->verdict = FORWARD_ROW_FAILED;
			break;
		case VIID_RETRY:
			o->verdict = FORWARD_ROW_RETRY;
			break;
		case VIID_RETRY_CONTENT:
			o->verdict = FORWARD_ROW_RETRY_CONTENT;
			break;
		}
		if (!list)
			snprintf(o->text, sizeof(o->text), "%s", sum.reason);
		else if (o->verdict != FORWARD_ROW_SENT)
			row_text(&st[i], o->text, sizeof(o->text));
	}
	free(st);
	free(ids);
}

static void
classify_rows(void *ctx, const struct forward_reply *r, const struct forward_record *recs,
    size_t n, struct forward_row_outcome *rows)
{
	struct viid_item *items = util_calloc(n ? n : 1, sizeof(*items));
	size_t len;

	free(build(ctx, recs, n, items, &len));
	answer_rows(r, items, n, rows);
	free(items);
}

/* ---- a subscription's notifications (cascade) ---- */

/* Every record a notification can carry is one kind: a notification
 * holds one object, a request any number of them. */
static int
notify_kind(void *ctx, const struct forward_record *rec, const char **why)
{
	const struct viid_profile *v = ctx;
	struct viid_item item;
	size_t len;
	struct viid_params p = params_for(v, rec);

	free(forward_viid_notifications_body(rec, 1, &p, &v->notify, &item, &len));
	if (item.refusal == VIID_INCLUDED)
		return 0;
	*why = forward_viid_refusal_name(item.refusal);
	return -1;
}

/* The subscription's ReceiveAddr is the target's url, as it is. */
static const char *
notify_path(int kind, const char **method)
{
	(void)kind;
	*method = "POST";
	return "";
}

static char *
notify_build(const struct viid_profile *v, const struct forward_record *recs, size_t n,
    struct viid_item *items, size_t *len)
{
	struct viid_params p = params_for(v, recs);
	char *body = forward_viid_notifications_body(recs, n, &p, &v->notify, items, len);

	if (body == NULL) {
		body = util_strdup("");
		*len = 0;
	}
	return body;
}

static char *
notify_body(void *ctx, const struct forward_record *recs, size_t n, size_t *len)
{
	struct viid_item *items = util_calloc(n ? n : 1, sizeof(*items));
	char *body = notify_build(ctx, recs, n, items, len);

	free(items);
	return body;
}

/* Statuses come per NotificationID, read as those of an upload. */
static void
notify_rows(void *ctx, const struct forward_reply *r, const struct forward_record *recs,
    size_t n, struct forward_row_outcome *rows)
{
	struct viid_item *items = util_calloc(n ? n : 1, sizeof(*items));
	size_t len;

	free(notify_build(ctx, recs, n, items, &len));
	answer_rows(r, items, n, rows);
	free(items);
}

static char *
dup_set(const char *s)
{
	return s != NULL && s[0] != '\0' ? util_strdup(s) : NULL;
}

void
forward_viid_device_copy(struct viid_device *dst, const struct forward_viid_device *src)
{
	*dst = (struct viid_device){
		.id = util_strdup(src->id),
		.name = dup_set(src->name),
		.model = dup_set(src->model),
		.function_type = dup_set(src->function_type),
		.ip_addr = dup_set(src->ip_addr),
		.port = src->port,
		.place_code = dup_set(src->place_code),
		.has_position = src->has_position,
		.longitude = src->longitude,
		.latitude = src->latitude,
	};
}

void
forward_viid_device_free(struct viid_device *d)
{
	free((char *)d->id);
	free((char *)d->name);
	free((char *)d->model);
	free((char *)d->function_type);
	free((char *)d->ip_addr);
	free((char *)d->place_code);
}

/* A profile's device table and parameters (the forward_profile left for
 * the caller to fill). */
static struct viid_profile *
profile_new(const struct forward_viid_device *devices, size_t n, bool picture_data)
{
	struct viid_profile *v = util_calloc(1, sizeof(*v));

	v->devices = util_calloc(n ? n : 1, sizeof(*v->devices));
	v->communities = util_calloc(n ? n : 1, sizeof(char *));
	v->names = util_calloc(n ? n : 1, sizeof(char *));
	v->n = n;
	for (size_t i = 0; i < n; i++) {
		forward_viid_device_copy(&v->devices[i], &devices[i]);
		v->names[i] = util_strdup(devices[i].device);
		v->communities[i] = util_strdup(devices[i].community != NULL ?
		    devices[i].community : "");
	}
	v->params = (struct viid_params){
		.pictures = picture_data ? VIID_PICTURES_DATA : VIID_PICTURES_URL,
		.device = find_device,
		.device_ctx = v,
		.picture = rec_picture,
	};
	return v;
}

struct forward_profile *
forward_profile_viid_new(const struct forward_viid_device *devices, size_t n, bool picture_data)
{
	struct viid_profile *v = profile_new(devices, n, picture_data);

	v->pr = (struct forward_profile){
		.name = "viid",
		.format = "viid-json",
		.content_type = "Content-Type: " FORWARD_VIID_CONTENT_TYPE,
		.reply_keep = VIID_REPLY_MAX_BYTES,
		.ctx = v,
		.build_body = NULL,
		.batch_key = forward_batch_key,
		.classify = classify,
		.build_body_ctx = build_body,
		.row_kind = row_kind,
		.kind_path = kind_path,
		.classify_rows = classify_rows,
		.picture_urls = picture_data ? picture_urls : NULL,
	};
	return &v->pr;
}

struct forward_profile *
forward_profile_viid_notify_new(const struct forward_profile *viid, const char *subscribe_id,
    const char *title, const char *org)
{
	const struct viid_profile *u = (const struct viid_profile *)viid;
	struct forward_viid_device *devs = util_calloc(u->n ? u->n : 1, sizeof(*devs));

	for (size_t i = 0; i < u->n; i++) {
		const struct viid_device *d = &u->devices[i];
		devs[i] = (struct forward_viid_device){
			.device = u->names[i], .community = u->communities[i], .id = d->id,
			.name = d->name, .model = d->model, .function_type = d->function_type,
			.ip_addr = d->ip_addr, .place_code = d->place_code, .port = d->port,
			.has_position = d->has_position, .longitude = d->longitude,
			.latitude = d->latitude,
		};
	}
	struct viid_profile *v = profile_new(devs, u->n,
	    u->params.pictures == VIID_PICTURES_DATA);
	free(devs);
	v->notify = (struct viid_notify){
		.subscribe_id = util_strdup(subscribe_id),
		.title = util_strdup(title != NULL ? title : ""),
		.org = util_strdup(org),
	};
	v->pr = (struct forward_profile){
		.name = "viid",
		.format = "viid-notification",
		.content_type = "Content-Type: " FORWARD_VIID_CONTENT_TYPE,
		.reply_keep = VIID_REPLY_MAX_BYTES,
		.ctx = v,
		.build_body = NULL,
		.batch_key = forward_batch_key,
		.classify = classify,
		.build_body_ctx = notify_body,
		.row_kind = notify_kind,
		.kind_path = notify_path,
		.classify_rows = notify_rows,
		.picture_urls = u->pr.picture_urls,
	};
	return &v->pr;
}

void
forward_profile_viid_free(struct forward_profile *p)
{
	struct viid_profile *v = (struct viid_profile *)p;

	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++) {
		forward_viid_device_free(&v->devices[i]);
		free(v->names[i]);
		free(v->communities[i]);
	}
	free(v->devices);
	free(v->names);
	free(v->communities);
	free((char *)v->notify.subscribe_id);
	free((char *)v->notify.title);
	free((char *)v->notify.org);
	free(v);
}
