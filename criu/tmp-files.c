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
#include "tmp-files-auto.h"
#include "tmp-files-manifest.h"
#include "tmp-files-place.h"
#include "tmp-files-precopy.h"
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

/*
 * The state of one dump, from tmp_files_prepare_dump() (before the
 * freeze) to tmp_files_compress_after_dump() (after the resume): the
 * entry points are called from cr-dump.c with nothing to pass it in.
 */
static struct tmp_files_dump {
	int names_fd; /* member names for tar --null --files-from */
	struct tmp_files_set set;
	struct tmp_files_precopy *pc; /* --tmp-file-precopy: the pass before the freeze */
	int archive_fd;		      /* with pc: the archive it made, read-write */
	bool archived;		      /* the archive and the manifest are written */
} dump = {
	.names_fd = -1,
	.archive_fd = -1,
};

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

static int set_excludes(int root_fd)
{
	struct stat ids[2];

	if (fstat(get_service_fd(IMG_FD_OFF), &ids[0]) || stat(".", &ids[1])) {
		pr_perror("Can't stat the images or work directory");
		return -1;
	}
	return tmp_files_find_excludes(&dump.set, root_fd, ids, 2);
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

	dir = tmp_files_dirname(path);
	if (!dir)
		return -1;
	/* Without O_DIRECTORY: a symlink on the way is then ELOOP, not ENOTDIR */
	fd = tmp_files_open_beneath(root_fd, dir, O_PATH);
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
 * archives such a file again. cr_system_userns() runs it in the tree's
 * user namespace, and CRS_EXIT_STATUS has it say which status tar exited
 * with.
 */
static int precopy(pid_t root_pid)
{
	const char *name = imgset_template[CR_FD_TMP_FILES].fmt;
	char **argv;
	int userns, ret = -1;

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

	argv = tmp_files_tar_create_argv(&dump.set, true, false);
	if (argv) {
		ret = cr_system_userns(dump.names_fd, dump.archive_fd, -1, "tar", argv, CRS_CAN_FAIL | CRS_EXIT_STATUS,
				       userns);
		if (ret == 1) {
			ret = 0;
		} else if (ret) {
			pr_err("Can't archive the --tmp-file paths before the freeze: tar failed (%d, see above)\n", ret);
			ret = -1;
		}
	}
	ret = ret ?: tmp_files_precopy_done(dump.pc, dump.archive_fd);
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
	tmp_files_auto_start(&dump.set);
	if (!ret && opts.tmp_files_precopy && dump.set.nr)
		ret = precopy(root_pid);
	return ret;
err:
	close_safe(&root_fd);
	xfree(paths);
	return -1;
}

static const char *precopy_changed(void *pc, const char *path, const struct stat *st, uint64_t *sum,
				   TmpFileEntry *e)
{
	return tmp_files_precopy_changed(pc, path, st, sum, e);
}

/* Called while the tree is frozen */
int dump_tmp_files(void)
{
	struct cr_img *img = NULL;
	pid_t manifest_pid;
	size_t nr_delta = 0;
	int out, tar_done = -1;
	struct tmp_files_keep keep = { .changed = precopy_changed, .ctx = dump.pc };
	char **argv;
	int ret;

	if (dump.names_fd < 0)
		return 0;

	/* --tmp-file-auto may find nothing to save: no images then */
	ret = tmp_files_auto_collect(&dump.set, dump.names_fd);
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
	manifest_pid = out < 0 || ret ? -1 : tmp_files_start_manifest(&dump.set, dump.pc ? &keep : NULL, dump.names_fd, &nr_delta, &tar_done);
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
		argv = tmp_files_tar_create_argv(&dump.set, dump.pc, true);
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
		unzip = tmp_files_spawn(c->dargv, in, dpipe[1], -1);
		close_safe(&dpipe[1]);
		if (unzip < 0)
			goto out;
		in = dpipe[0];
	}
	/* In the stage, entered by its fd: its name is never used again */
	tar = tmp_files_spawn(tmp_files_tar_extract_argv(), tpipe[0], -1, stage->fd);
	close_safe(&tpipe[0]);
	if (tar < 0)
		goto out;

	ret = tmp_files_tar_stream(in, tpipe[1], &check);
	close_safe(&tpipe[1]);
	close_safe(&dpipe[0]);
	if (tmp_files_reap(tar, "tar", ret != 0))
		ret = -1;
	tar = -1;
	if (unzip && tmp_files_reap(unzip, c->dargv[0], ret != 0))
		ret = -1;
	unzip = 0;
	if (ret)
		pr_err("The --tmp-file archive %s is damaged, or not what its manifest says: no file was restored\n",
		       imgset_template[CR_FD_TMP_FILES].fmt);
out:
	if (tar > 0)
		tmp_files_reap(tar, "tar", true);
	if (unzip > 0)
		tmp_files_reap(unzip, c->dargv[0], true);
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
