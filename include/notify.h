/* notify.c — telling systemd how we are: READY, RELOADING, STOPPING,
 * STATUS and watchdog pings. Every call is a no-op when the daemon does
 * not run under systemd (no $NOTIFY_SOCKET). */
#ifndef GRIDBRIDGE_NOTIFY_H
#define GRIDBRIDGE_NOTIFY_H

struct event_base;
struct notify;

/* Starts watchdog pings from the loop when $WATCHDOG_USEC asks for them. */
struct notify *notify_new(struct event_base *base);
void notify_free(struct notify *n);

void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *status);

#endif
