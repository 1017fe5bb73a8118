#ifndef __CR_TMP_FILES_AUTO_H__
#define __CR_TMP_FILES_AUTO_H__

/*
 * --tmp-file-auto (tmp-files-auto.c): the files on tmpfs the tree uses.
 * Calls tree. tmp_files_auto_add() is in tmp-files.h (files-reg.c).
 */
#include "tmp-files-tree.h"

/* Before the freeze: the paths saved anyway, which the files found are checked against */
extern void tmp_files_auto_start(const struct tmp_files_set *set);
/* While frozen: the files found are added to set and listed into names_fd, within --tmp-file-limit */
extern int tmp_files_auto_collect(struct tmp_files_set *set, int names_fd);

#endif /* __CR_TMP_FILES_AUTO_H__ */
