/* Fuzz target: the cascade listener's Digest (forward_viid_digest.h). The
 * input is an Authorization header: it is parsed, and checked against one
 * instance made at the first call.
 *
 * So that mutations get past the nonce's MAC, these words of the input
 * are replaced first: @NONCE@ by a nonce the instance has just given,
 * @STALE@ by one it gave past nonce_ttl_s, @OPAQUE@ by its opaque; then
 * @RESPONSE@ by the right response for the fields the header has (taken
 * from a parse with the word in place).
 *
 * Invariants (abort when broken): every field of a parse is NUL-terminated
 * within its array, and all are empty when the parse fails; a header that
 * parses is at most VIID_DIGEST_HEADER_MAX bytes and is not "missing"; one
 * that does not is missing or malformed; the verdict is one of the enum
 * and has a name; unknown_nonce, stale, replay and ok come with the
 * response the password gives; an "ok" is for our user, realm and request
 * target, and the same header checked again is a replay. A challenge in a buffer of
 * any size is made exactly when it fits, and is NUL-terminated. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "forward_viid_digest.h"
#include "fuzz.h"

#define REALM "viid"
#define USER "admin"
#define PASS "Pass1234"
#define URI "/VIID/System/Register"
#define TTL_S 60
#define NOW_MS 10000000

static struct viid_digest *d;
static char opaque[VIID_DIGEST_FIELD_MAX + 1];
static size_t challenge_len;		/* without stale=true */

static void
params_ok(const struct viid_digest_params *p, int r)
{
	const char *const f[] = { p->username, p->realm, p->nonce, p->uri, p->response,
		p->algorithm, p->cnonce, p->opaque, p->qop, p->nc };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (memchr(f[i], '\0', VIID_DIGEST_FIELD_MAX + 1) == NULL)
			abort();
		if (r != 0 && f[i][0] != '\0')
			abort();
	}
	if (r != 0 && p->userhash)
		abort();
	if (r != 0 && r != -1)
		abort();
}

/* A nonce the instance gives at now_ms. */
static void
nonce_at(int64_t now_ms, char out[VIID_DIGEST_FIELD_MAX + 1])
{
	char ch[VIID_DIGEST_CHALLENGE_MAX];
	struct viid_digest_params p;

	if (viid_digest_challenge(d, now_ms, false, ch, sizeof(ch)) != 0 ||
	    viid_digest_parse(ch, &p) != 0 || strcmp(p.opaque, opaque) != 0)
		abort();
	memcpy(out, p.nonce, sizeof(p.nonce));
}

/* `s` with every `word` replaced by `value` (malloc'd). */
static char *
replace(const char *s, const char *word, const char *value)
{
	size_t wn = strlen(word), vn = strlen(value), count = 0;

	for (const char *at = s; (at = strstr(at, word)) != NULL; at += wn)
		count++;
	char *out = malloc(strlen(s) + count * vn + 1), *o = out;
	if (out == NULL)
		abort();
	for (const char *at; (at = strstr(s, word)) != NULL; s = at + wn) {
		memcpy(o, s, (size_t)(at - s));
		o += at - s;
		memcpy(o, value, vn);
		o += vn;
	}
	strcpy(o, s);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct viid_digest_params p;
	char fresh[VIID_DIGEST_FIELD_MAX + 1], stale[VIID_DIGEST_FIELD_MAX + 1];
	char response[33], ch[VIID_DIGEST_CHALLENGE_MAX];

	if (d == NULL) {
		d = viid_digest_new(REALM, USER, PASS, TTL_S, 16);
		if (d == NULL || viid_digest_challenge(d, 0, false, ch, sizeof(ch)) != 0 ||
		    viid_digest_parse(ch, &p) != 0)
			abort();
		memcpy(opaque, p.opaque, sizeof(opaque));
		challenge_len = strlen(ch);
	}

	/* The input as a C string (it ends at its first NUL, as a header
	 * would for the listener). */
	char *in = malloc(size + 1);
	if (in == NULL)
		abort();
	memcpy(in, data, size);
	in[size] = '\0';

	nonce_at(NOW_MS - 1000, fresh);
	nonce_at(NOW_MS - (TTL_S + 1) * 1000, stale);
	char *a = replace(in, "@NONCE@", fresh);
	char *b = replace(a, "@STALE@", stale);
	char *h = replace(b, "@OPAQUE@", opaque);
	free(a);
	free(b);
	if (strstr(h, "@RESPONSE@") != NULL && viid_digest_parse(h, &p) == 0) {
		viid_digest_response(p.username, p.realm, PASS, "POST", p.uri, p.nonce, p.nc,
		    p.cnonce, p.qop, response);
		char *r = replace(h, "@RESPONSE@", response);
		free(h);
		h = r;
	}

	int r = viid_digest_parse(h, &p);
	params_ok(&p, r);
	if (r == 0 && strlen(h) > VIID_DIGEST_HEADER_MAX)
		abort();

	enum viid_digest_verdict v = viid_digest_check(d, h, "POST", URI, NOW_MS);
	if ((int)v < (int)VIID_DIGEST_OK || (int)v > (int)VIID_DIGEST_UNSUPPORTED ||
	    strcmp(viid_digest_verdict_name(v), "invalid") == 0)
		abort();
	if (r == 0 && v == VIID_DIGEST_MISSING)
		abort();
	if (r != 0 && v != VIID_DIGEST_MISSING && v != VIID_DIGEST_MALFORMED)
		abort();
	/* Past wrong_response, the response is the password's. */
	if (v == VIID_DIGEST_UNKNOWN_NONCE || v == VIID_DIGEST_STALE ||
	    v == VIID_DIGEST_REPLAY || v == VIID_DIGEST_OK) {
		viid_digest_response(p.username, p.realm, PASS, "POST", URI, p.nonce, p.nc,
		    p.cnonce, p.qop, response);
		if (strcasecmp(response, p.response) != 0)
			abort();
	}
	if (v == VIID_DIGEST_OK) {
		if (strcmp(p.username, USER) != 0 || strcmp(p.realm, REALM) != 0 ||
		    strcmp(p.uri, URI) != 0)
			abort();
		if (viid_digest_check(d, h, "POST", URI, NOW_MS) != VIID_DIGEST_REPLAY)
			abort();
	}

	/* A challenge in `len` bytes: made exactly when it fits. */
	size_t len = size % (VIID_DIGEST_CHALLENGE_MAX + 1);
	bool is_stale = size % 2 == 1;
	memset(ch, 'x', sizeof(ch));
	int c = viid_digest_challenge(d, NOW_MS, is_stale, ch, len);
	if (len > 0 && memchr(ch, '\0', len) == NULL)
		abort();
	if ((c == 0) != (len > challenge_len + (is_stale ? 12 : 0)))
		abort();
	if (c != 0 && (c != -1 || (len > 0 && ch[0] != '\0')))
		abort();
	if (c == 0 && (strlen(ch) != challenge_len + (is_stale ? 12 : 0) ||
	    viid_digest_parse(ch, &p) != 0))
		abort();

	free(h);
	free(in);
	return 0;
}
