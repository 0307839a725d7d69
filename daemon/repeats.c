/* repeats.c — repeated reports without a device time or serial; see
 * repeats.h. */
#include "repeats.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct node {
	struct repeat_state st;
	struct node *hnext;		/* hash chain */
	struct node *prev, *next;	/* recency: head is the latest reported */
};

struct decision {
	uint64_t seq;
	bool repeat;
	struct repeat_state st;		/* the key's state after it */
};

struct repeats {
	size_t max_keys;
	struct node **buckets;
	size_t nbuckets;		/* a power of two */
	size_t nkeys;
	struct node *head, *tail;
	struct decision *log;		/* by seq; [start, end) are live */
	size_t start, end, cap;
};

static uint64_t
hash_of(const uint8_t key[16])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));	/* the key is a digest already */
	return h;
}

struct repeats *
repeats_new(size_t max_keys)
{
	struct repeats *r = util_calloc(1, sizeof(*r));

	r->max_keys = max_keys > 0 ? max_keys : 1;
	r->nbuckets = 1024;
	r->buckets = util_calloc(r->nbuckets, sizeof(*r->buckets));
	return r;
}

void
repeats_free(struct repeats *r)
{
	if (r == NULL)
		return;
	struct node *n = r->head;
	while (n != NULL) {
		struct node *next = n->next;
		free(n);
		n = next;
	}
	free(r->buckets);
	free(r->log);
	free(r);
}

static struct node **
slot(struct repeats *r, const uint8_t key[16])
{
	struct node **p = &r->buckets[hash_of(key) & (r->nbuckets - 1)];

	while (*p != NULL && memcmp((*p)->st.key, key, 16) != 0)
		p = &(*p)->hnext;
	return p;
}

static void
unlink_recency(struct repeats *r, struct node *n)
{
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		r->head = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	else
		r->tail = n->prev;
	n->prev = n->next = NULL;
}

static void
push_front(struct repeats *r, struct node *n)
{
	n->next = r->head;
	n->prev = NULL;
	if (r->head != NULL)
		r->head->prev = n;
	r->head = n;
	if (r->tail == NULL)
		r->tail = n;
}

static void
grow(struct repeats *r)
{
	size_t nb = r->nbuckets * 2;
	struct node **b = util_calloc(nb, sizeof(*b));

	for (size_t i = 0; i < r->nbuckets; i++) {
		struct node *n = r->buckets[i];
		while (n != NULL) {
			struct node *next = n->hnext;
			size_t at = hash_of(n->st.key) & (nb - 1);
			n->hnext = b[at];
			b[at] = n;
			n = next;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = nb;
}

/* Forgets the least recently reported key. */
static void
evict(struct repeats *r)
{
	struct node *n = r->tail;

	if (n == NULL)
		return;
	struct node **p = slot(r, n->st.key);
	*p = n->hnext;
	unlink_recency(r, n);
	free(n);
	r->nkeys--;
}

/* The node of `key`, made (empty) when missing. */
static struct node *
node_of(struct repeats *r, const uint8_t key[16], bool *made)
{
	struct node **p = slot(r, key);

	*made = false;
	if (*p != NULL)
		return *p;
	if (r->nkeys >= r->max_keys) {
		evict(r);
		p = slot(r, key);
	}
	if (r->nkeys >= r->nbuckets && r->nbuckets < (r->max_keys + 1) * 2) {
		grow(r);
		p = slot(r, key);
	}
	struct node *n = util_calloc(1, sizeof(*n));
	memcpy(n->st.key, key, 16);
	*p = n;
	push_front(r, n);
	r->nkeys++;
	*made = true;
	return n;
}

void
repeats_load(struct repeats *r, const struct repeat_state *st)
{
	struct node **p = slot(r, st->key);
	bool made;

	if (*p == NULL && r->nkeys >= r->max_keys)
		return;		/* read newest first: the rest is older */
	struct node *n = node_of(r, st->key, &made);
	if (!made && n->st.last_us >= st->last_us)
		return;
	n->st = *st;
	unlink_recency(r, n);
	push_front(r, n);
}

/* The live decision for `seq`, or NULL. */
static const struct decision *
find(const struct repeats *r, uint64_t seq)
{
	size_t lo = r->start, hi = r->end;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->log[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->end && r->log[lo].seq == seq ? &r->log[lo] : NULL;
}

static void
log_append(struct repeats *r, uint64_t seq, bool repeat, const struct repeat_state *st)
{
	if (r->end == r->cap) {
		if (r->start > 0) {
			memmove(r->log, r->log + r->start, (r->end - r->start) * sizeof(*r->log));
			r->end -= r->start;
			r->start = 0;
		}
		if (r->end == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 256;
			r->log = util_realloc(r->log, cap * sizeof(*r->log));
			r->cap = cap;
		}
	}
	r->log[r->end++] = (struct decision){ .seq = seq, .repeat = repeat, .st = *st };
}

static bool
same_report(const struct repeat_state *last, const struct repeat_state *st, bool retained,
    int64_t window_us)
{
	if (memcmp(last->digest, st->digest, 16) != 0)
		return false;
	if (retained)
		return true;
	/* Received before the last one: the clock went back. */
	int64_t since = st->last_us - last->last_us;
	return window_us > 0 && since >= 0 && since <= window_us;
}

bool
repeats_decide(struct repeats *r, uint64_t seq, bool retained, int64_t window_us,
    struct repeat_state *st)
{
	const struct decision *d = find(r, seq);

	if (d != NULL) {
		if (d->repeat) {
			memcpy(st->id, d->st.id, 16);
			st->event_time_us = d->st.event_time_us;
		}
		return d->repeat;
	}
	struct node **p = slot(r, st->key);
	bool repeat = *p != NULL && same_report(&(*p)->st, st, retained, window_us);
	if (r->end > r->start && seq <= r->log[r->end - 1].seq) {
		/* Behind the decisions kept and not among them: answer from
		 * the state, change nothing. */
		if (repeat) {
			memcpy(st->id, (*p)->st.id, 16);
			st->event_time_us = (*p)->st.event_time_us;
		}
		return repeat;
	}
	bool made;
	struct node *n = node_of(r, st->key, &made);
	if (repeat) {
		memcpy(st->id, n->st.id, 16);
		st->event_time_us = n->st.event_time_us;
		if (st->last_us > n->st.last_us)
			n->st.last_us = st->last_us;
	} else {
		n->st = *st;
	}
	unlink_recency(r, n);
	push_front(r, n);
	log_append(r, seq, repeat, &n->st);
	return repeat;
}

void
repeats_pending(const struct repeats *r, uint64_t upto,
    void (*fn)(void *ctx, const struct repeat_state *st), void *ctx)
{
	for (size_t i = r->start; i < r->end && r->log[i].seq <= upto; i++)
		fn(ctx, &r->log[i].st);
}

void
repeats_persisted(struct repeats *r, uint64_t seq)
{
	while (r->start < r->end && r->log[r->start].seq <= seq)
		r->start++;
	if (r->start == r->end)
		r->start = r->end = 0;
}

size_t
repeats_keys(const struct repeats *r)
{
	return r->nkeys;
}

size_t
repeats_decisions(const struct repeats *r)
{
	return r->end - r->start;
}
