/*
 * libFuzzer: the reader of the records of a pax extended header
 * ("%d %s=%s\n"), tmp_files_tar_pax() of tmp-files-tar.c (the pre-copy
 * reads back the archive tar wrote by names the running tree controls,
 * restore reads the archive of the images); and tmp_files_tar_header()
 * on the input's first 512 bytes.
 *
 * The buffer is exactly the record bytes, not NUL-terminated, as it is
 * read from the archive, and ends where an unreadable page starts: a
 * read past it (by libc's strto*(), which ASan does not see) is a
 * crash. What the parser returns must end inside its fixed buffers.
 */
#include <sys/mman.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmp-files-tar.h"

#define MAX_SIZE (1 << 20) /* tmp_files_tar_list() reads no bigger header */

static char *area;
static size_t area_size;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	long page = sysconf(_SC_PAGESIZE);

	area_size = MAX_SIZE;
	area = mmap(NULL, area_size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || mprotect(area + area_size, page, PROT_NONE))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf;

	if (size > MAX_SIZE)
		return 0;
	buf = area + area_size - size; /* right before the guard page */
	memcpy(buf, data, size);
	/* tmp-files-tar.c writes into fixed buffers: the strings must end in them */
	{
		struct tmp_files_tar_member m = {};

		if (!tmp_files_tar_pax(buf, size, &m) &&
		    (strnlen(m.name, sizeof(m.name)) == sizeof(m.name) ||
		     strnlen(m.linkname, sizeof(m.linkname)) == sizeof(m.linkname)))
			abort();
		if (size >= 512) {
			char blk[512];

			memcpy(blk, data, sizeof(blk));
			if (!tmp_files_tar_header(blk, &m) && (strnlen(m.name, sizeof(m.name)) == sizeof(m.name) ||
							       strnlen(m.linkname, sizeof(m.linkname)) == sizeof(m.linkname)))
				abort();
		}
	}
	return 0;
}
