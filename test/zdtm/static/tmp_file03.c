#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "zdtmtst.h"

const char *test_doc = "Check that a file saved with --tmp-file, removed before restore and "
		       "mapped MAP_SHARED is mapped again from the restored file";
const char *test_author = "criu --tmp-file developers <tmp-file@criu.invalid>";

char *filename;
TEST_OPTION(filename, string, "file name (the path given to --tmp-file)", 1);

#define MAP_PAGES 4
#define MODE	  0640

/* The inode behind the mapping at addr, from /proc/self/maps */
static int mapping_inode(void *addr, unsigned long *ino)
{
	char line[512];
	FILE *f;
	int ret = -1;

	f = fopen("/proc/self/maps", "r");
	if (!f) {
		pr_perror("Can't open /proc/self/maps");
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &start, &end, ino) == 3 && start == (unsigned long)addr) {
			ret = 0;
			break;
		}
	}
	fclose(f);
	if (ret)
		pr_err("No mapping at %p\n", addr);
	return ret;
}

int main(int argc, char **argv)
{
	size_t len = MAP_PAGES * PAGE_SIZE, i;
	unsigned long map_ino;
	char *map, *buf;
	struct stat st;
	int fd;

	test_init(argc, argv);

	buf = malloc(len);
	if (!buf) {
		pr_perror("Can't allocate memory");
		return 1;
	}

	unlink(filename);
	fd = open(filename, O_RDWR | O_CREAT | O_EXCL, MODE);
	if (fd < 0) {
		pr_perror("Can't create %s", filename);
		return 1;
	}
	if (fchmod(fd, MODE) || ftruncate(fd, len)) {
		pr_perror("Can't set up %s", filename);
		return 1;
	}
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		pr_perror("Can't map %s", filename);
		return 1;
	}
	/* Only the mapping keeps the file in use */
	close(fd);

	for (i = 0; i < len; i++)
		map[i] = 'A' + i % 23;
	if (msync(map, len, MS_SYNC)) {
		pr_perror("Can't sync the mapping");
		return 1;
	}
	memcpy(buf, map, len);

	test_daemon();
	test_waitsig();

	if (memcmp(map, buf, len)) {
		fail("The mapping content changed");
		return 1;
	}
	if (stat(filename, &st)) {
		fail("Can't stat %s after restore", filename);
		return 1;
	}
	if (mapping_inode(map, &map_ino))
		return 1;
	if (map_ino != st.st_ino) {
		fail("The mapping is backed by inode %lu, %s is %lu", map_ino, filename, (unsigned long)st.st_ino);
		return 1;
	}
	if ((st.st_mode & 07777) != MODE || st.st_size != len) {
		fail("%s: mode 0%o size %lld, expected 0%o %zu", filename, st.st_mode & 07777, (long long)st.st_size,
		     MODE, len);
		return 1;
	}

	/* A write through the restored mapping reaches the file at the path */
	for (i = 0; i < len; i += PAGE_SIZE)
		map[i + 1] = 'z';
	if (msync(map, len, MS_SYNC)) {
		pr_perror("Can't sync the restored mapping");
		return 1;
	}
	fd = open(filename, O_RDONLY);
	if (fd < 0) {
		pr_perror("Can't open %s", filename);
		return 1;
	}
	if (read(fd, buf, len) != len || memcmp(buf, map, len)) {
		fail("%s does not have what was written to the mapping after restore", filename);
		return 1;
	}
	close(fd);
	munmap(map, len);
	unlink(filename);

	pass();
	return 0;
}
