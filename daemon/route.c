/* route.c — topic patterns with named captures; see route.h. */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
valid_name(const char *s, size_t n)
{
	if (n == 0 || n >= ROUTE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		    (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

int
route_compile(struct route_pattern *p, const char *pattern, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (pattern[0] == '\0') {
		snprintf(err, errlen, "empty pattern");
		return -1;
	}
	p->source = strdup(pattern);
	if (p->source == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char *s = p->source;
	for (;;) {
		const char *end = strchr(s, '/');
		size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
		if (p->nsegs == ROUTE_MAX_LEVELS) {
			snprintf(err, errlen, "more than %d levels", ROUTE_MAX_LEVELS);
			goto fail;
		}
		struct route_seg *g = &p->segs[p->nsegs++];
		g->text = s;
		g->len = len;
		if (len == 1 && s[0] == '+') {
			g->kind = ROUTE_ANY;
		} else if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
			const char *name = s + 1;
			size_t nlen = len - 2;
			g->kind = ROUTE_CAPTURE;
			if (nlen > 3 && memcmp(name + nlen - 3, "...", 3) == 0) {
				g->kind = ROUTE_CAPTURE_MULTI;
				nlen -= 3;
			}
			if (!valid_name(name, nlen)) {
				snprintf(err, errlen, "bad capture name in '%.*s'", (int)len, s);
				goto fail;
			}
			for (int i = 0; i < p->ncaptures; i++) {
				if (strlen(p->names[i]) == nlen && memcmp(p->names[i], name, nlen) == 0) {
					snprintf(err, errlen, "capture '%.*s' used twice", (int)nlen, name);
					goto fail;
				}
			}
			if (p->ncaptures == ROUTE_MAX_CAPTURES) {
				snprintf(err, errlen, "more than %d captures", ROUTE_MAX_CAPTURES);
				goto fail;
			}
			memcpy(p->names[p->ncaptures], name, nlen);
			p->names[p->ncaptures][nlen] = '\0';
			g->text = p->names[p->ncaptures];
			g->len = nlen;
			g->capture = p->ncaptures++;
		} else {
			for (size_t i = 0; i < len; i++) {
				if (s[i] == '+' || s[i] == '#' || s[i] == '{' || s[i] == '}') {
					snprintf(err, errlen, "unexpected '%c' in level '%.*s'", s[i],
					    (int)len, s);
					goto fail;
				}
			}
			g->kind = ROUTE_LITERAL;
		}
		if (end == NULL)
			break;
		s = end + 1;
	}
	int multi = 0;
	for (int i = 0; i < p->nsegs; i++)
		multi += p->segs[i].kind == ROUTE_CAPTURE_MULTI;
	if (multi > 1) {
		snprintf(err, errlen, "at most one {name...} capture");
		goto fail;
	}
	return 0;
fail:
	route_pattern_free(p);
	return -1;
}

void
route_pattern_free(struct route_pattern *p)
{
	free(p->source);
	p->source = NULL;
	p->nsegs = 0;
	p->ncaptures = 0;
}

/* Splits the topic into levels; returns the count or -1 when too many. */
static int
split(const char *topic, size_t len, struct route_capture *lv)
{
	int n = 0;
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || topic[i] == '/') {
			if (n == ROUTE_MAX_LEVELS * 2)
				return -1;
			lv[n].value = topic + start;
			lv[n].len = i - start;
			n++;
			start = i + 1;
		}
	}
	return n;
}

static bool
match_from(const struct route_pattern *p, int si, const struct route_capture *lv, int nlv,
    int li, struct route_match *m)
{
	for (; si < p->nsegs; si++, li++) {
		const struct route_seg *g = &p->segs[si];
		if (g->kind == ROUTE_CAPTURE_MULTI) {
			/* One or more levels, leaving enough for the segments after. */
			int after = p->nsegs - si - 1;
			int take = nlv - li - after;
			if (take < 1)
				return false;
			for (int t = 0; t < take; t++)
				if (lv[li + t].len == 0)
					return false;
			m->caps[g->capture].value = lv[li].value;
			m->caps[g->capture].len = (size_t)(lv[li + take - 1].value +
			    lv[li + take - 1].len - lv[li].value);
			li += take - 1;
			continue;
		}
		if (li >= nlv)
			return false;
		switch (g->kind) {
		case ROUTE_LITERAL:
			if (lv[li].len != g->len || memcmp(lv[li].value, g->text, g->len) != 0)
				return false;
			break;
		case ROUTE_ANY:
			break;
		case ROUTE_CAPTURE:
			if (lv[li].len == 0)
				return false;	/* an empty device id is no id */
			m->caps[g->capture] = lv[li];
			break;
		case ROUTE_CAPTURE_MULTI:
			break;
		}
	}
	return li == nlv;
}

bool
route_split(const char *topic, size_t topic_len, struct route_levels *l)
{
	l->n = split(topic, topic_len, l->lv);
	return l->n >= 0;
}

bool
route_matches_levels(const struct route_pattern *p, const struct route_levels *l,
    struct route_match *m)
{
	memset(m, 0, sizeof(*m));
	if (l->n < 0 || p->nsegs == 0)
		return false;
	return match_from(p, 0, l->lv, l->n, 0, m);
}

bool
route_matches(const struct route_pattern *p, const char *topic, size_t topic_len,
    struct route_match *m)
{
	struct route_levels l;

	route_split(topic, topic_len, &l);
	return route_matches_levels(p, &l, m);
}

const struct route_capture *
route_capture(const struct route_pattern *p, const struct route_match *m, const char *name)
{
	for (int i = 0; i < p->ncaptures; i++)
		if (strcmp(p->names[i], name) == 0)
			return &m->caps[i];
	return NULL;
}

int
route_filter(const struct route_pattern *p, char *out, size_t outlen)
{
	size_t len = 0;

	for (int i = 0; i < p->nsegs; i++) {
		const struct route_seg *g = &p->segs[i];
		int n;
		if (g->kind == ROUTE_CAPTURE_MULTI) {
			n = snprintf(out + len, outlen - len, "%s#", i ? "/" : "");
			return (size_t)n < outlen - len ? 0 : -1;
		}
		if (g->kind == ROUTE_LITERAL)
			n = snprintf(out + len, outlen - len, "%s%.*s", i ? "/" : "", (int)g->len,
			    g->text);
		else
			n = snprintf(out + len, outlen - len, "%s+", i ? "/" : "");
		if (n < 0 || (size_t)n >= outlen - len)
			return -1;
		len += (size_t)n;
	}
	return 0;
}

void
route_check_pattern(const char *pattern, void (*report)(void *ctx, const char *why), void *ctx)
{
	struct route_pattern rp;
	char err[160];

	if (route_compile(&rp, pattern, err, sizeof(err)) != 0)
		report(ctx, err);
	else
		route_pattern_free(&rp);
}
