/* Unit tests for secret.c: where passwords come from, and who else may
 * read them. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "secret.h"
#include "t.h"

/* Writes `text` to `path` with `mode` (exactly, whatever the umask). */
static void
write_mode(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	if (chmod(path, mode) != 0)
		abort();
}

static void
write_file(const char *path, const char *text)
{
	write_mode(path, text, 0600);
}

/* What was logged since the last call. */
static char logbuf[8192];
static int logfd = -1;
static const char *
logged(void)
{
	off_t n = lseek(logfd, 0, SEEK_CUR);
	ssize_t got = pread(logfd, logbuf, n < (off_t)sizeof(logbuf) ? (size_t)n :
	    sizeof(logbuf) - 1, 0);
	logbuf[got > 0 ? got : 0] = '\0';
	if (ftruncate(logfd, 0) != 0 || lseek(logfd, 0, SEEK_SET) != 0)
		abort();
	return logbuf;
}

/* Who else may read a secret file. */
static void
test_modes(const char *dir)
{
	char path[256], want[512];
	char *s;

	snprintf(path, sizeof(path), "%s/mode-pw", dir);

	/* World-readable: refused, with the chmod that fixes it. */
	write_mode(path, "hunter2\n", 0644);
	logged();
	T_CHECK(secret_load(NULL, path, "t") == NULL);
	/* (a root-owned file of our group may stay readable by the group) */
	snprintf(want, sizeof(want), "fix=\"chmod %s %s\"", geteuid() == 0 ? "640" : "600",
	    path);
	T_CHECK(strstr(logged(), want) != NULL);
	T_CHECK(secret_check_file(path, "t") == -1);
	T_CHECK(strstr(logged(), "msg=\"secret file readable by other users\"") != NULL);

	/* Any access for others, even without read for the group. */
	write_mode(path, "hunter2\n", 0604);
	T_CHECK(secret_load(NULL, path, "t") == NULL);
	T_CHECK(strstr(logged(), "mode=0604") != NULL);

	/* Owner only: fine, 0400 as systemd makes credentials too. */
	write_mode(path, "hunter2\n", 0600);
	s = secret_load(NULL, path, "t");
	T_STREQ(s, "hunter2");
	secret_free(s);
	write_mode(path, "hunter2\n", 0400);
	T_INTEQ(secret_check_file(path, "t"), 0);
	T_STREQ(logged(), "");

	if (geteuid() != 0) {
		printf("# skipped: ownership cases need root\n");
		return;
	}
	/* Group read: only for a root-owned file in our own group (an
	 * administrator sharing it with the service: root:gridbridge 0640). */
	write_mode(path, "hunter2\n", 0640);
	T_INTEQ(chown(path, 0, getegid()), 0);
	T_INTEQ(secret_check_file(path, "t"), 0);
	T_INTEQ(chown(path, 0, 65534), 0);		/* another group */
	T_CHECK(secret_check_file(path, "t") == -1);
	snprintf(want, sizeof(want), "fix=\"chmod 600 %s\"", path);
	T_CHECK(strstr(logged(), want) != NULL);
	T_INTEQ(chown(path, 65534, getegid()), 0);	/* not root's */
	T_CHECK(secret_check_file(path, "t") == -1);
	logged();
	/* Group write is refused even then; the fix keeps the group's read. */
	write_mode(path, "hunter2\n", 0660);
	T_INTEQ(chown(path, 0, getegid()), 0);
	T_CHECK(secret_check_file(path, "t") == -1);
	snprintf(want, sizeof(want), "fix=\"chmod 640 %s\"", path);
	T_CHECK(strstr(logged(), want) != NULL);

	/* In $CREDENTIALS_DIRECTORY the group bits may be systemd's ACL mask
	 * (0440, owned by root or, under PrivateUsers=, by nobody): fine;
	 * others still may not read. */
	snprintf(path, sizeof(path), "%s/cred", dir);
	write_mode(path, "hunter2\n", 0440);
	T_INTEQ(chown(path, 65534, 65534), 0);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	s = secret_load(NULL, "cred", "t");
	T_STREQ(s, "hunter2");
	secret_free(s);
	T_INTEQ(secret_check_file(path, "t"), 0);
	T_INTEQ(chmod(path, 0444), 0);
	T_CHECK(secret_load(NULL, "cred", "t") == NULL);
	T_INTEQ(chmod(path, 0440), 0);
	unsetenv("CREDENTIALS_DIRECTORY");
	T_CHECK(secret_check_file(path, "t") == -1);	/* not a credential now */
	unlink(path);
	logged();

	/* A key file that is not there is an error too. */
	snprintf(path, sizeof(path), "%s/no-such-key", dir);
	T_CHECK(secret_check_file(path, "t") == -1);
	T_CHECK(strstr(logged(), "msg=\"cannot open key file\"") != NULL);
	snprintf(path, sizeof(path), "%s/mode-pw", dir);
	unlink(path);
}

/* Key file names: resolved as password file names are, then checked. */
static void
test_key_file(const char *dir)
{
	char path[256], buf[512], tiny[8];
	const char *k;

	snprintf(path, sizeof(path), "%s/key", dir);
	write_mode(path, "KEY\n", 0600);
	logged();

	k = secret_key_file("", buf, sizeof(buf), "t");
	T_STREQ(k, "");
	k = secret_key_file(path, buf, sizeof(buf), "t");
	T_STREQ(k, path);
	T_STREQ(logged(), "");

	/* a relative name only ever means a credential */
	T_CHECK(secret_key_file("key", buf, sizeof(buf), "t") == NULL);
	T_CHECK(strstr(logged(),
	    "msg=\"relative key file without CREDENTIALS_DIRECTORY\" file=key") != NULL);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	k = secret_key_file("key", buf, sizeof(buf), "t");
	T_STREQ(k, path);
	T_CHECK(secret_key_file("key", tiny, sizeof(tiny), "t") == NULL);
	T_CHECK(strstr(logged(), "msg=\"key file path too long\" file=key") != NULL);
	unsetenv("CREDENTIALS_DIRECTORY");

	/* then the rules of secret_check_file() */
	T_INTEQ(chmod(path, 0644), 0);
	T_CHECK(secret_key_file(path, buf, sizeof(buf), "t") == NULL);
	T_CHECK(strstr(logged(), "msg=\"secret file readable by other users\"") != NULL);
	unlink(path);
	T_CHECK(secret_key_file(path, buf, sizeof(buf), "t") == NULL);
	T_CHECK(strstr(logged(), "msg=\"cannot open key file\"") != NULL);
}

int
main(void)
{
	char dir[] = "/tmp/gb-secret-XXXXXX";
	char path[256], big[SECRET_MAX + 10];
	char *s;

	FILE *lf = tmpfile();
	if (lf == NULL)
		return 99;
	logfd = fileno(lf);
	log_set_fd(logfd);
	log_set_ratelimit(0, 0);
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

	test_modes(dir);
	test_key_file(dir);

	snprintf(path, sizeof(path), "%s/pw", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/big", dir);
	unlink(path);
	rmdir(dir);
	return t_done();
}
