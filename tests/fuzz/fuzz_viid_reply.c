/* Fuzz target: the VIID profile's reply readers (forward_viid_reply.h).
 * Input: one byte, then a reply body. The byte's value modulo 8 is the
 * number of objects the request carried (ids from a fixed list, some of
 * which the corpus's replies name), its top bit the reply's cut flag. The
 * body goes to every reader, and to the Content-Type check as text. */
#include <stdlib.h>
#include <string.h>

#include "forward_viid_reply.h"
#include "fuzz.h"

static const char *const ids[] = {
	"340104050111900000010220250318074215000010600001",
	"340104050111900000010220250318074215000010600002",
	"340104050111900000010220250318074215000010600003",
	"X1", "1", "", NULL,
};

/* A text field ends within its array. */
static void
bounded(const char *s, size_t size)
{
	if (memchr(s, '\0', size) == NULL)
		abort();
}

static void
upload(const uint8_t *body, size_t len, bool cut, size_t n)
{
	struct viid_status st[8];
	struct viid_upload_summary sum;

	bool ok = forward_viid_upload_reply(body, len, cut, ids, n, st, &sum);
	bounded(sum.reason, sizeof(sum.reason));
	if (ok != (sum.reason[0] == '\0') || sum.ignored > sum.entries ||
	    sum.entries > VIID_REPLY_MAX_STATUSES)
		abort();
	for (size_t j = 0; j < n; j++) {
		bounded(st[j].text, sizeof(st[j].text));
		if (st[j].note == NULL || st[j].verdict > VIID_RETRY_CONTENT)
			abort();
		/* Only a StatusCode read sends or fails an object. */
		if (!st[j].has_code && st[j].verdict != VIID_RETRY)
			abort();
		if (!ok && st[j].verdict != VIID_RETRY)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t n = data[0] % 8 < 7 ? data[0] % 8 : 7;
	bool cut = (data[0] & 0x80) != 0;
	const uint8_t *body = data + 1;
	size_t len = size - 1;

	upload(body, len, cut, n);

	struct viid_session_reply s;
	bool ok = forward_viid_session_reply(200, body, len, cut, &s);
	bounded(s.text, sizeof(s.text));
	bounded(s.reason, sizeof(s.reason));
	if (ok != (s.reason[0] == '\0') || (ok && (!s.has_code || s.code != 0)))
		abort();

	struct viid_time_reply t;
	if (forward_viid_time_reply(body, len, cut, &t)) {
		if (t.local_time_len == 0 || t.local_time_len > VIID_TIME_MAX ||
		    strlen(t.local_time) != t.local_time_len)
			abort();
	} else {
		bounded(t.reason, sizeof(t.reason));
	}
	bounded(t.server_id, sizeof(t.server_id));
	bounded(t.time_mode, sizeof(t.time_mode));
	bounded(t.time_zone, sizeof(t.time_zone));

	char *text = malloc(len + 1);
	if (text == NULL)
		abort();
	memcpy(text, body, len);
	text[len] = '\0';
	(void)forward_viid_content_type_ok(text);
	free(text);
	return 0;
}
