/* forward_viid_lease.c — see forward_viid_lease.h. */
#include "forward_viid_lease.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define MS 1000LL

struct viid_lease {
	struct event_base *base;
	const struct outbox *ob;
	char *target;
	int lease_s;
	viid_lease_fn *fn;
	void *ctx;
	struct event *timer;

	bool started, released;
	bool held;
	int64_t trusted_until_ms;	/* monotonic; held */
	bool asking;			/* a query in the store's queue */
	int64_t asked_ms;		/* when it was asked */
	int64_t next_ask_ms;
	bool releasing;			/* the release not answered yet */
	char *other;			/* the holder last seen, not us; NULL: none */
};

static void arm(struct viid_lease *l);

/* How long a lease asked for at `asked_ms` is trusted here. */
static int64_t
trusted_until(const struct viid_lease *l, int64_t asked_ms)
{
	int64_t lease_ms = (int64_t)l->lease_s * MS;

	return asked_ms + lease_ms - lease_ms / 5 - MS;
}

static void
lose(struct viid_lease *l, const char *why)
{
	if (!l->held)
		return;
	l->held = false;
	log_warn("forward", "viid session lease lost", "target=%s reason=%s", l->target, why);
	l->fn(l->ctx, false);
}

static void
answered(void *ctx, const char *answer, bool ok)
{
	struct viid_lease *l = ctx;
	int64_t now = util_mono_ms();

	l->asking = false;
	if (l->released)
		return;
	l->next_ask_ms = l->asked_ms + (int64_t)l->lease_s * MS / 3;
	if (!ok || answer == NULL) {
		/* Logged by the store; the lease lapses here on time. */
	} else if (answer[0] == '1' && now < trusted_until(l, l->asked_ms)) {
		l->trusted_until_ms = trusted_until(l, l->asked_ms);
		free(l->other);
		l->other = NULL;
		if (!l->held) {
			l->held = true;
			log_info("forward", "viid session lease taken", "target=%s lease_s=%d",
			    l->target, l->lease_s);
			l->fn(l->ctx, true);
		}
	} else if (answer[0] == '1') {
		/* Answered too late to be trusted: ask again at once. */
		l->next_ask_ms = now;
	} else {
		const char *holder = answer[0] == '0' && answer[1] == ' ' ? answer + 2 : "";
		lose(l, "held by another daemon");
		if (l->other == NULL || strcmp(l->other, holder) != 0) {
			log_info("forward", "viid session held by another daemon",
			    "target=%s holder=%s", l->target, holder[0] ? holder : "unknown");
			free(l->other);
			l->other = util_strdup(holder);
		}
	}
	arm(l);
}

static void
ask(struct viid_lease *l)
{
	l->asking = true;
	l->asked_ms = util_mono_ms();
	l->ob->session_lease(l->ob->ctx, l->target, l->lease_s, false, answered, l);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct viid_lease *l = arg;
	int64_t now = util_mono_ms();

	(void)fd;
	(void)what;
	if (l->released)
		return;
	if (l->held && now >= l->trusted_until_ms)
		lose(l, "not renewed in time");
	if (!l->asking && now >= l->next_ask_ms)
		ask(l);
	arm(l);
}

/* The next ask, or the end of the trust while held. */
static void
arm(struct viid_lease *l)
{
	int64_t now = util_mono_ms();
	int64_t at = l->asking ? now + MS : l->next_ask_ms;

	if (l->held && l->trusted_until_ms < at)
		at = l->trusted_until_ms;
	int64_t ms = at > now ? at - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(ms / MS),
		.tv_usec = (suseconds_t)(ms % MS) * 1000 };

	evtimer_add(l->timer, &tv);
}

struct viid_lease *
viid_lease_new(struct event_base *base, const struct outbox *ob, const char *target,
    int lease_s, viid_lease_fn *fn, void *ctx)
{
	struct viid_lease *l = util_calloc(1, sizeof(*l));

	l->base = base;
	l->ob = ob;
	l->target = util_strdup(target);
	l->lease_s = lease_s >= 6 ? lease_s : 6;
	l->fn = fn;
	l->ctx = ctx;
	l->timer = evtimer_new(base, timer_cb, l);
	if (l->timer == NULL) {
		viid_lease_free(l);
		return NULL;
	}
	return l;
}

void
viid_lease_start(struct viid_lease *l)
{
	if (l->started)
		return;
	l->started = true;
	l->next_ask_ms = util_mono_ms();
	timer_cb(-1, 0, l);
}

bool
viid_lease_held(const struct viid_lease *l)
{
	return l != NULL && l->held;
}

static void
released(void *ctx, const char *answer, bool ok)
{
	struct viid_lease *l = ctx;

	(void)answer;
	l->releasing = false;
	if (ok)
		log_info("forward", "viid session lease given up", "target=%s", l->target);
}

void
viid_lease_release(struct viid_lease *l)
{
	if (l == NULL || l->released)
		return;
	l->released = true;
	evtimer_del(l->timer);
	if (!l->held)
		return;
	l->held = false;
	l->releasing = true;
	l->ob->session_lease(l->ob->ctx, l->target, l->lease_s, true, released, l);
}

bool
viid_lease_releasing(const struct viid_lease *l)
{
	return l != NULL && l->releasing;
}

void
viid_lease_free(struct viid_lease *l)
{
	if (l == NULL)
		return;
	if (l->timer != NULL)
		event_free(l->timer);
	free(l->target);
	free(l->other);
	free(l);
}
