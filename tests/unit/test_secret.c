/* Unit tests for secret.c: where passwords come from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "secret.h"
#include "t.h"

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

int
main(void)
{
	char dir[] = "/tmp/gb-secret-XXXXXX";
	char path[256], big[SECRET_MAX + 10];
	char *s;

	log_set_fd(-1);
	if (mkdtemp(dir) == NULL)
		return 99;

	s = secret_load("inline", "/ignored", "t");
	T_STREQ(s, "inline");
	secret_free(s);

	s = secret_load("", "", "t");
	T_STREQ(s, "");
	secret_free(s);

	snprintf(path, sizeof(path), "%s/pw", dir);
	write_file(path, "hunter2\n");
	s = secret_load("", path, "t");
	T_STREQ(s, "hunter2");
	secret_free(s);

	/* Relative names come from systemd's credentials directory. */
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	s = secret_load(NULL, "pw", "t");
	T_STREQ(s, "hunter2");
	secret_free(s);
	unsetenv("CREDENTIALS_DIRECTORY");
	T_CHECK(secret_load(NULL, "pw", "t") == NULL);

	snprintf(path, sizeof(path), "%s/missing", dir);
	T_CHECK(secret_load("", path, "t") == NULL);

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(path, sizeof(path), "%s/big", dir);
	write_file(path, big);
	T_CHECK(secret_load("", path, "t") == NULL);

	snprintf(path, sizeof(path), "%s/pw", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/big", dir);
	unlink(path);
	rmdir(dir);
	return t_done();
}
