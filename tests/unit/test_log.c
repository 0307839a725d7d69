/* Unit tests for log.c: the exact lines an operator tails. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "t.h"

static FILE *out;
static char got[2 * LOG_LINE_MAX];
static uint64_t fake_now;

static uint64_t
fake_clock(void)
{
	return fake_now;
}

/* Everything logged since the last call. */
static const char *
captured(void)
{
	long end = ftell(out);
	size_t n;

	rewind(out);
	n = fread(got, 1, sizeof(got) - 1, out);
	got[n] = '\0';
	(void)end;
	rewind(out);
	if (ftruncate(fileno(out), 0) != 0)
		abort();
	return got;
}

static int
count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

int
main(void)
{
	out = tmpfile();
	if (out == NULL)
		return 99;
	log_set_fd(fileno(out));
	log_set_ratelimit(0, 0);

	/* The shape: priority, level, mod, msg first. */
	log_info("main", "started", "version=%s pid=%d", "0.1.0", 42);
	T_STREQ(captured(), "<6>level=info mod=main msg=\"started\" version=0.1.0 pid=42\n");

	log_warn("forward", "request failed", "status=%d attempt=%u retry_in_ms=%llu",
	    503, 3u, 4100ull);
	T_STREQ(captured(), "<4>level=warn mod=forward msg=\"request failed\" status=503 "
	    "attempt=3 retry_in_ms=4100\n");

	log_error("store", "stopped", "");
	T_STREQ(captured(), "<3>level=error mod=store msg=\"stopped\"\n");

	/* Values are quoted and escaped only when they need it. */
	log_info("t", "q", "path=%s q=%s e=%s nl=%s eq=%s ctl=%s", "/a b", "say \"hi\"\\",
	    "", "a\nb", "k=v", "x\001y");
	T_STREQ(captured(), "<6>level=info mod=t msg=\"q\" path=\"/a b\" "
	    "q=\"say \\\"hi\\\"\\\\\" e=\"\" nl=\"a\\nb\" eq=\"k=v\" ctl=\"x\\x01y\"\n");

	/* A quote in msg cannot end it early. */
	log_info("t", "a \"b\"", "");
	T_STREQ(captured(), "<6>level=info mod=t msg=\"a \\\"b\\\"\"\n");

	/* Integer widths and a length-limited string. */
	log_info("t", "n", "a=%ld b=%zu c=%x d=%lld e=%.*s g=%hu", -5L, (size_t)7, 255u,
	    -9000000000LL, 3, "abcdef", (unsigned short)65535);
	T_STREQ(captured(), "<6>level=info mod=t msg=\"n\" a=-5 b=7 c=ff d=-9000000000 e=abc g=65535\n");

	/* errno text is added as error=. */
	errno = ENOENT;
	log_errno(LOG_LVL_ERROR, "main", "cannot open", "file=%s", "/x");
	T_STREQ(captured(), "<3>level=error mod=main msg=\"cannot open\" file=/x "
	    "error=\"No such file or directory\"\n");

	/* Level filter. */
	log_set_level(LOG_LVL_WARN);
	log_info("t", "hidden", "");
	log_debug("t", "hidden", "");
	log_notice("t", "hidden", "");
	log_warn("t", "shown", "");
	T_STREQ(captured(), "<4>level=warn mod=t msg=\"shown\"\n");
	log_set_level(LOG_LVL_DEBUG);
	log_debug("t", "d", "");
	T_STREQ(captured(), "<7>level=debug mod=t msg=\"d\"\n");
	T_STREQ(log_level_name(LOG_LVL_NOTICE), "notice");
	T_CHECK(log_level_name(9) == NULL);

	/* Long lines are cut, still end in a newline, and say so. */
	char *big = malloc(3 * LOG_LINE_MAX);
	memset(big, 'x', 3 * LOG_LINE_MAX - 1);
	big[3 * LOG_LINE_MAX - 1] = '\0';
	log_info("t", "big", "v=%s", big);
	const char *line = captured();
	T_CHECK(strlen(line) <= LOG_LINE_MAX);
	T_CHECK(strstr(line, " truncated=1\n") != NULL);
	T_INTEQ(count_lines(line), 1);
	free(big);

	/* Rate limiting: 3 per 10 s, then the count of what was held back. */
	log_set_clock(fake_clock);
	fake_now = 1000000;
	log_set_ratelimit(3, 10000000);
	for (int i = 0; i < 5; i++)
		log_warn("mqtt", "connection failed", "attempt=%d", i);
	line = captured();
	T_INTEQ(count_lines(line), 3);
	T_CHECK(strstr(line, "attempt=2") != NULL);
	T_CHECK(strstr(line, "attempt=3") == NULL);

	/* Another message is not held back by the first one's limit. */
	log_warn("mqtt", "other", "");
	T_STREQ(captured(), "<4>level=warn mod=mqtt msg=\"other\"\n");

	fake_now += 11000000;
	log_warn("mqtt", "connection failed", "attempt=%d", 9);
	T_STREQ(captured(), "<4>level=warn mod=mqtt msg=\"connection failed\" attempt=9 "
	    "suppressed=2\n");

	/* Suppressed lines are reported even if the message never returns. */
	for (int i = 0; i < 6; i++)
		log_warn("mqtt", "connection failed", "attempt=%d", i);
	captured();
	log_flush_suppressed();
	T_STREQ(captured(), "");	/* window still open */
	fake_now += 11000000;
	log_flush_suppressed();
	T_STREQ(captured(), "<4>level=warn mod=mqtt msg=\"connection failed\" suppressed=4\n");
	log_flush_suppressed();
	T_STREQ(captured(), "");

	fclose(out);
	return t_done();
}
