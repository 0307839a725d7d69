/* Fuzz target: what decoders take from a device besides JSON structure:
 * its time (ISO 8601 with or without an offset, a time zone name, epoch
 * seconds or milliseconds) and a plate to normalize. A time that parses
 * is within the years 1970..9999; a normalized plate is no longer than
 * the plate, has no ASCII lower case, spaces, '-' or '.', and is valid
 * UTF-8 when the plate was. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "fuzz.h"
#include "util.h"

#define MAX_US 253402300799999999LL	/* 9999-12-31T23:59:59.999999Z */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	int64_t us;
	int tz;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	int off = size > 0 ? (int)(int8_t)data[0] * 15 : 480;
	if (decode_time_iso8601(s, off, &us) == 0 && (us < 0 || us > MAX_US))
		abort();
	if (decode_parse_tz(s, &tz) == 0 && (tz < -24 * 60 || tz > 24 * 60))
		abort();
	if (size >= sizeof(double)) {
		double v;
		memcpy(&v, data, sizeof(v));
		if (decode_time_epoch(v, &us) == 0 && (!isfinite(v) || us < 0 || us > MAX_US))
			abort();
	}
	char *end;
	double v = strtod(s, &end);
	if (end != s && decode_time_epoch(v, &us) == 0 && (us < 0 || us > MAX_US))
		abort();

	struct arena a = { 0 };
	char *p = decode_plate_normalize(&a, s);
	if (p != NULL) {
		size_t n = strlen(p);
		if (n > strlen(s))
			abort();
		for (size_t i = 0; i < n; i++)
			if ((p[i] >= 'a' && p[i] <= 'z') || p[i] == ' ' || p[i] == '-' || p[i] == '.')
				abort();
		if (util_utf8_valid((const uint8_t *)s, strlen(s)) &&
		    !util_utf8_valid((const uint8_t *)p, n))
			abort();
	}
	arena_free(&a);
	free(s);
	return 0;
}
