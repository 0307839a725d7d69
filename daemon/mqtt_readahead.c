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
 *
 * Writes, the same way: libmosquitto writes each queued packet with its
 * own write(2), a system call and a TCP segment per PUBACK. Between
 * mqtt_writebehind_begin() and mqtt_writebehind_end() the attached
 * socket's writes are gathered here (each taken whole, or refused with
 * EAGAIN when the buffer is full: libmosquitto keeps that packet queued)
 * and end() sends them with one write. Bytes the kernel did not take then
 * stay here, first in line: until they are sent, every write of the
 * socket (gathered or not) first tries to send them, and is refused with
 * EAGAIN while they wait. mqtt.c watches for the socket's room while
 * mqtt_writebehind_pending() is not 0 and calls mqtt_writebehind_flush().
 *
 * And socketpair(): mosquitto_new() makes a pair of sockets to wake its
 * own select() loop, which the daemon does not use, and libmosquitto
 * writes a byte to it for every packet it queues: a system call per
 * PUBACK that nobody reads (refused with EAGAIN once the pair is full).
 * Made while mqtt_socketpair_refuse(true) is in force on the calling
 * thread, the pair fails (EMFILE) and libmosquitto does without it, as it
 * is written to (libmosquitto 2.0: a warning, sent to no log callback at
 * that point, and no more writes).
 */
#undef _FORTIFY_SOURCE	/* read() is defined here, not wrapped */
#include "mqtt_readahead.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define READAHEAD_BYTES 65536
#define WRITEBEHIND_BYTES 65536

static struct {
	int fd;			/* atomic: read() runs on any thread */
	size_t off, len;
	unsigned char buf[READAHEAD_BYTES];
} ra = { .fd = -1 };

static struct {
	size_t off, len;	/* [off, len) not yet sent */
	bool gather;
	unsigned char buf[WRITEBEHIND_BYTES];
} wb;

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

static ssize_t
kernel_write(int fd, const void *buf, size_t n)
{
	return (ssize_t)syscall(SYS_write, fd, buf, n);
}

/* Sends what waits, as far as the kernel takes it. 0, or -1 with errno:
 * EAGAIN (the rest waits), or the socket failed and the rest is dropped
 * (the connection is lost; libmosquitto finds that at its next read or
 * write, as it would have at this one). */
static int
wb_send(int fd)
{
	while (wb.off < wb.len) {
		ssize_t n = kernel_write(fd, wb.buf + wb.off, wb.len - wb.off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -1;
		if (n <= 0) {
			int e = n < 0 ? errno : EPIPE;
			wb.off = wb.len = 0;
			errno = e;
			return -1;
		}
		wb.off += (size_t)n;
	}
	wb.off = wb.len = 0;
	return 0;
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	if (fd < 0 || fd != __atomic_load_n(&ra.fd, __ATOMIC_RELAXED))
		return kernel_write(fd, buf, n);
	if (!wb.gather && wb.off < wb.len) {
		if (wb_send(fd) != 0)
			return -1;	/* EAGAIN: ours go first */
	}
	if (!wb.gather)
		return kernel_write(fd, buf, n);
	if (n > sizeof(wb.buf) - wb.len) {
		errno = EAGAIN;	/* the caller keeps it for the next round */
		return -1;
	}
	memcpy(wb.buf + wb.len, buf, n);
	wb.len += n;
	return (ssize_t)n;
}

void
mqtt_writebehind_begin(int fd)
{
	if (fd >= 0 && fd == ra.fd)
		wb.gather = true;
}

int
mqtt_writebehind_end(int fd)
{
	wb.gather = false;
	if (fd < 0 || fd != ra.fd || wb.off == wb.len)
		return 0;
	if (wb_send(fd) == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	return -1;
}

int
mqtt_writebehind_flush(int fd)
{
	return mqtt_writebehind_end(fd);
}

size_t
mqtt_writebehind_pending(int fd)
{
	return fd >= 0 && fd == ra.fd ? wb.len - wb.off : 0;
}

static __thread bool refuse_pair;

int
socketpair(int domain, int type, int protocol, int sv[2])
{
	if (refuse_pair) {
		errno = EMFILE;
		return -1;
	}
	return (int)syscall(SYS_socketpair, domain, type, protocol, sv);
}

void
mqtt_socketpair_refuse(bool on)
{
	refuse_pair = on;
}

void
mqtt_readahead_attach(int fd)
{
	__atomic_store_n(&ra.fd, fd < 0 ? -1 : fd, __ATOMIC_RELAXED);
	ra.off = ra.len = 0;
	wb.off = wb.len = 0;
	wb.gather = false;
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
