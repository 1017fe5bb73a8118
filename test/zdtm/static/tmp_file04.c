#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "zdtmtst.h"

const char *test_doc = "Check that --tmp-file-auto saves a file held open on a tmpfs "
		       "(/dev/shm), so restore succeeds after the file is removed";
const char *test_author = "criu --tmp-file developers <tmp-file@criu.invalid>";

char *filename;
TEST_OPTION(filename, string, "file name, on a tmpfs", 1);

static const char data[] = "on a tmpfs, saved without being named\n";

int main(int argc, char **argv)
{
	struct stat before, after;
	char buf[sizeof(data)];
	off_t off;
	int fd;

	test_init(argc, argv);

	unlink(filename);
	fd = open(filename, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (fd < 0) {
		pr_perror("Can't create %s", filename);
		return 1;
	}
	if (write(fd, data, sizeof(data)) != sizeof(data) || lseek(fd, 7, SEEK_SET) != 7 || fstat(fd, &before)) {
		pr_perror("Can't set up %s", filename);
		return 1;
	}

	test_daemon();
	test_waitsig();

	off = lseek(fd, 0, SEEK_CUR);
	if (off != 7) {
		fail("Offset of %s is %lld after restore, expected 7", filename, (long long)off);
		return 1;
	}
	if (fstat(fd, &after) || after.st_mode != before.st_mode || after.st_size != before.st_size) {
		fail("Metadata of %s changed", filename);
		return 1;
	}
	if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf) || memcmp(buf, data, sizeof(data))) {
		fail("Content of %s changed", filename);
		return 1;
	}
	if (access(filename, F_OK)) {
		fail("%s is not at its path after restore", filename);
		return 1;
	}
	close(fd);
	unlink(filename);

	pass();
	return 0;
}
