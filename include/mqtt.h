/* mqtt.c — the MQTT client, driven by the libevent loop.
 *
 * libmosquitto runs without a thread of its own: EV_READ on
 * mosquitto_socket() calls mosquitto_loop_read(), EV_WRITE (armed only while
 * mosquitto_want_write()) calls mosquitto_loop_write(), and a separate 1 s
 * timer calls mosquitto_loop_misc() for keepalive. The socket is re-read
 * after every call: it changes on reconnect. Reconnects use our own capped
 * exponential backoff with full jitter.
 *
 * mosquitto_threaded_set(mosq, true) is set from the start, so packets the
 * library queues (PUBACK, PINGREQ, SUBSCRIBE) leave only when this file
 * calls mosquitto_loop_write(); the journal relies on that to hold PUBACKs
 * until messages are on disk.
 *
 * This is the only file that includes mosquitto.h.
 */
#ifndef GRIDBRIDGE_MQTT_H
#define GRIDBRIDGE_MQTT_H

#include <stdbool.h>

struct event_base;
struct mqtt;

struct mqtt_options {
	const char *host;
	int port;
	const char *client_id;
	int keepalive;		/* seconds */
	const char *username;	/* NULL or "" for anonymous */
	const char *password;	/* NULL or "" for none */
};

/* Copies what it needs from `o`. */
struct mqtt *mqtt_new(struct event_base *base, const struct mqtt_options *o);
/* Starts connecting; failures are retried in the background. */
int mqtt_start(struct mqtt *m);
bool mqtt_connected(const struct mqtt *m);
/* Disconnects cleanly (the broker keeps our session) and frees. */
void mqtt_free(struct mqtt *m);

#endif
