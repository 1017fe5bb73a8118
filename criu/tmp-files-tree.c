/*
 * --tmp-file: the bottom module. Paths (normalised, ordered), the walk
 * of a saved tree, openat2() beneath a directory, and the images and
 * work directories found under the saved paths. It calls no other
 * tmp-files module: every other one may call it.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "log.h"
#include "mount-v2.h"
#include "tmp-files-tree.h"
#include "util.h"
#include "xmalloc.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

/*
 * Write into out (as long as path) the absolute path without empty or "."
 * components; "" for "/". ".." is refused: a path must mean the same file
 * at dump and restore. So is a relative path, whose result ("a" -> "/a")
 * would not fit.
 */
int tmp_files_normalise_path(const char *path, char *out)
{
	const char *p = path;

	if (*p != '/')
		return -1;

	while (*p) {
		size_t len;

		while (*p == '/')
			p++;
		len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -1;
		if (len && !(len == 1 && p[0] == '.')) {
			*out++ = '/';
			memcpy(out, p, len);
			out += len;
		}
		p += len;
	}
	*out = '\0';
	return 0;
}

/* Sort with '/' before any other byte, so "/a/b" follows "/a" directly */
int tmp_files_path_cmp(const void *a, const void *b)
{
	const unsigned char *x = *(const unsigned char **)a;
	const unsigned char *y = *(const unsigned char **)b;

	while (*x && *x == *y) {
		x++;
		y++;
	}
	if (*x == *y)
		return 0;
	if (*x == '/')
		return *y ? -1 : 1;
	if (*y == '/')
		return *x ? 1 : -1;
	return *x - *y;
}

/* The first of the sorted paths that does not sort before path */
size_t tmp_files_paths_lower_bound(char **paths, size_t nr, const char *path)
{
	size_t lo = 0, hi = nr;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (tmp_files_path_cmp(&paths[mid], &path) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Is path one of the sorted paths, or inside one? */
bool tmp_files_in_paths(char **paths, size_t nr, const char *path)
{
	size_t i = tmp_files_paths_lower_bound(paths, nr, path);

	if (i < nr && !strcmp(paths[i], path))
		return true;
	return i > 0 && issubpath(path, paths[i - 1]);
}

char *tmp_files_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	return xsprintf("%.*s", (int)(slash && slash > path ? slash - path - 1 : 0), path + 1);
}

int tmp_files_open_beneath(int dfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};

	return sys_openat2(dfd, *path ? path : ".", &how, sizeof(how));
}

/* A child of a directory: its name, and its lstat() by the directory's fd */
struct walk_child {
	char *name;
	struct stat st;
};

/* ELOOP, ESTALE: tmp_files_open_walked() found a symlink or another entry at the name */
static bool gone(bool racy)
{
	return racy && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP || errno == ESTALE);
}

int tmp_files_open_walked(const char *path, const struct stat *st, int flags)
{
	struct stat now;
	int fd;

	fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &now)) {
		close(fd);
		return -1;
	}
	if (now.st_dev != st->st_dev || now.st_ino != st->st_ino || ((now.st_mode ^ st->st_mode) & S_IFMT)) {
		close(fd);
		errno = ESTALE;
		return -1;
	}
	return fd;
}

void tmp_files_walked_error(const char *path)
{
	if (errno == ESTALE || errno == ELOOP || errno == ENOENT || errno == ENOTDIR)
		pr_err("--tmp-file: %s changed while it was saved (a writer outside the dumped tree?)\n", path);
	else
		pr_perror("Can't open %s", path);
}

/*
 * The children of a directory are listed and stat()ed through its fd,
 * which is closed before going down: one fd is open at any depth.
 */
static int walk_at(char *path, size_t len, const struct stat *st, tmp_files_walk_fn fn, void *ctx, bool racy)
{
	struct walk_child *kids = NULL;
	size_t nr = 0, size = 0, i;
	struct dirent *de;
	int ret, fd;
	DIR *d;

	ret = fn(ctx, path, len, st);
	if (ret || !S_ISDIR(st->st_mode))
		return ret < 0 ? -1 : 0;

	fd = tmp_files_open_walked(path, st, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (gone(racy)) {
			pr_debug("%s is gone or another entry now: not walked\n", path);
			return 0;
		}
		tmp_files_walked_error(path);
		return -1;
	}
	d = fdopendir(fd);
	if (!d) {
		pr_perror("Can't open %s", path);
		close(fd);
		return -1;
	}
	while (!ret && (de = readdir(d))) {
		if (dir_dots(de))
			continue;
		if (nr == size) {
			size = size * 2 ?: 16;
			ret = xrealloc_safe(&kids, size * sizeof(*kids));
			if (ret)
				break;
		}
		if (fstatat(dirfd(d), de->d_name, &kids[nr].st, AT_SYMLINK_NOFOLLOW)) {
			if (gone(racy))
				continue;
			pr_perror("Can't stat %s/%s", path, de->d_name);
			ret = -1;
		} else if (!(kids[nr++].name = xstrdup(de->d_name))) {
			ret = -1;
		}
	}
	closedir(d);

	for (i = 0; i < nr; i++) {
		if (!ret) {
			int n = snprintf(path + len, PATH_MAX - len, "/%s", kids[i].name);

			if (n >= PATH_MAX - len) {
				pr_err("A path in %s is too long\n", path);
				ret = -1;
			} else {
				ret = walk_at(path, len + n, &kids[i].st, fn, ctx, racy);
			}
			path[len] = '\0';
		}
		xfree(kids[i].name);
	}
	xfree(kids);
	return ret;
}

int tmp_files_walk(char *path, size_t len, tmp_files_walk_fn fn, void *ctx, bool racy)
{
	struct stat st;

	if (lstat(path, &st)) {
		if (gone(racy))
			return 0;
		pr_perror("Can't stat %s", path);
		return -1;
	}
	return walk_at(path, len, &st, fn, ctx, racy);
}

bool tmp_files_excluded(const struct tmp_files_set *set, const char *path)
{
	int i;

	for (i = 0; i < set->nr_excludes; i++)
		if (!strcmp(set->excludes[i] + strlen("--exclude="), path + 1))
			return true;
	return false;
}

static int add_exclude(struct tmp_files_set *set, const char *path)
{
	int i;

	for (i = 0; i < set->nr_excludes; i++)
		if (!strcmp(set->excludes[i] + strlen("--exclude="), path + 1))
			return 0;
	if (xrealloc_safe(&set->excludes, (set->nr_excludes + 2) * sizeof(*set->excludes)))
		return -1;
	set->excludes[set->nr_excludes] = xsprintf("--exclude=%s", path + 1);
	if (!set->excludes[set->nr_excludes])
		return -1;
	set->excludes[++set->nr_excludes] = NULL;
	pr_info("%s is the images or work directory: not archived\n", path);
	return 0;
}

/*
 * The images and work directories may be inside a saved directory, seen
 * there under any name (a container's bind mount of a host directory):
 * look for them by identity in the saved directories, before the tree is
 * frozen. Names are read first, then the subdirectories are opened again
 * from the root, so that only two fds are open at any depth.
 */
static int find_excludes(struct tmp_files_set *set, int root_fd, const char *path, const struct stat *ids,
			 int nr_ids)
{
	char **names = NULL;
	size_t nr = 0, i;
	struct dirent *de;
	struct stat st;
	int fd, ret = 0;
	DIR *d;

	fd = tmp_files_open_beneath(root_fd, path + 1, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fstat(fd, &st)) {
		close_safe(&fd);
		return 0; /* changed since it was listed: tar and the manifest say so */
	}
	for (i = 0; i < nr_ids; i++) {
		if (st.st_dev == ids[i].st_dev && st.st_ino == ids[i].st_ino) {
			close(fd);
			return add_exclude(set, path);
		}
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	while (!ret && (de = readdir(d))) {
		if (dir_dots(de) || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		ret = xrealloc_safe(&names, (nr + 1) * sizeof(*names));
		if (!ret && !(names[nr++] = xsprintf("%s/%s", path, de->d_name)))
			ret = -1;
	}
	closedir(d);
	for (i = 0; i < nr; i++) {
		if (!ret)
			ret = find_excludes(set, root_fd, names[i], ids, nr_ids);
		xfree(names[i]);
	}
	xfree(names);
	return ret;
}

int tmp_files_find_excludes(struct tmp_files_set *set, int root_fd, const struct stat *ids, int nr_ids)
{
	size_t i;

	for (i = 0; i < set->nr; i++)
		if (find_excludes(set, root_fd, set->paths[i], ids, nr_ids))
			return -1;
	return 0;
}
