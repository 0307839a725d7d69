/* Fuzz target: the reading of a platform's reply (forward_classify). The
 * first bytes choose the status, libcurl's code, the timings and the
 * Retry-After (in seconds: libcurl parses the header, both its forms);
 * the rest is the error text and the reply's body, which the outbox keeps
 * as text. The verdict is one of the five, the text a NUL-terminated
 * string within its buffer, valid UTF-8, without control characters. */
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "forward_outcome.h"
#include "fuzz.h"
#include "util.h"

static long long
take(const uint8_t **p, size_t *n, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes && *n > 0; i++, (*p)++, (*n)--)
		v = (v << 8) | **p;
	return (long long)v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t n = size;
	struct forward_reply r = { 0 };
	struct forward_outcome o;

	r.status = (long)take(&p, &n, 2) % 1000;
	r.code = (CURLcode)(take(&p, &n, 1) % 100);
	r.retry_after_s = take(&p, &n, 8);
	r.appconnect_us = take(&p, &n, 3);
	r.pretransfer_us = take(&p, &n, 3);
	r.total_us = take(&p, &n, 3);
	int flags = (int)take(&p, &n, 1);
	r.body_cut = flags & 1;
	r.tls_outage = flags & 2;
	size_t sel = (size_t)take(&p, &n, 1);
	size_t split = sel % (n + 1);	/* error text: the first `split` bytes left */

	char *error = malloc(split + 1);
	if (error == NULL)
		return 0;
	memcpy(error, p, split);
	error[split] = '\0';
	r.error = (flags & 4) ? NULL : error;
	r.body = p + split;
	r.body_len = n - split;

	memset(&o, 0x5a, sizeof(o));
	forward_classify(&r, &o);
	if (o.verdict != FORWARD_SENT && o.verdict != FORWARD_REFUSED &&
	    o.verdict != FORWARD_RETRY && o.verdict != FORWARD_RETRY_CONTENT &&
	    o.verdict != FORWARD_RETRY_TLS)
		abort();
	size_t len = strnlen(o.text, sizeof(o.text));
	if (len == sizeof(o.text))
		abort();
	if (!util_utf8_valid((const uint8_t *)o.text, len))
		abort();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)o.text[i] < 0x20 || o.text[i] == 0x7f)
			abort();
	if (o.verdict == FORWARD_SENT && (r.status < 200 || r.status > 299))
		abort();
	free(error);
	return 0;
}
