/* Fuzz target: the configuration parser (config_load_stream) with the
 * stages' checks registered, and for a configuration it accepts, the
 * routes and forwarding rules built from it: whatever the checks let
 * through must build (abort() otherwise), and the rules' comma-separated
 * lists are applied to one event. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "routing.h"
#include "rules.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = { 0 };
	FILE *f;

	log_set_fd(-1);
	routing_register_checks();
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
		struct route *routes;
		size_t nroutes;
		if (routes_build(cfg, &routes, &nroutes) != 0 || nroutes != cfg->nroutes)
			abort();	/* accepted, yet its routes cannot be built */
		routes_free(routes, nroutes);
		struct rules *r = rules_build(cfg);
		if (rules_count(r) != cfg->nrules)
			abort();
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
