/* notify.c — sd_notify and the watchdog timer. */
#include "notify.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "util.h"

struct notify {
	struct event *watchdog;
};

static void
notify_send(const char *state)
{
	int rc = sd_notify(0, state);
	if (rc < 0)
		log_warn("notify", "sd_notify failed", "rc=%d", rc);
}

static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
}

struct notify *
notify_new(struct event_base *base)
{
	struct notify *n = calloc(1, sizeof(*n));
	uint64_t usec = 0;

	if (n == NULL)
		return NULL;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Ping at half the interval: a late loop still makes it. */
		uint64_t half = usec / 2;
		struct timeval tv = { .tv_sec = (time_t)(half / 1000000),
			.tv_usec = (suseconds_t)(half % 1000000) };
		n->watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, n);
		if (n->watchdog == NULL || event_add(n->watchdog, &tv) != 0) {
			log_error("notify", "cannot start watchdog timer", "");
			notify_free(n);
			return NULL;
		}
		log_info("notify", "watchdog enabled", "interval_ms=%llu",
		    (unsigned long long)(half / 1000));
	}
	return n;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->watchdog != NULL)
		event_free(n->watchdog);
	free(n);
}

void
notify_ready(const char *status)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s", status);
	notify_send(buf);
}

void
notify_reloading(void)
{
	char buf[64];

	/* systemd >= 253 wants MONOTONIC_USEC with RELOADING=1; older ones
	 * ignore it. */
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)util_mono_us());
	notify_send(buf);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1");
}

void
notify_status(const char *status)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "STATUS=%s", status);
	notify_send(buf);
}
