/* Unit tests for decode_json.c: payloads read by yajl into the values
 * jansson's own reader makes, and left to jansson where the two differ. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "t.h"

enum path { FAST, JANSSON };	/* who must decide */

/* What jansson's reader makes of the bytes, and what decode_json_parse
 * makes: both NULL, or the same text (keys in order). */
static void
same(const char *what, const void *p, size_t n, enum path path)
{
	json_t *want = json_loadb(p, n, 0, NULL);
	json_t *got = decode_json_parse(p, n);
	json_t *fast = decode_json_parse_fast(p, n);
	char *w = want != NULL ? json_dumps(want, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	char *g = got != NULL ? json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	bool ok = (want == NULL) == (got == NULL) &&
	    (want == NULL || (json_equal(want, got) && w != NULL && g != NULL &&
	    strcmp(w, g) == 0));
	/* FAST: yajl read it; JANSSON: yajl left it alone. */
	ok = ok && (path == FAST) == (fast != NULL);
	if (fast != NULL && want != NULL)
		ok = ok && json_equal(fast, want);
	char name[80];
	size_t k = 0;
	for (; what[k] != '\0' && k < sizeof(name) - 1; k++)	/* one TAP line */
		name[k] = (unsigned char)what[k] < 0x20 || what[k] == '#' ? '.' : what[k];
	name[k] = '\0';
	t_report(ok, name, __FILE__, __LINE__);
	if (!ok)
		printf("#   jansson: %s\n#   got:     %s\n#   fast:    %s\n", w ? w : "(null)",
		    g ? g : "(null)", fast != NULL ? "yes" : "no");
	free(w);
	free(g);
	json_decref(want);
	json_decref(got);
	json_decref(fast);
}

#define SAME(s, path) same(s, s, sizeof(s) - 1, path)

static void
test_plain(void)
{
	SAME("{\"deviceId\": \"DC-B06U21202\", \"battery\": 80, \"contact\": true, "
	    "\"state\": null, \"v\": -2.5e-3, \"list\": [1, [], {}, \"x\", false]}", FAST);
	SAME("[1, 2, {\"a\": [{\"b\": {}}]}]", FAST);
	SAME(" \t\r\n{\"a\":1}\n\r\t ", FAST);
	SAME("{\"name\": \"张三\", \"地址\": \"合肥市\"}", FAST);
	SAME("{\"e\": \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u4e2d \\u00e9 \\u0041\"}", FAST);
	/* a key and then a value that both need unescaping: the key is kept */
	SAME("{\"k\\n1\": \"v\\n2\", \"k\\t3\": [\"\\u4e2d\\u6587\"]}", FAST);
	SAME("{\"a\": 1, \"b\": 2, \"a\": 3}", FAST);	/* the last value, first place */
	SAME("{\"\": \"\", \"x\": \"\"}", FAST);
	SAME("{\"i\": 9223372036854775807, \"j\": -9223372036854775808, \"z\": -0}", FAST);
	/* integers read in place up to 18 digits, by strtoll beyond */
	SAME("[999999999999999999, -999999999999999999, 1000000000000000000, "
	    "-1000000000000000000, 0, -0, 7, -7, 1234567890123456789]", FAST);
	SAME("[9223372036854775808]", JANSSON);	/* out of range: jansson says no */
	SAME("[-9223372036854775809]", JANSSON);
	SAME("[1.5, -0.5, 1e3, -2E-2, 10.0]", FAST);
	SAME("{\"r\": -0.0, \"e\": 1E5, \"f\": 1e+2, \"g\": 0.1, \"h\": 123456789.123456789}", FAST);
	SAME("{\"tiny\": 1e-400}", JANSSON);	/* underflow: jansson takes it, as 0 */
	SAME("{\"pair\": \"\\ud83d\\ude00\"}", JANSSON);
	SAME("{\"two\": \"\\\\ud800\"}", JANSSON);	/* a backslash, then text */
}

static void
test_refused(void)
{
	SAME("", JANSSON);
	SAME("   ", JANSSON);
	SAME("1", JANSSON);
	SAME("\"s\"", JANSSON);
	SAME("null", JANSSON);
	SAME("{} x", JANSSON);
	SAME("{}{}", JANSSON);
	SAME("{}  \"open", JANSSON);
	SAME("[]  \"open]", JANSSON);
	SAME("{\"a\": 1}\"", JANSSON);
	SAME("{\"a\":1,}", JANSSON);
	SAME("[1,]", JANSSON);
	SAME("[1 2]", JANSSON);
	SAME("{\"a\" 1}", JANSSON);
	SAME("{\"a\"}", JANSSON);
	SAME("{1: 2}", JANSSON);
	SAME("{\"a\": 01}", JANSSON);
	SAME("{\"a\": 1.}", JANSSON);
	SAME("{\"a\": .5}", JANSSON);
	SAME("{\"a\": +1}", JANSSON);
	SAME("{\"a\": -}", JANSSON);
	SAME("{\"a\": 1e}", JANSSON);
	SAME("{\"a\": tru}", JANSSON);
	SAME("{\"a\": True}", JANSSON);
	SAME("{\"a\": NaN}", JANSSON);
	SAME("{\"a\": 9223372036854775808}", JANSSON);
	SAME("{\"a\": -9223372036854775809}", JANSSON);
	SAME("{\"a\": 1e400}", JANSSON);
	SAME("{\"a\": -1e400}", JANSSON);
	SAME("{\"a\": 1} /* c */", JANSSON);
	SAME("// c\n{\"a\": 1}", JANSSON);
	SAME("{\"a\": 'x'}", JANSSON);
	SAME("{\"a\": \"\\x\"}", JANSSON);
	SAME("{\"a\": \"\\u12\"}", JANSSON);
	SAME("{\"a\": \"\\u0000\"}", JANSSON);
	SAME("{\"\\u0000\": 1}", JANSSON);
	/* an escaped backslash, then "u0000" as text: jansson reads it, for
	 * nothing (the check does not count backslashes) */
	SAME("{\"t\": \"\\\\u0000\"}", JANSSON);
	SAME("{\"a\": \"\\ud800\"}", JANSSON);
	SAME("{\"a\": \"\\udc00\"}", JANSSON);
	SAME("{\"a\": \"\\ud800\\u0041\"}", JANSSON);
	SAME("{\"a\": \"\\uDBFF\"}", JANSSON);
	SAME("{\"a\": \"tab\there\"}", JANSSON);
	SAME("{\"a\":\f1}", JANSSON);
	SAME("{\"a\":\v1}", JANSSON);
	SAME("\xef\xbb\xbf{\"a\": 1}", JANSSON);	/* a byte order mark */
	SAME("{\"a\": \"\xc0\x80\"}", JANSSON);		/* overlong */
	SAME("{\"a\": \"\xed\xa0\x80\"}", JANSSON);	/* a surrogate in UTF-8 */
	SAME("{\"a\": \"\xf4\x90\x80\x80\"}", JANSSON);	/* beyond U+10FFFF */
	SAME("{\"a\": \"\xe4\xb8\"}", JANSSON);		/* cut short */
	SAME("{\"a\": \"\xff\"}", JANSSON);
	SAME("{\"a\": [1, 2}", JANSSON);
	SAME("{\"a\": [1, 2]", JANSSON);
	SAME("]", JANSSON);
	const char nul[] = "{\"a\": 1}\0";
	same("a NUL byte after the value", nul, sizeof(nul) - 1, JANSSON);
	const char nul2[] = "{\"a\": \"x\0y\"}";
	same("a NUL byte in a string", nul2, sizeof(nul2) - 1, JANSSON);
}

/* The bytes that send a payload to jansson are found 8 at a time: at
 * every place in a word. */
static void
test_every_place(void)
{
	static const char *const odd[] = { "\f", "\v", "\x01", "\"\x7f\"", "\"\\ud800\"",
		"\"\xed\xa0\x80\"", "\"\xc3\xa9\"" };
	for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++) {
		bool ok = true;
		for (int pad = 0; pad < 16; pad++) {
			char doc[128];
			int n = snprintf(doc, sizeof(doc), "{\"a\": \"%.*s\", \"b\": %s}", pad,
			    "0123456789abcdef", odd[k]);
			json_t *want = json_loadb(doc, (size_t)n, 0, NULL);
			json_t *got = decode_json_parse(doc, (size_t)n);
			json_t *fast = decode_json_parse_fast(doc, (size_t)n);
			/* 0x7f in a string is plain text for both, é UTF-8 yajl takes */
			bool plain = k == 3 || k == 6;
			ok = ok && (want == NULL) == (got == NULL) &&
			    (want == NULL || json_equal(want, got)) && (fast != NULL) == plain;
			json_decref(want);
			json_decref(got);
			json_decref(fast);
		}
		t_report(ok, "a byte for jansson at every place of a word", __FILE__, __LINE__);
	}
}

/* Nesting beyond what yajl is given (64), and beyond jansson's 2048. */
static void
test_depth(void)
{
	static char buf[2 * 3000 + 16];
	for (int depth = 63; depth <= 66; depth++) {
		int n = 0;
		for (int i = 0; i < depth; i++)
			buf[n++] = '[';
		for (int i = 0; i < depth; i++)
			buf[n++] = ']';
		same("nested arrays", buf, (size_t)n, depth <= 64 ? FAST : JANSSON);
	}
	int n = 0;
	for (int i = 0; i < 3000; i++)
		buf[n++] = '[';
	for (int i = 0; i < 3000; i++)
		buf[n++] = ']';
	same("3,000 nested arrays", buf, (size_t)n, JANSSON);
}

static void
test_long(void)
{
	char key[300], doc[400];
	memset(key, 'k', sizeof(key));
	for (size_t len = 255; len <= 257; len++) {
		int n = snprintf(doc, sizeof(doc), "{\"%.*s\": 1}", (int)len, key);
		same("a long key", doc, (size_t)n, len <= 256 ? FAST : JANSSON);
	}
	char num[80];
	int n = snprintf(num, sizeof(num), "[0.%061d1]", 0);
	same("a 64-character number", num, (size_t)n, JANSSON);
	n = snprintf(num, sizeof(num), "[0.%060d1]", 0);
	same("a 63-character number", num, (size_t)n, FAST);
}

/* decode_json_object keeps its reasons: bad_utf8 for bytes that are not
 * UTF-8, bad_json for the rest, and an object is required. */
static void
test_object(void)
{
	static const struct {
		const char *payload;
		const char *reason;
	} cases[] = {
		{ "{\"a\": 1}", NULL },
		{ "[1]", "bad_json" },
		{ "{\"a\": 1", "bad_json" },
		{ "{\"a\": \"\xff\"}", "bad_utf8" },
		{ "{\"a\": \"\\u0000\"}", "bad_json" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct decode_in in = { 0 };
		struct decode_out out = { 0 };
		in.payload = (const uint8_t *)cases[i].payload;
		in.payload_len = strlen(cases[i].payload);
		json_t *j = decode_json_object(&in, &out);
		if (cases[i].reason == NULL) {
			T_CHECK(j != NULL && json_is_object(j));
		} else {
			T_CHECK(j == NULL);
			T_STREQ(out.reason, cases[i].reason);
		}
		json_decref(j);
	}
}

int
main(void)
{
	test_plain();
	test_refused();
	test_every_place();
	test_depth();
	test_long();
	test_object();
	return t_done();
}
