/*
 * --tmp-file, restore: the staging directory the archive is extracted
 * into, in a directory that only root can change, and the dumped tree's
 * root (a chroot) under the restore root.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "linux/rename.h"
#include "log.h"
#include "namespaces.h"
#include "tmp-files-stage.h"
#include "tmp-files-tree.h"
#include "util.h"
#include "xmalloc.h"

#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#define STAGE_PREFIX ".criu-tmp-files."

/*
 * In a restored user namespace, an owner that is not mapped there shows
 * as the overflow uid: a directory of the host's root, say.
 */
bool tmp_files_owner_outside_userns(uid_t uid)
{
	unsigned int overflow = 65534;
	FILE *f;

	if (!(root_ns_mask & CLONE_NEWUSER))
		return false;
	f = fopen("/proc/sys/kernel/overflowuid", "r");
	if (f) {
		if (fscanf(f, "%u", &overflow) != 1)
			overflow = 65534;
		fclose(f);
	}
	return uid == overflow;
}

/*
 * Remove the directory name in dfd and everything in it, with a bounded
 * number of open fds and no path longer than a name: directories below
 * the first level are moved up into it before their parent is removed.
 */
static int remove_tree(int dfd, const char *name)
{
	unsigned int moved = 0;
	bool again = true;
	int fd, ret = 0;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;

	while (again && !ret) {
		struct dirent *de;
		DIR *d;

		again = false;
		/* The dup shares the offset: each pass reads from the start */
		lseek(fd, 0, SEEK_SET);
		d = fdopendir(dup(fd));
		if (!d) {
			ret = -1;
			break;
		}
		while (!ret && (de = readdir(d))) {
			struct dirent *sde;
			DIR *sd;
			int sfd;

			if (dir_dots(de))
				continue;
			if (!unlinkat(fd, de->d_name, 0) || errno != EISDIR)
				continue;
			again = true;
			sfd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			sd = sfd < 0 ? NULL : fdopendir(sfd);
			if (!sd) {
				close_safe(&sfd);
				ret = -1;
				break;
			}
			while (!ret && (sde = readdir(sd))) {
				char up[32];

				if (dir_dots(sde) || !unlinkat(sfd, sde->d_name, 0) || errno != EISDIR)
					continue;
				do {
					snprintf(up, sizeof(up), ".up.%u", moved++);
					ret = sys_renameat2(sfd, sde->d_name, fd, up, RENAME_NOREPLACE);
				} while (ret && errno == EEXIST);
			}
			closedir(sd);
			if (!ret && unlinkat(fd, de->d_name, AT_REMOVEDIR))
				ret = -1;
		}
		closedir(d);
	}
	close(fd);
	return ret ?: unlinkat(dfd, name, AT_REMOVEDIR);
}

/* A staging directory left by a killed restore: ours, and nobody's lock */
static void remove_stale_stages(int dfd)
{
	struct dirent *de;
	DIR *d;

	lseek(dfd, 0, SEEK_SET);
	d = fdopendir(dup(dfd));
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct stat st;
		int fd;

		if (strncmp(de->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX)))
			continue;
		fd = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!fstat(fd, &st) && st.st_uid == geteuid() && (st.st_mode & 07777) == 0700 &&
		    !flock(fd, LOCK_EX | LOCK_NB)) {
			pr_info("Removing %s, left by a restore that did not finish\n", de->d_name);
			if (remove_tree(dfd, de->d_name))
				pr_perror("Can't remove %s", de->d_name);
		}
		close(fd);
	}
	closedir(d);
}

/*
 * A directory that only root can change: owned by root, not writable by
 * group or others unless sticky. The overflow uid counts as root only in
 * a restored user namespace (see tmp_files_owner_outside_userns()).
 */
static bool root_only_dir(const struct stat *st)
{
	return S_ISDIR(st->st_mode) && (st->st_uid == geteuid() || tmp_files_owner_outside_userns(st->st_uid)) &&
	       (!(st->st_mode & (S_IWGRP | S_IWOTH)) || (st->st_mode & S_ISVTX));
}

/*
 * The dumped tree's chroot (me->root, "/srv/jail") under the restore root,
 * as an fd: each directory on the way one that only root can change, so
 * that no user can swap the tree's root for a directory of theirs.
 */
int tmp_files_open_tree_root(int root_fd, const char *root, const char *tree_root)
{
	const char *name = tree_root + 1, *end;
	int dfd, fd;

	dfd = tmp_files_open_beneath(root_fd, "", O_PATH | O_DIRECTORY | O_NOFOLLOW);
	for (; dfd >= 0 && *name; name = *end ? end + 1 : end, dfd = fd) {
		char comp[NAME_MAX + 1];
		struct stat st;

		end = strchrnul(name, '/');
		if (end - name > NAME_MAX || end == name)
			break;
		memcpy(comp, name, end - name);
		comp[end - name] = '\0';
		fd = tmp_files_open_beneath(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW);
		close(dfd);
		if (fd >= 0 && (fstat(fd, &st) || !root_only_dir(&st))) {
			pr_err("Refusing to restore the --tmp-file paths: %s%.*s, on the way to the tree's root %s, "
			       "can be changed by uid %u (mode %#o)\n",
			       root, (int)(end - tree_root), tree_root, tree_root, st.st_uid, st.st_mode & 07777);
			close(fd);
			return -1;
		}
	}
	if (dfd < 0 || *name) {
		pr_err("Refusing to restore the --tmp-file paths: they were saved under the tree's root %s, "
		       "which is not a directory under %s/ (restore with the --root the tree had)\n",
		       tree_root, root);
		close_safe(&dfd);
		return -1;
	}
	return dfd;
}

/*
 * A locked, private staging directory in the directory in (relative to
 * root_fd), which must be one that only root can change: then no other
 * user can rename the stage, or put anything in its place, and nothing
 * in it is reachable but through s->fd.
 */
static int stage_in(int root_fd, const char *in, struct tmp_files_stage *s)
{
	struct stat st;
	int i;

	s->parent_fd = tmp_files_open_beneath(root_fd, in, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (s->parent_fd < 0)
		return -1;
	if (fstat(s->parent_fd, &st))
		goto err;
	if (!root_only_dir(&st)) {
		pr_info("No staging directory in /%s: uid %u, mode %#o (not root's only)\n", in, st.st_uid,
			st.st_mode & 07777);
		errno = EPERM;
		goto err;
	}
	remove_stale_stages(s->parent_fd);

	for (i = 0; i < 100; i++) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(s->name, sizeof(s->name), STAGE_PREFIX "%d.%lx", getpid(), (unsigned long)ts.tv_nsec + i);
		if (!mkdirat(s->parent_fd, s->name, 0700))
			break;
		if (errno != EEXIST)
			goto err;
	}
	s->fd = openat(s->parent_fd, s->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->fd >= 0 && !fstat(s->fd, &st) && st.st_uid == geteuid() && !(st.st_mode & 077) &&
	    !flock(s->fd, LOCK_EX))
		return 0;
	close_safe(&s->fd);
	unlinkat(s->parent_fd, s->name, AT_REMOVEDIR);
err:
	close_safe(&s->parent_fd);
	return -1;
}

/* "tmp/app" of "/tmp/app/x", or NULL at the root */
static char *parent_name(const char *path)
{
	return strrchr(path, '/') > path ? tmp_files_dirname(path) : NULL;
}

/*
 * The staging directory, mode 0700, flock()ed while this restore uses it,
 * so that one left by a killed restore is told from one in use. It is
 * made in a directory that only root can change (root_only_dir()): the
 * nearest such ancestor of a saved path (on its filesystem as a rule, so
 * that placing is a rename), else a saved directory itself (a container
 * whose root is read-only but for a bind-mounted /data), else <root>/tmp,
 * else the root. Never in a directory another user owns: if there is no
 * such directory, the restore is refused.
 */
int tmp_files_stage_make(int root_fd, const char *root, TmpFilesManifestEntry *me, struct tmp_files_stage *s)
{
	size_t i;
	char *in;

	s->fd = s->parent_fd = -1;
	for (i = 0; i < me->n_paths; i++) {
		for (in = parent_name(me->paths[i]); in; in = parent_name(s->where)) {
			if (!stage_in(root_fd, in, s))
				goto made;
			snprintf(s->where, sizeof(s->where), "/%s", in);
			xfree(in);
		}
	}
	/* In a saved directory itself (a container's writable /data, the rest read-only) */
	for (i = 0; i < me->n_paths + 2; i++) {
		in = xstrdup(i < me->n_paths ? me->paths[i] + 1 : i == me->n_paths ? "tmp" :
										     "");
		if (!in)
			return -1;
		if (!stage_in(root_fd, in, s))
			goto made;
		xfree(in);
	}
	pr_err("Can't restore the --tmp-file paths: no directory under %s/ to stage them in that only root can "
	       "change and write (a read-only root, or saved paths in directories of other users?); "
	       "restore with --root, or make %s/tmp writable by root only (mode 1777 or 0755, owner root)\n",
	       root, root);
	return -1;
made:
	snprintf(s->where, sizeof(s->where), "%s/%s%s%s", root, in, *in ? "/" : "", s->name);
	pr_info("Staging the --tmp-file archive in %s\n", s->where);
	xfree(in);
	return 0;
}

void tmp_files_stage_remove(struct tmp_files_stage *s)
{
	if (remove_tree(s->parent_fd, s->name))
		pr_perror("Can't remove the staging directory %s", s->where);
	close_safe(&s->fd);
	close_safe(&s->parent_fd);
}

/* The directory dir ("tmp/app") beneath the stage, made 0700 where it is missing */
static int stage_dir(int stage_fd, char *dir)
{
	char *name = dir, *next;
	int fd, cur;

	fd = tmp_files_open_beneath(stage_fd, dir, O_PATH | O_DIRECTORY);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	/* Name by name: tar may make them meanwhile, and sets their modes once it is done */
	cur = dup(stage_fd);
	for (; cur >= 0 && name; name = next) {
		next = strchr(name, '/');
		if (next)
			*next++ = '\0';
		if (mkdirat(cur, name, 0700) && errno != EEXIST) {
			close(cur);
			return -1;
		}
		fd = tmp_files_open_beneath(cur, name, O_PATH | O_DIRECTORY);
		close(cur);
		cur = fd;
	}
	return cur;
}

/*
 * A regular file of the archive that criu writes itself: name ("tmp/app/x",
 * checked against the manifest) made in the stage beneath its fd, with no
 * symlink on the way; 0600 and empty until tmp_files_stage_file_done().
 * The members of a directory come one after another: its fd is kept in
 * dir for the next one (the stage is root's only, and tar never removes
 * a directory it finds there).
 */
int tmp_files_stage_file(struct tmp_files_stage_dir *dir, int stage_fd, const char *name)
{
	char path[PATH_MAX], *base;
	int fd = -1;

	if (snprintf(path, sizeof(path), "%s", name) >= (int)sizeof(path))
		goto err;
	base = strrchr(path, '/');
	if (base)
		*base++ = '\0';
	else
		base = path;
	if (base == path || strcmp(dir->name, path)) {
		tmp_files_stage_dir_close(dir);
		dir->fd = base == path ? dup(stage_fd) : stage_dir(stage_fd, path);
		if (dir->fd < 0)
			goto err;
		if (base != path)
			strcpy(dir->name, path);
	}
	if (strcmp(base, ".") && strcmp(base, ".."))
		fd = openat(dir->fd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
err:
	pr_perror("Can't make %s of the --tmp-file archive in the stage", name);
	return -1;
}

/* The names in the staged directory path ("/tmp/app"): *nr of them, NULL-terminated */
char **tmp_files_stage_names(int stage_fd, const char *path, size_t *nr)
{
	char **names = NULL;
	struct dirent *de;
	DIR *d;
	int fd;

	*nr = 0;
	fd = openat(stage_fd, path + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		pr_perror("Can't open the staged %s", path);
		close_safe(&fd);
		return NULL;
	}
	while ((de = readdir(d))) {
		char **n;

		if (dir_dots(de))
			continue;
		n = xrealloc(names, (*nr + 2) * sizeof(*names));
		if (!n)
			goto err;
		names = n;
		names[*nr] = xstrdup(de->d_name);
		if (!names[*nr])
			goto err;
		names[++*nr] = NULL;
	}
	closedir(d);
	return names ?: xzalloc(sizeof(*names));
err:
	closedir(d);
	while (*nr)
		xfree(names[--*nr]);
	xfree(names);
	return NULL;
}

/* A directory of the archive ("tmp/app/", checked) that criu makes itself, 0700 until its attributes are set */
int tmp_files_stage_mkdir(int stage_fd, const char *name)
{
	char path[PATH_MAX];
	size_t len = strlen(name);
	int fd = -1;

	while (len > 1 && name[len - 1] == '/')
		len--;
	if (len < sizeof(path)) {
		memcpy(path, name, len);
		path[len] = '\0';
		fd = stage_dir(stage_fd, path);
	}
	if (fd < 0) {
		pr_perror("Can't make %s of the --tmp-file archive in the stage", name);
		return -1;
	}
	close(fd);
	return 0;
}

void tmp_files_stage_dir_close(struct tmp_files_stage_dir *dir)
{
	close_safe(&dir->fd);
	dir->name[0] = '\0';
}

/* Its owner, then its mode (chown() clears set-id bits), then its times, as tar sets them; fd is closed */
int tmp_files_stage_file_done(int fd, const struct tmp_files_stage_attrs *a)
{
	struct timespec ts[2] = { a->atime, a->mtime };
	int ret = 0;

	if (fchown(fd, a->uid, a->gid) || fchmod(fd, a->mode & 07777) || futimens(fd, ts)) {
		pr_perror("Can't set the owner, mode or times of %s of the --tmp-file archive", a->name);
		ret = -1;
	}
	if (close(fd)) {
		pr_perror("Can't write %s of the --tmp-file archive", a->name);
		ret = -1;
	}
	return ret;
}
