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
		sscanf((const char *)rec.payload, "{\"seq\":%d", &s);
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

	/* Everything checkpointed and deleted: numbering still continues. */
	j = open_j(4096, 1 << 30);
	T_INTEQ(journal_checkpoint(j, 501), 0);
	journal_stat(j, &st);
	T_INTEQ(st.segments, 0);
	journal_free(j);
	j = open_j(4096, 1 << 30);
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
	/* second record of the segment: header 16 + first record */
	unsigned char hdr[12];
	T_CHECK(pread(fd, hdr, 12, 16) == 12);
	uint32_t len0 = hdr[4] | hdr[5] << 8 | hdr[6] << 16 | (uint32_t)hdr[7] << 24;
	off_t second = 16 + 12 + (off_t)len0;
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

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 99;
	return t_done();
}
