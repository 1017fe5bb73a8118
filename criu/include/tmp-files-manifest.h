#ifndef __CR_TMP_FILES_MANIFEST_H__
#define __CR_TMP_FILES_MANIFEST_H__

/*
 * --tmp-file (tmp-files-manifest.c): the manifest image, made at dump,
 * checked at restore. Calls tree, hash and tar.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tmp-files-hash.h"
#include "tmp-files-tar.h"
#include "tmp-files-tree.h"

struct tmp_files_watch;

struct stat;
struct TmpFilesManifestEntry;
struct TmpFileEntry;

/*
 * With a pre-copy: NULL if its member of the entry st (e in the manifest)
 * is kept, sum its content checksum; else why not, and the entry is
 * listed for tar. tmp_files_precopy_changed(), by the caller.
 */
struct tmp_files_keep {
	const char *(*changed)(void *ctx, const char *path, const struct stat *st, uint64_t *sum,
			       struct TmpFileEntry *e);
	void *ctx;
	struct tmp_files_watch *watch; /* what changed since the pre-copy; NULL: walk it all */
};

/*
 * With keep, the entries whose members are not kept are listed into
 * names_fd, nr_delta of them, and are to be archived while the child
 * reads them. The child's pid; 0 if none was needed (keep and nr_delta
 * 0: the manifest is written), -1 on error.
 */
extern pid_t tmp_files_start_manifest(const struct tmp_files_set *set, const struct tmp_files_keep *keep,
				      int names_fd, size_t *nr_delta, int *tar_done);
extern int tmp_files_wait_manifest(pid_t pid);
/* The parent's copy of the walk, after tmp_files_wait_manifest() */
extern void tmp_files_free_manifest(void);
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

extern int tmp_files_check_member(struct TmpFilesManifestEntry *me, struct tmp_files_sum *sums,
				  const struct tmp_files_tar_member *m, size_t *idx);
extern int tmp_files_check_member_sum(struct TmpFilesManifestEntry *me, struct tmp_files_sum *sums, size_t idx,
				      uint64_t sum);
extern int tmp_files_check_staged(int stage_fd, struct TmpFilesManifestEntry *me,
				  const struct tmp_files_sum *sums);

#endif /* __CR_TMP_FILES_MANIFEST_H__ */
