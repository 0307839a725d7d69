/* secret.c — passwords and tokens from files or systemd credentials. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

char *
secret_load(const char *inline_value, const char *file, const char *mod)
{
	char path[4096];
	char *buf = NULL;
	int fd = -1;

	if (inline_value != NULL && inline_value[0] != '\0')
		return strdup(inline_value);
	if (file == NULL || file[0] == '\0')
		return strdup("");

	if (file[0] != '/') {
		const char *dir = getenv("CREDENTIALS_DIRECTORY");
		if (dir == NULL || dir[0] == '\0') {
			log_error(mod, "relative password file without CREDENTIALS_DIRECTORY",
			    "file=%s", file);
			return NULL;
		}
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path)) {
			log_error(mod, "password file path too long", "file=%s", file);
			return NULL;
		}
	} else {
		snprintf(path, sizeof(path), "%s", file);
	}

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_errno(LOG_LVL_ERROR, mod, "cannot open password file", "file=%s", path);
		return NULL;
	}
	buf = calloc(1, SECRET_MAX + 2);
	if (buf == NULL)
		goto fail;
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, SECRET_MAX + 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_errno(LOG_LVL_ERROR, mod, "cannot read password file", "file=%s", path);
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > SECRET_MAX) {
			log_error(mod, "password file too large", "file=%s max=%d", path, SECRET_MAX);
			goto fail;
		}
	}
	close(fd);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		log_error(mod, "password file contains a NUL byte", "file=%s", path);
		secret_free(buf);
		return NULL;
	}
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	secret_free(buf);
	return NULL;
}

void
secret_free(char *secret)
{
	if (secret == NULL)
		return;
	/* volatile so the wipe is not optimised away */
	for (volatile char *p = secret; *p != '\0'; p++)
		*p = '\0';
	free(secret);
}
