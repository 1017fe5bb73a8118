#ifndef __CR_TMP_FILES_PRECOPY_H__
#define __CR_TMP_FILES_PRECOPY_H__

/*
 * --tmp-file-precopy (tmp-files-precopy.c): the pass before the freeze,
 * and what of it the frozen pass keeps. Calls tree, hash and tar.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tmp-files-hash.h"
#include "tmp-files-tar.h"
#include "tmp-files-tree.h"

struct stat;
struct TmpFileEntry;
struct tmp_files_precopy;
struct tmp_files_watch;

/* In this order, from before the freeze to the end of the frozen pass */
extern struct tmp_files_precopy *tmp_files_precopy_walk(const struct tmp_files_set *set, pid_t root_pid,
							int names_fd);
extern int tmp_files_precopy_done(struct tmp_files_precopy *pc, int fd);
/* While frozen: st is a file the tree maps shared (from CRIU's VMA collection) */
extern int tmp_files_precopy_map_shared(struct tmp_files_precopy *pc, const struct stat *st);
extern int tmp_files_precopy_freeze(struct tmp_files_precopy *pc);
/* The change record drained at the freeze, if it can be used; else NULL */
extern struct tmp_files_watch *tmp_files_precopy_watch(struct tmp_files_precopy *pc);
extern const char *tmp_files_precopy_changed(struct tmp_files_precopy *pc, const char *path, const struct stat *st,
					     uint64_t *sum, struct TmpFileEntry *e);
extern int tmp_files_precopy_compact(struct tmp_files_precopy *pc);
extern int tmp_files_precopy_end(struct tmp_files_precopy *pc, bool appended);
extern void tmp_files_precopy_free(struct tmp_files_precopy *pc);

#endif /* __CR_TMP_FILES_PRECOPY_H__ */
