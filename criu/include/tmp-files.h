#ifndef __CR_TMP_FILES_H__
#define __CR_TMP_FILES_H__

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>

#include "common/list.h"

struct mount_info;
struct stat;

/* --tmp-file-limit: total size of the files --tmp-file-auto may save */
#define DEFAULT_TMP_FILES_LIMIT (64 << 20)

/* One --tmp-file PATH (or --tmp-file-optional); normalised by tmp_files_check_options() */
struct tmp_file {
	struct list_head list;
	char *path;
	bool optional; /* a tree without it is dumped without it */
};

/* Options: recorded while parsing, checked once the log is set up */
extern int tmp_file_add(const char *path, bool optional);
extern int tmp_files_check_options(void);

/* Dump: check paths and tar before freezing, archive while frozen */
extern int tmp_files_prepare_dump(pid_t root_pid);
extern int tmp_files_auto_add(struct mount_info *mi, const char *path, const struct stat *st);
extern int dump_tmp_files(void);
extern void tmp_files_compress_after_dump(void);

/* Restore: put the saved files back before any task opens a file */
extern int restore_tmp_files(void);
extern int restore_tmp_files_in_ns(void);

/*
 * Between the tmp-files*.c files:
 *   tmp-files.c           options; dump (paths, tar, auto mode,
 *                         compression) and restore entry points
 *   tmp-files-manifest.c  the manifest: made at dump, checked at restore
 *   tmp-files-place.c     restore: staging directory, placement, rollback
 *   tmp-files-tar.c       restore: the archive's stream to tar, each
 *                         member's headers parsed and checked on the way
 *   tmp-files-hash.c      the checksums of content and xattrs
 *   tmp-files-precopy.c   --tmp-file-precopy: the pass before the freeze,
 *                         and what of it the frozen pass keeps
 */
struct TmpFilesManifestEntry;
struct TmpFileEntry;

/* What a dump saves, as the dumped tree sees it */
struct tmp_files_set {
	char proc_root[32];  /* /proc/PID/root of the root task */
	char root[PATH_MAX]; /* where that is: "/", or the tree's chroot */
	char **paths;	     /* absolute, none inside another */
	size_t nr;
	char **excludes; /* "--exclude=NAME" for tar: the images and work directories */
	int nr_excludes;
};

/* tmp-files.c: paths sort with '/' before any other byte, "/a/b" right after "/a" */
extern int tmp_files_normalise_path(const char *path, char *out);
extern int tmp_files_path_cmp(const void *a, const void *b);
extern size_t tmp_files_paths_lower_bound(char **paths, size_t nr, const char *path);
extern bool tmp_files_in_paths(char **paths, size_t nr, const char *path);

/* tmp-files-manifest.c */
struct tmp_files_precopy;
/*
 * With pc, the entries the pre-copy did not keep are listed into names_fd,
 * nr_delta of them, and are to be archived while the child reads them.
 */
extern pid_t tmp_files_start_manifest(const struct tmp_files_set *set, struct tmp_files_precopy *pc, int names_fd,
				      size_t *nr_delta, int *tar_done);
extern int tmp_files_wait_manifest(pid_t pid);
extern int tmp_files_write_manifest(struct TmpFilesManifestEntry *me, bool replace);
extern int tmp_files_check_manifest(struct TmpFilesManifestEntry *me);

/*
 * What the archive's stream said of each manifest entry (me->entries'
 * order): its member was named, and for a regular member not sparse,
 * the checksum of its data as it passed to tar. check_staged() uses it
 * instead of reading the extracted file again.
 */
struct tmp_files_sum {
	bool named;
	bool streamed;
	uint64_t sum;
};

struct tmp_files_tar_member;
extern int tmp_files_check_member(struct TmpFilesManifestEntry *me, struct tmp_files_sum *sums,
				  const struct tmp_files_tar_member *m, size_t *idx);
extern int tmp_files_check_member_sum(struct TmpFilesManifestEntry *me, struct tmp_files_sum *sums, size_t idx,
				      uint64_t sum);
extern int tmp_files_check_staged(int stage_fd, struct TmpFilesManifestEntry *me,
				  const struct tmp_files_sum *sums);

/*
 * A walk of the tree at path (a buffer of PATH_MAX, the first len bytes
 * used), without following symlinks: fn(ctx, path, len, st) for every
 * entry, parents first; fn returns 0 to go on, TMP_FILES_WALK_SKIP not
 * to go into a directory, or -1 to stop. racy: the tree runs, and an
 * entry that is gone when it is reached is left out.
 */
#define TMP_FILES_WALK_SKIP 1
typedef int (*tmp_files_walk_fn)(void *ctx, char *path, size_t len, const struct stat *st);
extern int tmp_files_walk(char *path, size_t len, tmp_files_walk_fn fn, void *ctx, bool racy);
/* path ("/tmp/x") is the images or work directory */
extern bool tmp_files_excluded(const struct tmp_files_set *set, const char *path);

/* tmp-files-precopy.c: in this order, from before the freeze to the end of the frozen pass */
extern struct tmp_files_precopy *tmp_files_precopy_walk(const struct tmp_files_set *set, pid_t root_pid,
							 int names_fd);
extern int tmp_files_precopy_done(struct tmp_files_precopy *pc, int fd);
extern int tmp_files_precopy_freeze(struct tmp_files_precopy *pc);
extern const char *tmp_files_precopy_changed(struct tmp_files_precopy *pc, const char *path, const struct stat *st,
					     uint64_t *sum, struct TmpFileEntry *e);
extern int tmp_files_precopy_compact(struct tmp_files_precopy *pc);
extern int tmp_files_precopy_end(struct tmp_files_precopy *pc, bool appended);
extern void tmp_files_precopy_free(struct tmp_files_precopy *pc);

/* tmp-files-hash.c: content_xxh64 of images/tmp-file.proto, from the bytes as they come */
struct tmp_files_sum_ctx {
	uint64_t acc;
	off_t off; /* of buf in the file */
	size_t fill;
	char *buf;
};
extern int tmp_files_sum_start(struct tmp_files_sum_ctx *c);
extern void tmp_files_sum_update(struct tmp_files_sum_ctx *c, const char *data, size_t len);
extern uint64_t tmp_files_sum_end(struct tmp_files_sum_ctx *c);

/* tmp-files-tar.c: a member of the archive, from its headers */
struct tmp_files_tar_member {
	char name[PATH_MAX]; /* as in the archive: "tmp/app/x", "tmp/app/" */
	char linkname[PATH_MAX];
	char type;		     /* ustar typeflag, '0' for a regular file */
	unsigned long long size;     /* of its data in the archive */
	bool has_size;		     /* size came from a pax record */
	bool sparse;		     /* GNU tar's pax sparse format */
	unsigned long long realsize; /* of a sparse file */
};

struct tmp_files_tar_check {
	void *ctx;
	/* Before any of the member is handed on: 0 to go on */
	int (*member)(void *ctx, const struct tmp_files_tar_member *m);
	/* A regular member (not sparse) has passed: the checksum of its data */
	int (*summed)(void *ctx, const struct tmp_files_tar_member *m, uint64_t sum);
};

extern int tmp_files_tar_header(const char *blk, struct tmp_files_tar_member *m);
extern int tmp_files_tar_pax(const char *buf, size_t len, struct tmp_files_tar_member *m);
extern int tmp_files_tar_stream(int in, int out, const struct tmp_files_tar_check *check);

/* tmp-files-hash.c: content_xxh64 of images/tmp-file.proto, from fd */
extern uint64_t tmp_files_xxh64(const void *buf, size_t len, uint64_t seed);
extern int tmp_files_content_sum(int fd, off_t size, uint64_t *sum);
/* The regular file path in dfd, opened if it is still the inode of st */
extern int tmp_files_open_seen(int dfd, const char *path, const struct stat *st);
extern int tmp_files_content_sum_at(int fd, off_t base, off_t size, uint64_t *sum);
extern int tmp_files_next_data(int fd, off_t off, off_t *data, off_t *hole);

/* tmp-files-hash.c: the xattrs of path into e (sorted by name), or compare them with e's */
extern int tmp_files_get_xattrs(const char *path, struct TmpFileEntry *e);
extern const char *tmp_files_xattrs_differ(const char *path, const struct TmpFileEntry *e);

/* tmp-files-place.c */
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
/* openat2() beneath dfd, no symlink on the way */
extern int tmp_files_open_beneath(int dfd, const char *path, int flags);
/* Before extracting: every saved entry is in place already, as saved */
extern bool tmp_files_all_in_place(int root_fd, struct TmpFilesManifestEntry *me);
/* me->entries sorted by path: check_staged() did it */
extern int tmp_files_place(int root_fd, int stage_fd, struct TmpFilesManifestEntry *me);

#endif /* __CR_TMP_FILES_H__ */
