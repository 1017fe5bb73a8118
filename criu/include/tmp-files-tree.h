#ifndef __CR_TMP_FILES_TREE_H__
#define __CR_TMP_FILES_TREE_H__

/*
 * --tmp-file, the bottom module (tmp-files-tree.c): paths, their order,
 * the walk of a saved tree, openat2() beneath a directory, and the
 * images and work directories that are never saved. It calls no other
 * tmp-files module.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct stat;

/* What a dump saves, as the dumped tree sees it */
struct tmp_files_set {
	char proc_root[32];  /* /proc/PID/root of the root task */
	char root[PATH_MAX]; /* where that is: "/", or the tree's chroot */
	char **paths;	     /* absolute, none inside another */
	size_t nr;
	char **excludes; /* "--exclude=NAME" for tar: the images and work directories */
	int nr_excludes;
};

/* Paths sort with '/' before any other byte, "/a/b" right after "/a" */
extern int tmp_files_normalise_path(const char *path, char *out);
extern int tmp_files_path_cmp(const void *a, const void *b);
extern size_t tmp_files_paths_lower_bound(char **paths, size_t nr, const char *path);
extern bool tmp_files_in_paths(char **paths, size_t nr, const char *path);
/* "tmp/app" of "/tmp/app/x", "" of "/x": the directory, relative to the root (xmalloc'ed) */
extern char *tmp_files_dirname(const char *path);

/*
 * openat2() of path ("" for dfd itself) beneath dfd, no symlink on the
 * way (RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH). flags may have O_NOFOLLOW:
 * with O_PATH, a symlink as the last name is then opened, not refused.
 */
extern int tmp_files_open_beneath(int dfd, const char *path, int flags);

/*
 * path opened (flags: O_PATH, or O_RDONLY | O_DIRECTORY), never through a
 * symlink, if it is still the entry st describes (its lstat() by its
 * directory's fd in the walk); otherwise -1, with errno ESTALE. What is
 * read of a walked entry is read through it, never by its name resolved
 * again: a user or the running tree may have put a symlink on the way.
 */
extern int tmp_files_open_walked(const char *path, const struct stat *st, int flags);
/* Its failure in the log: "changed while it was saved", or errno */
extern void tmp_files_walked_error(const char *path);

/*
 * A walk of the tree at path (a buffer of PATH_MAX, the first len bytes
 * used), without following symlinks: fn(ctx, path, len, st) for every
 * entry, parents first; fn returns 0 to go on, TMP_FILES_WALK_SKIP not
 * to go into a directory, or -1 to stop. Each directory is opened with
 * tmp_files_open_walked(), its children listed and lstat()ed by its fd.
 * racy: the tree runs, and an entry that is gone (or another) when it is
 * reached is left out.
 */
#define TMP_FILES_WALK_SKIP 1
typedef int (*tmp_files_walk_fn)(void *ctx, char *path, size_t len, const struct stat *st);
extern int tmp_files_walk(char *path, size_t len, tmp_files_walk_fn fn, void *ctx, bool racy);

/*
 * The images and work directories, by identity (ids[0..nr_ids-1]), where
 * they are under the saved paths of set (resolved beneath root_fd): added
 * to set->excludes. tmp_files_excluded(): path ("/tmp/x") is one of them.
 */
extern int tmp_files_find_excludes(struct tmp_files_set *set, int root_fd, const struct stat *ids, int nr_ids);
extern bool tmp_files_excluded(const struct tmp_files_set *set, const char *path);

#endif /* __CR_TMP_FILES_TREE_H__ */
