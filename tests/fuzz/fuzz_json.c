/* Fuzz target: decode_json.c against jansson's own reader. Whatever the
 * bytes, decode_json_parse() must return what json_loadb() returns: both
 * NULL, or equal values whose keys come in the same order; and a value
 * read by yajl alone (decode_json_parse_fast) must be that value too. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "fuzz.h"

static void
check(json_t *want, json_t *got)
{
	if ((want == NULL) != (got == NULL))
		abort();
	if (want == NULL)
		return;
	if (!json_equal(want, got))
		abort();
	char *w = json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *g = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (w == NULL || g == NULL || strcmp(w, g) != 0)
		abort();
	free(w);
	free(g);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *want = json_loadb((const char *)data, size, 0, NULL);
	json_t *got = decode_json_parse(data, size);
	check(want, got);
	json_t *fast = decode_json_parse_fast(data, size);
	if (fast != NULL)
		check(want, fast);
	json_decref(want);
	json_decref(got);
	json_decref(fast);
	return 0;
}
