/* loop.h — the daemon's event loop, its timers on the precise monotonic
 * clock. See loop.c. */
#ifndef GRIDBRIDGE_LOOP_H
#define GRIDBRIDGE_LOOP_H

#include <event2/event.h>

/* A new event base whose timers are due by CLOCK_MONOTONIC, waited for by
 * epoll_wait's own timeout (no timerfd). NULL when libevent fails. */
struct event_base *loop_new(void);

#endif
