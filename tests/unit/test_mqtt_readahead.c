/* test_mqtt_readahead.c — reads of the attached socket come from one read
 * of it, in order, and nothing else's reads are touched; its writes,
 * gathered, leave with one write, in order, the kernel's refusal kept
 * first in line. */
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mqtt_readahead.h"
#include "t.h"

/* libmosquitto's wake-up pair: made by mosquitto_new() as a rule, not
 * while refused (and libmosquitto still works without it). */
static void
test_socketpair_refused(void)
{
	int sv[2];

	mqtt_socketpair_refuse(true);
	errno = 0;
	T_INTEQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), -1);
	T_INTEQ(errno, EMFILE);
	mqtt_socketpair_refuse(false);
	T_INTEQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[0]);
	close(sv[1]);

	mosquitto_lib_init();
	int before = t_open_fds();
	struct mosquitto *m = mosquitto_new("t", true, NULL);
	T_CHECK(m != NULL);
	T_INTEQ(t_open_fds(), before + 2);	/* the pair, as libmosquitto 2.0 makes it */
	mosquitto_destroy(m);
	T_INTEQ(t_open_fds(), before);
	mqtt_socketpair_refuse(true);
	m = mosquitto_new("t", true, NULL);
	mqtt_socketpair_refuse(false);
	T_CHECK(m != NULL);
	T_INTEQ(t_open_fds(), before);	/* none */
	T_INTEQ(mosquitto_publish(m, NULL, "t", 1, "x", 0, false), MOSQ_ERR_NO_CONN);
	mosquitto_destroy(m);
	mosquitto_lib_cleanup();
}

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

	/* Writes behind: gathered between begin and end, sent with one write,
	 * in order; other descriptors' writes go straight through. */
	int w[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, w) != 0)
		return 99;
	T_INTEQ(write(w[0], "-", 1), 1);		/* not attached */
	T_INTEQ(in_kernel(w[1]), 1);
	T_INTEQ(read(w[1], buf, 1), 1);
	mqtt_readahead_attach(w[0]);
	T_INTEQ(write(w[0], "0", 1), 1);		/* not gathering: at once */
	T_INTEQ(in_kernel(w[1]), 1);
	mqtt_writebehind_begin(w[0]);
	T_INTEQ(write(w[0], "ab", 2), 2);
	T_INTEQ(write(w[0], "cd", 2), 2);
	T_INTEQ(write(pp[1], "p", 1), 1);		/* another descriptor: at once */
	T_INTEQ(read(pp[0], buf, 1), 1);
	T_CHECK(buf[0] == 'p');
	T_INTEQ(in_kernel(w[1]), 1);			/* still only "0" */
	T_INTEQ(mqtt_writebehind_pending(w[0]), 4);
	T_INTEQ(mqtt_writebehind_end(w[0]), 0);
	T_INTEQ(mqtt_writebehind_pending(w[0]), 0);
	T_INTEQ(recv(w[1], buf, sizeof(buf), MSG_DONTWAIT), 5);
	T_CHECK(memcmp(buf, "0abcd", 5) == 0);

	/* More than the buffer holds: the rest is refused (EAGAIN), for
	 * the caller to write again later. */
	char *chunk = malloc(40000);
	if (chunk == NULL)
		return 99;
	memset(chunk, 'q', 40000);
	mqtt_writebehind_begin(w[0]);
	T_INTEQ(write(w[0], chunk, 40000), 40000);
	errno = 0;
	T_INTEQ(write(w[0], chunk, 40000), -1);
	T_INTEQ(errno, EAGAIN);
	T_INTEQ(write(w[0], "e", 1), 1);

	/* What the kernel does not take waits, first in line: a write of
	 * the socket is refused until it is sent. */
	int small = 4096;
	setsockopt(w[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(w[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	T_INTEQ(mqtt_writebehind_end(w[0]), 0);
	size_t left = mqtt_writebehind_pending(w[0]);
	T_CHECK(left > 0 && left < 40001);
	errno = 0;
	T_INTEQ(write(w[0], "f", 1), -1);
	T_INTEQ(errno, EAGAIN);
	size_t got = 0;
	char *all = malloc(50000);
	if (all == NULL)
		return 99;
	for (int i = 0; i < 100000 && mqtt_writebehind_pending(w[0]) > 0; i++) {
		ssize_t n = recv(w[1], all + got, 50000 - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
		T_CHECK(mqtt_writebehind_flush(w[0]) == 0);
	}
	T_INTEQ(mqtt_writebehind_pending(w[0]), 0);
	for (int i = 0; i < 1000 && got < 40001; i++) {
		ssize_t n = recv(w[1], all + got, 50000 - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	T_INTEQ(write(w[0], "f", 1), 1);		/* the line is clear */
	for (int i = 0; i < 1000 && got < 40002; i++) {
		ssize_t n = recv(w[1], all + got, 50000 - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	T_INTEQ(got, 40002);
	T_CHECK(memcmp(all, chunk, 40000) == 0 && all[40000] == 'e' && all[40001] == 'f');

	/* Attaching anew drops what waited to be sent. */
	mqtt_writebehind_begin(w[0]);
	T_INTEQ(write(w[0], "g", 1), 1);
	mqtt_readahead_attach(-1);
	T_INTEQ(mqtt_writebehind_pending(w[0]), 0);
	T_INTEQ(mqtt_writebehind_end(w[0]), 0);
	T_INTEQ(in_kernel(w[1]), 0);
	free(all);
	free(chunk);
	close(w[0]);
	close(w[1]);
	mqtt_readahead_attach(a);

	/* The end of the stream is the kernel's: 0. */
	T_INTEQ(write(b, "g", 1), 1);
	close(b);
	T_INTEQ(read(a, buf, 1), 1);
	T_INTEQ(read(a, buf, 1), 0);
	mqtt_readahead_attach(-1);
	close(a);
	close(pp[0]);
	close(pp[1]);
	test_socketpair_refused();
	return t_done();
}
