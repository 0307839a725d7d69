/* util.c — the few things every stage writes the same way: the monotonic
 * clock, allocation that cannot fail, comma-separated lists.
 *
 * A leaf: it includes libc headers only and no other header of the daemon,
 * so that any file may use it (log.c too).
 *
 * Out of memory. The daemon does not try to go on without memory where a
 * failure could not be handled sensibly anyway (a half-built stage, a
 * decision log that must not lose entries): util_malloc() and friends then
 * write one line to stderr,
 *
 *   <2>level=crit mod=util msg="out of memory" bytes=N
 *
 * (the shape of log.c's lines, written without it: it may be what needs
 * the memory) and abort(). Code that can refuse one piece of work and
 * carry on (the journal refusing one append, the configuration parser
 * reporting an error) checks for NULL itself and does not use these.
 */
#ifndef GRIDBRIDGE_UTIL_H
#define GRIDBRIDGE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the monotonic clock (CLOCK_MONOTONIC) ---------------------------- */

/* Milliseconds; signed, as deadlines and durations are computed with it. */
int64_t util_mono_ms(void);
/* Microseconds; unsigned, the type of log.c's clock and of systemd's
 * MONOTONIC_USEC. */
uint64_t util_mono_us(void);

/* ---- the wall clock ---------------------------------------------------- */

/* The daemon's wall clock, UTC microseconds since the epoch: the system's
 * (CLOCK_REALTIME) plus an offset that is 0 except in tests ([daemon]
 * clock_offset_file). Receive times and the derived events' timers read
 * it, so a test moves them together. */
int64_t util_wall_us(void);
void util_set_wall_offset_us(int64_t offset_us);
int64_t util_wall_offset_us(void);

/* Did the system's wall clock step since the last call (settimeofday, an
 * NTP step, a virtual machine resumed)? Compares CLOCK_REALTIME -
 * CLOCK_MONOTONIC with its value at the last call: the difference in
 * microseconds when it is more than UTIL_CLOCK_STEP_MIN_US either way (the
 * clock moved that much more, or less, than time passed), else 0; the
 * first call gives 0. Each call starts from the value it read, so slewing
 * (NTP's gradual corrections) never adds up to a step, and a step is told
 * once. The test offset (util_set_wall_offset_us) is not the system's
 * clock: moving it is time passing, not a step. */
#define UTIL_CLOCK_STEP_MIN_US 1000000
int64_t util_clock_step_us(void);

/* ---- text -------------------------------------------------------------- */

/* The value of a hexadecimal digit (either case), or -1. */
int util_hex_digit(int c);

/* FNV-1a, 64 bits, of `len` bytes, continuing from `h` (start:
 * UTIL_FNV1A64_INIT). For in-memory tables only: never persisted. */
#define UTIL_FNV1A64_INIT 14695981039346656037ull
uint64_t util_fnv1a64(uint64_t h, const void *data, size_t len);

/* ---- allocation with one out-of-memory policy ------------------------- */

/* Writes the line above and aborts. For allocations made by a library. */
_Noreturn void util_oom(size_t bytes);

/* malloc(), calloc(), realloc(), strdup() and strndup() that never return
 * NULL. A zero size allocates one byte, so the result is never NULL
 * either; util_calloc() also refuses a product that overflows. */
void *util_malloc(size_t size);
void *util_calloc(size_t n, size_t size);
void *util_realloc(void *p, size_t size);
char *util_strdup(const char *s);
char *util_strndup(const char *s, size_t n);

/* ---- comma-separated lists -------------------------------------------- */

/* "a, b,,c " is the items "a", "b" and "c": split at commas, spaces and
 * tabs around each item dropped, empty items skipped (space inside an
 * item stays). The configuration's name lists are spelt this way. */

/* The next item of the list at *s: sets *item and *len (not
 * NUL-terminated), moves *s past it and returns true; false at the end. */
bool util_list_next(const char **s, const char **item, size_t *len);

/* True when the `n` bytes at `s` are valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF): what jansson accepts as a string. */
bool util_utf8_valid(const void *s, size_t n);
/* The length (1..4) of the UTF-8 sequence starting the `n` bytes at `s`,
 * by the same rules; 0 when it is not valid or is cut short. */
size_t util_utf8_len(const void *s, size_t n);

/* All the items, copied, in a NULL-terminated vector; NULL when there are
 * none. Free with util_strv_free(). */
char **util_split_list(const char *list);
void util_strv_free(char **v);

#endif
