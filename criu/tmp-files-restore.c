/*
 * --tmp-file, restore: before any task is created (or, with a restored
 * mount namespace, in it), the archive is extracted into a staging
 * directory (tmp-files-stage.c) and checked against the manifest
 * (tmp-files-manifest.c), each file's content checksum taken as its data
 * passes (tmp-files-tar.c); criu writes the plain regular files and
 * directories into the stage itself, tar makes the rest (started for the
 * first member that needs it, if any). The entries are then put in place by
 * directory fds (tmp-files-place.c).
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
#include "tmp-files-manifest.h"
#include "tmp-files-place.h"
#include "tmp-files-options.h"
#include "util.h"
#include "xmalloc.h"

#include "images/mnt.pb-c.h"
#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

/* The members of the archive, checked against the manifest as they pass */
struct extraction {
	int stage_fd;
	struct tmp_files_stage_dir dir; /* of the last file criu made */
	TmpFilesManifestEntry *me;
	struct tmp_files_sum *sums;
	size_t cur;			    /* the entry of the member passing */
	struct tmp_files_stage_attrs *dirs; /* made by criu, their attributes set at the end */
	size_t nr_dirs;
	pid_t tar;
	int tar_in;
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

/* A regular file, not sparse, no xattrs nor ACLs: criu writes it, not tar */
static int member_open(void *ctx, const struct tmp_files_tar_member *m, int *fd)
{
	struct extraction *x = ctx;

	*fd = tmp_files_stage_file(&x->dir, x->stage_fd, m->name);
	return *fd < 0 ? -1 : 0;
}

static struct tmp_files_stage_attrs member_attrs(const struct tmp_files_tar_member *m)
{
	return (struct tmp_files_stage_attrs){
		.name = m->name,
		.uid = m->uid,
		.gid = m->gid,
		.mode = m->mode,
		.mtime = m->mtime,
		/* tar's own start time where the archive has none: now, near enough */
		.atime = m->has_atime ? m->atime : (struct timespec){ .tv_nsec = UTIME_NOW },
	};
}

static int member_written(void *ctx, const struct tmp_files_tar_member *m, int fd)
{
	struct tmp_files_stage_attrs a = member_attrs(m);

	return tmp_files_stage_file_done(fd, &a);
}

/* A directory, no xattrs nor ACLs: criu makes it, and sets its attributes once everything is in it */
static int member_dir(void *ctx, const struct tmp_files_tar_member *m)
{
	struct extraction *x = ctx;
	struct tmp_files_stage_attrs *a;

	if (xrealloc_safe(&x->dirs, (x->nr_dirs + 1) * sizeof(*x->dirs)))
		return -1;
	a = &x->dirs[x->nr_dirs];
	*a = member_attrs(m);
	a->name = xstrdup(m->name);
	if (!a->name)
		return -1;
	x->nr_dirs++;
	return tmp_files_stage_mkdir(x->stage_fd, m->name);
}

/* Once tar is done (it may make entries in them), or only freed if !apply */
static int set_dirs(struct extraction *x, bool apply)
{
	int ret = 0;

	while (x->nr_dirs) {
		struct tmp_files_stage_attrs *a = &x->dirs[--x->nr_dirs];
		int fd = ret || !apply ? -1 :
					 tmp_files_open_beneath(x->stage_fd, a->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

		if (!ret && apply && (fd < 0 || tmp_files_stage_file_done(fd, a))) {
			pr_perror("Can't set the attributes of %s of the --tmp-file archive", a->name);
			ret = -1;
		}
		xfree((char *)a->name);
	}
	xfree(x->dirs);
	return ret;
}

/* The first member criu does not write itself: tar, in the stage, entered by its fd (its name is never used again) */
static int start_tar(void *ctx)
{
	struct extraction *x = ctx;
	int tpipe[2];

	if (tmp_files_check_tar(true))
		return -1;
	if (pipe2(tpipe, O_CLOEXEC)) {
		pr_perror("Can't make a pipe");
		return -1;
	}
	/* 64 KiB pipes cost a context switch every 64 KiB: 1 MiB ones, where the limit allows */
	fcntl(tpipe[1], F_SETPIPE_SZ, 1 << 20);
	x->tar = tmp_files_spawn(tmp_files_tar_extract_argv(), tpipe[0], -1, x->stage_fd);
	close(tpipe[0]);
	if (x->tar < 0) {
		close(tpipe[1]);
		return -1;
	}
	x->tar_in = tpipe[1];
	return x->tar_in;
}

/*
 * The archive is decompressed once, and criu reads it on its way to tar
 * (tmp_files_tar_stream()): every member is checked against the manifest
 * before its data reaches tar, so a small archive cannot fill the disk
 * nor put anything the manifest does not have into the stage, and the
 * data of each regular member is checksummed as it passes. The data of a
 * plain regular member (no xattrs nor ACLs, not sparse) goes straight to
 * its file in the stage, made by criu beneath the stage's fd; tar does not
 * see that member, and its hard links, which come after it, find it made.
 * A directory with no xattrs nor ACLs is made by criu too, 0700 until the
 * end, when its owner, mode and times are set as tar's
 * --delay-directory-restore sets them. tar (and the check that it is GNU
 * tar) is started for the first member criu does not make: for none when
 * the tree holds no symlinks, fifos, hard links, sparse files nor xattrs.
 */
static int extract_archive(const struct tmp_files_stage *stage, TmpFilesManifestEntry *me,
			   struct tmp_files_sum *sums)
{
	struct extraction x = {
		.stage_fd = stage->fd, .dir = { .fd = -1 }, .me = me, .sums = sums, .tar = -1, .tar_in = -1
	};
	struct tmp_files_tar_check check = {
		.ctx = &x,
		.member = member_ok,
		.summed = member_summed,
		.open_data = member_open,
		.data_done = member_written,
		.make_dir = member_dir,
		.start_tar = start_tar,
	};
	const struct tmp_files_compressor *c = tmp_files_compressor(me->compression);
	int dpipe[2] = { -1, -1 }, in, ret = -1;
	pid_t unzip = 0;
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
	if (c->dargv[0] && pipe2(dpipe, O_CLOEXEC)) {
		pr_perror("Can't make a pipe");
		goto out;
	}
	if (c->dargv[0]) {
		fcntl(dpipe[1], F_SETPIPE_SZ, 1 << 20);
		unzip = tmp_files_spawn(c->dargv, in, dpipe[1], -1);
		close_safe(&dpipe[1]);
		if (unzip < 0)
			goto out;
		in = dpipe[0];
	}
	ret = tmp_files_tar_stream(in, -1, &check);
	tmp_files_stage_dir_close(&x.dir);
	close_safe(&x.tar_in);
	close_safe(&dpipe[0]);
	if (x.tar > 0 && tmp_files_reap(x.tar, "tar", ret != 0))
		ret = -1;
	x.tar = -1;
	if (unzip && tmp_files_reap(unzip, c->dargv[0], ret != 0))
		ret = -1;
	unzip = 0;
	/* Everything is in the directories criu made: their modes and times now */
	if (set_dirs(&x, !ret))
		ret = -1;
	if (ret)
		/* The line before says which: a member, or a write into the stage (a full disk) */
		pr_err("The --tmp-file archive %s is damaged, not what its manifest says, or could not be written out (see above): no file was restored\n",
		       imgset_template[CR_FD_TMP_FILES].fmt);
out:
	if (unzip > 0)
		tmp_files_reap(unzip, c->dargv[0], true);
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
	if (!tmp_files_compressor(me->compression)) {
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
	/* Before extracting: a missing program is not a damaged archive (tar: when a member needs it) */
	if (tmp_files_check_programs(tmp_files_compressor(me->compression), true))
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
