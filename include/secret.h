/* secret.c — passwords and tokens from files or systemd credentials. */
#ifndef GRIDBRIDGE_SECRET_H
#define GRIDBRIDGE_SECRET_H

#include <stddef.h>

/* Largest secret accepted, in bytes. */
#define SECRET_MAX 4096

/* Returns the secret to use: `inline_value` when set, else the contents of
 * `file` (a relative name is looked up in $CREDENTIALS_DIRECTORY, the
 * directory systemd's LoadCredential= fills), with one trailing newline
 * removed, else an empty string. Returns NULL after logging why when the
 * file cannot be read or other users may read it (see secret_check_file()).
 * The caller frees the result with secret_free(), which wipes it. */
char *secret_load(const char *inline_value, const char *file, const char *mod);
void secret_free(char *secret);

/* The key file a key file name stands for, checked: an absolute name is
 * used as it is, a relative one is looked up in $CREDENTIALS_DIRECTORY,
 * as for secret_load(). Returns "" for "", else `file` or `buf` (of `len`
 * bytes) once secret_check_file() passes; NULL after logging why (also
 * when the name is relative and $CREDENTIALS_DIRECTORY is not set, or the
 * path does not fit). */
const char *secret_key_file(const char *file, char *buf, size_t len, const char *mod);

/* A file holding a secret (a password, a token, a private key) may be read
 * by its owner only:
 *   - others (the last octal digit) have no access at all;
 *   - the group may read it only when the file belongs to root and its
 *     group is the daemon's own (an administrator sharing a root-owned
 *     file with the service, root:gridbridge 0640), and never write it;
 *   - in $CREDENTIALS_DIRECTORY the group may read too, whoever owns the
 *     file: systemd makes credentials 0400 for the service's user, or
 *     grants it read with an ACL, whose mask shows as 0440.
 * Returns 0 when `path` exists, can be opened and passes; else logs why
 * (with the exact chmod that fixes the mode) and returns -1. For key files
 * that a library reads later. */
int secret_check_file(const char *path, const char *mod);

#endif
