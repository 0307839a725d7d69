/* secret.c — passwords and tokens from files or systemd credentials. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* What resolve() logs when it gives no path; each a constant message. */
struct unresolved {
	const char *no_dir;	/* a relative name, no $CREDENTIALS_DIRECTORY */
	const char *too_long;	/* the path does not fit */
};

static const struct unresolved password_file = {
	"relative password file without CREDENTIALS_DIRECTORY", "password file path too long",
};
static const struct unresolved key_file = {
	"relative key file without CREDENTIALS_DIRECTORY", "key file path too long",
};

/* The one lookup of a secret's file name, as gridbridge.conf(5) says: an
 * absolute name as it is, a relative one in $CREDENTIALS_DIRECTORY (which
 * systemd's LoadCredential= fills), never relative to the working
 * directory. Returns `file` or `buf`, or NULL after logging why. */
static const char *
resolve(const char *file, char *buf, size_t len, const char *mod,
    const struct unresolved *say)
{
	if (file[0] == '/')
		return file;
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	if (dir == NULL || dir[0] == '\0') {
		log_error(mod, say->no_dir, "file=%s", file);
		return NULL;
	}
	if ((size_t)snprintf(buf, len, "%s/%s", dir, file) >= len) {
		log_error(mod, say->too_long, "file=%s", file);
		return NULL;
	}
	return buf;
}

/* Whether `path` names a file systemd put in $CREDENTIALS_DIRECTORY. */
static bool
is_credential(const char *path)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	size_t n = dir != NULL ? strlen(dir) : 0;

	while (n > 1 && dir[n - 1] == '/')
		n--;
	return n > 0 && strncmp(path, dir, n) == 0 && path[n] == '/' &&
	    strchr(path + n + 1, '/') == NULL;
}

/* Whether the daemon is in group `gid` (its own or a supplementary one). */
static bool
in_group(gid_t gid)
{
	gid_t groups[256];
	int n = getgroups(256, groups);

	if (gid == getegid())
		return true;
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/* The rules of secret_check_file(), on the file's status. */
static int
check_mode(const char *path, const struct stat *st, const char *mod)
{
	bool group_read = is_credential(path) || (st->st_uid == 0 && in_group(st->st_gid));
	mode_t refused = 0007 | (group_read ? 0030 : 0070);
	mode_t mode = st->st_mode & 07777;
	char fix[4200], octal[8];

	if ((mode & refused) == 0)
		return 0;
	snprintf(octal, sizeof(octal), "%04o", (unsigned)mode);
	snprintf(fix, sizeof(fix), "chmod %o %s", (unsigned)((mode & 0777 & ~refused) | 0400),
	    path);
	log_error(mod, "secret file readable by other users",
	    "file=%s mode=%s uid=%u gid=%u fix=%s", path, octal, (unsigned)st->st_uid,
	    (unsigned)st->st_gid, fix);
	return -1;
}

const char *
secret_key_file(const char *file, char *buf, size_t len, const char *mod)
{
	if (file[0] == '\0')
		return file;
	const char *path = resolve(file, buf, len, mod, &key_file);
	return path != NULL && secret_check_file(path, mod) == 0 ? path : NULL;
}

int
secret_check_file(const char *path, const char *mod)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = -1;

	if (fd < 0) {
		log_errno(LOG_LVL_ERROR, mod, "cannot open key file", "file=%s", path);
		return -1;
	}
	if (fstat(fd, &st) != 0)
		log_errno(LOG_LVL_ERROR, mod, "cannot stat key file", "file=%s", path);
	else
		rc = check_mode(path, &st, mod);
	close(fd);
	return rc;
}

char *
secret_load(const char *inline_value, const char *file, const char *mod)
{
	char pathbuf[4096];
	char *buf = NULL;
	int fd = -1;

	if (inline_value != NULL && inline_value[0] != '\0')
		return strdup(inline_value);
	if (file == NULL || file[0] == '\0')
		return strdup("");

	const char *path = resolve(file, pathbuf, sizeof(pathbuf), mod, &password_file);
	if (path == NULL)
		return NULL;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_errno(LOG_LVL_ERROR, mod, "cannot open password file", "file=%s", path);
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		log_errno(LOG_LVL_ERROR, mod, "cannot stat password file", "file=%s", path);
		goto fail;
	}
	if (check_mode(path, &st, mod) != 0)
		goto fail;
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
