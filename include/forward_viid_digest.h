/* forward_viid_digest.c — HTTP Digest authentication (RFC 7616 with
 * algorithm MD5 and qop=auth, as GA/T 1400.4 platforms use it; RFC 2617
 * clients are answered the same way) on the server side: the cascade
 * listener challenges the platform's requests and checks its answers.
 *
 * Nonces carry their own time and a MAC under a key made at start, so the
 * server keeps no table of the nonces it gave: a nonce is genuine when its
 * MAC is ours, fresh while younger than nonce_ttl_s (an older genuine one
 * is answered with stale=true, which clients answer again by themselves).
 * The nonce counts (nc) seen are kept for the most recent nonces in a
 * table of bounded size: a count that does not increase for its nonce is a
 * replay. Every header field read is bounded; any bytes at all are
 * answered without a crash. MD5 and the MAC come from OpenSSL's libcrypto.
 *
 * What is accepted (qop, algorithm, opaque, the parser's rules) and the
 * order in which a header's faults are found are in the comment at the
 * top of forward_viid_digest.c. Pure: nothing is logged. An instance is
 * not safe for concurrent calls (its nc table).
 */
#ifndef GRIDBRIDGE_FORWARD_VIID_DIGEST_H
#define GRIDBRIDGE_FORWARD_VIID_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIID_DIGEST_HEADER_MAX 4096	/* a longer Authorization is refused */
#define VIID_DIGEST_FIELD_MAX 512	/* a longer auth-param value is refused */
#define VIID_DIGEST_CHALLENGE_MAX 512	/* room for a WWW-Authenticate value */

struct viid_digest;

enum viid_digest_verdict {
	VIID_DIGEST_OK,
	VIID_DIGEST_MISSING,		/* no Authorization, or not Digest */
	VIID_DIGEST_MALFORMED,		/* a field missing, too long, or unparsable */
	VIID_DIGEST_WRONG_USER,		/* username or realm not ours */
	VIID_DIGEST_WRONG_URI,		/* uri is not the request target */
	/* The two below come only with a right response (the client knows the
	 * password): challenge with stale=true, the client answers again. */
	VIID_DIGEST_UNKNOWN_NONCE,	/* not a nonce we gave (or from before a restart) */
	VIID_DIGEST_STALE,		/* ours, older than nonce_ttl_s */
	VIID_DIGEST_REPLAY,		/* nc did not increase for this nonce */
	VIID_DIGEST_WRONG_RESPONSE,	/* the password (or the method) does not match */
	VIID_DIGEST_UNSUPPORTED,	/* algorithm other than MD5, qop other than auth */
};

/* A name for the log ("wrong_response", ...): never the header's data. */
const char *viid_digest_verdict_name(enum viid_digest_verdict v);

/* `realm` and `username` are copied; the password is not kept, only
 * HA1 = MD5(username:realm:password), which stands for it. nonce_ttl_s >
 * 0; nc counts are kept for the last `max_nonces` nonces accepted (>= 1).
 * NULL when an argument is refused: a NULL, an empty username, a realm or
 * username with '"', '\\' or a control character (they go into quoted
 * strings as they are), a username longer than VIID_DIGEST_FIELD_MAX or
 * a realm too long for a challenge to fit VIID_DIGEST_CHALLENGE_MAX
 * (more than 340 bytes), nonce_ttl_s <= 0, max_nonces 0; and when
 * libcrypto has no MD5 (a FIPS-only provider) or cannot give a random
 * key, or memory is short. */
struct viid_digest *viid_digest_new(const char *realm, const char *username,
    const char *password, long nonce_ttl_s, size_t max_nonces);
/* Wipes HA1 and the key. NULL is fine. */
void viid_digest_free(struct viid_digest *d);

/* The value of a WWW-Authenticate header for a 401 (`now_ms` on any
 * monotonic clock the caller also passes to check): Digest realm, qop
 * "auth", a fresh nonce, opaque, algorithm MD5, and stale=true when
 * `stale`. Returns 0, or -1 (and "" when len > 0) when `len` is too
 * small or libcrypto gives no random bytes; VIID_DIGEST_CHALLENGE_MAX
 * bytes are always enough. */
int viid_digest_challenge(struct viid_digest *d, int64_t now_ms, bool stale, char *out,
    size_t len);

/* The Authorization header `authorization` (NULL: none) of a request
 * `method` `uri` (the request target as sent, path and query; neither
 * NULL). `now_ms` on the clock given to viid_digest_challenge(). Only an
 * OK records the nc: a request without the password changes nothing. */
enum viid_digest_verdict viid_digest_check(struct viid_digest *d, const char *authorization,
    const char *method, const char *uri, int64_t now_ms);

/* ---- the parts, for tests ---------------------------------------------- */

/* RFC 7616 3.4.1 with MD5 and qop=auth: the request-digest as 32 lower
 * case hex digits. No argument NULL. */
void viid_digest_response(const char *username, const char *realm, const char *password,
    const char *method, const char *uri, const char *nonce, const char *nc,
    const char *cnonce, const char *qop, char out[33]);

/* The auth-params of a Digest Authorization header (after "Digest "):
 * names case-insensitive, values quoted or not, quoted-pairs undone.
 * Only the fields below are kept; each is NUL-terminated within its
 * array. Returns 0, or -1 when the header is not Digest, a value is
 * longer than VIID_DIGEST_FIELD_MAX, the text does not parse, a field
 * kept here is given twice, or the header is longer than
 * VIID_DIGEST_HEADER_MAX; every field is then "". An absent field is "",
 * as is an empty quoted one. */
struct viid_digest_params {
	char username[VIID_DIGEST_FIELD_MAX + 1];
	char realm[VIID_DIGEST_FIELD_MAX + 1];
	char nonce[VIID_DIGEST_FIELD_MAX + 1];
	char uri[VIID_DIGEST_FIELD_MAX + 1];
	char response[VIID_DIGEST_FIELD_MAX + 1];
	char algorithm[VIID_DIGEST_FIELD_MAX + 1];
	char cnonce[VIID_DIGEST_FIELD_MAX + 1];
	char opaque[VIID_DIGEST_FIELD_MAX + 1];
	char qop[VIID_DIGEST_FIELD_MAX + 1];
	char nc[VIID_DIGEST_FIELD_MAX + 1];
	bool userhash;
};
int viid_digest_parse(const char *authorization, struct viid_digest_params *p);

#endif
