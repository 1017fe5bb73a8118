#ifndef __CR_TMP_FILES_HASH_H__
#define __CR_TMP_FILES_HASH_H__

/*
 * --tmp-file (tmp-files-hash.c): content_xxh64 of images/tmp-file.proto
 * and the xattrs of an entry. Calls no other tmp-files module.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct stat;
struct TmpFileEntry;

extern uint64_t tmp_files_xxh64(const void *buf, size_t len, uint64_t seed);

/* From the bytes as they come */
struct tmp_files_sum_ctx {
	uint64_t acc;
	off_t off; /* of buf in the file */
	size_t fill;
	char *buf;
};
extern int tmp_files_sum_start(struct tmp_files_sum_ctx *c);
extern void tmp_files_sum_update(struct tmp_files_sum_ctx *c, const char *data, size_t len);
extern uint64_t tmp_files_sum_end(struct tmp_files_sum_ctx *c);

/* From fd */
extern int tmp_files_content_sum(int fd, off_t size, uint64_t *sum);
extern int tmp_files_content_sum_at(int fd, off_t base, off_t size, uint64_t *sum);
extern int tmp_files_next_data(int fd, off_t off, off_t *data, off_t *hole);
/* The regular file path in dfd, opened if it is still the inode of st */
extern int tmp_files_open_seen(int dfd, const char *path, const struct stat *st);

/*
 * The xattrs of the file fd is open at into e, sorted by name (O_PATH
 * will do: read through /proc/self/fd, which opens nothing); name is its
 * name in the log. Or compare those of path (no symlink followed at its
 * end) with e's.
 */
extern int tmp_files_get_xattrs_fd(int fd, const char *name, struct TmpFileEntry *e);
extern const char *tmp_files_xattrs_differ(const char *path, const struct TmpFileEntry *e);

#endif /* __CR_TMP_FILES_HASH_H__ */
