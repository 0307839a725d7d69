/* mqtt.c — libmosquitto on the libevent loop. */
#include "mqtt.h"

#include <errno.h>
#include <event2/event.h>
#include <mosquitto.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"

#define MQTT_RETRY_BASE_MS 500
#define MQTT_RETRY_CAP_MS 30000

struct mqtt {
	struct event_base *base;
	struct mosquitto *mosq;
	struct event *io;	/* on the current socket, NULL when none */
	int io_fd;
	short io_flags;
	struct event *misc;	/* 1 s mosquitto_loop_misc() */
	struct event *retry;	/* reconnect timer */
	struct backoff backoff;
	char *host;
	int port;
	int keepalive;
	bool started;		/* mosquitto_connect_async() was called once */
	bool connected;
	bool stopping;
	bool down_logged;	/* this outage was reported at warn */
};

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* (Re)arms the socket event after every libmosquitto call: the socket
 * changes on reconnect, and EV_WRITE is wanted only while packets wait. */
static void
update_io(struct mqtt *m)
{
	int fd = mosquitto_socket(m->mosq);
	short flags = EV_READ | EV_PERSIST;

	if (fd >= 0 && mosquitto_want_write(m->mosq))
		flags |= EV_WRITE;
	if (fd == m->io_fd && flags == m->io_flags && (fd < 0 || m->io != NULL))
		return;
	if (m->io != NULL) {
		event_free(m->io);
		m->io = NULL;
	}
	m->io_fd = fd;
	m->io_flags = flags;
	if (fd < 0)
		return;
	m->io = event_new(m->base, fd, flags, io_cb, m);
	if (m->io == NULL || event_add(m->io, NULL) != 0)
		log_error("mqtt", "cannot watch socket", "fd=%d", fd);
}

static void
schedule_retry(struct mqtt *m)
{
	if (m->stopping || evtimer_pending(m->retry, NULL))
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
	const char *err = rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);

	/* An outage is reported once at warn; the retries go to debug. */
	if (!m->connected && !m->stopping) {
		log_emit(m->down_logged ? LOG_LVL_DEBUG : LOG_LVL_WARN, "mqtt",
		    "connection failed", "host=%s port=%d error=%s", m->host, m->port, err);
		m->down_logged = true;
	}
	m->connected = false;
	update_io(m);
	schedule_retry(m);
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;
	int rc = MOSQ_ERR_SUCCESS;

	(void)fd;
	if (what & EV_READ)
		rc = mosquitto_loop_read(m->mosq, 1);
	if (rc == MOSQ_ERR_SUCCESS && (what & EV_WRITE) && mosquitto_want_write(m->mosq))
		rc = mosquitto_loop_write(m->mosq, 1);
	if (rc != MOSQ_ERR_SUCCESS) {
		connection_failed(m, rc);
		return;
	}
	update_io(m);
}

static void
misc_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	int rc = mosquitto_loop_misc(m->mosq);
	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
		connection_failed(m, rc);
		return;
	}
	update_io(m);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;
	int rc;

	(void)fd;
	(void)what;
	/* libmosquitto resolves the name synchronously here; the host string
	 * is also what TLS checks, so it is passed as it was configured. */
	if (!m->started) {
		rc = mosquitto_connect_async(m->mosq, m->host, m->port, m->keepalive);
		if (rc == MOSQ_ERR_SUCCESS)
			m->started = true;
	} else {
		rc = mosquitto_reconnect_async(m->mosq);
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		connection_failed(m, rc);
		return;
	}
	update_io(m);
}

static void
on_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;

	(void)mosq;
	if (rc != 0) {
		log_error("mqtt", "connection refused", "host=%s port=%d reason=%s",
		    m->host, m->port, mosquitto_connack_string(rc));
		return;
	}
	m->connected = true;
	m->down_logged = false;
	backoff_reset(&m->backoff);
	log_info("mqtt", "connected", "host=%s port=%d", m->host, m->port);
}

static void
on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;

	(void)mosq;
	if (m->connected && !m->stopping) {
		log_warn("mqtt", "disconnected", "host=%s port=%d reason=%s",
		    m->host, m->port, mosquitto_strerror(rc));
		m->down_logged = true;
	}
	m->connected = false;
}

struct mqtt *
mqtt_new(struct event_base *base, const struct mqtt_options *o)
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
	m->io_fd = -1;
	m->port = o->port;
	m->keepalive = o->keepalive;
	backoff_init(&m->backoff, MQTT_RETRY_BASE_MS, MQTT_RETRY_CAP_MS);
	m->host = strdup(o->host);
	if (m->host == NULL)
		goto fail;

	/* clean_session=false: the broker keeps our subscriptions and queues
	 * QoS 1 messages while we are away. */
	m->mosq = mosquitto_new(o->client_id, false, m);
	if (m->mosq == NULL) {
		log_errno(LOG_LVL_ERROR, "mqtt", "cannot create client", "");
		goto fail;
	}
	mosquitto_threaded_set(m->mosq, true);
	mosquitto_connect_callback_set(m->mosq, on_connect);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	if (o->username != NULL && o->username[0] != '\0') {
		int rc = mosquitto_username_pw_set(m->mosq, o->username,
		    o->password != NULL && o->password[0] != '\0' ? o->password : NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			log_error("mqtt", "cannot set credentials", "error=%s",
			    mosquitto_strerror(rc));
			goto fail;
		}
	}
	m->misc = event_new(base, -1, EV_PERSIST, misc_cb, m);
	m->retry = evtimer_new(base, retry_cb, m);
	if (m->misc == NULL || m->retry == NULL)
		goto fail;
	return m;
fail:
	mqtt_free(m);
	return NULL;
}

int
mqtt_start(struct mqtt *m)
{
	struct timeval sec = { .tv_sec = 1, .tv_usec = 0 };
	struct timeval now = { 0, 0 };

	if (event_add(m->misc, &sec) != 0 || evtimer_add(m->retry, &now) != 0) {
		log_error("mqtt", "cannot start timers", "");
		return -1;
	}
	log_info("mqtt", "connecting", "host=%s port=%d", m->host, m->port);
	return 0;
}

bool
mqtt_connected(const struct mqtt *m)
{
	return m->connected;
}

void
mqtt_free(struct mqtt *m)
{
	if (m == NULL)
		return;
	m->stopping = true;
	if (m->mosq != NULL) {
		if (m->connected) {
			/* Queue DISCONNECT and push it out: a clean disconnect
			 * keeps the session and sends no last will. */
			mosquitto_disconnect(m->mosq);
			for (int i = 0; i < 10 && mosquitto_want_write(m->mosq); i++)
				if (mosquitto_loop_write(m->mosq, 1) != MOSQ_ERR_SUCCESS)
					break;
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
	log_debug("mqtt", "stopped", "");
	free(m->host);
	free(m);
}
