/* Unit tests for util.c: the clock, allocation and its out-of-memory line,
 * comma-separated lists. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "util.h"

static void
test_clock(void)
{
	int64_t ms = util_mono_ms();
	uint64_t us = util_mono_us();
	struct timespec nap = { .tv_sec = 0, .tv_nsec = 20 * 1000000 };

	nanosleep(&nap, NULL);
	int64_t ms2 = util_mono_ms();
	uint64_t us2 = util_mono_us();
	T_CHECK(ms2 - ms >= 20 && ms2 - ms < 5000);
	T_CHECK(us2 - us >= 20000 && us2 - us < 5000000);
	/* one clock, two units */
	T_CHECK((int64_t)(us2 / 1000) - ms2 <= 1 && ms2 - (int64_t)(us2 / 1000) <= 1);
}

/* Steps of the system clock: none here (the suite does not set the
 * clock; tests/fault's clock_steps does, under libfaketime). Time passing
 * and the test offset moving are not steps. */
static void
test_clock_step(void)
{
	struct timespec nap = { .tv_sec = 0, .tv_nsec = 20 * 1000000 };

	T_INTEQ(util_clock_step_us(), 0);	/* the first call */
	nanosleep(&nap, NULL);
	T_INTEQ(util_clock_step_us(), 0);
	int64_t wall = util_wall_us();
	util_set_wall_offset_us(86400LL * 1000000);
	T_CHECK(util_wall_us() - wall >= 86400LL * 1000000);
	T_INTEQ(util_clock_step_us(), 0);
	util_set_wall_offset_us(-3600LL * 1000000);
	T_INTEQ(util_clock_step_us(), 0);
	util_set_wall_offset_us(0);
}

static void
test_alloc(void)
{
	char *p = util_malloc(0);
	T_CHECK(p != NULL);
	free(p);

	int *z = util_calloc(4, sizeof(*z));
	T_CHECK(z[0] == 0 && z[3] == 0);
	z = util_realloc(z, 8 * sizeof(*z));
	T_CHECK(z[3] == 0);
	z = util_realloc(z, 0);
	T_CHECK(z != NULL);
	free(z);
	z = util_calloc(0, 0);
	T_CHECK(z != NULL);
	free(z);

	char *s = util_strdup("community");
	T_STREQ(s, "community");
	free(s);
	s = util_strndup("community", 4);
	T_STREQ(s, "comm");
	free(s);
	s = util_strndup("ab", 10);
	T_STREQ(s, "ab");
	free(s);
}

/* util_oom() in a child: one logfmt line on stderr, then SIGABRT. */
static void
test_oom(void)
{
	int fds[2];
	T_CHECK(pipe(fds) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		signal(SIGABRT, SIG_DFL);
		util_oom(12345);
	}
	close(fds[1]);
	char buf[256];
	size_t got = 0;
	ssize_t n;
	while ((n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fds[0]);
	int st = 0;
	T_CHECK(waitpid(pid, &st, 0) == pid);
	T_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	T_STREQ(buf, "<2>level=crit mod=util msg=\"out of memory\" bytes=12345\n");
}

/* The items of `list` joined with '|', or "(none)". */
static const char *
items(const char *list)
{
	static char out[256];
	char **v = util_split_list(list);

	if (v == NULL)
		return "(none)";
	out[0] = '\0';
	for (size_t i = 0; v[i] != NULL; i++) {
		if (i > 0)
			strcat(out, "|");
		strcat(out, v[i]);
	}
	util_strv_free(v);
	return out;
}

static void
test_lists(void)
{
	T_STREQ(items("camera"), "camera");
	T_STREQ(items("a, b,c"), "a|b|c");
	T_STREQ(items(" a ,\tb\t, c "), "a|b|c");
	T_STREQ(items("a,,b,"), "a|b");
	T_STREQ(items(",a"), "a");
	T_STREQ(items("door sensor, x"), "door sensor|x");
	T_STREQ(items(""), "(none)");
	T_STREQ(items(" , ,\t"), "(none)");
	util_strv_free(NULL);

	const char *s = "one, two", *item;
	size_t len;
	T_CHECK(util_list_next(&s, &item, &len));
	T_CHECK(len == 3 && strncmp(item, "one", 3) == 0);
	T_CHECK(util_list_next(&s, &item, &len));
	T_CHECK(len == 3 && strncmp(item, "two", 3) == 0);
	T_CHECK(!util_list_next(&s, &item, &len));
	T_CHECK(!util_list_next(&s, &item, &len));
	T_CHECK(*s == '\0');
}

/* FNV-1a 64 reference values; a hash continued over pieces equals the
 * whole's; the hex digits. */
static void
test_text(void)
{
	T_CHECK(util_fnv1a64(UTIL_FNV1A64_INIT, "", 0) == 0xcbf29ce484222325ull);
	T_CHECK(util_fnv1a64(UTIL_FNV1A64_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
	T_CHECK(util_fnv1a64(UTIL_FNV1A64_INIT, "foobar", 6) == 0x85944171f73967e8ull);
	T_CHECK(util_fnv1a64(util_fnv1a64(UTIL_FNV1A64_INIT, "foo", 3), "bar", 3) ==
	    0x85944171f73967e8ull);
	T_INTEQ(util_hex_digit('0'), 0);
	T_INTEQ(util_hex_digit('f'), 15);
	T_INTEQ(util_hex_digit('F'), 15);
	T_INTEQ(util_hex_digit('g'), -1);
}

int
main(void)
{
	test_text();
	test_clock();
	test_clock_step();
	test_alloc();
	test_oom();
	test_lists();
	return t_done();
}
