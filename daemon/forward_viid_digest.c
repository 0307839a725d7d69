/* forward_viid_digest.c — server-side HTTP Digest for the cascade
 * listener: see forward_viid_digest.h.
 *
 * What is accepted, and how a header is judged (for gridbridge.conf(5)
 * once the listener is wired):
 *
 * The nonce. 32 bytes as 64 lower case hex digits:
 *
 *   +----------------+----------------+--------------------------------+
 *   | issued (8, BE) | random (8)     | HMAC-SHA256(key, first 16)[:16] |
 *   +----------------+----------------+--------------------------------+
 *
 * `issued` is the caller's now_ms when the challenge was made; the key is
 * 32 random bytes made by viid_digest_new(), so a restart (or another
 * instance) makes every earlier nonce unknown. Any other text as a nonce
 * (other length, upper case, not hex) is an unknown nonce too.
 *
 * opaque. 16 random bytes as hex, one value per instance. A client that
 * sends it back must send it unchanged (else: unknown nonce, the client
 * answers a challenge that is not ours); a client that leaves it out is
 * accepted: the nonce's MAC already says the challenge was ours. An empty
 * opaque="" counts as left out.
 *
 * Variants. qop=auth only, any case (the response is computed over the qop
 * as sent). A client without qop (RFC 2069) is refused as unsupported: it
 * sends no nc, so its requests could be replayed for the nonce's lifetime.
 * algorithm MD5 (any case) or absent; MD5-sess, SHA-256, SHA-256-sess and
 * anything else, and userhash=true, are unsupported. The response may be
 * in upper or lower case hex.
 *
 * The order of the checks, the first that fails giving the verdict:
 *
 *   1. no header, or a scheme other than Digest     missing
 *   2. longer than VIID_DIGEST_HEADER_MAX, does     malformed
 *      not parse (see viid_digest_parse())
 *   3. userhash=true, algorithm not MD5, qop        unsupported
 *      other than auth (before 4: such a client
 *      may send other fields)
 *   4. username, realm, nonce, uri or response      malformed
 *      absent or empty (the fields of every
 *      Digest answer)
 *   5. qop absent (an RFC 2069 answer)              unsupported
 *   6. cnonce absent or empty, nc not 8 hex         malformed
 *      digits, response not 32 hex digits
 *   7. username or realm not ours                   wrong_user
 *   8. uri not byte for byte the request target     wrong_uri
 *   9. response not the one the password gives      wrong_response
 *      (for the nonce as sent, ours or not)
 *  10. nonce not ours (MAC), opaque not ours        unknown_nonce
 *  11. nonce older than nonce_ttl_s (or issued      stale
 *      after now_ms: another clock)
 *  12. nc not above the last nc of this nonce       replay
 *  13. ok: the nc is recorded
 *
 * The response is checked before the nonce (RFC 7616 3.3: stale=true only
 * for a request whose nonce is no longer valid but whose response is
 * right for it), so unknown_nonce and stale both say that the client
 * knows the password: the listener answers both with stale=true, and a
 * client holding a nonce from before a restart, or from another instance
 * behind the same name, takes the new nonce without failing a request
 * (libcurl gives up after a 401 without stale=true). A replay has a right
 * response too; stale=true is safe for it as well (whoever replays cannot
 * answer a new nonce) and lets a client go on whose requests on parallel
 * connections arrived out of order. Only a request that
 * passed 1..12 touches the table of nc counts: a request without the
 * password can neither fill it nor evict a nonce from it.
 *
 * The nc table. The last nc of the max_nonces most recently accepted
 * nonces, least recently used evicted first. A nonce not in it (new, or
 * evicted) starts afresh: any nc is accepted and recorded. Replays are
 * thus caught for as long as a nonce stays in the table; size it above
 * the number of nonces in use within one nonce_ttl_s.
 *
 * The parser. "Digest" in any case after optional blanks, then a blank or
 * the end; then auth-params separated by commas (empty elements and
 * blanks around them skipped). A name is a token, any case; a value a
 * quoted-string (quoted-pairs undone; a control character other than a
 * tab, raw or escaped, is refused) or an unquoted run of visible
 * characters other than ',' and '"' (wider than a token: seen with
 * uri=/path). Refused: a name without '=', an empty unquoted value, an
 * unterminated quote, two params without a comma between them, any value
 * longer than VIID_DIGEST_FIELD_MAX (params we do not keep too), and a
 * param we keep given twice (the two copies could be read differently by
 * two parsers in a chain: neither is taken). userhash is true when its
 * value is "true" in any case. Extended params (username*=UTF-8''...) are
 * ignored, so such a client has no username: malformed.
 *
 * The instance is not safe for concurrent calls (the nc table); the
 * listener calls it from its event loop. Nothing here logs: the verdict is
 * the caller's to log, by viid_digest_verdict_name(). */
#include "forward_viid_digest.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define KEY_LEN 32
#define NONCE_BODY 16			/* issued (8) and random (8): what the MAC covers */
#define NONCE_MAC 16			/* the first half of HMAC-SHA256 */
#define NONCE_LEN (NONCE_BODY + NONCE_MAC)
#define NONCE_HEX (2 * NONCE_LEN)
#define OPAQUE_LEN 16
#define OPAQUE_HEX (2 * OPAQUE_LEN)
#define NIL SIZE_MAX

/* The challenge with an empty realm and stale=true: its length bounds the
 * realm, so that a challenge always fits VIID_DIGEST_CHALLENGE_MAX. */
#define CHALLENGE_FMT "Digest realm=\"%s\", qop=\"auth\", nonce=\"%s\", opaque=\"%s\", algorithm=MD5%s"
#define STALE_PARAM ", stale=true"
#define CHALLENGE_FIXED (sizeof("Digest realm=\"\", qop=\"auth\", nonce=\"\", opaque=\"\", " \
    "algorithm=MD5" STALE_PARAM) - 1 + NONCE_HEX + OPAQUE_HEX)
#define REALM_MAX (VIID_DIGEST_CHALLENGE_MAX - 1 - CHALLENGE_FIXED)
_Static_assert(VIID_DIGEST_CHALLENGE_MAX > CHALLENGE_FIXED + 16, "a challenge has room for a realm");

/* One nonce's last nc. `newer`/`older` chain the slots in use from the
 * most to the least recently used; `next` chains a hash bucket. */
struct slot {
	uint8_t body[NONCE_BODY];
	uint32_t nc;
	size_t newer, older, next;
};

struct viid_digest {
	char *realm;
	char *username;
	char ha1[33];			/* MD5(username:realm:password): the password's stand-in */
	char opaque[OPAQUE_HEX + 1];
	int64_t ttl_ms;
	EVP_MAC_CTX *mac;		/* HMAC-SHA256 under the key; copied for each MAC */

	struct slot *slots;		/* max of them, `used` in use */
	size_t *buckets;		/* nbuckets (a power of two) chain heads */
	size_t nbuckets, max, used;
	size_t newest, oldest;
};

static const char *const verdict_names[] = {
	[VIID_DIGEST_OK] = "ok",
	[VIID_DIGEST_MISSING] = "missing",
	[VIID_DIGEST_MALFORMED] = "malformed",
	[VIID_DIGEST_WRONG_USER] = "wrong_user",
	[VIID_DIGEST_WRONG_URI] = "wrong_uri",
	[VIID_DIGEST_UNKNOWN_NONCE] = "unknown_nonce",
	[VIID_DIGEST_STALE] = "stale",
	[VIID_DIGEST_REPLAY] = "replay",
	[VIID_DIGEST_WRONG_RESPONSE] = "wrong_response",
	[VIID_DIGEST_UNSUPPORTED] = "unsupported",
};

const char *
viid_digest_verdict_name(enum viid_digest_verdict v)
{
	if ((unsigned)v >= sizeof(verdict_names) / sizeof(verdict_names[0]))
		return "invalid";
	return verdict_names[v];
}

/* ---- MD5 and the MAC ---------------------------------------------------- */

static EVP_MD *md5;			/* NULL where no provider has MD5 (FIPS) */
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;

/* An explicit fetch, once: EVP_md5() would look it up at every init. */
static void
md5_setup(void)
{
	md5 = EVP_MD_fetch(NULL, "MD5", NULL);
}

static void
to_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* MD5 of the parts joined by ':', as 32 lower case hex digits. The parts
 * go to libcrypto one by one, so no copy of a password is left behind.
 * Only reached once viid_digest_new() (or the test) found MD5. */
static void
md5_hex(const char *const *parts, size_t n, char out[33])
{
	uint8_t h[16];

	pthread_once(&md5_once, md5_setup);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (md5 == NULL || ctx == NULL || EVP_DigestInit_ex2(ctx, md5, NULL) != 1)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((i > 0 && EVP_DigestUpdate(ctx, ":", 1) != 1) ||
		    EVP_DigestUpdate(ctx, parts[i], strlen(parts[i])) != 1)
			abort();
	if (EVP_DigestFinal_ex(ctx, h, NULL) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	to_hex(h, sizeof(h), out);
	OPENSSL_cleanse(h, sizeof(h));
}

/* RFC 7616 3.4.1, qop=auth, from HA1. */
static void
response_from_ha1(const char *ha1, const char *method, const char *uri, const char *nonce,
    const char *nc, const char *cnonce, const char *qop, char out[33])
{
	char ha2[33];
	const char *a2[] = { method, uri };

	md5_hex(a2, 2, ha2);
	const char *kd[] = { ha1, nonce, nc, cnonce, qop, ha2 };
	md5_hex(kd, 6, out);
}

void
viid_digest_response(const char *username, const char *realm, const char *password,
    const char *method, const char *uri, const char *nonce, const char *nc,
    const char *cnonce, const char *qop, char out[33])
{
	char ha1[33];
	const char *a1[] = { username, realm, password };

	md5_hex(a1, 3, ha1);
	response_from_ha1(ha1, method, uri, nonce, nc, cnonce, qop, out);
	OPENSSL_cleanse(ha1, sizeof(ha1));
}

/* The MAC of a nonce's body: the first NONCE_MAC bytes of HMAC-SHA256. */
static void
nonce_mac(const struct viid_digest *d, const uint8_t body[NONCE_BODY], uint8_t out[NONCE_MAC])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	size_t n = 0;

	EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(d->mac);
	if (ctx == NULL || EVP_MAC_update(ctx, body, NONCE_BODY) != 1 ||
	    EVP_MAC_final(ctx, full, &n, sizeof(full)) != 1 || n < NONCE_MAC)
		abort();
	EVP_MAC_CTX_free(ctx);
	memcpy(out, full, NONCE_MAC);
	OPENSSL_cleanse(full, sizeof(full));
}

/* ---- the nc table --------------------------------------------------------- */

/* The body's random half (a nonce in the table passed its MAC, so it is
 * ours and random) picks the bucket. */
static size_t
bucket_of(const struct viid_digest *d, const uint8_t body[NONCE_BODY])
{
	uint64_t h;

	memcpy(&h, body + 8, sizeof(h));
	return (size_t)(h & (d->nbuckets - 1));
}

static size_t
table_find(const struct viid_digest *d, const uint8_t body[NONCE_BODY])
{
	size_t i = d->buckets[bucket_of(d, body)];

	while (i != NIL && memcmp(d->slots[i].body, body, NONCE_BODY) != 0)
		i = d->slots[i].next;
	return i;
}

static void
lru_unlink(struct viid_digest *d, size_t i)
{
	struct slot *s = &d->slots[i];

	if (s->newer != NIL)
		d->slots[s->newer].older = s->older;
	else
		d->newest = s->older;
	if (s->older != NIL)
		d->slots[s->older].newer = s->newer;
	else
		d->oldest = s->newer;
}

static void
lru_push(struct viid_digest *d, size_t i)
{
	struct slot *s = &d->slots[i];

	s->newer = NIL;
	s->older = d->newest;
	if (d->newest != NIL)
		d->slots[d->newest].newer = i;
	d->newest = i;
	if (d->oldest == NIL)
		d->oldest = i;
}

static void
bucket_remove(struct viid_digest *d, size_t i)
{
	size_t *at = &d->buckets[bucket_of(d, d->slots[i].body)];

	while (*at != NIL && *at != i)
		at = &d->slots[*at].next;
	if (*at == i)
		*at = d->slots[i].next;
}

/* Records `nc` as the last count of the nonce, most recently used; the
 * least recently used nonce makes room when the table is full. */
static void
table_record(struct viid_digest *d, const uint8_t body[NONCE_BODY], uint32_t nc)
{
	size_t i = table_find(d, body);

	if (i != NIL) {
		lru_unlink(d, i);
	} else {
		if (d->used < d->max) {
			i = d->used++;
		} else {
			i = d->oldest;
			lru_unlink(d, i);
			bucket_remove(d, i);
		}
		memcpy(d->slots[i].body, body, NONCE_BODY);
		size_t b = bucket_of(d, body);
		d->slots[i].next = d->buckets[b];
		d->buckets[b] = i;
	}
	d->slots[i].nc = nc;
	lru_push(d, i);
}

/* ---- an instance ---------------------------------------------------------- */

/* Text that goes into a quoted-string as it is: no '"', '\\' or control
 * character, at most `max` bytes. */
static bool
quotable(const char *s, size_t max)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++, n++)
		if (n == max || *p == '"' || *p == '\\' || *p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

struct viid_digest *
viid_digest_new(const char *realm, const char *username, const char *password,
    long nonce_ttl_s, size_t max_nonces)
{
	struct viid_digest *d = NULL;
	EVP_MAC *hmac = NULL;
	uint8_t key[KEY_LEN], opaque[OPAQUE_LEN];

	if (realm == NULL || username == NULL || password == NULL || username[0] == '\0' ||
	    !quotable(realm, REALM_MAX) || !quotable(username, VIID_DIGEST_FIELD_MAX) ||
	    nonce_ttl_s <= 0 || max_nonces == 0)
		return NULL;
	pthread_once(&md5_once, md5_setup);
	if (md5 == NULL || (d = calloc(1, sizeof(*d))) == NULL)
		return NULL;

	d->max = max_nonces;
	d->nbuckets = 1;
	while (d->nbuckets < max_nonces && d->nbuckets <= SIZE_MAX / 4)
		d->nbuckets <<= 1;
	d->slots = calloc(d->max, sizeof(*d->slots));
	d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
	d->realm = strdup(realm);
	d->username = strdup(username);
	if (d->slots == NULL || d->buckets == NULL || d->realm == NULL || d->username == NULL)
		goto fail;
	for (size_t b = 0; b < d->nbuckets; b++)
		d->buckets[b] = NIL;
	d->newest = d->oldest = NIL;
	d->ttl_ms = nonce_ttl_s > INT64_MAX / 1000 ? INT64_MAX : (int64_t)nonce_ttl_s * 1000;

	if (RAND_bytes(key, sizeof(key)) != 1 || RAND_bytes(opaque, sizeof(opaque)) != 1)
		goto fail;
	to_hex(opaque, sizeof(opaque), d->opaque);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	if ((hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (d->mac = EVP_MAC_CTX_new(hmac)) == NULL ||
	    EVP_MAC_init(d->mac, key, sizeof(key), params) != 1)
		goto fail;
	EVP_MAC_free(hmac);
	OPENSSL_cleanse(key, sizeof(key));

	const char *a1[] = { username, realm, password };
	md5_hex(a1, 3, d->ha1);
	return d;

fail:
	EVP_MAC_free(hmac);
	OPENSSL_cleanse(key, sizeof(key));
	viid_digest_free(d);
	return NULL;
}

void
viid_digest_free(struct viid_digest *d)
{
	if (d == NULL)
		return;
	EVP_MAC_CTX_free(d->mac);	/* cleanses the key */
	OPENSSL_cleanse(d->ha1, sizeof(d->ha1));
	free(d->realm);
	free(d->username);
	free(d->slots);
	free(d->buckets);
	free(d);
}

int
viid_digest_challenge(struct viid_digest *d, int64_t now_ms, bool stale, char *out,
    size_t len)
{
	uint8_t n[NONCE_LEN];
	char nonce[NONCE_HEX + 1];
	uint64_t t = (uint64_t)now_ms;

	if (len > 0)
		out[0] = '\0';
	for (int i = 0; i < 8; i++)
		n[i] = (uint8_t)(t >> (56 - 8 * i));
	if (RAND_bytes(n + 8, 8) != 1)
		return -1;
	nonce_mac(d, n, n + NONCE_BODY);
	to_hex(n, sizeof(n), nonce);

	int w = snprintf(out, len, CHALLENGE_FMT, d->realm, nonce, d->opaque,
	    stale ? STALE_PARAM : "");
	if (w < 0 || (size_t)w >= len) {
		if (len > 0)
			out[0] = '\0';
		return -1;
	}
	return 0;
}

/* ---- the parser --------------------------------------------------------- */

static bool
blank(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 9110 5.6.2 tchar. */
static bool
tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A byte of an unquoted value: visible ASCII or obs-text, not ',' '"'. */
static bool
bare_char(unsigned char c)
{
	return (c > 0x20 && c != 0x7f && c != ',' && c != '"');
}

static unsigned char
ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* s[0..n) equals the lower case word `lower`, ASCII case ignored (no
 * locale: "digest" must not depend on the Turkish i). */
static bool
same_word(const char *s, size_t n, const char *lower)
{
	size_t i = 0;

	for (; i < n && lower[i] != '\0'; i++)
		if (ascii_lower((unsigned char)s[i]) != (unsigned char)lower[i])
			return false;
	return i == n && lower[i] == '\0';
}

/* The params after the scheme when `s` is Digest credentials, else NULL. */
static const char *
after_scheme(const char *s)
{
	while (blank(*s))
		s++;
	size_t n = 0;
	while (n < 6 && s[n] != '\0')
		n++;
	if (!same_word(s, n, "digest") || (s[6] != '\0' && !blank(s[6])))
		return NULL;
	return s + 6;
}

#define FIELD(name) { #name, offsetof(struct viid_digest_params, name) }
static const struct {
	const char *name;
	size_t offset;
} fields[] = {
	FIELD(username), FIELD(realm), FIELD(nonce), FIELD(uri), FIELD(response),
	FIELD(algorithm), FIELD(cnonce), FIELD(opaque), FIELD(qop), FIELD(nc),
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))
#define USERHASH NFIELDS		/* its bit in `seen` */

int
viid_digest_parse(const char *authorization, struct viid_digest_params *p)
{
	char value[VIID_DIGEST_FIELD_MAX + 1];
	unsigned seen = 0;
	const char *s;

	memset(p, 0, sizeof(*p));
	if (authorization == NULL ||
	    strnlen(authorization, VIID_DIGEST_HEADER_MAX + 1) > VIID_DIGEST_HEADER_MAX ||
	    (s = after_scheme(authorization)) == NULL)
		return -1;
	for (;;) {
		while (blank(*s) || *s == ',')
			s++;
		if (*s == '\0')
			return 0;

		const char *name = s;
		while (tchar((unsigned char)*s))
			s++;
		size_t name_len = (size_t)(s - name);
		while (blank(*s))
			s++;
		if (name_len == 0 || *s != '=')
			goto fail;
		s++;
		while (blank(*s))
			s++;

		size_t n = 0;
		if (*s == '"') {
			for (s++; *s != '"'; s++) {
				if (*s == '\\')
					s++;
				unsigned char c = (unsigned char)*s;
				if (c == '\0' || (c < 0x20 && c != '\t') || c == 0x7f ||
				    n == VIID_DIGEST_FIELD_MAX)
					goto fail;
				value[n++] = (char)c;
			}
			s++;
		} else {
			for (; bare_char((unsigned char)*s); s++) {
				if (n == VIID_DIGEST_FIELD_MAX)
					goto fail;
				value[n++] = *s;
			}
			if (n == 0)
				goto fail;
		}
		value[n] = '\0';
		while (blank(*s))
			s++;
		if (*s != ',' && *s != '\0')
			goto fail;

		if (same_word(name, name_len, "userhash")) {
			if (seen & (1u << USERHASH))
				goto fail;
			seen |= 1u << USERHASH;
			p->userhash = same_word(value, n, "true");
			continue;
		}
		for (size_t f = 0; f < NFIELDS; f++) {
			if (!same_word(name, name_len, fields[f].name))
				continue;
			if (seen & (1u << f))
				goto fail;
			seen |= 1u << f;
			memcpy((char *)p + fields[f].offset, value, n + 1);
			break;
		}
	}
fail:
	memset(p, 0, sizeof(*p));
	return -1;
}

/* ---- the check ------------------------------------------------------------ */

/* `s` is exactly n hex digits (either case). */
static bool
hex_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (util_hex_digit((unsigned char)s[i]) < 0)
			return false;
	return s[n] == '\0';
}

/* The nonce's bytes from our 64 lower case hex digits; -1 for other text. */
static int
nonce_bytes(const char *s, uint8_t out[NONCE_LEN])
{
	for (size_t i = 0; i < NONCE_HEX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'F')
			return -1;
		int v = util_hex_digit(c);	/* -1 at the NUL of a shorter text */
		if (v < 0)
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return s[NONCE_HEX] == '\0' ? 0 : -1;
}

enum viid_digest_verdict
viid_digest_check(struct viid_digest *d, const char *authorization, const char *method,
    const char *uri, int64_t now_ms)
{
	struct viid_digest_params p;
	uint8_t nonce[NONCE_LEN], mac[NONCE_MAC];
	char expected[33], got[33];

	if (authorization == NULL || after_scheme(authorization) == NULL)
		return VIID_DIGEST_MISSING;
	if (viid_digest_parse(authorization, &p) != 0)
		return VIID_DIGEST_MALFORMED;

	if (p.userhash || (p.algorithm[0] != '\0' && !same_word(p.algorithm,
	    strlen(p.algorithm), "md5")) || (p.qop[0] != '\0' && !same_word(p.qop,
	    strlen(p.qop), "auth")))
		return VIID_DIGEST_UNSUPPORTED;
	if (p.username[0] == '\0' || p.realm[0] == '\0' || p.nonce[0] == '\0' ||
	    p.uri[0] == '\0' || p.response[0] == '\0')
		return VIID_DIGEST_MALFORMED;
	if (p.qop[0] == '\0')
		return VIID_DIGEST_UNSUPPORTED;
	if (p.cnonce[0] == '\0' || !hex_digits(p.nc, 8) || !hex_digits(p.response, 32))
		return VIID_DIGEST_MALFORMED;
	if (strcmp(p.username, d->username) != 0 || strcmp(p.realm, d->realm) != 0)
		return VIID_DIGEST_WRONG_USER;
	if (strcmp(p.uri, uri) != 0)
		return VIID_DIGEST_WRONG_URI;

	response_from_ha1(d->ha1, method, uri, p.nonce, p.nc, p.cnonce, p.qop, expected);
	for (size_t i = 0; i < 33; i++)
		got[i] = (char)ascii_lower((unsigned char)p.response[i]);
	if (CRYPTO_memcmp(expected, got, 32) != 0)
		return VIID_DIGEST_WRONG_RESPONSE;

	if (nonce_bytes(p.nonce, nonce) != 0)
		return VIID_DIGEST_UNKNOWN_NONCE;
	nonce_mac(d, nonce, mac);
	if (CRYPTO_memcmp(mac, nonce + NONCE_BODY, NONCE_MAC) != 0 ||
	    (p.opaque[0] != '\0' && strcmp(p.opaque, d->opaque) != 0))
		return VIID_DIGEST_UNKNOWN_NONCE;

	uint64_t issued = 0;
	for (int i = 0; i < 8; i++)
		issued = issued << 8 | nonce[i];
	if ((int64_t)issued > now_ms || (uint64_t)now_ms - issued > (uint64_t)d->ttl_ms)
		return VIID_DIGEST_STALE;

	uint32_t nc = (uint32_t)strtoul(p.nc, NULL, 16);
	size_t i = table_find(d, nonce);
	if (i != NIL && nc <= d->slots[i].nc)
		return VIID_DIGEST_REPLAY;
	table_record(d, nonce, nc);
	return VIID_DIGEST_OK;
}
