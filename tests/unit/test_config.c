/* Unit tests for config.c: what an operator sees for good and bad files.
 *
 * usage: test_config CONF_EXAMPLE MAN_PAGE
 *   CONF_EXAMPLE  the shipped conf/gridbridge.conf
 *   MAN_PAGE      man/gridbridge.conf.5
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "decode.h"
#include "event_names.h"
#include "log.h"
#include "routing.h"
#include "t.h"

static struct config *
parse(const char *text, struct config_errors *errs)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	struct config *cfg = config_load_stream(f, "test.conf", errs);
	fclose(f);
	return cfg;
}

/* All errors as the operator reads them. */
static char *
errors_text(const struct config_errors *errs)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_errors_print(errs, f);
	fclose(f);
	return buf;
}

static char *
print_text(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print(cfg, f);
	fclose(f);
	return buf;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	int c;
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(m);
	fclose(f);
	return buf;
}

static int pending_count, applied_count;
static void
pending(const struct config_key *k, bool applied, void *ctx)
{
	(void)ctx;
	if (!applied && strcmp(k->name, "host") == 0)
		pending_count++;
	if (applied)
		applied_count++;
}

/* The example file documents key k of its section with its default, as a
 * `name = default` line inside `[section]`, with a comment line above. */
static int
documented(const char *conf, const struct config_key *k)
{
	char header[128], want[512];
	if (k->instanced) {
		/* A [section NAME] example with the key and a comment above, or
		 * one commented out (#[section NAME], #key = ...): sections that
		 * would act if shipped live (a household, a device) are shown so. */
		for (int commented = 0; commented < 2; commented++) {
			const char *mark = commented ? "#" : "";
			snprintf(header, sizeof(header), "\n%s[%s ", mark, k->section);
			const char *sec = strstr(conf, header);
			snprintf(want, sizeof(want), "\n%s%s =", mark, k->name);
			const char *hit = sec != NULL ? strstr(sec, want) : NULL;
			if (hit == NULL)
				continue;
			const char *prev = hit;
			while (prev > conf && prev[-1] != '\n')
				prev--;
			if (prev[0] == '#' || prev[0] == ';')
				return 1;
		}
		return 0;
	}
	snprintf(header, sizeof(header), "\n[%s]\n", k->section);
	const char *sec = strstr(conf, header);
	if (sec == NULL)
		return 0;
	const char *end = strstr(sec + 1, "\n[");
	snprintf(want, sizeof(want), "\n%s =%s%s\n", k->name, k->def[0] ? " " : "", k->def);
	const char *hit = strstr(sec, want);
	if (hit == NULL || (end != NULL && hit > end))
		return 0;
	/* the line before is a comment: `hit` is the newline ending it */
	const char *prev = hit;
	while (prev > conf && prev[-1] != '\n')
		prev--;
	return prev[0] == '#' || prev[0] == ';';
}

/* True when `name` is a word of the list in s[0..n): after a blank, before
 * a blank or punctuation. */
static bool
listed(const char *s, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = strstr(s, name); p != NULL && p + len <= s + n;
	    p = strstr(p + 1, name))
		if (p > s && (p[-1] == ' ' || p[-1] == '\n') && p[len] != '\0' &&
		    strchr(" ,;.)\n", p[len]) != NULL)
			return true;
	return false;
}

/* The text of `s` from `from` to the next `to` (or the end), or NULL. */
static const char *
between(const char *s, const char *from, const char *to, size_t *n)
{
	const char *a = s != NULL ? strstr(s, from) : NULL;
	if (a == NULL)
		return NULL;
	const char *b = strstr(a + strlen(from), to);
	*n = b != NULL ? (size_t)(b - a) : strlen(a);
	return a;
}

/* Every decoder and device class is named where an operator looks for
 * them: the [route] keys' help, the example's comment on [route NAME] and
 * the man page's [route NAME]. */
static void
check_route_lists(const char *conf, const char *man)
{
	const char *decoder_help = "", *class_help = "";
	size_t nconf = 0, nman = 0;
	const char *conf_route = between(conf, "Keys of a [route NAME] section", "\n[route ",
	    &nconf);
	const char *man_route = between(man, "\n.Ss [route NAME]", "\n.Ss ", &nman);
	char what[160];

	T_CHECK(conf_route != NULL && man_route != NULL);
	if (conf_route == NULL || man_route == NULL)
		return;
	for (size_t i = 0; i < config_nkeys; i++) {
		if (strcmp(config_keys[i].section, "route") != 0)
			continue;
		if (strcmp(config_keys[i].name, "decoder") == 0)
			decoder_help = config_keys[i].help;
		else if (strcmp(config_keys[i].name, "class") == 0)
			class_help = config_keys[i].help;
	}
	for (int d = 0; d < DECODER_COUNT; d++) {
		const char *name = decoder_name((enum decoder_id)d);
		snprintf(what, sizeof(what), "decoder %s in the help, the example and the man page",
		    name);
		t_report(listed(decoder_help, strlen(decoder_help), name) &&
		    listed(conf_route, nconf, name) && listed(man_route, nman, name), what,
		    __FILE__, __LINE__);
	}
	const ProtobufCEnumDescriptor *cd = &gridbridge__v1__device_class__descriptor;
	for (unsigned i = 0; i < cd->n_values; i++) {
		if (cd->values[i].value == 0)
			continue;
		const char *name = event_class_name((Gridbridge__V1__DeviceClass)cd->values[i].value);
		snprintf(what, sizeof(what), "class %s in the help, the example and the man page",
		    name);
		t_report(listed(class_help, strlen(class_help), name) &&
		    listed(conf_route, nconf, name) && listed(man_route, nman, name), what,
		    __FILE__, __LINE__);
	}
}

int
main(int argc, char **argv)
{
	struct config_errors errs = { 0 };
	struct config *cfg;
	char *s;

	log_set_fd(-1);
	routing_register_checks();
	if (argc != 3) {
		fprintf(stderr, "usage: test_config CONF_EXAMPLE MAN_PAGE\n");
		return 99;
	}

	/* Defaults. */
	cfg = config_defaults();
	T_INTEQ(cfg->log_level, LOG_LVL_INFO);
	T_INTEQ(cfg->mqtt_port, 1883);
	T_STREQ(cfg->mqtt_client_id, "gridbridge");
	T_STREQ(cfg->state_dir, "/var/lib/gridbridge");
	config_free(cfg);
	config_free(NULL);

	/* A good file; comments, blanks, indentation, inline comments. */
	cfg = parse("; comment\n"
	    "# another\n"
	    "[daemon]\n"
	    "log_level = debug\n"
	    "  state_dir = /tmp/gb   ; inline comment\n"
	    "\n"
	    "[mqtt]\n"
	    "port=8883\n"
	    "password = s3cret\n"
	    "[store]\n"
	    "password_file = store-password\n", &errs);
	T_CHECK(cfg != NULL);
	T_INTEQ(errs.n, 0);
	if (cfg != NULL) {
		T_INTEQ(cfg->log_level, LOG_LVL_DEBUG);
		T_STREQ(cfg->state_dir, "/tmp/gb");
		T_INTEQ(cfg->mqtt_port, 8883);
		T_STREQ(cfg->mqtt_password, "s3cret");
		T_STREQ(cfg->store_password_file, "store-password");
		/* -nv: every key, secrets redacted, unset secrets empty. */
		s = print_text(cfg);
		T_CHECK(strstr(s, "[mqtt]\nhost = 127.0.0.1\nport = 8883\n") != NULL);
		T_CHECK(strstr(s, "password = <redacted>\n") != NULL);
		T_CHECK(strstr(s, "s3cret") == NULL);
		T_CHECK(strstr(s, "\n[store]\n") != NULL);
		T_CHECK(strstr(s, "password_file = store-password\n") != NULL);
		int keys = 0;
		for (char *p = s; (p = strstr(p, " =")) != NULL; p++)
			keys++;
		size_t plain = 0;
		for (size_t i = 0; i < config_nkeys; i++)
			plain += !config_keys[i].instanced;
		T_INTEQ(keys, plain);
		free(s);
	}
	config_free(cfg);
	config_errors_clear(&errs);

	/* Every kind of mistake, all reported, with their lines. */
	char longline[400];
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "host = ", 7);
	longline[sizeof(longline) - 2] = '\n';
	longline[sizeof(longline) - 1] = '\0';
	char bad[1024];
	snprintf(bad, sizeof(bad),
	    "orphan = 1\n"			/* 1 */
	    "[daemon]\n"			/* 2 */
	    "log_level = loud\n"		/* 3 */
	    "nosuchkey = 1\n"			/* 4 */
	    "[mqtt]\n"				/* 5 */
	    "port = abc\n"			/* 6 */
	    "keepalive = 70000\n"		/* 7 */
	    "port = 99999\n"			/* 8: duplicate (and out of range) */
	    "just some words\n"			/* 9 */
	    "[nosuch]\n"			/* 10 */
	    "whatever = 1\n"			/* 11: inside the unknown section: quiet */
	    "[store\n"				/* 12 */
	    "[store]\n"				/* 13 */
	    "%s"				/* 14 */
	    "port = 5432junk\n"			/* 15 */
	    "password = x\n"			/* 16 */
	    "password_file = y\n"		/* 17 */
	    "dbname =\n",			/* 18 */
	    longline);
	cfg = parse(bad, &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s,
	    "test.conf:1: key 'orphan' outside of any section\n"
	    "test.conf:3: log_level: 'loud' is not one of: debug, info, notice, warning, warn, error\n"
	    "test.conf:4: unknown key 'nosuchkey' in [daemon]\n"
	    "test.conf:6: port: 'abc' is not an integer\n"
	    "test.conf:7: keepalive: 70000 is out of range 5..3600\n"
	    "test.conf:8: duplicate key 'port' in [mqtt] (first set on line 6)\n"
	    "test.conf:9: expected 'key = value'\n"
	    "test.conf:10: unknown section [nosuch]\n"
	    "test.conf:12: expected ']' after section name\n"
	    "test.conf:14: line longer than 198 characters\n"
	    "test.conf:15: port: '5432junk' is not an integer\n"
	    "test.conf:18: dbname: must not be empty\n"
	    "test.conf:17: [store] password and password_file are mutually exclusive\n");
	free(s);
	config_errors_clear(&errs);

	/* Routes: named sections, in file order, checked with their lines. */
	cfg = parse("[route gate]\n"
	    "pattern = sac/{community}/access/{device}/event\n"
	    "decoder = hikvision\n"
	    "class = access_gate\n"
	    "[route door]\n"
	    "pattern = zigbee2mqtt/{device...}\n"
	    "decoder = z2m_device\n"
	    "class = door_sensor\n"
	    "community = c-7\n"
	    "timezone = +05:30\n"
	    "utc_is_local = false\n", &errs);
	T_CHECK(cfg != NULL);
	if (cfg != NULL) {
		T_INTEQ(cfg->nroutes, 2);
		T_STREQ(cfg->routes[0].name, "gate");
		T_STREQ(cfg->routes[0].timezone, "+08:00");
		T_CHECK(cfg->routes[0].utc_is_local);
		T_STREQ(cfg->routes[1].name, "door");
		T_STREQ(cfg->routes[1].community, "c-7");
		T_CHECK(!cfg->routes[1].utc_is_local);
		s = print_text(cfg);
		T_CHECK(strstr(s, "\n[route gate]\npattern = sac/{community}/access/{device}/event\n"
		    "decoder = hikvision\nclass = access_gate\ncommunity =\ntimezone = +08:00\n"
		    "heartbeat_timeout = -1\nutc_is_local = true\nrate_limit = -1\nrate_burst = -1\n\n"
		    "[route door]\n") != NULL);
		free(s);
	}
	config_free(cfg);
	config_errors_clear(&errs);

	cfg = parse("[route a]\n"				/* 1 */
	    "pattern = x/{}\n"				/* 2 */
	    "decoder = nosuch\n"				/* 3 */
	    "class = spaceship\n"				/* 4 */
	    "timezone = Asia/Shanghai\n"			/* 5 */
	    "colour = red\n"					/* 6 */
	    "[route b]\n"					/* 7 */
	    "decoder = dahua\n"				/* 8 */
	    "[route a]\n"					/* 9 */
	    "[route]\n"					/* 10 */
	    "[rout x]\n", &errs);				/* 11 */
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s,
	    "test.conf:6: unknown key 'colour' in [route a]\n"
	    "test.conf:2: [route a] pattern: bad capture name in '{}'\n"
	    "test.conf:3: [route a] decoder: unknown decoder 'nosuch'\n"
	    "test.conf:4: [route a] class: unknown device class 'spaceship'\n"
	    "test.conf:5: [route a] timezone: 'Asia/Shanghai' is not an offset like +08:00\n"
	    "test.conf:7: [route b] pattern is required\n"
	    "test.conf:7: [route b] class is required\n"
	    "test.conf:9: duplicate [route a] (first on line 1)\n"
	    "test.conf:10: [route] needs a name: [route NAME]\n"
	    "test.conf:11: unknown section [rout x]\n");
	free(s);
	config_errors_clear(&errs);

	/* [store] TLS: verification needs a CA, a client certificate its key. */
	cfg = parse("[store]\n"
	    "sslmode = verify-full\n"
	    "sslrootcert = /etc/gridbridge/db-ca.pem\n"
	    "sslcert = /etc/gridbridge/db.pem\n"
	    "sslkey = db.key\n", &errs);
	T_CHECK(cfg != NULL);
	if (cfg != NULL) {
		T_INTEQ(cfg->store_sslmode, SSLMODE_VERIFY_FULL);
		T_STREQ(config_enum_name("store", "sslmode", cfg->store_sslmode), "verify-full");
		T_STREQ(cfg->store_sslkey, "db.key");
	}
	config_free(cfg);
	config_errors_clear(&errs);
	cfg = config_defaults();
	T_STREQ(config_enum_name("store", "sslmode", cfg->store_sslmode), "prefer");
	T_CHECK(config_enum_name("store", "host", 0) == NULL);
	config_free(cfg);
	cfg = parse("[store]\nsslmode = verify-ca\nsslkey = k\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:2: [store] sslmode = verify-ca needs sslrootcert\n"
	    "test.conf:3: [store] sslcert and sslkey go together\n");
	free(s);
	config_errors_clear(&errs);
	cfg = parse("[store]\nsslmode = on\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:2: sslmode: 'on' is not one of: disable, allow, prefer, require, "
	    "verify-ca, verify-full\n");
	free(s);
	config_errors_clear(&errs);

	/* Relative state_dir is refused. */
	cfg = parse("[daemon]\nstate_dir = var/lib\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:2: state_dir: must be an absolute path\n");
	free(s);
	config_errors_clear(&errs);

	/* A missing file is one clear error. */
	cfg = config_load("/nonexistent/gridbridge.conf", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "/nonexistent/gridbridge.conf: cannot open: No such file or directory\n");
	free(s);
	config_errors_clear(&errs);

	/* Reload: reloadable keys move over, the others wait for a restart. */
	struct config *cur = parse("[daemon]\nlog_level = info\n[mqtt]\nhost = 10.0.0.1\n", &errs);
	struct config *next = parse("[daemon]\nlog_level = error\nlog_rate_burst = 5\n"
	    "[mqtt]\nhost = 10.0.0.2\n", &errs);
	T_CHECK(cur != NULL && next != NULL);
	if (cur != NULL && next != NULL) {
		config_apply_reload(cur, next, pending, NULL);
		T_INTEQ(cur->log_level, LOG_LVL_ERROR);
		T_INTEQ(cur->log_rate_burst, 5);
		T_STREQ(cur->mqtt_host, "10.0.0.1");
		T_INTEQ(pending_count, 1);
		T_INTEQ(applied_count, 2);
	}
	config_free(cur);
	config_free(next);
	config_errors_clear(&errs);

	/* Every key a SIGHUP applies has a stage applying it, and only those:
	 * a reloadable key nobody applies would be accepted and then ignored. */
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char what[160];
		snprintf(what, sizeof(what), "[%s] %s: %s", k->section, k->name, k->reloadable ?
		    "reloadable, so a stage applies it" : "not reloadable, so no stage applies it");
		t_report(k->reloadable == (k->applied_by != CONFIG_RESTART) &&
		    (!k->reloadable || !k->instanced), what, __FILE__, __LINE__);
	}
	/* The log's apply function reads its keys. */
	cfg = parse("[daemon]\nlog_level = debug\n", &errs);
	T_CHECK(cfg != NULL);
	if (cfg != NULL) {
		log_apply(cfg);
		T_INTEQ(log_get_level(), LOG_LVL_DEBUG);
		cfg->log_level = LOG_LVL_WARN;
		log_apply(cfg);
		T_INTEQ(log_get_level(), LOG_LVL_WARN);
	}
	config_free(cfg);
	config_errors_clear(&errs);

	/* [mqtt] share_group: each filter subscribed as $share/<group>/<filter>;
	 * its former name still works; a group with / + or # is refused. */
	cfg = parse("[mqtt]\nsubscribe = sac/#\nsubscribe = zigbee2mqtt/+/x\n"
	    "share_group = city\n", &errs);
	T_CHECK(cfg != NULL);
	if (cfg != NULL) {
		char **subs = config_subscriptions(cfg);
		T_STREQ(subs[0], "$share/city/sac/#");
		T_STREQ(subs[1], "$share/city/zigbee2mqtt/+/x");
		T_CHECK(subs[2] == NULL);
		config_subscriptions_free(subs);
	}
	config_free(cfg);
	config_errors_clear(&errs);
	cfg = parse("[mqtt]\nshared_group = old\n", &errs);
	T_CHECK(cfg != NULL);
	if (cfg != NULL) {
		T_STREQ(config_share_group(cfg), "old");
		char **subs = config_subscriptions(cfg);
		T_STREQ(subs[0], "$share/old/#");
		config_subscriptions_free(subs);
	}
	config_free(cfg);
	config_errors_clear(&errs);
	cfg = config_defaults();
	{
		char **subs = config_subscriptions(cfg);
		T_STREQ(subs[0], "#");
		T_CHECK(subs[1] == NULL);
		config_subscriptions_free(subs);
	}
	config_free(cfg);
	cfg = parse("[mqtt]\nshare_group = a/b\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:2: [mqtt] share_group: a group name has no '/', '+' or '#'\n");
	free(s);
	config_errors_clear(&errs);
	cfg = parse("[mqtt]\nshare_group = g+\nshared_group = g\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:3: [mqtt] share_group and shared_group are mutually exclusive\n"
	    "test.conf:2: [mqtt] share_group: a group name has no '/', '+' or '#'\n");
	free(s);
	config_errors_clear(&errs);
	cfg = parse("[mqtt]\nshare_group = 01234567890123456789012345678901234567890123456789"
	    "01234567890123456789\n", &errs);
	T_CHECK(cfg == NULL);
	T_INTEQ(errs.n, 1);
	config_errors_clear(&errs);

	/* [mqtt] client_id: %h, %i and %% expanded, at most 64 bytes. */
	{
		char out[CONFIG_CLIENT_ID_MAX + 1], why[256];
		T_INTEQ(config_client_id_expand("gb-%h-%i-100%%", "host1", "a", out, sizeof(out),
		    why, sizeof(why)), 0);
		T_STREQ(out, "gb-host1-a-100%");
		T_INTEQ(config_client_id_expand("gridbridge", NULL, NULL, out, sizeof(out), why,
		    sizeof(why)), 0);
		T_STREQ(out, "gridbridge");
		T_INTEQ(config_client_id_expand("gb-%i", "h", NULL, out, sizeof(out), why,
		    sizeof(why)), -1);
		T_CHECK(strstr(why, "-i NAME") != NULL);
		T_INTEQ(config_client_id_expand("gb-%x", "h", "i", out, sizeof(out), why,
		    sizeof(why)), -1);
		T_STREQ(why, "unknown '%x': only %h, %i and %% are expanded");
		T_INTEQ(config_client_id_expand("gb-%", "h", "i", out, sizeof(out), why,
		    sizeof(why)), -1);
		char host[80];
		memset(host, 'h', sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		host[61] = '\0';	/* "gb-" + 61 = 64: the most */
		T_INTEQ(config_client_id_expand("gb-%h", host, NULL, out, sizeof(out), why,
		    sizeof(why)), 0);
		T_INTEQ(strlen(out), 64);
		host[61] = 'h';
		host[62] = '\0';
		T_INTEQ(config_client_id_expand("gb-%h", host, NULL, out, sizeof(out), why,
		    sizeof(why)), -1);
		T_STREQ(why, "65 bytes once expanded, more than the 64 a client id may have");
		T_STREQ(out, "");
		T_INTEQ(config_instance_check("north-1.a_b", why, sizeof(why)), 0);
		T_INTEQ(config_instance_check("", why, sizeof(why)), -1);
		T_INTEQ(config_instance_check("a/b", why, sizeof(why)), -1);
		T_INTEQ(config_instance_check("a b", why, sizeof(why)), -1);
		T_INTEQ(config_instance_check("0123456789012345678901234567890123", why,
		    sizeof(why)), -1);
	}
	cfg = parse("[mqtt]\nclient_id = gb-%h-%i\n", &errs);
	T_CHECK(cfg != NULL);
	config_free(cfg);
	config_errors_clear(&errs);
	cfg = parse("[mqtt]\nclient_id = gb-%q\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:2: [mqtt] client_id: unknown '%q': only %h, %i and %% are "
	    "expanded\n");
	free(s);
	config_errors_clear(&errs);
	cfg = parse("[mqtt]\nclient_id = 0123456789012345678901234567890123456789"
	    "012345678901234567890123456789\n", &errs);
	T_CHECK(cfg == NULL);
	s = errors_text(&errs);
	T_STREQ(s, "test.conf:2: [mqtt] client_id: longer than 64 bytes even with "
	    "one-character names\n");
	free(s);
	config_errors_clear(&errs);

	/* The shipped example passes and documents every key with its default. */
	cfg = config_load(argv[1], &errs);
	T_CHECK(cfg != NULL);
	s = errors_text(&errs);
	T_STREQ(s, "");
	free(s);
	config_errors_clear(&errs);
	config_free(cfg);
	char *conf = slurp(argv[1]);
	char *man = slurp(argv[2]);
	T_CHECK(conf != NULL && man != NULL);
	for (size_t i = 0; conf != NULL && man != NULL && i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char what[160], mark[160];
		snprintf(what, sizeof(what), "conf documents [%s] %s with its default",
		    k->section, k->name);
		t_report(documented(conf, k), what, __FILE__, __LINE__);
		snprintf(mark, sizeof(mark), "\n.It Cm %s", k->name);
		snprintf(what, sizeof(what), "man page documents [%s] %s", k->section, k->name);
		t_report(strstr(man, mark) != NULL, what, __FILE__, __LINE__);
	}
	check_route_lists(conf, man);
	free(conf);
	free(man);
	return t_done();
}
