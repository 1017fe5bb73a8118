/*
 * --tmp-file, restore: put the checked entries of the staging directory
 * in place under the restore root.
 *
 * Restore runs as root and writes where other users can write (/tmp).
 * Every path is resolved relative to the root's fd with openat2() and
 * RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH, and every change is made relative
 * to the fd of the entry's parent directory, resolved so, or on the fd of
 * the entry itself. A directory that exists on the way to an entry must
 * be owned by root or by the entry's saved owner, and must not be
 * writable by others unless it is sticky: so no other user can rename or
 * replace what restore resolved, in the time between two steps.
 *
 * An entry that exists and matches the saved one (type, owner, mode,
 * size, mtime, content, xattrs, link target) is kept as it is, inode and
 * all: a process that checks its file's identity (SQLite) goes on
 * working. A directory that exists is fixed in place, never replaced.
 * Every other entry is prepared under a temporary name next to its
 * target (a directory that is missing at restore is moved there whole,
 * root's and 0700 until the end); when all are ready, they are exchanged
 * with their targets
 * (renameat2() RENAME_EXCHANGE), and the old versions are removed only
 * once every exchange succeeded. A failure undoes the exchanges made and
 * leaves every target as it was.
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
#include <sys/xattr.h>

#include "common/list.h"
#include "cr_options.h"
#include "fault-injection.h"
#include "kerndat.h"
#include "linux/rename.h"
#include "log.h"
#include "mount-v2.h"
#include "namespaces.h"
#include "rbtree.h"
#include "tmp-files-place.h"
#include "util.h"
#include "xmalloc.h"

#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#define COPY_BUF (1 << 20)

/* One entry to write: "tmp" in the directory of "path" until commit */
struct placement {
	struct list_head list;
	struct rb_node node; /* in place_ctx.links, by staged inode */
	char *path;	     /* "/tmp/app/x", as in the manifest */
	char tmp[48];
	struct stat st; /* of the staged entry */
	bool exchanged; /* committed, the old target is at tmp now */
	bool placed;	/* committed, nothing was there */
	bool created;	/* a directory made by this restore */
	bool moved;	/* a directory moved whole from the stage */
	dev_t dev;	/* of a directory in place, as prepare_dir() saw it */
	ino_t ino;
};

struct place_ctx {
	int root_fd;
	int stage_fd;
	TmpFilesManifestEntry *me; /* entries sorted by path */
	struct list_head files;
	struct list_head dirs; /* parents before children */
	struct rb_root links;  /* placed entries of staged inodes with nlink > 1 */
	unsigned int seq;
	unsigned int fault_at; /* FI_TMP_FILES_PLACE: fail at this file */
	unsigned int kept;
	unsigned int nr_files; /* not directories, in the manifest */
	char *buf;
	char *dir;  /* the directory parent_fd() resolved last, */
	int dir_fd; /* and its fd, while the same step goes on in it */
	pid_t pid;
};

/* A new step (prepare, commit, finish, rollback): every directory is resolved again */
static void forget_dir(struct place_ctx *ctx)
{
	xfree(ctx->dir);
	ctx->dir = NULL;
	close_safe(&ctx->dir_fd);
}

/*
 * The parent directory of path ("/tmp/app/x"), and its last name. The
 * entries of a directory come one after another: within a step, it is
 * resolved once for all of them. The fd is ctx's, not the caller's: valid
 * until the next call.
 */
static int parent_fd(struct place_ctx *ctx, const char *path, const char **name)
{
	const char *slash = strrchr(path, '/');
	char *dir;

	*name = slash + 1;
	dir = tmp_files_dirname(path);
	if (!dir)
		return -1;
	if (ctx->dir && !strcmp(dir, ctx->dir)) {
		xfree(dir);
		return ctx->dir_fd;
	}
	forget_dir(ctx);
	ctx->dir_fd = tmp_files_open_beneath(ctx->root_fd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW);
	if (ctx->dir_fd < 0) {
		pr_perror("Can't open the directory of %s (a symlink or something else on the way?)", path);
		xfree(dir);
		return -1;
	}
	ctx->dir = dir;
	return ctx->dir_fd;
}

/*
 * A directory that restore resolves a saved entry through: owned by root
 * or by the entry's saved owner, and not writable by others unless it is
 * sticky. Any other user could swap what is in it between two steps.
 */
static int check_dir_owner(const char *dir, const struct stat *st, uid_t owner, const char *path)
{
	/*
	 * In the tree's user namespace, a directory of the host's root (the
	 * container's root directory, say) has an owner that is not mapped
	 * there: no user of the container owns it.
	 */
	if (st->st_uid != 0 && st->st_uid != owner && !tmp_files_owner_outside_userns(st->st_uid)) {
		pr_err("Refusing to restore %s: directory %s is owned by uid %u, not by root nor by the saved owner %u\n",
		       path, dir, st->st_uid, owner);
		return -1;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX)) {
		pr_err("Refusing to restore %s: directory %s (uid %u, mode %#o) is writable by others and not sticky\n",
		       path, dir, st->st_uid, st->st_mode & 07777);
		return -1;
	}
	return 0;
}

/*
 * The directory dir (the first len bytes of path), name in dfd, made
 * 0755 if it is missing. Returns its fd.
 */
static int enter_parent(struct place_ctx *ctx, int dfd, const char *name, const char *path, size_t len,
			uid_t owner)
{
	struct placement *p = NULL;
	struct stat st;
	char *dir;
	int fd = -1;

	dir = xsprintf("%.*s", (int)len, path);
	if (!dir)
		return -1;
	if (mkdirat(dfd, name, 0755) == 0) {
		pr_info("Created missing parent directory %s\n", dir);
		p = xzalloc(sizeof(*p));
		if (!p)
			goto out;
		p->path = xstrdup(dir);
		p->created = true;
		/* Its metadata is not in the archive: kept out of commit */
		list_add_tail(&p->list, &ctx->dirs);
	} else if (errno != EEXIST) {
		pr_perror("Can't create directory %s", dir);
		goto out;
	}
	fd = tmp_files_open_beneath(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0)
		pr_perror("Can't restore %s: %s is not a directory", path, dir);
	else if (fstat(fd, &st) || check_dir_owner(dir, &st, owner, path))
		close_safe(&fd);
out:
	xfree(dir);
	return fd;
}

/* Parents of a saved path that are missing at restore are made 0755 */
static int prepare_parents(struct place_ctx *ctx, const char *path, uid_t owner)
{
	const char *name = path + 1, *slash;
	char comp[NAME_MAX + 1];
	int dfd, fd;

	dfd = tmp_files_open_beneath(ctx->root_fd, "", O_PATH | O_DIRECTORY | O_NOFOLLOW);
	if (dfd < 0) {
		pr_perror("Can't open the restore root");
		return -1;
	}
	for (; (slash = strchr(name, '/')); name = slash + 1, dfd = fd) {
		if (slash - name > NAME_MAX) {
			pr_err("Can't restore %s: a name is too long\n", path);
			fd = -1;
		} else {
			memcpy(comp, name, slash - name);
			comp[slash - name] = '\0';
			fd = enter_parent(ctx, dfd, comp, path, slash - path, owner);
		}
		close(dfd);
		if (fd < 0)
			return -1;
	}
	close(dfd);
	return 0;
}

static TmpFileEntry *manifest_entry(struct place_ctx *ctx, const char *path)
{
	size_t lo = 0, hi = ctx->me->n_entries;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(ctx->me->entries[mid]->path, path);

		if (!c)
			return ctx->me->entries[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Is the saved entry e at its place under root_fd, as it was saved (type,
 * owner, mode, size, mtime, link target, content, xattrs)? Read only, and
 * never through a symlink. Hardlinked files are always written.
 */
static bool in_place(int root_fd, TmpFileEntry *e, char *buf)
{
	static const mode_t types[] = {
		[TMP_FILE_ENTRY__KIND__REG] = S_IFREG,
		[TMP_FILE_ENTRY__KIND__DIR] = S_IFDIR,
		[TMP_FILE_ENTRY__KIND__SYMLINK] = S_IFLNK,
		[TMP_FILE_ENTRY__KIND__FIFO] = S_IFIFO,
	};
	const char *name = strrchr(e->path, '/') + 1;
	struct stat st, now;
	bool same = false;
	int dfd, fd = -1;
	uint64_t sum;
	ssize_t len;
	char *dir;

	if (e->type >= ARRAY_SIZE(types) || !types[e->type])
		return false;
	dir = tmp_files_dirname(e->path);
	dfd = dir ? tmp_files_open_beneath(root_fd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW) : -1;
	xfree(dir);
	if (dfd < 0 || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		goto out;
	if ((st.st_mode & S_IFMT) != types[e->type] || (st.st_mode & 07777) != e->mode || st.st_uid != e->uid ||
	    st.st_gid != e->gid || st.st_mtim.tv_sec != e->mtime_sec || st.st_mtim.tv_nsec != e->mtime_nsec)
		goto out;
	switch (e->type) {
	case TMP_FILE_ENTRY__KIND__SYMLINK:
		len = readlinkat(dfd, name, buf, PATH_MAX - 1);
		same = len >= 0 && e->target && !strncmp(buf, e->target, len) && !e->target[len];
		goto out;
	case TMP_FILE_ENTRY__KIND__REG:
		if (st.st_size != e->size || st.st_nlink != 1 || !e->has_content_xxh64)
			goto out;
		fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &now) || now.st_dev != st.st_dev || now.st_ino != st.st_ino ||
		    tmp_files_content_sum(fd, st.st_size, &sum) || sum != e->content_xxh64)
			goto out;
		break;
	default:
		break;
	}
	/* The xattrs by name in the directory's fd, then that name is still the inode checked */
	same = !fchdir(dfd) && !tmp_files_xattrs_differ(name, e) && !fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW) &&
	       now.st_dev == st.st_dev && now.st_ino == st.st_ino;
out:
	close_safe(&fd);
	close_safe(&dfd);
	return same;
}

/*
 * Before anything is extracted: is every saved entry in place already, as
 * it was saved (a restore where nothing was wiped)? Then the archive is
 * not read at all and nothing is written.
 */
bool tmp_files_all_in_place(int root_fd, TmpFilesManifestEntry *me)
{
	char buf[PATH_MAX];
	bool all = true;
	size_t i;
	int cwd_fd;

	cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cwd_fd < 0)
		return false;
	for (i = 0; all && i < me->n_entries; i++)
		all = in_place(root_fd, me->entries[i], buf);
	if (fchdir(cwd_fd)) {
		pr_perror("Can't go back to the working directory");
		all = false;
	}
	close(cwd_fd);
	if (all)
		pr_info("%zu entr%s kept as they were, 0 written: every saved entry is in place, the archive is not read\n",
			me->n_entries, me->n_entries == 1 ? "y" : "ies");
	else
		pr_info("Not every saved entry is in place as saved (first: %s): extracting the archive\n",
			me->entries[i - 1]->path);
	return all;
}

/*
 * The existing target of p already holds what the archive has for it
 * (checked against the manifest, as the staged entry is): it is kept.
 * in_place() may change the working directory: tmp_files_place() puts
 * it back.
 */
static bool unchanged(struct place_ctx *ctx, struct placement *p)
{
	TmpFileEntry *e = manifest_entry(ctx, p->path);

	return e && in_place(ctx->root_fd, e, ctx->buf);
}

static int copy_xattrs(int src, int dst, const char *path)
{
	char *names, *name, *val = NULL;
	ssize_t len, vlen;
	int ret = -1;

	len = flistxattr(src, NULL, 0);
	if (len == 0 || (len < 0 && errno == ENOTSUP))
		return 0;
	names = len < 0 ? NULL : xmalloc(len);
	/* Can be shorter than said: overlayfs hides its own xattrs only here */
	if (!names || (len = flistxattr(src, names, len)) < 0) {
		pr_perror("Can't list xattrs of %s", path);
		xfree(names);
		return -1;
	}
	for (name = names; name < names + len; name += strlen(name) + 1) {
		vlen = fgetxattr(src, name, NULL, 0);
		xfree(val);
		val = vlen < 0 ? NULL : xmalloc(vlen + 1);
		if (!val || fgetxattr(src, name, val, vlen) != vlen) {
			pr_perror("Can't read xattr %s of %s", name, path);
			goto out;
		}
		if (fsetxattr(dst, name, val, vlen, 0)) {
			pr_perror("Can't set xattr %s on %s", name, path);
			goto out;
		}
	}
	ret = 0;
out:
	xfree(names);
	xfree(val);
	return ret;
}

/* On an open file or directory: owner before mode (chown drops setuid), times last */
static int copy_metadata(int src, const struct stat *st, int dst, const char *path)
{
	struct timespec times[2] = { st->st_atim, st->st_mtim };

	if (fchown(dst, st->st_uid, st->st_gid) || fchmod(dst, st->st_mode & 07777)) {
		pr_perror("Can't set the owner or mode of %s", path);
		return -1;
	}
	if (src >= 0 && copy_xattrs(src, dst, path))
		return -1;
	if (futimens(dst, times)) {
		pr_perror("Can't set the times of %s", path);
		return -1;
	}
	return 0;
}

/* Copy data segments only, so that holes stay holes */
static int copy_data(struct place_ctx *ctx, int in, int out, off_t size, const char *path)
{
	off_t off = 0;

	while (off < size) {
		off_t data, hole;

		int ret = tmp_files_next_data(in, off, &data, &hole);

		if (ret < 0)
			return -1;
		if (!ret)
			break;
		for (off = data; off < hole;) {
			ssize_t n = pread(in, ctx->buf, min_t(off_t, COPY_BUF, hole - off), off), done, w;

			if (n <= 0) {
				pr_perror("Can't read the staged %s", path);
				return -1;
			}
			for (done = 0; done < n; done += w) {
				/* A short write is followed by the error */
				w = pwrite(out, ctx->buf + done, n - done, off + done);
				if (w <= 0) {
					pr_perror("Can't write %s", path);
					return -1;
				}
			}
			off += n;
		}
	}
	if (ftruncate(out, size)) {
		pr_perror("Can't write %s", path);
		return -1;
	}
	return 0;
}

/*
 * The entry made at dfd/tmp, for its metadata to be set on the fd only:
 * dfd may be a directory of the saved owner, who can put another file at
 * tmp in between. It must be a new inode of root's of the type made.
 */
static int open_made(int dfd, const char *tmp, mode_t type, int flags, const char *path)
{
	struct stat st;
	int fd;

	fd = openat(dfd, tmp, flags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("Refusing to restore %s: what was made in its directory was replaced (or can't be opened)",
			  path);
		return -1;
	}
	if (fstat(fd, &st) || (st.st_mode & S_IFMT) != type || st.st_uid != geteuid() || st.st_nlink != 1) {
		pr_err("Refusing to restore %s: what was made in its directory was replaced\n", path);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The staging directory is on another filesystem: make a copy at
 * dfd/tmp. Everything but making it is done on its fd (open_made()):
 * nothing is changed by name in a directory another user may own.
 */
static int copy_entry(struct place_ctx *ctx, struct placement *p, int dfd)
{
	const char *rel = p->path + 1;
	struct timespec times[2] = { p->st.st_atim, p->st.st_mtim };
	char target[PATH_MAX];
	int in = -1, out = -1, ret = -1;
	mode_t type = p->st.st_mode & S_IFMT;
	ssize_t len;

	switch (type) {
	case S_IFREG:
		in = openat(ctx->stage_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		out = openat(dfd, p->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (in < 0 || out < 0) {
			pr_perror("Can't copy %s", p->path);
			goto out;
		}
		ret = copy_data(ctx, in, out, p->st.st_size, p->path) ?: copy_metadata(in, &p->st, out, p->path);
		if (close(out) && !ret) {
			pr_perror("Can't write %s", p->path);
			ret = -1;
		}
		out = -1;
		goto out;
	case S_IFLNK:
		len = readlinkat(ctx->stage_fd, rel, target, sizeof(target) - 1);
		if (len < 0) {
			pr_perror("Can't read the staged link %s", p->path);
			return -1;
		}
		target[len] = '\0';
		if (symlinkat(target, dfd, p->tmp)) {
			pr_perror("Can't create symlink %s", p->path);
			return -1;
		}
		/* The link itself, not what it points to */
		out = open_made(dfd, p->tmp, type, O_PATH, p->path);
		if (out < 0)
			return -1;
		if (fchownat(out, "", p->st.st_uid, p->st.st_gid, AT_EMPTY_PATH) ||
		    utimensat(out, "", times, AT_EMPTY_PATH)) {
			pr_perror("Can't set the owner or times of %s", p->path);
			goto out;
		}
		ret = 0;
		goto out;
	case S_IFIFO:
		/* Opened for reading without blocking: the fifo itself, with no writer */
		if (mknodat(dfd, p->tmp, S_IFIFO | 0600, 0)) {
			pr_perror("Can't create %s", p->path);
			return -1;
		}
		out = open_made(dfd, p->tmp, type, O_RDONLY | O_NONBLOCK, p->path);
		if (out < 0)
			return -1;
		in = openat(ctx->stage_fd, rel, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
		if (in < 0) {
			pr_perror("Can't open the staged %s", p->path);
			goto out;
		}
		ret = copy_metadata(in, &p->st, out, p->path);
		goto out;
	default:
		/* The manifest check refuses device nodes */
		pr_err("Can't restore %s: not a file, directory, symlink or fifo\n", p->path);
		return -1;
	}
out:
	close_safe(&in);
	close_safe(&out);
	return ret;
}

static struct placement *find_link(struct place_ctx *ctx, const struct stat *st)
{
	struct rb_node *n = ctx->links.rb_node;

	while (n) {
		struct placement *p = rb_entry(n, struct placement, node);

		if (st->st_ino == p->st.st_ino)
			return p;
		n = st->st_ino < p->st.st_ino ? n->rb_left : n->rb_right;
	}
	return NULL;
}

static void add_link(struct place_ctx *ctx, struct placement *p)
{
	struct rb_node **n = &ctx->links.rb_node, *parent = NULL;

	while (*n) {
		parent = *n;
		n = p->st.st_ino < rb_entry(parent, struct placement, node)->st.st_ino ? &parent->rb_left :
											 &parent->rb_right;
	}
	rb_link_and_balance(&ctx->links, &p->node, parent, n);
}

/* Staged hardlinks stay one inode: link to the first one placed */
static int link_to_first(struct place_ctx *ctx, struct placement *first, int dfd, struct placement *p)
{
	char *dir = tmp_files_dirname(first->path);
	int fdfd, ret = -1;

	/* Not parent_fd(): dfd is the one it gave */
	fdfd = dir ? tmp_files_open_beneath(ctx->root_fd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW) : -1;
	xfree(dir);
	if (fdfd >= 0)
		ret = linkat(fdfd, first->tmp, dfd, p->tmp, 0);
	if (ret)
		pr_perror("Can't link %s to %s", p->path, first->path);
	close_safe(&fdfd);
	return ret;
}

static int prepare_file(struct place_ctx *ctx, struct placement *p)
{
	struct placement *first = NULL;
	const char *name;
	struct stat dst;
	int dfd, ret = -1;

	dfd = parent_fd(ctx, p->path, &name);
	if (dfd < 0)
		return -1;
	if (!fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW)) {
		if (S_ISDIR(dst.st_mode)) {
			pr_err("Can't restore %s: a directory is in its place\n", p->path);
			goto out;
		}
		if (unchanged(ctx, p)) {
			ctx->kept++;
			ret = 1;
			goto out;
		}
	} else if (errno != ENOENT) {
		pr_perror("Can't stat %s", p->path);
		goto out;
	}

	snprintf(p->tmp, sizeof(p->tmp), ".criu-tmp-file.%d.%u", ctx->pid, ctx->seq++);
	if (p->st.st_nlink > 1)
		first = find_link(ctx, &p->st);
	if (first)
		ret = link_to_first(ctx, first, dfd, p);
	else if (!renameat(ctx->stage_fd, p->path + 1, dfd, p->tmp))
		ret = 0;
	else if (errno != EXDEV)
		pr_perror("Can't move the staged %s into place", p->path);
	else if (copy_entry(ctx, p, dfd))
		unlinkat(dfd, p->tmp, 0);
	else
		ret = 0;
	if (ret)
		goto out;

	list_add_tail(&p->list, &ctx->files);
	if (p->st.st_nlink > 1 && !first)
		add_link(ctx, p);
	if (ctx->seq == ctx->fault_at) {
		pr_err("Fault injected: placing %s fails\n", p->path);
		ret = -1;
	}
out:
	return ret;
}

static int prepare_entry(struct place_ctx *ctx, const char *path);

/*
 * A directory missing at its target: the staged one goes there whole, one
 * rename for all that is in it (when the stage is on the same
 * filesystem), root's and 0700 until finish() sets its saved owner and
 * mode, so that no one sees into it before (chmod() also empties an
 * ACL's mask). 1 if it was moved.
 */
static int move_dir(struct place_ctx *ctx, struct placement *p, int dfd, const char *name)
{
	struct stat st;
	int fd, ret = -1;

	/* There, or the stage on another filesystem: entry by entry, from the staged directory as it is */
	if (!fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) || errno != ENOENT || fstat(dfd, &st) ||
	    st.st_dev != p->st.st_dev)
		return 0;
	fd = openat(ctx->stage_fd, p->path + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fchown(fd, geteuid(), getegid()) || fchmod(fd, 0700)) {
		pr_perror("Can't prepare the staged %s", p->path);
	} else if (sys_renameat2(ctx->stage_fd, p->path + 1, dfd, name, RENAME_NOREPLACE)) {
		/* Not moved (made meanwhile, another mount): as it was, its ACL's mask too, for copy_xattrs() */
		if (fchown(fd, p->st.st_uid, p->st.st_gid) || fchmod(fd, p->st.st_mode & 07777))
			pr_perror("Can't prepare the staged %s", p->path);
		else
			ret = 0;
	} else {
		ret = 1;
	}
	close_safe(&fd);
	if (ret <= 0)
		return ret;
	p->moved = true;
	p->dev = p->st.st_dev;
	p->ino = p->st.st_ino;
	list_add_tail(&p->list, &ctx->dirs);
	if (ctx->fault_at) {
		pr_err("Fault injected: placing %s fails\n", p->path);
		return -1;
	}
	return 1;
}

static int prepare_dir(struct place_ctx *ctx, struct placement *p)
{
	const char *name;
	struct stat dst;
	char **names;
	size_t i, nr;
	int dfd, ret = 0;

	dfd = parent_fd(ctx, p->path, &name);
	if (dfd < 0)
		return -1;
	ret = move_dir(ctx, p, dfd, name);
	if (ret)
		return ret < 0 ? -1 : 0;
	if (mkdirat(dfd, name, 0700) == 0) {
		p->created = true;
	} else if (errno != EEXIST) {
		pr_perror("Can't create directory %s", p->path);
		ret = -1;
	}
	if (!ret && fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW)) {
		pr_perror("Can't stat directory %s", p->path);
		ret = -1;
	} else if (!ret && !S_ISDIR(dst.st_mode)) {
		pr_err("Can't restore directory %s: something else is in its place\n", p->path);
		ret = -1;
	} else if (!ret && !p->created) {
		/* Fixed in place at commit; what is in it is resolved through it */
		ret = check_dir_owner(p->path, &dst, p->st.st_uid, p->path);
	}
	if (!ret) {
		p->dev = dst.st_dev;
		p->ino = dst.st_ino;
	}
	if (ret)
		return -1;
	list_add_tail(&p->list, &ctx->dirs);

	names = tmp_files_stage_names(ctx->stage_fd, p->path, &nr);
	if (!names)
		return -1;
	for (i = 0; i < nr; i++) {
		char *child = ret ? NULL : xsprintf("%s/%s", p->path, names[i]);

		if (!ret)
			ret = child ? prepare_entry(ctx, child) : -1;
		xfree(child);
		xfree(names[i]);
	}
	xfree(names);
	return ret;
}

static void free_placement(struct placement *p)
{
	xfree(p->path);
	xfree(p);
}

static int prepare_entry(struct place_ctx *ctx, const char *path)
{
	struct placement *p;
	int ret;

	p = xzalloc(sizeof(*p));
	if (!p)
		return -1;
	INIT_LIST_HEAD(&p->list);
	p->path = xstrdup(path);
	if (!p->path)
		goto err;
	if (fstatat(ctx->stage_fd, path + 1, &p->st, AT_SYMLINK_NOFOLLOW)) {
		pr_perror("The archive has no %s", path);
		goto err;
	}

	if (S_ISDIR(p->st.st_mode))
		ret = prepare_dir(ctx, p);
	else
		ret = prepare_file(ctx, p);
	if (list_empty(&p->list))
		free_placement(p);
	return ret < 0 ? -1 : 0;
err:
	free_placement(p);
	return -1;
}

/* Undo what commit_files() did so far, and remove what was prepared */
static void rollback(struct place_ctx *ctx)
{
	struct placement *p;
	const char *name;
	int dfd;

	list_for_each_entry(p, &ctx->files, list) {
		dfd = parent_fd(ctx, p->path, &name);
		if (dfd < 0)
			continue;
		if (p->exchanged && sys_renameat2(dfd, p->tmp, dfd, name, RENAME_EXCHANGE))
			pr_perror("Can't put the old %s back", p->path);
		if (p->placed && sys_renameat2(dfd, name, dfd, p->tmp, RENAME_NOREPLACE))
			pr_perror("Can't take %s back", p->path);
		unlinkat(dfd, p->tmp, 0);
	}
	list_for_each_entry_reverse(p, &ctx->dirs, list) {
		if (!p->created && !p->moved)
			continue;
		dfd = parent_fd(ctx, p->path, &name);
		/* A directory moved whole goes back into the stage, which is removed */
		if (dfd < 0 || (p->moved ? sys_renameat2(dfd, name, ctx->stage_fd, p->path + 1, RENAME_NOREPLACE) :
					   unlinkat(dfd, name, AT_REMOVEDIR)))
			pr_perror("Can't remove %s", p->path);
	}
}

/* Put tmp in the place of the target; an old target goes to tmp */
static int commit_one(struct place_ctx *ctx, struct placement *p)
{
	const char *name;
	int dfd, ret;

	dfd = parent_fd(ctx, p->path, &name);
	if (dfd < 0)
		return -1;
	ret = sys_renameat2(dfd, p->tmp, dfd, name, RENAME_NOREPLACE);
	if (!ret) {
		p->placed = true;
	} else if (errno == EEXIST) {
		ret = sys_renameat2(dfd, p->tmp, dfd, name, RENAME_EXCHANGE);
		p->exchanged = !ret;
	}
	if (ret)
		pr_perror("Can't put %s in place", p->path);
	return ret;
}

static int commit_files(struct place_ctx *ctx)
{
	struct placement *p;

	list_for_each_entry(p, &ctx->files, list)
		if (commit_one(ctx, p))
			return -1;
	return 0;
}

static int set_dir_metadata(struct place_ctx *ctx, struct placement *p)
{
	struct stat st;
	int src, dst, ret = -1;

	/* One moved whole has its xattrs already */
	src = p->moved ? -1 : openat(ctx->stage_fd, p->path + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	dst = tmp_files_open_beneath(ctx->root_fd, p->path + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if ((src < 0 && !p->moved) || dst < 0)
		pr_perror("Can't open %s to set its owner, mode and times", p->path);
	else if (fstat(dst, &st) || st.st_dev != p->dev || st.st_ino != p->ino)
		pr_err("Can't set the owner, mode and times of %s: it was replaced during the restore\n", p->path);
	else
		ret = copy_metadata(src, &p->st, dst, p->path);
	close_safe(&src);
	close_safe(&dst);
	return ret;
}

/*
 * Every entry is in place: drop the old versions, then set the saved
 * directories' owners, modes and times, children first (placing entries
 * changed their parents' mtime). A failure here is reported; the files
 * stay in place.
 */
static int finish(struct place_ctx *ctx)
{
	struct placement *p;
	const char *name;
	int dfd, ret = 0;

	list_for_each_entry(p, &ctx->files, list) {
		if (!p->exchanged)
			continue;
		dfd = parent_fd(ctx, p->path, &name);
		if (dfd < 0 || unlinkat(dfd, p->tmp, 0)) {
			pr_perror("Can't remove the old %s (%s)", p->path, p->tmp);
			ret = -1;
		}
	}
	list_for_each_entry_reverse(p, &ctx->dirs, list)
		if (S_ISDIR(p->st.st_mode) && set_dir_metadata(ctx, p))
			ret = -1;

	/* Every other one is written: one by one, or in a directory moved whole */
	pr_info("%u entr%s kept as they were, %u written\n", ctx->kept, ctx->kept == 1 ? "y" : "ies",
		ctx->nr_files - ctx->kept);
	if (ret)
		pr_err("The --tmp-file entries are in place, but not all of their metadata could be set\n");
	return ret;
}

static void free_ctx(struct place_ctx *ctx)
{
	struct placement *p, *t;

	list_for_each_entry_safe(p, t, &ctx->files, list)
		free_placement(p);
	list_for_each_entry_safe(p, t, &ctx->dirs, list)
		free_placement(p);
	xfree(ctx->buf);
}

int tmp_files_place(int root_fd, int stage_fd, TmpFilesManifestEntry *me)
{
	struct place_ctx ctx = { .root_fd = root_fd, .stage_fd = stage_fd, .me = me, .links = RB_ROOT, .dir_fd = -1 };
	int cwd_fd, ret = 0;
	size_t i;

	if (!kdat.has_openat2) {
		pr_err("--tmp-file restore needs openat2() (Linux 5.6)\n");
		return -1;
	}
	INIT_LIST_HEAD(&ctx.files);
	INIT_LIST_HEAD(&ctx.dirs);
	ctx.pid = getpid();
	ctx.buf = xmalloc(COPY_BUF);
	cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!ctx.buf || cwd_fd < 0) {
		pr_perror("Can't place the --tmp-file entries");
		xfree(ctx.buf);
		close_safe(&cwd_fd);
		return -1;
	}
	for (i = 0; i < me->n_entries; i++)
		ctx.nr_files += me->entries[i]->type != TMP_FILE_ENTRY__KIND__DIR;
	if (fault_injected(FI_TMP_FILES_PLACE))
		ctx.fault_at = ctx.nr_files / 2 + 1;

	for (i = 0; !ret && i < me->n_paths; i++) {
		TmpFileEntry *e = manifest_entry(&ctx, me->paths[i]);

		ret = prepare_parents(&ctx, me->paths[i], e ? e->uid : 0) ?: prepare_entry(&ctx, me->paths[i]);
	}
	forget_dir(&ctx);
	ret = ret ?: commit_files(&ctx);
	forget_dir(&ctx);
	if (ret) {
		pr_err("Nothing of the --tmp-file archive was restored\n");
		rollback(&ctx);
	} else {
		ret = finish(&ctx);
	}
	forget_dir(&ctx);
	free_ctx(&ctx);
	if (fchdir(cwd_fd)) {
		pr_perror("Can't go back to the working directory");
		ret = -1;
	}
	close(cwd_fd);
	return ret;
}
