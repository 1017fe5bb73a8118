/*
 * --tmp-file: save files that the dumped tree uses and that may be gone
 * at restore time (a /tmp wiped at boot, a host that never had them).
 *
 * This file has the dump flow, from cr-dump.c's hooks (the restore flow
 * is tmp-files-restore.c, the options tmp-files.c).
 * The paths are checked before the tree is frozen; while it is
 * frozen, GNU tar archives them, as the root task sees them, into the raw
 * image tmp-files.tar.img, while a child writes tmp-files-manifest.img
 * (tmp-files-manifest.c). The archive is compressed only after the tree
 * is resumed: compressing is what takes time, and the tree must not wait
 * for it.
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
#include "tmp-files-options.h"
#include "tmp-files-precopy.h"
#include "util.h"
#include "xmalloc.h"

#include "images/mnt.pb-c.h"
#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

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

/*
 * What the frozen pass walked, kept and listed (tens of thousands of
 * entries): freed once the tree is resumed, or the dump failed.
 */
static void release_dump(void)
{
	drop_precopy(false);
	tmp_files_free_manifest();
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

	ret = set_excludes(root_fd) ?: tmp_files_check_programs(tmp_files_dump_compressor(), false);
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

/*
 * CRIU's own collection of the frozen tree's mappings (collect_mappings()
 * in dump_one_task(), before dump_tmp_files()) tells the pre-copy which
 * files the tree maps shared at the freeze: no second read of
 * /proc/PID/maps. Before the freeze, CRIU has collected nothing yet: the
 * pre-copy reads the maps of the running tree itself.
 */
int tmp_files_map_shared(const struct stat *st)
{
	return dump.pc ? tmp_files_precopy_map_shared(dump.pc, st) : 0;
}

static const char *precopy_changed(void *pc, const char *path, const struct stat *st, uint64_t *sum,
				   TmpFileEntry *e)
{
	return tmp_files_precopy_changed(pc, path, st, sum, e);
}

/*
 * Called while the tree is frozen, before tar and before --tmp-file-auto
 * adds its paths: every saved path is resolved again as before the
 * freeze, without a symlink on the way. The tree ran between the two,
 * and could have put one there, to a host directory that tar, resolving
 * the name, would archive; frozen, it can change nothing after this. It
 * may have made the path again (another inode): that is its right.
 */
static int check_saved_paths_again(void)
{
	int root_fd, ret = 0;
	size_t i;

	root_fd = open(dump.set.proc_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		pr_perror("Can't open the root of the dumped tree %s", dump.set.proc_root);
		return -1;
	}
	for (i = 0; !ret && i < dump.set.nr; i++) {
		struct stat st;

		ret = stat_saved_path(root_fd, dump.set.paths[i], false, &st);
		if (ret)
			pr_err("--tmp-file %s: it was fine before the freeze: the dumped tree changed it since\n",
			       dump.set.paths[i]);
	}
	close(root_fd);
	return ret ? -1 : 0;
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
	ret = check_saved_paths_again() ?: tmp_files_auto_collect(&dump.set, dump.names_fd);
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
		/* Drained by the freeze: the walk goes from it if it can be used */
		keep.watch = tmp_files_precopy_watch(dump.pc);
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
	close_safe(&dump.archive_fd);
	if (ret) {
		release_dump();
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
	const struct tmp_files_compressor *c = tmp_files_dump_compressor();
	const char *name = imgset_template[CR_FD_TMP_FILES].fmt;
	int dfd = get_service_fd(IMG_FD_OFF), in = -1, out = -1, ret = -1;
	char tmp[64];

	release_dump();
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
