#ifndef __CR_TMP_FILES_OPTIONS_H__
#define __CR_TMP_FILES_OPTIONS_H__

/*
 * --tmp-file (tmp-files.c): the options (tmp_file_add() and
 * tmp_files_check_options() are in tmp-files.h), the compressors, and
 * the check that tar and a compressor run. Calls tree.
 */
#include <stdbool.h>

#include "tmp-files-tree.h"

struct tmp_files_compressor {
	const char *name;
	char *argv[5];	/* compresses stdin to stdout; argv[0] must be in PATH */
	char *dargv[5]; /* decompresses */
};

/* --tmp-file-compress, gzip if not given; checked by tmp_files_check_options() */
extern const struct tmp_files_compressor *tmp_files_dump_compressor(void);
/* The compressor a manifest names (NULL: none), or NULL if there is no such one */
extern const struct tmp_files_compressor *tmp_files_compressor(const char *name);
/* GNU tar (at dump only) and the compressor c, at dump ("--tmp-file-compress") or restore */
extern int tmp_files_check_programs(const struct tmp_files_compressor *c, bool restore);
/* GNU tar, in PATH */
extern int tmp_files_check_tar(bool restore);

#endif /* __CR_TMP_FILES_OPTIONS_H__ */
