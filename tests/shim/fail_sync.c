/* fail_sync — LD_PRELOAD library for the tests: makes one fdatasync() of a
 * journal segment fail, as a disk with a bad sector or a lost write would.
 *
 *   GRIDBRIDGE_TEST_FAIL_FDATASYNC=N   the N-th fdatasync() of a *.seg file
 *                                      returns -1 with errno EIO (once)
 *
 * Whatever the call was asked to flush is really written by the kernel (as
 * after a real failure, nobody knows what reached the disk): only the
 * answer is the failure. Every other call goes to the system as it is.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_long seg_syncs;
static long fail_at;

__attribute__((constructor)) static void
shim_init(void)
{
	const char *s = getenv("GRIDBRIDGE_TEST_FAIL_FDATASYNC");

	if (s != NULL)
		fail_at = strtol(s, NULL, 10);
}

static int
is_segment(int fd)
{
	char link[64], path[PATH_MAX];

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n <= 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, ".seg") == 0;
}

int
fdatasync(int fd)
{
	int rc = (int)syscall(SYS_fdatasync, fd);

	if (rc == 0 && fail_at > 0 && is_segment(fd) &&
	    atomic_fetch_add(&seg_syncs, 1) + 1 == fail_at) {
		errno = EIO;
		return -1;
	}
	return rc;
}
