/* util.c — the monotonic clock, allocation that cannot fail, lists. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_offset_us;

int64_t
util_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + wall_offset_us;
}

void
util_set_wall_offset_us(int64_t offset_us)
{
	wall_offset_us = offset_us;
}

int64_t
util_wall_offset_us(void)
{
	return wall_offset_us;
}

/* The system's wall clock minus the monotonic clock at the last call. */
static int64_t step_base_us;
static bool step_based;

int64_t
util_clock_step_us(void)
{
	struct timespec rt, mono;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	int64_t base = ((int64_t)rt.tv_sec - (int64_t)mono.tv_sec) * 1000000 +
	    (rt.tv_nsec - mono.tv_nsec) / 1000;
	int64_t d = step_based ? base - step_base_us : 0;

	step_base_us = base;
	step_based = true;
	return d > UTIL_CLOCK_STEP_MIN_US || d < -UTIL_CLOCK_STEP_MIN_US ? d : 0;
}

uint64_t
util_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
util_fnv1a64(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

int
util_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

_Noreturn void
util_oom(size_t bytes)
{
	/* No stdio buffer and no log.c: both may need the memory that is
	 * not there. One write(2) of a line formatted on the stack. */
	char line[96];
	int n = snprintf(line, sizeof(line),
	    "<2>level=crit mod=util msg=\"out of memory\" bytes=%zu\n", bytes);

	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* nothing left to tell it to */
	}
	abort();
}

void *
util_malloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		util_oom(size);
	return p;
}

void *
util_calloc(size_t n, size_t size)
{
	if (n == 0 || size == 0)
		n = size = 1;
	void *p = calloc(n, size);

	if (p == NULL)	/* calloc() refuses an overflowing product itself */
		util_oom(n > SIZE_MAX / size ? SIZE_MAX : n * size);
	return p;
}

void *
util_realloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (q == NULL)
		util_oom(size);
	return q;
}

char *
util_strdup(const char *s)
{
	return util_strndup(s, strlen(s));
}

char *
util_strndup(const char *s, size_t n)
{
	char *d = strndup(s, n);

	if (d == NULL)
		util_oom(n + 1);
	return d;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

bool
util_list_next(const char **s, const char **item, size_t *len)
{
	const char *p = *s;

	while (is_blank(*p) || *p == ',')
		p++;
	if (*p == '\0') {
		*s = p;
		return false;
	}
	size_t n = strcspn(p, ",");	/* p[0] is neither blank nor ',': n > 0 */
	*s = p + n;
	while (is_blank(p[n - 1]))
		n--;
	*item = p;
	*len = n;
	return true;
}

char **
util_split_list(const char *list)
{
	const char *s = list, *item;
	size_t len, n = 0;

	while (util_list_next(&s, &item, &len))
		n++;
	if (n == 0)
		return NULL;
	char **v = util_calloc(n + 1, sizeof(*v));
	s = list;
	for (size_t i = 0; util_list_next(&s, &item, &len); i++)
		v[i] = util_strndup(item, len);
	return v;
}

void
util_strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

size_t
util_utf8_len(const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t len;
	uint32_t cp;

	if (n == 0)
		return 0;
	uint8_t c = p[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[k] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool
util_utf8_valid(const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t i = 0;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t len = util_utf8_len(p + i, n - i);
		if (len == 0)
			return false;
		i += len;
	}
	return true;
}
