/* Fuzz target: the configuration parser (config_load_stream), and for a
 * configuration it accepts, the forwarding rules built from it (their
 * comma-separated lists) applied to one event. */
#include <stdio.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "rules.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = { 0 };
	FILE *f;

	log_set_fd(-1);
	if (size == 0)
		return 0;
	f = fmemopen((void *)data, size, "r");
	if (f == NULL)
		return 0;
	struct config *cfg = config_load_stream(f, "fuzz.conf", &errs);
	fclose(f);
	if (cfg != NULL) {
		FILE *out = fopen("/dev/null", "w");
		config_print(cfg, out);
		fclose(out);
		struct rules *r = rules_build(cfg);
		struct rule_match m[64];
		struct rule_event e = { "camera", "camera_alarm", "critical", "c-1", "camera" };
		if (rules_max_targets(r) <= sizeof(m) / sizeof(m[0]))
			(void)rules_select(r, &e, m);
		rules_free(r);
	}
	config_free(cfg);
	config_errors_clear(&errs);
	return 0;
}
