#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "zdtmtst.h"

const char *test_doc = "Check that a file saved with --tmp-file and removed before restore "
		       "comes back under an fd held open read-write at a non-zero offset";
const char *test_author = "criu --tmp-file developers <tmp-file@criu.invalid>";

char *filename;
TEST_OPTION(filename, string, "file name (the path given to --tmp-file)", 1);

#define DATA_LEN 8192
#define OFFSET	 3000
#define MODE	 0640

static void fill(char *buf, int len, int seed)
{
	int i;

	for (i = 0; i < len; i++)
		buf[i] = 'a' + (i * 7 + seed) % 26;
}

int main(int argc, char **argv)
{
	static char data[DATA_LEN], buf[DATA_LEN], more[100];
	struct stat st_before, st_after, st_path;
	int fd, flags_before, flags_after;
	off_t pos;

	test_init(argc, argv);

	fill(data, sizeof(data), 0);
	fill(more, sizeof(more), 13);

	unlink(filename);
	fd = open(filename, O_RDWR | O_CREAT | O_EXCL, MODE);
	if (fd < 0) {
		pr_perror("Can't create %s", filename);
		return 1;
	}
	if (fchmod(fd, MODE)) { /* umask */
		pr_perror("Can't chmod %s", filename);
		return 1;
	}
	if (write(fd, data, sizeof(data)) != sizeof(data)) {
		pr_perror("Can't write %s", filename);
		return 1;
	}
	if (lseek(fd, OFFSET, SEEK_SET) != OFFSET) {
		pr_perror("Can't seek in %s", filename);
		return 1;
	}
	flags_before = fcntl(fd, F_GETFL);
	if (flags_before < 0 || fstat(fd, &st_before)) {
		pr_perror("Can't get the state of %s", filename);
		return 1;
	}

	test_daemon();
	test_waitsig();

	pos = lseek(fd, 0, SEEK_CUR);
	if (pos != OFFSET) {
		fail("Offset is %lld, expected %d", (long long)pos, OFFSET);
		return 1;
	}
	flags_after = fcntl(fd, F_GETFL);
	if (flags_after != flags_before) {
		fail("File flags are 0%o, expected 0%o", flags_after, flags_before);
		return 1;
	}
	if (fstat(fd, &st_after)) {
		pr_perror("Can't stat the restored fd");
		return 1;
	}
	if (st_after.st_mode != st_before.st_mode || st_after.st_size != st_before.st_size ||
	    st_after.st_uid != st_before.st_uid || st_after.st_gid != st_before.st_gid ||
	    st_after.st_nlink != 1) {
		fail("Metadata changed: mode 0%o size %lld uid %d gid %d nlink %d, "
		     "expected mode 0%o size %lld uid %d gid %d nlink 1",
		     st_after.st_mode, (long long)st_after.st_size, st_after.st_uid, st_after.st_gid,
		     (int)st_after.st_nlink, st_before.st_mode, (long long)st_before.st_size, st_before.st_uid,
		     st_before.st_gid);
		return 1;
	}
	/* The fd is the file at the path, not a copy kept elsewhere */
	if (stat(filename, &st_path)) {
		fail("Can't stat %s after restore", filename);
		return 1;
	}
	if (st_path.st_dev != st_after.st_dev || st_path.st_ino != st_after.st_ino) {
		fail("The restored fd is not %s", filename);
		return 1;
	}
	if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf) || memcmp(buf, data, sizeof(data))) {
		fail("Content of %s changed", filename);
		return 1;
	}

	/* Writing goes on at the restored offset */
	if (write(fd, more, sizeof(more)) != sizeof(more)) {
		pr_perror("Can't write to the restored fd");
		return 1;
	}
	memcpy(data + OFFSET, more, sizeof(more));
	if (lseek(fd, 0, SEEK_CUR) != OFFSET + sizeof(more)) {
		fail("Offset did not move on after a write");
		return 1;
	}
	close(fd);

	fd = open(filename, O_RDONLY);
	if (fd < 0) {
		pr_perror("Can't reopen %s", filename);
		return 1;
	}
	if (read(fd, buf, sizeof(buf)) != sizeof(buf) || memcmp(buf, data, sizeof(data))) {
		fail("%s does not have the data written after restore", filename);
		return 1;
	}
	close(fd);
	unlink(filename);

	pass();
	return 0;
}
