/* Fuzz target: journal recovery and the journal reader, on a segment file
 * with arbitrary contents. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "journal.h"
#include "log.h"

static char dir[64];

static int
remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
cleanup(void)
{
	nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128];
	struct journal_stat st;
	struct journal_record rec;
	uint64_t records, damaged;

	log_set_fd(-1);
	if (dir[0] == '\0') {
		strcpy(dir, "/tmp/gb-fuzz-journal-XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
		atexit(cleanup);
	}
	cleanup();
	if (mkdir(dir, 0700) != 0)
		abort();
	snprintf(path, sizeof(path), "%s/%020d.seg", dir, 1);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	/* Readers first (they must cope with damage), then recovery, then
	 * readers again (recovery must leave only valid records). */
	journal_dir_stat(dir, &st, &records, &damaged);
	struct journal_options o = { .dir = dir, .segment_size = 1 << 20, .disk_cap = 1 << 30 };
	struct journal *j = journal_open(&o);
	if (j != NULL) {
		struct journal_record add = { .qos = 1, .topic = "t", .topic_len = 1,
			.payload = "x", .payload_len = 1 };
		journal_append(j, &add);
		journal_free(j);
		journal_dir_stat(dir, &st, &records, &damaged);
		if (damaged != 0)
			abort();	/* recovery left damage behind */
		struct journal_reader *r = journal_reader_open(dir, 0);
		int n = 0;
		while (journal_reader_next(r, &rec) == 1 && n < 100000)
			n++;
		journal_reader_free(r);
	}
	return 0;
}
