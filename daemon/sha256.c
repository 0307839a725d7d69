/* sha256.c — SHA-256 through libcrypto: see sha256.h. */
#include "sha256.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *md;
static pthread_key_t spare_key;		/* the thread's spare EVP_MD_CTX */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
spare_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

/* An explicit fetch: with EVP_sha256(), every EVP_DigestInit_ex2() looks
 * the implementation up again, which doubles the cost of hashing an id. */
static void
setup(void)
{
	md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (md == NULL || pthread_key_create(&spare_key, spare_free) != 0)
		abort();
}

void
sha256_init(struct sha256 *s)
{
	pthread_once(&once, setup);
	EVP_MD_CTX *ctx = pthread_getspecific(spare_key);
	if (ctx != NULL)
		pthread_setspecific(spare_key, NULL);
	else if ((ctx = EVP_MD_CTX_new()) == NULL)
		abort();
	/* (libcrypto 3.0 still renews the algorithm's own state here.) */
	if (EVP_DigestInit_ex2(ctx, md, NULL) != 1)
		abort();
	s->ctx = ctx;
	s->buflen = 0;
}

static void
flush(struct sha256 *s)
{
	if (s->buflen > 0 && EVP_DigestUpdate(s->ctx, s->buf, s->buflen) != 1)
		abort();
	s->buflen = 0;
}

void
sha256_update(struct sha256 *s, const void *data, size_t n)
{
	if (s->buflen + n <= sizeof(s->buf)) {
		if (n > 0)
			memcpy(s->buf + s->buflen, data, n);
		s->buflen += n;
		return;
	}
	flush(s);
	if (n >= sizeof(s->buf)) {
		if (EVP_DigestUpdate(s->ctx, data, n) != 1)
			abort();
	} else {
		memcpy(s->buf, data, n);
		s->buflen = n;
	}
}

void
sha256_final(struct sha256 *s, uint8_t out[32])
{
	flush(s);
	if (EVP_DigestFinal_ex(s->ctx, out, NULL) != 1)
		abort();
	/* Back as the thread's spare, unless a nested hash put one there. */
	if (pthread_getspecific(spare_key) != NULL || pthread_setspecific(spare_key, s->ctx) != 0)
		EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
}

void
sha256(const void *data, size_t n, uint8_t out[32])
{
	struct sha256 s;

	sha256_init(&s);
	sha256_update(&s, data, n);
	sha256_final(&s, out);
}
