/* forward_outcome.c — the gridbridge profile's reading of a reply: see
 * forward_outcome.h. */
#include "forward_outcome.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Answers (libcurl said CURLE_OK), by HTTP status: the first row whose
 * range holds the status. */
static const struct {
	long lo, hi;
	enum forward_verdict verdict;
} answers[] = {
	{ 200, 299, FORWARD_SENT },
	{ 408, 408, FORWARD_RETRY_CONTENT },	/* the platform gave up waiting for it */
	{ 429, 429, FORWARD_RETRY },		/* too many requests: the platform's state */
	{ 400, 499, FORWARD_REFUSED },
	{ 500, LONG_MAX, FORWARD_RETRY_CONTENT },
	{ LONG_MIN, LONG_MAX, FORWARD_RETRY },	/* 1xx, 3xx: redirects are not followed */
};

enum failure {
	FAIL_OTHER,		/* no connection, a timeout, ... */
	FAIL_TLS,		/* verification, certificates, the handshake */
	FAIL_LOST,		/* the connection broke, or closed without an answer */
};

/* Errors (any other result of libcurl); not listed: FAIL_OTHER. */
static const struct {
	CURLcode code;
	enum failure failure;
} failures[] = {
	{ CURLE_PEER_FAILED_VERIFICATION, FAIL_TLS },
	{ CURLE_SSL_CACERT_BADFILE, FAIL_TLS },
	{ CURLE_SSL_CERTPROBLEM, FAIL_TLS },
	{ CURLE_SSL_CONNECT_ERROR, FAIL_TLS },
	{ CURLE_SSL_ISSUER_ERROR, FAIL_TLS },
	{ CURLE_SSL_PINNEDPUBKEYNOTMATCH, FAIL_TLS },
	{ CURLE_SSL_INVALIDCERTSTATUS, FAIL_TLS },
	{ CURLE_SSL_CRL_BADFILE, FAIL_TLS },
	{ CURLE_SEND_ERROR, FAIL_LOST },
	{ CURLE_RECV_ERROR, FAIL_LOST },
	{ CURLE_GOT_NOTHING, FAIL_LOST },
};

static const char tls_hint[] = " (closed right after the TLS handshake: is our client "
    "certificate refused?)";

static enum forward_verdict
answer_verdict(long status)
{
	size_t i = 0;
	while (status < answers[i].lo || status > answers[i].hi)
		i++;		/* the last row takes every status */
	return answers[i].verdict;
}

static enum failure
failure_of(CURLcode code)
{
	for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++)
		if (failures[i].code == code)
			return failures[i].failure;
	return FAIL_OTHER;
}

/* The length of the UTF-8 sequence at p (of n bytes), its code point in
 * *cp; 0 when it is not valid UTF-8 (overlong, surrogate, past U+10FFFF,
 * a stray continuation byte); -1 when the n bytes end inside a sequence
 * that is valid so far. */
static int
utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0];
	uint32_t v, min;
	int len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		v = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		v = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	for (int i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return -1;
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* Bytes from outside (a reply) as text the database takes: valid UTF-8 is
 * kept, any other byte becomes \xNN, control characters (C0, DEL, C1, NUL
 * included) become spaces, and a character that `cut` (the bytes were cut
 * from a longer text) broke at the end is dropped. `out` holds at least
 * 4 * n + 1 bytes. */
static void
safe_text(const unsigned char *p, size_t n, bool cut, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i = 0, o = 0;

	while (i < n) {
		uint32_t cp = 0;
		int len = utf8_seq(p + i, n - i, &cp);
		if (len < 0 && cut)
			break;
		if (len <= 0) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = digits[p[i] >> 4];
			out[o++] = digits[p[i] & 15];
			i++;
			continue;
		}
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
			out[o++] = ' ';
		} else {
			memcpy(out + o, p + i, (size_t)len);
			o += (size_t)len;
		}
		i += (size_t)len;
	}
	out[o] = '\0';
}

/* Printable text of an error, for logs and the outbox. */
static void
printable(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p >= 0x7f)
			*p = ' ';
}

/* A request libcurl could not complete: the error's text into out->text. */
static enum forward_verdict
failure_verdict(const struct forward_reply *r, struct forward_outcome *out)
{
	const char *error = r->error != NULL && r->error[0] != '\0' ? r->error :
	    curl_easy_strerror(r->code);
	enum failure f = failure_of(r->code);

	snprintf(out->text, sizeof(out->text), "%s", error);
	printable(out->text);
	/* The platform refusing our certificate shows, with TLS 1.3, after our
	 * side of the handshake: as an alert, or on later attempts as a
	 * connection the server already closed. Such failures stay TLS
	 * failures until a request succeeds (r->tls_outage). */
	if (f == FAIL_TLS || strstr(out->text, "alert") != NULL)
		return FORWARD_RETRY_TLS;
	/* ... or as a new connection closed at once after our handshake,
	 * before any answer (a server that merely went away does that at a
	 * random moment, not within milliseconds of the handshake). */
	if (f == FAIL_LOST && r->status == 0 && r->appconnect_us > 0 &&
	    r->total_us - r->appconnect_us < FORWARD_TLS_REFUSAL_US) {
		size_t n = strlen(out->text);
		if (n + sizeof(tls_hint) <= sizeof(out->text))
			memcpy(out->text + n, tls_hint, sizeof(tls_hint));
		return FORWARD_RETRY_TLS;
	}
	if (f == FAIL_LOST && r->tls_outage)
		return FORWARD_RETRY_TLS;
	/* A request that went out and got no answer (a timeout, a connection
	 * lost) may have been too much for the platform; a refused
	 * connection is not about the batch. */
	return r->pretransfer_us > 0 ? FORWARD_RETRY_CONTENT : FORWARD_RETRY;
}

void
forward_classify(const struct forward_reply *r, struct forward_outcome *out)
{
	enum forward_verdict v;

	out->text[0] = '\0';
	out->retry_after_s = r->retry_after_s;
	if (r->code == CURLE_OK) {
		v = answer_verdict(r->status);
		if (v == FORWARD_REFUSED) {
			size_t n = r->body_len < FORWARD_REPLY_KEEP ? r->body_len : FORWARD_REPLY_KEEP;
			safe_text(r->body, n, r->body_cut || n < r->body_len, out->text);
		} else if (v != FORWARD_SENT) {
			snprintf(out->text, sizeof(out->text), "HTTP %ld", r->status);
		}
	} else {
		v = failure_verdict(r, out);
	}
	/* Retry-After is about the platform's state, never the content. */
	if (v == FORWARD_RETRY_CONTENT && r->retry_after_s != 0)
		v = FORWARD_RETRY;
	out->verdict = v;
}
