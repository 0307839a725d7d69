/* Unit tests for rules.c: which events go to which target, at what priority. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "routing.h"
#include "rules.h"
#include "t.h"

static struct config *
load(const char *text)
{
	struct config_errors errs = { 0 };
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	struct config *cfg = config_load_stream(f, "rules.conf", &errs);
	fclose(f);
	if (cfg == NULL)
		config_errors_print(&errs, stdout);
	config_errors_clear(&errs);
	return cfg;
}

static size_t
nerrors(const char *text, const char *want)
{
	struct config_errors errs = { 0 };
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	struct config *cfg = config_load_stream(f, "rules.conf", &errs);
	fclose(f);
	size_t n = errs.n, hits = 0;
	for (size_t i = 0; i < errs.n; i++)
		if (strstr(errs.v[i].message, want) != NULL)
			hits++;
	config_errors_clear(&errs);
	config_free(cfg);
	return n == 1 ? hits : 0;
}

static const char conf[] =
    "[forward.target police]\n"
    "url = https://platform.example/events\n"
    "[forward.target archive]\n"
    "url = https://archive.example/events\n"
    "[forward.rule throwing]\n"
    "target = police\n"
    "priority = 9\n"
    "class = camera\n"
    "severity = critical\n"
    "[forward.rule alarms]\n"
    "target = police\n"
    "priority = 7\n"
    "event_type = camera_alarm\n"
    "[forward.rule passages]\n"
    "target = police\n"
    "priority = 3\n"
    "event_type = person_passage ,vehicle_passage\n"
    "[forward.rule one-community]\n"
    "target = archive\n"
    "priority = 1\n"
    "community = c-1, c-2\n"
    "route = access\n";

int
main(void)
{
	routing_register_checks();
	struct config *cfg = load(conf);
	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return t_done();
	struct rules *r = rules_build(cfg);
	struct rule_match m[4];
	T_INTEQ(rules_count(r), 4);
	T_INTEQ(rules_max_targets(r), 2);

	/* Two rules choose police for a throwing alarm: once, at 9. */
	struct rule_event throwing = { "camera", "camera_alarm", "critical", "c-9", "camera" };
	T_INTEQ(rules_select(r, &throwing, m), 1);
	T_STREQ(m[0].target, "police");
	T_INTEQ(m[0].priority, 9);

	struct rule_event intrusion = { "camera", "camera_alarm", "warning", "c-9", "camera" };
	T_INTEQ(rules_select(r, &intrusion, m), 1);
	T_INTEQ(m[0].priority, 7);

	/* A passage in c-2 through the access route goes to both targets. */
	struct rule_event passage = { "access_gate", "person_passage", "info", "c-2", "access" };
	T_INTEQ(rules_select(r, &passage, m), 2);
	T_STREQ(m[0].target, "police");
	T_INTEQ(m[0].priority, 3);
	T_STREQ(m[1].target, "archive");
	T_INTEQ(m[1].priority, 1);

	/* Every criterion must hold: c-3 is not in the archive's list. */
	passage.community = "c-3";
	T_INTEQ(rules_select(r, &passage, m), 1);

	/* Nothing selects a heartbeat. */
	struct rule_event beat = { "access_gate", "device_heartbeat", "info", "c-1", "vehicle" };
	T_INTEQ(rules_select(r, &beat, m), 0);
	/* A prefix of a name is not the name. */
	struct rule_event partial = { "camer", "camera_alar", "critical", "c-1", "camera" };
	T_INTEQ(rules_select(r, &partial, m), 0);
	rules_free(r);
	config_free(cfg);

	/* As many targets as rules (the target list is freed whole). */
	cfg = load("[forward.target a]\nurl = https://a/\n[forward.target b]\nurl = https://b/\n"
	    "[forward.rule ra]\ntarget = a\n[forward.rule rb]\ntarget = b\npriority = 8\n");
	r = rules_build(cfg);
	T_INTEQ(rules_select(r, &beat, m), 2);
	T_STREQ(m[1].target, "b");
	T_INTEQ(m[1].priority, 8);
	rules_free(r);
	config_free(cfg);

	/* No rules: nothing is forwarded. */
	cfg = load("[daemon]\nlog_level = info\n");
	r = rules_build(cfg);
	T_INTEQ(rules_select(r, &throwing, m), 0);
	rules_free(r);
	config_free(cfg);

	/* Mistakes are caught when the file is loaded. */
	T_INTEQ(nerrors("[forward.rule x]\npriority = 1\n", "target is required"), 1);
	T_INTEQ(nerrors("[forward.rule x]\ntarget = nosuch\n", "no [forward.target nosuch]"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\n[forward.rule x]\ntarget = t\n"
	    "event_type = person_passage door_open\n", "unknown name"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\n[forward.rule x]\ntarget = t\n"
	    "severity = CRITICAL\n", "unknown name 'CRITICAL'"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\n[forward.rule x]\ntarget = t\n"
	    "class = lift\n", "unknown name 'lift'"), 1);
	T_INTEQ(nerrors("[forward.target t]\n", "url is required"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = ftp://a/\n", "must start with https://"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\ncert_file = /c.pem\n",
	    "cert_file and key_file go together"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\nretry_base_ms = 5000\n"
	    "retry_cap_ms = 1000\n", "retry_cap_ms is less than retry_base_ms"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\n[forward.target t]\n"
	    "url = https://b/\n", "duplicate [forward.target t]"), 1);
	T_INTEQ(nerrors("[forward.target t]\nurl = https://a/\nformat = xml\n", "format"), 1);
	return t_done();
}
