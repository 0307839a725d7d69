/* Fuzz target: the GA/T 1400 profile's parsers of what comes from
 * outside: a platform's time (forward_viid_time_parse) and a picture's
 * header (forward_viid_image_size). A time that parses formats back to
 * the same second when it is one of the civil forms. */
#include <stdlib.h>
#include <string.h>

#include "forward_viid.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t us;
	int w, h;
	char t[VIID_TIME_LEN + 1];

	if (forward_viid_time_parse((const char *)data, size, &us) == 0) {
		const char *s = (const char *)data;
		size_t n = size;
		while (n > 0 && strchr(" \t\r\n\"", s[0]) != NULL)
			s++, n--;
		while (n > 0 && strchr(" \t\r\n\"", s[n - 1]) != NULL)
			n--;
		/* Civil forms: the first 14 digits come back (a millisecond
		 * count may be before 1970 Beijing time, so not every one formats). */
		if ((n == 14 || n == 17) &&
		    (forward_viid_time_format(us, t) != 0 || memcmp(t, s, 14) != 0))
			abort();
	}
	if (forward_viid_image_size(data, size, &w, &h) == 0 && (w <= 0 || h <= 0))
		abort();
	return 0;
}
