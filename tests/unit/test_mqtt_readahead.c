/* test_mqtt_readahead.c — reads of the attached socket come from one read
 * of it, in order, and nothing else's reads are touched. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mqtt_readahead.h"
#include "t.h"

/* Bytes the kernel still holds for `fd` (0 when none: EAGAIN). */
static int
in_kernel(int fd)
{
	char tmp[256];
	ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_PEEK | MSG_DONTWAIT);
	return n < 0 ? 0 : (int)n;
}

int
main(void)
{
	int sv[2], pp[2];
	char buf[128];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0 || pipe(pp) != 0)
		return 99;
	int a = sv[0], b = sv[1];

	/* Not attached: straight to the kernel. */
	T_INTEQ(write(b, "0123456789", 10), 10);
	T_INTEQ(read(a, buf, 3), 3);
	T_CHECK(memcmp(buf, "012", 3) == 0);
	T_INTEQ(mqtt_readahead_pending(a), 0);
	T_INTEQ(in_kernel(a), 7);

	/* Attached: one read takes what the kernel has; the caller gets what
	 * it asked for, in order. */
	mqtt_readahead_attach(a);
	T_INTEQ(read(a, buf, 1), 1);
	T_CHECK(buf[0] == '3');
	T_INTEQ(mqtt_readahead_pending(a), 6);
	T_INTEQ(in_kernel(a), 0);
	T_INTEQ(read(a, buf, 2), 2);
	T_CHECK(memcmp(buf, "45", 2) == 0);
	/* A read larger than what waits gets what waits (a short read). */
	T_INTEQ(read(a, buf, sizeof(buf)), 4);
	T_CHECK(memcmp(buf, "6789", 4) == 0);
	T_INTEQ(mqtt_readahead_pending(a), 0);
	/* Nothing anywhere: the kernel's answer. */
	errno = 0;
	T_INTEQ(read(a, buf, 1), -1);
	T_INTEQ(errno, EAGAIN);

	/* Other descriptors are not buffered, nor do they disturb it. */
	T_INTEQ(write(b, "abc", 3), 3);
	T_INTEQ(read(a, buf, 1), 1);
	T_CHECK(buf[0] == 'a');
	T_INTEQ(write(pp[1], "xy", 2), 2);
	T_INTEQ(read(pp[0], buf, 1), 1);
	T_CHECK(buf[0] == 'x');
	T_INTEQ(mqtt_readahead_pending(pp[0]), 0);
	T_INTEQ(read(pp[0], buf, 1), 1);
	T_CHECK(buf[0] == 'y');
	T_INTEQ(mqtt_readahead_pending(a), 2);

	/* Dropped: the bytes are gone, the socket stays attached. */
	mqtt_readahead_drop(a);
	T_INTEQ(mqtt_readahead_pending(a), 0);
	errno = 0;
	T_INTEQ(read(a, buf, 1), -1);
	T_INTEQ(errno, EAGAIN);
	T_INTEQ(write(b, "de", 2), 2);
	T_INTEQ(read(a, buf, 1), 1);
	T_CHECK(buf[0] == 'd');
	T_INTEQ(mqtt_readahead_pending(a), 1);

	/* Attaching anew (another socket, or none) drops what waited. */
	mqtt_readahead_attach(-1);
	T_INTEQ(mqtt_readahead_pending(a), 0);
	T_INTEQ(write(b, "f", 1), 1);
	T_INTEQ(read(a, buf, 1), 1);
	T_CHECK(buf[0] == 'f');

	/* A read as large as the buffer goes straight through. */
	mqtt_readahead_attach(a);
	char *big = malloc(1 << 17);
	if (big == NULL)
		return 99;
	memset(big, 'z', 1 << 16);
	T_INTEQ(write(b, big, 1000), 1000);
	T_INTEQ(read(a, big, 1 << 17), 1000);
	T_INTEQ(mqtt_readahead_pending(a), 0);
	free(big);

	/* The end of the stream is the kernel's: 0. */
	T_INTEQ(write(b, "g", 1), 1);
	close(b);
	T_INTEQ(read(a, buf, 1), 1);
	T_INTEQ(read(a, buf, 1), 0);
	mqtt_readahead_attach(-1);
	close(a);
	close(pp[0]);
	close(pp[1]);
	return t_done();
}
