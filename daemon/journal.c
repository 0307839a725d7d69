/* journal.c — append-only, CRC-framed segment files; format in journal.h. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Buffered appends are written out (without a sync) past this size, so a
 * long burst does not grow memory. */
#define JOURNAL_WRITE_CHUNK (1u << 20)
#define SEG_NAME_LEN 24		/* 20 digits + ".seg" */

struct segment {
	uint64_t first_seq;
	uint64_t last_seq;	/* 0 while empty */
	uint64_t bytes;
};

struct journal {
	char *dir;
	int dirfd;
	uint64_t segment_size;
	uint64_t disk_cap;

	struct segment *segs;	/* oldest first; the last one is `cur` if fd >= 0 */
	size_t nsegs, capsegs;
	int fd;			/* the segment being appended to, or -1 */
	bool dir_dirty;		/* a segment was created or removed since the last sync */

	uint8_t *buf;		/* appended, not yet written */
	size_t buflen, bufcap;
	uint64_t written;	/* bytes of the current segment already written */
	size_t pending;		/* records appended since the last sync */
	uint64_t first_pending_seq;

	uint64_t next_seq;
	uint64_t durable_seq;	/* covered by the last successful sync */
	uint64_t checkpoint;
};

/* ---- CRC-32C ------------------------------------------------------------ */

static uint32_t crc_table[256];

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t
journal_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	if (crc_table[1] == 0)
		crc_init();
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- encoding ----------------------------------------------------------- */

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static size_t
record_size(const struct journal_record *rec)
{
	size_t payload = (rec->flags & JOURNAL_OVERSIZE) ? 0 : rec->payload_len;
	return JOURNAL_RECORD_HEAD + JOURNAL_RECORD_FIXED + rec->topic_len + payload;
}

/* Parses the record at buf[off]. Returns its total size when it is whole
 * and its CRC matches, 0 when it is incomplete (runs past `size`), or -1
 * when it is damaged. */
static long long
parse_record(const uint8_t *buf, size_t size, size_t off, struct journal_record *rec)
{
	if (size - off < JOURNAL_RECORD_HEAD)
		return 0;
	const uint8_t *p = buf + off;
	if (get32(p) != JOURNAL_MAGIC_RECORD)
		return -1;
	uint32_t len = get32(p + 4);
	if (len < JOURNAL_RECORD_FIXED)
		return -1;
	if (size - off - JOURNAL_RECORD_HEAD < len)
		return 0;
	const uint8_t *body = p + JOURNAL_RECORD_HEAD;
	if (journal_crc32c(0, body, len) != get32(p + 8))
		return -1;
	uint8_t flags = body[17];
	uint16_t topic_len = get16(body + 18);
	uint32_t payload_len = get32(body + 20);
	uint64_t stored = (flags & JOURNAL_OVERSIZE) ? 0 : payload_len;
	if ((uint64_t)JOURNAL_RECORD_FIXED + topic_len + stored != len)
		return -1;
	if (rec != NULL) {
		rec->seq = get64(body);
		rec->received_us = (int64_t)get64(body + 8);
		rec->qos = body[16];
		rec->flags = flags;
		rec->topic_len = topic_len;
		rec->topic = (const char *)body + JOURNAL_RECORD_FIXED;
		rec->payload_len = payload_len;
		rec->payload = (flags & JOURNAL_OVERSIZE) ? NULL :
		    body + JOURNAL_RECORD_FIXED + topic_len;
	}
	return (long long)JOURNAL_RECORD_HEAD + len;
}

/* The offset of the next whole, valid record after `from`, or `size`. */
static size_t
find_next_valid(const uint8_t *buf, size_t size, size_t from)
{
	for (size_t off = from; off + JOURNAL_RECORD_HEAD <= size; off++) {
		if (buf[off] != 'G' || get32(buf + off) != JOURNAL_MAGIC_RECORD)
			continue;
		if (parse_record(buf, size, off, NULL) > 0)
			return off;
	}
	return size;
}

/* ---- files -------------------------------------------------------------- */

static void
seg_name(char *out, size_t len, uint64_t first_seq)
{
	snprintf(out, len, "%020" PRIu64 ".seg", first_seq);
}

static bool
parse_seg_name(const char *name, uint64_t *first)
{
	if (strlen(name) != SEG_NAME_LEN || strcmp(name + 20, ".seg") != 0)
		return false;
	uint64_t v = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*first = v;
	return true;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorted first sequence numbers of the segments in `dir`. */
static int
list_segments(const char *dir, uint64_t **out, size_t *n)
{
	DIR *d = opendir(dir);
	uint64_t *v = NULL;
	size_t len = 0, cap = 0;
	struct dirent *de;

	*out = NULL;
	*n = 0;
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		uint64_t first;
		if (!parse_seg_name(de->d_name, &first))
			continue;
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *nv = realloc(v, cap * sizeof(*v));
			if (nv == NULL) {
				free(v);
				closedir(d);
				return -1;
			}
			v = nv;
		}
		v[len++] = first;
	}
	closedir(d);
	if (len > 0)
		qsort(v, len, sizeof(*v), cmp_u64);
	*out = v;
	*n = len;
	return 0;
}

static int
read_file(int dirfd, const char *name, uint8_t **buf, size_t *size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;

	*buf = NULL;
	*size = 0;
	if (fd < 0 || fstat(fd, &st) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	uint8_t *b = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (b != NULL && got < (size_t)st.st_size) {
		ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (b == NULL || got != (size_t)st.st_size) {
		free(b);
		return -1;
	}
	*buf = b;
	*size = got;
	return 0;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Writes `len` bytes to `dir/name` durably (temp file, fsync, rename). */
static int
write_file_atomic(int dirfd, const char *name, const void *buf, size_t len)
{
	char tmp[256];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		close(fd);
		unlinkat(dirfd, tmp, 0);
		return -1;
	}
	close(fd);
	if (renameat(dirfd, tmp, dirfd, name) != 0)
		return -1;
	return fsync(dirfd);
}

/* Copies damaged bytes to corrupt/<segment>.<offset>.bad. */
static int
move_aside(struct journal *j, const char *seg, size_t off, const uint8_t *bytes,
    size_t len, char *path, size_t pathlen)
{
	char name[128];
	struct timespec ts;

	if (mkdirat(j->dirfd, "corrupt", 0750) != 0 && errno != EEXIST)
		return -1;
	/* The time keeps a later find at the same offset from replacing it. */
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(name, sizeof(name), "corrupt/%s.%zu.%lld%06ld.bad", seg, off,
	    (long long)ts.tv_sec, (long)(ts.tv_nsec / 1000));
	snprintf(path, pathlen, "%s/%s", j->dir, name);
	return write_file_atomic(j->dirfd, name, bytes, len);
}

/* ---- recovery ----------------------------------------------------------- */

static struct segment *
add_segment(struct journal *j, uint64_t first_seq)
{
	if (j->nsegs == j->capsegs) {
		size_t cap = j->capsegs ? j->capsegs * 2 : 16;
		struct segment *v = realloc(j->segs, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		j->segs = v;
		j->capsegs = cap;
	}
	struct segment *s = &j->segs[j->nsegs++];
	*s = (struct segment){ .first_seq = first_seq };
	return s;
}

/* Scans one segment: checks every record, moves damage aside, truncates a
 * torn tail when `last`. Fills in `s`. */
static int
recover_segment(struct journal *j, const char *name, bool last, struct segment *s,
    uint64_t *records)
{
	uint8_t *buf;
	size_t size;
	char aside[512];
	int rc = -1;

	if (read_file(j->dirfd, name, &buf, &size) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot read segment", "file=%s", name);
		return -1;
	}
	if (size < JOURNAL_HEADER_SIZE || memcmp(buf, JOURNAL_MAGIC_SEGMENT, 4) != 0 ||
	    get32(buf + 4) != JOURNAL_VERSION) {
		/* Not a segment we can read (or a header torn at creation):
		 * keep the bytes, drop the file from the journal. */
		if (move_aside(j, name, 0, buf, size, aside, sizeof(aside)) != 0 ||
		    unlinkat(j->dirfd, name, 0) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot move bad segment aside",
			    "file=%s", name);
			goto out;
		}
		log_error("journal", "unreadable segment moved aside", "file=%s bytes=%zu to=%s",
		    name, size, aside);
		s->bytes = 0;
		rc = 1;		/* gone */
		goto out;
	}

	/* Valid ranges, for a rewrite if damage is found in the middle. */
	uint8_t *keep = NULL;
	size_t keeplen = 0;
	bool damaged = false;
	size_t off = JOURNAL_HEADER_SIZE;
	while (off < size) {
		struct journal_record rec;
		long long n = parse_record(buf, size, off, &rec);
		if (n > 0) {
			if (keep != NULL) {
				memcpy(keep + keeplen, buf + off, (size_t)n);
				keeplen += (size_t)n;
			}
			s->last_seq = rec.seq;
			(*records)++;
			off += (size_t)n;
			continue;
		}
		size_t next = find_next_valid(buf, size, off + 1);
		if (next == size && last) {
			/* A torn tail: never synced, never acknowledged. Keep the
			 * bytes for inspection anyway, then cut them off. */
			size_t torn = size - off;
			if (move_aside(j, name, off, buf + off, torn, aside, sizeof(aside)) != 0)
				aside[0] = '\0';
			int fd = openat(j->dirfd, name, O_WRONLY | O_CLOEXEC);
			if (fd < 0 || ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) {
				log_errno(LOG_LVL_ERROR, "journal", "cannot truncate torn tail",
				    "file=%s offset=%zu", name, off);
				if (fd >= 0)
					close(fd);
				free(keep);
				goto out;
			}
			close(fd);
			log_warn("journal", "torn tail truncated", "file=%s offset=%zu bytes=%zu to=%s",
			    name, off, torn, aside);
			size = off;
			break;
		}
		/* Damage in the middle: move it aside, rewrite without it. */
		if (move_aside(j, name, off, buf + off, next - off, aside, sizeof(aside)) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot move corrupt record aside",
			    "file=%s offset=%zu", name, off);
			free(keep);
			goto out;
		}
		log_error("journal", "corrupt record moved aside", "file=%s offset=%zu bytes=%zu to=%s",
		    name, off, next - off, aside);
		if (keep == NULL) {
			keep = malloc(size);
			if (keep == NULL)
				goto out;
			memcpy(keep, buf, off);
			keeplen = off;
		}
		damaged = true;
		off = next;
	}
	if (damaged) {
		if (write_file_atomic(j->dirfd, name, keep, keeplen) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot rewrite segment", "file=%s", name);
			free(keep);
			goto out;
		}
		size = keeplen;
	}
	free(keep);
	s->bytes = size;
	rc = 0;
out:
	free(buf);
	return rc;
}

static int
recover(struct journal *j)
{
	uint64_t *firsts;
	size_t n;
	uint64_t records = 0;

	if (list_segments(j->dir, &firsts, &n) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot list journal", "dir=%s", j->dir);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char name[64];
		seg_name(name, sizeof(name), firsts[i]);
		struct segment *s = add_segment(j, firsts[i]);
		if (s == NULL) {
			free(firsts);
			return -1;
		}
		int rc = recover_segment(j, name, i + 1 == n, s, &records);
		if (rc < 0) {
			free(firsts);
			return -1;
		}
		if (rc > 0)
			j->nsegs--;	/* moved aside */
	}
	free(firsts);

	uint64_t last = 0;
	for (size_t i = 0; i < j->nsegs; i++)
		if (j->segs[i].last_seq > last)
			last = j->segs[i].last_seq;
	j->next_seq = (last > j->checkpoint ? last : j->checkpoint) + 1;
	j->durable_seq = j->next_seq - 1;
	if (n > 0)
		log_info("journal", "recovered", "dir=%s segments=%zu records=%" PRIu64
		    " last_seq=%" PRIu64 " checkpoint=%" PRIu64, j->dir, j->nsegs, records,
		    last, j->checkpoint);
	return 0;
}

/* ---- open, append, sync ------------------------------------------------- */

uint64_t
journal_read_checkpoint(const char *dir)
{
	char path[4096], buf[32];
	FILE *f;
	uint64_t v = 0;

	snprintf(path, sizeof(path), "%s/checkpoint", dir);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(buf, &end, 10);
		if (errno == 0 && end != buf)
			v = n;
	}
	fclose(f);
	return v;
}

static uint64_t
total_bytes(const struct journal *j)
{
	uint64_t b = j->buflen;
	for (size_t i = 0; i < j->nsegs; i++)
		b += j->segs[i].bytes;
	return b;
}

/* Deletes segments wholly at or behind the checkpoint, except the one being
 * appended to while it has unsynced data. */
static void
reclaim(struct journal *j)
{
	size_t out = 0;

	for (size_t i = 0; i < j->nsegs; i++) {
		struct segment *s = &j->segs[i];
		bool is_cur = j->fd >= 0 && i + 1 == j->nsegs;
		uint64_t last = s->last_seq;
		if (i + 1 < j->nsegs && last == 0)
			last = j->segs[i + 1].first_seq - 1;
		bool behind = last != 0 && last <= j->checkpoint;
		if (behind && !(is_cur && j->buflen > 0)) {
			char name[64];
			seg_name(name, sizeof(name), s->first_seq);
			if (unlinkat(j->dirfd, name, 0) == 0 || errno == ENOENT) {
				log_debug("journal", "segment deleted", "file=%s last_seq=%" PRIu64,
				    name, s->last_seq);
				if (is_cur) {
					close(j->fd);
					j->fd = -1;
				}
				j->dir_dirty = true;
				continue;
			}
			log_errno(LOG_LVL_WARN, "journal", "cannot delete segment", "file=%s", name);
		}
		j->segs[out++] = *s;
	}
	j->nsegs = out;
}

struct journal *
journal_open(const struct journal_options *o)
{
	struct journal *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->fd = -1;
	j->dirfd = -1;
	j->segment_size = o->segment_size;
	j->disk_cap = o->disk_cap;
	j->dir = strdup(o->dir);
	if (j->dir == NULL)
		goto fail;
	if (mkdir(j->dir, 0750) != 0 && errno != EEXIST) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot create journal directory", "dir=%s",
		    j->dir);
		goto fail;
	}
	j->dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot open journal directory", "dir=%s",
		    j->dir);
		goto fail;
	}
	unlinkat(j->dirfd, "checkpoint.tmp", 0);
	j->checkpoint = journal_read_checkpoint(j->dir);
	if (recover(j) != 0)
		goto fail;
	reclaim(j);

	/* Keep appending to the last segment if it has room. */
	if (j->nsegs > 0) {
		struct segment *s = &j->segs[j->nsegs - 1];
		if (s->bytes < j->segment_size) {
			char name[64];
			seg_name(name, sizeof(name), s->first_seq);
			j->fd = openat(j->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
			if (j->fd < 0) {
				log_errno(LOG_LVL_ERROR, "journal", "cannot open segment", "file=%s",
				    name);
				goto fail;
			}
			j->written = s->bytes;
		}
	}
	return j;
fail:
	journal_free(j);
	return NULL;
}

static int
buf_reserve(struct journal *j, size_t more)
{
	if (j->buflen + more <= j->bufcap)
		return 0;
	size_t cap = j->bufcap ? j->bufcap : 65536;
	while (cap < j->buflen + more)
		cap *= 2;
	uint8_t *b = realloc(j->buf, cap);
	if (b == NULL)
		return -1;
	j->buf = b;
	j->bufcap = cap;
	return 0;
}

/* Writes the buffer to the current segment, without syncing. On failure the
 * segment is cut back to what was written before. */
static int
flush_buffer(struct journal *j)
{
	if (j->buflen == 0)
		return 0;
	if (write_all(j->fd, j->buf, j->buflen) != 0) {
		int err = errno;
		if (ftruncate(j->fd, (off_t)j->written) != 0)
			log_errno(LOG_LVL_ERROR, "journal", "cannot cut back failed write", "");
		errno = err;
		log_errno(LOG_LVL_ERROR, "journal", "write failed", "bytes=%zu", j->buflen);
		return -1;
	}
	j->written += j->buflen;
	j->segs[j->nsegs - 1].bytes = j->written;
	j->buflen = 0;
	return 0;
}

/* The unsynced records are lost to the journal: they were never
 * acknowledged, and their sequence numbers are given out again. */
static void
drop_pending(struct journal *j)
{
	if (j->pending == 0)
		return;
	j->next_seq = j->first_pending_seq;
	j->buflen = 0;
	j->pending = 0;
	if (j->nsegs > 0) {
		struct segment *s = &j->segs[j->nsegs - 1];
		s->last_seq = j->next_seq - 1 >= s->first_seq ? j->next_seq - 1 : 0;
	}
}

int
journal_sync(struct journal *j)
{
	if (j->pending == 0 && !j->dir_dirty && j->buflen == 0)
		return 0;
	if (j->fd >= 0 && flush_buffer(j) != 0)
		goto fail;
	if (j->fd >= 0 && j->pending > 0 && fdatasync(j->fd) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "fdatasync failed", "");
		goto fail;
	}
	if (j->dir_dirty) {
		if (fsync(j->dirfd) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "directory fsync failed", "dir=%s", j->dir);
			goto fail;
		}
		j->dir_dirty = false;
	}
	j->pending = 0;
	j->durable_seq = j->next_seq - 1;
	return 0;
fail:
	drop_pending(j);
	return -1;
}

uint64_t
journal_durable_seq(const struct journal *j)
{
	return j->durable_seq;
}

/* Closes the current segment (synced) and starts a new one at `first_seq`. */
static int
roll(struct journal *j, uint64_t first_seq)
{
	char name[64];
	uint8_t hdr[JOURNAL_HEADER_SIZE];

	if (j->fd >= 0) {
		if (journal_sync(j) != 0)
			return -1;
		close(j->fd);
		j->fd = -1;
	}
	seg_name(name, sizeof(name), first_seq);
	j->fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
	if (j->fd < 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot create segment", "file=%s", name);
		return -1;
	}
	if (add_segment(j, first_seq) == NULL) {
		close(j->fd);
		j->fd = -1;
		unlinkat(j->dirfd, name, 0);
		return -1;
	}
	memcpy(hdr, JOURNAL_MAGIC_SEGMENT, 4);
	put32(hdr + 4, JOURNAL_VERSION);
	put64(hdr + 8, first_seq);
	if (write_all(j->fd, hdr, sizeof(hdr)) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot write segment header", "file=%s", name);
		close(j->fd);
		j->fd = -1;
		unlinkat(j->dirfd, name, 0);
		j->nsegs--;
		return -1;
	}
	j->written = sizeof(hdr);
	j->segs[j->nsegs - 1].bytes = j->written;
	j->dir_dirty = true;
	log_debug("journal", "segment created", "file=%s", name);
	return 0;
}

int
journal_append(struct journal *j, struct journal_record *rec)
{
	size_t n = record_size(rec);

	if (rec->topic_len > UINT16_MAX) {
		log_error("journal", "topic too long", "bytes=%zu", rec->topic_len);
		return -1;
	}
	if (j->fd < 0 || (j->written + j->buflen + n > j->segment_size &&
	    j->segs[j->nsegs - 1].last_seq != 0)) {
		if (roll(j, j->next_seq) != 0)
			return -1;
	}
	if (buf_reserve(j, n) != 0) {
		log_error("journal", "out of memory", "bytes=%zu", n);
		return -1;
	}
	if (rec->received_us == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		rec->received_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	rec->seq = j->next_seq++;
	if (j->pending == 0)
		j->first_pending_seq = rec->seq;

	uint8_t *p = j->buf + j->buflen;
	uint32_t len = (uint32_t)(n - JOURNAL_RECORD_HEAD);
	uint8_t *body = p + JOURNAL_RECORD_HEAD;
	put32(p, JOURNAL_MAGIC_RECORD);
	put32(p + 4, len);
	put64(body, rec->seq);
	put64(body + 8, (uint64_t)rec->received_us);
	body[16] = rec->qos;
	body[17] = rec->flags;
	body[18] = (uint8_t)rec->topic_len;
	body[19] = (uint8_t)(rec->topic_len >> 8);
	put32(body + 20, rec->payload_len);
	memcpy(body + JOURNAL_RECORD_FIXED, rec->topic, rec->topic_len);
	if (!(rec->flags & JOURNAL_OVERSIZE) && rec->payload_len > 0)
		memcpy(body + JOURNAL_RECORD_FIXED + rec->topic_len, rec->payload,
		    rec->payload_len);
	put32(p + 8, journal_crc32c(0, body, len));
	j->buflen += n;
	j->pending++;
	j->segs[j->nsegs - 1].last_seq = rec->seq;

	if (j->buflen >= JOURNAL_WRITE_CHUNK && flush_buffer(j) != 0) {
		drop_pending(j);
		return -1;
	}
	return 0;
}

size_t
journal_pending(const struct journal *j)
{
	return j->pending;
}

int
journal_checkpoint(struct journal *j, uint64_t seq)
{
	char text[32];
	int n;

	if (seq <= j->checkpoint)
		return 0;
	n = snprintf(text, sizeof(text), "%" PRIu64 "\n", seq);
	if (write_file_atomic(j->dirfd, "checkpoint", text, (size_t)n) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot write checkpoint", "seq=%" PRIu64, seq);
		return -1;
	}
	j->checkpoint = seq;
	reclaim(j);
	return 0;
}

void
journal_set_disk_cap(struct journal *j, uint64_t cap)
{
	j->disk_cap = cap;
}

bool
journal_full(const struct journal *j)
{
	return total_bytes(j) >= j->disk_cap;
}

void
journal_stat(const struct journal *j, struct journal_stat *st)
{
	*st = (struct journal_stat){ 0 };
	st->segments = (unsigned)j->nsegs;
	st->bytes = total_bytes(j);
	for (size_t i = 0; i < j->nsegs; i++) {
		if (j->segs[i].last_seq != 0) {
			st->first_seq = j->segs[i].first_seq;
			break;
		}
	}
	st->last_seq = j->next_seq - 1;
	st->checkpoint_seq = j->checkpoint;
	st->disk_cap = j->disk_cap;
	st->full = journal_full(j);
}

void
journal_free(struct journal *j)
{
	if (j == NULL)
		return;
	if (j->fd >= 0) {
		journal_sync(j);
		close(j->fd);
	}
	if (j->dirfd >= 0)
		close(j->dirfd);
	free(j->buf);
	free(j->segs);
	free(j->dir);
	free(j);
}

/* ---- reading ------------------------------------------------------------ */

static int
dir_size(const char *dir, unsigned *segments, uint64_t *bytes)
{
	uint64_t *firsts;
	size_t n;
	char path[4096];

	*segments = 0;
	*bytes = 0;
	if (list_segments(dir, &firsts, &n) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", dir, firsts[i]);
		if (stat(path, &st) == 0) {
			(*segments)++;
			*bytes += (uint64_t)st.st_size;
		}
	}
	free(firsts);
	return 0;
}

struct journal_reader {
	char *dir;
	uint64_t from_seq;
	uint64_t limit;		/* 0: none */
	uint64_t cur_first;	/* first seq of the open segment */
	int fd;
	uint64_t off;		/* of the next record in the open segment */
	uint8_t *buf;
	size_t bufcap;
	bool started;
};

struct journal_reader *
journal_reader_open(const char *dir, uint64_t from_seq)
{
	struct journal_reader *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->fd = -1;
	r->from_seq = from_seq;
	r->dir = strdup(dir);
	if (r->dir == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

void
journal_reader_set_limit(struct journal_reader *r, uint64_t seq)
{
	r->limit = seq;
}

void
journal_reader_free(struct journal_reader *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r->dir);
	free(r);
}

/* Opens the segment that should hold the next record: at the start, the
 * last one whose first seq is <= from_seq; afterwards, the one after the
 * current. Returns 1 when a segment was opened, 0 when there is none. */
static int
reader_advance(struct journal_reader *r)
{
	uint64_t *firsts;
	size_t n;
	long pick = -1;

	if (list_segments(r->dir, &firsts, &n) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot list journal", "dir=%s", r->dir);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!r->started) {
			if (firsts[i] <= r->from_seq || pick < 0)
				pick = (long)i;
			if (firsts[i] > r->from_seq)
				break;
		} else if (firsts[i] > r->cur_first) {
			pick = (long)i;
			break;
		}
	}
	if (pick < 0) {
		free(firsts);
		return 0;
	}
	char path[4096];
	uint64_t first = firsts[pick];
	free(firsts);
	snprintf(path, sizeof(path), "%s/%020" PRIu64 ".seg", r->dir, first);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;	/* deleted behind a checkpoint meanwhile */
		log_errno(LOG_LVL_ERROR, "journal", "cannot open segment", "file=%s", path);
		return -1;
	}
	if (r->fd >= 0)
		close(r->fd);
	r->fd = fd;
	r->cur_first = first;
	r->off = JOURNAL_HEADER_SIZE;
	r->started = true;
	return 1;
}

static int
reader_grow(struct journal_reader *r, size_t need)
{
	if (need <= r->bufcap)
		return 0;
	size_t cap = r->bufcap ? r->bufcap : 65536;
	while (cap < need)
		cap *= 2;
	uint8_t *b = realloc(r->buf, cap);
	if (b == NULL)
		return -1;
	r->buf = b;
	r->bufcap = cap;
	return 0;
}

/* Reads up to `len` bytes at `off`; returns how many were there. */
static ssize_t
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Is there a segment after the open one? Then the open one is complete. */
static bool
reader_has_next(struct journal_reader *r)
{
	uint64_t *firsts;
	size_t n;
	bool yes = false;

	if (list_segments(r->dir, &firsts, &n) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (firsts[i] > r->cur_first)
			yes = true;
	free(firsts);
	return yes;
}

int
journal_reader_next(struct journal_reader *r, struct journal_record *rec)
{
	for (;;) {
		if (r->fd < 0) {
			int rc = reader_advance(r);
			if (rc <= 0)
				return rc;
		}
		uint8_t head[JOURNAL_RECORD_HEAD];
		ssize_t got = pread_all(r->fd, head, sizeof(head), r->off);
		if (got < 0) {
			log_errno(LOG_LVL_ERROR, "journal", "read failed", "");
			return -1;
		}
		uint32_t len = got == (ssize_t)sizeof(head) ? get32(head + 4) : 0;
		bool head_ok = got == (ssize_t)sizeof(head) &&
		    get32(head) == JOURNAL_MAGIC_RECORD && len >= JOURNAL_RECORD_FIXED &&
		    len <= JOURNAL_RECORD_FIXED + UINT16_MAX + (256u << 20);
		long long n = 0;
		if (head_ok) {
			if (reader_grow(r, JOURNAL_RECORD_HEAD + (size_t)len) != 0)
				return -1;
			memcpy(r->buf, head, sizeof(head));
			ssize_t b = pread_all(r->fd, r->buf + JOURNAL_RECORD_HEAD, len,
			    r->off + JOURNAL_RECORD_HEAD);
			if (b < 0)
				return -1;
			n = parse_record(r->buf, JOURNAL_RECORD_HEAD + (size_t)b, 0, rec);
		} else if (got > 0 && got < (ssize_t)sizeof(head)) {
			n = 0;		/* incomplete head */
		} else if (got == 0) {
			n = 0;		/* end of this segment */
		} else {
			n = -1;
		}

		if (n > 0) {
			if (r->limit != 0 && rec->seq > r->limit)
				return 0;	/* not durable yet: read it later */
			r->off += (uint64_t)n;
			if (rec->seq < r->from_seq)
				continue;
			return 1;
		}
		if (n == 0 && !reader_has_next(r))
			return 0;	/* the live end: try again later */
		if (n == 0 && got == 0) {
			close(r->fd);
			r->fd = -1;	/* finished this segment */
			continue;
		}
		/* Damage (or an incomplete record in a finished segment): say
		 * so and find the next valid record in this segment. */
		struct stat st;
		if (fstat(r->fd, &st) != 0)
			return -1;
		size_t rest = (size_t)st.st_size > r->off ? (size_t)st.st_size - r->off : 0;
		if (reader_grow(r, rest + 1) != 0)
			return -1;
		ssize_t b = pread_all(r->fd, r->buf, rest, r->off);
		if (b < 0)
			return -1;
		if (parse_record(r->buf, (size_t)b, 0, NULL) > 0)
			continue;	/* completed by the writer meanwhile */
		size_t next = find_next_valid(r->buf, (size_t)b, 1);
		log_error("journal", "damaged record skipped by reader", "segment=%" PRIu64
		    " offset=%" PRIu64 " bytes=%zu", r->cur_first, r->off, next);
		r->off += next;
		if (next >= (size_t)b) {
			close(r->fd);
			r->fd = -1;
		}
		return -1;
	}
}

int
journal_dir_stat(const char *dir, struct journal_stat *st, uint64_t *records,
    uint64_t *damaged)
{
	struct journal_record rec;
	struct journal_reader *r;
	int rc;

	*st = (struct journal_stat){ 0 };
	*records = 0;
	*damaged = 0;
	if (dir_size(dir, &st->segments, &st->bytes) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot list journal", "dir=%s", dir);
		return -1;
	}
	st->checkpoint_seq = journal_read_checkpoint(dir);
	r = journal_reader_open(dir, 0);
	if (r == NULL)
		return -1;
	while ((rc = journal_reader_next(r, &rec)) != 0) {
		if (rc < 0) {
			(*damaged)++;
			if (*damaged > 1000000)
				break;
			continue;
		}
		if (st->first_seq == 0)
			st->first_seq = rec.seq;
		st->last_seq = rec.seq;
		(*records)++;
	}
	journal_reader_free(r);
	if (st->last_seq < st->checkpoint_seq)
		st->last_seq = st->checkpoint_seq;
	return 0;
}
