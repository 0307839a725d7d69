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
 * file cannot be read. The caller frees the result with secret_free(),
 * which wipes it. */
char *secret_load(const char *inline_value, const char *file, const char *mod);
void secret_free(char *secret);

#endif
