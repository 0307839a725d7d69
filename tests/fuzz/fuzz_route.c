/* Fuzz target: the route pattern compiler and matcher. Input: a pattern,
 * a newline, a topic. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "route.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char pattern[512], err[128], filter[1024];
	const uint8_t *nl = memchr(data, '\n', size);
	size_t plen = nl != NULL ? (size_t)(nl - data) : size;
	struct route_pattern p;
	struct route_match m;

	if (plen >= sizeof(pattern) || memchr(data, '\0', plen) != NULL)
		return 0;
	memcpy(pattern, data, plen);
	pattern[plen] = '\0';
	if (route_compile(&p, pattern, err, sizeof(err)) != 0)
		return 0;
	const char *topic = nl != NULL ? (const char *)nl + 1 : "";
	size_t tlen = nl != NULL ? size - plen - 1 : 0;
	if (route_matches(&p, topic, tlen, &m)) {
		for (int i = 0; i < p.ncaptures; i++) {
			const struct route_capture *c = &m.caps[i];
			if (c->value < topic || c->value + c->len > topic + tlen)
				abort();	/* a capture outside the topic */
		}
	}
	route_filter(&p, filter, sizeof(filter));
	route_pattern_free(&p);
	return 0;
}
