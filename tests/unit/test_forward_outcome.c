/* Unit tests for the gridbridge profile's reading of replies
 * (forward_outcome.h): one row per rule, and the edges between them. */
#include <curl/curl.h>
#include <string.h>

#include "forward_outcome.h"
#include "t.h"

#define SENT FORWARD_SENT
#define REFUSED FORWARD_REFUSED
#define RETRY FORWARD_RETRY
#define CONTENT FORWARD_RETRY_CONTENT
#define TLS FORWARD_RETRY_TLS

#define HINT " (closed right after the TLS handshake: is our client certificate refused?)"
#define ALERT "OpenSSL SSL_read: error:0A000418:SSL routines::tlsv1 alert unknown ca, errno 0"

static const struct row {
	const char *what;
	CURLcode code;
	const char *error;
	long status;
	long long retry_after_s;
	long long app_us, pre_us, total_us;
	const char *body;
	bool cut;
	bool tls_outage;
	enum forward_verdict want;
	const char *text;		/* NULL: curl_easy_strerror(code) */
} rows[] = {
	/* Answers. */
	{ "200", CURLE_OK, "", 200, 0, 5000, 6000, 9000, "ok", false, false, SENT, "" },
	{ "204", CURLE_OK, "", 204, 0, 0, 0, 0, "", false, false, SENT, "" },
	{ "299", CURLE_OK, "", 299, 0, 0, 0, 0, "", false, false, SENT, "" },
	{ "200 during a TLS outage", CURLE_OK, "", 200, 0, 0, 0, 0, "", false, true, SENT, "" },
	{ "200 with Retry-After", CURLE_OK, "", 200, 7, 0, 0, 0, "", false, false, SENT, "" },
	{ "400", CURLE_OK, "", 400, 0, 0, 0, 0, "bad event", false, false, REFUSED, "bad event" },
	{ "401", CURLE_OK, "", 401, 0, 0, 0, 0, "", false, false, REFUSED, "" },
	{ "404", CURLE_OK, "", 404, 0, 0, 0, 0, "nope", false, false, REFUSED, "nope" },
	{ "413", CURLE_OK, "", 413, 0, 0, 0, 0, "", false, false, REFUSED, "" },
	{ "499", CURLE_OK, "", 499, 0, 0, 0, 0, "", false, false, REFUSED, "" },
	{ "422 with Retry-After", CURLE_OK, "", 422, 3, 0, 0, 0, "x", false, false, REFUSED, "x" },
	{ "408", CURLE_OK, "", 408, 0, 0, 0, 0, "slow", false, false, CONTENT, "HTTP 408" },
	{ "408 with Retry-After", CURLE_OK, "", 408, 5, 0, 0, 0, "", false, false, RETRY, "HTTP 408" },
	{ "429", CURLE_OK, "", 429, 0, 0, 0, 0, "", false, false, RETRY, "HTTP 429" },
	{ "429 with Retry-After", CURLE_OK, "", 429, 30, 0, 0, 0, "", false, false, RETRY, "HTTP 429" },
	{ "500", CURLE_OK, "", 500, 0, 0, 0, 0, "oops", false, false, CONTENT, "HTTP 500" },
	{ "503", CURLE_OK, "", 503, 0, 0, 0, 0, "", false, false, CONTENT, "HTTP 503" },
	{ "503 with Retry-After", CURLE_OK, "", 503, 2, 0, 0, 0, "", false, false, RETRY, "HTTP 503" },
	{ "599", CURLE_OK, "", 599, 0, 0, 0, 0, "", false, false, CONTENT, "HTTP 599" },
	{ "600", CURLE_OK, "", 600, 0, 0, 0, 0, "", false, false, CONTENT, "HTTP 600" },
	{ "500 during a TLS outage", CURLE_OK, "", 500, 0, 0, 0, 0, "", false, true, CONTENT,
	  "HTTP 500" },
	{ "199", CURLE_OK, "", 199, 0, 0, 0, 0, "", false, false, RETRY, "HTTP 199" },
	{ "300", CURLE_OK, "", 300, 0, 0, 0, 0, "", false, false, RETRY, "HTTP 300" },
	{ "301 (not followed)", CURLE_OK, "", 301, 0, 0, 0, 0, "", false, false, RETRY, "HTTP 301" },
	{ "399", CURLE_OK, "", 399, 0, 0, 0, 0, "", false, false, RETRY, "HTTP 399" },

	/* libcurl's TLS errors, at any time, with or without a status. */
	{ "peer verification", CURLE_PEER_FAILED_VERIFICATION, "SSL certificate problem: "
	  "unable to get local issuer certificate", 0, 0, 0, 0, 3000, "", false, false, TLS,
	  "SSL certificate problem: unable to get local issuer certificate" },
	{ "CA file", CURLE_SSL_CACERT_BADFILE, "", 0, 0, 0, 0, 0, "", false, false, TLS, NULL },
	{ "our certificate", CURLE_SSL_CERTPROBLEM, "", 0, 0, 0, 0, 0, "", false, false, TLS, NULL },
	{ "handshake", CURLE_SSL_CONNECT_ERROR, "", 0, 0, 0, 0, 0, "", false, false, TLS, NULL },
	{ "issuer", CURLE_SSL_ISSUER_ERROR, "", 0, 0, 0, 0, 0, "", false, false, TLS, NULL },
	{ "pinned key", CURLE_SSL_PINNEDPUBKEYNOTMATCH, "", 0, 0, 0, 0, 0, "", false, false, TLS,
	  NULL },
	{ "OCSP status", CURLE_SSL_INVALIDCERTSTATUS, "", 0, 0, 0, 0, 0, "", false, false, TLS,
	  NULL },
	{ "CRL file", CURLE_SSL_CRL_BADFILE, "", 0, 0, 0, 0, 0, "", false, false, TLS, NULL },
	{ "TLS error after the request went out", CURLE_SSL_CONNECT_ERROR, "", 0, 0, 4000, 5000,
	  9000, "", false, false, TLS, NULL },
	{ "TLS error with Retry-After", CURLE_SSL_CONNECT_ERROR, "", 0, 9, 0, 0, 0, "", false,
	  false, TLS, NULL },

	/* An alert in the error text: TLS whatever libcurl's code. */
	{ "alert on receive", CURLE_RECV_ERROR, ALERT, 0, 0, 4000, 5000, 90000, "", false, false,
	  TLS, ALERT },
	{ "alert on send", CURLE_SEND_ERROR, ALERT, 0, 0, 0, 0, 0, "", false, false, TLS, ALERT },
	{ "alert on another error", CURLE_OPERATION_TIMEDOUT, "alert", 0, 0, 0, 5000, 9000, "",
	  false, false, TLS, "alert" },

	/* Connections lost right after our handshake: refused certificates. */
	{ "closed at once after the handshake (receive)", CURLE_RECV_ERROR, "Recv failure: "
	  "Connection reset by peer", 0, 0, 4000, 4100, 4500, "", false, false, TLS,
	  "Recv failure: Connection reset by peer" HINT },
	{ "closed at once after the handshake (send)", CURLE_SEND_ERROR, "Send failure: Broken "
	  "pipe", 0, 0, 4000, 4100, 23999, "", false, false, TLS, "Send failure: Broken pipe" HINT },
	{ "closed at once after the handshake (nothing)", CURLE_GOT_NOTHING, "Empty reply from "
	  "server", 0, 0, 4000, 4100, 4000, "", false, false, TLS, "Empty reply from server" HINT },
	{ "closed 20 ms after the handshake", CURLE_RECV_ERROR, "", 0, 0, 4000, 4100, 24000, "",
	  false, false, CONTENT, NULL },
	{ "closed at once, plain HTTP", CURLE_GOT_NOTHING, "", 0, 0, 0, 100, 200, "", false,
	  false, CONTENT, NULL },
	{ "closed at once with a status", CURLE_RECV_ERROR, "", 500, 0, 4000, 4100, 4500, "",
	  false, false, CONTENT, NULL },
	{ "closed at once, before sending", CURLE_RECV_ERROR, "reset", 0, 0, 4000, 0, 4500, "",
	  false, false, TLS, "reset" HINT },
	{ "closed at once with Retry-After", CURLE_RECV_ERROR, "reset", 0, 5, 4000, 4100, 4500, "",
	  false, false, TLS, "reset" HINT },
	{ "timeout right after the handshake", CURLE_OPERATION_TIMEDOUT, "", 0, 0, 4000, 4100,
	  4500, "", false, false, CONTENT, NULL },

	/* During a TLS outage a lost connection is TLS too; other errors not. */
	{ "lost during a TLS outage (receive)", CURLE_RECV_ERROR, "", 0, 0, 4000, 5000, 90000, "",
	  false, true, TLS, NULL },
	{ "lost during a TLS outage (send)", CURLE_SEND_ERROR, "", 0, 0, 0, 0, 0, "", false, true,
	  TLS, NULL },
	{ "nothing during a TLS outage", CURLE_GOT_NOTHING, "", 502, 0, 4000, 5000, 90000, "",
	  false, true, TLS, NULL },
	{ "refused connection during a TLS outage", CURLE_COULDNT_CONNECT, "", 0, 0, 0, 0, 1000,
	  "", false, true, RETRY, NULL },
	{ "timeout during a TLS outage", CURLE_OPERATION_TIMEDOUT, "", 0, 0, 4000, 5000, 30000000,
	  "", false, true, CONTENT, NULL },

	/* Other errors: the content is suspect once the request went out. */
	{ "connection lost after sending", CURLE_RECV_ERROR, "Recv failure: Connection reset by "
	  "peer", 0, 0, 4000, 5000, 90000, "", false, false, CONTENT,
	  "Recv failure: Connection reset by peer" },
	{ "lost after sending, with Retry-After", CURLE_RECV_ERROR, "", 0, 4, 4000, 5000, 90000,
	  "", false, false, RETRY, NULL },
	{ "timeout after sending", CURLE_OPERATION_TIMEDOUT, "Operation timed out after 30000 "
	  "milliseconds with 0 bytes received", 0, 0, 4000, 5000, 30000000, "", false, false,
	  CONTENT, "Operation timed out after 30000 milliseconds with 0 bytes received" },
	{ "timeout with a status", CURLE_OPERATION_TIMEDOUT, "", 200, 0, 4000, 5000, 30000000, "",
	  false, false, CONTENT, NULL },
	{ "timeout connecting", CURLE_OPERATION_TIMEDOUT, "", 0, 0, 0, 0, 10000000, "", false,
	  false, RETRY, NULL },
	{ "refused connection", CURLE_COULDNT_CONNECT, "Failed to connect to 127.0.0.1 port 1: "
	  "Connection refused", 0, 0, 0, 0, 300, "", false, false, RETRY,
	  "Failed to connect to 127.0.0.1 port 1: Connection refused" },
	{ "name not resolved", CURLE_COULDNT_RESOLVE_HOST, "", 0, 0, 0, 0, 300, "", false, false,
	  RETRY, NULL },
	{ "proxy", CURLE_COULDNT_RESOLVE_PROXY, "", 0, 0, 0, 0, 300, "", false, false, RETRY,
	  NULL },
	{ "no error text: libcurl's", CURLE_COULDNT_CONNECT, NULL, 0, 0, 0, 0, 0, "", false,
	  false, RETRY, NULL },
	{ "error text made printable", CURLE_COULDNT_CONNECT, "bad\ttext\n\x7f\xc3\xa9", 0, 0, 0,
	  0, 0, "", false, false, RETRY, "bad text    " },

	/* A refusal's reply as text the database takes. */
	{ "reply: UTF-8 kept", CURLE_OK, "", 400, 0, 0, 0, 0, "d\xc3\xa9j\xc3\xa0 \xe4\xb8\xad "
	  "\xf0\x9f\x98\x80", false, false, REFUSED, "d\xc3\xa9j\xc3\xa0 \xe4\xb8\xad \xf0\x9f\x98\x80" },
	{ "reply: not UTF-8", CURLE_OK, "", 400, 0, 0, 0, 0, "a\xff" "b\xc0\xaf" "c\xed\xa0\x80",
	  false, false, REFUSED, "a\\xffb\\xc0\\xafc\\xed\\xa0\\x80" },
	{ "reply: past U+10FFFF", CURLE_OK, "", 400, 0, 0, 0, 0, "\xf4\x90\x80\x80", false, false,
	  REFUSED, "\\xf4\\x90\\x80\\x80" },
	{ "reply: control characters", CURLE_OK, "", 400, 0, 0, 0, 0, "a\tb\r\nc\x7f" "d\xc2\x85",
	  false, false, REFUSED, "a b  c d " },
	{ "reply: cut inside a character", CURLE_OK, "", 400, 0, 0, 0, 0, "abc\xe4\xb8", true,
	  false, REFUSED, "abc" },
	{ "reply: ends inside a character", CURLE_OK, "", 400, 0, 0, 0, 0, "abc\xe4\xb8", false,
	  false, REFUSED, "abc\\xe4\\xb8" },
};

static void
check(const struct row *w)
{
	struct forward_reply r = {
		.code = w->code,
		.error = w->error,
		.status = w->status,
		.retry_after_s = w->retry_after_s,
		.appconnect_us = w->app_us,
		.pretransfer_us = w->pre_us,
		.total_us = w->total_us,
		.body = (const unsigned char *)w->body,
		.body_len = strlen(w->body),
		.body_cut = w->cut,
		.tls_outage = w->tls_outage,
	};
	struct forward_outcome o;
	char want[FORWARD_TEXT_MAX];

	memset(&o, 0x55, sizeof(o));
	forward_classify(&r, &o);
	printf("# %s\n", w->what);
	T_INTEQ(o.verdict, w->want);
	T_INTEQ(o.retry_after_s, w->retry_after_s);
	if (w->text != NULL)
		snprintf(want, sizeof(want), "%s", w->text);
	else
		snprintf(want, sizeof(want), "%s", curl_easy_strerror(w->code));
	T_STREQ(o.text, want);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		check(&rows[i]);

	/* The hint where libcurl's own text is used. */
	struct row hinted = { "closed at once, libcurl's text", CURLE_RECV_ERROR, "", 0, 0, 4000,
		4100, 4500, "", false, false, TLS, NULL };
	char text[512];
	snprintf(text, sizeof(text), "%s%s", curl_easy_strerror(CURLE_RECV_ERROR), HINT);
	hinted.text = text;
	check(&hinted);

	/* A reply longer than what is kept: the first FORWARD_REPLY_KEEP
	 * bytes, a character cut at the end dropped. */
	char body[FORWARD_REPLY_KEEP + 8];
	memset(body, 'x', sizeof(body));
	memcpy(body + FORWARD_REPLY_KEEP - 1, "\xc3\xa9", 2);
	body[sizeof(body) - 1] = '\0';
	struct forward_reply r = { .code = CURLE_OK, .status = 400,
		.body = (const unsigned char *)body, .body_len = strlen(body) };
	struct forward_outcome o;
	forward_classify(&r, &o);
	T_INTEQ(o.verdict, REFUSED);
	T_INTEQ(strlen(o.text), FORWARD_REPLY_KEEP - 1);
	return t_done();
}
