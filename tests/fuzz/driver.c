/* driver.c — runs a fuzz target without libFuzzer.
 *
 *   fuzz_X [-n ITERATIONS] [-s SEED] FILE|DIR...
 *
 * Replays every file given (directories: every file in them), then runs
 * ITERATIONS random mutations of them (bit flips, byte changes, inserts,
 * deletions, truncation, splices). Built with the sanitizers, a crash or a
 * report fails the test. With GRIDBRIDGE_FUZZ_SECONDS set (scripts/test
 * --long), mutations run for that many seconds instead. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fuzz.h"

struct input {
	uint8_t *data;
	size_t size;
};

static struct input *inputs;
static size_t ninputs;

static void
add_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return;
	struct input in = { NULL, 0 };
	size_t cap = 0;
	int c;
	while ((c = fgetc(f)) != EOF) {
		if (in.size == cap) {
			cap = cap ? cap * 2 : 256;
			in.data = realloc(in.data, cap);
			if (in.data == NULL)
				abort();
		}
		in.data[in.size++] = (uint8_t)c;
	}
	fclose(f);
	inputs = realloc(inputs, (ninputs + 1) * sizeof(*inputs));
	if (inputs == NULL)
		abort();
	inputs[ninputs++] = in;
}

static void
add_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		add_file(path);
		return;
	}
	DIR *d = opendir(path);
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		add_file(p);
	}
	if (d != NULL)
		closedir(d);
}

static uint64_t rng;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

int
main(int argc, char **argv)
{
	long iterations = 0;
	int i = 1;

	rng = 0x9E3779B97F4A7C15ull;
	for (; i < argc && argv[i][0] == '-'; i += 2) {
		if (i + 1 >= argc)
			return 2;
		if (strcmp(argv[i], "-n") == 0)
			iterations = strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "-s") == 0)
			rng = strtoull(argv[i + 1], NULL, 10) | 1;
		else
			return 2;
	}
	for (; i < argc; i++)
		add_path(argv[i]);
	if (ninputs == 0) {
		fprintf(stderr, "no inputs\n");
		return 2;
	}
	for (size_t k = 0; k < ninputs; k++)
		LLVMFuzzerTestOneInput(inputs[k].data, inputs[k].size);

	const char *secs = getenv("GRIDBRIDGE_FUZZ_SECONDS");
	time_t until = 0;
	if (secs != NULL && atol(secs) > 0) {
		until = time(NULL) + atol(secs);
		iterations = -1;
	}
	uint8_t *buf = NULL;
	long it;
	for (it = 0; until != 0 ? (it % 1024 != 0 || time(NULL) < until) : it < iterations;
	    it++) {
		struct input *src = &inputs[rnd() % ninputs];
		size_t size = src->size, cap = size * 2 + 64;
		buf = realloc(buf, cap);
		if (buf == NULL)
			abort();
		if (size > 0)
			memcpy(buf, src->data, size);
		int edits = 1 + (int)(rnd() % 8);
		for (int e = 0; e < edits; e++) {
			size_t pos = size ? rnd() % size : 0;
			switch (rnd() % 6) {
			case 0: if (size) buf[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
			case 1: if (size) buf[pos] = (uint8_t)rnd(); break;
			case 2: if (size + 1 < cap) {
					memmove(buf + pos + 1, buf + pos, size - pos);
					buf[pos] = (uint8_t)rnd();
					size++;
				}
				break;
			case 3: if (size) {
					memmove(buf + pos, buf + pos + 1, size - pos - 1);
					size--;
				}
				break;
			case 4: size = pos; break;
			case 5: {
				struct input *o = &inputs[rnd() % ninputs];
				size_t n = o->size ? rnd() % o->size : 0;
				if (n > 0 && pos + n <= cap) {
					memcpy(buf + pos, o->data, n);
					if (pos + n > size)
						size = pos + n;
				}
				break;
			}
			}
		}
		LLVMFuzzerTestOneInput(buf, size);
	}
	free(buf);
	printf("fuzz: %zu inputs replayed, %ld mutations run\n", ninputs, it);
	return 0;
}
