#ifndef __CR_TMP_FILES_WATCH_H__
#define __CR_TMP_FILES_WATCH_H__

#include <stdbool.h>
#include <sys/types.h>

#include "tmp-files-tree.h"

/*
 * tmp-files-watch.c: what changed under the saved paths between the
 * pre-copy and the freeze, from fanotify, so that the frozen pass looks
 * only at that (--tmp-file-precopy). In this order:
 *
 *   start()  before the pre-copy's walk: NULL if there is no record to
 *            be had (said in the log); the frozen pass then checks every
 *            entry, as without this file
 *   add()    for every entry the pre-copy's walk sees, parents first
 *   drain()  at the freeze: false if the record cannot be trusted (the
 *            queue overflowed, an event could not be attributed, the
 *            mounts changed; said in the log), and walk() must not be used
 *   walk()   in the frozen pass, instead of tmp_files_walk() on a saved
 *            path: the same calls of fn, from the pre-copy's lstat() for
 *            what did not change, from a new one for what did
 *   written() whether a file was written (or closed after a write open)
 *            since the pre-copy started, whatever its times say
 */
struct tmp_files_watch;

extern struct tmp_files_watch *tmp_files_watch_start(const struct tmp_files_set *set, pid_t root_pid);
extern int tmp_files_watch_add(struct tmp_files_watch *w, const char *path, const struct stat *st);
extern bool tmp_files_watch_drain(struct tmp_files_watch *w);
extern int tmp_files_watch_walk(struct tmp_files_watch *w, char *path, size_t len, size_t prefix_len,
				tmp_files_walk_fn fn, void *ctx);
extern bool tmp_files_watch_written(struct tmp_files_watch *w, const struct stat *st);
extern void tmp_files_watch_free(struct tmp_files_watch *w);

#endif /* __CR_TMP_FILES_WATCH_H__ */
