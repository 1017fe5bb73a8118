#ifndef __CR_TMP_FILES_H__
#define __CR_TMP_FILES_H__

#include <stdbool.h>
#include <sys/types.h>

#include "common/list.h"

struct mount_info;
struct stat;

/* --tmp-file-limit: total size of the files --tmp-file-auto may save */
#define DEFAULT_TMP_FILES_LIMIT (64 << 20)

/* One --tmp-file PATH; normalised by tmp_files_check_options() */
struct tmp_file {
	struct list_head list;
	char *path;
};

/* Options: recorded while parsing, checked once the log is set up */
extern int tmp_file_add(const char *path);
extern int tmp_files_check_options(void);

/* Dump: check paths and tar before freezing, archive while frozen */
extern int tmp_files_prepare_dump(pid_t root_pid);
extern int tmp_files_auto_add(struct mount_info *mi, const char *path, const struct stat *st);
extern int dump_tmp_files(void);
extern void tmp_files_compress_after_dump(void);

/* Restore: put the saved files back before any task opens a file */
extern int restore_tmp_files(void);
extern int restore_tmp_files_in_ns(void);

#endif /* __CR_TMP_FILES_H__ */
