/*
 * --tmp-file: save files that the dumped tree uses and that may be gone
 * at restore time (a /tmp wiped at boot, a host that never had them).
 *
 * This file has the options, and the dump and restore entry points.
 * Dump: the paths are checked before the tree is frozen; while it is
 * frozen, GNU tar archives them, as the root task sees them, into the raw
 * image tmp-files.tar.img, while a child writes tmp-files-manifest.img
 * (tmp-files-manifest.c). The archive is compressed only after the tree
 * is resumed: compressing is what takes time, and the tree must not wait
 * for it.
 *
 * Restore: before any task is created, the archive is extracted into a
 * staging directory and checked against the manifest, each file's
 * content checksum taken as soon as tar is done with it; the entries are
 * then put in place by directory fds (tmp-files-place.c).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "cr_options.h"
#include "crtools.h"
#include "fault-injection.h"
#include "filesystems.h"
#include "image.h"
#include "log.h"
#include "mount.h"
#include "namespaces.h"
#include "protobuf.h"
#include "pstree.h"
#include "servicefd.h"
#include "string.h"
#include "mount-v2.h"
#include "tmp-files.h"
#include "util.h"
#include "xmalloc.h"

#include "images/mnt.pb-c.h"
#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

/* --tmp-file-compress */
enum {
	TMP_FILES_GZIP, /* the default */
	TMP_FILES_ZSTD,
	TMP_FILES_NONE,
};

static const struct compressor {
	const char *name;
	char *argv[5];	/* compresses stdin to stdout; argv[0] must be in PATH */
	char *dargv[5]; /* decompresses */
} compressors[] = {
	/* busybox gzip (Alpine) may have no long options */
	[TMP_FILES_GZIP] = { "gzip", { "gzip", "-c", NULL }, { "gzip", "-d", "-c", NULL } },
	[TMP_FILES_ZSTD] = { "zstd", { "zstd", "-T0", "--quiet", "--stdout", NULL }, { "zstd", "-d", "-c", "-q", NULL } },
	[TMP_FILES_NONE] = { "none", { NULL }, { NULL } },
};

static int compressor_index(const char *name)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(compressors); i++)
		if (!strcmp(name, compressors[i].name))
			return i;
	return -1;
}

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

/*
 * The option parser only records the values: over RPC, options are parsed
 * before the log is set up, and an error raised then would reach neither
 * the log file nor cr_errmsg. tmp_files_check_options() checks them, from
 * check_options(), once it is.
 */
/* A struct of size bytes that starts with a struct tmp_file for path, at the end of list */
static struct tmp_file *new_tmp_file(const char *path, size_t size, struct list_head *list)
{
	struct tmp_file *tf;

	tf = xzalloc(size);
	if (!tf)
		return NULL;
	tf->path = xstrdup(path);
	if (!tf->path) {
		xfree(tf);
		return NULL;
	}
	list_add_tail(&tf->list, list);
	return tf;
}

int tmp_file_add(const char *path, bool optional)
{
	struct tmp_file *tf = new_tmp_file(path, sizeof(struct tmp_file), &opts.tmp_files);

	if (tf)
		tf->optional = optional;
	return tf ? 0 : -1;
}

static const char *option_of(const struct tmp_file *tf)
{
	return tf->optional ? "--tmp-file-optional" : "--tmp-file";
}

/* Make tf->path absolute and normalised, in place (it can only shrink) */
static int check_path_option(struct tmp_file *tf)
{
	char *norm;

	if (!*tf->path) {
		pr_err("%s: the path is empty\n", option_of(tf));
		return -1;
	}
	if (*tf->path != '/') {
		pr_err("%s %s: the path must be absolute\n", option_of(tf), tf->path);
		return -1;
	}
	norm = xmalloc(strlen(tf->path) + 1);
	if (!norm)
		return -1;
	if (tmp_files_normalise_path(tf->path, norm)) {
		pr_err("%s %s: \"..\" is not allowed in the path\n", option_of(tf), tf->path);
		goto err;
	}
	if (!*norm) {
		pr_err("%s %s: refusing to save the whole root\n", option_of(tf), tf->path);
		goto err;
	}
	xfree(tf->path);
	tf->path = norm;
	return 0;
err:
	xfree(norm);
	return -1;
}

/* A size as --ghost-limit takes it (64M), but anything else is an error */
static int parse_limit(const char *arg, size_t *size)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	/* Digits only: strtoull() would take " 12", "+12" and "-1" */
	if (*arg < '0' || *arg > '9')
		return -1;
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno)
		return -1;
	if (*end == 'K')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (*end || v > (SIZE_MAX >> shift))
		return -1;
	*size = (size_t)v << shift;
	return 0;
}

int tmp_files_check_options(void)
{
	struct tmp_file *tf;

	list_for_each_entry(tf, &opts.tmp_files, list)
		if (check_path_option(tf))
			return -1;

	if (opts.tmp_files_compress && compressor_index(opts.tmp_files_compress) < 0) {
		pr_err("--tmp-file-compress %s: must be gzip, zstd or none\n", opts.tmp_files_compress);
		return -1;
	}

	if (opts.tmp_files_limit_arg && parse_limit(opts.tmp_files_limit_arg, &opts.tmp_files_limit)) {
		pr_err("--tmp-file-limit %s: not a size (a number of bytes, or with K, M or G)\n",
		       opts.tmp_files_limit_arg);
		return -1;
	}
	return 0;
}

/* --tmp-file-compress, gzip if not given; checked by tmp_files_check_options() */
static const struct compressor *compressor(void)
{
	if (!opts.tmp_files_compress)
		return &compressors[TMP_FILES_GZIP];
	return &compressors[compressor_index(opts.tmp_files_compress)];
}

/* --tmp-file-auto: files found while the tree's files are dumped */
struct auto_file {
	struct tmp_file tf; /* first: made by new_tmp_file() */
	off_t size;
};

/*
 * The state of one dump, from tmp_files_prepare_dump() (before the
 * freeze) to tmp_files_compress_after_dump() (after the resume): the
 * entry points are called from cr-dump.c with nothing to pass it in.
 */
static struct tmp_files_dump {
	int names_fd; /* member names for tar --null --files-from */
	struct tmp_files_set set;
	struct list_head auto_files;
	size_t nr_auto_files;
	size_t auto_files_size;
	struct tmp_files_precopy *pc; /* --tmp-file-precopy: the pass before the freeze */
	int archive_fd;		      /* with pc: the archive it made, read-write */
	bool archived;		      /* the archive and the manifest are written */
} dump = {
	.names_fd = -1,
	.archive_fd = -1,
	.auto_files = LIST_HEAD_INIT(dump.auto_files),
};

static char **tar_create_argv(bool listed, bool frozen);

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

/*
 * Run argv with nothing on stdin; its output goes into buf (if given).
 * A compressor is checked by compressing nothing, as the dump runs it:
 * busybox's gzip (Alpine's) has no --version.
 */
static int run_probe(char *const argv[], char *buf, size_t size)
{
	int in, fd, ret = -1;

	in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		pr_perror("Can't open /dev/null");
		return -1;
	}
	fd = memfd_create("criu-probe", MFD_CLOEXEC);
	if (fd < 0) {
		pr_perror("Can't create a memfd");
		goto out;
	}
	ret = cr_system(in, fd, -1, argv[0], argv, CRS_CAN_FAIL);
	if (!ret && buf && pread(fd, buf, size - 1, 0) < 0)
		ret = -1;
	close(fd);
out:
	close(in);
	return ret;
}

/* GNU tar and the compressor c, at dump ("--tmp-file-compress") or restore */
static int check_programs(const struct compressor *c, bool restore)
{
	const char *who = restore ? "Restoring the --tmp-file archive" : "--tmp-file";
	char buf[128] = {};

	if (run_probe((char *[]){ "tar", "--version", NULL }, buf, sizeof(buf))) {
		pr_err("%s needs GNU tar, but \"tar --version\" failed (is tar in PATH?)\n", who);
		return -1;
	}
	if (!strstr(buf, "GNU tar")) {
		pr_err("%s needs GNU tar, but tar in PATH is not GNU tar\n", who);
		return -1;
	}
	if (!restore)
		who = "--tmp-file-compress";
	if (c->argv[0] && run_probe(c->argv, NULL, 0)) {
		pr_err("%s: %s compression needs %s, but \"%s\" failed to compress nothing (is it in PATH?)\n", who,
		       c->name, c->argv[0], c->argv[0]);
		return -1;
	}
	return 0;
}

static int add_exclude(const char *path)
{
	int i;

	for (i = 0; i < dump.set.nr_excludes; i++)
		if (!strcmp(dump.set.excludes[i] + strlen("--exclude="), path + 1))
			return 0;
	if (xrealloc_safe(&dump.set.excludes, (dump.set.nr_excludes + 2) * sizeof(*dump.set.excludes)))
		return -1;
	dump.set.excludes[dump.set.nr_excludes] = xsprintf("--exclude=%s", path + 1);
	if (!dump.set.excludes[dump.set.nr_excludes])
		return -1;
	dump.set.excludes[++dump.set.nr_excludes] = NULL;
	pr_info("%s is the images or work directory: not archived\n", path);
	return 0;
}

static int open_in_tree(int root_fd, const char *path, int flags)
{
	struct open_how how = {
		.flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};

	return sys_openat2(root_fd, *path ? path : ".", &how, sizeof(how));
}

/*
 * The images and work directories may be inside a saved directory, seen
 * there under any name (a container's bind mount of a host directory):
 * look for them by identity in the saved directories, before the tree is
 * frozen. Names are read first, then the subdirectories are opened again
 * from the root, so that only two fds are open at any depth.
 */
static int find_excludes(int root_fd, const char *path, const struct stat *ids, int nr_ids)
{
	char **names = NULL;
	size_t nr = 0, i;
	struct dirent *de;
	struct stat st;
	int fd, ret = 0;
	DIR *d;

	fd = open_in_tree(root_fd, path + 1, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fstat(fd, &st)) {
		close_safe(&fd);
		return 0; /* changed since it was listed: tar and the manifest say so */
	}
	for (i = 0; i < nr_ids; i++) {
		if (st.st_dev == ids[i].st_dev && st.st_ino == ids[i].st_ino) {
			close(fd);
			return add_exclude(path);
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
			ret = find_excludes(root_fd, names[i], ids, nr_ids);
		xfree(names[i]);
	}
	xfree(names);
	return ret;
}

static int set_excludes(int root_fd)
{
	struct stat ids[2];
	size_t i;

	if (fstat(get_service_fd(IMG_FD_OFF), &ids[0]) || stat(".", &ids[1])) {
		pr_perror("Can't stat the images or work directory");
		return -1;
	}
	for (i = 0; i < dump.set.nr; i++)
		if (find_excludes(root_fd, dump.set.paths[i], ids, 2))
			return -1;
	return 0;
}

/*
 * A saved path, as the dumped tree sees it: resolved from the tree's
 * root, and not through a symlink, so that the tree's own symlinks
 * (absolute, or with "..") never lead tar or the manifest to a host file.
 * The last name may be a symlink: it is saved as one.
 */
/* 1: an optional path the tree does not have, skipped */
static int stat_saved_path(int root_fd, const char *path, bool optional, struct stat *st)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, ret = -1;

	dir = xsprintf("%.*s", max_t(int, slash - path - 1, 0), path + 1);
	if (!dir)
		return -1;
	/* Without O_DIRECTORY: a symlink on the way is then ELOOP, not ENOTDIR */
	fd = open_in_tree(root_fd, dir, O_PATH);
	if (fd < 0 && errno == ELOOP) {
		pr_err("--tmp-file %s: the path goes through a symlink in the dumped tree; name the path it leads to\n",
		       path);
	} else if (fd < 0 || fstatat(fd, slash + 1, st, AT_SYMLINK_NOFOLLOW)) {
		if (optional && errno == ENOENT) {
			pr_warn("--tmp-file-optional %s: the dumped tree has no such path, it is not saved\n", path);
			ret = 1;
		} else {
			pr_perror("--tmp-file %s: can't save it", path);
		}
	} else {
		ret = 0;
	}
	close_safe(&fd);
	xfree(dir);
	return ret;
}

static int rewind_names(void)
{
	if (lseek(dump.names_fd, 0, SEEK_SET) < 0) {
		pr_perror("Can't rewind the --tmp-file list");
		return -1;
	}
	return 0;
}

static void remove_images(void)
{
	unlinkat(get_service_fd(IMG_FD_OFF), imgset_template[CR_FD_TMP_FILES].fmt, 0);
	unlinkat(get_service_fd(IMG_FD_OFF), imgset_template[CR_FD_TMP_FILES_MANIFEST].fmt, 0);
}

/* Once the frozen pass is done, or the dump failed (remove: the archive goes too) */
static void drop_precopy(bool remove)
{
	if (remove && dump.archive_fd >= 0)
		unlinkat(get_service_fd(IMG_FD_OFF), imgset_template[CR_FD_TMP_FILES].fmt, 0);
	close_safe(&dump.archive_fd);
	tmp_files_precopy_free(dump.pc);
	dump.pc = NULL;
}

/* tar's user namespace: the tree's, if it has one of its own (see dump_tmp_files()) */
static int tar_userns(pid_t pid)
{
	struct stat self, tree;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
	if (stat("/proc/self/ns/user", &self) || stat(path, &tree)) {
		pr_perror("Can't stat the user namespace of %d", pid);
		return 0;
	}
	return self.st_ino == tree.st_ino && self.st_dev == tree.st_dev ? -1 : pid;
}

/*
 * --tmp-file-precopy, before the freeze: tar archives every entry by name
 * while the tree runs (tmp-files-precopy.c). It exits with 1 when a file
 * changed while it read it, which is no error here: the frozen pass
 * archives such a file again.
 */
static int precopy(pid_t root_pid)
{
	const char *name = imgset_template[CR_FD_TMP_FILES].fmt;
	char **argv = NULL, **sh = NULL;
	int userns, n, ret = -1;

	userns = tar_userns(root_pid);
	if (!userns || ftruncate(dump.names_fd, 0) || rewind_names())
		return -1;
	dump.pc = tmp_files_precopy_walk(&dump.set, root_pid, dump.names_fd);
	if (!dump.pc || rewind_names()) {
		drop_precopy(true);
		return -1;
	}
	dump.archive_fd = openat(get_service_fd(IMG_FD_OFF), name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, CR_FD_PERM);
	if (dump.archive_fd < 0) {
		pr_perror("Can't create %s", name);
		drop_precopy(true);
		return -1;
	}

	argv = tar_create_argv(true, false);
	for (n = 0; argv && argv[n]; n++)
		;
	sh = argv ? xmalloc((n + 4) * sizeof(*sh)) : NULL;
	if (sh) {
		sh[0] = "sh";
		sh[1] = "-c";
		sh[2] = "tar \"$@\"; [ $? -le 1 ]";
		memcpy(sh + 3, argv, (n + 1) * sizeof(*sh)); /* argv[0] is $0 */
		ret = cr_system_userns(dump.names_fd, dump.archive_fd, -1, "sh", sh, 0, userns);
		if (ret)
			pr_err("Can't archive the --tmp-file paths before the freeze: tar failed (see above)\n");
	}
	ret = ret ?: tmp_files_precopy_done(dump.pc, dump.archive_fd);
	xfree(sh);
	xfree(argv);
	if (ret)
		drop_precopy(true);
	return ret;
}

/* Given only with --tmp-file-optional: a tree that does not have it is dumped without it */
static bool path_optional(const char *path)
{
	struct tmp_file *tf;

	list_for_each_entry(tf, &opts.tmp_files, list)
		if (!tf->optional && !strcmp(tf->path, path))
			return false;
	return true;
}

/*
 * The root task's root, as a path in its mount namespace: "/", or the
 * directory it is chrooted to. The saved paths are resolved in it, so
 * restore must put them there too, not under the host's "/".
 */
static int tree_root(const char *proc_root, char *root)
{
	ssize_t len;

	len = readlink(proc_root, root, PATH_MAX - 1);
	if (len <= 0 || root[0] != '/') {
		pr_perror("Can't read the root of the dumped tree %s", proc_root);
		return -1;
	}
	root[len] = '\0';
	if (strcmp(root, "/"))
		pr_info("The dumped tree is chrooted to %s: the --tmp-file paths are saved as they are under it\n",
			root);
	return 0;
}

/*
 * Called before the tree is frozen: everything that can fail without the
 * frozen tree fails here, and the archive step only has to run tar.
 */
int tmp_files_prepare_dump(pid_t root_pid)
{
	struct tmp_file *tf;
	char **paths, *last = NULL;
	size_t nr = 0, i;
	int root_fd = -1, ret;

	if (list_empty(&opts.tmp_files) && !opts.tmp_files_auto)
		return 0;

	list_for_each_entry(tf, &opts.tmp_files, list)
		nr++;
	paths = xmalloc((nr ?: 1) * sizeof(*paths));
	dump.set.paths = xmalloc((nr ?: 1) * sizeof(*dump.set.paths));
	if (!paths || !dump.set.paths)
		goto err;
	nr = 0;
	list_for_each_entry(tf, &opts.tmp_files, list)
		paths[nr++] = tf->path;
	qsort(paths, nr, sizeof(*paths), tmp_files_path_cmp);

	/* Paths are resolved as the dumped tree sees them */
	snprintf(dump.set.proc_root, sizeof(dump.set.proc_root), "/proc/%d/root", root_pid);

	dump.names_fd = memfd_create("criu-tmp-files", MFD_CLOEXEC);
	if (dump.names_fd < 0) {
		pr_perror("Can't create a memfd");
		goto err;
	}

	root_fd = open(dump.set.proc_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		pr_perror("Can't open the root of the dumped tree %s", dump.set.proc_root);
		goto err;
	}
	if (tree_root(dump.set.proc_root, dump.set.root))
		goto err;

	for (i = 0; i < nr; i++) {
		struct stat st;

		if (last && issubpath(paths[i], last)) {
			pr_info("%s is saved with %s\n", paths[i], last);
			continue;
		}

		if (strlen(dump.set.proc_root) + strlen(paths[i]) >= PATH_MAX) {
			pr_err("--tmp-file %s: the path is too long\n", paths[i]);
			goto err;
		}
		ret = stat_saved_path(root_fd, paths[i], path_optional(paths[i]), &st);
		if (ret > 0)
			continue;
		if (ret)
			goto err;
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
			pr_err("--tmp-file %s: not a regular file, a directory or a symlink\n", paths[i]);
			goto err;
		}

		/* Member names are relative to the root: skip the leading '/' */
		if (write_all(dump.names_fd, paths[i] + 1, strlen(paths[i])) != strlen(paths[i])) {
			pr_perror("Can't write the --tmp-file list");
			goto err;
		}
		dump.set.paths[dump.set.nr++] = paths[i];
		last = paths[i];
	}
	xfree(paths);

	ret = set_excludes(root_fd) ?: check_programs(compressor(), false);
	close(root_fd);
	if (!ret && opts.tmp_files_precopy && dump.set.nr)
		ret = precopy(root_pid);
	return ret;
err:
	close_safe(&root_fd);
	xfree(paths);
	return -1;
}

/*
 * Called for every regular file the tree has open or mapped. A file on a
 * tmpfs is lost at reboot, unless CRIU saves the tmpfs itself (it does for
 * the mounts of a dumped mount namespace). Unlinked files are ghost files.
 */
int tmp_files_auto_add(struct mount_info *mi, const char *path, const struct stat *st)
{
	struct auto_file *af;
	char full[PATH_MAX];
	struct stat now;

	if (!opts.tmp_files_auto || !S_ISREG(st->st_mode) || st->st_nlink == 0)
		return 0;
	if (mi->fstype->code != FSTYPE__TMPFS || (root_ns_mask & CLONE_NEWNS))
		return 0;
	if (tmp_files_in_paths(dump.set.paths, dump.set.nr, path))
		return 0;
	list_for_each_entry(af, &dump.auto_files, tf.list)
		if (!strcmp(af->tf.path, path))
			return 0;

	/* The path must still lead to this very file */
	snprintf(full, sizeof(full), "%s%s", dump.set.proc_root, path);
	if (stat(full, &now) || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		pr_info("--tmp-file-auto: %s is no longer at its path, not saved\n", path);
		return 0;
	}

	af = (struct auto_file *)new_tmp_file(path, sizeof(*af), &dump.auto_files);
	if (!af)
		return -1;
	af->size = st->st_size;
	dump.nr_auto_files++;
	dump.auto_files_size += st->st_size;
	pr_info("--tmp-file-auto: saving %s (%lld bytes): in use by the tree, on the tmpfs at %s\n", path,
		(long long)st->st_size, mi->ns_mountpoint);
	return 0;
}

/* Largest first */
static int auto_file_size_cmp(const void *a, const void *b)
{
	const struct auto_file *x = *(const struct auto_file **)a, *y = *(const struct auto_file **)b;

	if (x->size == y->size)
		return 0;
	return x->size < y->size ? 1 : -1;
}

static void report_largest_auto_files(void)
{
	struct auto_file **all, *af;
	size_t i = 0;

	pr_err("--tmp-file-auto: the files to save take %zu bytes, over --tmp-file-limit %zu\n", dump.auto_files_size,
	       opts.tmp_files_limit);
	all = xmalloc(dump.nr_auto_files * sizeof(*all));
	if (all) {
		list_for_each_entry(af, &dump.auto_files, tf.list)
			all[i++] = af;
		qsort(all, dump.nr_auto_files, sizeof(*all), auto_file_size_cmp);
		for (i = 0; i < dump.nr_auto_files && i < 5; i++)
			pr_err("    %s: %lld bytes\n", all[i]->tf.path, (long long)all[i]->size);
		xfree(all);
	}
	pr_err("Raise --tmp-file-limit, or name the files to save with --tmp-file\n");
}

static int add_auto_files(void)
{
	struct auto_file *af;

	/* Said at the default log level: runc users see what auto mode did */
	if (!opts.tmp_files_auto)
		return 0;
	if (root_ns_mask & CLONE_NEWNS) {
		pr_warn("--tmp-file-auto: the tree's mount namespace is dumped, and CRIU saves its tmpfs content itself: nothing to add\n");
		return 0;
	}
	if (!dump.nr_auto_files) {
		pr_warn("--tmp-file-auto: no regular file of the tree is open or mapped on a tmpfs: nothing to add\n");
		return 0;
	}
	pr_warn("--tmp-file-auto: saving %zu file(s) of the tree on tmpfs, %zu bytes\n", dump.nr_auto_files, dump.auto_files_size);
	if (dump.auto_files_size > opts.tmp_files_limit) {
		report_largest_auto_files();
		return -1;
	}
	if (xrealloc_safe(&dump.set.paths, (dump.set.nr + dump.nr_auto_files) * sizeof(*dump.set.paths)))
		return -1;
	list_for_each_entry(af, &dump.auto_files, tf.list) {
		if (write_all(dump.names_fd, af->tf.path + 1, strlen(af->tf.path)) != strlen(af->tf.path)) {
			pr_perror("Can't write the --tmp-file list");
			return -1;
		}
		dump.set.paths[dump.set.nr++] = af->tf.path;
	}
	return 0;
}

/*
 * listed: the names are every entry to archive, not the paths to archive
 * recursively; frozen: the tree is frozen (not the pre-copy)
 */
static char **tar_create_argv(bool listed, bool frozen)
{
	static char *const head[] = {
		"tar", "--create", "--file=-", "--format=posix",
		/* 64 KiB writes: as fast as a plain copy, where tar's 10 KiB are not */
		"--record-size=64K", "--numeric-owner", "--preserve-permissions", "--sparse", "--xattrs",
		"--xattrs-include=*", "--acls",
		/* Names are literal, excludes are whole member names */
		"--no-wildcards", "--anchored"
	};
	/* After --directory and the excludes: tar applies them to the names that follow */
	static char *const tail[] = { "--null", "--no-unquote", "--files-from=-", NULL };
	char **argv;
	int n = ARRAY_SIZE(head), i;

	argv = xmalloc((n + 6 + dump.set.nr_excludes + ARRAY_SIZE(tail)) * sizeof(*argv));
	if (!argv)
		return NULL;
	memcpy(argv, head, sizeof(head));
	if (listed)
		argv[n++] = "--no-recursion";
	if (!frozen) {
		/* An entry gone or changed is archived again while frozen */
		argv[n++] = "--ignore-failed-read";
		argv[n++] = "--warning=no-file-changed";
		argv[n++] = "--warning=no-failed-read";
	}
	argv[n++] = "--directory";
	argv[n++] = dump.set.proc_root;
	for (i = 0; i < dump.set.nr_excludes; i++)
		argv[n++] = dump.set.excludes[i];
	memcpy(argv + n, tail, sizeof(tail));
	return argv;
}

/* Called while the tree is frozen */
int dump_tmp_files(void)
{
	struct cr_img *img = NULL;
	pid_t manifest_pid;
	size_t nr_delta = 0;
	int out, tar_done = -1;
	char **argv;
	int ret;

	if (dump.names_fd < 0)
		return 0;

	/* --tmp-file-auto may find nothing to save: no images then */
	ret = add_auto_files();
	if (ret || !dump.set.nr) {
		close_safe(&dump.names_fd);
		drop_precopy(true);
		return ret;
	}

	pr_info("Saving %zu --tmp-file path(s)\n", dump.set.nr);

	if (dump.pc) {
		/* The walk lists what tar archives now */
		ret = tmp_files_precopy_freeze(dump.pc) ?: ftruncate(dump.names_fd, 0) ?:
											 rewind_names();
		out = dump.archive_fd;
	} else {
		ret = rewind_names();
		img = ret ? NULL : open_image(CR_FD_TMP_FILES, O_DUMP);
		out = img ? img_raw_fd(img) : -1;
	}
	manifest_pid = out < 0 || ret ? -1 : tmp_files_start_manifest(&dump.set, dump.pc, dump.names_fd, &nr_delta, &tar_done);
	if (manifest_pid < 0) {
		ret = -1;
		goto out;
	}
	if (dump.pc)
		ret = tmp_files_precopy_compact(dump.pc) ?: rewind_names();

	/*
	 * In the tree's user namespace, the owners are archived as the tree
	 * sees them, and restore, which runs tar there too, maps them back.
	 */
	if (!ret && (!dump.pc || nr_delta)) {
		argv = tar_create_argv(dump.pc, true);
		ret = !argv ? -1 :
			      cr_system_userns(dump.names_fd, out, -1, "tar", argv, 0,
					       (root_ns_mask & CLONE_NEWUSER) ? root_item->pid->real : -1);
		xfree(argv);
		if (ret)
			pr_err("Can't archive the --tmp-file paths: tar failed (see above)\n");
	}
	if (!ret && dump.pc)
		ret = tmp_files_precopy_end(dump.pc, nr_delta);
	if (!ret && fault_injected(FI_TMP_FILES_ARCHIVE)) {
		pr_err("Fault injected: the archive step fails\n");
		ret = -1;
	}

	close(tar_done);
	if (tmp_files_wait_manifest(manifest_pid))
		ret = -1;
out:
	if (img)
		close_image(img);
	close_safe(&dump.names_fd);
	drop_precopy(false); /* remove_images() below on failure */
	if (ret) {
		remove_images();
		return -1;
	}
	dump.archived = true;
	return 0;
}

static int set_manifest_compression(const char *name)
{
	TmpFilesManifestEntry *me;
	struct cr_img *img;
	char *was;
	int ret;

	img = open_image(CR_FD_TMP_FILES_MANIFEST, O_RSTR);
	if (!img)
		return -1;
	ret = pb_read_one(img, &me, PB_TMP_FILES_MANIFEST);
	close_image(img);
	if (ret < 0)
		return -1;
	was = me->compression;
	me->compression = (char *)name;
	ret = tmp_files_write_manifest(me, true);
	me->compression = was;
	tmp_files_manifest_entry__free_unpacked(me, NULL);
	return ret;
}

/*
 * Called once the tree is resumed (or killed): compress the archive now
 * that nobody waits for it. The dump is complete already, so a failure
 * here keeps the archive as it is, uncompressed, and says so.
 */
void tmp_files_compress_after_dump(void)
{
	const struct compressor *c = compressor();
	const char *name = imgset_template[CR_FD_TMP_FILES].fmt;
	int dfd = get_service_fd(IMG_FD_OFF), in = -1, out = -1, ret = -1;
	char tmp[64];

	if (!dump.archived || !c->argv[0])
		return;
	dump.archived = false; /* once: with --lazy-pages, before the pages are served */

	snprintf(tmp, sizeof(tmp), "%s.%s", name, c->name);
	in = openat(dfd, name, O_RDONLY);
	out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, CR_FD_PERM);
	if (in < 0 || out < 0) {
		pr_perror("Can't open %s or %s to compress it", name, tmp);
		goto out;
	}
	ret = cr_system(in, out, -1, c->argv[0], c->argv, 0);
	if (!ret && (fsync(out) || renameat(dfd, tmp, dfd, name))) {
		pr_perror("Can't replace %s with %s", name, tmp);
		ret = -1;
	}
out:
	close_safe(&in);
	close_safe(&out);
	if (ret) {
		unlinkat(dfd, tmp, 0);
		pr_warn("The --tmp-file archive %s stays uncompressed\n", name);
	} else if (set_manifest_compression(c->name)) {
		/* Restore recognises the compression by itself */
		pr_warn("Can't record the compression of %s in the manifest\n", name);
	}
}

/*
 * tar reads the archive in records of 1 MiB, not 10 KiB: every read and
 * write is a system call, and 512 MiB in 10 KiB records took 105,000 of
 * them, 0.3 s on a VM where one costs 2.5 us. From a pipe, it must wait
 * for whole records.
 */
#define TAR_READ_RECORD "--record-size=1M"

/*
 * Run argv with in as stdin, out as stdout (-1: the log), the log as
 * stderr and, if cwd_fd is not -1, that directory as its working
 * directory. SIGCHLD is blocked by the caller: restore's handler must not
 * reap it (as in cr_system()).
 */
static pid_t spawn(char *const argv[], int in, int out, int cwd_fd)
{
	sigset_t mask;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		pr_perror("Can't run %s", argv[0]);
		return -1;
	}
	if (pid)
		return pid;
	sigemptyset(&mask);
	/* Nothing is expected there, and a restored mount namespace may have no /dev/null yet */
	if (out < 0)
		out = log_get_fd();
	if (sigprocmask(SIG_SETMASK, &mask, NULL) || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
	    dup2(log_get_fd(), 2) < 0 || (cwd_fd >= 0 && fchdir(cwd_fd)) || close_fds(3))
		_exit(1);
	execvp(argv[0], argv);
	_exit(1);
}

/* 0 if pid exited 0; killed first if kill_it */
static int reap(pid_t pid, const char *what, bool kill_it)
{
	int status;

	if (pid <= 0)
		return -1;
	if (kill_it)
		kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid) {
		pr_perror("Can't wait for %s", what);
		return -1;
	}
	if (kill_it)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("%s %s %d\n", what, WIFEXITED(status) ? "exited with" : "was killed by signal",
		       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return -1;
	}
	return 0;
}

/* The members of the archive, checked against the manifest as they pass */
struct extraction {
	TmpFilesManifestEntry *me;
	struct tmp_files_sum *sums;
	size_t cur; /* the entry of the member passing */
};

static int member_ok(void *ctx, const struct tmp_files_tar_member *m)
{
	struct extraction *x = ctx;

	return tmp_files_check_member(x->me, x->sums, m, &x->cur);
}

static int member_summed(void *ctx, const struct tmp_files_tar_member *m, uint64_t sum)
{
	struct extraction *x = ctx;

	return tmp_files_check_member_sum(x->me, x->sums, x->cur, sum);
}

/*
 * The archive is decompressed once, and criu reads it on its way to tar
 * (tmp_files_tar_stream()): every member is checked against the manifest
 * before its data reaches tar, so a small archive cannot fill the disk
 * nor put anything the manifest does not have into the stage, and the
 * data of each regular member is checksummed as it passes.
 */
static int extract_archive(const struct tmp_files_stage *stage, TmpFilesManifestEntry *me,
			   struct tmp_files_sum *sums)
{
	struct extraction x = { .me = me, .sums = sums };
	struct tmp_files_tar_check check = { .ctx = &x, .member = member_ok, .summed = member_summed };
	const struct compressor *c = &compressors[me->compression ? compressor_index(me->compression) : TMP_FILES_NONE];
	int dpipe[2] = { -1, -1 }, tpipe[2] = { -1, -1 }, in, ret = -1;
	pid_t unzip = 0, tar = -1;
	sigset_t mask, oldmask;
	struct cr_img *img;

	img = open_image(CR_FD_TMP_FILES, O_RSTR);
	if (!img)
		return -1;
	if (empty_image(img)) {
		pr_err("The --tmp-file archive %s is missing\n", imgset_template[CR_FD_TMP_FILES].fmt);
		close_image(img);
		return -1;
	}
	in = img_raw_fd(img);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &oldmask); /* a valid how and set: can't fail */
	if (pipe2(tpipe, O_CLOEXEC) || (c->dargv[0] && pipe2(dpipe, O_CLOEXEC))) {
		pr_perror("Can't make a pipe");
		goto out;
	}
	/* 64 KiB pipes cost a context switch every 64 KiB: 1 MiB ones, where the limit allows */
	fcntl(tpipe[1], F_SETPIPE_SZ, 1 << 20);
	if (c->dargv[0])
		fcntl(dpipe[1], F_SETPIPE_SZ, 1 << 20);
	if (c->dargv[0]) {
		unzip = spawn(c->dargv, in, dpipe[1], -1);
		close_safe(&dpipe[1]);
		if (unzip < 0)
			goto out;
		in = dpipe[0];
	}
	/*
	 * In the stage, entered by its fd: its name is never used again.
	 * Directory times and modes are set once every member is out: with
	 * a pre-copy, a member may come after members outside its directory.
	 */
	tar = spawn((char *[]){ "tar", "--extract", "--file=-", "--read-full-records", TAR_READ_RECORD,
				"--numeric-owner", "--preserve-permissions", "--same-owner", "--delay-directory-restore",
				"--xattrs", "--xattrs-include=*", "--acls", "--no-unquote", "--no-wildcards", NULL },
		    tpipe[0], -1, stage->fd);
	close_safe(&tpipe[0]);
	if (tar < 0)
		goto out;

	ret = tmp_files_tar_stream(in, tpipe[1], &check);
	close_safe(&tpipe[1]);
	close_safe(&dpipe[0]);
	if (reap(tar, "tar", ret != 0))
		ret = -1;
	tar = -1;
	if (unzip && reap(unzip, c->dargv[0], ret != 0))
		ret = -1;
	unzip = 0;
	if (ret)
		pr_err("The --tmp-file archive %s is damaged, or not what its manifest says: no file was restored\n",
		       imgset_template[CR_FD_TMP_FILES].fmt);
out:
	if (tar > 0)
		reap(tar, "tar", true);
	if (unzip > 0)
		reap(unzip, c->dargv[0], true);
	close_safe(&tpipe[0]);
	close_safe(&tpipe[1]);
	close_safe(&dpipe[0]);
	close_safe(&dpipe[1]);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	close_image(img);
	return ret;
}

/* Put the saved files back under root ("" for "/") */
static int restore_into(const char *root)
{
	TmpFilesManifestEntry *me = NULL;
	struct tmp_files_sum *sums = NULL;
	struct tmp_files_stage stage;
	struct cr_img *img;
	int root_fd, ret;

	img = open_image(CR_FD_TMP_FILES_MANIFEST, O_RSTR);
	if (!img)
		return -1;
	if (empty_image(img)) {
		close_image(img);
		return 0;
	}
	ret = pb_read_one(img, &me, PB_TMP_FILES_MANIFEST);
	close_image(img);
	if (ret < 0)
		return -1;

	ret = -1;
	if (me->compression && compressor_index(me->compression) < 0) {
		pr_err("The --tmp-file archive is compressed with \"%s\", which is not supported\n", me->compression);
		goto out;
	}
	if (tmp_files_check_manifest(me))
		goto out;
	root_fd = open(*root ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		pr_perror("Can't open the restore root %s", *root ? root : "/");
		goto out;
	}
	if (me->root && strcmp(me->root, "/")) {
		int fd = tmp_files_open_tree_root(root_fd, root, me->root);

		close(root_fd);
		root_fd = fd;
		if (root_fd < 0)
			goto out;
		pr_info("The dumped tree was chrooted to %s: its --tmp-file paths go under %s%s\n", me->root, root,
			me->root);
	}
	if (tmp_files_all_in_place(root_fd, me)) {
		ret = 0;
		goto close_root;
	}
	sums = xzalloc(me->n_entries * sizeof(*sums) + 1);
	if (!sums)
		goto close_root;
	/* Before extracting: a missing program is not a damaged archive */
	if (check_programs(&compressors[me->compression ? compressor_index(me->compression) : TMP_FILES_NONE],
			   true))
		goto close_root;
	if (tmp_files_stage_make(root_fd, root, me, &stage))
		goto close_root;

	pr_info("Restoring %zu --tmp-file path(s) into %s/\n", me->n_paths, root);
	ret = extract_archive(&stage, me, sums) ?: tmp_files_check_staged(stage.fd, me, sums) ?:
												tmp_files_place(root_fd, stage.fd, me);

	tmp_files_stage_remove(&stage);
close_root:
	close(root_fd);
out:
	xfree(sums);
	tmp_files_manifest_entry__free_unpacked(me, NULL);
	return ret;
}

static const char *restore_root(void)
{
	/* "/" is the empty prefix: paths are joined as root + "/" + rel */
	return opts.root && strcmp(opts.root, "/") ? opts.root : "";
}

/* Called before any task is created */
int restore_tmp_files(void)
{
	/*
	 * The tree's own mounts don't exist yet, nor its user namespace, in
	 * which owners must be set: see restore_tmp_files_in_ns().
	 */
	if (root_ns_mask & (CLONE_NEWNS | CLONE_NEWUSER))
		return 0;

	return restore_into(restore_root());
}

/*
 * With a restored mount namespace the files go where the tree will look
 * for them: into that namespace, once its mounts are in place. Called by
 * the root task, in the tree's namespaces, before any other task is
 * forked and opens a file.
 */
int restore_tmp_files_in_ns(void)
{
	struct ns_id *mntns;
	int root_fd, cwd_fd, ret;

	if (!(root_ns_mask & CLONE_NEWNS))
		return root_ns_mask & CLONE_NEWUSER ? restore_into(restore_root()) : 0;

	mntns = lookup_ns_by_id(root_item->ids->mnt_ns_id, &mnt_ns_desc);
	root_fd = mntns ? mntns_get_root_fd(mntns) : -1;
	if (root_fd < 0) {
		pr_err("Can't get the root of the restored mount namespace\n");
		return -1;
	}

	/* Paths are resolved from the namespace's root, as "./path" */
	cwd_fd = open(".", O_PATH);
	if (cwd_fd < 0 || fchdir(root_fd)) {
		pr_perror("Can't enter the root of the restored mount namespace");
		close_safe(&cwd_fd);
		return -1;
	}
	ret = restore_into(".");
	if (fchdir(cwd_fd)) {
		pr_perror("Can't go back to the working directory");
		ret = -1;
	}
	close(cwd_fd);
	return ret;
}
