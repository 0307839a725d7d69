/* bench_log — cost of one log line against a bare snprintf + write baseline,
 * measured in the same run so the ratio survives a noisy machine.
 *
 * usage: bench_log [LINES]     (default 200000; output goes to /dev/null)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static double
now_s(void)
{
	return (double)util_mono_us() / 1e6;
}

int
main(int argc, char **argv)
{
	long lines = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
	int fd = open("/dev/null", O_WRONLY);
	char buf[512];

	if (fd < 0 || lines <= 0)
		return 1;
	log_set_fd(fd);
	log_set_ratelimit(0, 0);

	/* Baseline: the same text with snprintf and one write per line. */
	double t0 = now_s();
	for (long i = 0; i < lines; i++) {
		int n = snprintf(buf, sizeof(buf),
		    "<6>level=info mod=store msg=\"batch committed\" rows=%ld ms=%d "
		    "topic=\"sac/c 1/access\"\n", i, 14);
		if (write(fd, buf, (size_t)n) < 0)
			return 1;
	}
	double base = now_s() - t0;

	t0 = now_s();
	for (long i = 0; i < lines; i++)
		log_info("store", "batch committed", "rows=%ld ms=%d topic=%s", i, 14,
		    "sac/c 1/access");
	double ours = now_s() - t0;

	printf("lines=%ld baseline_ns_per_line=%.0f log_ns_per_line=%.0f ratio=%.2f\n",
	    lines, base * 1e9 / (double)lines, ours * 1e9 / (double)lines, ours / base);
	close(fd);
	return 0;
}
