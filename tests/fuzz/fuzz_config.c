/* Fuzz target: the configuration parser (config_load_stream). */
#include <stdio.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

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
	}
	config_free(cfg);
	config_errors_clear(&errs);
	return 0;
}
