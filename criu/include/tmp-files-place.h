#ifndef __CR_TMP_FILES_PLACE_H__
#define __CR_TMP_FILES_PLACE_H__

/*
 * --tmp-file, restore (tmp-files-place.c): what is in place already, and
 * the placement of the staged entries. Calls tree, hash and stage.
 */
#include <stdbool.h>

#include "tmp-files-hash.h"
#include "tmp-files-stage.h"
#include "tmp-files-tree.h"

struct TmpFilesManifestEntry;

/* Before extracting: every saved entry is in place already, as saved */
extern bool tmp_files_all_in_place(int root_fd, struct TmpFilesManifestEntry *me);
/* me->entries sorted by path: tmp_files_check_staged() did it */
extern int tmp_files_place(int root_fd, int stage_fd, struct TmpFilesManifestEntry *me);

#endif /* __CR_TMP_FILES_PLACE_H__ */
