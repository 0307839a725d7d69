/* Unit tests for the cascade listener's Digest (forward_viid_digest.h):
 * the test vectors, a challenge answered as libcurl and as the Python
 * client of the integration tests answer it, every verdict, the order of
 * the checks, the bounded nc table, the parser's edge cases and what
 * viid_digest_new() refuses.
 *
 *   test_forward_viid_digest FIXTURES_DIR    (tests/fixtures/viid) */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward_viid_digest.h"
#include "t.h"

#define REALM "viid"
#define USER "admin"
#define PASS "Pass1234"
#define URI "/VIID/System/Register"
#define TTL_S 30
#define CNONCE "ZTk2NjRiZGU0NWQ4ZGM0NmI1ZTRkNGM5ZWU5MGRhOTA="	/* libcurl's form */

static const char *fixtures = "tests/fixtures/viid";

/* ---- helpers -------------------------------------------------------------- */

static void
md5_hex(const char *s, char out[33])
{
	unsigned char h[16];

	if (EVP_Digest(s, strlen(s), h, NULL, EVP_md5(), NULL) != 1)
		abort();
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* key=value words of the vector file; "" for a key it lacks. */
static char vec_text[2048];

static const char *
vec(const char *key)
{
	static char out[16][256];
	static int next;
	size_t n = strlen(key);
	char *o = out[next++ % 16];

	o[0] = '\0';
	for (const char *p = vec_text; (p = strstr(p, key)) != NULL; p += n) {
		if ((p != vec_text && p[-1] != ' ' && p[-1] != '\n') || p[n] != '=')
			continue;
		size_t len = strcspn(p + n + 1, " \t\r\n");
		if (len < 256) {
			memcpy(o, p + n + 1, len);
			o[len] = '\0';
		}
		break;
	}
	return o;
}

enum { F_USERNAME, F_REALM, F_NONCE, F_URI, F_CNONCE, F_NC, F_QOP, F_RESPONSE, F_OPAQUE,
       F_ALGORITHM, F_N };
static const char *const field_names[F_N] = {
	"username", "realm", "nonce", "uri", "cnonce", "nc", "qop", "response", "opaque",
	"algorithm",
};
static const bool field_quoted[F_N] = { true, true, true, true, true, false, false, true,
	true, false };

/* A client's answer. The response is computed from password, method,
 * uri, nonce, nc, cnonce and qop unless `response` is given; the request
 * it goes with is req_method req_uri (NULL: POST URI). */
struct creds {
	const char *v[F_N];		/* NULL: not sent */
	const char *password, *method;
	const char *response;
	const char *extra;		/* appended after ", " */
	int skip;			/* a field left out (-1: none) */
	const char *req_method, *req_uri;
	bool python;			/* the Python client's order of fields */
	bool quote_all;			/* nc, qop and algorithm quoted too */
};

/* The answer to the challenge `ch` with count `nc`, libcurl's way. */
static struct creds
answer(const struct viid_digest_params *ch, const char *nc)
{
	struct creds c = { .password = PASS, .method = "POST", .skip = -1 };

	c.v[F_USERNAME] = USER;
	c.v[F_REALM] = ch->realm;
	c.v[F_NONCE] = ch->nonce;
	c.v[F_URI] = URI;
	c.v[F_CNONCE] = CNONCE;
	c.v[F_NC] = nc;
	c.v[F_QOP] = "auth";
	c.v[F_OPAQUE] = ch->opaque[0] != '\0' ? ch->opaque : NULL;
	c.v[F_ALGORITHM] = "MD5";
	return c;
}

/* The hex digit c with its lowest bit flipped. */
static char
flip_hex(char c)
{
	int v = c <= '9' ? c - '0' : c - 'a' + 10;
	return "0123456789abcdef"[v ^ 1];
}

static void
put(char *out, size_t len, const char *s)
{
	size_t n = strlen(out);
	if (n + strlen(s) >= len)
		abort();
	memcpy(out + n, s, strlen(s) + 1);
}

/* The Authorization header of `c`. */
static void
header(const struct creds *c, char *out, size_t len)
{
	/* libcurl: username realm nonce uri cnonce nc qop response opaque
	 * algorithm; the Python client: username realm nonce uri qop nc
	 * cnonce response algorithm opaque. */
	static const int curl_order[F_N] = { F_USERNAME, F_REALM, F_NONCE, F_URI, F_CNONCE,
		F_NC, F_QOP, F_RESPONSE, F_OPAQUE, F_ALGORITHM };
	static const int python_order[F_N] = { F_USERNAME, F_REALM, F_NONCE, F_URI, F_QOP,
		F_NC, F_CNONCE, F_RESPONSE, F_ALGORITHM, F_OPAQUE };
	const int *order = c->python ? python_order : curl_order;
	char resp[33];
	const char *v[F_N];
	bool first = true;

	memcpy(v, c->v, sizeof(v));
	if (c->response != NULL) {
		v[F_RESPONSE] = c->response;
	} else {
		viid_digest_response(v[F_USERNAME] ? v[F_USERNAME] : "", v[F_REALM] ? v[F_REALM] : "",
		    c->password, c->method, v[F_URI] ? v[F_URI] : "", v[F_NONCE] ? v[F_NONCE] : "",
		    v[F_NC] ? v[F_NC] : "", v[F_CNONCE] ? v[F_CNONCE] : "",
		    v[F_QOP] ? v[F_QOP] : "", resp);
		v[F_RESPONSE] = resp;
	}
	out[0] = '\0';
	put(out, len, "Digest ");
	for (int k = 0; k < F_N; k++) {
		int f = order[k];
		if (v[f] == NULL || f == c->skip)
			continue;
		if (!first)
			put(out, len, ", ");
		first = false;
		put(out, len, field_names[f]);
		bool quoted = field_quoted[f] || c->quote_all;
		put(out, len, quoted ? "=\"" : "=");
		put(out, len, v[f]);
		if (quoted)
			put(out, len, "\"");
	}
	if (c->extra != NULL) {
		put(out, len, ", ");
		put(out, len, c->extra);
	}
}

static enum viid_digest_verdict
check(struct viid_digest *d, const struct creds *c, int64_t now_ms)
{
	char h[VIID_DIGEST_HEADER_MAX + 1];

	header(c, h, sizeof(h));
	return viid_digest_check(d, h, c->req_method ? c->req_method : "POST",
	    c->req_uri ? c->req_uri : URI, now_ms);
}

/* Unknown params ("p=xx..., p=xx...") that make a header of `have`
 * bytes (its ", " included) exactly `want` bytes long. */
static void
padded(char *out, size_t have, size_t want)
{
	size_t n = 0, left = want - have;

	while (left > 0) {
		if (n > 0) {
			out[n++] = ',';
			left--;
		}
		size_t v = left - 2 > 400 ? 400 : left - 2;	/* "p=" and v bytes */
		if (left - 2 - v == 1 || left - 2 - v == 2)
			v -= 3;		/* leave room for ",p=x" */
		out[n++] = 'p';
		out[n++] = '=';
		memset(out + n, 'x', v);
		n += v;
		left -= 2 + v;
	}
	out[n] = '\0';
}

/* A challenge made at now_ms, parsed. */
static void
challenge(struct viid_digest *d, int64_t now_ms, struct viid_digest_params *ch)
{
	char out[VIID_DIGEST_CHALLENGE_MAX];

	if (viid_digest_challenge(d, now_ms, false, out, sizeof(out)) != 0 ||
	    viid_digest_parse(out, ch) != 0)
		abort();
}

#define VERDICT(d, c, now, want) T_STREQ(viid_digest_verdict_name(check((d), (c), (now))), \
	viid_digest_verdict_name(want))

/* ---- the vectors ---------------------------------------------------------- */

static void
test_vectors(void)
{
	char path[1024], ha[33], out[33];

	snprintf(path, sizeof(path), "%s/digest_test_vector.txt", fixtures);
	FILE *f = fopen(path, "r");
	T_CHECK(f != NULL);
	if (f != NULL) {
		size_t n = fread(vec_text, 1, sizeof(vec_text) - 1, f);
		vec_text[n] = '\0';
		fclose(f);
	}

	/* The vector is consistent (HA1, HA2 and the response from them)... */
	char a1[512], a2[512], kd[1024];
	snprintf(a1, sizeof(a1), "%s:%s:%s", vec("username"), vec("realm"), vec("password"));
	md5_hex(a1, ha);
	T_STREQ(ha, vec("HA1"));
	snprintf(a2, sizeof(a2), "%s:%s", vec("method"), vec("uri"));
	md5_hex(a2, ha);
	T_STREQ(ha, vec("HA2"));
	snprintf(kd, sizeof(kd), "%s:%s:%s:%s:%s:%s", vec("HA1"), vec("nonce"), vec("nc"),
	    vec("cnonce"), vec("qop"), vec("HA2"));
	md5_hex(kd, ha);
	T_STREQ(ha, vec("response"));

	/* ... and the module gives its response. */
	viid_digest_response(vec("username"), vec("realm"), vec("password"), vec("method"),
	    vec("uri"), vec("nonce"), vec("nc"), vec("cnonce"), vec("qop"), out);
	T_STREQ(out, vec("response"));
	T_STREQ(out, "d72dcfa6c1f524abf654cf5973df6f38");

	/* RFC 7616 3.9.1's example (RFC 2617's has a known error). */
	viid_digest_response("Mufasa", "http-auth@example.org", "Circle of Life", "GET",
	    "/dir/index.html", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
	    "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", out);
	T_STREQ(out, "8ca523f5e9506fed4657c9700eebdbec");
	/* An empty password is a password. */
	viid_digest_response("u", "r", "", "GET", "/", "n", "00000001", "c", "auth", out);
	snprintf(a1, sizeof(a1), "u:r:");
	md5_hex(a1, ha);
	char ha2[33];
	md5_hex("GET:/", ha2);
	snprintf(kd, sizeof(kd), "%s:n:00000001:c:auth:%s", ha, ha2);
	md5_hex(kd, ha);
	T_STREQ(out, ha);
}

/* ---- new() and the challenge ----------------------------------------------- */

static void
test_new(void)
{
	static const char *const bad[] = { "vi\"id", "vi\\id", "vi\nid", "vi\rid", "vi\tid",
		"vi\x7fid", "vi\x01id" };
	char longest[400];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		T_CHECK(viid_digest_new(bad[i], USER, PASS, TTL_S, 8) == NULL);
		T_CHECK(viid_digest_new(REALM, bad[i], PASS, TTL_S, 8) == NULL);
	}
	T_CHECK(viid_digest_new(NULL, USER, PASS, TTL_S, 8) == NULL);
	T_CHECK(viid_digest_new(REALM, NULL, PASS, TTL_S, 8) == NULL);
	T_CHECK(viid_digest_new(REALM, USER, NULL, TTL_S, 8) == NULL);
	T_CHECK(viid_digest_new(REALM, "", PASS, TTL_S, 8) == NULL);
	T_CHECK(viid_digest_new(REALM, USER, PASS, 0, 8) == NULL);
	T_CHECK(viid_digest_new(REALM, USER, PASS, -1, 8) == NULL);
	T_CHECK(viid_digest_new(REALM, USER, PASS, TTL_S, 0) == NULL);

	/* A password may hold anything a quoted string may not. */
	struct viid_digest *d = viid_digest_new(REALM, USER, "p\"a\\s\ts", TTL_S, 8);
	T_CHECK(d != NULL);
	viid_digest_free(d);
	viid_digest_free(NULL);

	/* The longest realm makes a stale challenge that fits
	 * VIID_DIGEST_CHALLENGE_MAX exactly; one byte more is refused. */
	memset(longest, 'r', sizeof(longest));
	longest[340] = '\0';
	d = viid_digest_new(longest, USER, PASS, TTL_S, 8);
	T_CHECK(d != NULL);
	char out[VIID_DIGEST_CHALLENGE_MAX];
	if (d != NULL) {
		T_INTEQ(viid_digest_challenge(d, 0, true, out, sizeof(out)), 0);
		T_INTEQ(strlen(out), VIID_DIGEST_CHALLENGE_MAX - 1);
	}
	viid_digest_free(d);
	longest[340] = 'r';
	longest[341] = '\0';
	T_CHECK(viid_digest_new(longest, USER, PASS, TTL_S, 8) == NULL);

	/* UTF-8 in a realm is fine (obs-text in a quoted string). */
	d = viid_digest_new("\xe5\x85\xac\xe5\xae\x89", USER, PASS, TTL_S, 8);
	T_CHECK(d != NULL);
	viid_digest_free(d);
}

static bool
lower_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static void
test_challenge(void)
{
	struct viid_digest *d = viid_digest_new(REALM, USER, PASS, TTL_S, 8);
	char out[VIID_DIGEST_CHALLENGE_MAX], again[VIID_DIGEST_CHALLENGE_MAX];
	struct viid_digest_params p, q;

	T_INTEQ(viid_digest_challenge(d, 1000, false, out, sizeof(out)), 0);
	T_CHECK(strncmp(out, "Digest realm=\"viid\", qop=\"auth\", nonce=\"", 40) == 0);
	T_CHECK(strstr(out, "\", algorithm=MD5") != NULL);
	T_CHECK(strstr(out, "stale") == NULL);
	T_INTEQ(viid_digest_parse(out, &p), 0);
	T_STREQ(p.realm, REALM);
	T_STREQ(p.qop, "auth");
	T_STREQ(p.algorithm, "MD5");
	T_CHECK(lower_hex(p.nonce, 64));
	T_CHECK(lower_hex(p.opaque, 32));

	/* A fresh nonce each time, the same opaque. */
	T_INTEQ(viid_digest_challenge(d, 1000, true, again, sizeof(again)), 0);
	T_INTEQ(viid_digest_parse(again, &q), 0);
	T_CHECK(strcmp(p.nonce, q.nonce) != 0);
	T_STREQ(p.opaque, q.opaque);
	size_t n = strlen(again);
	T_CHECK(n > 12 && strcmp(again + n - 12, ", stale=true") == 0);
	T_INTEQ(strlen(again), strlen(out) + 12);

	/* Exactly the room needed, and one byte less. */
	n = strlen(out);
	T_INTEQ(viid_digest_challenge(d, 1000, false, again, n + 1), 0);
	T_INTEQ(strlen(again), n);
	T_INTEQ(viid_digest_challenge(d, 1000, false, again, n), -1);
	T_STREQ(again, "");
	T_INTEQ(viid_digest_challenge(d, 1000, false, NULL, 0), -1);

	/* Another instance: another opaque. */
	struct viid_digest *e = viid_digest_new(REALM, USER, PASS, TTL_S, 8);
	T_INTEQ(viid_digest_challenge(e, 1000, false, again, sizeof(again)), 0);
	T_INTEQ(viid_digest_parse(again, &q), 0);
	T_CHECK(strcmp(p.opaque, q.opaque) != 0);
	viid_digest_free(e);

	/* Names of the verdicts: each its own, never "invalid". */
	for (int v = VIID_DIGEST_OK; v <= VIID_DIGEST_UNSUPPORTED; v++) {
		const char *name = viid_digest_verdict_name(v);
		bool unique = strcmp(name, "invalid") != 0;
		for (int w = VIID_DIGEST_OK; w < v; w++)
			unique = unique && strcmp(name, viid_digest_verdict_name(w)) != 0;
		T_CHECK(unique);
	}
	T_STREQ(viid_digest_verdict_name(VIID_DIGEST_UNSUPPORTED + 1), "invalid");
	T_STREQ(viid_digest_verdict_name((enum viid_digest_verdict)-1), "invalid");
	viid_digest_free(d);
}

/* ---- the round trip and the verdicts --------------------------------------- */

static void
test_round_trip(void)
{
	struct viid_digest *d = viid_digest_new(REALM, USER, PASS, TTL_S, 8);
	struct viid_digest_params ch;
	struct creds c;
	char h[VIID_DIGEST_HEADER_MAX + 1];

	/* libcurl's answer, then its next requests on the same nonce. */
	challenge(d, 1000, &ch);
	c = answer(&ch, "00000001");
	VERDICT(d, &c, 1500, VIID_DIGEST_OK);
	c = answer(&ch, "00000002");
	c.method = c.req_method = "GET";
	VERDICT(d, &c, 1600, VIID_DIGEST_OK);
	c = answer(&ch, "0000000A");		/* upper case hex counts */
	VERDICT(d, &c, 1700, VIID_DIGEST_OK);
	c = answer(&ch, "0000000b");
	VERDICT(d, &c, 1700, VIID_DIGEST_OK);

	/* The Python client's answer (its order, opaque last). */
	challenge(d, 2000, &ch);
	c = answer(&ch, "00000001");
	c.python = true;
	c.v[F_CNONCE] = "5f2a7c3e9b1d4e60";
	VERDICT(d, &c, 2000, VIID_DIGEST_OK);

	/* The request target with a query, as sent. */
	challenge(d, 2000, &ch);
	c = answer(&ch, "00000001");
	c.v[F_URI] = c.req_uri = "/VIID/Faces?PageRecordNum=10&RecordStartNo=1";
	VERDICT(d, &c, 2000, VIID_DIGEST_OK);

	/* Variants that are fine: opaque and algorithm left out, algorithm
	 * and qop in lower and upper case, qop quoted, the response in upper
	 * case, userhash=false, unknown params, blanks. */
	challenge(d, 3000, &ch);
	int nc = 1;
	char ncs[16];
	for (int variant = 0; variant < 9; variant++) {
		snprintf(ncs, sizeof(ncs), "%08x", nc++);
		c = answer(&ch, ncs);
		switch (variant) {
		case 0: c.skip = F_OPAQUE; break;
		case 1: c.skip = F_ALGORITHM; break;
		case 2: c.v[F_ALGORITHM] = "md5"; break;
		case 3: c.v[F_QOP] = "AUTH"; break;
		case 4: c.extra = "userhash=false"; break;
		case 5: c.extra = "stale=true, foo=\"bar\", foo=baz"; break;
		case 6: c.v[F_OPAQUE] = ""; break;	/* as if left out */
		case 7: {
			char resp[33];
			viid_digest_response(USER, REALM, PASS, "POST", URI, ch.nonce, ncs, CNONCE,
			    "auth", resp);
			for (char *p = resp; *p; p++)
				if (*p >= 'a' && *p <= 'f')
					*p = (char)(*p - 32);
			c.response = resp;
			VERDICT(d, &c, 3000, VIID_DIGEST_OK);
			continue;
		}
		case 8: {
			char resp[33];
			viid_digest_response(USER, REALM, PASS, "POST", URI, ch.nonce, ncs, CNONCE,
			    "auth", resp);
			snprintf(h, sizeof(h), "  digest\tusername = \"admin\" ,realm=viid,"
			    "nonce=\"%s\" , uri=" URI ", cnonce=\"" CNONCE "\", nc=%s, "
			    "qop=\"auth\",response=%s,,", ch.nonce, ncs, resp);
			T_STREQ(viid_digest_verdict_name(viid_digest_check(d, h, "POST", URI, 3000)),
			    "ok");
			continue;
		}
		}
		VERDICT(d, &c, 3000, VIID_DIGEST_OK);
	}
	viid_digest_free(d);
}

static void
test_verdicts(void)
{
	struct viid_digest *d = viid_digest_new(REALM, USER, PASS, TTL_S, 8);
	struct viid_digest *other = viid_digest_new(REALM, USER, PASS, TTL_S, 8);
	struct viid_digest_params ch;
	struct creds c;
	const int64_t t0 = 100000;

	challenge(d, t0, &ch);

	/* The password, the user, the realm, the uri, the method. */
	c = answer(&ch, "00000001");
	c.password = "pass1234";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_RESPONSE);
	c = answer(&ch, "00000001");
	c.v[F_USERNAME] = "Admin";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_USER);
	c = answer(&ch, "00000001");
	c.v[F_REALM] = "VIID";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_USER);
	c = answer(&ch, "00000001");
	c.v[F_URI] = "/VIID/System/Keepalive";	/* a right answer for another target */
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_URI);
	c = answer(&ch, "00000001");
	c.req_uri = URI "?x=1";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_URI);
	c = answer(&ch, "00000001");
	c.v[F_URI] = "https://127.0.0.1:8443" URI;	/* absolute form: not the target */
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_URI);
	c = answer(&ch, "00000001");
	c.req_method = "PUT";			/* computed for POST */
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_RESPONSE);
	c = answer(&ch, "00000001");
	c.response = "00000000000000000000000000000000";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_RESPONSE);

	/* None of these recorded the nc: 1 is still new. */
	c = answer(&ch, "00000001");
	VERDICT(d, &c, t0, VIID_DIGEST_OK);

	/* Replays: the same nc, a lower one, then higher ones. */
	VERDICT(d, &c, t0, VIID_DIGEST_REPLAY);
	c = answer(&ch, "00000005");
	VERDICT(d, &c, t0, VIID_DIGEST_OK);
	c = answer(&ch, "00000003");
	VERDICT(d, &c, t0, VIID_DIGEST_REPLAY);
	c = answer(&ch, "00000005");
	VERDICT(d, &c, t0, VIID_DIGEST_REPLAY);
	c = answer(&ch, "00000006");
	VERDICT(d, &c, t0, VIID_DIGEST_OK);
	c = answer(&ch, "ffffffff");
	VERDICT(d, &c, t0, VIID_DIGEST_OK);
	VERDICT(d, &c, t0, VIID_DIGEST_REPLAY);
	/* A replay with another cnonce is still a replay of the count. */
	c = answer(&ch, "00000006");
	c.v[F_CNONCE] = "another";
	VERDICT(d, &c, t0, VIID_DIGEST_REPLAY);

	/* Stale: fresh up to nonce_ttl_s inclusive, stale after; stale only
	 * with the right password; a nonce issued after now (another clock). */
	challenge(d, t0, &ch);
	c = answer(&ch, "00000001");
	VERDICT(d, &c, t0 + TTL_S * 1000, VIID_DIGEST_OK);
	c = answer(&ch, "00000002");
	VERDICT(d, &c, t0 + TTL_S * 1000 + 1, VIID_DIGEST_STALE);
	c.password = "wrong";
	VERDICT(d, &c, t0 + TTL_S * 1000 + 1, VIID_DIGEST_WRONG_RESPONSE);
	c = answer(&ch, "00000001");
	VERDICT(d, &c, t0 + TTL_S * 1000 + 1, VIID_DIGEST_STALE);	/* stale before replay */
	c = answer(&ch, "00000002");
	VERDICT(d, &c, t0 - 1, VIID_DIGEST_STALE);
	VERDICT(d, &c, t0, VIID_DIGEST_OK);		/* none of them recorded nc 2 */
	/* Clocks at the ends of int64_t. */
	challenge(d, INT64_MIN, &ch);
	c = answer(&ch, "00000001");
	VERDICT(d, &c, INT64_MAX, VIID_DIGEST_STALE);
	VERDICT(d, &c, INT64_MIN, VIID_DIGEST_OK);
	challenge(d, INT64_MAX, &ch);
	c = answer(&ch, "00000001");
	VERDICT(d, &c, INT64_MIN, VIID_DIGEST_STALE);
	VERDICT(d, &c, INT64_MAX, VIID_DIGEST_OK);

	/* Forged nonces, each answered rightly for the forged text: one bit
	 * flipped in the time, in the random bytes, in the MAC; upper case;
	 * cut; longer; not hex; someone else's. */
	challenge(d, t0, &ch);
	static const size_t flip_at[] = { 0, 15, 16, 31, 32, 63 };
	for (size_t i = 0; i < sizeof(flip_at) / sizeof(flip_at[0]); i++) {
		struct viid_digest_params f = ch;
		f.nonce[flip_at[i]] = flip_hex(f.nonce[flip_at[i]]);
		c = answer(&f, "00000001");
		VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
	}
	{
		struct viid_digest_params f = ch;
		bool letters = false;
		for (char *x = f.nonce; *x; x++) {
			if (*x >= 'a' && *x <= 'f') {
				*x = (char)(*x - 32);
				letters = true;
			}
		}
		c = answer(&f, "00000001");
		VERDICT(d, &c, t0, letters ? VIID_DIGEST_UNKNOWN_NONCE : VIID_DIGEST_OK);
		f = ch;
		f.nonce[62] = '\0';
		c = answer(&f, "00000001");
		VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
		f = ch;
		strcat(f.nonce, "00");
		c = answer(&f, "00000001");
		VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
		f = ch;
		f.nonce[10] = 'g';
		c = answer(&f, "00000001");
		VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
		snprintf(f.nonce, sizeof(f.nonce), "dcd98b7102dd2f0e8b11d0f600bfb0c0");
		c = answer(&f, "00000001");
		VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
		/* The genuine one is untouched by all this. */
		c = answer(&ch, "00000001");
		VERDICT(d, &c, t0, VIID_DIGEST_OK);
	}

	/* Another instance's nonce (another key), answered rightly, with its
	 * opaque and with ours. */
	struct viid_digest_params och;
	challenge(other, t0, &och);
	c = answer(&och, "00000001");
	VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
	VERDICT(other, &c, t0, VIID_DIGEST_OK);
	/* Unknown (and stale) only with the right response: the client knows
	 * the password and is asked to answer a new nonce. */
	c = answer(&och, "00000002");
	c.password = "guess";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_RESPONSE);
	c = answer(&ch, "00000001");
	c.v[F_NONCE] = "not-a-nonce";
	VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
	c.response = "0123456789abcdef0123456789abcdef";
	VERDICT(d, &c, t0, VIID_DIGEST_WRONG_RESPONSE);
	c = answer(&och, "00000002");
	c.v[F_OPAQUE] = ch.opaque;
	VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);

	/* Our nonce with another opaque. */
	challenge(d, t0, &ch);
	c = answer(&ch, "00000001");
	c.v[F_OPAQUE] = och.opaque;
	VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
	c.v[F_OPAQUE] = "x";
	VERDICT(d, &c, t0, VIID_DIGEST_UNKNOWN_NONCE);
	c = answer(&ch, "00000001");
	VERDICT(d, &c, t0, VIID_DIGEST_OK);

	/* Unsupported: other algorithms, userhash, qop other than auth or
	 * absent (RFC 2069: no nc, so no replay protection), each with an
	 * otherwise right answer. */
	static const char *const algorithms[] = { "MD5-sess", "SHA-256", "SHA-256-sess",
		"SHA-512-256", "\"\"x" };
	for (size_t i = 0; i < sizeof(algorithms) / sizeof(algorithms[0]) - 1; i++) {
		c = answer(&ch, "00000009");
		c.v[F_ALGORITHM] = algorithms[i];
		VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);
	}
	c = answer(&ch, "00000009");
	c.extra = "userhash=true";
	VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);
	c.extra = "userhash=\"TRUE\"";
	VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);
	c = answer(&ch, "00000009");
	c.v[F_QOP] = "auth-int";
	VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);
	c.v[F_QOP] = "auth,auth-int";
	c.quote_all = true;
	VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);
	c = answer(&ch, "00000009");
	c.skip = F_QOP;
	VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);
	{
		/* RFC 2069 proper: no qop, nc, cnonce; MD5(HA1:nonce:HA2). */
		char a1[64], a2[64], kd[1024], ha1[33], ha2[33], resp[33], h[2048];
		snprintf(a1, sizeof(a1), USER ":" REALM ":" PASS);
		md5_hex(a1, ha1);
		snprintf(a2, sizeof(a2), "POST:" URI);
		md5_hex(a2, ha2);
		snprintf(kd, sizeof(kd), "%s:%s:%s", ha1, ch.nonce, ha2);
		md5_hex(kd, resp);
		snprintf(h, sizeof(h), "Digest username=\"admin\", realm=\"viid\", nonce=\"%s\", "
		    "uri=\"" URI "\", response=\"%s\", opaque=\"%s\"", ch.nonce, resp, ch.opaque);
		T_STREQ(viid_digest_verdict_name(viid_digest_check(d, h, "POST", URI, t0)),
		    "unsupported");
	}
	/* Unsupported is found before missing fields: a SHA-256 client
	 * without cnonce is told unsupported. */
	c = answer(&ch, "00000009");
	c.v[F_ALGORITHM] = "SHA-256";
	c.skip = F_CNONCE;
	VERDICT(d, &c, t0, VIID_DIGEST_UNSUPPORTED);

	/* Missing fields; empty ones count as missing. */
	static const int required[] = { F_USERNAME, F_REALM, F_NONCE, F_URI, F_CNONCE, F_NC,
		F_RESPONSE };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		c = answer(&ch, "00000009");
		c.skip = required[i];
		VERDICT(d, &c, t0, VIID_DIGEST_MALFORMED);
		c = answer(&ch, "00000009");
		c.v[required[i]] = "";
		if (required[i] == F_RESPONSE)
			c.response = "";
		c.quote_all = true;
		VERDICT(d, &c, t0, VIID_DIGEST_MALFORMED);
	}
	/* nc: 8 hex digits exactly; response: 32. */
	static const char *const bad_nc[] = { "1", "0000001", "000000001", "0000000g",
		"-0000001", "0x000001", " 0000001", "0000001 " };
	for (size_t i = 0; i < sizeof(bad_nc) / sizeof(bad_nc[0]); i++) {
		c = answer(&ch, bad_nc[i]);
		c.quote_all = true;
		VERDICT(d, &c, t0, VIID_DIGEST_MALFORMED);
	}
	static const char *const bad_response[] = { "0123456789abcdef0123456789abcde",
		"0123456789abcdef0123456789abcdef0", "0123456789abcdef0123456789abcdeg",
		" 0123456789abcdef0123456789abcde" };
	for (size_t i = 0; i < sizeof(bad_response) / sizeof(bad_response[0]); i++) {
		c = answer(&ch, "00000009");
		c.response = bad_response[i];
		VERDICT(d, &c, t0, VIID_DIGEST_MALFORMED);
	}
	/* Every field quoted (nc="...", qop="...", algorithm="..."): fine. */
	c = answer(&ch, "00000009");
	c.quote_all = true;
	VERDICT(d, &c, t0, VIID_DIGEST_OK);

	/* Not Digest at all, and Digest that does not parse. */
	static const char *const missing[] = { "", "   ", "Basic YWRtaW46UGFzczEyMzQ=",
		"Bearer abc", "Digestusername=\"admin\"", "Diges username=\"admin\"",
		"DigestX", "\"Digest\" username=\"admin\"" };
	T_STREQ(viid_digest_verdict_name(viid_digest_check(d, NULL, "POST", URI, t0)), "missing");
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
		T_STREQ(viid_digest_verdict_name(viid_digest_check(d, missing[i], "POST", URI, t0)),
		    "missing");
	static const char *const malformed[] = { "Digest", "digest ", "Digest ,,, ",
		"Digest username", "Digest username=\"admin", "Digest username=\"admin\" realm=viid",
		"Digest abcdef==", "Digest =x", "Digest username=, realm=viid",
		"Digest username=\"admin\", username=\"admin\"" };
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		T_STREQ(viid_digest_verdict_name(viid_digest_check(d, malformed[i], "POST", URI,
		    t0)), "malformed");
	/* A right answer padded with unknown params (each short enough) to
	 * VIID_DIGEST_HEADER_MAX bytes, and to one byte more. */
	{
		char h[2 * VIID_DIGEST_HEADER_MAX], pad[2 * VIID_DIGEST_HEADER_MAX];
		c = answer(&ch, "0000000a");
		header(&c, h, sizeof(h));
		padded(pad, strlen(h) + 2, VIID_DIGEST_HEADER_MAX);
		c.extra = pad;
		header(&c, h, sizeof(h));
		T_INTEQ(strlen(h), VIID_DIGEST_HEADER_MAX);
		T_STREQ(viid_digest_verdict_name(viid_digest_check(d, h, "POST", URI, t0)), "ok");
		c = answer(&ch, "0000000b");
		header(&c, h, sizeof(h));
		padded(pad, strlen(h) + 2, VIID_DIGEST_HEADER_MAX + 1);
		c.extra = pad;
		header(&c, h, sizeof(h));
		T_INTEQ(strlen(h), VIID_DIGEST_HEADER_MAX + 1);
		T_STREQ(viid_digest_verdict_name(viid_digest_check(d, h, "POST", URI, t0)),
		    "malformed");
	}

	viid_digest_free(other);
	viid_digest_free(d);
}

/* ---- the nc table ------------------------------------------------------------ */

static void
test_table(void)
{
	struct viid_digest *d = viid_digest_new(REALM, USER, PASS, TTL_S, 3);
	struct viid_digest_params n[5];
	struct creds c;

	for (int i = 0; i < 5; i++)
		challenge(d, 1000, &n[i]);

	/* Least recently used, not first in: n0 n1 n2 used, n0 used again,
	 * then n3 evicts n1 (the oldest use), not n0. */
	for (int i = 0; i < 3; i++) {
		c = answer(&n[i], "00000001");
		VERDICT(d, &c, 1000, VIID_DIGEST_OK);
	}
	c = answer(&n[0], "00000002");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);
	c = answer(&n[3], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);
	c = answer(&n[0], "00000002");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);	/* n0 kept */
	c = answer(&n[2], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);	/* n2 kept */
	c = answer(&n[3], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);	/* n3 kept */
	c = answer(&n[1], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);		/* n1 afresh; evicts n2 */
	c = answer(&n[0], "00000002");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);	/* n0 kept */
	c = answer(&n[2], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);		/* n2 afresh; evicts n0 */
	/* A replay is no use: n3, replayed just now, is still the oldest. */
	c = answer(&n[3], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);
	c = answer(&n[4], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);		/* evicts n3 */
	c = answer(&n[1], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);
	c = answer(&n[2], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);
	c = answer(&n[4], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);
	c = answer(&n[3], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);		/* afresh; evicts n1 */
	c = answer(&n[0], "00000002");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);		/* afresh; evicts n2 */
	c = answer(&n[4], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);
	viid_digest_free(d);

	/* Requests that fail leave the table as it is: with room for one
	 * nonce, n1's wrong password, wrong uri, stale and unknown-opaque
	 * answers do not evict n0. */
	d = viid_digest_new(REALM, USER, PASS, TTL_S, 1);
	challenge(d, 1000, &n[0]);
	challenge(d, 0, &n[1]);
	c = answer(&n[0], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_OK);
	c = answer(&n[1], "00000001");
	c.password = "guess";
	VERDICT(d, &c, 1000, VIID_DIGEST_WRONG_RESPONSE);
	c = answer(&n[1], "00000001");
	c.req_uri = "/VIID/Faces";
	VERDICT(d, &c, 1000, VIID_DIGEST_WRONG_URI);
	c = answer(&n[1], "00000001");
	c.v[F_OPAQUE] = "0";
	VERDICT(d, &c, 1000, VIID_DIGEST_UNKNOWN_NONCE);
	c = answer(&n[1], "00000001");
	VERDICT(d, &c, 1000 + TTL_S * 1000 + 1, VIID_DIGEST_STALE);
	c = answer(&n[0], "00000001");
	VERDICT(d, &c, 1000, VIID_DIGEST_REPLAY);
	viid_digest_free(d);

	/* A larger table: of 1,000 nonces used in turn, the last 100 are
	 * remembered, the others start afresh. */
	enum { MAX = 100, USED = 1000 };
	static struct viid_digest_params many[USED];
	d = viid_digest_new(REALM, USER, PASS, TTL_S, MAX);
	int ok = 0, replay = 0;
	for (int i = 0; i < USED; i++) {
		challenge(d, 1000, &many[i]);
		c = answer(&many[i], "00000001");
		ok += check(d, &c, 1000) == VIID_DIGEST_OK;
	}
	T_INTEQ(ok, USED);
	for (int i = USED - MAX; i < USED; i++) {
		c = answer(&many[i], "00000001");
		replay += check(d, &c, 1000) == VIID_DIGEST_REPLAY;
	}
	T_INTEQ(replay, MAX);
	ok = 0;
	for (int i = 0; i < USED - MAX; i++) {
		c = answer(&many[i], "00000001");
		ok += check(d, &c, 1000) == VIID_DIGEST_OK;
	}
	T_INTEQ(ok, USED - MAX);
	/* ... and now those are the last ones. */
	replay = 0;
	for (int i = USED - 2 * MAX; i < USED - MAX; i++) {
		c = answer(&many[i], "00000001");
		replay += check(d, &c, 1000) == VIID_DIGEST_REPLAY;
	}
	T_INTEQ(replay, MAX);
	viid_digest_free(d);
}

/* ---- the parser ------------------------------------------------------------- */

static void
test_parse(void)
{
	struct viid_digest_params p;
	char h[3 * VIID_DIGEST_HEADER_MAX], v[2 * VIID_DIGEST_FIELD_MAX];

	/* Names in any case, the scheme in any case after blanks, blanks
	 * around '=' and commas, empty list elements. */
	T_INTEQ(viid_digest_parse(" \tdIGEST  , USERNAME = \"admin\" ,, Realm=viid,NC=00000001 ,"
	    "\tQop=\"auth\",", &p), 0);
	T_STREQ(p.username, "admin");
	T_STREQ(p.realm, "viid");
	T_STREQ(p.nc, "00000001");
	T_STREQ(p.qop, "auth");
	T_STREQ(p.nonce, "");
	T_CHECK(!p.userhash);
	T_INTEQ(viid_digest_parse("Digest", &p), 0);
	T_INTEQ(viid_digest_parse("Digest ", &p), 0);
	T_INTEQ(viid_digest_parse("Digest\t,", &p), 0);

	/* Quoted pairs undone; a tab and UTF-8 kept; an escaped quote. */
	T_INTEQ(viid_digest_parse("Digest username=\"ad\\min\", realm=\"a\\\"b\\\\c\", "
	    "cnonce=\"x\ty \xe4\xb8\xad\", uri=\"\"", &p), 0);
	T_STREQ(p.username, "admin");
	T_STREQ(p.realm, "a\"b\\c");
	T_STREQ(p.cnonce, "x\ty \xe4\xb8\xad");
	T_STREQ(p.uri, "");
	/* An unquoted value is wider than a token (uri=/path?q=1). */
	T_INTEQ(viid_digest_parse("Digest uri=/VIID/Faces?a=1&b=/x, response=abc", &p), 0);
	T_STREQ(p.uri, "/VIID/Faces?a=1&b=/x");
	T_STREQ(p.response, "abc");

	/* userhash: true in any case, quoted or not; anything else false. */
	T_INTEQ(viid_digest_parse("Digest userhash=TRUE", &p), 0);
	T_CHECK(p.userhash);
	T_INTEQ(viid_digest_parse("Digest userhash=\"true\"", &p), 0);
	T_CHECK(p.userhash);
	T_INTEQ(viid_digest_parse("Digest userhash=false", &p), 0);
	T_CHECK(!p.userhash);
	T_INTEQ(viid_digest_parse("Digest userhash=yes", &p), 0);
	T_CHECK(!p.userhash);

	/* Unknown params are skipped, also twice; a kept one twice is
	 * refused (in any case), userhash too. */
	T_INTEQ(viid_digest_parse("Digest stale=true, x=1, x=\"2\", username*=UTF-8''a, "
	    "username=b", &p), 0);
	T_STREQ(p.username, "b");
	T_INTEQ(viid_digest_parse("Digest username=a, USERNAME=a", &p), -1);
	T_INTEQ(viid_digest_parse("Digest nc=00000001, nc=00000002", &p), -1);
	T_INTEQ(viid_digest_parse("Digest userhash=false, userhash=true", &p), -1);

	/* What does not parse, and leaves every field empty. */
	static const char *const bad[] = {
		"Digest username=\"admin",		/* unterminated */
		"Digest username=\"admin\\\"",	/* the closing quote escaped */
		"Digest username=\"admin\\",		/* a backslash at the end */
		"Digest realm=viid, username=\"ad\"min\"",	/* a stray quote after */
		"Digest username=\"admin\" realm=\"viid\"",	/* no comma */
		"Digest username=admin realm=viid",
		"Digest realm=viid, username",		/* no '=' */
		"Digest realm=viid, username=",		/* no value */
		"Digest realm=viid, username= , nc=1",
		"Digest realm=viid, =admin",		/* no name */
		"Digest realm=viid, user name=admin",
		"Digest realm=viid, username=\"a\x01\"",	/* a control character */
		"Digest realm=viid, username=\"a\\\x01\"",	/* escaped, too */
		"Digest realm=viid, username=\"a\x7f\"",
		"Digest realm=viid, username=\"a\r\nX: y\"",
		"Digest realm=viid, username=a\x01",
		"Digest realm=viid, username=a\"b",
		"Digest realm=viid; username=a",	/* ';' is no separator: "viid;" then "username" */
		"Digest realm=viid, (username)=a",
		"Basic realm=viid",
		"Digestrealm=viid",
		"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&p, 'z', sizeof(p));
		int r = viid_digest_parse(bad[i], &p);
		bool empty = p.realm[0] == '\0' && p.username[0] == '\0' && !p.userhash;
		if (r != -1 || !empty)
			printf("# %s\n", bad[i]);
		T_CHECK(r == -1 && empty);
	}
	T_INTEQ(viid_digest_parse(NULL, &p), -1);

	/* Values of VIID_DIGEST_FIELD_MAX bytes, quoted (escapes not
	 * counted) and not; one byte more is refused, for params not kept
	 * too. */
	memset(v, 'a', VIID_DIGEST_FIELD_MAX);
	v[VIID_DIGEST_FIELD_MAX] = '\0';
	snprintf(h, sizeof(h), "Digest cnonce=\"%s\", nonce=%s", v, v);
	T_INTEQ(viid_digest_parse(h, &p), 0);
	T_INTEQ(strlen(p.cnonce), VIID_DIGEST_FIELD_MAX);
	T_INTEQ(strlen(p.nonce), VIID_DIGEST_FIELD_MAX);
	v[0] = '\\';
	snprintf(h, sizeof(h), "Digest cnonce=\"\\%s\"", v);	/* \\ and 511 a: 512 */
	T_INTEQ(viid_digest_parse(h, &p), 0);
	T_CHECK(p.cnonce[0] == '\\' && strlen(p.cnonce) == VIID_DIGEST_FIELD_MAX);
	v[0] = 'a';
	snprintf(h, sizeof(h), "Digest cnonce=\"\\\\%s\"", v);	/* \\\\ and 512 a: 513 */
	T_INTEQ(viid_digest_parse(h, &p), -1);
	strcat(v, "a");
	snprintf(h, sizeof(h), "Digest cnonce=\"%s\"", v);
	T_INTEQ(viid_digest_parse(h, &p), -1);
	snprintf(h, sizeof(h), "Digest nonce=%s", v);
	T_INTEQ(viid_digest_parse(h, &p), -1);
	snprintf(h, sizeof(h), "Digest other=\"%s\"", v);
	T_INTEQ(viid_digest_parse(h, &p), -1);

	/* The header: VIID_DIGEST_HEADER_MAX bytes parse, one more does not. */
	snprintf(h, sizeof(h), "Digest username=admin, ");
	padded(h + strlen(h), strlen(h), VIID_DIGEST_HEADER_MAX);
	T_INTEQ(strlen(h), VIID_DIGEST_HEADER_MAX);
	T_INTEQ(viid_digest_parse(h, &p), 0);
	T_STREQ(p.username, "admin");
	snprintf(h, sizeof(h), "Digest username=admin, ");
	padded(h + strlen(h), strlen(h), VIID_DIGEST_HEADER_MAX + 1);
	T_INTEQ(viid_digest_parse(h, &p), -1);
	/* Blanks alone past the limit count too. */
	memset(h, ' ', 2 * VIID_DIGEST_HEADER_MAX);
	memcpy(h + 2 * VIID_DIGEST_HEADER_MAX, "Digest", 7);
	T_INTEQ(viid_digest_parse(h, &p), -1);

	/* Our own challenge parses as well (same grammar). */
	struct viid_digest *d = viid_digest_new(REALM, USER, PASS, TTL_S, 1);
	char ch[VIID_DIGEST_CHALLENGE_MAX];
	viid_digest_challenge(d, 5, true, ch, sizeof(ch));
	T_INTEQ(viid_digest_parse(ch, &p), 0);
	T_INTEQ(strlen(p.nonce), 64);
	viid_digest_free(d);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		fixtures = argv[1];
	test_vectors();
	test_new();
	test_challenge();
	test_round_trip();
	test_verdicts();
	test_table();
	test_parse();
	return t_done();
}
