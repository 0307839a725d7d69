/* log.c — one logfmt line per event on stderr.
 *
 *   <6>level=info mod=store msg="batch committed" rows=500 ms=14
 *
 * The prefix is the syslog priority (systemd-journald reads it). `level`,
 * `mod` and `msg` always come first; `msg` is a constant string, always
 * quoted. The key/value format string is printf-like but must consist of
 * `key=%conv` pairs separated by single spaces; each value is formatted on
 * its own and quoted and escaped when it needs to be (empty, spaces, `=`,
 * `"`, `\`, control characters). Supported conversions: d i u x with the
 * h hh l ll z j modifiers, s, .*s (length-limited string), f g e, c.
 *
 * Never pass payloads or personal data (plates, ID numbers, names) as values.
 *
 * Repeats are rate-limited per (mod, msg): at most `burst` lines per
 * `interval`; the first line after a window with suppressed lines carries
 * `suppressed=N`, and log_flush_suppressed() (called from a timer) reports
 * counts for messages that did not come back.
 */
#ifndef GRIDBRIDGE_LOG_H
#define GRIDBRIDGE_LOG_H

#include <stdint.h>

enum log_level {
	LOG_LVL_ERROR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Lines longer than this are cut and end with `truncated=1`. */
#define LOG_LINE_MAX 4096

void log_set_level(int level);
int log_get_level(void);
/* Output file descriptor; stderr by default. */
void log_set_fd(int fd);
/* burst 0 turns rate limiting off. */
void log_set_ratelimit(unsigned burst, uint64_t interval_us);
/* Applies the [daemon] log_level, log_rate_burst and log_rate_interval of
 * `cfg` (at start and on SIGHUP). */
struct config;
void log_apply(const struct config *cfg);
/* Clock used for rate limiting (monotonic µs); NULL restores the default. */
void log_set_clock(uint64_t (*now_us)(void));

/* Returns the level name used in `level=` or NULL. */
const char *log_level_name(int level);

void log_emit(int level, const char *mod, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Emits `suppressed=N` lines for windows that ended with suppressed repeats. */
void log_flush_suppressed(void);

/* Like log_emit, but adds error="<strerror(errno)>". */
void log_errno(int level, const char *mod, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_debug(mod, msg, ...) log_emit(LOG_LVL_DEBUG, mod, msg, __VA_ARGS__)
#define log_info(mod, msg, ...) log_emit(LOG_LVL_INFO, mod, msg, __VA_ARGS__)
#define log_notice(mod, msg, ...) log_emit(LOG_LVL_NOTICE, mod, msg, __VA_ARGS__)
#define log_warn(mod, msg, ...) log_emit(LOG_LVL_WARN, mod, msg, __VA_ARGS__)
#define log_error(mod, msg, ...) log_emit(LOG_LVL_ERROR, mod, msg, __VA_ARGS__)

#endif
