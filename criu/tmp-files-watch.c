/*
 * --tmp-file-precopy: the record of what changed under the saved paths
 * between the pre-copy and the freeze, so that the frozen pass costs
 * what changed, not what is saved.
 *
 * Before the pre-copy's walk, a fanotify group marks the filesystem of
 * every saved path (FAN_MARK_FILESYSTEM; CRIU has CAP_SYS_ADMIN), with
 * FAN_REPORT_FID | FAN_REPORT_DFID_NAME: every event names the inode it
 * is about, and a directory entry event the directory and the name. A
 * filesystem mark, not a mark on each directory: it is placed once,
 * before the walk, so nothing the walk sees can change unreported; and
 * it reports an inode however it is reached (a hard link elsewhere, an
 * fd opened before the mark, a process outside the tree). Events of the
 * rest of the filesystem are read and dropped at the freeze.
 *
 * At the freeze the queue is read; each file handle is opened
 * (open_by_handle_at) and stat()ed: the inodes with an event of their
 * own (modify, attrib, close_write, move_self, delete_self) and the names
 * with a directory entry event (create, delete, moved_from, moved_to)
 * are "dirty". The frozen walk then calls the manifest's walk function
 * with the pre-copy's lstat() of every entry that is not dirty and is in
 * a directory whose listing did not change, and with a new lstat() (and
 * a new listing, for a directory) for the others; an inode that is not
 * the one the pre-copy saw, or a directory at a name that changed (its
 * number may be a new directory's), is walked afresh, below it too. What
 * tmp-files-precopy.c keeps is then decided by the same rules as
 * without this file: the record only spares the lstat() of what no event
 * can have changed. A handle that no longer opens is an inode that is
 * gone: its removal from a directory was an event of that directory.
 *
 * What fanotify does not report, and how it is covered:
 *  - a write through a shared mapping: tmp-files-precopy.c's rule (no
 *    file mapped shared at the start or at the freeze is kept) applies
 *    as before; a mapping made later and gone by the freeze ended with a
 *    close_write of its file;
 *  - a mount or unmount: the root task's mountinfo and root at the
 *    freeze must be those at the start;
 *  - another filesystem below a saved path: an entry whose device is not
 *    a marked filesystem's.
 *  - changes that do not go through this kernel's VFS: only tmpfs, ext4,
 *    xfs and btrfs are watched (not NFS, FUSE, overlayfs).
 * Any of these, a queue overflow (FAN_Q_OVERFLOW), an event that cannot
 * be attributed, or a kernel or filesystem that cannot report (ramfs,
 * no FID support) falls back to the full check, with a warning.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include "log.h"
#include "tmp-files-watch.h"
#include "util.h"
#include "xmalloc.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#ifndef FAN_REPORT_FID
#define FAN_REPORT_FID 0x00000200
#endif
#ifndef FAN_REPORT_DIR_FID
#define FAN_REPORT_DIR_FID 0x00000400
#endif
#ifndef FAN_REPORT_NAME
#define FAN_REPORT_NAME 0x00000800
#endif
#ifndef FAN_MARK_FILESYSTEM
#define FAN_MARK_FILESYSTEM 0x00000100
#endif
#ifndef FAN_ATTRIB
#define FAN_ATTRIB 0x00000004
#endif
#ifndef FAN_MOVED_FROM
#define FAN_MOVED_FROM 0x00000040
#endif
#ifndef FAN_MOVED_TO
#define FAN_MOVED_TO 0x00000080
#endif
#ifndef FAN_CREATE
#define FAN_CREATE 0x00000100
#endif
#ifndef FAN_DELETE
#define FAN_DELETE 0x00000200
#endif
#ifndef FAN_DELETE_SELF
#define FAN_DELETE_SELF 0x00000400
#endif
#ifndef FAN_MOVE_SELF
#define FAN_MOVE_SELF 0x00000800
#endif
#ifndef FAN_NOFD
#define FAN_NOFD -1
#endif

/* The info records of an event (linux/fanotify.h) */
#define INFO_FID       1
#define INFO_DFID_NAME 2
#define INFO_DFID      3

struct info_header {
	unsigned char type;
	unsigned char pad;
	unsigned short len;
};

struct info_fid {
	struct info_header hdr;
	int fsid[2];
	/* then a struct file_handle, and with INFO_DFID_NAME a name */
};

#define HANDLE_MAX 128 /* MAX_HANDLE_SZ */

struct handle {
	unsigned int bytes;
	int type;
	unsigned char f[HANDLE_MAX];
};

#define MASK                                                                                                   \
	(FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_CREATE | FAN_DELETE | \
	 FAN_DELETE_SELF | FAN_MOVE_SELF | FAN_ONDIR)

/* Events read at the freeze, at most: a filesystem that busy is checked in full */
#define MAX_EVENTS (1 << 16)

/* An entry as the pre-copy's walk saw it */
struct wnode {
	char *path; /* "/tmp/app/x" */
	const char *name;
	struct stat st;
	struct wnode **kids; /* a directory's, in the walk's order */
	size_t nr_kids;
};

/* A marked filesystem */
struct wfs {
	int fsid[2];
	dev_t dev;
	int fd; /* for open_by_handle_at() */
};

struct dirty_ino {
	dev_t dev;
	ino_t ino;
};

struct dirty_name {
	dev_t dev;
	ino_t ino;
	char *name;
};

/* A file handle of an event, and what it opened to */
struct resolved {
	uint64_t hash;
	int fsid[2];
	struct handle h;
	bool gone;
	dev_t dev;
	ino_t ino;
};

struct tmp_files_watch {
	const struct tmp_files_set *set;
	int fd;
	pid_t root_pid;
	struct wfs *fs;
	size_t nr_fs;
	char *mountinfo, root[PATH_MAX];
	const char *broken; /* why the record cannot be used */
	struct wnode **roots;
	size_t nr_roots;
	struct wnode **stack; /* the directories on the way to the last entry added */
	size_t depth, stack_size;
	struct dirty_ino *inos;
	size_t nr_inos;
	struct dirty_name *names;
	size_t nr_names;
	struct dirty_ino *written; /* inodes with a modify or close_write event */
	size_t nr_written;
	struct resolved *cache; /* open addressing, by hash */
	size_t cache_size, cache_used;
	size_t nr_events;
	size_t nr_nodes; /* entries recorded */
	bool too_many;	 /* more inodes changed on the filesystems than it is worth opening */
};

static char *read_mountinfo(pid_t pid)
{
	char path[64], *buf = NULL;
	size_t size = 0, len = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	do {
		if (len + 4096 + 1 > size) {
			size = size * 2 + 8192;
			if (xrealloc_safe(&buf, size)) {
				close(fd);
				return NULL;
			}
		}
		n = read(fd, buf + len, size - len - 1);
		if (n > 0)
			len += n;
	} while (n > 0);
	close(fd);
	if (n < 0) {
		xfree(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

static int read_root(pid_t pid, char *root)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/root", pid);
	n = readlink(path, root, PATH_MAX - 1);
	if (n < 0)
		return -1;
	root[n] = '\0';
	return 0;
}

/*
 * An fd on the filesystem of the saved path (as the tree sees it, beneath
 * its root root_fd, no symlink on the way), for open_by_handle_at(),
 * which takes no O_PATH fd: the path itself, or for a symlink (saved as
 * one) its directory. Opened without blocking nor following. An entry on
 * another filesystem than the one marked is found by tmp_files_watch_add().
 */
static int open_fs(int root_fd, const char *path)
{
	char *dir;
	int fd;

	fd = tmp_files_open_beneath(root_fd, path + 1, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd >= 0 || errno != ELOOP)
		return fd;
	dir = tmp_files_dirname(path);
	if (!dir)
		return -1;
	fd = tmp_files_open_beneath(root_fd, dir, O_RDONLY | O_DIRECTORY);
	xfree(dir);
	return fd;
}

/* The filesystem of the saved path, marked if it is not yet: by the fd checked, not by name */
static int mark_fs(struct tmp_files_watch *w, int root_fd, const char *path)
{
	struct statfs sfs;
	struct stat st;
	struct wfs *f;
	size_t i;
	int fd;

	fd = open_fs(root_fd, path);
	if (fd < 0) {
		if (errno == ENOENT) /* an optional path the tree does not have */
			return 0;
		pr_warn("Pre-copy: can't open %s: %s; the frozen pass checks every entry\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || fstatfs(fd, &sfs)) {
		pr_warn("Pre-copy: can't stat %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	/*
	 * Only local filesystems whose every change goes through this
	 * kernel's VFS: not NFS or FUSE (a change made elsewhere is no event
	 * here), nor overlayfs (a write to a layer below it is none either)
	 */
	if (sfs.f_type != 0x01021994 /* tmpfs */ && sfs.f_type != 0xEF53 /* ext2/3/4 */ &&
	    sfs.f_type != 0x58465342 /* xfs */ && sfs.f_type != (typeof(sfs.f_type))0x9123683E /* btrfs */) {
		pr_warn("Pre-copy: %s is on a filesystem (type 0x%llx) whose changes fanotify may not all see: "
			"the frozen pass checks every entry\n",
			path, (unsigned long long)sfs.f_type);
		close(fd);
		return -1;
	}
	for (i = 0; i < w->nr_fs; i++) {
		if (w->fs[i].dev == st.st_dev) {
			close(fd);
			return 0;
		}
	}
	if (fanotify_mark(w->fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MASK, fd, NULL)) {
		pr_warn("Pre-copy: the filesystem of %s cannot report changes to fanotify (%s): "
			"the frozen pass checks every entry\n",
			path, strerror(errno));
		close(fd);
		return -1;
	}
	if (xrealloc_safe(&w->fs, (w->nr_fs + 1) * sizeof(*w->fs))) {
		close(fd);
		return -1;
	}
	f = &w->fs[w->nr_fs++];
	memcpy(f->fsid, &sfs.f_fsid, sizeof(f->fsid));
	f->dev = st.st_dev;
	f->fd = fd;
	return 0;
}

struct tmp_files_watch *tmp_files_watch_start(const struct tmp_files_set *set, pid_t root_pid)
{
	struct tmp_files_watch *w;
	int root_fd;
	size_t i;

	w = xzalloc(sizeof(*w));
	if (!w)
		return NULL;
	w->set = set;
	w->root_pid = root_pid;
	w->fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_FID | FAN_REPORT_DIR_FID |
				      FAN_REPORT_NAME,
			      O_RDONLY | O_CLOEXEC);
	if (w->fd < 0) {
		pr_warn("Pre-copy: this kernel cannot report changes by file handle to fanotify (%s): "
			"the frozen pass checks every entry\n",
			strerror(errno));
		goto err;
	}
	/* Before the marks: a mount made after them is seen at the freeze */
	w->mountinfo = read_mountinfo(root_pid);
	if (!w->mountinfo || read_root(root_pid, w->root)) {
		pr_warn("Pre-copy: can't read the mounts of %d: the frozen pass checks every entry\n", root_pid);
		goto err;
	}
	root_fd = open(set->proc_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		pr_warn("Pre-copy: can't open the root of %d: the frozen pass checks every entry\n", root_pid);
		goto err;
	}
	for (i = 0; i < set->nr; i++) {
		if (mark_fs(w, root_fd, set->paths[i])) {
			close(root_fd);
			goto err;
		}
	}
	close(root_fd);
	pr_info("Pre-copy: %zu filesystem(s) watched for changes until the freeze (fanotify)\n", w->nr_fs);
	return w;
err:
	tmp_files_watch_free(w);
	return NULL;
}

static bool is_root(struct tmp_files_watch *w, const char *path)
{
	size_t i;

	for (i = 0; i < w->set->nr; i++)
		if (!strcmp(w->set->paths[i], path))
			return true;
	return false;
}

static int add_kid(struct wnode *dir, struct wnode *n)
{
	/* Doubling: nr_kids a power of two is when it is full */
	if (!(dir->nr_kids & (dir->nr_kids - 1)) && xrealloc_safe(&dir->kids, (dir->nr_kids ?: 1) * 2 * sizeof(*dir->kids)))
		return -1;
	dir->kids[dir->nr_kids++] = n;
	return 0;
}

int tmp_files_watch_add(struct tmp_files_watch *w, const char *path, const struct stat *st)
{
	struct wnode *n;
	size_t i;

	if (!w || w->broken)
		return 0;
	for (i = 0; i < w->nr_fs && w->fs[i].dev != st->st_dev; i++)
		;
	if (i == w->nr_fs) {
		w->broken = "an entry is on a filesystem that was not watched from the start";
		pr_debug("Pre-copy: %s is on a filesystem that was not watched from the start\n", path);
		return 0;
	}
	n = xzalloc(sizeof(*n));
	if (!n)
		return -1;
	n->path = xstrdup(path);
	if (!n->path) {
		xfree(n);
		return -1;
	}
	n->name = strrchr(n->path, '/') + 1;
	n->st = *st;
	w->nr_nodes++;

	if (is_root(w, path)) {
		w->depth = 0;
		if (xrealloc_safe(&w->roots, (w->nr_roots + 1) * sizeof(*w->roots)))
			goto err;
		w->roots[w->nr_roots++] = n;
	} else {
		/* Parents first: the parent is the innermost directory on the way that contains it */
		while (w->depth) {
			struct wnode *d = w->stack[w->depth - 1];
			size_t len = strlen(d->path);

			if (!strncmp(d->path, path, len) && path[len] == '/' && !strchr(path + len + 1, '/'))
				break;
			w->depth--;
		}
		if (!w->depth) {
			w->broken = "an entry of the walk has no parent in it";
			goto err_soft;
		}
		if (add_kid(w->stack[w->depth - 1], n))
			goto err;
	}
	if (S_ISDIR(st->st_mode)) {
		if (w->depth == w->stack_size) {
			w->stack_size = w->stack_size * 2 ?: 16;
			if (xrealloc_safe(&w->stack, w->stack_size * sizeof(*w->stack)))
				return -1; /* n is in the tree: freed with it */
		}
		w->stack[w->depth++] = n;
	}
	return 0;
err_soft:
	xfree(n->path);
	xfree(n);
	return 0;
err:
	xfree(n->path);
	xfree(n);
	return -1;
}

static uint64_t hash_handle(const int *fsid, const struct handle *h)
{
	uint64_t v = 1469598103934665603ULL;
	const unsigned char *p;
	size_t i;

	for (p = (const unsigned char *)fsid, i = 0; i < 8; i++)
		v = (v ^ p[i]) * 1099511628211ULL;
	v = (v ^ (unsigned int)h->type) * 1099511628211ULL;
	for (i = 0; i < h->bytes; i++)
		v = (v ^ h->f[i]) * 1099511628211ULL;
	return v;
}

static struct wfs *find_fs(struct tmp_files_watch *w, const int *fsid)
{
	size_t i;

	for (i = 0; i < w->nr_fs; i++)
		if (!memcmp(w->fs[i].fsid, fsid, sizeof(w->fs[i].fsid)))
			return &w->fs[i];
	return NULL;
}

static int cache_grow(struct tmp_files_watch *w)
{
	struct resolved *old = w->cache;
	size_t old_size = w->cache_size, i;

	w->cache_size = old_size ? old_size * 2 : 256;
	w->cache = xzalloc(w->cache_size * sizeof(*w->cache));
	if (!w->cache) {
		w->cache = old;
		w->cache_size = old_size;
		return -1;
	}
	for (i = 0; i < old_size; i++) {
		size_t j;

		if (!old[i].h.bytes)
			continue;
		for (j = old[i].hash & (w->cache_size - 1); w->cache[j].h.bytes; j = (j + 1) & (w->cache_size - 1))
			;
		w->cache[j] = old[i];
	}
	xfree(old);
	return 0;
}

/* The inode a file handle of an event is: NULL if it cannot be told */
static struct resolved *resolve(struct tmp_files_watch *w, const struct info_fid *info, const unsigned char *fh,
				size_t room)
{
	struct handle h;
	struct resolved *r;
	struct stat st;
	uint64_t v;
	struct wfs *f;
	size_t j;
	int fd;

	if (room < 8)
		return NULL;
	memcpy(&h.bytes, fh, sizeof(h.bytes));
	memcpy(&h.type, fh + 4, sizeof(h.type));
	if (!h.bytes || h.bytes > HANDLE_MAX || h.bytes > room - 8)
		return NULL;
	memcpy(h.f, fh + 8, h.bytes);
	v = hash_handle(info->fsid, &h);
	if (2 * (w->cache_used + 1) > w->cache_size && cache_grow(w))
		return NULL;
	for (j = v & (w->cache_size - 1); w->cache[j].h.bytes; j = (j + 1) & (w->cache_size - 1)) {
		r = &w->cache[j];
		if (r->hash == v && !memcmp(r->fsid, info->fsid, sizeof(r->fsid)) && r->h.type == h.type &&
		    r->h.bytes == h.bytes && !memcmp(r->h.f, h.f, h.bytes))
			return r;
	}
	f = find_fs(w, info->fsid);
	if (!f)
		return NULL;
	/* Each handle costs an open: past this many, checking every entry costs less */
	if (w->cache_used >= max_t(size_t, 1024, w->nr_nodes / 2)) {
		w->too_many = true;
		return NULL;
	}
	r = &w->cache[j];
	fd = syscall(__NR_open_by_handle_at, f->fd, &h, O_PATH | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ESTALE) {
			pr_debug("Pre-copy: can't open a file handle of type %d, %u bytes: %s\n", h.type, h.bytes,
				 strerror(errno));
			return NULL;
		}
		r->gone = true;
	} else {
		int ret = fstat(fd, &st);

		close(fd);
		if (ret)
			return NULL;
		r->dev = st.st_dev;
		r->ino = st.st_ino;
	}
	r->hash = v;
	memcpy(r->fsid, info->fsid, sizeof(r->fsid));
	r->h = h;
	w->cache_used++;
	return r;
}

static int add_to(struct dirty_ino **set, size_t *nr, dev_t dev, ino_t ino)
{
	if (!(*nr & (*nr - 1)) && xrealloc_safe(set, (*nr ?: 1) * 2 * sizeof(**set)))
		return -1;
	(*set)[*nr].dev = dev;
	(*set)[(*nr)++].ino = ino;
	return 0;
}

static int add_name(struct tmp_files_watch *w, dev_t dev, ino_t ino, const char *name)
{
	char *copy;

	if (!(w->nr_names & (w->nr_names - 1)) &&
	    xrealloc_safe(&w->names, (w->nr_names ?: 1) * 2 * sizeof(*w->names)))
		return -1;
	copy = xstrdup(name);
	if (!copy)
		return -1;
	w->names[w->nr_names].dev = dev;
	w->names[w->nr_names].ino = ino;
	w->names[w->nr_names++].name = copy;
	return 0;
}

/* One event's info records; a reason if it cannot be attributed */
static const char *read_event(struct tmp_files_watch *w, const struct fanotify_event_metadata *m)
{
	const char *p = (const char *)m + m->metadata_len, *end = (const char *)m + m->event_len;
	bool any = false;

	if (m->fd != FAN_NOFD)
		close(m->fd);
	while (p + sizeof(struct info_header) <= end) {
		const struct info_fid *info = (const struct info_fid *)p;
		const unsigned char *fh = (const unsigned char *)(info + 1);
		struct resolved *r;
		unsigned short len;

		memcpy(&len, &info->hdr.len, sizeof(len));
		if (len < sizeof(*info) || p + len > end)
			return "a malformed event";
		if (info->hdr.type != INFO_FID && info->hdr.type != INFO_DFID && info->hdr.type != INFO_DFID_NAME) {
			p += len;
			continue; /* not about a file (a pidfd, an error) */
		}
		r = resolve(w, info, fh, len - sizeof(*info));
		if (!r)
			return w->too_many ? "more inodes changed on the filesystem than entries to check" :
					     "a file handle that cannot be opened";
		any = true;
		if (r->gone) {
			/* Its removal from a directory was an event of that directory */
		} else if (info->hdr.type == INFO_DFID_NAME) {
			unsigned int bytes;
			const char *name;

			memcpy(&bytes, fh, sizeof(bytes));
			name = (const char *)fh + 8 + bytes;
			if (name >= p + len || !memchr(name, '\0', p + len - name))
				return "a malformed event";
			if (!strcmp(name, ".") ? add_to(&w->inos, &w->nr_inos, r->dev, r->ino) : add_name(w, r->dev, r->ino, name))
				return "no memory";
		} else if (add_to(&w->inos, &w->nr_inos, r->dev, r->ino)) {
			return "no memory";
		} else if (info->hdr.type == INFO_FID && (m->mask & (FAN_MODIFY | FAN_CLOSE_WRITE)) &&
			   add_to(&w->written, &w->nr_written, r->dev, r->ino)) {
			return "no memory";
		}
		p += len;
	}
	return any ? NULL : "an event without a file handle";
}

static int ino_cmp(const void *a, const void *b)
{
	const struct dirty_ino *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	const struct dirty_name *x = a, *y = b;
	int c = ino_cmp(&(struct dirty_ino){ x->dev, x->ino }, &(struct dirty_ino){ y->dev, y->ino });

	return c ?: strcmp(x->name, y->name);
}

static const char *drain(struct tmp_files_watch *w)
{
	static char buf[1 << 16] __attribute__((aligned(8)));
	const char *why = NULL;
	char *mi, root[PATH_MAX];
	bool same;

	for (;;) {
		const struct fanotify_event_metadata *m = (const void *)buf;
		ssize_t n = read(w->fd, buf, sizeof(buf));

		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return "the queue cannot be read";
		for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			if (m->vers != FANOTIFY_METADATA_VERSION)
				return "an event of another fanotify version";
			/* The reason to say: an overflow, at the end of the queue, before the others */
			if (m->mask & FAN_Q_OVERFLOW)
				return "the queue overflowed (more changes on the filesystem than it holds)";
			if (++w->nr_events > MAX_EVENTS)
				return "the filesystem changes faster than the queue is read";
			if (!why)
				why = read_event(w, m);
			else if (m->fd != FAN_NOFD)
				close(m->fd);
		}
	}
	if (why)
		return why;
	mi = read_mountinfo(w->root_pid);
	same = mi && !strcmp(mi, w->mountinfo) && !read_root(w->root_pid, root) && !strcmp(root, w->root);
	xfree(mi);
	if (!same)
		return "the mounts of the tree changed (a mount is no fanotify event)";
	if (w->nr_inos)
		qsort(w->inos, w->nr_inos, sizeof(*w->inos), ino_cmp);
	if (w->nr_names)
		qsort(w->names, w->nr_names, sizeof(*w->names), name_cmp);
	if (w->nr_written)
		qsort(w->written, w->nr_written, sizeof(*w->written), ino_cmp);
	return NULL;
}

bool tmp_files_watch_drain(struct tmp_files_watch *w)
{
	if (!w)
		return false;
	if (!w->broken)
		w->broken = drain(w);
	if (w->broken) {
		pr_warn("Pre-copy: the change record cannot be used: %s; the frozen pass checks every entry\n",
			w->broken);
		return false;
	}
	pr_info("Pre-copy: %zu event(s) since the pre-copy started, %zu changed inode(s) and %zu changed name(s): "
		"the frozen pass looks only at those\n",
		w->nr_events, w->nr_inos, w->nr_names);
	return true;
}

static bool ino_dirty(struct tmp_files_watch *w, const struct stat *st)
{
	struct dirty_ino key = { st->st_dev, st->st_ino };

	return w->nr_inos && bsearch(&key, w->inos, w->nr_inos, sizeof(*w->inos), ino_cmp);
}

/*
 * The file st was written, or closed after it was open for writing, since
 * the pre-copy started: its data may differ with the same times (a write
 * through a shared mapping on tmpfs changes none; munmap() of the last
 * one closes the file).
 */
bool tmp_files_watch_written(struct tmp_files_watch *w, const struct stat *st)
{
	struct dirty_ino key = { st->st_dev, st->st_ino };

	return w && w->nr_written && bsearch(&key, w->written, w->nr_written, sizeof(*w->written), ino_cmp);
}

/* The first changed name in the directory st, or NULL */
static struct dirty_name *first_name(struct tmp_files_watch *w, const struct stat *st, size_t *nr)
{
	size_t lo = 0, hi = w->nr_names, end;
	struct dirty_ino key = { st->st_dev, st->st_ino };

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ino_cmp(&(struct dirty_ino){ w->names[mid].dev, w->names[mid].ino }, &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < w->nr_names && w->names[end].dev == key.dev && w->names[end].ino == key.ino; end++)
		;
	*nr = end - lo;
	return *nr ? &w->names[lo] : NULL;
}

static bool same_inode(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && !((a->st_mode ^ b->st_mode) & S_IFMT);
}

struct walk_ctx {
	struct tmp_files_watch *w;
	tmp_files_walk_fn fn;
	void *ctx;
	size_t stats; /* lstat()s made */
};

static int walk_node(struct walk_ctx *c, char *path, size_t len, struct wnode *n, const struct stat *fresh,
		     bool stat_it);

/* path + "/" + name, and the walk below it */
static int walk_kid(struct walk_ctx *c, char *path, size_t len, const char *name, struct wnode *n,
		    const struct stat *fresh, bool stat_it)
{
	int m = snprintf(path + len, PATH_MAX - len, "/%s", name), ret;

	if (m >= PATH_MAX - len) {
		pr_err("A path in %s is too long\n", path);
		path[len] = '\0';
		return -1;
	}
	ret = walk_node(c, path, len + m, n, fresh, stat_it);
	path[len] = '\0';
	return ret;
}

/*
 * The entry at path: n as the pre-copy saw it (NULL: it did not), fresh
 * its lstat() now if it was made; stat_it: its name changed, make one.
 * Calls fn as tmp_files_walk() would.
 */
static int walk_node(struct walk_ctx *c, char *path, size_t len, struct wnode *n, const struct stat *fresh,
		     bool stat_it)
{
	struct tmp_files_watch *w = c->w;
	struct dirty_name *names;
	size_t nr_names, i, j;
	struct stat st;
	int ret;

	names = n ? first_name(w, &n->st, &nr_names) : NULL;
	/* A directory with a changed name has a new mtime and ctime */
	if (!fresh && (stat_it || !n || ino_dirty(w, &n->st) || names)) {
		if (lstat(path, &st)) {
			if (errno == ENOENT)
				return 0; /* gone: a changed name that is no more */
			pr_perror("Can't stat %s", path);
			return -1;
		}
		c->stats++;
		fresh = &st;
	}
	/*
	 * Not what the pre-copy saw: all of it afresh; so is a directory at a
	 * name that changed, whatever its inode number (ext4 gives a removed
	 * one's to the next at once; its events went with its handle)
	 */
	if (!n || (fresh && !same_inode(fresh, &n->st)) || (stat_it && S_ISDIR(fresh->st_mode)))
		return tmp_files_walk(path, len, c->fn, c->ctx, false);

	ret = c->fn(c->ctx, path, len, fresh ?: &n->st);
	if (ret || !S_ISDIR(n->st.st_mode))
		return ret < 0 ? -1 : 0;

	/*
	 * Its listing is the pre-copy's but for the changed names: a name
	 * comes or goes only with an event of the directory (create, delete,
	 * moved_from, moved_to) that names it
	 */
	for (i = 0; !ret && i < n->nr_kids; i++) {
		struct wnode *kid = n->kids[i];
		bool changed = false;

		for (j = 0; j < nr_names && !changed; j++)
			changed = !strcmp(names[j].name, kid->name);
		ret = walk_kid(c, path, len, kid->name, kid, NULL, changed);
	}
	/* Names that were not there */
	for (j = 0; !ret && j < nr_names; j++) {
		bool known = false;

		if (j && !strcmp(names[j].name, names[j - 1].name))
			continue;
		for (i = 0; i < n->nr_kids && !known; i++)
			known = !strcmp(names[j].name, n->kids[i]->name);
		if (!known && strcmp(names[j].name, ".") && strcmp(names[j].name, ".."))
			ret = walk_kid(c, path, len, names[j].name, NULL, NULL, true);
	}
	return ret;
}

/*
 * walk_node()'s rule for a name that changed, for the names from the
 * tree's root (path's first prefix_len bytes) to the saved path, which
 * are in no listing of the pre-copy's. (A directory on an unmarked
 * filesystem has no event, but a rename there moves a mount point too,
 * and the mounts are compared at the freeze.)
 */
static bool way_changed(struct tmp_files_watch *w, struct walk_ctx *c, char *path, size_t prefix_len, size_t len)
{
	size_t i = prefix_len;

	while (i < len) {
		const char *name = path + i + 1;
		size_t nr, j, name_len = strcspn(name, "/");
		struct dirty_name *names;
		struct stat st;
		int ret;

		/* The directory the name is in: the tree's root (a magic link) is followed */
		path[i] = '\0';
		ret = i == prefix_len ? stat(path, &st) : lstat(path, &st);
		path[i] = '/';
		if (ret)
			return true; /* the walk says what is wrong */
		c->stats++;
		names = first_name(w, &st, &nr);
		for (j = 0; j < nr; j++)
			if (strlen(names[j].name) == name_len && !strncmp(names[j].name, name, name_len))
				return true;
		i += 1 + name_len;
	}
	return false;
}

int tmp_files_watch_walk(struct tmp_files_watch *w, char *path, size_t len, size_t prefix_len, tmp_files_walk_fn fn,
			 void *ctx)
{
	struct walk_ctx c = { .w = w, .fn = fn, .ctx = ctx };
	struct wnode *n = NULL;
	struct stat st;
	size_t i;
	int ret;

	for (i = 0; i < w->nr_roots && !n; i++)
		if (!strcmp(w->roots[i]->path, path + prefix_len))
			n = w->roots[i];
	/* A saved path's parent is not watched for it: its own lstat(), always */
	if (lstat(path, &st)) {
		pr_perror("Can't stat %s", path);
		return -1;
	}
	c.stats++;
	if (n && way_changed(w, &c, path, prefix_len, len)) {
		pr_info("Pre-copy: a name on the way to %s changed since the pre-copy: walked afresh\n",
			path + prefix_len);
		n = NULL;
	}
	ret = walk_node(&c, path, len, n, &st, false);
	pr_info("Pre-copy: %s walked from the change record with %zu lstat()s\n", path + prefix_len, c.stats);
	return ret;
}

static void free_node(struct wnode *n)
{
	size_t i;

	for (i = 0; i < n->nr_kids; i++)
		free_node(n->kids[i]);
	xfree(n->kids);
	xfree(n->path);
	xfree(n);
}

/*
 * Closing a fanotify group with marks waits for an SRCU grace period
 * (tens of milliseconds), which the tree would spend frozen: the group
 * is left open, its queue bounded, until criu exits, after the resume.
 */
static int parked_fd = -1;

void tmp_files_watch_free(struct tmp_files_watch *w)
{
	size_t i;

	if (!w)
		return;
	if (w->fd >= 0) {
		close_safe(&parked_fd); /* the group of an earlier dump of this process (RPC) */
		parked_fd = w->fd;
	}
	for (i = 0; i < w->nr_fs; i++)
		close(w->fs[i].fd);
	xfree(w->fs);
	for (i = 0; i < w->nr_roots; i++)
		free_node(w->roots[i]);
	xfree(w->roots);
	xfree(w->stack);
	xfree(w->inos);
	xfree(w->written);
	for (i = 0; i < w->nr_names; i++)
		xfree(w->names[i].name);
	xfree(w->names);
	xfree(w->cache);
	xfree(w->mountinfo);
	xfree(w);
}
