/* mqtt_readahead.c — the broker connection's bytes read ahead.
 *
 * libmosquitto reads each packet with a read(2) per part: the first byte,
 * each byte of the remaining length, then the rest; and a burst ends with
 * one more read that finds the socket empty. That is four or five system
 * calls per message, the daemon's most frequent by far (in a virtual
 * machine each costs microseconds). libmosquitto has no hook for its
 * socket I/O, so this file defines read(): the program's own definition
 * is the one libmosquitto (and OpenSSL, under TLS) call. A read of the
 * attached descriptor is served from a 64 KiB buffer that one read of the
 * socket fills; every other descriptor goes straight to the kernel.
 *
 * The buffer is the socket's receive queue, extended: its bytes leave in
 * order, only to readers of that socket, and are dropped with it
 * (mqtt_readahead_attach() on every change of socket, from the event loop
 * thread only). What callers must know (mqtt.c):
 *   - the socket is not readable while bytes wait here: after a burst,
 *     mqtt_readahead_pending() says whether to read again;
 *   - recv(2) bypasses the buffer: drop it first (mqtt_readahead_drop()).
 */
#undef _FORTIFY_SOURCE	/* read() is defined here, not wrapped */
#include "mqtt_readahead.h"

#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define READAHEAD_BYTES 65536

static struct {
	int fd;			/* atomic: read() runs on any thread */
	size_t off, len;
	unsigned char buf[READAHEAD_BYTES];
} ra = { .fd = -1 };

static ssize_t
kernel_read(int fd, void *buf, size_t n)
{
	return (ssize_t)syscall(SYS_read, fd, buf, n);
}

ssize_t
read(int fd, void *buf, size_t n)
{
	if (fd < 0 || n == 0 || fd != __atomic_load_n(&ra.fd, __ATOMIC_RELAXED))
		return kernel_read(fd, buf, n);
	if (ra.off == ra.len) {
		if (n >= sizeof(ra.buf))
			return kernel_read(fd, buf, n);
		ssize_t got = kernel_read(fd, ra.buf, sizeof(ra.buf));
		if (got <= 0)
			return got;	/* errno as the kernel set it */
		ra.off = 0;
		ra.len = (size_t)got;
	}
	size_t k = ra.len - ra.off < n ? ra.len - ra.off : n;
	memcpy(buf, ra.buf + ra.off, k);
	ra.off += k;
	return (ssize_t)k;
}

void
mqtt_readahead_attach(int fd)
{
	__atomic_store_n(&ra.fd, fd < 0 ? -1 : fd, __ATOMIC_RELAXED);
	ra.off = ra.len = 0;
}

size_t
mqtt_readahead_pending(int fd)
{
	return fd >= 0 && fd == ra.fd ? ra.len - ra.off : 0;
}

void
mqtt_readahead_drop(int fd)
{
	if (fd >= 0 && fd == ra.fd)
		ra.off = ra.len = 0;
}
