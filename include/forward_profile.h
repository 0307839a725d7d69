/* forward_profile.c — what a forwarding protocol decides: the body of a
 * batch, its key, and what a reply means for the batch's rows.
 *
 * forward.c owns the rows, the lanes, the retries and the requests; a
 * profile only turns records into a body and (libcurl's result, the HTTP
 * status, the reply) into an outcome, without I/O and without state of
 * its own. The "gridbridge" profile: a gridbridge.v1 EventBatch as
 * protobuf or as its JSON mapping, an Idempotency-Key from the events'
 * ids, and the reply semantics of gridbridge.conf(5) (2xx sent, other 4xx
 * than 408 and 429 refused, the rest retried). The "viid" profile
 * (forward_viid_profile.h) answers per row: a batch of one object kind,
 * rows it refuses at once, and per-object statuses in a 2xx reply. */
#ifndef GRIDBRIDGE_FORWARD_PROFILE_H
#define GRIDBRIDGE_FORWARD_PROFILE_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FORWARD_REPLY_KEEP 512		/* bytes of a reply kept for the outcome */
/* An outcome's text: an error (CURL_ERROR_SIZE and a hint) or a reply's
 * FORWARD_REPLY_KEEP bytes as text, each byte \xNN at worst. */
#define FORWARD_TEXT_MAX (4 * FORWARD_REPLY_KEEP + 1)

struct viid_picture;

/* One event of a batch, in body order. */
struct forward_record {
	const uint8_t *id;		/* 16 bytes */
	const uint8_t *record;		/* a packed gridbridge.v1.Event */
	size_t len;
	/* Profiles with picture_urls: the pictures fetched, in the order
	 * picture_urls gave their URLs; NULL (0) when none was. */
	const struct viid_picture *pictures;
	size_t npictures;
};

/* What came back for a request: what libcurl says, and the lane's state
 * that the outcome depends on. */
struct forward_reply {
	CURLcode code;
	const char *error;		/* libcurl's error buffer; "" or NULL for none */
	long status;			/* HTTP status; 0 for none */
	long long retry_after_s;	/* Retry-After in seconds; 0 for none */
	long long appconnect_us;	/* TLS handshake done; 0: none (plain HTTP, or no connection) */
	long long pretransfer_us;	/* the request was about to go out; 0: it never did */
	long long total_us;
	const unsigned char *body;	/* the reply's first bytes */
	size_t body_len;
	bool body_cut;			/* ... and there were more */
	bool tls_outage;		/* the lane's failures began with a TLS error and no
					 * request succeeded since */
};

enum forward_verdict {
	FORWARD_SENT,			/* the rows are delivered */
	FORWARD_REFUSED,		/* the platform will not take them as they are */
	FORWARD_RETRY,			/* about the platform's state: same batch, later */
	FORWARD_RETRY_CONTENT,		/* retry; the batch's content may be at fault */
	FORWARD_RETRY_TLS,		/* retry; a TLS failure (logged at error) */
};

struct forward_outcome {
	enum forward_verdict verdict;
	long long retry_after_s;	/* the delay the platform asked for; 0: none */
	/* Retry: the error, printable, for logs and the outbox. Refused: the
	 * reply as UTF-8 text for the outbox. Sent: "". */
	char text[FORWARD_TEXT_MAX];
};

/* What became of one row of a batch the platform answered as a whole
 * with success (profiles with classify_rows). */
enum forward_row_verdict {
	FORWARD_ROW_SENT,
	FORWARD_ROW_FAILED,		/* refused: code and text go to the outbox */
	FORWARD_ROW_RETRY,		/* about the platform's state */
	FORWARD_ROW_RETRY_CONTENT,	/* retry; the batch's content may be at fault */
};

#define FORWARD_ROW_TEXT_MAX 384	/* a row's text, NUL included */

struct forward_row_outcome {
	enum forward_row_verdict verdict;
	long long code;			/* the platform's code for the row; 0: none */
	char text[FORWARD_ROW_TEXT_MAX];	/* failed, retried: why, printable UTF-8 */
};

struct forward_profile {
	const char *name;		/* "gridbridge", "viid" */
	const char *format;		/* for the logs: "protobuf", "json" */
	const char *content_type;	/* the Content-Type header line */
	size_t reply_keep;		/* bytes of a reply kept; 0: FORWARD_REPLY_KEEP */
	void *ctx;			/* the profile's own, for the functions below */
	/* The body of `n` records (malloc'd, *len bytes; never NULL) and the
	 * batch's key, in hex, for the Idempotency-Key header. */
	char *(*build_body)(const struct forward_record *recs, size_t n, size_t *len);
	void (*batch_key)(const struct forward_record *recs, size_t n, char key[33]);
	void (*classify)(const struct forward_reply *r, struct forward_outcome *out);

	/* Profiles that answer per row set these; NULL for one answer per
	 * batch (gridbridge). */
	/* The body, with the profile's context (when set, instead of
	 * build_body). */
	char *(*build_body_ctx)(void *ctx, const struct forward_record *recs, size_t n,
	    size_t *len);
	/* The kind of batch a record goes in (records of different kinds never
	 * share a batch): >= 0; or -1 when the profile will never send it,
	 * *why a fixed text for the outbox. */
	int (*row_kind)(void *ctx, const struct forward_record *rec, const char **why);
	/* The path (appended to the target's url) and method of a batch of
	 * `kind`; NULL: the url as it is, POST. */
	const char *(*kind_path)(int kind, const char **method);
	/* The exchange succeeded (classify said sent): what became of each
	 * of the `n` rows, rows[i] for recs[i]. */
	void (*classify_rows)(void *ctx, const struct forward_reply *r,
	    const struct forward_record *recs, size_t n, struct forward_row_outcome *rows);
	/* Profiles that send pictures themselves (viid, picture = data): the
	 * URLs of the pictures of `rec` the body needs (each malloc'd, up to
	 * `max`), fetched before its batch is built. NULL: none needed. */
	size_t (*picture_urls)(void *ctx, const struct forward_record *rec, char **urls,
	    size_t max);
};

/* The gridbridge profile, with protobuf or JSON bodies. */
const struct forward_profile *forward_profile_gridbridge(bool json);

#endif
