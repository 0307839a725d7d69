/* mqtt_readahead.h — the broker connection's bytes read ahead (one read(2)
 * of the socket serves many of libmosquitto's reads) and written behind
 * (one write(2) sends a group's PUBACKs), and libmosquitto's wake-up pair
 * left unmade. See mqtt_readahead.c. */
#ifndef GRIDBRIDGE_MQTT_READAHEAD_H
#define GRIDBRIDGE_MQTT_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>

/* Reads of `fd` go through the buffer from now on, and whatever it held
 * (of an earlier socket) is dropped. -1: no descriptor is buffered. */
void mqtt_readahead_attach(int fd);

/* Bytes of `fd` waiting in the buffer: while there are any, the socket may
 * not be readable although libmosquitto has more to read. */
size_t mqtt_readahead_pending(int fd);

/* Drops what waits in the buffer for `fd` (the caller is about to discard
 * the rest of the stream with recv(2)); the descriptor stays attached. */
void mqtt_readahead_drop(int fd);

/* From begin() to end(), writes of the attached `fd` are gathered (up to
 * 64 KiB; past that refused with EAGAIN); end() sends them with one
 * write. Whatever the kernel did not take waits, first in line, until
 * flush() sends it: pending() says how many bytes. end() and flush()
 * return 0, or -1 with errno when the socket failed: the bytes are
 * dropped, and libmosquitto finds the failure at its next read or write.
 * The event loop thread only. */
void mqtt_writebehind_begin(int fd);
int mqtt_writebehind_end(int fd);
int mqtt_writebehind_flush(int fd);
size_t mqtt_writebehind_pending(int fd);

/* While on, socketpair(2) on this thread fails with EMFILE: around
 * mosquitto_new(), whose wake-up pair would cost a write per packet. */
void mqtt_socketpair_refuse(bool on);

#endif
