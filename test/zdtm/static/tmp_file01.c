#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "zdtmtst.h"

const char *test_doc = "Check that a directory tree saved with --tmp-file and removed before "
		       "restore comes back as it was: modes, symlinks, hardlinks, holes, xattrs";
const char *test_author = "criu --tmp-file developers <tmp-file@criu.invalid>";

char *dirname;
TEST_OPTION(dirname, string, "directory name (the path given to --tmp-file)", 1);

#define SPARSE_HOLE  (1 << 20)
#define SPARSE_CHUNK 4096
#define XATTR_NAME   "user.zdtm"
#define XATTR_VALUE  "tmp_file01 xattr value"

enum kind { DIR_E,
	    FILE_E,
	    LINK_E };

struct entry {
	const char *name; /* relative to dirname */
	enum kind kind;
	mode_t mode;
	const char *data; /* file content or symlink target */
	bool xattr;
	struct stat st; /* as the test saw it before dump */
};

/* Parents come before their children */
static struct entry entries[] = {
	{ "", DIR_E, 0750 },
	{ "sub", DIR_E, 0711, NULL, true },
	{ "sub/deeper dir", DIR_E, 02755 },
	{ "sub/deeper dir/file with spaces.txt", FILE_E, 0604, "some text with spaces\n", true },
	{ "sticky", DIR_E, 01777 },
	{ "sticky/setuid exec", FILE_E, 04755, "#!/bin/true\n" },
	{ "link to file", LINK_E, 0, "sub/deeper dir/file with spaces.txt" },
	{ "dangling", LINK_E, 0, "../does/not/exist" },
	{ "hard1", FILE_E, 0440, "two names, one inode\n" },
	{ "sub/hard2", FILE_E, 0440, NULL }, /* a hardlink to hard1 */
	{ "empty", FILE_E, 0000, "" },
	{ "sparse", FILE_E, 0644, NULL }, /* data, a hole, data */
};

#define HARD1  8
#define HARD2  9
#define SPARSE 11

/* Two buffers: a path of one entry can be used with the path of another */
static char *path_of(const struct entry *e)
{
	static char bufs[2][PATH_MAX];
	static int i;
	char *buf = bufs[i++ % 2];

	snprintf(buf, PATH_MAX, "%s%s%s", dirname, *e->name ? "/" : "", e->name);
	return buf;
}

static int write_sparse(int fd)
{
	char chunk[SPARSE_CHUNK];

	memset(chunk, 's', sizeof(chunk));
	if (pwrite(fd, chunk, sizeof(chunk), 0) != sizeof(chunk) ||
	    pwrite(fd, chunk, sizeof(chunk), SPARSE_HOLE) != sizeof(chunk))
		return -1;
	return 0;
}

static int create_tree(void)
{
	int i, fd;

	for (i = 0; i < ARRAY_SIZE(entries); i++) {
		struct entry *e = &entries[i];
		char *p = path_of(e);

		switch (e->kind) {
		case DIR_E:
			if (mkdir(p, 0700)) {
				pr_perror("Can't create directory %s", p);
				return -1;
			}
			break;
		case LINK_E:
			if (symlink(e->data, p)) {
				pr_perror("Can't create symlink %s", p);
				return -1;
			}
			continue;
		case FILE_E:
			if (i == HARD2) {
				if (link(path_of(&entries[HARD1]), p)) {
					pr_perror("Can't link %s", p);
					return -1;
				}
				continue;
			}
			fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
			if (fd < 0) {
				pr_perror("Can't create %s", p);
				return -1;
			}
			if (i == SPARSE ? write_sparse(fd) :
					  write(fd, e->data, strlen(e->data)) != strlen(e->data)) {
				pr_perror("Can't write %s", p);
				close(fd);
				return -1;
			}
			close(fd);
			break;
		}
		if (e->xattr && setxattr(p, XATTR_NAME, XATTR_VALUE, strlen(XATTR_VALUE), 0)) {
			pr_perror("Can't set an xattr on %s", p);
			return -1;
		}
	}

	/* Modes last: the tree has read-only and setgid directories */
	for (i = ARRAY_SIZE(entries) - 1; i >= 0; i--) {
		struct entry *e = &entries[i];

		if (e->kind != LINK_E && i != HARD2 && chmod(path_of(e), e->mode)) {
			pr_perror("Can't chmod %s", path_of(e));
			return -1;
		}
	}
	for (i = 0; i < ARRAY_SIZE(entries); i++) {
		if (lstat(path_of(&entries[i]), &entries[i].st)) {
			pr_perror("Can't stat %s", path_of(&entries[i]));
			return -1;
		}
	}
	return 0;
}

static int check_hole(const char *p)
{
	int fd, ret = 0;
	off_t hole, data;

	fd = open(p, O_RDONLY);
	if (fd < 0) {
		pr_perror("Can't open %s", p);
		return -1;
	}
	hole = lseek(fd, 0, SEEK_HOLE);
	data = lseek(fd, SPARSE_CHUNK, SEEK_DATA);
	if (hole != SPARSE_CHUNK || data != SPARSE_HOLE) {
		fail("%s: hole at %lld, data after it at %lld, expected %d and %d", p, (long long)hole,
		     (long long)data, SPARSE_CHUNK, SPARSE_HOLE);
		ret = -1;
	}
	close(fd);
	return ret;
}

static int check_data(const struct entry *e, const char *p)
{
	char buf[256];
	ssize_t len;
	int fd;

	if (e->kind == LINK_E) {
		len = readlink(p, buf, sizeof(buf) - 1);
		if (len < 0 || (buf[len] = '\0', strcmp(buf, e->data))) {
			fail("%s points to the wrong place", p);
			return -1;
		}
		return 0;
	}

	fd = open(p, O_RDONLY);
	if (fd < 0) {
		pr_perror("Can't open %s", p);
		return -1;
	}
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len < 0 || (buf[len] = '\0', strcmp(buf, e->data))) {
		fail("Content of %s changed", p);
		return -1;
	}
	return 0;
}

static int count_entries(const char *p)
{
	struct dirent *de;
	int nr = 0;
	DIR *d;

	d = opendir(p);
	if (!d) {
		pr_perror("Can't open %s", p);
		return -1;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			nr++;
	closedir(d);
	return nr;
}

static int children(const struct entry *e)
{
	size_t len = strlen(e->name);
	int i, nr = 0;

	for (i = 0; i < ARRAY_SIZE(entries); i++) {
		const char *n = entries[i].name;

		if (*n == '\0' || (len && (strncmp(n, e->name, len) || n[len] != '/')))
			continue;
		if (!strchr(n + (len ? len + 1 : 0), '/'))
			nr++;
	}
	return nr;
}

static int check_tree(void)
{
	int i, ret = 0;

	for (i = 0; i < ARRAY_SIZE(entries); i++) {
		struct entry *e = &entries[i];
		char *p = path_of(e), val[64];
		struct stat st;
		ssize_t len;

		if (lstat(p, &st)) {
			fail("%s is missing", p);
			return -1;
		}
		if (st.st_mode != e->st.st_mode || st.st_uid != e->st.st_uid || st.st_gid != e->st.st_gid ||
		    st.st_nlink != e->st.st_nlink || (!S_ISDIR(st.st_mode) && st.st_size != e->st.st_size)) {
			fail("%s: mode 0%o uid %d gid %d nlink %d size %lld, expected 0%o %d %d %d %lld", p,
			     st.st_mode, st.st_uid, st.st_gid, (int)st.st_nlink, (long long)st.st_size,
			     e->st.st_mode, e->st.st_uid, e->st.st_gid, (int)e->st.st_nlink,
			     (long long)e->st.st_size);
			ret = -1;
		}
		if (!S_ISLNK(st.st_mode) && st.st_mtim.tv_sec != e->st.st_mtim.tv_sec) {
			fail("%s: mtime %lld, expected %lld", p, (long long)st.st_mtim.tv_sec,
			     (long long)e->st.st_mtim.tv_sec);
			ret = -1;
		}

		if (e->kind == DIR_E) {
			if (count_entries(p) != children(e)) {
				fail("%s has %d entries, expected %d", p, count_entries(p), children(e));
				ret = -1;
			}
		} else if (i == SPARSE) {
			if (check_hole(p))
				ret = -1;
		} else if (e->data && check_data(e, p)) {
			ret = -1;
		}

		len = lgetxattr(p, XATTR_NAME, val, sizeof(val) - 1);
		if (e->xattr && (len < 0 || (val[len] = '\0', strcmp(val, XATTR_VALUE)))) {
			fail("%s: the %s xattr is lost", p, XATTR_NAME);
			ret = -1;
		} else if (!e->xattr && len >= 0) {
			fail("%s: has an unexpected %s xattr", p, XATTR_NAME);
			ret = -1;
		}
	}

	if (!ret && (entries[HARD1].st.st_ino != entries[HARD2].st.st_ino)) {
		fail("Bad setup: the hardlinks are not one inode before dump");
		ret = -1;
	}
	if (!ret) {
		struct stat h1, h2;

		if (stat(path_of(&entries[HARD1]), &h1) || stat(path_of(&entries[HARD2]), &h2) ||
		    h1.st_ino != h2.st_ino || h1.st_dev != h2.st_dev) {
			fail("The hardlinks are not one inode after restore");
			ret = -1;
		}
	}
	return ret;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);

	entries[HARD2].data = entries[HARD1].data;
	if (create_tree())
		return 1;
	if (check_tree()) {
		pr_err("The tree does not check before dump\n");
		return 1;
	}

	test_daemon();
	test_waitsig();

	if (check_tree())
		return 1;

	pass();
	return 0;
}
