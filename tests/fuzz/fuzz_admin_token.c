/* Fuzz target: the status page's token check (admin_token_ok) on any
 * Authorization header and query string. The first byte splits the input
 * into the token, the header and the query. The check never reads past
 * its strings, and a request carrying the token as it is, or percent-
 * encoded, always passes. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t cut1 = data[0] % size, cut2 = cut1 + (size - cut1) / 2;
	char *token = strndup((const char *)data + 1, cut1 > 0 ? cut1 - 1 : 0);
	char *auth = strndup((const char *)data + (cut1 > 0 ? cut1 : 1), cut2 - (cut1 > 0 ? cut1 : 1));
	char *query = strndup((const char *)data + cut2, size - cut2);

	if (token == NULL || auth == NULL || query == NULL)
		abort();
	(void)admin_token_ok(token, auth, query);
	(void)admin_token_ok(token, NULL, query);
	(void)admin_token_ok(token, auth, NULL);
	if (token[0] != '\0') {
		size_t n = strlen(token);
		char *bearer = malloc(n + 8), *q = malloc(n * 3 + 7);
		if (bearer == NULL || q == NULL)
			abort();
		snprintf(bearer, n + 8, "Bearer %s", token);
		strcpy(q, "token=");
		for (size_t i = 0; i < n; i++)
			sprintf(q + 6 + i * 3, "%%%02X", (unsigned char)token[i]);
		/* a token with leading or trailing blanks cannot go in a header */
		bool blank = token[0] == ' ' || token[n - 1] == ' ' || token[n - 1] == '\t';
		if (!blank && !admin_token_ok(token, bearer, NULL))
			abort();
		if (!admin_token_ok(token, NULL, q))
			abort();
		free(bearer);
		free(q);
	}
	free(token);
	free(auth);
	free(query);
	return 0;
}
