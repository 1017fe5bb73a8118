/*
 * The benchmark's process: a small long-running program that holds its
 * files open, the same for every variant.
 *
 *   holder DIR MAX_OPEN READY_FILE [append|rewrite]
 *
 * Changes its working directory to DIR, opens (read-only) up to MAX_OPEN
 * regular files found there, sorted by name, creates READY_FILE and then
 * sleeps until it is killed. With "append", it appends 10 KiB to
 * DIR/append.log every 10 ms (1 MB/s) instead, from empty; with "rewrite", it opens
 * the files read-write and rewrites them in place, 1 MiB at a time, over
 * and over, as fast as it can.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	struct dirent *de;
	char **names = NULL;
	size_t nr = 0, cap = 0, i, max;
	const char *mode = argc > 4 ? argv[4] : "";
	static char buf[1 << 20];
	int fds[64], log = -1;
	DIR *d;
	int fd;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: holder DIR MAX_OPEN READY_FILE [append|rewrite]\n");
		return 2;
	}
	max = strtoul(argv[2], NULL, 10);
	if (chdir(argv[1])) {
		perror(argv[1]);
		return 1;
	}
	d = opendir(".");
	if (!d) {
		perror(argv[1]);
		return 1;
	}
	while ((de = readdir(d))) {
		if (de->d_type != DT_REG)
			continue;
		if (nr == cap) {
			cap = cap ? 2 * cap : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				return 1;
		}
		names[nr++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, nr, sizeof(*names), cmp);

	for (i = 0; i < nr && i < max; i++) {
		fds[i % 64] = open(names[i], strcmp(mode, "rewrite") ? O_RDONLY : O_RDWR);
		if (fds[i % 64] < 0) {
			perror(names[i]);
			return 1;
		}
	}
	if (!strcmp(mode, "append")) {
		log = open("append.log", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644);
		if (log < 0) {
			perror("append.log");
			return 1;
		}
	}

	fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(argv[3]);
		return 1;
	}
	close(fd);

	memset(buf, 'a', sizeof(buf));
	if (log >= 0) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		for (;;) {
			if (write(log, buf, 10 * 1024) < 0)
				return 1;
			nanosleep(&ts, NULL);
		}
	}
	if (!strcmp(mode, "rewrite")) {
		for (unsigned n = 0;; n++) {
			for (i = 0; i < nr && i < max && i < 64; i++) {
				struct stat st;
				off_t off;

				if (fstat(fds[i], &st))
					return 1;
				buf[0] = n;
				for (off = 0; off < st.st_size; off += sizeof(buf))
					if (pwrite(fds[i], buf, st.st_size - off < sizeof(buf) ? st.st_size - off : sizeof(buf),
						   off) < 0)
						return 1;
			}
		}
	}
	for (;;)
		pause();
}
