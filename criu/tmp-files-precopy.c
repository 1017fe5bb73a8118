/*
 * --tmp-file-precopy: archive the saved paths while the tree still runs,
 * and while it is frozen only what changed since.
 *
 * Before the freeze, every entry is lstat()ed (the pre-copy walk); then
 * tar archives them by name into tmp-files.tar.img, while a child reads
 * the regular files for their checksums. While the tree is frozen, the
 * manifest walk asks, for each entry, whether the pre-copy archived it as
 * it is now (tmp_files_precopy_changed()). The members of the others are
 * dropped, the archive is compacted (tmp_files_precopy_compact()), and tar
 * appends those entries as they are now. The result is the archive the
 * single pass makes: one member for each manifest entry.
 *
 * Only a regular file's data is kept, and only if nothing can have
 * changed it since the walk: the same inode, type, mode, owner, size,
 * mtime and ctime; a ctime older than the start of the pre-copy, since a
 * change made after that gets a ctime at least as new (file times come
 * from the coarse clock, or a finer one); a member that is the walked
 * file's data, as the checksum child read it from the walked inode; one
 * name (the names of a file with hard links are archived together); and
 * no shared mapping of it in the tree, neither at the start of the
 * pre-copy nor at the freeze, since a write through one does not always
 * change the ctime (on tmpfs, never). Every other entry (a directory, a
 * symlink, a fifo) is archived again while frozen: it has no data to
 * copy, and its member is whatever tar found at its name, which the tree
 * may have swapped meanwhile. The members are written in the order of
 * their ctimes, the most recently changed last, so that those that
 * change again are at the end of the archive and little has to be moved.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "log.h"
#include "namespaces.h"
#include "protobuf.h"
#include "tmp-files-precopy.h"
#include "tmp-files-watch.h"
#include "util.h"
#include "xmalloc.h"

#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#define BLOCK	 TMP_FILES_TAR_BLOCK
#define REGTYPE	 TMP_FILES_TAR_REG
#define LNKTYPE	 TMP_FILES_TAR_LNK
#define SYMTYPE	 TMP_FILES_TAR_SYM
#define DIRTYPE	 TMP_FILES_TAR_DIR
#define FIFOTYPE TMP_FILES_TAR_FIFO

/* An entry as the pre-copy walk saw it, and its member in the archive */
struct precopied {
	char *path; /* "/tmp/x" */
	struct stat st;
	TmpFileEntry xattrs; /* its xattrs (n_xattrs, xattrs), for the manifest if it is kept */
	bool has_xattrs;
	off_t start, end;		   /* of its member, pax header included; end == 0: none */
	unsigned long long mode, uid, gid; /* its member's headers say */
	struct timespec mtime;
	bool plain;	  /* and nothing more than its name and times */
	off_t data, size; /* a regular file's data in the archive; size < 0: sparse */
	char type;	  /* of its member: REGTYPE, DIRTYPE, ... */
	bool kept;
};

/* Written by the checksum child, in memory shared with it */
struct precopy_sum {
	uint64_t sum;
	bool ok;
};

struct tmp_files_precopy {
	const struct tmp_files_set *set;
	struct timespec start;	 /* CLOCK_REALTIME_COARSE before the walk */
	struct precopied *files; /* sorted by path, strcmp() */
	size_t nr, size;
	uint32_t *index; /* files by a hash of the path: 0 empty, else the index + 1 */
	size_t index_mask;
	struct precopy_sum *sums; /* by index in files */
	pid_t sums_pid;
	struct precopied **members; /* in the order of the archive */
	size_t nr_members;
	struct stat *shared; /* the inodes the tree maps MAP_SHARED, at the start or at the freeze */
	size_t nr_shared;
	int fd; /* the archive, read-write: tmp-files-dump.c's */
	size_t nr_kept;
	struct tmp_files_watch *watch; /* what changed until the freeze; NULL: the full check */
	bool watched;		       /* and it can be used */
	char path[PATH_MAX];
};

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct precopied *)a)->path, ((const struct precopied *)b)->path);
}

static size_t path_slot(struct tmp_files_precopy *pc, const char *path)
{
	return tmp_files_xxh64(path, strlen(path), 0) & pc->index_mask;
}

/*
 * The frozen pass looks up every entry it keeps: a hash, not a binary
 * search, which costs a cache miss at each of its ~14 steps for 10,000
 */
static int index_files(struct tmp_files_precopy *pc)
{
	size_t i, slots = 2;

	while (slots < 2 * pc->nr)
		slots *= 2;
	pc->index = xzalloc(slots * sizeof(*pc->index));
	if (!pc->index)
		return -1;
	pc->index_mask = slots - 1;
	for (i = 0; i < pc->nr; i++) {
		size_t h = path_slot(pc, pc->files[i].path);

		while (pc->index[h])
			h = (h + 1) & pc->index_mask;
		pc->index[h] = i + 1;
	}
	return 0;
}

static struct precopied *find_file(struct tmp_files_precopy *pc, const char *path)
{
	size_t h;

	if (!pc->index)
		return NULL;
	for (h = path_slot(pc, path); pc->index[h]; h = (h + 1) & pc->index_mask) {
		struct precopied *f = &pc->files[pc->index[h] - 1];

		if (!strcmp(f->path, path))
			return f;
	}
	return NULL;
}

/*
 * The xattrs of the entry the walk saw at fpath (st), read while the tree
 * runs: never by name, since the tree may have put a symlink on the way
 * to another file since the walk's lstat(). The name is opened O_PATH,
 * checked to be the walk's inode, and its xattrs read through that fd:
 * no file is opened for reading (an O_PATH open is no inotify or
 * fanotify event, nor a read of a fifo), and no other file's xattrs are
 * read. An entry gone or swapped since has none read: it is not kept.
 */
static int read_xattrs(const char *fpath, const struct stat *st, TmpFileEntry *e)
{
	int fd, ret;

	fd = tmp_files_open_walked(fpath, st, O_PATH);
	if (fd < 0) {
		pr_debug("Pre-copy: %s is not the entry the walk saw: its xattrs are not read\n", fpath);
		return -1;
	}
	ret = tmp_files_get_xattrs_fd(fd, fpath, e);
	close(fd);
	return ret;
}

static int precopy_add(void *ctx, char *fpath, size_t len, const struct stat *st)
{
	struct tmp_files_precopy *pc = ctx;
	const char *path = fpath + strlen(pc->set->proc_root);
	struct precopied *f;

	if (tmp_files_excluded(pc->set, path))
		return TMP_FILES_WALK_SKIP;
	if (S_ISSOCK(st->st_mode)) /* tar does not archive sockets */
		return 0;
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		pr_err("--tmp-file: %s is a device node: refusing to save it\n", path);
		return -1;
	}
	if (pc->nr == pc->size) {
		pc->size = pc->size * 2 ?: 64;
		if (xrealloc_safe(&pc->files, pc->size * sizeof(*pc->files)))
			return -1;
	}
	if (tmp_files_watch_add(pc->watch, path, st))
		return -1;
	f = &pc->files[pc->nr];
	memset(f, 0, sizeof(*f));
	tmp_file_entry__init(&f->xattrs);
	f->path = xstrdup(path);
	if (!f->path)
		return -1;
	f->st = *st;
	pc->nr++;
	/* Read now, not while frozen: a change to them changes the ctime. Only a regular file (or a directory) is kept */
	f->has_xattrs = (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) && !read_xattrs(fpath, st, &f->xattrs);
	return 0;
}

static int ctime_cmp(const void *a, const void *b)
{
	const struct precopied *x = *(const struct precopied **)a, *y = *(const struct precopied **)b;

	if (x->st.st_ctim.tv_sec != y->st.st_ctim.tv_sec)
		return x->st.st_ctim.tv_sec < y->st.st_ctim.tv_sec ? -1 : 1;
	if (x->st.st_ctim.tv_nsec != y->st.st_ctim.tv_nsec)
		return x->st.st_ctim.tv_nsec < y->st.st_ctim.tv_nsec ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* The member names for tar, the most recently changed last */
static int write_names(struct tmp_files_precopy *pc, int names_fd)
{
	struct precopied **order;
	size_t i;
	int ret = 0;

	order = xmalloc((pc->nr ?: 1) * sizeof(*order));
	if (!order)
		return -1;
	for (i = 0; i < pc->nr; i++)
		order[i] = &pc->files[i];
	qsort(order, pc->nr, sizeof(*order), ctime_cmp);
	for (i = 0; !ret && i < pc->nr; i++) {
		/* Relative to the root, with the '\0' that ends the name */
		size_t len = strlen(order[i]->path);

		if (write_all(names_fd, order[i]->path + 1, len) != len) {
			pr_perror("Can't write the --tmp-file list");
			ret = -1;
		}
	}
	xfree(order);
	return ret;
}

/* Reads the regular files as they were walked: a file changed since is not kept */
static void sum_files(struct tmp_files_precopy *pc)
{
	size_t i;

	for (i = 0; i < pc->nr; i++) {
		const struct stat *was = &pc->files[i].st;
		struct stat st;
		int fd;

		if (!S_ISREG(was->st_mode) || was->st_nlink > 1) /* never kept */
			continue;
		snprintf(pc->path, sizeof(pc->path), "%s%s", pc->set->proc_root, pc->files[i].path);
		/* The tree runs: a fifo put there since must not block the child */
		fd = open(pc->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!fstat(fd, &st) && st.st_ino == was->st_ino && st.st_dev == was->st_dev &&
		    !tmp_files_content_sum(fd, was->st_size, &pc->sums[i].sum) && !fstat(fd, &st) &&
		    st.st_size == was->st_size && st.st_ctim.tv_sec == was->st_ctim.tv_sec &&
		    st.st_ctim.tv_nsec == was->st_ctim.tv_nsec)
			pc->sums[i].ok = true;
		close(fd);
	}
}

/* The tree runs: a process that exited since it was listed, or a mapping gone */
static bool gone_since(void)
{
	return errno == ENOENT || errno == ESRCH;
}

/*
 * The inodes that the process pid of the running tree maps MAP_SHARED,
 * writable or not (one opened for writing can be made writable with
 * mprotect()); a process or a mapping gone meanwhile is left out. At
 * the freeze, CRIU's own collection of the mappings tells them
 * (tmp_files_precopy_map_shared()).
 */
static int add_shared(struct tmp_files_precopy *pc, pid_t pid)
{
	char *line = NULL, path[64];
	size_t n = 0;
	int ret = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f) {
		if (gone_since())
			return 0;
		pr_perror("Can't open %s", path);
		return -1;
	}
	while (!ret && getline(&line, &n, f) > 0) {
		unsigned long start, end;
		unsigned long long ino;
		char perms[5], mf[64];
		struct stat st;

		if (sscanf(line, "%lx-%lx %4s %*s %*s %llu", &start, &end, perms, &ino) != 4 || perms[3] != 's' || !ino)
			continue;
		/* As the path sees it (an overlayfs file's maps line names the file below) */
		snprintf(mf, sizeof(mf), "/proc/%d/map_files/%lx-%lx", pid, start, end);
		if (stat(mf, &st)) {
			if (gone_since())
				continue;
			pr_perror("Can't stat the shared mapping %s", mf);
			ret = -1;
		} else if (xrealloc_safe(&pc->shared, (pc->nr_shared + 1) * sizeof(*pc->shared))) {
			ret = -1;
		} else {
			pc->shared[pc->nr_shared++] = st;
		}
	}
	fclose(f);
	free(line);
	return ret;
}

static int add_pid(pid_t **pids, size_t *nr, pid_t pid)
{
	size_t i;

	for (i = 0; i < *nr; i++)
		if ((*pids)[i] == pid)
			return 0;
	if (xrealloc_safe(pids, (*nr + 1) * sizeof(**pids)))
		return -1;
	(*pids)[(*nr)++] = pid;
	return 0;
}

/* The children of every thread of pid, into pids */
static int add_children(pid_t pid, pid_t **pids, size_t *nr)
{
	char path[64];
	struct dirent *de;
	int ret = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d) {
		if (gone_since())
			return 0;
		pr_perror("Can't open %s", path);
		return -1;
	}
	while (!ret && (de = readdir(d))) {
		int kid;
		FILE *f;

		if (dir_dots(de))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, atoi(de->d_name));
		f = fopen(path, "re");
		if (!f) {
			if (gone_since())
				continue;
			pr_perror("Can't open %s", path);
			ret = -1;
			break;
		}
		while (!ret && fscanf(f, "%d", &kid) == 1)
			ret = add_pid(pids, nr, kid);
		fclose(f);
	}
	closedir(d);
	return ret;
}

/*
 * At the start of the pre-copy, the tree runs and CRIU has not collected
 * it: its processes are root_pid and the children of each of their
 * threads, recursively. A process's mappings are read before its
 * children: one forked later inherits only mappings already seen.
 */
static int collect_shared_running(struct tmp_files_precopy *pc, pid_t root_pid)
{
	pid_t *pids = NULL;
	size_t nr = 0, i;
	int ret;

	ret = add_pid(&pids, &nr, root_pid);
	for (i = 0; !ret && i < nr; i++)
		ret = add_shared(pc, pids[i]) ?: add_children(pids[i], &pids, &nr);
	if (!ret)
		pr_info("Pre-copy: %zu process(es) in the tree, %zu shared mapping(s) of files at its start\n", nr,
			pc->nr_shared);
	xfree(pids);
	return ret;
}

struct tmp_files_precopy *tmp_files_precopy_walk(const struct tmp_files_set *set, pid_t root_pid, int names_fd)
{
	struct tmp_files_precopy *pc;
	size_t i;

	pc = xzalloc(sizeof(*pc));
	if (!pc)
		return NULL;
	pc->set = set;
	pc->fd = -1;
	pc->sums_pid = -1;
	pc->watch = tmp_files_watch_start(set, root_pid); /* before the walk */
	/* Before the first lstat(): see the top of this file */
	if (clock_gettime(CLOCK_REALTIME_COARSE, &pc->start)) {
		pr_perror("Can't read the clock");
		goto err;
	}
	/* Before tar reads a file: a page written before may be written again without a fault */
	if (collect_shared_running(pc, root_pid))
		goto err;
	for (i = 0; i < set->nr; i++) {
		int n = snprintf(pc->path, sizeof(pc->path), "%s%s", set->proc_root, set->paths[i]);

		/* The tree runs: an entry that is gone is not archived */
		if (tmp_files_walk(pc->path, n, precopy_add, pc, true)) {
			pr_err("Can't list %s for the --tmp-file pre-copy\n", set->paths[i]);
			goto err;
		}
	}
	if (write_names(pc, names_fd))
		goto err;
	qsort(pc->files, pc->nr, sizeof(*pc->files), file_cmp);
	if (index_files(pc))
		goto err;

	pc->sums = mmap(NULL, (pc->nr ?: 1) * sizeof(*pc->sums), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	if (pc->sums == MAP_FAILED) {
		pr_perror("Can't map the pre-copy checksums");
		pc->sums = NULL;
		goto err;
	}
	/* While tar archives the same files */
	pc->sums_pid = fork();
	if (pc->sums_pid < 0) {
		pr_perror("Can't fork to read the pre-copy checksums");
		goto err;
	}
	if (!pc->sums_pid) {
		sum_files(pc);
		_exit(0);
	}
	pr_info("Pre-copy: archiving %zu entries while the tree runs\n", pc->nr);
	return pc;
err:
	tmp_files_precopy_free(pc);
	return NULL;
}

/* The member a name of the archive is, without its trailing '/' */
static struct precopied *member_file(struct tmp_files_precopy *pc, char *name)
{
	size_t len = strlen(name);

	while (len > 1 && name[len - 1] == '/')
		name[--len] = '\0';
	if (snprintf(pc->path, sizeof(pc->path), "/%s", name) >= sizeof(pc->path))
		return NULL;
	return find_file(pc, pc->path);
}

static int add_member(void *ctx, const struct tmp_files_tar_entry *e)
{
	struct tmp_files_precopy *pc = ctx;
	char name[PATH_MAX];
	struct precopied *f;

	memcpy(name, e->m.name, sizeof(name));
	f = member_file(pc, name);
	if (!f || f->end || pc->nr_members == pc->nr) {
		pr_err("The pre-copy archive has a member of %s that the walk did not list, or twice\n", e->m.name);
		return -1; /* tar archives only the listed names, once */
	}
	f->start = e->start;
	f->end = e->end;
	f->data = e->data;
	f->size = e->m.sparse ? -1 : e->m.size;
	f->type = e->m.type;
	f->mode = e->m.mode;
	f->uid = e->m.uid;
	f->gid = e->m.gid;
	f->mtime = e->m.mtime;
	f->plain = !e->m.other_records;
	pc->members[pc->nr_members++] = f;
	return 0;
}

/* Where each member of the archive starts and ends, from its headers */
static int read_members(struct tmp_files_precopy *pc)
{
	pc->members = xmalloc((pc->nr ?: 1) * sizeof(*pc->members));
	if (!pc->members)
		return -1;
	return tmp_files_tar_list(pc->fd, add_member, pc);
}

/* The member tar makes of an entry of mode (the other names of a regular file: LNKTYPE) */
static char tar_type(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return REGTYPE;
	case S_IFDIR:
		return DIRTYPE;
	case S_IFLNK:
		return SYMTYPE;
	case S_IFIFO:
		return FIFOTYPE;
	}
	return 0; /* device nodes: refused by the walk */
}

/*
 * tar read the files by name, from the root of a tree that runs: had the
 * tree swapped a directory on the way for a symlink (one to "/etc" leads
 * out of /proc/PID/root), tar would have archived another file than the
 * one the walk and the checksum child saw, of any type, under the name of
 * a walked entry of any type. Only the data of a regular member can be
 * kept, and only if it is the data the checksum child read from the
 * walked inode. Sparse members (tar packs their data) are archived again
 * while frozen, as is every member that is not a regular file's data.
 */
static int check_members(struct tmp_files_precopy *pc)
{
	size_t i;

	for (i = 0; i < pc->nr_members; i++) {
		struct precopied *f = pc->members[i];
		struct precopy_sum *s = &pc->sums[f - pc->files];
		uint64_t sum;

		if (f->type != tar_type(f->st.st_mode) && !(f->type == LNKTYPE && S_ISREG(f->st.st_mode)))
			pr_warn("Pre-copy: the member of %s is of type '%c', not what the walk saw there: archived again\n",
				f->path, f->type);
		if (f->type != REGTYPE || !S_ISREG(f->st.st_mode)) {
			s->ok = false;
			continue;
		}
		if (!s->ok)
			continue;
		if (f->size != f->st.st_size) {
			s->ok = false;
			continue;
		}
		if (tmp_files_content_sum_at(pc->fd, f->data, f->size, &sum))
			return -1;
		if (sum != s->sum) {
			pr_warn("Pre-copy: the member of %s is not what the pre-copy read there: archived again\n",
				f->path);
			s->ok = false;
		}
	}
	return 0;
}

/* Once tar is done with the archive in fd, still before the freeze */
int tmp_files_precopy_done(struct tmp_files_precopy *pc, int fd)
{
	int status;

	pc->fd = fd;
	if (waitpid(pc->sums_pid, &status, 0) != pc->sums_pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("Can't read the pre-copy checksums\n");
		pc->sums_pid = -1;
		return -1;
	}
	pc->sums_pid = -1;
	if (read_members(pc) || check_members(pc))
		return -1;
	pr_info("Pre-copy: %zu of %zu entries archived\n", pc->nr_members, pc->nr);
	return 0;
}

/*
 * While frozen, before the manifest walk, every shared mapping of a file
 * is reported by dump_filemap() as CRIU collects the tree's mappings
 * (tmp_files_map_shared()): it adds them to those seen at the start.
 */
int tmp_files_precopy_map_shared(struct tmp_files_precopy *pc, const struct stat *st)
{
	if (xrealloc_safe(&pc->shared, (pc->nr_shared + 1) * sizeof(*pc->shared)))
		return -1;
	pc->shared[pc->nr_shared++] = *st;
	return 0;
}

/* Called while the tree is frozen, before the manifest walk */
int tmp_files_precopy_freeze(struct tmp_files_precopy *pc)
{
	pc->watched = tmp_files_watch_drain(pc->watch);
	pr_info("Pre-copy: %zu shared mapping(s) of files, at the start and at the freeze\n", pc->nr_shared);
	return 0;
}

struct tmp_files_watch *tmp_files_precopy_watch(struct tmp_files_precopy *pc)
{
	return pc && pc->watched ? pc->watch : NULL;
}

static bool mapped_shared(struct tmp_files_precopy *pc, const struct stat *st)
{
	size_t i;

	for (i = 0; i < pc->nr_shared; i++)
		if (pc->shared[i].st_dev == st->st_dev && pc->shared[i].st_ino == st->st_ino)
			return true;
	return false;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * The pre-copy's member of a directory: does it say what st says? Its
 * mode, owner (as the tree sees it: tar runs in its user namespace) and
 * mtime to the nanosecond, and nothing more than those, its name and its
 * other times (no xattr, no ACL). Whatever directory tar found at its
 * name, such a member extracts to the directory st is.
 */
static bool dir_member_same(const struct precopied *f, const struct stat *st)
{
	return f->plain && f->mode == (st->st_mode & 07777) && f->uid == userns_uid(st->st_uid) &&
	       f->gid == userns_gid(st->st_gid) && same_time(&f->mtime, &st->st_mtim);
}

/*
 * While frozen: is the pre-copy's member of path the entry st (e in the
 * manifest) as it is now? NULL if so, which only a regular file's can
 * be: the member stays in the archive, sum is its content checksum, and
 * e gets the xattrs the pre-copy read. Otherwise, why not.
 */
const char *tmp_files_precopy_changed(struct tmp_files_precopy *pc, const char *path, const struct stat *st,
				      uint64_t *sum, TmpFileEntry *e)
{
	struct precopied *f = find_file(pc, path);
	const struct stat *was;

	if (!f || !f->end)
		return "new, or not archived by the pre-copy";
	/*
	 * Its member is what tar found at its name, maybe after a swap; and
	 * cheap to make while frozen. With the change record, a directory's
	 * is kept if it says what the directory is (dir_member_same()).
	 */
	if (!S_ISREG(st->st_mode) && !(S_ISDIR(st->st_mode) && pc->watched))
		return "not a regular file: archived while frozen (no data to copy)";
	was = &f->st;
	if (was->st_dev != st->st_dev || was->st_ino != st->st_ino || was->st_mode != st->st_mode ||
	    was->st_nlink != st->st_nlink || was->st_uid != st->st_uid || was->st_gid != st->st_gid ||
	    was->st_size != st->st_size || !same_time(&was->st_mtim, &st->st_mtim) ||
	    !same_time(&was->st_ctim, &st->st_ctim))
		return "changed since the pre-copy";
	if (S_ISDIR(st->st_mode)) {
		if (f->type != DIRTYPE || !f->has_xattrs || f->xattrs.n_xattrs || !dir_member_same(f, st))
			return "a directory whose member says other or more than its lstat() (xattrs, ACLs)";
		goto keep;
	}
	/* tar stores the data with the first name it reads, and links the others to it */
	if (st->st_nlink > 1 || e->type != TMP_FILE_ENTRY__KIND__REG)
		return "it has hard links: its names are archived together while frozen";
	if (f->type != REGTYPE)
		return "its member is not a regular file's data";
	if (was->st_ctim.tv_sec > pc->start.tv_sec ||
	    (was->st_ctim.tv_sec == pc->start.tv_sec && was->st_ctim.tv_nsec >= pc->start.tv_nsec))
		return "its ctime is not older than the pre-copy: it may have changed in the same clock tick";
	if (!f->has_xattrs)
		return "its xattrs could not be read by the pre-copy";
	if (!pc->sums[f - pc->files].ok)
		return "changed while the pre-copy read it";
	if (mapped_shared(pc, st))
		return "mapped shared by the tree: writes through the mapping may leave the ctime as it was";
	if (pc->watched && tmp_files_watch_written(pc->watch, st))
		return "written since the pre-copy started (fanotify), whatever its times say";
	*sum = pc->sums[f - pc->files].sum;
keep:
	/* Handed over to the manifest entry */
	e->n_xattrs = f->xattrs.n_xattrs;
	e->xattrs = f->xattrs.xattrs;
	f->xattrs.n_xattrs = 0;
	f->xattrs.xattrs = NULL;
	f->kept = true;
	pc->nr_kept++;
	return NULL;
}

/* Moves len bytes at from down to to, in the archive */
static int move_down(int fd, off_t from, off_t to, off_t len)
{
	static char buf[1 << 20];

	while (len > 0) {
		ssize_t n = pread(fd, buf, min_t(off_t, len, sizeof(buf)), from);

		if (n <= 0 || pwrite(fd, buf, n, to) != n)
			return -1;
		from += n;
		to += n;
		len -= n;
	}
	return 0;
}

/*
 * While frozen, after the manifest walk: the kept members are moved to
 * the start of the archive, in their order, and the fd is left where tar
 * must append the others (or the end-of-archive blocks go).
 */
int tmp_files_precopy_compact(struct tmp_files_precopy *pc)
{
	off_t to = 0, moved = 0;
	size_t i;

	for (i = 0; i < pc->nr_members; i++) {
		struct precopied *f = pc->members[i];

		if (!f->kept)
			continue;
		if (f->start != to) {
			if (move_down(pc->fd, f->start, to, f->end - f->start)) {
				pr_perror("Can't move the member of %s in the --tmp-file archive", f->path);
				return -1;
			}
			moved += f->end - f->start;
		}
		to += f->end - f->start;
	}
	if (lseek(pc->fd, to, SEEK_SET) != to) {
		pr_perror("Can't seek in the --tmp-file archive");
		return -1;
	}
	pr_info("Pre-copy: %zu of %zu entries kept, %lld bytes moved\n", pc->nr_kept, pc->nr, (long long)moved);
	return 0;
}

/* After tar appended to the archive, or with nothing to append */
int tmp_files_precopy_end(struct tmp_files_precopy *pc, bool appended)
{
	static const char eof[2 * BLOCK];
	off_t end;

	if (!appended && write_all(pc->fd, eof, sizeof(eof)) != sizeof(eof)) {
		pr_perror("Can't end the --tmp-file archive");
		return -1;
	}
	end = lseek(pc->fd, 0, SEEK_CUR);
	if (end < 0 || ftruncate(pc->fd, end)) {
		pr_perror("Can't truncate the --tmp-file archive");
		return -1;
	}
	return 0;
}

void tmp_files_precopy_free(struct tmp_files_precopy *pc)
{
	size_t i;

	if (!pc)
		return;
	tmp_files_watch_free(pc->watch);
	if (pc->sums_pid > 0) {
		kill(pc->sums_pid, SIGKILL);
		waitpid(pc->sums_pid, NULL, 0);
	}
	if (pc->sums)
		munmap(pc->sums, (pc->nr ?: 1) * sizeof(*pc->sums));
	for (i = 0; i < pc->nr; i++) {
		size_t j;

		for (j = 0; j < pc->files[i].xattrs.n_xattrs; j++)
			tmp_file_xattr__free_unpacked(pc->files[i].xattrs.xattrs[j], NULL);
		xfree(pc->files[i].xattrs.xattrs);
		xfree(pc->files[i].path);
	}
	xfree(pc->files);
	xfree(pc->index);
	xfree(pc->members);
	xfree(pc->shared);
	xfree(pc);
}
