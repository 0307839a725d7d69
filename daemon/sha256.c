/* sha256.c — SHA-256 through libcrypto: see sha256.h. */
#include "sha256.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MD *md;
static pthread_key_t spare_key;		/* the thread's spare EVP_MD_CTX */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
spare_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

/* An explicit fetch: EVP_sha256() would look the implementation up again
 * in every EVP_DigestInit_ex2(). */
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
	/* With the same md as last time, the context keeps its state's
	 * memory: nothing is allocated. */
	if (EVP_DigestInit_ex2(ctx, md, NULL) != 1)
		abort();
	s->ctx = ctx;
}

void
sha256_update(struct sha256 *s, const void *data, size_t n)
{
	if (n > 0 && EVP_DigestUpdate(s->ctx, data, n) != 1)
		abort();
}

void
sha256_final(struct sha256 *s, uint8_t out[32])
{
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
