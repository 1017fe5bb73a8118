#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "zdtmtst.h"

const char *test_doc = "Check that a file saved with --tmp-file, not held open, and removed "
		       "before restore can be opened by its path after restore";
const char *test_author = "criu --tmp-file developers <tmp-file@criu.invalid>";

char *filename;
TEST_OPTION(filename, string, "file name (the path given to --tmp-file)", 1);

#define MODE 0604

static const char data[] = "written before dump, read back after restore\n";

int main(int argc, char **argv)
{
	struct stat before, after;
	char buf[sizeof(data)];
	int fd;

	test_init(argc, argv);

	unlink(filename);
	fd = open(filename, O_WRONLY | O_CREAT | O_EXCL, MODE);
	if (fd < 0) {
		pr_perror("Can't create %s", filename);
		return 1;
	}
	if (fchmod(fd, MODE) || write(fd, data, sizeof(data)) != sizeof(data) || fstat(fd, &before)) {
		pr_perror("Can't set up %s", filename);
		return 1;
	}
	if (close(fd)) {
		pr_perror("Can't close %s", filename);
		return 1;
	}

	test_daemon();
	test_waitsig();

	fd = open(filename, O_RDWR);
	if (fd < 0) {
		fail("Can't open %s after restore", filename);
		return 1;
	}
	if (fstat(fd, &after)) {
		pr_perror("Can't stat %s", filename);
		return 1;
	}
	if (after.st_mode != before.st_mode || after.st_size != before.st_size || after.st_uid != before.st_uid ||
	    after.st_gid != before.st_gid || after.st_mtim.tv_sec != before.st_mtim.tv_sec) {
		fail("Metadata of %s changed: mode 0%o size %lld uid %d gid %d mtime %lld, "
		     "expected 0%o %lld %d %d %lld",
		     filename, after.st_mode, (long long)after.st_size, after.st_uid, after.st_gid,
		     (long long)after.st_mtim.tv_sec, before.st_mode, (long long)before.st_size, before.st_uid,
		     before.st_gid, (long long)before.st_mtim.tv_sec);
		return 1;
	}
	if (read(fd, buf, sizeof(buf)) != sizeof(buf) || memcmp(buf, data, sizeof(data))) {
		fail("Content of %s changed", filename);
		return 1;
	}
	if (write(fd, "x", 1) != 1) {
		pr_perror("Can't write to %s after restore", filename);
		return 1;
	}
	close(fd);
	unlink(filename);

	pass();
	return 0;
}
