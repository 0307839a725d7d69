/* t.h — a very small TAP producer for unit tests.
 *
 *   T_CHECK(expr)            one assertion
 *   T_STREQ(a, b)            string equality, prints both on failure
 *   T_INTEQ(a, b)            integer equality, prints both on failure
 *   return t_done();         at the end of main: plan line, exit status
 *   t_open_fds()             this process's open descriptors (-1: unknown)
 */
#ifndef GRIDBRIDGE_T_H
#define GRIDBRIDGE_T_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>

static int t_count;
static int t_failed;

static inline void
t_report(int ok, const char *what, const char *file, int line)
{
	t_count++;
	if (!ok)
		t_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", t_count, what);
	if (!ok)
		printf("# failed at %s:%d\n", file, line);
	fflush(stdout);
}

#define T_CHECK(expr) t_report(!!(expr), #expr, __FILE__, __LINE__)

#define T_STREQ(a, b) do { \
	const char *t_a_ = (a), *t_b_ = (b); \
	int t_ok_ = t_a_ != NULL && t_b_ != NULL && strcmp(t_a_, t_b_) == 0; \
	t_report(t_ok_, #a " == " #b, __FILE__, __LINE__); \
	if (!t_ok_) \
		printf("#   got:      %s\n#   expected: %s\n", t_a_ ? t_a_ : "(null)", \
		    t_b_ ? t_b_ : "(null)"); \
} while (0)

#define T_INTEQ(a, b) do { \
	long long t_a_ = (long long)(a), t_b_ = (long long)(b); \
	t_report(t_a_ == t_b_, #a " == " #b, __FILE__, __LINE__); \
	if (t_a_ != t_b_) \
		printf("#   got:      %lld\n#   expected: %lld\n", t_a_, t_b_); \
} while (0)

static inline int
t_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static inline int
t_done(void)
{
	printf("1..%d\n", t_count);
	return t_failed == 0 ? 0 : 1;
}

#endif
