#ifndef __CR_TMP_FILES_STAGE_H__
#define __CR_TMP_FILES_STAGE_H__

/*
 * --tmp-file, restore (tmp-files-stage.c): the staging directory, and the
 * dumped tree's root under the restore root. Calls tmp-files-tree.c.
 */
#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "tmp-files-tree.h"

struct TmpFilesManifestEntry;

struct tmp_files_stage {
	int parent_fd;
	int fd; /* holds the flock() that tells it is in use */
	char name[48];
	char where[PATH_MAX]; /* for messages only: the stage is used through fd */
};

extern int tmp_files_stage_make(int root_fd, const char *root, struct TmpFilesManifestEntry *me,
				struct tmp_files_stage *s);
extern void tmp_files_stage_remove(struct tmp_files_stage *s);
/* The dumped tree's root (a chroot, "/srv/jail") under the restore root */
extern int tmp_files_open_tree_root(int root_fd, const char *root, const char *tree_root);
/*
 * A regular file of the archive ("tmp/app/x") that criu writes itself,
 * made in the stage, its missing parents 0700: its fd (dir keeps the fd of
 * its directory for the next file: { .fd = -1 } at first, closed with
 * tmp_files_stage_dir_close() at the end). Then its owner, mode and
 * times, as tar would set them, and the fd closed.
 */
struct tmp_files_stage_dir {
	char name[PATH_MAX]; /* "tmp/app", "" for none or the stage itself */
	int fd;		     /* -1 for none */
};
extern int tmp_files_stage_file(struct tmp_files_stage_dir *dir, int stage_fd, const char *name);
extern void tmp_files_stage_dir_close(struct tmp_files_stage_dir *dir);
/* A directory of the archive ("tmp/app/") that criu makes, 0700 until tmp_files_stage_file_done() on its fd */
extern int tmp_files_stage_mkdir(int stage_fd, const char *name);
/* The names in the staged directory path ("/tmp/app"), NULL-terminated, each and the array to xfree() */
extern char **tmp_files_stage_names(int stage_fd, const char *path, size_t *nr);
struct tmp_files_stage_attrs {
	const char *name; /* for messages */
	uid_t uid;
	gid_t gid;
	mode_t mode;
	struct timespec mtime, atime; /* atime: UTIME_NOW if the archive has none */
};
extern int tmp_files_stage_file_done(int fd, const struct tmp_files_stage_attrs *a);
/* uid is the overflow uid of a restored user namespace: an owner outside it */
extern bool tmp_files_owner_outside_userns(uid_t uid);

#endif /* __CR_TMP_FILES_STAGE_H__ */
