/* Unit tests for journal.c: what survives on disk, what recovery does. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "t.h"

static char dir[64];

static struct journal *
open_j(uint64_t seg, uint64_t cap)
{
	struct journal_options o = { .dir = dir, .segment_size = seg, .disk_cap = cap };
	return journal_open(&o);
}

static void
append_n(struct journal *j, int from, int n)
{
	char topic[64], payload[128];

	for (int i = from; i < from + n; i++) {
		snprintf(topic, sizeof(topic), "sac/c1/access/d%d/event", i % 3);
		int len = snprintf(payload, sizeof(payload), "{\"seq\":%d,\"pad\":\"xxxxxxxxxxxxxxxx\"}", i);
		struct journal_record r = { .qos = 1, .topic = topic, .topic_len = strlen(topic),
			.payload = payload, .payload_len = (uint32_t)len };
		if (journal_append(j, &r) != 0)
			abort();
	}
}

/* Reads everything; checks payload seq numbers run from..from+n-1 (minus
 * `skip`, if not 0). Returns the count read. */
static int
read_all(uint64_t from_seq, int *first_payload_seq, int *last_payload_seq)
{
	struct journal_reader *r = journal_reader_open(dir, from_seq);
	struct journal_record rec;
	int n = 0, rc;

	*first_payload_seq = *last_payload_seq = -1;
	while ((rc = journal_reader_next(r, &rec)) != 0) {
		if (rc < 0)
			continue;
		int s = -1;
		char text[64];
		size_t len = rec.payload_len < sizeof(text) - 1 ? rec.payload_len : sizeof(text) - 1;
		memcpy(text, rec.payload, len);	/* the payload is not NUL-terminated */
		text[len] = '\0';
		sscanf(text, "{\"seq\":%d", &s);
		if (n == 0)
			*first_payload_seq = s;
		*last_payload_seq = s;
		n++;
	}
	journal_reader_free(r);
	return n;
}

static int
count_files(const char *sub, const char *suffix)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (l > sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static off_t
file_size(const char *name)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_size : -1;
}


static void
rm_rf(const char *d)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d);
	if (system(cmd) != 0)
		abort();
}

static void
fresh_dir(void)
{
	rm_rf(dir);
	if (mkdir(dir, 0700) != 0)
		abort();
}

static void
put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void
put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* A record frame of journal `version` (3: with the mid, 0; 1 and 2:
 * without), its CRC from `seed`. With seed 0 it is a record as a device
 * could write it into its payload: every field right, the CRC computed
 * from 0 (the device cannot know the segment's seed). */
static size_t
record_frame(unsigned char *out, int version, uint64_t seq, uint32_t seed, const char *topic,
    const char *payload)
{
	size_t fixed = version >= 3 ? JOURNAL_RECORD_FIXED : JOURNAL_RECORD_FIXED_V2;
	size_t tl = strlen(topic), pl = strlen(payload);
	uint32_t len = (uint32_t)(fixed + tl + pl);
	unsigned char *body = out + JOURNAL_RECORD_HEAD;

	put_le32(out, JOURNAL_MAGIC_RECORD);
	put_le32(out + 4, len);
	put_le64(body, seq);
	put_le64(body + 8, 1700000000000000ull);
	body[16] = 1;
	body[17] = 0;
	body[18] = (unsigned char)tl;
	body[19] = 0;
	put_le32(body + 20, (uint32_t)pl);
	if (version >= 3)
		body[24] = body[25] = 0;	/* mid */
	memcpy(body + fixed, topic, tl);
	memcpy(body + fixed + tl, payload, pl);
	put_le32(out + 8, journal_crc32c(seed, body, len));
	return JOURNAL_RECORD_HEAD + len;
}

static int
read_topics(char topics[][64], int max)
{
	struct journal_reader *r = journal_reader_open(dir, 0);
	struct journal_record rec;
	int n = 0, rc;

	while ((rc = journal_reader_next(r, &rec)) != 0) {
		if (rc < 0 || n >= max)
			continue;
		snprintf(topics[n++], 64, "%.*s", (int)rec.topic_len, rec.topic);
	}
	journal_reader_free(r);
	return n;
}

/* A journal has an id of its own: kept across restarts, taken back from
 * the segments when the id file is lost, new for a new directory. */
static void
identity_tests(void)
{
	char id1[JOURNAL_ID_LEN + 1], id2[JOURNAL_ID_LEN + 1], got[JOURNAL_ID_LEN + 1];

	fresh_dir();
	struct journal *j = open_j(1 << 20, 1 << 30);
	T_CHECK(j != NULL);
	snprintf(id1, sizeof(id1), "%s", journal_id(j));
	T_INTEQ(strlen(id1), JOURNAL_ID_LEN);
	T_CHECK(id1[14] == '4');	/* UUID version 4 */
	append_n(j, 1, 10);
	journal_free(j);
	T_INTEQ(journal_read_id(dir, got), 0);
	T_STREQ(got, id1);

	j = open_j(1 << 20, 1 << 30);
	T_STREQ(journal_id(j), id1);
	journal_free(j);

	/* The id file lost: the segments say whose they are. */
	char path[160];
	snprintf(path, sizeof(path), "%s/id", dir);
	T_INTEQ(unlink(path), 0);
	j = open_j(1 << 20, 1 << 30);
	T_STREQ(journal_id(j), id1);
	journal_free(j);
	T_INTEQ(journal_read_id(dir, got), 0);
	T_STREQ(got, id1);

	/* A segment of another journal (copied in) is moved aside, not read. */
	char other[64];
	snprintf(other, sizeof(other), "%.56s.other", dir);
	rm_rf(other);
	char saved[64];
	snprintf(saved, sizeof(saved), "%s", dir);
	snprintf(dir, sizeof(dir), "%s", other);
	j = open_j(1 << 20, 1 << 30);
	snprintf(id2, sizeof(id2), "%s", journal_id(j));
	T_CHECK(strcmp(id1, id2) != 0);
	append_n(j, 500, 3);	/* seqs 1..3 of the other journal */
	journal_free(j);
	snprintf(dir, sizeof(dir), "%s", saved);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "cp %s/%020d.seg %s/%020d.seg", other, 1, dir, 11);
	T_INTEQ(system(cmd), 0);
	rm_rf(other);
	j = open_j(1 << 20, 1 << 30);
	T_CHECK(j != NULL);
	T_INTEQ(count_files("corrupt", ".bad"), 1);
	struct journal_stat st;
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 10);
	journal_free(j);
	int a, b;
	T_INTEQ(read_all(0, &a, &b), 10);

	/* An empty directory is a new journal. */
	fresh_dir();
	j = open_j(1 << 20, 1 << 30);
	T_CHECK(strcmp(journal_id(j), id1) != 0);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 0);
	journal_free(j);
}

/* Frames forged inside a payload are never taken for records: not after
 * a torn record, not with a number far ahead, not wrapping to 0. */
static void
forgery_tests(void)
{
	static const uint64_t seqs[] = { 3, 4, 1000, UINT64_MAX };

	for (size_t k = 0; k < sizeof(seqs) / sizeof(seqs[0]); k++) {
		fresh_dir();
		struct journal *j = open_j(1 << 20, 1 << 30);
		append_n(j, 1, 2);
		/* A payload holding a complete frame: a fake throwing alarm. */
		unsigned char frame[512];
		size_t fl = record_frame(frame, 3, seqs[k], 0, "sac/other/camera/cam9/alarm",
		    "{\"eventType\":\"HighAltitudeThrowing\"}");
		unsigned char payload[1024];
		memcpy(payload, "junk", 4);
		memcpy(payload + 4, frame, fl);
		memcpy(payload + 4 + fl, "tail-bytes-of-the-payload", 25);
		struct journal_record r = { .qos = 1, .topic = "sac/c1/camera/cam1/alarm",
			.topic_len = 24, .payload = payload, .payload_len = (uint32_t)(4 + fl + 25) };
		T_INTEQ(journal_append(j, &r), 0);
		journal_free(j);

		/* Tear the record inside the payload, after the forged frame. */
		char name[64], path[160];
		snprintf(name, sizeof(name), "%020d.seg", 1);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		off_t size = file_size(name);
		T_INTEQ(truncate(path, size - 10), 0);

		char topics[8][64];
		int n = read_topics(topics, 8);
		T_INTEQ(n, 2);	/* the reader sees neither the torn record nor the fake */
		j = open_j(1 << 20, 1 << 30);
		T_CHECK(j != NULL);
		struct journal_stat st;
		journal_stat(j, &st);
		T_INTEQ(st.last_seq, 2);	/* torn tail cut off, fake not taken */
		append_n(j, 3, 1);
		journal_stat(j, &st);
		T_INTEQ(st.last_seq, 3);
		journal_free(j);
		n = read_topics(topics, 8);
		T_INTEQ(n, 3);
		for (int i = 0; i < n; i++)
			T_CHECK(strstr(topics[i], "other") == NULL);
	}

	/* Damage in the middle: the next record is taken with a plausible
	 * number, a forged frame further on is not. */
	fresh_dir();
	struct journal *j = open_j(1 << 20, 1 << 30);
	append_n(j, 1, 1);
	unsigned char frame[512], payload[1024];
	size_t fl = record_frame(frame, 3, 1000000, 0, "sac/other/camera/cam9/alarm", "{}");
	memcpy(payload, frame, fl);
	struct journal_record r = { .qos = 1, .topic = "t/a", .topic_len = 3,
		.payload = payload, .payload_len = (uint32_t)fl };
	T_INTEQ(journal_append(j, &r), 0);
	append_n(j, 3, 1);
	journal_free(j);
	char name[64], path[160];
	snprintf(name, sizeof(name), "%020d.seg", 1);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	/* Break the head of record 2 (its magic): the scan starts in its bytes. */
	int fd = open(path, O_RDWR);
	unsigned char h[12];
	T_CHECK(pread(fd, h, 12, JOURNAL_HEADER_SIZE) == 12);
	uint32_t len0 = h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24;
	off_t second = JOURNAL_HEADER_SIZE + 12 + (off_t)len0;
	T_CHECK(pwrite(fd, "XXXX", 4, second) == 4);
	close(fd);
	j = open_j(1 << 20, 1 << 30);
	struct journal_stat st;
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 3);
	journal_free(j);
	char topics[8][64];
	T_INTEQ(read_topics(topics, 8), 2);
	T_CHECK(strstr(topics[1], "other") == NULL);
}

/* The checkpoint file: written in place, read back by a fresh process;
 * an earlier release's text file is taken over. */
static void
checkpoint_file_tests(void)
{
	fresh_dir();
	struct journal *j = open_j(4096, 1 << 30);
	append_n(j, 1, 300);
	journal_sync(j);
	for (uint64_t c = 10; c <= 200; c += 10)
		T_INTEQ(journal_checkpoint(j, c), 0);
	T_INTEQ(journal_flush_checkpoint(j), 0);
	T_INTEQ(journal_read_checkpoint(dir), 200);
	journal_free(j);
	T_INTEQ(journal_read_checkpoint(dir), 200);

	char path[160];
	snprintf(path, sizeof(path), "%s/checkpoint", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "250\n");
	fclose(f);
	T_INTEQ(journal_read_checkpoint(dir), 250);
	j = open_j(4096, 1 << 30);
	struct journal_stat st;
	journal_stat(j, &st);
	T_INTEQ(st.checkpoint_seq, 250);
	T_CHECK(st.first_seq > 200);
	T_INTEQ(journal_checkpoint(j, 260), 0);
	journal_free(j);
	T_INTEQ(journal_read_checkpoint(dir), 260);
	T_INTEQ(file_size("checkpoint"), 32);
}

/* Segments of a MiB or more are closed after their name is gone (on a
 * thread of their own): the names go at once, the descriptors soon after,
 * and the journal goes on. */
static void
big_segment_tests(void)
{
	struct journal_stat st;
	int a, b;

	fresh_dir();
	struct journal *j = open_j(1 << 20, 1 << 30);
	append_n(j, 1, 40000);
	T_INTEQ(journal_sync(j), 0);
	journal_stat(j, &st);
	T_CHECK(st.segments >= 3);
	int segs = count_files(".", ".seg"), fds = t_open_fds();
	T_INTEQ(segs, (int)st.segments);
	T_CHECK(fds > 0);
	T_INTEQ(journal_checkpoint(j, 39999), 0);
	T_INTEQ(journal_flush_checkpoint(j), 0);
	T_INTEQ(count_files(".", ".seg"), 1);
	journal_stat(j, &st);
	T_INTEQ(st.segments, 1);
	int now = t_open_fds();
	for (int i = 0; i < 500 && now > fds; i++) {
		usleep(10000);
		now = t_open_fds();
	}
	T_CHECK(now <= fds);
	append_n(j, 40001, 10);
	T_INTEQ(journal_sync(j), 0);
	journal_free(j);
	T_INTEQ(read_all(40000, &a, &b), 11);
	T_INTEQ(a, 40000);
	T_INTEQ(b, 40010);
}

/* Sizes of the deleted segments this process still holds open
 * (/proc/self/fd); returns how many, each size in sizes[]. */
static int
deleted_segment_sizes(off_t *sizes, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < max) {
		char path[300], target[PATH_MAX];
		struct stat st;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t l = readlink(path, target, sizeof(target) - 1);
		if (l <= 0)
			continue;
		target[l] = '\0';
		if (strstr(target, ".seg (deleted)") != NULL && stat(path, &st) == 0)
			sizes[n++] = st.st_size;
	}
	closedir(d);
	return n;
}

/* A deleted segment's blocks are given back a slice at a time before its
 * descriptor is closed: freed at once, a 64 MiB segment held up the next
 * fdatasync of the live one on a file system with online discard. Seen
 * from here: the deleted files shrink while still open, and are closed in
 * the end. */
static void
paced_free_tests(void)
{
	struct journal_stat st;
	off_t sizes[32];
	bool shrinking = false;
	int a, b, left = -1;

	fresh_dir();
	struct journal *j = open_j(4 << 20, 1 << 30);
	append_n(j, 1, 120000);
	T_INTEQ(journal_sync(j), 0);
	journal_stat(j, &st);
	T_CHECK(st.segments >= 3);
	T_INTEQ(deleted_segment_sizes(sizes, 32), 0);
	T_INTEQ(journal_checkpoint(j, 119999), 0);
	T_INTEQ(journal_flush_checkpoint(j), 0);
	T_INTEQ(count_files(".", ".seg"), 1);
	for (int i = 0; i < 20000 && left != 0; i++) {
		left = deleted_segment_sizes(sizes, 32);
		for (int k = 0; k < left; k++)
			if (sizes[k] > 0 && sizes[k] < (3 << 20))
				shrinking = true;
		usleep(250);
	}
	T_INTEQ(left, 0);
	T_CHECK(shrinking);
	append_n(j, 120001, 10);
	T_INTEQ(journal_sync(j), 0);
	journal_free(j);
	T_INTEQ(read_all(120000, &a, &b), 11);
	T_INTEQ(a, 120000);
	T_INTEQ(b, 120010);
}

/* The live end and a full journal, in a directory of their own. */
static void
live_end_tests(void)
{
	struct journal_stat st;
	struct journal *j;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
	if (system(cmd) != 0)
		abort();
	/* A full journal deletes even the segment being appended to once the
	 * checkpoint passes it: the space is what ingest waits for. */
	j = open_j(1 << 20, 1 << 30);
	append_n(j, 1, 50);
	T_INTEQ(journal_sync(j), 0);
	journal_stat(j, &st);
	journal_set_disk_cap(j, st.bytes);
	T_CHECK(journal_full(j));
	T_INTEQ(journal_checkpoint(j, 50), 0);
	T_CHECK(!journal_full(j));
	journal_stat(j, &st);
	T_INTEQ(st.segments, 0);
	T_INTEQ(journal_read_checkpoint(dir), 50);
	append_n(j, 51, 2);
	T_INTEQ(journal_sync(j), 0);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 52);
	T_INTEQ(st.segments, 1);

	/* A reader with a limit knows the live end without the directory:
	 * no listing per commit (the directory moved away proves it). */
	struct journal_reader *lr = journal_reader_open(dir, 51);
	struct journal_record lrec;
	journal_reader_set_limit(lr, 52);
	T_INTEQ(journal_reader_next(lr, &lrec), 1);
	T_INTEQ(lrec.seq, 51);
	T_INTEQ(journal_reader_next(lr, &lrec), 1);
	T_INTEQ(lrec.seq, 52);
	char moved[160];
	snprintf(moved, sizeof(moved), "%s.moved", dir);
	T_INTEQ(rename(dir, moved), 0);
	T_INTEQ(journal_reader_next(lr, &lrec), 0);
	T_INTEQ(journal_reader_next(lr, &lrec), 0);
	T_INTEQ(rename(moved, dir), 0);
	/* Records after the limit are read from what was read ahead or the
	 * file, once the limit allows them. */
	append_n(j, 53, 3);
	T_INTEQ(journal_sync(j), 0);
	T_INTEQ(journal_reader_next(lr, &lrec), 0);
	journal_reader_set_limit(lr, 55);
	for (uint64_t want = 53; want <= 55; want++) {
		T_INTEQ(journal_reader_next(lr, &lrec), 1);
		T_INTEQ(lrec.seq, want);
	}
	T_INTEQ(journal_reader_next(lr, &lrec), 0);
	journal_reader_free(lr);

	/* Past half the cap (but not full) the segment being appended to goes
	 * too once stored: a small cap must never pause ingest for it. */
	journal_set_disk_cap(j, 1 << 30);
	append_n(j, 56, 40);
	T_INTEQ(journal_sync(j), 0);
	journal_stat(j, &st);
	journal_set_disk_cap(j, st.bytes * 2 - 1);
	T_CHECK(!journal_full(j));
	T_INTEQ(journal_checkpoint(j, 95), 0);
	journal_stat(j, &st);
	T_INTEQ(st.segments, 0);
	journal_set_disk_cap(j, 1 << 30);
	append_n(j, 96, 1);
	T_INTEQ(journal_checkpoint(j, 96), 0);
	journal_stat(j, &st);
	T_INTEQ(st.segments, 1);	/* far below half: kept */

	journal_free(j);
}

/* One record of `len` bytes of `fill`. */
static void
append_fill(struct journal *j, char fill, size_t len)
{
	char *p = malloc(len);
	memset(p, fill, len);
	struct journal_record r = { .qos = 1, .topic = "t/x", .topic_len = 3, .payload = p,
		.payload_len = (uint32_t)len };
	if (journal_append(j, &r) != 0)
		abort();
	free(p);
}

static off_t
first_segment_size(char *path, size_t len)
{
	struct stat st;
	snprintf(path, len, "%s/%020d.seg", dir, 1);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A journal put back from an older copy: the database has its records up
 * to 20, the journal ends at 10 and took 3 more since it was opened. */
static void
renumber_tests(void)
{
	struct journal_stat st;
	struct journal_record rec;

	fresh_dir();
	struct journal *j = open_j(1 << 20, 1 << 30);
	append_n(j, 1, 10);
	T_INTEQ(journal_sync(j), 0);
	journal_free(j);

	j = open_j(1 << 20, 1 << 30);
	append_n(j, 11, 3);		/* numbered 11..13 again */
	T_INTEQ(journal_renumber(j, 11, 20), 0);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 23);
	T_INTEQ(st.checkpoint_seq, 20);
	T_INTEQ(journal_durable_seq(j), 23);
	T_INTEQ(journal_read_checkpoint(dir), 20);
	append_n(j, 14, 1);
	T_INTEQ(journal_sync(j), 0);

	/* the copies carry the payloads, in order, from 21 on */
	struct journal_reader *r = journal_reader_open(dir, 21);
	for (int i = 0; i < 4; i++) {
		T_INTEQ(journal_reader_next(r, &rec), 1);
		T_INTEQ(rec.seq, (uint64_t)(21 + i));
		char want[32];
		int n = snprintf(want, sizeof(want), "{\"seq\":%d,", 11 + i);
		T_CHECK(rec.payload_len > (uint32_t)n && memcmp(rec.payload, want, (size_t)n) == 0);
	}
	T_INTEQ(journal_reader_next(r, &rec), 0);
	journal_reader_free(r);
	journal_free(j);

	/* reopened: numbering goes on after the copies; the old ones are gone */
	j = open_j(1 << 20, 1 << 30);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 24);
	T_INTEQ(st.first_seq, 21);
	journal_free(j);

	/* nothing taken since opening: only the numbering moves on */
	fresh_dir();
	j = open_j(1 << 20, 1 << 30);
	append_n(j, 1, 5);
	T_INTEQ(journal_renumber(j, 6, 9), 0);
	append_n(j, 6, 1);
	T_INTEQ(journal_sync(j), 0);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 10);
	journal_free(j);
	r = journal_reader_open(dir, 10);
	T_INTEQ(journal_reader_next(r, &rec), 1);
	T_INTEQ(rec.seq, 10);
	journal_reader_free(r);
}

/* What the read-ahead must not do. */
static void
read_ahead_tests(void)
{
	struct journal_record rec;
	struct journal_reader *r;
	struct journal_stat st;
	char cmd[160], path[160];
	int rc;

	/* Bytes read ahead past the durable end are read again once the limit
	 * allows them: a failed sync cuts them back (simulated by truncating
	 * to the synced size) and their numbers go to other messages. */
	snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
	if (system(cmd) != 0)
		abort();
	struct journal *j = open_j(64 << 20, 1ull << 30);
	for (int i = 0; i < 3; i++)
		append_fill(j, 'a', 100);
	T_INTEQ(journal_sync(j), 0);
	off_t durable = first_segment_size(path, sizeof(path));
	for (int i = 0; i < 8000; i++)
		append_fill(j, 'O', 100);	/* > 1 MiB: written, not synced */
	r = journal_reader_open(dir, 1);
	journal_reader_set_limit(r, 3);
	while ((rc = journal_reader_next(r, &rec)) == 1)
		;
	T_INTEQ(rc, 0);
	T_INTEQ(truncate(path, durable), 0);
	struct journal *j2 = open_j(64 << 20, 1ull << 30);	/* j abandoned, as in a crash */
	for (int i = 0; i < 5; i++)
		append_fill(j2, 'N', 100);
	T_INTEQ(journal_sync(j2), 0);
	journal_reader_set_limit(r, journal_durable_seq(j2));
	T_INTEQ(journal_reader_next(r, &rec), 1);
	T_INTEQ(rec.seq, 4);
	T_CHECK(rec.payload != NULL && ((const char *)rec.payload)[0] == 'N');
	journal_reader_free(r);
	journal_free(j2);
	journal_free(j);	/* its buffered records land after j2's: the directory goes next */

	/* 8 to 11 bytes of a record's head at the live end are an incomplete
	 * record, read once the writer completes it, not damage. */
	if (system(cmd) != 0)
		abort();
	j = open_j(64 << 20, 1ull << 30);
	for (int i = 0; i < 4; i++)
		append_fill(j, 'b', 100);
	journal_free(j);
	off_t full = first_segment_size(path, sizeof(path));
	off_t rsz = JOURNAL_RECORD_HEAD + JOURNAL_RECORD_FIXED + 3 + 100, off4 = full - rsz;
	int fd = open(path, O_RDWR);
	char *tail = malloc((size_t)rsz);
	T_INTEQ(pread(fd, tail, (size_t)rsz, off4), rsz);
	T_INTEQ(ftruncate(fd, off4 + 10), 0);
	r = journal_reader_open(dir, 1);
	while ((rc = journal_reader_next(r, &rec)) == 1)
		;
	T_INTEQ(rc, 0);
	T_INTEQ(pwrite(fd, tail + 10, (size_t)rsz - 10, off4 + 10), rsz - 10);
	close(fd);
	free(tail);
	T_INTEQ(journal_reader_next(r, &rec), 1);
	T_INTEQ(rec.seq, 4);
	journal_reader_free(r);

	/* Full after everything was stored (the cap lowered): nothing moves
	 * the checkpoint any more, so the periodic flush frees the segment
	 * being appended to. */
	if (system(cmd) != 0)
		abort();
	j = open_j(1 << 20, 1ull << 30);
	for (int i = 0; i < 100; i++)
		append_fill(j, 'c', 100);
	T_INTEQ(journal_sync(j), 0);
	T_INTEQ(journal_checkpoint(j, 100), 0);
	journal_set_disk_cap(j, 4096);
	T_CHECK(journal_full(j));
	T_INTEQ(journal_flush_checkpoint(j), 0);
	journal_stat(j, &st);
	T_CHECK(!st.full);
	T_INTEQ(st.segments, 0);
	T_INTEQ(journal_read_checkpoint(dir), 100);
	journal_free(j);
}

/* Records keep the MQTT packet id (version 3); a version 2 segment left by
 * an earlier release is still read (mid 0), and appends go to a new
 * version 3 segment after it. */
static void
test_mid_and_version2(void)
{
	unsigned char seg[4096];
	uint32_t seed = 0x5eed1234u;
	size_t n = 0;

	fresh_dir();
	memcpy(seg, JOURNAL_MAGIC_SEGMENT, 4);
	put_le32(seg + 4, 2);
	put_le64(seg + 8, 1);
	for (int i = 0; i < 16; i++)
		seg[16 + i] = (unsigned char)(0xa0 + i);
	seg[22] = (unsigned char)((seg[22] & 0x0f) | 0x40);
	seg[24] = (unsigned char)((seg[24] & 0x3f) | 0x80);
	put_le32(seg + 32, seed);
	put_le32(seg + 36, journal_crc32c(0, seg, JOURNAL_HEADER_SIZE - 4));
	n = JOURNAL_HEADER_SIZE;
	n += record_frame(seg + n, 2, 1, seed, "sac/c1/door/d1/state", "{\"seq\":1}");
	n += record_frame(seg + n, 2, 2, seed, "sac/c1/door/d1/state", "{\"seq\":2}");
	char path[128];
	snprintf(path, sizeof(path), "%s/%020d.seg", dir, 1);
	FILE *f = fopen(path, "wb");
	T_CHECK(f != NULL && fwrite(seg, 1, n, f) == n);
	fclose(f);

	struct journal *j = open_j(1 << 20, 1 << 30);
	T_CHECK(j != NULL);
	struct journal_record add = { .qos = 1, .mid = 4242, .topic = "sac/c1/door/d1/state",
		.topic_len = 20, .payload = "{\"seq\":3}", .payload_len = 9 };
	T_INTEQ(journal_append(j, &add), 0);
	T_INTEQ(add.seq, 3);
	struct journal_record q0 = { .qos = 0, .topic = "t", .topic_len = 1, .payload = "x",
		.payload_len = 1 };
	T_INTEQ(journal_append(j, &q0), 0);
	journal_free(j);
	T_INTEQ(count_files("", ".seg"), 2);

	struct journal_reader *r = journal_reader_open(dir, 0);
	struct journal_record rec;
	uint16_t mids[4] = { 9, 9, 9, 9 };
	int k = 0;
	while (journal_reader_next(r, &rec) == 1 && k < 4) {
		T_INTEQ(rec.seq, (uint64_t)k + 1);
		mids[k++] = rec.mid;
	}
	journal_reader_free(r);
	T_INTEQ(k, 4);
	T_INTEQ(mids[0], 0);
	T_INTEQ(mids[1], 0);
	T_INTEQ(mids[2], 4242);
	T_INTEQ(mids[3], 0);
	int a, b;
	T_INTEQ(read_all(0, &a, &b), 4);
	T_INTEQ(a, 1);

	/* The new segment is version 3. */
	snprintf(path, sizeof(path), "%s/%020d.seg", dir, 3);
	f = fopen(path, "rb");
	T_CHECK(f != NULL && fread(seg, 1, 8, f) == 8);
	fclose(f);
	T_INTEQ(seg[4], JOURNAL_VERSION);
	T_INTEQ(JOURNAL_VERSION, 3);
}

/* A new journal with records 1..n, synced, all behind the checkpoint. */
static struct journal *
stored_journal(const struct journal_options *o, int n)
{
	fresh_dir();
	struct journal *j = journal_open(o);
	T_CHECK(j != NULL);
	if (j == NULL)
		abort();
	append_n(j, 1, n);
	T_INTEQ(journal_sync(j), 0);
	T_INTEQ(journal_checkpoint(j, (uint64_t)n), 0);
	return j;
}

/* keep_records: the last two segments stay behind the checkpoint while
 * they hold any of the journal's last keep_records records, at open as
 * well, and while the journal is under half its cap. The daemon's next
 * start recognises the broker's redelivery of messages stored but never
 * acknowledged from them (mqtt_recall); deleted at open because
 * everything was stored, they were journaled again. */
static void
keep_tests(void)
{
	/* about 40 records a segment: the last 30 are in at most two */
	struct journal_options o = { .dir = dir, .segment_size = 4096, .disk_cap = 1 << 30,
		.keep_records = 30 };
	struct journal_stat st;
	int a, b;

	struct journal *j = stored_journal(&o, 400);
	journal_stat(j, &st);
	T_CHECK(st.segments >= 1 && st.segments <= 2);
	/* the segment with record 371 and the one after it, if any */
	int kept = read_all(0, &a, &b);
	T_CHECK(a >= 300 && a <= 371);
	T_INTEQ(b, 400);
	T_INTEQ(kept, 400 - a + 1);
	journal_free(j);

	/* Reopened with every record behind the checkpoint: still there. */
	j = journal_open(&o);
	T_CHECK(j != NULL);
	T_INTEQ(read_all(0, &a, &b), kept);
	T_INTEQ(b, 400);
	/* What is kept moves on with the appends. */
	append_n(j, 401, 200);
	T_INTEQ(journal_sync(j), 0);
	T_INTEQ(journal_checkpoint(j, 600), 0);
	read_all(0, &a, &b);
	T_CHECK(a >= 500 && a <= 571);
	T_INTEQ(b, 600);
	/* Past half the cap the space comes first: all of it goes. */
	journal_stat(j, &st);
	journal_set_disk_cap(j, st.bytes);
	T_INTEQ(journal_flush_checkpoint(j), 0);
	T_INTEQ(read_all(0, &a, &b), 0);
	journal_free(j);

	/* Never more than two segments, however many records are asked for. */
	o.keep_records = 100000;
	j = stored_journal(&o, 400);
	journal_stat(j, &st);
	T_CHECK(st.segments <= 2);
	T_CHECK(read_all(0, &a, &b) < 100);
	T_INTEQ(b, 400);
	journal_free(j);

	/* Without keep_records, the open deletes what is behind the checkpoint. */
	o.keep_records = 0;
	journal_free(stored_journal(&o, 100));
	j = journal_open(&o);
	T_INTEQ(read_all(0, &a, &b), 0);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 100);
	journal_free(j);
}

int
main(void)
{
	struct journal_stat st;
	int a, b;

	log_set_fd(-1);
	strcpy(dir, "/tmp/gb-journal-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 99;

	/* CRC-32C check value. */
	T_INTEQ(journal_crc32c(0, "123456789", 9), 0xE3069283u);

	/* Append, sync, reopen: everything is there, in order. */
	struct journal *j = open_j(1 << 20, 1 << 30);
	T_CHECK(j != NULL);
	append_n(j, 1, 100);
	T_INTEQ(journal_pending(j), 100);
	T_INTEQ(journal_sync(j), 0);
	T_INTEQ(journal_pending(j), 0);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 100);
	T_INTEQ(st.segments, 1);
	journal_free(j);
	T_INTEQ(read_all(0, &a, &b), 100);
	T_INTEQ(a, 1);
	T_INTEQ(b, 100);
	T_INTEQ(read_all(51, &a, &b), 50);
	T_INTEQ(a, 51);

	/* Sequence numbers resume after a restart. */
	j = open_j(1 << 20, 1 << 30);
	append_n(j, 101, 1);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 101);
	journal_free(j);	/* syncs */
	T_INTEQ(read_all(0, &a, &b), 101);

	/* Small segments roll; the reader crosses them. */
	j = open_j(4096, 1 << 30);
	append_n(j, 102, 400);
	journal_sync(j);
	journal_stat(j, &st);
	T_CHECK(st.segments > 5);
	T_INTEQ(read_all(0, &a, &b), 501);
	T_INTEQ(b, 501);
	uint64_t recs, dmg;
	struct journal_stat ds;
	T_INTEQ(journal_dir_stat(dir, &ds, &recs, &dmg), 0);
	T_INTEQ(recs, 501);
	T_INTEQ(dmg, 0);
	T_INTEQ(ds.last_seq, 501);
	T_INTEQ(ds.segments, st.segments);

	/* The cap: full at or above it, free again after a checkpoint. */
	journal_set_disk_cap(j, st.bytes);
	T_CHECK(journal_full(j));
	T_INTEQ(journal_checkpoint(j, 400), 0);
	T_CHECK(!journal_full(j));
	journal_stat(j, &st);
	T_INTEQ(st.checkpoint_seq, 400);
	T_CHECK(st.first_seq <= 401);
	T_CHECK(st.first_seq > 300);
	T_INTEQ(read_all(401, &a, &b), 101);
	T_INTEQ(a, 401);
	journal_free(j);
	T_INTEQ(journal_read_checkpoint(dir), 400);

	/* Everything checkpointed: the segment being appended to stays (no
	 * file made and deleted per commit at a low rate), the others go. */
	j = open_j(4096, 1 << 30);
	T_INTEQ(journal_checkpoint(j, 501), 0);
	journal_stat(j, &st);
	T_INTEQ(st.segments, 1);
	T_INTEQ(count_files(".", ".seg"), 1);
	journal_free(j);
	/* ... and goes at the next open, which appends to nothing yet:
	 * numbering still continues. */
	j = open_j(4096, 1 << 30);
	journal_stat(j, &st);
	T_INTEQ(st.segments, 0);
	T_INTEQ(count_files(".", ".seg"), 0);
	append_n(j, 502, 1);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 502);
	journal_free(j);

	/* Torn tail: half a record at the end is cut off and kept aside. */
	char name[64];
	snprintf(name, sizeof(name), "%020d.seg", 502);
	off_t before = file_size(name);
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_APPEND);
	const char junk[] = "GBRJ\x40\x00\x00\x00partial";
	T_CHECK(write(fd, junk, sizeof(junk) - 1) == (ssize_t)sizeof(junk) - 1);
	close(fd);
	j = open_j(4096, 1 << 30);
	T_CHECK(j != NULL);
	T_INTEQ(file_size(name), before);
	T_INTEQ(count_files("corrupt", ".bad"), 1);
	append_n(j, 503, 3);
	journal_stat(j, &st);
	T_INTEQ(st.last_seq, 505);
	journal_free(j);
	T_INTEQ(read_all(502, &a, &b), 4);

	/* Corrupt middle record: moved aside, the rest survives. */
	fd = open(path, O_RDWR);
	/* second record of the segment: header + first record */
	unsigned char hdr[12];
	T_CHECK(pread(fd, hdr, 12, JOURNAL_HEADER_SIZE) == 12);
	uint32_t len0 = hdr[4] | hdr[5] << 8 | hdr[6] << 16 | (uint32_t)hdr[7] << 24;
	off_t second = JOURNAL_HEADER_SIZE + 12 + (off_t)len0;
	unsigned char c;
	T_CHECK(pread(fd, &c, 1, second + 12 + 30) == 1);
	c ^= 0xff;
	T_CHECK(pwrite(fd, &c, 1, second + 12 + 30) == 1);
	close(fd);
	T_INTEQ(journal_dir_stat(dir, &ds, &recs, &dmg), 0);
	T_INTEQ(dmg, 1);	/* readers see the damage before recovery */
	j = open_j(4096, 1 << 30);
	T_CHECK(j != NULL);
	T_INTEQ(count_files("corrupt", ".bad"), 2);
	journal_free(j);
	T_INTEQ(read_all(502, &a, &b), 3);	/* 502, 504, 505 */
	T_INTEQ(a, 502);
	T_INTEQ(b, 505);
	T_INTEQ(journal_dir_stat(dir, &ds, &recs, &dmg), 0);
	T_INTEQ(dmg, 0);

	/* Oversize records keep topic and length only. */
	j = open_j(4096, 1 << 30);
	struct journal_record big = { .qos = 1, .flags = JOURNAL_OVERSIZE, .topic = "t/x",
		.topic_len = 3, .payload = NULL, .payload_len = 5000000 };
	T_INTEQ(journal_append(j, &big), 0);
	journal_free(j);
	struct journal_reader *r = journal_reader_open(dir, big.seq);
	struct journal_record rec;
	T_INTEQ(journal_reader_next(r, &rec), 1);
	T_INTEQ(rec.payload_len, 5000000);
	T_CHECK(rec.payload == NULL);
	T_CHECK(rec.flags & JOURNAL_OVERSIZE);
	T_INTEQ(journal_reader_next(r, &rec), 0);
	journal_reader_free(r);

	identity_tests();
	forgery_tests();
	checkpoint_file_tests();
	big_segment_tests();
	paced_free_tests();
	live_end_tests();
	read_ahead_tests();
	renumber_tests();
	keep_tests();
	test_mid_and_version2();

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 99;
	return t_done();
}
