/*
 * The benchmark's process: a small long-running program that holds its
 * files open, the same for every variant.
 *
 *   holder DIR MAX_OPEN READY_FILE
 *
 * Changes its working directory to DIR, opens (read-only) up to MAX_OPEN
 * regular files found there, sorted by name, creates READY_FILE and then
 * sleeps until it is killed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	struct dirent *de;
	char **names = NULL;
	size_t nr = 0, cap = 0, i, max;
	DIR *d;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: holder DIR MAX_OPEN READY_FILE\n");
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
		if (open(names[i], O_RDONLY) < 0) {
			perror(names[i]);
			return 1;
		}
	}

	fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(argv[3]);
		return 1;
	}
	close(fd);

	for (;;)
		pause();
}
