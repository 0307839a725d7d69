/* log.c — logfmt lines with a syslog priority prefix, rate-limited repeats. */
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define RL_SLOTS 64

struct rl_slot {
	const char *mod;
	const char *msg;
	int level;
	uint64_t window_start;
	unsigned count;
	unsigned suppressed;
};

static int log_level = LOG_LVL_INFO;
static int log_fd = 2;
static unsigned rl_burst = 10;
static uint64_t rl_interval_us = 10 * 1000000ull;
static struct rl_slot rl_slots[RL_SLOTS];

static uint64_t (*log_clock)(void) = util_mono_us;

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "error",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_NOTICE] = "notice",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

const char *
log_level_name(int level)
{
	if (level < LOG_LVL_ERROR || level > LOG_LVL_DEBUG)
		return NULL;
	return level_names[level];
}

void
log_set_level(int level)
{
	if (log_level_name(level) != NULL)
		log_level = level;
}

int
log_get_level(void)
{
	return log_level;
}

void
log_set_fd(int fd)
{
	log_fd = fd;
}

void
log_set_ratelimit(unsigned burst, uint64_t interval_us)
{
	rl_burst = burst;
	rl_interval_us = interval_us;
	memset(rl_slots, 0, sizeof(rl_slots));
}

void
log_apply(const struct config *cfg)
{
	log_set_level(cfg->log_level);
	log_set_ratelimit((unsigned)cfg->log_rate_burst,
	    (uint64_t)cfg->log_rate_interval * 1000000ull);
}

void
log_set_clock(uint64_t (*now_us)(void))
{
	log_clock = now_us != NULL ? now_us : util_mono_us;
}

/* A growing line that never overflows: writes past the end are dropped and
 * remembered, so the line can say it was truncated. */
struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
	bool full;
};

/* Room kept at the end for " truncated=1\n". */
#define LINE_RESERVE 16

static void
line_putc(struct line *l, char c)
{
	if (l->len + LINE_RESERVE >= sizeof(l->buf)) {
		l->full = true;
		return;
	}
	l->buf[l->len++] = c;
}

static void
line_puts(struct line *l, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		line_putc(l, s[i]);
}

static bool
needs_quotes(const char *s, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f)
			return true;
	}
	return false;
}

static void
line_value(struct line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (!needs_quotes(s, n)) {
		line_puts(l, s, n);
		return;
	}
	line_putc(l, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': line_puts(l, "\\\"", 2); break;
		case '\\': line_puts(l, "\\\\", 2); break;
		case '\n': line_puts(l, "\\n", 2); break;
		case '\r': line_puts(l, "\\r", 2); break;
		case '\t': line_puts(l, "\\t", 2); break;
		default:
			if (c < ' ' || c == 0x7f) {
				char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
				line_puts(l, esc, 4);
			} else {
				line_putc(l, (char)c);
			}
		}
	}
	line_putc(l, '"');
}

/* Formats `key=%conv key=%conv` pairs, consuming one argument per
 * conversion with the type the conversion names. Anything else in the format
 * is copied as it is (so a malformed format shows up in the output, it does
 * not crash). */
static void
line_kv(struct line *l, const char *fmt, va_list ap)
{
	const char *p = fmt;

	while (*p != '\0') {
		if (*p != '%') {
			line_putc(l, *p++);
			continue;
		}
		p++;
		if (*p == '%') {
			line_putc(l, *p++);
			continue;
		}
		char spec[16];
		size_t sl = 0;
		spec[sl++] = '%';
		bool star = false;
		if (p[0] == '.' && p[1] == '*') {
			star = true;
			p += 2;
		}
		/* length modifiers */
		char mod[3] = { 0 };
		size_t ml = 0;
		while ((*p == 'h' || *p == 'l' || *p == 'z' || *p == 'j') && ml < 2) {
			mod[ml++] = *p;
			spec[sl++] = *p++;
		}
		char conv = *p;
		if (conv == '\0')
			break;
		p++;
		spec[sl++] = conv;
		spec[sl] = '\0';

		char val[512];
		int n = 0;
		switch (conv) {
		case 's': {
			if (star) {
				int len = va_arg(ap, int);
				const char *s = va_arg(ap, const char *);
				line_value(l, s != NULL ? s : "", s != NULL && len > 0 ? (size_t)len : 0);
			} else {
				const char *s = va_arg(ap, const char *);
				if (s == NULL)
					s = "";
				line_value(l, s, strlen(s));
			}
			continue;
		}
		case 'c':
			val[0] = (char)va_arg(ap, int);
			line_value(l, val, 1);
			continue;
		case 'f': case 'g': case 'e':
			n = snprintf(val, sizeof(val), spec, va_arg(ap, double));
			break;
		case 'd': case 'i':
			if (ml == 0 || mod[0] == 'h')
				n = snprintf(val, sizeof(val), "%d", va_arg(ap, int));
			else if (ml == 2 && mod[0] == 'l')
				n = snprintf(val, sizeof(val), "%lld", va_arg(ap, long long));
			else if (mod[0] == 'l')
				n = snprintf(val, sizeof(val), "%ld", va_arg(ap, long));
			else if (mod[0] == 'z')
				n = snprintf(val, sizeof(val), "%zd", va_arg(ap, ptrdiff_t));
			else
				n = snprintf(val, sizeof(val), "%jd", va_arg(ap, intmax_t));
			break;
		case 'u': case 'x': {
			unsigned long long v;
			if (ml == 0 || mod[0] == 'h')
				v = va_arg(ap, unsigned);
			else if (ml == 2 && mod[0] == 'l')
				v = va_arg(ap, unsigned long long);
			else if (mod[0] == 'l')
				v = va_arg(ap, unsigned long);
			else if (mod[0] == 'z')
				v = va_arg(ap, size_t);
			else
				v = va_arg(ap, uintmax_t);
			n = snprintf(val, sizeof(val), conv == 'u' ? "%llu" : "%llx", v);
			break;
		}
		default:
			/* Unknown conversion: show it, consume nothing. */
			line_puts(l, spec, sl);
			continue;
		}
		if (n < 0)
			n = 0;
		if ((size_t)n >= sizeof(val))
			n = sizeof(val) - 1;
		line_value(l, val, (size_t)n);
	}
}

/* Returns false when the line must be suppressed; sets *report to the
 * number of lines suppressed in the window that just ended. */
static bool
ratelimit(int level, const char *mod, const char *msg, unsigned *report)
{
	*report = 0;
	if (rl_burst == 0)
		return true;

	uintptr_t h = ((uintptr_t)mod * 31u) ^ (uintptr_t)msg;
	h ^= h >> 7;
	struct rl_slot *s = &rl_slots[h % RL_SLOTS];
	uint64_t now = log_clock();

	if (s->mod != mod || s->msg != msg) {
		/* Slot taken by another message: report its suppressed count with
		 * it, then reuse the slot. Collisions only cost precision. */
		if (s->msg != NULL && s->suppressed > 0) {
			struct rl_slot old = *s;
			s->msg = NULL;
			log_emit(old.level, old.mod, old.msg, "suppressed=%u", old.suppressed);
		}
		*s = (struct rl_slot){ .mod = mod, .msg = msg, .level = level,
			.window_start = now, .count = 0 };
	}
	if (now - s->window_start >= rl_interval_us) {
		*report = s->suppressed;
		s->window_start = now;
		s->count = 0;
		s->suppressed = 0;
	}
	if (s->count >= rl_burst) {
		s->suppressed++;
		return false;
	}
	s->count++;
	return true;
}

void
log_flush_suppressed(void)
{
	uint64_t now = log_clock();

	for (size_t i = 0; i < RL_SLOTS; i++) {
		struct rl_slot *s = &rl_slots[i];
		if (s->msg == NULL || s->suppressed == 0 ||
		    now - s->window_start < rl_interval_us)
			continue;
		unsigned n = s->suppressed;
		struct rl_slot old = *s;
		*s = (struct rl_slot){ 0 };
		log_emit(old.level, old.mod, old.msg, "suppressed=%u", n);
	}
}

static void
log_vemit(int level, const char *mod, const char *msg, const char *errstr,
    const char *kvfmt, va_list ap)
{
	unsigned suppressed;
	struct line l;

	if (level > log_level || log_level_name(level) == NULL)
		return;
	if (!ratelimit(level, mod, msg, &suppressed))
		return;

	l.len = 0;
	l.full = false;
	char head[64];
	int n = snprintf(head, sizeof(head), "<%d>level=%s mod=", level,
	    log_level_name(level));
	line_puts(&l, head, (size_t)n);
	line_value(&l, mod, strlen(mod));
	line_puts(&l, " msg=\"", 6);
	/* msg is always quoted */
	struct line tmp = { .len = 0 };
	line_value(&tmp, msg, strlen(msg));
	if (tmp.buf[0] == '"')
		line_puts(&l, tmp.buf + 1, tmp.len - 2);
	else
		line_puts(&l, tmp.buf, tmp.len);
	line_putc(&l, '"');
	if (kvfmt != NULL && kvfmt[0] != '\0') {
		line_putc(&l, ' ');
		line_kv(&l, kvfmt, ap);
	}
	if (errstr != NULL) {
		line_puts(&l, " error=", 7);
		line_value(&l, errstr, strlen(errstr));
	}
	if (suppressed > 0) {
		char s[32];
		n = snprintf(s, sizeof(s), " suppressed=%u", suppressed);
		line_puts(&l, s, (size_t)n);
	}
	if (l.full) {
		memcpy(l.buf + l.len, " truncated=1", 12);
		l.len += 12;
	}
	l.buf[l.len++] = '\n';

	/* One write per line so concurrent writers never interleave lines. */
	const char *p = l.buf;
	size_t left = l.len;
	while (left > 0) {
		ssize_t w = write(log_fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		left -= (size_t)w;
	}
}

void
log_emit(int level, const char *mod, const char *msg, const char *kvfmt, ...)
{
	va_list ap;

	va_start(ap, kvfmt);
	log_vemit(level, mod, msg, NULL, kvfmt, ap);
	va_end(ap);
}

void
log_errno(int level, const char *mod, const char *msg, const char *kvfmt, ...)
{
	char err[128];
	va_list ap;

	snprintf(err, sizeof(err), "%s", strerror(errno));
	va_start(ap, kvfmt);
	log_vemit(level, mod, msg, err, kvfmt, ap);
	va_end(ap);
}
