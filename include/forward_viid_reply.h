/* forward_viid_reply.c — the VIID (GA/T 1400) profile's reading of a
 * platform's replies: per-object statuses of an upload, the session
 * answers (Register, Keepalive, UnRegister), System/Time, and whether a
 * reply's Content-Type is one we read. Pure: no I/O, no state; every input
 * is bounded (VIID_REPLY_MAX_BYTES, VIID_REPLY_MAX_STATUSES, the text
 * sizes below) and any bytes at all are answered without a crash.
 *
 * The rules, and where implementations of the standard disagree, are in
 * the comment at the top of forward_viid_reply.c. In short, per object of
 * an upload:
 *
 *   StatusCode 0                      sent
 *   StatusCode 4..8                   failed (code and StatusString kept)
 *   1, 2, 3, 9, any other code,       retry
 *     no StatusCode, no status
 *   one status without an object's    0: all sent; 4..8: all retried as
 *     Id for a batch of several         "maybe the content" (the forwarder
 *                                       splits the batch to find the one
 *                                       at fault); else all retried
 *   a reply that is no status list    every object retried, a reason
 *                                       for the log */
#ifndef GRIDBRIDGE_FORWARD_VIID_REPLY_H
#define GRIDBRIDGE_FORWARD_VIID_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define VIID_REPLY_MAX_BYTES (2 << 20)	/* longer replies are not parsed */
/* Status objects read from one reply; the largest batch_rows, so that a
 * batch is always answered whole. Any beyond are ignored. */
#define VIID_REPLY_MAX_STATUSES 10000
#define VIID_ID_MAX 48			/* the longest GA/T 1400.1 id: an object's */
#define VIID_TEXT_MAX 256		/* bytes of a StatusString kept (UTF-8) */
#define VIID_REASON_MAX 320		/* a reason for the log, NUL included */
#define VIID_TIME_MAX 32		/* bytes of a LocalTime kept */
#define VIID_FIELD_MAX 64		/* bytes of VIIDServerID, TimeMode, TimeZone kept */

enum viid_verdict {
	VIID_SENT,			/* StatusCode 0 */
	VIID_FAILED,			/* StatusCode 4..8: the platform will not take it */
	VIID_RETRY,			/* the platform's state, or no answer for it */
	VIID_RETRY_CONTENT,		/* retry; the batch's content may be at fault */
};

/* What the reply said about one object of the request. */
struct viid_status {
	enum viid_verdict verdict;
	bool has_code;			/* a StatusCode was read (a number or a numeric string) */
	long long code;			/* ... its value; 0 without */
	/* Why, for the log and the outbox: "" when the status was read and
	 * mapped plainly, else a fixed text ("no status for this object",
	 * "no StatusCode", ...). Never NULL. */
	const char *note;
	/* StatusString: valid UTF-8, control characters as spaces, cut at a
	 * character boundary within VIID_TEXT_MAX bytes; "" without. */
	char text[VIID_TEXT_MAX + 1];
};

/* About the reply as a whole, for the log. */
struct viid_upload_summary {
	size_t entries;			/* status objects read (at most VIID_REPLY_MAX_STATUSES) */
	size_t ignored;			/* ... that answered no object (past the end,
					 * a duplicate Id, the object already answered) */
	bool capped;			/* the reply held more than VIID_REPLY_MAX_STATUSES */
	bool whole_batch;		/* one status without an object's Id answered all */
	/* The reply was no status list: why (the batch is retried). "" else. */
	char reason[VIID_REASON_MAX];
};

/* The reply to an upload of `n` objects whose ids (FaceID, MotorVehicleID,
 * ...; NULL: unknown) are ids[0..n-1] in body order. `body` is `len` bytes,
 * not necessarily NUL-terminated; `cut`: the reply was longer than what
 * was kept. Fills st[0..n-1] (every one, whatever the reply) and *sum;
 * returns false when the body is not a status list (every object then
 * VIID_RETRY, the reason in sum->reason). */
bool forward_viid_upload_reply(const void *body, size_t len, bool cut,
    const char *const *ids, size_t n, struct viid_status *st,
    struct viid_upload_summary *sum);

/* `n` bytes of valid UTF-8 at `text` (JSON strings are) as kept text:
 * cut at a character boundary within `max` bytes (out has max + 1), C0,
 * DEL and C1 controls as spaces. */
void forward_viid_clean_text(const char *text, size_t n, char *out, size_t max);

/* The answer to Register, Keepalive or UnRegister. */
struct viid_session_reply {
	bool has_code;
	long long code;
	char text[VIID_TEXT_MAX + 1];	/* StatusString, as in struct viid_status */
	char reason[VIID_REASON_MAX];	/* when not a success: why; "" on success */
};

/* True for a success: HTTP 200 with StatusCode 0 (a number or a string)
 * in a ResponseStatusObject, bare or in a ResponseStatusListObject (its
 * first). Else false and the reason in out->reason. */
bool forward_viid_session_reply(long http_status, const void *body, size_t len, bool cut,
    struct viid_session_reply *out);

/* The answer to GET /VIID/System/Time. */
struct viid_time_reply {
	/* LocalTime as sent: a string (14 or 17 digits expected), or a JSON
	 * integer (epoch milliseconds) in decimal; printable ASCII only. Its
	 * form is not checked here: the time parser does that. */
	char local_time[VIID_TIME_MAX + 1];
	size_t local_time_len;
	bool numeric;			/* LocalTime was a JSON number */
	/* VIIDServerID, TimeMode, TimeZone, printable, "" when absent. */
	char server_id[VIID_FIELD_MAX + 1];
	char time_mode[VIID_FIELD_MAX + 1];
	char time_zone[VIID_FIELD_MAX + 1];
	char reason[VIID_REASON_MAX];	/* when false: why */
};

/* True when the reply holds a LocalTime (SystemTimeObject; failing that a
 * ResponseStatusObject's LocalTime). */
bool forward_viid_time_reply(const void *body, size_t len, bool cut, struct viid_time_reply *out);

/* A reply's Content-Type value (without "Content-Type:") that we read:
 * application/VIID+JSON, application/json, application/<anything>+json,
 * any case, with or without parameters (charset, ...). NULL: false (the
 * caller decides whether a reply without one is read). */
bool forward_viid_content_type_ok(const char *value);

/* The name the standard gives a StatusCode ("OK", "Device Busy", ...;
 * GA/T 1400.4's status code table), or NULL for a code it does not list. */
const char *forward_viid_code_name(long long code);

#endif
