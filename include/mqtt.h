/* mqtt.c — the MQTT client, driven by the libevent loop.
 *
 * libmosquitto runs without a thread of its own: EV_READ on
 * mosquitto_socket() calls mosquitto_loop_read(), EV_WRITE (armed only while
 * mosquitto_want_write()) calls mosquitto_loop_write(), and a separate 1 s
 * timer calls mosquitto_loop_misc() for keepalive. The socket is re-read
 * after every call: it changes on reconnect. Reconnects use our own capped
 * exponential backoff with full jitter. Every connect is non-blocking, the
 * first MQTT 5 one too (its CONNECT properties are set without connecting,
 * see first_connect()); only a host name is resolved synchronously. A
 * connect the broker does not answer is given up after keepalive seconds.
 *
 * Ack after durable. libmosquitto queues a QoS 1 message's PUBACK *before*
 * it calls on_message, and in its default mode writes it at once. With
 * mosquitto_threaded_set(mosq, true) (set here, though no library thread
 * runs) queued packets are written only by mosquitto_loop_write(), which
 * only this file calls, and only after sink->flush() has made every message
 * handed to the sink durable. So a PUBACK never leaves before the message
 * it acknowledges is on disk. This relies on libmosquitto internals
 * (checked on 2.0.11); the integration tests that kill the daemon between
 * append and sync pin it.
 *
 * Group commit. Reads continue while they bring messages (a read that
 * finds the socket empty ends the burst) and fewer than sync_batch messages
 * are pending; then one flush covers the
 * group and the PUBACKs go out together (with one write(2):
 * mqtt_readahead.c gathers libmosquitto's writes). The broker sends at most its in-flight
 * window of unacknowledged messages (mosquitto max_inflight_messages,
 * MQTT 5 Receive Maximum), so that window bounds the group: see
 * conf/gridbridge.conf for the settings.
 *
 * Sync delay. A group that ends with the socket empty and fewer than
 * sync_delay_rows messages waits, the socket unread and nothing synced or
 * acknowledged, until sync_delay_ms after its first message; then the
 * socket is read again and one flush covers all. At a community's rate
 * that turns a sync and several wake-ups per message into one per few
 * messages. The wait is cut to about sync_delay_rows messages' time at the
 * rate of the last flushes, so a broker's in-flight window never holds the
 * stream at the delay's pace. The hold lasts at most the delay plus one
 * read burst and one fdatasync, far below any keepalive.
 *
 * Back-pressure. When sink->full() turns true the client flushes, sends the
 * held PUBACKs and disconnects cleanly: the broker keeps the persistent
 * session and queues for us. It reconnects when full() is false again.
 * A message the sink cannot keep (sink->message() or flush() fail) drops
 * the connection without sending anything: the broker redelivers.
 *
 * This is the only file that includes mosquitto.h.
 */
#ifndef GRIDBRIDGE_MQTT_H
#define GRIDBRIDGE_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mqtt;

struct mqtt_message {
	const char *topic;
	const void *payload;	/* NULL when oversize */
	size_t payload_len;	/* when oversize: the size of the message */
	int qos;
	uint16_t mid;		/* the broker's packet id (QoS 1, 2); 0 for QoS 0 */
	bool retain;
	bool oversize;		/* larger than max_message_size */
};

/* Where received messages go (wired by main.c). */
struct mqtt_sink {
	/* Keeps one message (not yet durably). 0, or -1: it could not be
	 * kept; the connection is dropped without acknowledging anything. */
	int (*message)(void *ctx, const struct mqtt_message *msg);
	/* Makes every message kept so far durable. 0, or -1 as above.
	 * `since_us` (util_mono_us(); 0: not known): from when they were
	 * waited for: the first one's receipt, or the start of the sync
	 * delay's wait in which they came, the socket unread (mqtt.c, rest). */
	int (*flush)(void *ctx, uint64_t since_us);
	/* Messages kept since the last flush. */
	size_t (*pending)(void *ctx);
	/* Syncs that made kept messages durable so far: a message kept when
	 * this was N is durable once it is more than N. */
	uint64_t (*syncs)(void *ctx);
	/* True while no more messages may be taken. */
	bool (*full)(void *ctx);
	void *ctx;
};

struct mqtt_options {
	const char *host;
	int port;
	const char *client_id;
	int keepalive;		/* seconds */
	const char *username;	/* NULL or "" for anonymous */
	const char *password;	/* NULL or "" for none */
	int protocol;		/* 4 (3.1.1) or 5 */
	unsigned session_expiry;	/* MQTT 5, seconds */
	int receive_maximum;	/* MQTT 5 */
	char *const *filters;	/* NULL-terminated, as subscribed (config_subscriptions) */
	size_t max_message_size;
	size_t sync_batch;
	int sync_delay_ms;	/* 0: none */
	size_t sync_delay_rows;
	bool tls;
	const char *ca_file, *cert_file, *key_file;
};

/* Copies what it needs from `o`. */
struct mqtt *mqtt_new(struct event_base *base, const struct mqtt_options *o,
    const struct mqtt_sink *sink);
/* Before mqtt_start(): one message of the journal's end, oldest first
 * (`payload` NULL for an oversize one, `payload_len` then its size;
 * `received_us` its receive time). The first connection's run of
 * messages the broker sends again is recognised against these, as a
 * reconnect's is against the connection before: a message journaled whose
 * PUBACK never left before a crash is not journaled a second time.
 * MQTT_RECALL_MAX: one per packet id. What the broker sends again can
 * reach far back: after a reconnect it resends everything unacknowledged
 * (measured: 4,000 messages with max_inflight_messages 1000), and a kill
 * before those PUBACKs got through leaves them unacknowledged under the
 * next run's new messages. With 4,096 the recall missed them after
 * repeated kills and they were journaled again. */
#define MQTT_RECALL_MAX 65536
void mqtt_recall(struct mqtt *m, const char *topic, size_t topic_len, const void *payload,
    size_t payload_len, uint16_t mid, int64_t received_us);
/* Starts connecting; failures are retried in the background. */
int mqtt_start(struct mqtt *m);
bool mqtt_connected(const struct mqtt *m);
/* Stops taking messages: what is held is made durable and acknowledged,
 * and the connection closed cleanly (the broker keeps our session and
 * queues for us); no reconnect. */
void mqtt_quit(struct mqtt *m);
/* Flushes, sends what is held, disconnects cleanly (the broker keeps our
 * session) and frees. */
void mqtt_free(struct mqtt *m);

#endif
