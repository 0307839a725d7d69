/* fsync_shim — LD_PRELOAD library for the ingest benchmark: counts the
 * daemon's fdatasync() and fsync() calls and can make them slower, to stand
 * in for a disk whose cache flush costs milliseconds (this VM's costs about
 * 0.3 ms, which hides the effect of the in-flight window).
 *
 *   LD_PRELOAD=build/bench/libfsync_shim.so
 *   GRIDBRIDGE_BENCH_SYNC_DELAY_US=2000      added before every call (default 0)
 *   GRIDBRIDGE_BENCH_SYNC_STATS=FILE         written at exit:
 *                                            "fdatasync N\nfsync N\n"
 *
 * bench/ingest.py preloads it into gridbridged (not into the baseline) to
 * report messages per fdatasync, i.e. the mean group-commit size. It wraps
 * only the libc entry points and calls the system calls itself; nothing else
 * in the process changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_long fdatasync_calls, fsync_calls;
static long delay_us;

__attribute__((constructor)) static void
shim_init(void)
{
	const char *s = getenv("GRIDBRIDGE_BENCH_SYNC_DELAY_US");

	if (s != NULL)
		delay_us = strtol(s, NULL, 10);
	if (delay_us < 0)
		delay_us = 0;
}

__attribute__((destructor)) static void
shim_fini(void)
{
	const char *path = getenv("GRIDBRIDGE_BENCH_SYNC_STATS");
	char buf[128];

	if (path == NULL || path[0] == '\0')
		return;
	int n = snprintf(buf, sizeof(buf), "fdatasync %ld\nfsync %ld\n",
	    atomic_load(&fdatasync_calls), atomic_load(&fsync_calls));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (n > 0 && write(fd, buf, (size_t)n) < 0) {
		/* nothing to do: the benchmark reports the figure as unknown */
	}
	close(fd);
}

static void
shim_delay(void)
{
	if (delay_us <= 0)
		return;
	struct timespec ts = { .tv_sec = delay_us / 1000000,
			       .tv_nsec = delay_us % 1000000 * 1000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
fdatasync(int fd)
{
	atomic_fetch_add(&fdatasync_calls, 1);
	shim_delay();
	return (int)syscall(SYS_fdatasync, fd);
}

int
fsync(int fd)
{
	atomic_fetch_add(&fsync_calls, 1);
	shim_delay();
	return (int)syscall(SYS_fsync, fd);
}
