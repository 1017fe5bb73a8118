/*
 * --tmp-file: the manifest image (tmp-files-manifest.img). At dump, a
 * child of criu walks the saved paths while tar archives them, checks
 * the files again once tar is done and writes the manifest; at restore,
 * the extracted archive is checked against it before anything is
 * written.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/err.h"
#include "image.h"
#include "log.h"
#include "namespaces.h"
#include "protobuf.h"
#include "rbtree.h"
#include "servicefd.h"
#include "string.h"
#include "tmp-files-manifest.h"
#include "tmp-files-watch.h"
#include "util.h"
#include "xmalloc.h"

#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

/*
 * The checksum of the regular file at path, which must be the inode st
 * describes: another party may have put a fifo (open() would block) or
 * another file there since it was stat'ed.
 */
static int content_xxh64(const char *path, const struct stat *st, uint64_t *sum)
{
	int fd, ret;

	fd = tmp_files_open_seen(AT_FDCWD, path, st);
	if (fd < 0)
		return -1;
	ret = tmp_files_content_sum(fd, st->st_size, sum);
	if (ret)
		pr_err("Can't read %s\n", path);
	close(fd);
	return ret;
}

/* A regular file of the manifest, as the walk saw it */
struct seen_file {
	struct rb_node node; /* by st_dev, st_ino: hardlinks */
	TmpFileEntry *e;
	struct stat st;
	bool precopied; /* its member is the pre-copy's: tar does not read it now */
	struct seen_file *next;
};

/* The manifest's entries: what tar archived, walked while still frozen */
struct manifest_walk {
	const struct tmp_files_set *set;
	const struct tmp_files_keep *keep; /* --tmp-file-precopy */
	int names_fd;			   /* with keep: what tar archives now */
	size_t nr_delta;
	TmpFileEntry **entries;
	size_t nr, size;
	struct rb_root files;
	struct seen_file *first;
	char path[PATH_MAX]; /* set->proc_root, then the entry's path */
	size_t prefix_len;
};

static int seen_cmp(const struct stat *a, const struct stat *b)
{
	if (a->st_dev != b->st_dev)
		return a->st_dev < b->st_dev ? -1 : 1;
	if (a->st_ino != b->st_ino)
		return a->st_ino < b->st_ino ? -1 : 1;
	return 0;
}

/*
 * The entry of the first name of a regular file with other links, or
 * NULL after adding it. Only a file with more than one link can have been
 * seen by another name: the tree of inodes holds only those (a lookup in
 * it costs a cache miss a level, with the tree frozen).
 */
static TmpFileEntry *first_link(struct manifest_walk *w, TmpFileEntry *e, const struct stat *st)
{
	struct rb_node **n = &w->files.rb_node, *parent = NULL;
	struct seen_file *f;

	while (st->st_nlink > 1 && *n) {
		int c;

		parent = *n;
		f = rb_entry(parent, struct seen_file, node);
		c = seen_cmp(st, &f->st);
		if (!c)
			return f->e;
		n = c < 0 ? &parent->rb_left : &parent->rb_right;
	}
	f = xzalloc(sizeof(*f));
	if (!f)
		return ERR_PTR(-ENOMEM);
	f->e = e;
	f->st = *st;
	f->next = w->first;
	w->first = f;
	if (st->st_nlink > 1)
		rb_link_and_balance(&w->files, &f->node, parent, n);
	return NULL;
}

/* Read while the tree is frozen: a change means a writer outside it */
static int add_checksum(TmpFileEntry *e, const char *fpath, const struct stat *st)
{
	struct stat now;
	int fd, ret;

	fd = tmp_files_open_seen(AT_FDCWD, fpath, st);
	if (fd < 0)
		return -1;
	ret = tmp_files_content_sum(fd, st->st_size, &e->content_xxh64);
	if (!ret && (fstat(fd, &now) || now.st_size != st->st_size ||
		     now.st_ctim.tv_sec != st->st_ctim.tv_sec || now.st_ctim.tv_nsec != st->st_ctim.tv_nsec)) {
		pr_err("--tmp-file: %s changed while it was saved (a writer outside the dumped tree?)\n", e->path);
		ret = -1;
	}
	close(fd);
	e->has_content_xxh64 = !ret;
	return ret;
}

/*
 * What tar archives with --xattrs --acls (symlinks' are left out), or the
 * target of a symlink: read through an fd of the entry the walk saw
 */
static int read_walked(struct manifest_walk *w, TmpFileEntry *e, const struct stat *st)
{
	char target[PATH_MAX];
	ssize_t len;
	int fd, ret = -1;

	fd = tmp_files_open_walked(w->path, st, O_PATH);
	if (fd < 0) {
		tmp_files_walked_error(w->path);
		return -1;
	}
	if (!S_ISLNK(st->st_mode)) {
		ret = tmp_files_get_xattrs_fd(fd, e->path, e);
	} else if ((len = readlinkat(fd, "", target, sizeof(target) - 1)) < 0) {
		pr_perror("Can't read link %s", e->path);
	} else {
		target[len] = '\0';
		e->target = xstrdup(target);
		ret = e->target ? 0 : -1;
	}
	close(fd);
	return ret;
}

static int fill_entry(struct manifest_walk *w, TmpFileEntry *e, const struct stat *st)
{
	TmpFileEntry *first;

	/* With a pre-copy, a kept entry's xattrs come from it: sort_out() */
	if (!w->keep && !S_ISLNK(st->st_mode) && read_walked(w, e, st))
		return -1;

	e->mode = st->st_mode & 07777;
	/* As the tree sees them: tar runs in its user namespace too */
	e->uid = userns_uid(st->st_uid);
	e->gid = userns_gid(st->st_gid);
	e->has_mtime_sec = e->has_mtime_nsec = true;
	e->mtime_sec = st->st_mtim.tv_sec;
	e->mtime_nsec = st->st_mtim.tv_nsec;

	switch (st->st_mode & S_IFMT) {
	case S_IFREG:
		first = first_link(w, e, st);
		if (IS_ERR(first))
			return -1;
		if (first) {
			e->type = TMP_FILE_ENTRY__KIND__HARDLINK;
			e->target = xstrdup(first->path);
			return e->target ? 0 : -1;
		}
		e->type = TMP_FILE_ENTRY__KIND__REG;
		e->has_size = true;
		e->size = st->st_size;
		/* With a pre-copy: by the child, if tar archives the file again */
		return w->keep ? 0 : add_checksum(e, w->path, st);
	case S_IFDIR:
		e->type = TMP_FILE_ENTRY__KIND__DIR;
		return 0;
	case S_IFLNK:
		e->type = TMP_FILE_ENTRY__KIND__SYMLINK;
		return read_walked(w, e, st);
	case S_IFIFO:
		e->type = TMP_FILE_ENTRY__KIND__FIFO;
		return 0;
	default:
		/* Restore would make it, as root: a device the tree may not have been allowed to make */
		pr_err("--tmp-file: %s is a device node: refusing to save it\n", e->path);
		return -1;
	}
}

/* With a pre-copy: keep its member of the entry, or list the entry for tar */
static int sort_out(struct manifest_walk *w, TmpFileEntry *e, const struct stat *st)
{
	size_t len = strlen(e->path);
	uint64_t sum;
	const char *why = w->keep->changed(w->keep->ctx, e->path, st, &sum, e);

	if (!why) {
		if (e->type == TMP_FILE_ENTRY__KIND__REG) {
			e->content_xxh64 = sum;
			e->has_content_xxh64 = true;
			w->first->precopied = true; /* its seen_file: first_link() just added it */
		}
		return 0;
	}
	pr_debug("Pre-copy: %s archived again: %s\n", e->path, why);
	if (!S_ISLNK(st->st_mode) && read_walked(w, e, st))
		return -1;
	w->nr_delta++;
	/* Relative to the root, with the '\0' that ends the name */
	if (write_all(w->names_fd, e->path + 1, len) != len) {
		pr_perror("Can't write the --tmp-file list");
		return -1;
	}
	return 0;
}

static int manifest_add(void *ctx, char *fpath, size_t len, const struct stat *st)
{
	struct manifest_walk *w = ctx;
	const char *path = fpath + w->prefix_len;
	TmpFileEntry *e;

	if (tmp_files_excluded(w->set, path))
		return TMP_FILES_WALK_SKIP;
	if (S_ISSOCK(st->st_mode)) /* tar does not archive sockets */
		return 0;

	if (w->nr == w->size) {
		w->size = w->size * 2 ?: 64;
		if (xrealloc_safe(&w->entries, w->size * sizeof(*w->entries)))
			return -1;
	}
	e = xmalloc(sizeof(*e));
	if (!e)
		return -1;
	tmp_file_entry__init(e);
	w->entries[w->nr++] = e;
	e->path = xstrdup(path);
	if (!e->path || fill_entry(w, e, st))
		return -1;
	return w->keep ? sort_out(w, e, st) : 0;
}

static int collect_manifest(struct manifest_walk *w)
{
	struct tmp_files_watch *watch = w->keep ? w->keep->watch : NULL;
	size_t i;

	w->prefix_len = strlen(w->set->proc_root);
	for (i = 0; i < w->set->nr; i++) {
		int n = snprintf(w->path, sizeof(w->path), "%s%s", w->set->proc_root, w->set->paths[i]);

		if (watch ? tmp_files_watch_walk(watch, w->path, n, w->prefix_len, manifest_add, w) :
			    tmp_files_walk(w->path, n, manifest_add, w, false)) {
			pr_err("Can't list %s for the --tmp-file manifest\n", w->set->paths[i]);
			return -1;
		}
	}
	return 0;
}

/*
 * Once tar is done: every regular file must be as the walk saw it, and
 * unchanged since before tar started (since), so that the manifest
 * describes the bytes in the archive. A writer outside the frozen tree
 * makes the dump fail here, naming the file, rather than make images
 * that every restore refuses. A file the pre-copy archived and the walk
 * kept is not read now: its member and its checksum are of the content
 * the walk found.
 */
static int check_unchanged(struct manifest_walk *w, const struct timespec *since)
{
	struct seen_file *f;

	for (f = w->first; f; f = f->next) {
		struct stat now;

		if (f->precopied)
			continue;
		snprintf(w->path, sizeof(w->path), "%s%s", w->set->proc_root, f->e->path);
		if (lstat(w->path, &now) || seen_cmp(&now, &f->st) || now.st_size != f->st.st_size ||
		    now.st_ctim.tv_sec != f->st.st_ctim.tv_sec || now.st_ctim.tv_nsec != f->st.st_ctim.tv_nsec ||
		    now.st_ctim.tv_sec > since->tv_sec ||
		    (now.st_ctim.tv_sec == since->tv_sec && now.st_ctim.tv_nsec >= since->tv_nsec)) {
			pr_err("--tmp-file: %s changed while it was saved (a writer outside the dumped tree?); dump again\n",
			       f->e->path);
			return -1;
		}
	}
	return 0;
}

static int write_manifest_at(int dfd, TmpFilesManifestEntry *me)
{
	struct cr_img *img;
	int ret;

	img = open_image_at(dfd, CR_FD_TMP_FILES_MANIFEST, O_DUMP);
	if (!img)
		return -1;
	ret = pb_write_one(img, me, PB_TMP_FILES_MANIFEST);
	close_image(img);
	return ret;
}

/*
 * replace: the manifest exists, and is replaced as a whole or not at
 * all: the new one is written in a directory of its own next to it, then
 * renamed over it. A failure, or a crash, leaves the old one.
 */
int tmp_files_write_manifest(TmpFilesManifestEntry *me, bool replace)
{
	const char *name = imgset_template[CR_FD_TMP_FILES_MANIFEST].fmt, *tmp = ".tmp-files-manifest.new";
	int dfd = get_service_fd(IMG_FD_OFF), fd, ret = -1;

	if (!replace)
		return write_manifest_at(-1, me);

	if (mkdirat(dfd, tmp, 0700) && errno != EEXIST) {
		pr_perror("Can't make %s", tmp);
		return -1;
	}
	fd = openat(dfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && !write_manifest_at(fd, me)) {
		int nfd = openat(fd, name, O_RDONLY | O_CLOEXEC);

		/* On disk before it takes the old one's place */
		ret = nfd < 0 || fsync(nfd) ? -1 : renameat(fd, name, dfd, name);
		if (ret)
			pr_perror("Can't replace %s", name);
		close_safe(&nfd);
	}
	if (fd >= 0)
		unlinkat(fd, name, 0);
	close_safe(&fd);
	unlinkat(dfd, tmp, AT_REMOVEDIR);
	return ret;
}

/* With a pre-copy: the files tar archives again, read while it does */
static int add_checksums(struct manifest_walk *w)
{
	struct seen_file *f;

	for (f = w->first; f; f = f->next) {
		if (f->e->has_content_xxh64)
			continue;
		snprintf(w->path, sizeof(w->path), "%s%s", w->set->proc_root, f->e->path);
		if (add_checksum(f->e, w->path, &f->st))
			return -1;
	}
	return 0;
}

static void free_walk(struct manifest_walk *w)
{
	size_t i;

	while (w->first) {
		struct seen_file *f = w->first;

		w->first = f->next;
		xfree(f);
	}
	for (i = 0; i < w->nr; i++)
		tmp_file_entry__free_unpacked(w->entries[i], NULL);
	xfree(w->entries);
	w->entries = NULL;
	w->nr = 0;
}

/* The parent's copy of the walk, while the child that writes the manifest shares its pages */
static struct manifest_walk parent_walk;

/* Once tar is done: the files checked again, and the manifest of the walk written */
static int write_walk(const struct tmp_files_set *set, struct manifest_walk *w, const struct timespec *since)
{
	TmpFilesManifestEntry me = TMP_FILES_MANIFEST_ENTRY__INIT;

	if (check_unchanged(w, since))
		return -1;
	me.n_paths = set->nr;
	me.paths = set->paths;
	me.root = strcmp(set->root, "/") ? (char *)set->root : NULL;
	me.format = "posix";
	me.compression = "none";
	me.n_entries = w->nr;
	me.entries = w->entries;
	return tmp_files_write_manifest(&me, false);
}

/*
 * The manifest is made by a child while tar runs, so that reading the
 * files for their checksums takes no extra time with the tree frozen.
 * The child checks the files again once tar is done (tar_done gets EOF)
 * and only then writes the manifest. The archive is not compressed yet:
 * "none". With a pre-copy, the walk comes first, here, for it tells what
 * tar has to archive; if every member is the pre-copy's, there is nothing
 * to wait for, and no child.
 */
pid_t tmp_files_start_manifest(const struct tmp_files_set *set, const struct tmp_files_keep *keep, int names_fd,
			       size_t *nr_delta, int *tar_done)
{
	struct manifest_walk w = { .set = set, .keep = keep, .names_fd = names_fd, .files = RB_ROOT };
	struct timespec since;
	int pfd[2];
	pid_t pid;
	char c;

	if (clock_gettime(CLOCK_REALTIME, &since) || pipe2(pfd, O_CLOEXEC)) {
		pr_perror("Can't start the --tmp-file manifest");
		return -1;
	}
	if (keep && collect_manifest(&w)) {
		free_walk(&w);
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (keep && !w.nr_delta) {
		/* Every member is the pre-copy's: no tar to wait for, no child (a fork and a wait, frozen) */
		close(pfd[0]);
		close(pfd[1]);
		*tar_done = -1;
		*nr_delta = 0;
		parent_walk = w;
		return add_checksums(&w) || write_walk(set, &w, &since) ? -1 : 0;
	}
	pid = fork();
	if (pid < 0)
		pr_perror("Can't fork to make the --tmp-file manifest");
	if (pid) {
		close(pfd[0]);
		*tar_done = pfd[1];
		*nr_delta = w.nr_delta;
		/* Freed once the child is gone: now, each page written would be copied, with the tree frozen */
		if (pid > 0)
			parent_walk = w;
		else
			free_walk(&w);
		return pid;
	}

	close(pfd[1]);
	if ((keep ? add_checksums(&w) : collect_manifest(&w)) || read(pfd[0], &c, 1) != 0 ||
	    write_walk(set, &w, &since))
		_exit(1);
	_exit(0);
}

int tmp_files_wait_manifest(pid_t pid)
{
	int status;

	if (!pid) /* written by tmp_files_start_manifest() */
		return 0;
	if (waitpid(pid, &status, 0) != pid) {
		pr_perror("Can't wait for the --tmp-file manifest");
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("Can't make the --tmp-file manifest (see above)\n");
		return -1;
	}
	return 0;
}

/* Once the tree runs again: freeing 10,000 entries takes milliseconds */
void tmp_files_free_manifest(void)
{
	free_walk(&parent_walk);
}

/* As dump writes it: absolute, normalised, not "/" */
static bool path_normalised(const char *path)
{
	char norm[PATH_MAX];

	return *path == '/' && strlen(path) < sizeof(norm) && !tmp_files_normalise_path(path, norm) && *norm &&
	       !strcmp(norm, path);
}

/* What the staging walk checks the archive against */
struct staged {
	char **paths; /* sorted with tmp_files_path_cmp */
	size_t nr;
	TmpFileEntry **entries; /* sorted by path */
	bool *seen;
	size_t nr_entries;
	size_t stage_len;
	const struct tmp_files_sum *sums; /* one an entry, or NULL */
	size_t read_again;		  /* regular files without one */
};

static int entry_cmp(const void *a, const void *b)
{
	return strcmp((*(TmpFileEntry **)a)->path, (*(TmpFileEntry **)b)->path);
}

static TmpFileEntry **find_entry(struct staged *sg, const char *path)
{
	TmpFileEntry key = { .path = (char *)path }, *k = &key;

	if (!sg->nr_entries) /* entries is NULL: not for bsearch() */
		return NULL;
	return bsearch(&k, sg->entries, sg->nr_entries, sizeof(*sg->entries), entry_cmp);
}

static const char *entry_mismatch(struct staged *sg, const TmpFileEntry *e, const struct tmp_files_sum *s,
				  const char *fpath, const struct stat *st)
{
	static const unsigned int types[] = {
		[TMP_FILE_ENTRY__KIND__REG] = S_IFREG,
		[TMP_FILE_ENTRY__KIND__DIR] = S_IFDIR,
		[TMP_FILE_ENTRY__KIND__SYMLINK] = S_IFLNK,
		[TMP_FILE_ENTRY__KIND__HARDLINK] = S_IFREG,
		[TMP_FILE_ENTRY__KIND__FIFO] = S_IFIFO,
		[TMP_FILE_ENTRY__KIND__CHR] = S_IFCHR,
		[TMP_FILE_ENTRY__KIND__BLK] = S_IFBLK,
	};
	char target[PATH_MAX];
	struct stat first;
	ssize_t len;

	if (e->type >= ARRAY_SIZE(types) || (st->st_mode & S_IFMT) != types[e->type])
		return "type";
	if ((st->st_mode & 07777) != e->mode)
		return "mode";
	if (st->st_uid != e->uid || st->st_gid != e->gid)
		return "owner";
	if (e->type == TMP_FILE_ENTRY__KIND__REG && st->st_size != e->size)
		return "size";
	if (e->type == TMP_FILE_ENTRY__KIND__REG && e->has_content_xxh64) {
		uint64_t sum;

		if (s && s->streamed) {
			sum = s->sum;
		} else {
			sg->read_again++;
			if (content_xxh64(fpath, st, &sum))
				return "content checksum";
		}
		if (sum != e->content_xxh64)
			return "content checksum";
	}
	if (st->st_mtim.tv_sec != e->mtime_sec || st->st_mtim.tv_nsec != e->mtime_nsec)
		return "mtime";
	if (e->type != TMP_FILE_ENTRY__KIND__SYMLINK && tmp_files_xattrs_differ(fpath, e))
		return "xattrs";
	if (e->type == TMP_FILE_ENTRY__KIND__SYMLINK) {
		len = readlink(fpath, target, sizeof(target) - 1);
		if (len < 0 || !e->target || strncmp(target, e->target, len) || e->target[len])
			return "symlink target";
	}
	if (e->type == TMP_FILE_ENTRY__KIND__HARDLINK) {
		TmpFileEntry **f = e->target ? find_entry(sg, e->target) : NULL;
		char *t = f && (*f)->type == TMP_FILE_ENTRY__KIND__REG ? xsprintf("%.*s%s", (int)sg->stage_len, fpath, e->target) : NULL;

		/* Only to a regular file of the same archive */
		len = t ? lstat(t, &first) : -1;
		xfree(t);
		if (len || first.st_ino != st->st_ino || first.st_dev != st->st_dev)
			return "hardlink";
	}
	return NULL;
}

/* An entry inside a saved path must be in the manifest, as dump saw it */
static int check_entry(struct staged *sg, const char *path, const char *fpath, const struct stat *st)
{
	TmpFileEntry **e;
	const char *what;

	e = find_entry(sg, path);
	if (!e) {
		pr_err("The --tmp-file archive has %s, which is not in its manifest: refusing to restore\n", path);
		return -1;
	}
	what = entry_mismatch(sg, *e, sg->sums ? &sg->sums[e - sg->entries] : NULL, fpath, st);
	if (what) {
		pr_err("The --tmp-file archive does not match its manifest at %s (%s): refusing to restore\n", path,
		       what);
		return -1;
	}
	sg->seen[e - sg->entries] = true;
	return 0;
}

/*
 * Every member must be one of the saved paths or inside one, and match
 * the manifest, or be a parent directory of one: anything else was not
 * written by dump.
 */
static int check_one_staged(void *ctx, char *fpath, size_t len, const struct stat *st)
{
	struct staged *sg = ctx;
	const char *path = fpath + sg->stage_len; /* "/tmp/x" */
	size_t lo;

	if (!*path)
		return 0;
	if (tmp_files_in_paths(sg->paths, sg->nr, path))
		return check_entry(sg, path, fpath, st);
	/* A parent directory of a saved path: the first one after it is inside */
	lo = tmp_files_paths_lower_bound(sg->paths, sg->nr, path);
	if (lo < sg->nr && issubpath(sg->paths[lo], path) && S_ISDIR(st->st_mode))
		return 0;

	pr_err("The --tmp-file archive has %s, which dump did not save: refusing to restore\n", path);
	return -1;
}

/*
 * The manifest itself: normalised saved paths, none inside another, each
 * with an entry, and no entry listed twice, nor one dump cannot have
 * written (not normalised, or outside the saved paths).
 */
static int check_manifest(struct staged *sg)
{
	size_t i;

	for (i = 0; i < sg->nr; i++) {
		if (!path_normalised(sg->paths[i]) || (i && issubpath(sg->paths[i], sg->paths[i - 1]))) {
			pr_err("Bad path %s in the --tmp-file manifest: refusing to restore\n", sg->paths[i]);
			return -1;
		}
	}
	for (i = 0; i < sg->nr_entries; i++) {
		TmpFileEntry *e = sg->entries[i];

		/* A device node made by root and owned by a user is a way into the host */
		if (e->type == TMP_FILE_ENTRY__KIND__CHR || e->type == TMP_FILE_ENTRY__KIND__BLK) {
			pr_err("The --tmp-file manifest has a device node %s: refusing to restore\n", e->path);
			return -1;
		}
		if (!path_normalised(e->path) || !tmp_files_in_paths(sg->paths, sg->nr, e->path)) {
			pr_err("Bad entry %s in the --tmp-file manifest: refusing to restore\n", e->path);
			return -1;
		}
		if (i && !strcmp(sg->entries[i - 1]->path, e->path)) {
			pr_err("The --tmp-file manifest lists %s twice: refusing to restore\n", sg->entries[i]->path);
			return -1;
		}
	}
	for (i = 0; i < sg->nr; i++) {
		if (!find_entry(sg, sg->paths[i])) {
			pr_err("The --tmp-file manifest has no entry for %s: refusing to restore\n", sg->paths[i]);
			return -1;
		}
	}
	return 0;
}

static void staged_init(struct staged *sg, TmpFilesManifestEntry *me)
{
	sg->paths = me->paths;
	sg->nr = me->n_paths;
	sg->entries = me->entries;
	sg->nr_entries = me->n_entries;
}

/* The manifest on its own, before anything is extracted; sorts it */
int tmp_files_check_manifest(TmpFilesManifestEntry *me)
{
	struct staged sg = {};

	staged_init(&sg, me);
	/* A manifest without paths or entries has NULL arrays, which qsort() must not get */
	if (sg.nr)
		qsort(sg.paths, sg.nr, sizeof(*sg.paths), tmp_files_path_cmp);
	if (sg.nr_entries)
		qsort(sg.entries, sg.nr_entries, sizeof(*sg.entries), entry_cmp);
	return check_manifest(&sg);
}

/* The regular entry of a set of hard links: e itself, or the one it links to */
static TmpFileEntry *link_head(struct staged *sg, TmpFileEntry *e)
{
	TmpFileEntry **t;

	if (e->type != TMP_FILE_ENTRY__KIND__HARDLINK)
		return e->type == TMP_FILE_ENTRY__KIND__REG ? e : NULL;
	t = e->target ? find_entry(sg, e->target) : NULL;
	return t && (*t)->type == TMP_FILE_ENTRY__KIND__REG ? *t : NULL;
}

/* A member name ("tmp/app/x/") as a manifest path ("/tmp/app/x") */
static int member_path(const char *name, char *path)
{
	size_t len = strlen(name);

	while (len > 1 && name[len - 1] == '/')
		len--;
	if (!len || name[0] == '/' || snprintf(path, PATH_MAX, "/%.*s", (int)len, name) >= PATH_MAX)
		return -1;
	return 0;
}

/*
 * Whether member m may stand for entry e. A file with hard links may
 * come as its data ('0') or as a link ('1') to another name of the same
 * set: tar decides which by the order it archives them in.
 */
static const char *member_mismatch(struct staged *sg, TmpFileEntry *e, const struct tmp_files_tar_member *m)
{
	static const char types[] = {
		[TMP_FILE_ENTRY__KIND__DIR] = '5',
		[TMP_FILE_ENTRY__KIND__SYMLINK] = '2',
		[TMP_FILE_ENTRY__KIND__FIFO] = '6',
	};
	TmpFileEntry *head = link_head(sg, e), **to;
	char path[PATH_MAX];

	if (head && m->type == '0')
		return (m->sparse ? m->realsize : m->size) != head->size ? "size" : NULL;
	if (head && m->type == '1') {
		to = member_path(m->linkname, path) ? NULL : find_entry(sg, path);
		return m->size || !to || link_head(sg, *to) != head ? "hard link" : NULL;
	}
	if (head || e->type >= ARRAY_SIZE(types) || !types[e->type] || m->type != types[e->type])
		return "type";
	if (m->size)
		return "size";
	if (e->type == TMP_FILE_ENTRY__KIND__SYMLINK && strcmp(m->linkname, e->target ?: ""))
		return "symlink target";
	return NULL;
}

/*
 * A member of the archive, from its headers, before any of it reaches
 * tar: a name of the manifest's, named once, as its entry says (type,
 * size, link). *idx: its entry.
 */
int tmp_files_check_member(TmpFilesManifestEntry *me, struct tmp_files_sum *sums, const struct tmp_files_tar_member *m,
			   size_t *idx)
{
	struct staged sg = {};
	char path[PATH_MAX];
	const char *what;
	TmpFileEntry **e;

	if (member_path(m->name, path)) {
		pr_err("The --tmp-file archive has a member named \"%s\": refusing to extract it\n", m->name);
		return -1;
	}
	staged_init(&sg, me);
	e = find_entry(&sg, path);
	if (!e) {
		pr_err("The --tmp-file archive has %s, which is not in its manifest: refusing to extract it\n", path);
		return -1;
	}
	*idx = e - sg.entries;
	if (sums[*idx].named) {
		pr_err("The --tmp-file archive has %s twice: refusing to extract it\n", path);
		return -1;
	}
	sums[*idx].named = true;
	what = member_mismatch(&sg, *e, m);
	/* A sparse member's data is its map and its data blocks: no more than a map of every block */
	if (!what && m->sparse && m->size > m->realsize + (m->realsize / 512 + 2) * 48)
		what = "sparse map";
	if (what) {
		pr_err("The --tmp-file archive has %s as a member of type '%c' that does not match its manifest (%s): "
		       "refusing to extract it\n",
		       path, m->type, what);
		return -1;
	}
	return 0;
}

/* The checksum of the data of the member of entry idx, as it passed */
int tmp_files_check_member_sum(TmpFilesManifestEntry *me, struct tmp_files_sum *sums, size_t idx, uint64_t sum)
{
	struct staged sg = {};
	TmpFileEntry *e = me->entries[idx], *head;

	staged_init(&sg, me);
	head = link_head(&sg, e);
	if (!head || (head->has_content_xxh64 && sum != head->content_xxh64)) {
		pr_err("The --tmp-file archive does not match its manifest at %s (content checksum): "
		       "refusing to restore\n",
		       e->path);
		return -1;
	}
	sums[idx].streamed = e == head;
	sums[idx].sum = sum;
	return 0;
}

/*
 * The extracted archive against the manifest, checked and sorted already.
 * The stage is walked from its fd, as "." (its name is never used again):
 * the working directory is changed meanwhile.
 */
int tmp_files_check_staged(int stage_fd, TmpFilesManifestEntry *me, const struct tmp_files_sum *sums)
{
	struct staged sg = { .stage_len = 1, .sums = sums };
	char path[PATH_MAX] = ".";
	int cwd_fd, ret = -1;
	size_t i;

	staged_init(&sg, me);
	sg.seen = xzalloc(sg.nr_entries + 1);
	if (!sg.seen)
		return -1;
	cwd_fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cwd_fd < 0 || fchdir(stage_fd)) {
		pr_perror("Can't enter the staging directory");
		goto out;
	}
	ret = tmp_files_walk(path, sg.stage_len, check_one_staged, &sg, false);
	if (fchdir(cwd_fd)) {
		pr_perror("Can't go back to the working directory");
		ret = -1;
	}
	if (ret)
		goto out;
	ret = -1;
	for (i = 0; i < sg.nr_entries; i++) {
		if (!sg.seen[i]) {
			pr_err("The --tmp-file archive lacks %s, which is in its manifest: refusing to restore\n",
			       sg.entries[i]->path);
			goto out;
		}
	}
	pr_info("The extracted archive matches its manifest (%zu file(s) read again for their checksum)\n",
		sg.read_again);
	ret = 0;
out:
	close_safe(&cwd_fd);
	xfree(sg.seen);
	return ret;
}
