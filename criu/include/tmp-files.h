#ifndef __CR_TMP_FILES_H__
#define __CR_TMP_FILES_H__

/*
 * --tmp-file: what CRIU's own files call (config.c, cr-service.c,
 * cr-dump.c, files-reg.c, cr-restore.c). The modules behind it, bottom
 * first, each calling only those before it (scripts/check-layers.sh):
 *   tmp-files-tree.c      paths, their order, the walk, openat2(), excludes
 *   tmp-files-hash.c      content and xattr checksums
 *   tmp-files-tar.c       GNU tar: command lines, runs, header parsers,
 *                         listing, the checked stream at restore
 *   tmp-files.c           the options, compressors, tar and compressor checks
 *   tmp-files-manifest.c  the manifest: made at dump, checked at restore
 *   tmp-files-stage.c     restore: the staging directory
 *   tmp-files-place.c     restore: placement, rollback, what is in place
 *   tmp-files-auto.c      --tmp-file-auto
 *   tmp-files-precopy.c   --tmp-file-precopy
 *   tmp-files-dump.c      the dump flow (cr-dump.c's hooks)
 *   tmp-files-restore.c   the restore flow (cr-restore.c's hooks)
 * Each has its own header, criu/include/tmp-files-<module>.h (tmp-files.c:
 * tmp-files-options.h).
 */
#include <stdbool.h>
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
/* While frozen, from dump_filemap(): a file the tree maps MAP_SHARED (st: of the mapped file) */
extern int tmp_files_map_shared(const struct stat *st);
extern int dump_tmp_files(void);
extern void tmp_files_compress_after_dump(void);

/* Restore: put the saved files back before any task opens a file */
extern int restore_tmp_files(void);
extern int restore_tmp_files_in_ns(void);

#endif /* __CR_TMP_FILES_H__ */
