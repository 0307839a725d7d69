/* loop.c — the daemon's event loop, its timers on the precise monotonic
 * clock.
 *
 * By default libevent keeps time on Linux with CLOCK_MONOTONIC_COARSE,
 * which moves a tick at a time (4 ms at HZ=250). epoll_wait sleeps the
 * milliseconds to a timer's deadline by the real clock, but the coarse
 * clock read when it wakes may lag a tick behind: the timer is not yet
 * due, and the loop sleeps again for the rest, a second wake-up for one
 * timer. The sync delay (mqtt.c) ends every group of messages at a
 * community's rate with a timer, and did so about every other group: at
 * 130 messages a second, 0.9 extra wake-ups per group of seven.
 *
 * EVENT_BASE_FLAG_PRECISE_TIMER keeps time with CLOCK_MONOTONIC instead
 * (read through the vDSO, no system call), and a timer is due when
 * epoll_wait returns. With it libevent also makes a timerfd for
 * sub-millisecond timers, armed with a timerfd_settime(2) before every
 * epoll_wait: a system call per turn of the loop, more than the wake-ups
 * it would save; none of the daemon's timers needs better than a
 * millisecond. So the timerfd is refused while the base is made
 * (EINVAL, as a kernel without timerfd says: libevent then says nothing
 * and waits with epoll_wait's timeout, rounded up to the millisecond).
 * timerfd_create() is defined here for that, the way mqtt_readahead.c
 * defines socketpair(): refused only on the thread making the base, only
 * meanwhile; every other caller gets the real call. */
#include "loop.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

static __thread bool refuse_timerfd;

int
timerfd_create(int clockid, int flags)
{
	if (refuse_timerfd) {
		errno = EINVAL;
		return -1;
	}
	return (int)syscall(SYS_timerfd_create, clockid, flags);
}

struct event_base *
loop_new(void)
{
	struct event_config *cfg = event_config_new();

	if (cfg == NULL)
		return NULL;
	struct event_base *base = NULL;
	if (event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == 0) {
		refuse_timerfd = true;
		base = event_base_new_with_config(cfg);
		refuse_timerfd = false;
	}
	event_config_free(cfg);
	return base;
}
