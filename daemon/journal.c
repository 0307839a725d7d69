/* journal.c — append-only, CRC-framed segment files; format in journal.h. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* Buffered appends are written out (without a sync) past this size, so a
 * long burst does not grow memory. */
#define JOURNAL_WRITE_CHUNK (1u << 20)
#define SEG_NAME_LEN 24		/* 20 digits + ".seg" */
/* The smallest record: head and fixed fields, empty topic and payload. */
#define RECORD_MIN (JOURNAL_RECORD_HEAD + JOURNAL_RECORD_FIXED_V2)
/* After ENOSPC the journal counts as full this long (or until space is
 * freed), so ingest pauses instead of failing every message; after that,
 * for as long as its file system has less than NOSPACE_ROOM free: taking
 * messages only to fail again would cut the connection each time. */
#define NOSPACE_PAUSE_MS 5000
#define NOSPACE_ROOM (256u << 10)

/* The checkpoint file: two slots written in turn, each "GBCK", the seq
 * and a CRC-32C of both. */
#define CKPT_MAGIC "GBCK"
#define CKPT_SLOT 16
#define CKPT_FILE "checkpoint"
#define ID_FILE "id"

struct segment {
	uint64_t first_seq;
	uint64_t last_seq;	/* 0 while empty */
	uint64_t bytes;
	uint32_t version;	/* 1: records' CRCs from 0; 2: from the seed; 3: with mid */
	uint32_t seed;
};

/* How the records of one segment are checked. */
struct seg_check {
	uint32_t version;
	uint32_t seed;
	uint64_t expect;	/* versions 2, 3: the next record's seq */
};

struct journal {
	char *dir;
	int dirfd;
	uint64_t segment_size;
	uint64_t disk_cap;
	uint64_t keep_records;	/* the last this many are kept (journal.h) */
	uint8_t id[16];
	char id_text[JOURNAL_ID_LEN + 1];

	struct segment *segs;	/* oldest first; the last one is `cur` if fd >= 0 */
	size_t nsegs, capsegs;
	int fd;			/* the segment being appended to, or -1 */
	bool dir_dirty;		/* a segment was created or removed since the last sync */

	uint8_t *buf;		/* appended, not yet written */
	size_t buflen, bufcap;
	uint64_t written;	/* bytes of the current segment already written */
	uint64_t synced;	/* ... of which the last good fdatasync covers */
	size_t pending;		/* records appended since the last sync */

	uint64_t next_seq;
	uint64_t durable_seq;	/* covered by the last successful sync */
	uint64_t checkpoint;
	uint64_t checkpoint_synced;	/* the checkpoint file says at least this, durably */
	uint64_t syncs;			/* syncs that made appended records durable */
	uint64_t checkpoint_written;	/* ... at least this, maybe in the page cache only */
	int ckfd;		/* the checkpoint file, or -1 */
	unsigned ckslot;	/* the slot written last */
	bool broken;
	bool header_missing;	/* the current segment's header is still to write */
	int64_t nospace_until_ms;
};

/* ---- CRC-32C ------------------------------------------------------------ */

/* ISA-L's crc32_iscsi() picks the CPU's CRC32 instruction (SSE 4.2, with
 * carry-less multiplication folding where available; ARMv8 CRC) at run
 * time, about ten times the speed of a byte-wise table: every record is
 * checked twice (appended, read back), so this was 7 % of the daemon's
 * CPU per message at full speed. It takes the register value as it is
 * (no inversion at either end) and an int length. */
uint32_t
journal_crc32c(uint32_t crc, const void *buf, size_t len)
{
	unsigned char *p = (unsigned char *)(uintptr_t)buf;	/* only read */

	crc = ~crc;
	while (len > 0) {
		int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;

		crc = crc32_iscsi(p, n, crc);
		p += n;
		len -= (size_t)n;
	}
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

/* The fixed fields of a record in a segment of `version`. */
static size_t
record_fixed(uint32_t version)
{
	return version >= 3 ? JOURNAL_RECORD_FIXED : JOURNAL_RECORD_FIXED_V2;
}

/* A segment header: fills `c` (expect = first_seq) and, for versions 2
 * and 3, `id`. Returns the header's size, 0 when `size` is too short to tell, or
 * -1 when it is not a header we can read. */
static long
parse_header(const uint8_t *buf, size_t size, struct seg_check *c, uint64_t *first_seq,
    uint8_t id[16])
{
	if (size < JOURNAL_HEADER_SIZE_V1)
		return 0;
	if (memcmp(buf, JOURNAL_MAGIC_SEGMENT, 4) != 0)
		return -1;
	uint32_t version = get32(buf + 4);
	*first_seq = get64(buf + 8);
	*c = (struct seg_check){ .version = version, .expect = *first_seq };
	if (version == 1)
		return JOURNAL_HEADER_SIZE_V1;
	if (version != 2 && version != 3)
		return -1;
	if (size < JOURNAL_HEADER_SIZE)
		return 0;
	if (journal_crc32c(0, buf, JOURNAL_HEADER_SIZE - 4) != get32(buf + 36))
		return -1;
	c->seed = get32(buf + 32);
	if (id != NULL)
		memcpy(id, buf + 16, 16);
	return JOURNAL_HEADER_SIZE;
}

/* Parses the record at buf[off]. Returns its total size when it is whole
 * and its CRC matches, 0 when it is incomplete (runs past `size`), or -1
 * when it is damaged. The sequence rule is the caller's (seq_fits). */
static long long
parse_record(const uint8_t *buf, size_t size, size_t off, const struct seg_check *c,
    struct journal_record *rec)
{
	if (size - off < JOURNAL_RECORD_HEAD)
		return 0;
	const uint8_t *p = buf + off;
	if (get32(p) != JOURNAL_MAGIC_RECORD)
		return -1;
	uint32_t len = get32(p + 4);
	size_t fixed = record_fixed(c->version);
	if (len < fixed)
		return -1;
	if (size - off - JOURNAL_RECORD_HEAD < len)
		return 0;
	const uint8_t *body = p + JOURNAL_RECORD_HEAD;
	if (journal_crc32c(c->version >= 2 ? c->seed : 0, body, len) != get32(p + 8))
		return -1;
	uint8_t flags = body[17];
	uint16_t topic_len = get16(body + 18);
	uint32_t payload_len = get32(body + 20);
	uint64_t stored = (flags & JOURNAL_OVERSIZE) ? 0 : payload_len;
	if ((uint64_t)fixed + topic_len + stored != len)
		return -1;
	if (rec != NULL) {
		rec->seq = get64(body);
		rec->received_us = (int64_t)get64(body + 8);
		rec->qos = body[16];
		rec->flags = flags;
		rec->mid = c->version >= 3 ? get16(body + 24) : 0;
		rec->topic_len = topic_len;
		rec->topic = (const char *)body + fixed;
		rec->payload_len = payload_len;
		rec->payload = (flags & JOURNAL_OVERSIZE) ? NULL : body + fixed + topic_len;
	}
	return (long long)JOURNAL_RECORD_HEAD + len;
}

/* Versions 2, 3: numbers only go up from the header's first_seq (a segment
 * rewritten around damage has gaps); a record found by scanning past
 * `skipped` damaged bytes must be no further ahead than those bytes could
 * hold records. Version 1 segments have no such rule. */
static bool
seq_fits(const struct seg_check *c, uint64_t seq, size_t skipped)
{
	if (c->version < 2)
		return true;
	if (seq < c->expect)
		return false;
	return skipped == 0 || seq - c->expect <= skipped / RECORD_MIN;
}

/* The offset of the next whole, valid record after `from`, or `size`;
 * `damage` is where the damage began. */
static size_t
find_next_valid(const uint8_t *buf, size_t size, size_t from, size_t damage,
    const struct seg_check *c)
{
	struct journal_record rec;

	for (size_t off = from; off + JOURNAL_RECORD_HEAD <= size; off++) {
		if (buf[off] != 'G' || get32(buf + off) != JOURNAL_MAGIC_RECORD)
			continue;
		if (parse_record(buf, size, off, c, &rec) > 0 && seq_fits(c, rec.seq, off - damage))
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
		int err = errno;
		close(fd);
		unlinkat(dirfd, tmp, 0);
		errno = err;
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

/* ---- identity ----------------------------------------------------------- */

static void
id_to_text(const uint8_t id[16], char out[JOURNAL_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[id[i] >> 4];
		out[o++] = hex[id[i] & 15];
	}
	out[o] = '\0';
}

static int
id_from_text(const char *s, uint8_t id[16])
{
	size_t o = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10) {
			if (s[o++] != '-')
				return -1;
		}
		int hi = util_hex_digit(s[o]), lo = hi < 0 ? -1 : util_hex_digit(s[o + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		id[i] = (uint8_t)(hi << 4 | lo);
		o += 2;
	}
	return s[o] == '\0' || s[o] == '\n' ? 0 : -1;
}

static int
random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
journal_read_id(const char *dir, char *out)
{
	char path[4096], buf[64];
	uint8_t id[16];
	FILE *f;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/" ID_FILE, dir);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL && id_from_text(buf, id) == 0) {
		id_to_text(id, out);
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* The id of the newest version 2 or 3 segment, for a journal whose id file is
 * gone. Returns 0 when one was found. */
static int
id_from_segments(struct journal *j, const uint64_t *firsts, size_t n)
{
	for (size_t i = n; i-- > 0;) {
		char name[64];
		uint8_t hdr[JOURNAL_HEADER_SIZE];
		struct seg_check c;
		uint64_t first;
		seg_name(name, sizeof(name), firsts[i]);
		int fd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t got = pread(fd, hdr, sizeof(hdr), 0);
		close(fd);
		if (got == (ssize_t)sizeof(hdr) &&
		    parse_header(hdr, sizeof(hdr), &c, &first, j->id) == JOURNAL_HEADER_SIZE)
			return 0;
	}
	return -1;
}

/* Reads, takes back from the segments, or makes the journal's id. */
static int
establish_id(struct journal *j)
{
	uint64_t *firsts;
	size_t n;

	if (journal_read_id(j->dir, j->id_text) == 0) {
		id_from_text(j->id_text, j->id);
		return 0;
	}
	if (list_segments(j->dir, &firsts, &n) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot list journal", "dir=%s", j->dir);
		return -1;
	}
	const char *how;
	if (id_from_segments(j, firsts, n) == 0) {
		how = "segments";
	} else {
		if (random_bytes(j->id, sizeof(j->id)) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot make a journal id", "");
			free(firsts);
			return -1;
		}
		j->id[6] = (uint8_t)((j->id[6] & 0x0f) | 0x40);	/* UUID version 4 */
		j->id[8] = (uint8_t)((j->id[8] & 0x3f) | 0x80);
		how = n > 0 ? "new_for_existing" : "new";
	}
	free(firsts);
	id_to_text(j->id, j->id_text);
	char text[JOURNAL_ID_LEN + 2];
	int len = snprintf(text, sizeof(text), "%s\n", j->id_text);
	if (write_file_atomic(j->dirfd, ID_FILE, text, (size_t)len) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot write journal id", "dir=%s", j->dir);
		return -1;
	}
	log_info("journal", "journal id created", "dir=%s journal_id=%s from=%s", j->dir,
	    j->id_text, how);
	return 0;
}

const char *
journal_id(const struct journal *j)
{
	return j->id_text;
}

bool
journal_broken(const struct journal *j)
{
	return j->broken;
}

/* ---- the checkpoint file ------------------------------------------------ */

static void
ckpt_slot(uint8_t out[CKPT_SLOT], uint64_t seq)
{
	memcpy(out, CKPT_MAGIC, 4);
	put64(out + 4, seq);
	put32(out + 12, journal_crc32c(0, out, 12));
}

/* The checkpoint in `buf`: the better of two slots, or the text an
 * earlier release wrote. */
static uint64_t
ckpt_parse(const uint8_t *buf, size_t len)
{
	uint64_t v = 0;

	if (len > 0 && buf[0] >= '0' && buf[0] <= '9') {
		char text[32];
		size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
		memcpy(text, buf, n);
		text[n] = '\0';
		char *end;
		errno = 0;
		unsigned long long x = strtoull(text, &end, 10);
		return errno == 0 && end != text ? x : 0;
	}
	for (size_t s = 0; s + CKPT_SLOT <= len && s < 2 * CKPT_SLOT; s += CKPT_SLOT) {
		const uint8_t *p = buf + s;
		if (memcmp(p, CKPT_MAGIC, 4) == 0 && journal_crc32c(0, p, 12) == get32(p + 12) &&
		    get64(p + 4) > v)
			v = get64(p + 4);
	}
	return v;
}

uint64_t
journal_read_checkpoint(const char *dir)
{
	char path[4096];
	uint8_t buf[2 * CKPT_SLOT];
	int fd;

	snprintf(path, sizeof(path), "%s/" CKPT_FILE, dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	return n > 0 ? ckpt_parse(buf, (size_t)n) : 0;
}

/* Opens the checkpoint file for writing in place, making it (or turning
 * an earlier release's text into two slots) when needed. */
static int
ckpt_open(struct journal *j)
{
	uint8_t buf[2 * CKPT_SLOT];
	struct stat st;

	j->checkpoint = journal_read_checkpoint(j->dir);
	j->checkpoint_synced = j->checkpoint;
	j->checkpoint_written = j->checkpoint;
	int fd = openat(j->dirfd, CKPT_FILE, O_RDWR | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size == (off_t)sizeof(buf) &&
	    pread(fd, buf, 1, 0) == 1 && buf[0] == CKPT_MAGIC[0]) {
		/* What it says may still be only in the page cache: segments
		 * are deleted behind it only once it is on disk. */
		if (fdatasync(fd) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot sync checkpoint", "dir=%s", j->dir);
			close(fd);
			return -1;
		}
		j->ckfd = fd;
		return 0;
	}
	if (fd >= 0)
		close(fd);
	ckpt_slot(buf, j->checkpoint);
	ckpt_slot(buf + CKPT_SLOT, j->checkpoint);
	if (write_file_atomic(j->dirfd, CKPT_FILE, buf, sizeof(buf)) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot write checkpoint", "dir=%s", j->dir);
		return -1;
	}
	j->ckfd = openat(j->dirfd, CKPT_FILE, O_RDWR | O_CLOEXEC);
	if (j->ckfd < 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot open checkpoint", "dir=%s", j->dir);
		return -1;
	}
	return 0;
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

/* Keeps the bytes of a whole file aside and removes it from the journal. */
static int
drop_segment_file(struct journal *j, const char *name, const uint8_t *buf, size_t size,
    const char *msg)
{
	char aside[512];

	if (move_aside(j, name, 0, buf, size, aside, sizeof(aside)) != 0 ||
	    unlinkat(j->dirfd, name, 0) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot move bad segment aside", "file=%s", name);
		return -1;
	}
	log_error("journal", msg, "file=%s bytes=%zu to=%s", name, size, aside);
	return 0;
}

/* Scans one segment: checks every record, moves damage aside, truncates a
 * torn tail when `last`. Fills in `s`. Returns 0, 1 when the file was
 * moved aside whole, or -1. */
static int
recover_segment(struct journal *j, const char *name, bool last, struct segment *s,
    uint64_t *records)
{
	uint8_t *buf;
	size_t size;
	char aside[512];
	int rc = -1;
	struct seg_check c;
	uint64_t first;
	uint8_t id[16];

	if (read_file(j->dirfd, name, &buf, &size) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot read segment", "file=%s", name);
		return -1;
	}
	if (size == 0) {
		/* Made, then cut back to nothing after a failed write: empty. */
		if (unlinkat(j->dirfd, name, 0) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot remove empty segment", "file=%s",
			    name);
			goto out;
		}
		log_info("journal", "empty segment removed", "file=%s", name);
		rc = 1;
		goto out;
	}
	long hdrlen = parse_header(buf, size, &c, &first, id);
	if (hdrlen <= 0) {
		/* Not a segment we can read (or a header torn at creation):
		 * keep the bytes, drop the file from the journal. */
		rc = drop_segment_file(j, name, buf, size, "unreadable segment moved aside") == 0 ?
		    1 : -1;
		goto out;
	}
	if (first != s->first_seq) {
		rc = drop_segment_file(j, name, buf, size,
		    "segment whose header does not match its name moved aside") == 0 ? 1 : -1;
		goto out;
	}
	if (c.version >= 2 && memcmp(id, j->id, 16) != 0) {
		rc = drop_segment_file(j, name, buf, size,
		    "segment of another journal moved aside") == 0 ? 1 : -1;
		goto out;
	}
	s->version = c.version;
	s->seed = c.seed;

	/* Valid ranges, for a rewrite if damage is found in the middle. */
	uint8_t *keep = NULL;
	size_t keeplen = 0;
	bool damaged = false;
	size_t off = (size_t)hdrlen;
	size_t damage = SIZE_MAX;	/* where skipped bytes began */
	while (off < size) {
		struct journal_record rec;
		long long n = parse_record(buf, size, off, &c, &rec);
		if (n > 0 && seq_fits(&c, rec.seq, damage != SIZE_MAX ? off - damage : 0)) {
			damage = SIZE_MAX;
			if (keep != NULL) {
				memcpy(keep + keeplen, buf + off, (size_t)n);
				keeplen += (size_t)n;
			}
			s->last_seq = rec.seq;
			c.expect = rec.seq + 1;
			(*records)++;
			off += (size_t)n;
			continue;
		}
		size_t next = find_next_valid(buf, size, off + 1, off, &c);
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
		damage = off;
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
		log_info("journal", "recovered", "dir=%s journal_id=%s segments=%zu records=%" PRIu64
		    " last_seq=%" PRIu64 " checkpoint=%" PRIu64, j->dir, j->id_text, j->nsegs,
		    records, last, j->checkpoint);
	return 0;
}

/* ---- open, append, sync ------------------------------------------------- */

static uint64_t
total_bytes(const struct journal *j)
{
	uint64_t b = j->buflen;
	for (size_t i = 0; i < j->nsegs; i++)
		b += j->segs[i].bytes;
	return b;
}

bool journal_full(const struct journal *j);

/* Whether a segment lies wholly at or behind `seq` and may go. The one
 * being appended to stays while the journal is below half its cap:
 * deleting it after every commit that catches up would cost a file
 * created, a directory synced and a file deleted per commit at a
 * community's rate; past half the cap (a small cap) the space counts
 * more, and ingest must never pause for a segment already stored. So
 * for the last two segments while they hold any of the last keep_records
 * records (journal.h). */
static bool
segment_behind(const struct journal *j, size_t i, uint64_t seq)
{
	const struct segment *s = &j->segs[i];
	bool is_cur = j->fd >= 0 && i + 1 == j->nsegs;
	uint64_t last = s->last_seq;

	if (i + 1 < j->nsegs && last == 0)
		last = j->segs[i + 1].first_seq - 1;
	/* Only the last two segments ask how full the journal is (a walk of
	 * the segments, and a statfs after ENOSPC): reclaim asks per segment. */
	bool recent = i + 2 >= j->nsegs;
	bool roomy = recent && !journal_full(j) && total_bytes(j) < j->disk_cap / 2;
	if (is_cur && (j->buflen > 0 || j->pending > 0 || roomy))
		return false;
	/* One of the last keep_records records, in one of the last two
	 * segments: the next start's recall. */
	if (roomy && last != 0 && last + j->keep_records >= j->next_seq)
		return false;
	return last != 0 && last <= seq;
}

struct closing {
	size_t n;
	int fd[];
};

/* A deleted segment's blocks are given back FREE_STEP at a time, FREE_PAUSE
 * apart, before the close frees the rest. Freed at once, the 64 MiB of a
 * segment made the next fdatasync of the segment being appended to wait
 * 20-40 ms on a file system mounted with online discard (ext4 -o discard):
 * it waits for the file system's journal commit, which frees and discards
 * them. A slice at a time, each commit carries a MiB of it. */
#define FREE_STEP ((off_t)1 << 20)
#define FREE_PAUSE_NS 2500000L

static void
close_fds(struct closing *c, bool paced)
{
	const struct timespec pause = { 0, FREE_PAUSE_NS };
	struct stat st;

	for (size_t i = 0; i < c->n; i++) {
		if (paced && fstat(c->fd[i], &st) == 0) {
			off_t size = st.st_size;
			while (size > FREE_STEP) {
				size -= FREE_STEP;
				if (ftruncate(c->fd[i], size) != 0)
					break;
				nanosleep(&pause, NULL);
			}
		}
		close(c->fd[i]);
	}
	free(c);
}

static void *
close_all(void *arg)
{
	close_fds(arg, true);
	return NULL;
}

/* Closes the descriptors of deleted segments on a thread of its own: the
 * last close of an unlinked file is where the file system frees its
 * blocks and drops its cached pages, 20-100 ms for a 64 MiB segment,
 * which the event loop (PUBACKs, batches) must not wait for; the thread
 * gives the blocks back a slice at a time (close_fds). Inline, at once,
 * when no thread can be made. */
static void
close_later(struct closing *c)
{
	pthread_attr_t a;
	pthread_t t;
	sigset_t all, old;
	int rc;

	if (c == NULL || c->n == 0) {
		free(c);
		return;
	}
	if (pthread_attr_init(&a) != 0) {
		close_fds(c, false);
		return;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);	/* the thread takes no signal */
	rc = pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (rc == 0)
		rc = pthread_create(&t, &a, close_all, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&a);
	if (rc != 0)
		close_fds(c, false);
}

/* Deletes segments wholly at or behind the durable checkpoint, except the
 * one being appended to while it has unsynced data. A segment of
 * CLOSE_LATER_BYTES (512 KiB) or more is opened before its name is removed, so that
 * unlinkat only takes the name and the freeing waits for the close
 * (close_later); at most CLOSE_LATER_MAX at a time, the rest (and small
 * ones: the current segment deleted after each commit when the journal is
 * full) the old way. */
#define CLOSE_LATER_BYTES (1u << 19)
#define CLOSE_LATER_MAX 16
static void
reclaim(struct journal *j)
{
	size_t out = 0;
	bool freed = false;
	struct closing *c = malloc(sizeof(*c) + CLOSE_LATER_MAX * sizeof(int));

	if (c != NULL)
		c->n = 0;
	for (size_t i = 0; i < j->nsegs; i++) {
		struct segment *s = &j->segs[i];
		bool is_cur = j->fd >= 0 && i + 1 == j->nsegs;
		if (segment_behind(j, i, j->checkpoint_synced)) {
			char name[64];
			seg_name(name, sizeof(name), s->first_seq);
			bool later = c != NULL && c->n < CLOSE_LATER_MAX &&
			    (is_cur ? j->written : s->bytes) >= CLOSE_LATER_BYTES;
			int fd = is_cur ? j->fd : later ?
			    openat(j->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
			if (unlinkat(j->dirfd, name, 0) == 0 || errno == ENOENT) {
				log_debug("journal", "segment deleted", "file=%s last_seq=%" PRIu64,
				    name, s->last_seq);
				if (is_cur)
					j->fd = -1;
				if (fd >= 0 && later)
					c->fd[c->n++] = fd;
				else if (fd >= 0)
					close(fd);
				j->dir_dirty = true;
				freed = true;
				continue;
			}
			log_errno(LOG_LVL_WARN, "journal", "cannot delete segment", "file=%s", name);
			if (fd >= 0 && !is_cur)
				close(fd);
		}
		j->segs[out++] = *s;
	}
	j->nsegs = out;
	bool pending_close = c != NULL && c->n > 0;
	close_later(c);
	if (freed && j->nospace_until_ms != 0) {
		if (pending_close) {
			/* The space comes back with the close: journal_full()
			 * asks the file system until then, and the next sync
			 * says there is room. */
			j->nospace_until_ms = util_mono_ms();
			if (j->nospace_until_ms == 0)
				j->nospace_until_ms = 1;
		} else {
			log_info("journal", "journal disk has room again", "dir=%s", j->dir);
			j->nospace_until_ms = 0;
		}
	}
}

struct journal *
journal_open(const struct journal_options *o)
{
	struct journal *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->fd = -1;
	j->dirfd = -1;
	j->ckfd = -1;
	j->segment_size = o->segment_size;
	j->disk_cap = o->disk_cap;
	j->keep_records = o->keep_records;
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
	unlinkat(j->dirfd, CKPT_FILE ".tmp", 0);
	unlinkat(j->dirfd, ID_FILE ".tmp", 0);
	if (establish_id(j) != 0 || ckpt_open(j) != 0)
		goto fail;
	if (recover(j) != 0)
		goto fail;
	reclaim(j);

	/* Keep appending to the last segment if it has room and is of this
	 * version (earlier segments are read, never appended to). */
	if (j->nsegs > 0) {
		struct segment *s = &j->segs[j->nsegs - 1];
		uint64_t next = s->last_seq != 0 ? s->last_seq + 1 : s->first_seq;
		if (s->bytes < j->segment_size && s->version == JOURNAL_VERSION &&
		    next == j->next_seq) {
			char name[64];
			seg_name(name, sizeof(name), s->first_seq);
			j->fd = openat(j->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
			if (j->fd < 0) {
				log_errno(LOG_LVL_ERROR, "journal", "cannot open segment", "file=%s",
				    name);
				goto fail;
			}
			j->written = s->bytes;
			j->synced = s->bytes;
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

/* After a failed write or sync: the records since the last good sync are
 * gone. The segment is cut back to what that sync covered (a segment made
 * since then to its header, or to nothing when the header could not be
 * written) and the cut is synced. The file stays: a reader may have it
 * open, and a new file of the same name would be another file to it. Only
 * when the cut worked are the lost numbers given out again; otherwise the
 * journal is broken. */
static void
cut_back(struct journal *j, int err)
{
	j->buflen = 0;
	j->pending = 0;
	if (j->fd >= 0) {
		struct segment *s = &j->segs[j->nsegs - 1];
		char name[64];
		seg_name(name, sizeof(name), s->first_seq);
		uint64_t keep = j->synced;
		if (keep == 0 && j->written >= JOURNAL_HEADER_SIZE && !j->header_missing)
			keep = JOURNAL_HEADER_SIZE;
		if (ftruncate(j->fd, (off_t)keep) != 0 || fdatasync(j->fd) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot cut back the segment, journal broken",
			    "file=%s bytes=%" PRIu64, name, keep);
			j->broken = true;
			return;
		}
		j->written = j->synced = keep;
		j->header_missing = keep == 0;
		s->bytes = keep;
		s->last_seq = j->durable_seq >= s->first_seq ? j->durable_seq : 0;
	}
	j->next_seq = j->durable_seq + 1;
	if ((err == ENOSPC || err == EDQUOT) && j->nospace_until_ms == 0)
		log_error("journal", "journal disk full, ingest paused", "dir=%s bytes=%" PRIu64,
		    j->dir, total_bytes(j));
	if (err == ENOSPC || err == EDQUOT)
		j->nospace_until_ms = util_mono_ms() + NOSPACE_PAUSE_MS;
}

/* Writes the current segment's header (an empty file's). */
static int
write_header(struct journal *j)
{
	struct segment *s = &j->segs[j->nsegs - 1];
	uint8_t hdr[JOURNAL_HEADER_SIZE];
	char name[64];

	memcpy(hdr, JOURNAL_MAGIC_SEGMENT, 4);
	put32(hdr + 4, JOURNAL_VERSION);
	put64(hdr + 8, s->first_seq);
	memcpy(hdr + 16, j->id, 16);
	put32(hdr + 32, s->seed);
	put32(hdr + 36, journal_crc32c(0, hdr, JOURNAL_HEADER_SIZE - 4));
	j->header_missing = true;
	if (write_all(j->fd, hdr, sizeof(hdr)) != 0) {
		int err = errno;
		seg_name(name, sizeof(name), s->first_seq);
		log_errno(LOG_LVL_ERROR, "journal", "cannot write segment header", "file=%s", name);
		cut_back(j, err);
		return -1;
	}
	j->header_missing = false;
	j->written = sizeof(hdr);
	s->bytes = j->written;
	return 0;
}

/* Writes the buffer to the current segment, without syncing. */
static int
flush_buffer(struct journal *j)
{
	if (j->buflen == 0)
		return 0;
	if (write_all(j->fd, j->buf, j->buflen) != 0) {
		int err = errno;
		log_errno(LOG_LVL_ERROR, "journal", "write failed, not acknowledged", "bytes=%zu "
		    "records=%zu", j->buflen, j->pending);
		cut_back(j, err);
		return -1;
	}
	j->written += j->buflen;
	j->segs[j->nsegs - 1].bytes = j->written;
	j->buflen = 0;
	return 0;
}

int
journal_sync(struct journal *j)
{
	if (j->broken)
		return -1;
	if (j->pending == 0 && !j->dir_dirty && j->buflen == 0)
		return 0;
	if (j->fd >= 0 && flush_buffer(j) != 0)
		return -1;
	uint64_t t0 = util_mono_us();
	if (j->fd >= 0 && j->pending > 0 && fdatasync(j->fd) != 0) {
		int err = errno;
		/* What reached the disk is unknown now: never sync again as
		 * if it had worked. */
		log_errno(LOG_LVL_ERROR, "journal", "fdatasync failed, not acknowledged",
		    "records=%zu", j->pending);
		cut_back(j, err);
		return -1;
	}
	if (j->dir_dirty) {
		if (fsync(j->dirfd) != 0) {
			/* A segment's name may not be on disk: only recovery can
			 * tell what is. */
			log_errno(LOG_LVL_ERROR, "journal", "directory fsync failed, journal broken",
			    "dir=%s", j->dir);
			j->broken = true;
			return -1;
		}
		j->dir_dirty = false;
	}
	if (j->pending > 0) {
		metrics_observe(&metrics.fdatasync_seconds, (double)(util_mono_us() - t0) / 1e6);
		metrics_observe(&metrics.sync_messages, (double)j->pending);
	}
	if (j->pending > 0)
		j->syncs++;
	j->pending = 0;
	j->synced = j->written;
	j->durable_seq = j->next_seq - 1;
	if (j->nospace_until_ms != 0 && util_mono_ms() >= j->nospace_until_ms) {
		log_info("journal", "journal disk has room again", "dir=%s", j->dir);
		j->nospace_until_ms = 0;
	}
	return 0;
}

uint64_t
journal_durable_seq(const struct journal *j)
{
	return j->durable_seq;
}

uint64_t
journal_syncs(const struct journal *j)
{
	return j->syncs;
}

/* Closes the current segment (synced) and starts a new one at `first_seq`. */
static int
roll(struct journal *j, uint64_t first_seq)
{
	char name[64];
	uint32_t seed = 0;

	if (j->fd >= 0) {
		if (journal_sync(j) != 0)
			return -1;
		close(j->fd);
		j->fd = -1;
	}
	while (seed == 0)
		if (random_bytes(&seed, sizeof(seed)) != 0) {
			log_errno(LOG_LVL_ERROR, "journal", "cannot make a segment seed", "");
			return -1;
		}
	seg_name(name, sizeof(name), first_seq);
	j->fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
	if (j->fd < 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot create segment", "file=%s", name);
		return -1;
	}
	struct segment *s = add_segment(j, first_seq);
	if (s == NULL) {
		close(j->fd);
		j->fd = -1;
		unlinkat(j->dirfd, name, 0);
		return -1;
	}
	s->version = JOURNAL_VERSION;
	s->seed = seed;
	j->written = 0;
	j->synced = 0;
	j->dir_dirty = true;
	if (write_header(j) != 0)
		return -1;
	log_debug("journal", "segment created", "file=%s", name);
	return 0;
}

int
journal_append(struct journal *j, struct journal_record *rec)
{
	size_t n = record_size(rec);

	if (j->broken)
		return -1;
	if (rec->topic_len > UINT16_MAX) {
		log_error("journal", "topic too long", "bytes=%zu", rec->topic_len);
		return -1;
	}
	if (j->fd < 0 || (j->written + j->buflen + n > j->segment_size &&
	    j->segs[j->nsegs - 1].last_seq != 0)) {
		if (roll(j, j->next_seq) != 0)
			return -1;
	} else if (j->header_missing && write_header(j) != 0) {
		return -1;
	}
	if (buf_reserve(j, n) != 0) {
		log_error("journal", "out of memory", "bytes=%zu", n);
		return -1;
	}
	if (rec->received_us == 0)
		rec->received_us = util_wall_us();
	struct segment *s = &j->segs[j->nsegs - 1];
	rec->seq = j->next_seq++;

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
	body[24] = (uint8_t)rec->mid;
	body[25] = (uint8_t)(rec->mid >> 8);
	memcpy(body + JOURNAL_RECORD_FIXED, rec->topic, rec->topic_len);
	if (!(rec->flags & JOURNAL_OVERSIZE) && rec->payload_len > 0)
		memcpy(body + JOURNAL_RECORD_FIXED + rec->topic_len, rec->payload,
		    rec->payload_len);
	put32(p + 8, journal_crc32c(s->seed, body, len));
	j->buflen += n;
	j->pending++;
	s->last_seq = rec->seq;

	if (j->buflen >= JOURNAL_WRITE_CHUNK && flush_buffer(j) != 0)
		return -1;
	return 0;
}

static int ckpt_write(struct journal *j);

/* The database has stored records of this journal's id up to `floor`,
 * beyond what the journal held when it was opened (`from` - 1): it was put
 * back from an older copy. Numbers from `from` on were given again, to
 * other messages than the database's. Those records are copied, in order,
 * to numbers after both `floor` and the journal's end, made durable, and
 * then the checkpoint is moved past the old ones and synced: a crash
 * before that point leaves both (stored twice at worst, never lost); after
 * it, the copies alone. */
int
journal_renumber(struct journal *j, uint64_t from, uint64_t floor)
{
	if (j->broken)
		return -1;
	if (journal_sync(j) != 0)
		return -1;
	uint64_t last = j->next_seq - 1;
	uint64_t base = last > floor ? last : floor;
	uint64_t copied = 0;

	/* A new segment from base + 1: the numbers in between were never ours. */
	if (j->fd >= 0) {
		close(j->fd);
		j->fd = -1;
	}
	j->next_seq = base + 1;
	if (from <= last) {
		struct journal_reader *r = journal_reader_open(j->dir, from);
		if (r == NULL)
			return -1;
		journal_reader_set_limit(r, last);
		struct journal_record rec;
		int rc;
		while ((rc = journal_reader_next(r, &rec)) == 1) {
			struct journal_record copy = rec;
			if (journal_append(j, &copy) != 0) {
				rc = -1;
				break;
			}
			copied++;
		}
		journal_reader_free(r);
		if (rc < 0 || journal_sync(j) != 0) {
			log_error("journal", "cannot renumber the records", "dir=%s", j->dir);
			j->broken = true;
			return -1;
		}
	}
	if (base > j->checkpoint)
		j->checkpoint = base;
	if (ckpt_write(j) != 0 || fdatasync(j->ckfd) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot sync checkpoint", "seq=%" PRIu64, base);
		j->broken = true;
		return -1;
	}
	j->checkpoint_synced = j->checkpoint;
	reclaim(j);
	log_error("journal", "journal behind the database, numbered on from its checkpoint",
	    "dir=%s journal_id=%s journal_last_seq=%" PRIu64 " database_checkpoint=%" PRIu64
	    " records_renumbered=%" PRIu64 " next_seq=%" PRIu64, j->dir, j->id_text,
	    from - 1, floor, copied, base + copied + 1);
	return 0;
}

size_t
journal_pending(const struct journal *j)
{
	return j->pending;
}

/* Writes the in-memory checkpoint into the next slot (not synced). */
static int
ckpt_write(struct journal *j)
{
	uint8_t slot[CKPT_SLOT];

	if (j->checkpoint <= j->checkpoint_written)
		return 0;
	j->ckslot ^= 1;
	ckpt_slot(slot, j->checkpoint);
	if (pwrite(j->ckfd, slot, sizeof(slot), (off_t)(j->ckslot * CKPT_SLOT)) !=
	    (ssize_t)sizeof(slot)) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot write checkpoint",
		    "seq=%" PRIu64, j->checkpoint);
		return -1;
	}
	j->checkpoint_written = j->checkpoint;
	return 0;
}

/* Deletes the segments wholly behind the checkpoint, if any, after
 * making the checkpoint durable: after a crash the numbering must go on
 * from it. Returns 0 when there was nothing to delete. */
static int
reclaim_behind(struct journal *j)
{
	bool any = false;
	for (size_t i = 0; i < j->nsegs && !any; i++)
		any = segment_behind(j, i, j->checkpoint);
	if (!any)
		return 0;
	if (ckpt_write(j) != 0)
		return -1;
	if (fdatasync(j->ckfd) != 0) {
		log_errno(LOG_LVL_ERROR, "journal", "cannot sync checkpoint, segments kept",
		    "seq=%" PRIu64, j->checkpoint);
		return -1;
	}
	j->checkpoint_synced = j->checkpoint;
	reclaim(j);
	return 0;
}

int
journal_flush_checkpoint(struct journal *j)
{
	if (j->ckfd < 0)
		return 0;
	/* Full (or past half the cap) while nothing moves the checkpoint
	 * (the cap lowered, or the disk filled, after everything was
	 * stored): the segment being appended to is what ingest waits for. */
	if (reclaim_behind(j) != 0)
		return -1;
	return ckpt_write(j);
}

int
journal_checkpoint(struct journal *j, uint64_t seq)
{
	if (seq <= j->checkpoint)
		return 0;
	j->checkpoint = seq;
	/* Otherwise the file is written later (journal_flush_checkpoint):
	 * the database's checkpoint is the authority, this one only a floor. */
	return reclaim_behind(j);
}

void
journal_set_disk_cap(struct journal *j, uint64_t cap)
{
	j->disk_cap = cap;
}

void
journal_apply(struct journal *j, const struct config *cfg)
{
	journal_set_disk_cap(j, (uint64_t)cfg->journal_disk_cap);
}

bool
journal_full(const struct journal *j)
{
	if (j->nospace_until_ms != 0) {
		if (util_mono_ms() < j->nospace_until_ms)
			return true;
		struct statvfs vfs;
		if (fstatvfs(j->dirfd, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < NOSPACE_ROOM)
			return true;
	}
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
	if (j->ckfd >= 0) {
		ckpt_write(j);
		if (j->checkpoint != j->checkpoint_synced)
			fdatasync(j->ckfd);
		close(j->ckfd);
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
	bool have_header;	/* of the open segment */
	struct seg_check check;
	uint64_t off;		/* of the next record in the open segment */
	uint64_t want;		/* the next seq wanted: from_seq, then one past the last */
	uint8_t *buf;		/* read ahead: bytes [buf_off, buf_off + buflen) of the segment */
	size_t bufcap, buflen;
	uint64_t buf_off;
	uint64_t buf_limit;	/* the limit when it was read: bytes past it may be cut back */
	bool started;
};

/* What one read asks for at least: records are small, and a batch of them
 * is read with one system call. */
#define READ_AHEAD (64u * 1024)

struct journal_reader *
journal_reader_open(const char *dir, uint64_t from_seq)
{
	struct journal_reader *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->fd = -1;
	r->from_seq = from_seq;
	r->want = from_seq;
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
	r->have_header = false;
	r->started = true;
	r->buflen = 0;
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

/* Reads at `off` until at least `need` bytes (each read asking for up to
 * `cap`) or the end of the file; returns how many it got. */
static ssize_t
pread_some(int fd, void *buf, size_t need, size_t cap, uint64_t off)
{
	size_t got = 0;

	while (got < need) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, cap - got, (off_t)(off + got));
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

/* Reads up to `len` bytes at `off`; returns how many were there. */
static ssize_t
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	return pread_some(fd, buf, len, len, off);
}

/* Makes bytes [off, off + len) of the open segment available at *out,
 * from what was read ahead or with one read of at least READ_AHEAD bytes.
 * Returns how many of the `len` bytes there are (fewer at the end of the
 * file), or -1. Bytes read ahead stay valid: a segment is only appended
 * to, a shorter read is repeated rather than trusted, and a record read
 * past the limit of its time is read again (journal_reader_next). */
static ssize_t
reader_fetch(struct journal_reader *r, uint64_t off, size_t len, const uint8_t **out)
{
	if (off >= r->buf_off && off + len <= r->buf_off + r->buflen) {
		*out = r->buf + (off - r->buf_off);
		return (ssize_t)len;
	}
	size_t ask = len > READ_AHEAD ? len : READ_AHEAD;
	if (reader_grow(r, ask) != 0)
		return -1;
	r->buflen = 0;
	/* One read, unless it came back short of `len` (not to the end of
	 * the file: a second read only to hear "end of file" costs a system
	 * call per record at a low rate). */
	ssize_t got = pread_some(r->fd, r->buf, len, ask, off);
	if (got < 0)
		return -1;
	r->buf_off = off;
	r->buflen = (size_t)got;
	r->buf_limit = r->limit;
	*out = r->buf;
	return got < (ssize_t)len ? got : (ssize_t)len;
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

/* Reads the open segment's header. 1: read; 0: not all there yet (the
 * writer is making it); -1: unreadable (logged; the segment is left). */
static int
reader_header(struct journal_reader *r)
{
	uint8_t hdr[JOURNAL_HEADER_SIZE];
	uint64_t first;
	ssize_t got = pread_all(r->fd, hdr, sizeof(hdr), 0);

	if (got < 0) {
		log_errno(LOG_LVL_ERROR, "journal", "read failed", "");
		return -1;
	}
	long len = parse_header(hdr, (size_t)got, &r->check, &first, NULL);
	if (len > 0) {
		r->off = (uint64_t)len;
		r->have_header = true;
		return 1;
	}
	if (len == 0 && !reader_has_next(r))
		return 0;
	log_error("journal", "unreadable segment skipped by reader", "segment=%" PRIu64,
	    r->cur_first);
	close(r->fd);
	r->fd = -1;
	return -1;
}

int
journal_reader_next(struct journal_reader *r, struct journal_record *rec)
{
	for (;;) {
		/* Everything up to the limit was read: the live end, known
		 * without asking the file system. */
		if (r->limit != 0 && r->want > r->limit)
			return 0;
		if (r->fd < 0) {
			int rc = reader_advance(r);
			if (rc <= 0)
				return rc;
		}
		if (!r->have_header) {
			int rc = reader_header(r);
			if (rc <= 0)
				return rc;
		}
		const uint8_t *head;
		ssize_t got = reader_fetch(r, r->off, JOURNAL_RECORD_HEAD, &head);
		if (got < 0) {
			log_errno(LOG_LVL_ERROR, "journal", "read failed", "");
			return -1;
		}
		uint32_t len = got == JOURNAL_RECORD_HEAD ? get32(head + 4) : 0;
		bool head_ok = got == JOURNAL_RECORD_HEAD &&
		    get32(head) == JOURNAL_MAGIC_RECORD && len >= JOURNAL_RECORD_FIXED_V2 &&
		    len <= JOURNAL_RECORD_FIXED + UINT16_MAX + (256u << 20);
		long long n = 0;
		if (head_ok) {
			const uint8_t *whole;
			ssize_t b = reader_fetch(r, r->off, JOURNAL_RECORD_HEAD + (size_t)len, &whole);
			if (b < 0)
				return -1;
			n = parse_record(whole, (size_t)b, 0, &r->check, rec);
			if (n > 0 && !seq_fits(&r->check, rec->seq, 0))
				n = -1;
		} else if (got > 0 && got < JOURNAL_RECORD_HEAD) {
			n = 0;		/* incomplete head */
		} else if (got == 0) {
			n = 0;		/* end of this segment */
		} else {
			n = -1;
		}

		if (n > 0) {
			if (r->limit != 0 && rec->seq > r->limit)
				return 0;	/* not durable yet: read it later */
			if (r->limit != 0 && rec->seq > r->buf_limit) {
				/* Read ahead before it was durable: a failed sync may
				 * have cut it back and given its number to another
				 * message since. Read it again from the file. */
				r->buflen = 0;
				continue;
			}
			r->off += (uint64_t)n;
			r->check.expect = rec->seq + 1;
			if (rec->seq < r->from_seq)
				continue;
			r->want = rec->seq + 1;
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
		r->buflen = 0;	/* the buffer is the scan's now */
		ssize_t b = pread_all(r->fd, r->buf, rest, r->off);
		if (b < 0)
			return -1;
		struct journal_record probe;
		if (parse_record(r->buf, (size_t)b, 0, &r->check, &probe) > 0 &&
		    seq_fits(&r->check, probe.seq, 0))
			continue;	/* completed by the writer meanwhile */
		size_t next = find_next_valid(r->buf, (size_t)b, 1, 0, &r->check);
		log_error("journal", "damaged record skipped by reader", "segment=%" PRIu64
		    " offset=%" PRIu64 " bytes=%zu", r->cur_first, r->off, next);
		r->off += next;
		if (next < (size_t)b && parse_record(r->buf, (size_t)b, next, &r->check, &probe) > 0)
			r->check.expect = probe.seq;
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
