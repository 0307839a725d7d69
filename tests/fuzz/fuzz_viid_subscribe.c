/* Fuzz target: GA/T 1400 subscription requests (forward_viid_subscribe.h).
 * Input: one byte, then a request body. The byte's top bit chooses how
 * many objects the caller has room for (set: VIID_SUB_MAX, clear: 1 + its
 * low three bits), bits 3-4 the id in the path of a cancel (two valid
 * ones, one too short, none). The body goes to the list reader and the
 * cancel reader, and as text to the IDList reader; what they read is
 * checked and answered. Any broken invariant aborts. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "forward_viid_subscribe.h"
#include "fuzz.h"

#define SUB_ID "340104050112000000010320250318001"

static const char *const path_ids[] = {
	SUB_ID, "340104050112000000010320250318002", "3401040501120000000103202503180", NULL,
};

static struct viid_sub_item items[VIID_SUB_MAX];

static void
bounded(const char *s, size_t size)
{
	if (memchr(s, '\0', size) == NULL)
		abort();
}

static bool
digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Valid UTF-8 without C0, DEL or C1 controls, NUL-terminated within size. */
static void
clean_text(const char *text, size_t size)
{
	bounded(text, size);
	const unsigned char *s = (const unsigned char *)text;
	for (size_t i = 0; s[i] != '\0';) {
		unsigned char c = s[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
		    (c & 0xf8) == 0xf0 ? 4 : 0;
		if (len == 0 || c < 0x20 || c == 0x7f || c == 0xc0 || c == 0xc1)
			abort();
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				abort();
		if (c == 0xc2 && s[i + 1] < 0xa0)
			abort();
		i += len;
	}
}

static void
check_sub(const struct viid_sub_item *it)
{
	const struct viid_subscription *s = &it->sub;

	bounded(s->id, sizeof(s->id));
	bounded(s->receive_addr, sizeof(s->receive_addr));
	clean_text(s->title, sizeof(s->title));
	clean_text(s->applicant_name, sizeof(s->applicant_name));
	clean_text(s->applicant_org, sizeof(s->applicant_org));
	clean_text(s->reason, sizeof(s->reason));
	clean_text(s->cancel_reason, sizeof(s->cancel_reason));
	if (s->nresources > VIID_SUB_RESOURCES_MAX)
		abort();
	for (size_t i = 0; i < s->nresources; i++) {
		bounded(s->resources[i], sizeof(s->resources[i]));
		if (!digits(s->resources[i], VIID_DEVICE_ID_LEN))
			abort();
		for (size_t k = 0; k < i; k++)
			if (strcmp(s->resources[i], s->resources[k]) == 0)
				abort();
	}
	if (it->code != VIID_CODE_OK)
		return;
	if (!digits(s->id, VIID_BUSINESS_ID_LEN) || strcmp(s->id, it->id) != 0)
		abort();
	if ((s->details & ~VIID_DETAILS_SERVED) != 0 || (!s->cancel && s->details == 0))
		abort();
	if (s->report_interval_s < 0 || s->report_interval_s > 86400)
		abort();
	if (s->begin_us != 0 && s->end_us != 0 && s->end_us < s->begin_us)
		abort();
	size_t n = strlen(s->receive_addr);
	if (n > VIID_SUB_URL_MAX || (!s->cancel && n == 0))
		abort();
	if (n > 0 && strncasecmp(s->receive_addr, "http://", 7) != 0 &&
	    strncasecmp(s->receive_addr, "https://", 8) != 0)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s->receive_addr[i] <= 0x20 ||
		    (unsigned char)s->receive_addr[i] >= 0x7f)
			abort();
	(void)forward_viid_subscribe_covers(s, "34010405011190000001");
}

static void
check_item(const struct viid_sub_item *it)
{
	bounded(it->why, sizeof(it->why));
	bounded(it->id, sizeof(it->id));
	if (it->id[0] != '\0' && !digits(it->id, VIID_BUSINESS_ID_LEN))
		abort();
	if (it->code == VIID_CODE_OK && (it->why[0] != '\0' || it->id[0] == '\0'))
		abort();
	if (it->code != VIID_CODE_OK && (it->why[0] == '\0' ||
	    (it->code != VIID_CODE_INVALID_OPERATION &&
	    it->code != VIID_CODE_INVALID_JSON_CONTENT)))
		abort();
	check_sub(it);
}

/* The answer to `n` items parses back with their codes. */
static void
answer(const struct viid_sub_item *its, size_t n, bool single)
{
	struct viid_answer *a = calloc(n > 0 ? n : 1, sizeof(*a));
	size_t len;

	if (a == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		a[i] = (struct viid_answer){ its[i].id, its[i].code,
			its[i].code != VIID_CODE_OK ? its[i].why : NULL };
	char *body = forward_viid_answer_body("/VIID/Subscribes", a, n, single,
	    1742254935000000LL, &len);
	if (body == NULL || strlen(body) != len)
		abort();
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *list = single ? json_object_get(root, "ResponseStatusObject") :
	    json_object_get(json_object_get(root, "ResponseStatusListObject"),
	    "ResponseStatusObject");
	if (single ? !json_is_object(list) : json_array_size(list) != n)
		abort();
	for (size_t i = 0; i < (single ? 1 : n); i++) {
		json_t *o = single ? list : json_array_get(list, i);
		json_t *code = json_object_get(o, "StatusCode");
		if (!json_is_integer(code) || !json_is_string(json_object_get(o, "StatusString")))
			abort();
		if (n > 0 && json_integer_value(code) != (json_int_t)a[i].code)
			abort();
	}
	json_decref(root);
	free(body);
	free(a);
}

static void
list(const uint8_t *body, size_t len, size_t max)
{
	enum viid_code code;
	char why[VIID_SUB_WHY_MAX];

	int rc = forward_viid_subscribe_read_list(body, len, items, max, &code, why);
	bounded(why, sizeof(why));
	if (rc < 0) {
		if (rc != -1 || why[0] == '\0' || (code != VIID_CODE_INVALID_JSON_FORMAT &&
		    code != VIID_CODE_INVALID_JSON_CONTENT))
			abort();
		return;
	}
	if (rc == 0 || (size_t)rc > max || rc > VIID_SUB_MAX || code != VIID_CODE_OK ||
	    why[0] != '\0')
		abort();
	for (int i = 0; i < rc; i++) {
		check_item(&items[i]);
		/* Of one id, only the first may stand. */
		for (int k = 0; k < i && items[i].code == VIID_CODE_OK; k++)
			if (strcmp(items[k].id, items[i].id) == 0)
				abort();
	}
	answer(items, (size_t)rc, false);
	answer(items, (size_t)rc, true);
}

static void
cancel(const uint8_t *body, size_t len, const char *path_id)
{
	struct viid_sub_item it;

	int rc = forward_viid_subscribe_read_cancel(body, len, path_id, &it);
	if (rc == -1) {
		bounded(it.why, sizeof(it.why));
		if (it.why[0] == '\0' || (it.code != VIID_CODE_INVALID_JSON_FORMAT &&
		    it.code != VIID_CODE_INVALID_JSON_CONTENT))
			abort();
		return;
	}
	if (rc != 0)
		abort();
	check_item(&it);
	if (it.code == VIID_CODE_OK && (!it.sub.cancel || path_id == NULL ||
	    strcmp(it.id, path_id) != 0))
		abort();
	answer(&it, 1, true);
}

static void
id_list(const uint8_t *body, size_t len, size_t max)
{
	char ids[4][VIID_BUSINESS_ID_LEN + 1];
	char *text = malloc(len + 1);

	if (text == NULL)
		abort();
	memcpy(text, body, len);
	text[len] = '\0';
	int rc = forward_viid_subscribe_id_list(text, ids, max);
	free(text);
	if (rc < -1 || rc == 0 || rc > (int)max)
		abort();
	for (int i = 0; i < rc; i++) {
		bounded(ids[i], sizeof(ids[i]));
		if (!digits(ids[i], VIID_BUSINESS_ID_LEN))
			abort();
		for (int k = 0; k < i; k++)
			if (strcmp(ids[i], ids[k]) == 0)
				abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t max = (data[0] & 0x80) != 0 ? VIID_SUB_MAX : 1 + (data[0] & 7u);
	const char *path_id = path_ids[(data[0] >> 3) & 3];

	list(data + 1, size - 1, max);
	cancel(data + 1, size - 1, path_id);
	id_list(data + 1, size - 1, 1 + (data[0] & 3u));
	return 0;
}
