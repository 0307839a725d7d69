/* mqtt.c — libmosquitto on the libevent loop; see mqtt.h for the contract. */
#include "mqtt.h"

#include <errno.h>
#include <event2/event.h>
#include <isa-l/crc64.h>
#include <poll.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "backoff.h"
#include "log.h"
#include "metrics.h"
#include "mqtt_readahead.h"
#include "util.h"

#define MQTT_RETRY_BASE_MS 500
#define MQTT_RETRY_CAP_MS 5000	/* a broker back up is found within 5 s */

struct mqtt {
	struct event_base *base;
	struct mosquitto *mosq;
	struct mqtt_sink sink;
	struct event *io;	/* on the current socket, NULL when none */
	int io_fd;
	short io_flags;
	struct event *misc;	/* 1 s: mosquitto_loop_misc(), resume check */
	struct event *retry;	/* reconnect timer */
	struct backoff backoff;

	char *host;
	int port;
	int keepalive;
	int protocol;
	unsigned session_expiry;
	char **filters;		/* as subscribed ($share/<group>/ included) */
	int nfilters;
	size_t max_message_size;
	size_t sync_batch;
	bool tls;

	/* The sync delay (see hold_group): a group that ends with the socket
	 * empty waits up to hold_max_us for company, the socket unread. */
	int64_t hold_max_us;
	size_t hold_rows;	/* ... while about this many could come meanwhile */
	struct event *hold;	/* the held group's time is up */
	bool held;		/* the socket is not read until then */
	bool group_open;	/* a group: messages pending (or, resting, to come) since group_start_us */
	bool group_held;	/* this group waited (hold_group, rest) */
	int64_t group_start_us;
	int64_t group_hold_us;	/* how long this group may wait, from its start */
	int64_t last_flush_us;
	double rate;		/* messages a second, smoothed over the last flushes */

	bool started;		/* the first connect was made */
	bool connected;
	bool sock_dead;		/* a connect that failed, until the next attempt */
	uint64_t connections;	/* made since start */
	bool subscribed_once;	/* subscribed since the process started */
	bool stopping;
	bool paused;		/* disconnected because the sink is full */
	bool abort;		/* the sink failed: drop without acknowledging */
	bool down_logged;	/* this outage was reported at warn */
	char last_lib_error[256];

	/* Redeliveries (see take_redelivery): the messages of this connection
	 * and of the one before, by packet id. */
	struct seen *seen_cur, *seen_prev;
	bool redelivering;	/* every message of this connection so far was one */
	int64_t cur_last_ms;	/* the last message of this connection */
	int64_t prev_last_ms;	/* ... and of the one before */
	int64_t recall_last_us;	/* mqtt_recall(): the newest receive time; 0: none */
};

/* A QoS 1 message received: its packet id, a digest of its topic and
 * payload, when. */
struct seen {
	uint64_t digest;
	int64_t at_ms;
	uint64_t gen;		/* durable once the sink's syncs reach this; 0: durable */
	uint16_t mid;
	bool used;
};
#define SEEN_SLOTS MQTT_RECALL_MAX		/* by packet id (2 MiB a table) */
#define REDELIVERY_WINDOW_MS 30000	/* received this close to the connection's end */
/* Reads to the end of a dropped connection (a socket buffer's packets). */
#define ABORT_READS 100000

static void io_cb(evutil_socket_t fd, short what, void *arg);
static void end_hold(struct mqtt *m);
static void on_log(struct mosquitto *mosq, void *arg, int level, const char *text);

static void
seen_clear(struct seen *s)
{
	memset(s, 0, SEEN_SLOTS * sizeof(*s));
}

/* Forgets the messages kept since the last successful sync (`syncs` is
 * the sink's count now): a failed write or sync took them out of the
 * journal again. */
static size_t
seen_forget_unsynced(struct seen *s, uint64_t syncs)
{
	size_t n = 0;

	for (size_t i = 0; i < SEEN_SLOTS; i++)
		if (s[i].used && s[i].gen > syncs) {
			s[i].used = false;
			n++;
		}
	return n;
}

/* CRC-64 (ECMA-182, by ISA-L with the CPU's carry-less multiply) of the
 * topic, a NUL and the payload; of an oversize message (payload NULL: the
 * journal keeps none), its size instead. It only tells a redelivery from
 * another message the broker gave the same packet id: 64 bits make a
 * chance match 2^-64, and nobody chooses the packet ids but the broker.
 * (FNV-1a, a multiply per byte, took 0.8 µs of a 700-byte payload, 4 %
 * of the daemon's CPU per message; this takes 0.06 µs.) */
static uint64_t
message_digest(const char *topic, size_t topic_len, const void *payload, size_t len)
{
	uint64_t h = crc64_ecma_refl(0, (const unsigned char *)topic, topic_len);
	unsigned char size[8];

	h = crc64_ecma_refl(h, (const unsigned char *)"", 1);
	if (payload == NULL) {
		for (int i = 0; i < 8; i++)
			size[i] = (unsigned char)((uint64_t)len >> (8 * i));
		return crc64_ecma_refl(h, size, sizeof(size));
	}
	return crc64_ecma_refl(h, payload, len);
}

/* A broker that resumes our session sends the messages whose PUBACK it did
 * not get again, first, with their packet ids (MQTT 3.1.1 4.4; a broker
 * restarted, a connection lost after the journal's sync and before our
 * PUBACKs reached it). They are in the journal already: journaled again,
 * a report without device time or serial would be a second event.
 * libmosquitto does not show the DUP flag, so a redelivery is recognised
 * as a message of the resumed session's first run that has the packet id,
 * topic and payload of one received within REDELIVERY_WINDOW_MS of the last
 * message of the connection before. The first message that is not one ends the
 * run. After a restart, "the connection before" is the previous process's:
 * main.c hands over the journal's last messages (mqtt_recall), whose
 * records keep the packet ids. Such a message is acknowledged (after the next sync, like every
 * PUBACK) and not journaled. A failed write or sync, which takes the
 * records since the last sync out of the journal, forgets the messages
 * kept since then first (remember() notes the sink's sync count once a
 * message is kept: a sync the journal made by itself, when a segment
 * rolled, counts too). Returns true for a redelivery. */
static bool
is_redelivery(struct mqtt *m, const struct mosquitto_message *msg, uint64_t d)
{
	uint16_t mid = (uint16_t)msg->mid;

	if (msg->qos == 0 || !m->redelivering)
		return false;
	struct seen *p = &m->seen_prev[mid % SEEN_SLOTS];
	if (p->used && p->mid == mid && p->digest == d &&
	    p->at_ms >= m->prev_last_ms - REDELIVERY_WINDOW_MS) {
		p->used = false;
		return true;
	}
	m->redelivering = false;
	log_debug("mqtt", "first message after reconnect not already journaled",
	    "mid=%d slot_used=%d slot_mid=%d same_digest=%d age_ms=%lld",
	    msg->mid, p->used, p->mid, p->used && p->digest == d,
	    p->used ? (long long)(m->prev_last_ms - p->at_ms) : -1LL);
	return false;
}

/* A QoS 1 message of this connection, durable once the sink's sync count
 * reaches `gen` (0: durable already). */
static void
remember(struct mqtt *m, const struct mosquitto_message *msg, uint64_t d, uint64_t gen)
{
	uint16_t mid = (uint16_t)msg->mid;
	int64_t now = util_mono_ms();

	if (msg->qos == 0)
		return;
	m->seen_cur[mid % SEEN_SLOTS] = (struct seen){ .digest = d, .at_ms = now, .mid = mid,
		.gen = gen, .used = true };
	m->cur_last_ms = now;
}

/* (Re)arms the socket event after every libmosquitto call: the socket
 * changes on reconnect, and EV_WRITE is wanted only while packets wait. */
static void
update_io(struct mqtt *m)
{
	int fd = mosquitto_socket(m->mosq);
	short flags = EV_PERSIST;

	/* Held: the PUBACKs queued wait for the flush at the hold's end. */
	if (m->sock_dead)
		fd = -1;
	if (fd >= 0 && !m->held)
		flags |= EV_READ;
	if (fd >= 0 && !m->held &&
	    (mosquitto_want_write(m->mosq) || mqtt_writebehind_pending(fd) > 0))
		flags |= EV_WRITE;
	bool want = (flags & (EV_READ | EV_WRITE)) != 0;
	if (fd == m->io_fd && flags == m->io_flags && (m->io != NULL) == want)
		return;
	if (m->io != NULL) {
		event_free(m->io);
		m->io = NULL;
	}
	if (fd != m->io_fd)
		mqtt_readahead_attach(fd);	/* a new socket, or none */
	m->io_fd = fd;
	m->io_flags = flags;
	if (!want)
		return;
	m->io = event_new(m->base, fd, flags, io_cb, m);
	if (m->io == NULL || event_add(m->io, NULL) != 0)
		log_error("mqtt", "cannot watch socket", "fd=%d", fd);
}

static void
schedule_retry(struct mqtt *m)
{
	if (m->stopping || m->paused || evtimer_pending(m->retry, NULL))
		return;
	uint32_t ms = backoff_next(&m->backoff, backoff_random());
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	log_debug("mqtt", "reconnecting", "host=%s port=%d retry_in_ms=%u attempt=%u",
	    m->host, m->port, ms, m->backoff.attempt);
	evtimer_add(m->retry, &tv);
}

/* A loop call failed: the library has closed the socket (on_disconnect ran
 * when it had been connected); retry later. */
static void
connection_failed(struct mqtt *m, int rc)
{
	const char *err = rc == MOSQ_ERR_ERRNO ? strerror(errno) :
	    rc == MOSQ_ERR_KEEPALIVE ? "no answer within keepalive" : mosquitto_strerror(rc);

	/* An outage is reported once at warn; the retries go to debug. */
	if (!m->connected && !m->stopping && !m->paused) {
		log_emit(m->down_logged ? LOG_LVL_DEBUG : LOG_LVL_WARN, "mqtt",
		    "connection failed", "host=%s port=%d error=%s", m->host, m->port,
		    m->last_lib_error[0] ? m->last_lib_error : err);
		m->down_logged = true;
	}
	m->last_lib_error[0] = '\0';
	m->connected = false;
	end_hold(m);
	update_io(m);
	schedule_retry(m);
}

/* Drops the connection without writing anything more: the PUBACKs queued
 * for messages we could not keep never leave, so the broker redelivers. */
static void
abort_connection(struct mqtt *m)
{
	int fd = mosquitto_socket(m->mosq);

	log_error("mqtt", "message not kept, dropping connection unacknowledged",
	    "host=%s port=%d", m->host, m->port);
	/* What was journaled since the last sync is gone (a failed write or
	 * sync): those messages must be journaled when they come again. */
	size_t n = seen_forget_unsynced(m->seen_cur, m->sink.syncs(m->sink.ctx));
	n += seen_forget_unsynced(m->seen_prev, m->sink.syncs(m->sink.ctx));
	log_debug("mqtt", "unsynced messages forgotten", "messages=%zu syncs=%llu", n,
	    (unsigned long long)m->sink.syncs(m->sink.ctx));
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	/* The library reads what was still queued, then the end of the stream,
	 * and lets go of the socket and its queue. Nothing it reads is taken
	 * (m->abort holds on_message off): unacknowledged, the broker sends it
	 * again. Until the socket is gone, for the event loop must not read
	 * more from it: a message taken on a connection being dropped could be
	 * made durable later while its acknowledgement never leaves. */
	for (int i = 0; i < ABORT_READS && mosquitto_socket(m->mosq) >= 0; i++)
		if (mosquitto_loop_read(m->mosq, 1) != MOSQ_ERR_SUCCESS)
			break;
	m->abort = false;
	m->connected = false;
	end_hold(m);
	update_io(m);
	/* The journal's disk is full: wait for room (misc_cb) instead of
	 * taking the redelivered messages only to fail again. */
	if (m->sink.full(m->sink.ctx)) {
		m->paused = true;
		log_info("mqtt", "paused, disconnected from broker", "host=%s port=%d", m->host,
		    m->port);
		return;
	}
	schedule_retry(m);
}

static void
end_hold(struct mqtt *m)
{
	if (m->held) {
		evtimer_del(m->hold);
		m->held = false;
	}
}

/* Messages a second, smoothed: each flush's group over the time since the
 * flush before (the first one's, since its first message). */
static void
note_rate(struct mqtt *m, size_t n, int64_t now)
{
	int64_t since = m->last_flush_us > 0 ? m->last_flush_us :
	    m->group_open ? m->group_start_us : 0;

	if (since > 0 && now > since) {
		double r = (double)n * 1e6 / (double)(now - since);
		m->rate = m->rate > 0 ? 0.5 * m->rate + 0.5 * r : r;
	}
	m->last_flush_us = now;
}

/* Everything handed to the sink becomes durable before any byte goes to
 * the broker: this is the PUBACK hold. It ends the sync delay's wait. */
static int
flush_sink(struct mqtt *m)
{
	size_t n = m->sink.pending(m->sink.ctx);

	uint64_t since = m->group_open ? (uint64_t)m->group_start_us : 0;

	end_hold(m);
	if (n > 0)
		note_rate(m, n, (int64_t)util_mono_us());
	m->group_open = false;
	m->group_held = false;
	if (n == 0)
		return 0;
	return m->sink.flush(m->sink.ctx, since);
}

/* libmosquitto's queue written: the group's PUBACKs with one write(2)
 * (mqtt_readahead.c gathers them), what the kernel does not take yet
 * waiting first in line. A socket that fails here is found by
 * libmosquitto at its next read or write, which closes it. */
static int
loop_write(struct mqtt *m)
{
	int fd = mosquitto_socket(m->mosq);

	(void)mqtt_writebehind_flush(fd);
	if (mqtt_writebehind_pending(fd) > 0 || !mosquitto_want_write(m->mosq))
		return MOSQ_ERR_SUCCESS;
	mqtt_writebehind_begin(fd);
	int rc = mosquitto_loop_write(m->mosq, 1);
	(void)mqtt_writebehind_end(fd);
	return rc;
}

static int
write_out(struct mqtt *m)
{
	int fd = mosquitto_socket(m->mosq);

	if (fd < 0 || (!mosquitto_want_write(m->mosq) && mqtt_writebehind_pending(fd) == 0))
		return MOSQ_ERR_SUCCESS;
	if (flush_sink(m) != 0) {
		m->abort = true;
		return MOSQ_ERR_SUCCESS;
	}
	return loop_write(m);
}

/* Reads while messages come and the group is not too big. libmosquitto
 * reads one packet per call (it ignores max_packets for QoS 1), and a call
 * that finds the socket empty reads nothing and returns success: a call
 * that added no message ends the burst. That costs one read that finds
 * nothing per burst, where asking the socket (FIONREAD) before every call
 * cost a system call per message. A burst also ends early at a packet that
 * is no message (PINGRESP, a partial packet): the socket's read event is
 * level-triggered, so what is left wakes the loop again. */
static int
read_burst(struct mqtt *m)
{
	for (;;) {
		size_t before = m->sink.pending(m->sink.ctx);
		int rc = mosquitto_loop_read(m->mosq, 1);
		if (rc != MOSQ_ERR_SUCCESS || m->abort)
			return rc;
		size_t now = m->sink.pending(m->sink.ctx);
		if (now >= m->sync_batch || now == before || mosquitto_socket(m->mosq) < 0)
			return MOSQ_ERR_SUCCESS;
	}
}

/* Leaves the broker without losing our last PUBACKs. Everything held is
 * made durable and written, then DISCONNECT (plain TCP only: under TLS the
 * record layer is libmosquitto's) and a FIN. Then we read to the broker's
 * end of the stream, discarding what it still sent (unacknowledged, so it
 * stays queued in our session): closing a socket with unread bytes sends a
 * reset, and a broker that receives one may drop the PUBACKs it has not read
 * yet. libmosquitto's own mosquitto_disconnect() closes straight after
 * writing DISCONNECT, which is why this does not use it. Blocks for at most
 * `timeout_ms`. Returns -1 when the held messages could not be made durable
 * (nothing more was written). */
static int
graceful_close(struct mqtt *m, int timeout_ms)
{
	int fd = mosquitto_socket(m->mosq);
	int64_t deadline = util_mono_ms() + timeout_ms;

	if (fd < 0)
		return 0;
	if (flush_sink(m) != 0)
		return -1;
	while ((mosquitto_want_write(m->mosq) || mqtt_writebehind_pending(fd) > 0) &&
	    util_mono_ms() < deadline) {
		if (loop_write(m) != MOSQ_ERR_SUCCESS)
			return 0;	/* the connection is gone already */
		if (mosquitto_want_write(m->mosq) || mqtt_writebehind_pending(fd) > 0) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			poll(&p, 1, 50);
		}
	}
	if (!m->tls)
		(void)!send(fd, "\xe0\x00", 2, MSG_NOSIGNAL);	/* DISCONNECT */
	shutdown(fd, SHUT_WR);
	mqtt_readahead_drop(fd);	/* discarded like the rest */
	for (;;) {
		int64_t left = deadline - util_mono_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char scratch[16384];
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t n = recv(fd, scratch, sizeof(scratch), 0);
		if (n <= 0)
			break;
	}
	return 0;
}

/* The sink is full: make everything durable, let the PUBACKs go, and leave
 * so the broker queues for us in the persistent session. */
static void
pause_ingest(struct mqtt *m)
{
	m->paused = true;
	if (graceful_close(m, 2000) != 0) {
		abort_connection(m);
		return;
	}
	/* Both directions are finished: the library finds the closed stream
	 * and lets go of the socket. */
	int fd = mosquitto_socket(m->mosq);
	if (fd >= 0) {
		shutdown(fd, SHUT_RDWR);
		mosquitto_loop_read(m->mosq, 1);
	}
	m->connected = false;
	log_info("mqtt", "paused, disconnected from broker", "host=%s port=%d", m->host,
	    m->port);
	update_io(m);
}

static void
after_io(struct mqtt *m, int rc)
{
	if (m->abort) {
		abort_connection(m);
		return;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		connection_failed(m, rc);
		return;
	}
	if (m->connected && !m->paused && m->sink.full(m->sink.ctx)) {
		pause_ingest(m);
		return;
	}
	update_io(m);
	/* Bytes read ahead do not make the socket readable: read on. */
	if (m->io != NULL && !m->held && mqtt_readahead_pending(m->io_fd) > 0)
		event_active(m->io, EV_READ, 1);
}

/* How long a group may wait for company: hold_max_us, or about hold_rows
 * messages' time at the recent rate if that is shorter. */
static int64_t
group_wait_us(const struct mqtt *m)
{
	if (m->rate > 0 && (double)m->hold_rows * 1e6 / m->rate < (double)m->hold_max_us)
		return (int64_t)((double)m->hold_rows * 1e6 / m->rate);
	return m->hold_max_us;
}

/* The socket unread for `us`, then hold_cb. */
static bool
hold_for(struct mqtt *m, int64_t us)
{
	struct timeval tv = { .tv_sec = (time_t)(us / 1000000),
		.tv_usec = (suseconds_t)(us % 1000000) };

	if (evtimer_add(m->hold, &tv) != 0)
		return false;
	m->held = true;
	m->group_held = true;
	return true;
}

/* The sync delay. At a community's rate a message comes alone: its own
 * fdatasync, PUBACK and wake-ups cost hundreds of microseconds. A group
 * that ends with the socket empty therefore waits, the socket unread, for
 * the messages of the next moments to share them: up to hold_max_us from
 * its first message, and no longer than about hold_rows messages take at
 * the recent rate, for the broker sends only its in-flight window of
 * messages not yet acknowledged (at thousands a second the wait is a few
 * milliseconds, or none). Returns true when the group waits. */
static bool
hold_group(struct mqtt *m)
{
	size_t n = m->sink.pending(m->sink.ctx);

	if (m->hold_max_us <= 0 || n == 0 || n >= m->hold_rows || n >= m->sync_batch ||
	    m->stopping || m->paused || !m->connected)
		return false;
	int64_t now = (int64_t)util_mono_us();
	if (!m->group_open) {
		m->group_open = true;
		m->group_start_us = now;
		m->group_hold_us = group_wait_us(m);
	}
	int64_t left = m->group_start_us + m->group_hold_us - now;
	if (left < 1000 || !hold_for(m, left))
		return false;	/* not worth a wake-up */
	return true;
}

/* After a group that waited, its n messages flushed: the socket is left
 * unread for the next group's wait, from now. Otherwise the next group's
 * first message would wake the loop only to start that wait (a wake-up,
 * and the socket's watch taken off and put back: two epoll_ctl, per
 * group); now one wake-up at the end of the wait reads the messages that
 * came meanwhile, and a wait that finds none watches the socket again.
 * Only while messages keep coming: at fewer than about two per wait
 * (the time to the next one then a good part of the wait, and a wait
 * often finds none) the socket is watched at once. Measured at 20/s (two
 * per wait, with the added message's time) resting gains nothing; at
 * 45-50/s (three or four) it takes a third of the daemon's CPU per
 * message away. The messages read at its end were waited for since it
 * began: the store's linger counts from then (flush_sink's since_us), not
 * from their read. The PUBACKs are all written (flush_sink, write_out)
 * when this starts, and what is read at its end is synced before any more
 * leave. */
static void
rest(struct mqtt *m, size_t n)
{
	int fd = mosquitto_socket(m->mosq);

	if (n == 0 || m->hold_max_us <= 0 || m->stopping || m->paused || !m->connected ||
	    m->abort || fd < 0 || mosquitto_want_write(m->mosq) ||
	    mqtt_writebehind_pending(fd) > 0)
		return;
	int64_t wait = group_wait_us(m);
	if (wait < 1000 || m->rate * (double)wait < 2e6)
		return;	/* fewer than two messages to expect */
	/* A held group waits from its first message, which came some time
	 * after the flush before: as many messages per sync take the wait
	 * and one message's time. */
	wait += (int64_t)(1e6 / m->rate);
	if (!hold_for(m, wait))
		return;
	m->group_open = true;
	m->group_start_us = (int64_t)util_mono_us();
	m->group_hold_us = wait;
	/* Our PUBACKs just sent put the socket in interactive mode, where the
	 * kernel delays its ACK of what comes next (up to 40 ms) for a reply
	 * to carry it. Unread, nothing replies; a broker with Nagle on (the
	 * mosquitto default) then holds its next messages back until that
	 * ACK, and they miss this wait. Quick ACKs let them come. */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void
hold_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	m->held = false;
	io_cb(m->io_fd, EV_READ, m);
}

/* Whether the connection being made is already over: refused, reset or
 * closed before the broker accepted us. Over TLS, libmosquitto 2.0 takes
 * the failed handshake that follows (SSL_ERROR_SYSCALL) for one still
 * under way and never gives the socket up: the socket stays readable and
 * the loop would spin until the keepalive ran out, with no new attempt
 * meanwhile (a broker restarted: a core busy and no reconnect for that
 * long). Asked before the library reads, for its read takes the error. */
static bool
connect_failed(int fd)
{
	int err = 0, unread = 0;
	socklen_t len = sizeof(err);

	/* What the broker sent first (a CONNACK that says why) is read
	 * first: the library reports it. */
	if (mqtt_readahead_pending(fd) > 0 || (ioctl(fd, FIONREAD, &unread) == 0 && unread > 0))
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
		errno = err;
		return true;
	}
	struct tcp_info ti;
	len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	    ti.tcpi_state == TCP_CLOSE) {
		errno = ECONNRESET;
		return true;
	}
	return false;
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;
	int rc = MOSQ_ERR_SUCCESS;

	if (!m->connected && connect_failed((int)fd)) {
		m->sock_dead = true;	/* until retry_cb: reconnecting closes it */
		connection_failed(m, MOSQ_ERR_ERRNO);
		return;
	}
	if (what & EV_READ)
		rc = read_burst(m);
	if (rc == MOSQ_ERR_SUCCESS && !m->abort && hold_group(m)) {
		after_io(m, rc);
		return;
	}
	/* The group is complete: one sync covers it, then the PUBACKs. */
	bool waited = m->group_held;
	size_t n = m->sink.pending(m->sink.ctx);
	if (rc == MOSQ_ERR_SUCCESS && !m->abort && flush_sink(m) != 0)
		m->abort = true;
	if (rc == MOSQ_ERR_SUCCESS && !m->abort)
		rc = write_out(m);
	if (rc == MOSQ_ERR_SUCCESS && !m->abort && waited)
		rest(m, n);
	after_io(m, rc);
}

static void
misc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	if (m->paused) {
		if (m->sink.full(m->sink.ctx))
			return;
		m->paused = false;
		log_info("mqtt", "resuming, reconnecting to broker", "host=%s port=%d", m->host,
		    m->port);
		backoff_reset(&m->backoff);
		struct timeval now = { 0, 0 };
		evtimer_add(m->retry, &now);
		return;
	}
	int rc = mosquitto_loop_misc(m->mosq);
	if (rc == MOSQ_ERR_NO_CONN)
		rc = MOSQ_ERR_SUCCESS;
	else if (rc == MOSQ_ERR_SUCCESS && !m->held)
		rc = write_out(m);	/* PINGREQ, after the hold; held: at its end */
	after_io(m, rc);
}

/* MQTT 5: without a Session Expiry Interval the session ends with the
 * connection. CONNECT properties can only be given to the blocking
 * mosquitto_connect_bind_v5(), which would stall the loop for as long as
 * the broker does not answer. That call keeps a copy of the properties
 * (every later connect of the client sends them) before it checks its
 * other arguments; given an invalid port it returns MOSQ_ERR_INVAL right
 * there, with the properties kept and no connection tried. Then the
 * non-blocking connect sends them. libmosquitto 2.0.x (checked on 2.0.11
 * to 2.0.20); test_mqtt_connect.py pins it: a session that outlives the
 * connection after a first connect to a broker that did not answer. */
static int
keep_connect_properties(struct mqtt *m)
{
	mosquitto_property *props = NULL;
	int rc = mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
	    m->session_expiry);

	if (rc == MOSQ_ERR_SUCCESS) {
		rc = mosquitto_connect_bind_v5(m->mosq, m->host, -1, m->keepalive, NULL, props);
		if (rc == MOSQ_ERR_INVAL)
			rc = MOSQ_ERR_SUCCESS;	/* the port, as intended */
	}
	mosquitto_property_free_all(&props);
	if (rc != MOSQ_ERR_SUCCESS)
		log_error("mqtt", "cannot set CONNECT properties", "error=%s",
		    mosquitto_strerror(rc));
	return rc;
}

/* Never blocks on the network (the host name is still resolved
 * synchronously, see retry_cb()). */
static int
first_connect(struct mqtt *m)
{
	if (m->protocol == 5) {
		int rc = keep_connect_properties(m);
		if (rc != MOSQ_ERR_SUCCESS)
			return rc;
	}
	return mosquitto_connect_async(m->mosq, m->host, m->port, m->keepalive);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;
	int rc;

	(void)fd;
	(void)what;
	/* libmosquitto resolves the name synchronously here; the host string
	 * is also what TLS checks, so it is passed as it was configured. Its
	 * own messages are wanted while it connects (see on_log). */
	m->sock_dead = false;	/* the library closes it now */
	mosquitto_log_callback_set(m->mosq, on_log);
	if (!m->started) {
		rc = first_connect(m);
		if (rc == MOSQ_ERR_SUCCESS)
			m->started = true;
	} else {
		rc = mosquitto_reconnect_async(m->mosq);
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		connection_failed(m, rc);
		return;
	}
	rc = write_out(m);	/* CONNECT */
	after_io(m, rc);
}

static void
subscribe_all(struct mqtt *m)
{
	int rc = mosquitto_subscribe_multiple(m->mosq, NULL, m->nfilters, m->filters, 1, 0,
	    NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		log_error("mqtt", "cannot subscribe", "error=%s", mosquitto_strerror(rc));
}

static void
on_connect(struct mosquitto *mosq, void *arg, int rc, int flags)
{
	struct mqtt *m = arg;
	bool session = (flags & 1) != 0;

	(void)mosq;
	if (rc != 0) {
		log_error("mqtt", "connection refused", "host=%s port=%d reason=%s",
		    m->host, m->port, mosquitto_connack_string(rc));
		return;
	}
	m->connected = true;
	mosquitto_log_callback_set(m->mosq, NULL);	/* see on_log */
	if (m->connections++ > 0)
		metrics.broker_reconnects++;
	struct seen *t = m->seen_prev;
	m->seen_prev = m->seen_cur;
	m->seen_cur = t;
	seen_clear(m->seen_cur);
	if (!session)
		seen_clear(m->seen_prev);
	m->redelivering = session;
	m->prev_last_ms = m->cur_last_ms;
	m->cur_last_ms = 0;
	m->down_logged = false;
	backoff_reset(&m->backoff);
	log_info("mqtt", "connected", "host=%s port=%d session_present=%d tls=%d protocol=%s",
	    m->host, m->port, session, m->tls, m->protocol == 5 ? "5" : "3.1.1");
	/* A broker without our session has no subscriptions for us. The first
	 * connection of a process subscribes anyway, so a changed filter list
	 * takes effect; the duplicates that may bring are removed by id. */
	if (!session || !m->subscribed_once)
		subscribe_all(m);
}

static void
on_subscribe(struct mosquitto *mosq, void *arg, int mid, int count, const int *granted)
{
	struct mqtt *m = arg;
	int refused = 0;

	(void)mosq;
	(void)mid;
	for (int i = 0; i < count && i < m->nfilters; i++) {
		if (granted[i] == 0x80 || granted[i] < 0) {
			log_error("mqtt", "subscription refused", "filter=%s", m->filters[i]);
			refused++;
		} else if (granted[i] < 1) {
			log_warn("mqtt", "subscription downgraded to QoS 0", "filter=%s",
			    m->filters[i]);
		}
	}
	m->subscribed_once = true;
	log_info("mqtt", "subscribed", "filters=%d refused=%d", count, refused);
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;

	(void)mosq;
	if (m->connected && !m->stopping && !m->paused) {
		log_warn("mqtt", "disconnected", "host=%s port=%d reason=%s",
		    m->host, m->port, mosquitto_strerror(rc));
		m->down_logged = true;
	}
	m->connected = false;
	mqtt_readahead_attach(-1);	/* the library has closed the socket */
}

static void
on_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct mqtt *m = arg;
	struct mqtt_message mm = {
		.topic = msg->topic,
		.payload = msg->payload,
		.payload_len = (size_t)msg->payloadlen,
		.qos = msg->qos,
		.retain = msg->retain,
	};

	(void)mosq;
	if (m->abort)
		return;		/* the connection is being dropped */
	uint64_t d = 0;
	bool oversize = (size_t)msg->payloadlen > m->max_message_size;
	if (msg->qos > 0)
		d = message_digest(msg->topic, strlen(msg->topic), oversize ? NULL : msg->payload,
		    (size_t)msg->payloadlen);
	if (is_redelivery(m, msg, d)) {
		remember(m, msg, d, 0);
		metrics.broker_redeliveries++;
		log_debug("mqtt", "redelivered message already journaled", "mid=%d", msg->mid);
		return;
	}
	if (msg->qos > 0)
		mm.mid = (uint16_t)msg->mid;
	if (oversize) {
		mm.oversize = true;
		mm.payload = NULL;
		log_warn("mqtt", "message over max_message_size", "topic_bytes=%zu bytes=%zu max=%zu",
		    strlen(msg->topic), mm.payload_len, m->max_message_size);
	}
	if (m->sink.message(m->sink.ctx, &mm) != 0)
		m->abort = true;
	else
		remember(m, msg, d, m->sink.syncs(m->sink.ctx) + 1);
}

/* libmosquitto's own messages: its errors (TLS above all) explain what
 * mosquitto_strerror() cannot. They come while a connection is made (the
 * CA, the certificates, the handshake, the broker's name), so the callback
 * is set for each attempt and taken away once the broker has accepted us:
 * with a callback set, libmosquitto formats a debug line into a fresh
 * allocation for every packet (a PUBLISH in, its PUBACK out) that we would
 * throw away, a tenth of the daemon's CPU per message at full speed. What
 * an established session loses is the OpenSSL error text of a read or
 * write that fails; "disconnected" still gives the library's error. */
static void
on_log(struct mosquitto *mosq, void *arg, int level, const char *text)
{
	struct mqtt *m = arg;

	(void)mosq;
	if (level != MOSQ_LOG_ERR)
		return;
	snprintf(m->last_lib_error, sizeof(m->last_lib_error), "%s", text);
	log_error("mqtt", "library error", "host=%s port=%d error=%s", m->host, m->port, text);
}

static int
set_filters(struct mqtt *m, char *const *filters)
{
	int n = 0;

	while (filters != NULL && filters[n] != NULL)
		n++;
	m->filters = calloc((size_t)n + 1, sizeof(*m->filters));
	if (m->filters == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		m->filters[i] = strdup(filters[i]);
		if (m->filters[i] == NULL)
			return -1;
		m->nfilters++;
	}
	return 0;
}

static int
setup_tls(struct mqtt *m, const struct mqtt_options *o)
{
	int rc = mosquitto_tls_set(m->mosq, o->ca_file, NULL,
	    o->cert_file != NULL && o->cert_file[0] ? o->cert_file : NULL,
	    o->key_file != NULL && o->key_file[0] ? o->key_file : NULL, NULL);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_tls_opts_set(m->mosq, 1 /* SSL_VERIFY_PEER */, "tlsv1.2", NULL);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_tls_insecure_set(m->mosq, false);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_error("mqtt", "cannot set up TLS", "ca_file=%s cert_file=%s error=%s",
		    o->ca_file, o->cert_file ? o->cert_file : "",
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return -1;
	}
	return 0;
}

struct mqtt *
mqtt_new(struct event_base *base, const struct mqtt_options *o,
    const struct mqtt_sink *sink)
{
	static bool lib_ready;
	struct mqtt *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	if (!lib_ready) {
		mosquitto_lib_init();
		lib_ready = true;
	}
	m->base = base;
	m->sink = *sink;
	m->io_fd = -1;
	m->port = o->port;
	m->keepalive = o->keepalive;
	m->protocol = o->protocol == 5 ? 5 : 4;
	m->session_expiry = o->session_expiry;
	m->max_message_size = o->max_message_size;
	m->sync_batch = o->sync_batch > 0 ? o->sync_batch : 1;
	m->tls = o->tls;
	m->hold_max_us = (int64_t)o->sync_delay_ms * 1000;
	m->hold_rows = o->sync_delay_rows > 0 ? o->sync_delay_rows : 1;
	m->seen_cur = calloc(SEEN_SLOTS, sizeof(*m->seen_cur));
	m->seen_prev = calloc(SEEN_SLOTS, sizeof(*m->seen_prev));
	if (m->seen_cur == NULL || m->seen_prev == NULL)
		goto fail;
	backoff_init(&m->backoff, MQTT_RETRY_BASE_MS, MQTT_RETRY_CAP_MS);
	m->host = strdup(o->host);
	if (m->host == NULL || set_filters(m, o->filters) != 0)
		goto fail;

	/* clean_session=false: the broker keeps our subscriptions and queues
	 * QoS 1 messages while we are away. */
	mqtt_socketpair_refuse(true);	/* its wake-up pair: see mqtt_readahead.c */
	m->mosq = mosquitto_new(o->client_id, false, m);
	mqtt_socketpair_refuse(false);
	if (m->mosq == NULL) {
		log_errno(LOG_LVL_ERROR, "mqtt", "cannot create client", "");
		goto fail;
	}
	/* Queue every packet until we call mosquitto_loop_write(): the hold. */
	mosquitto_threaded_set(m->mosq, true);
	if (m->protocol == 5) {
		mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
		mosquitto_int_option(m->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, o->receive_maximum);
	} else {
		mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	}
	mosquitto_connect_with_flags_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_subscribe_callback_set(m->mosq, on_subscribe);
	mosquitto_message_callback_set(m->mosq, on_message);
	if (o->username != NULL && o->username[0] != '\0') {
		int rc = mosquitto_username_pw_set(m->mosq, o->username,
		    o->password != NULL && o->password[0] != '\0' ? o->password : NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			log_error("mqtt", "cannot set credentials", "error=%s",
			    mosquitto_strerror(rc));
			goto fail;
		}
	}
	if (o->tls && setup_tls(m, o) != 0)
		goto fail;
	m->misc = event_new(base, -1, EV_PERSIST, misc_cb, m);
	m->retry = evtimer_new(base, retry_cb, m);
	m->hold = evtimer_new(base, hold_cb, m);
	if (m->misc == NULL || m->retry == NULL || m->hold == NULL)
		goto fail;
	return m;
fail:
	mqtt_free(m);
	return NULL;
}

void
mqtt_recall(struct mqtt *m, const char *topic, size_t topic_len, const void *payload,
    size_t payload_len, uint16_t mid, int64_t received_us)
{
	if (m->started || mid == 0)
		return;
	uint64_t d = message_digest(topic, topic_len, payload, payload_len);
	/* at_ms holds the receive time in ms until mqtt_start() makes it
	 * monotonic, relative to the newest. */
	m->seen_cur[mid % SEEN_SLOTS] = (struct seen){ .digest = d, .at_ms = received_us / 1000,
		.mid = mid, .used = true };
	if (received_us > m->recall_last_us)
		m->recall_last_us = received_us;
}

/* The recalled messages as if received by a connection that ended now. */
static void
recall_end(struct mqtt *m)
{
	int64_t now = util_mono_ms(), last = m->recall_last_us / 1000;
	size_t n = 0;

	if (m->recall_last_us == 0)
		return;
	for (size_t i = 0; i < SEEN_SLOTS; i++) {
		struct seen *s = &m->seen_cur[i];
		if (!s->used)
			continue;
		int64_t age = last - s->at_ms;
		s->at_ms = now - (age > 0 ? age : 0);
		n++;
	}
	m->cur_last_ms = now;
	log_debug("mqtt", "journal's last messages recalled", "messages=%zu", n);
}

int
mqtt_start(struct mqtt *m)
{
	struct timeval sec = { .tv_sec = 1, .tv_usec = 0 };
	struct timeval now = { 0, 0 };

	recall_end(m);
	if (event_add(m->misc, &sec) != 0 || evtimer_add(m->retry, &now) != 0) {
		log_error("mqtt", "cannot start timers", "");
		return -1;
	}
	log_info("mqtt", "connecting", "host=%s port=%d filters=%d", m->host, m->port,
	    m->nfilters);
	return 0;
}

bool
mqtt_connected(const struct mqtt *m)
{
	return m->connected;
}

void
mqtt_quit(struct mqtt *m)
{
	if (m == NULL || m->stopping)
		return;
	m->stopping = true;
	m->paused = false;
	evtimer_del(m->retry);
	if (m->mosq == NULL || !m->connected)
		return;
	/* Make what we hold durable, let the PUBACKs go, then leave cleanly:
	 * the broker keeps the session and queues for us. */
	graceful_close(m, 2000);
	int fd = mosquitto_socket(m->mosq);
	if (fd >= 0) {
		shutdown(fd, SHUT_RDWR);
		mosquitto_loop_read(m->mosq, 1);
	}
	m->connected = false;
	log_info("mqtt", "disconnected", "host=%s port=%d", m->host, m->port);
	update_io(m);
}

void
mqtt_free(struct mqtt *m)
{
	if (m == NULL)
		return;
	m->stopping = true;
	if (m->mosq != NULL) {
		if (m->connected && mosquitto_socket(m->mosq) >= 0) {
			/* Make what we hold durable, let the PUBACKs go, then
			 * leave cleanly: the broker keeps the session. */
			graceful_close(m, 2000);
			log_info("mqtt", "disconnected", "host=%s port=%d", m->host, m->port);
		}
		mosquitto_destroy(m->mosq);
	}
	if (m->io != NULL)
		event_free(m->io);
	if (m->misc != NULL)
		event_free(m->misc);
	if (m->retry != NULL)
		event_free(m->retry);
	if (m->hold != NULL)
		event_free(m->hold);
	for (int i = 0; m->filters != NULL && i < m->nfilters; i++)
		free(m->filters[i]);
	free(m->filters);
	log_debug("mqtt", "stopped", "");
	free(m->host);
	free(m->seen_cur);
	free(m->seen_prev);
	free(m);
}
