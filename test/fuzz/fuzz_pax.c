/*
 * libFuzzer: the two readers of the records of a pax extended header
 * ("%d %s=%s\n"): parse_pax() of tmp-files-precopy.c (the pre-copy reads
 * back the archive tar wrote by names the running tree controls) and
 * tmp_files_tar_pax() of tmp-files-tar.c (restore reads the archive of
 * the images); and tmp_files_tar_header() on the input's first 512 bytes.
 *
 * The buffer is exactly the record bytes, not NUL-terminated, as it is
 * read from the archive, and ends where an unreadable page starts: a
 * read past it (by libc's strto*(), which ASan does not see) is a
 * crash. What the
 * parser returns must point inside the buffer, at NUL-terminated values.
 */
#include <sys/mman.h>

#include "tmp-files-precopy.c"

#define MAX_SIZE (1 << 20) /* read_members() reads no bigger header */

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

static void inside(const char *buf, size_t size, const char *val)
{
	if (!val)
		return;
	if (val < buf || val >= buf + size || !memchr(val, '\0', buf + size - val))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pax pax = {};
	char *buf;

	if (size > MAX_SIZE)
		return 0;
	buf = area + area_size - size; /* right before the guard page */
	memcpy(buf, data, size);
	if (!parse_pax(buf, size, &pax)) {
		inside(buf, size, pax.path);
		inside(buf, size, pax.linkpath);
		inside(buf, size, pax.sparse_name);
	}
	/* tmp-files-tar.c writes into fixed buffers: the strings must end in them */
	{
		struct tmp_files_tar_member m = {};

		memcpy(buf, data, size); /* parse_pax() wrote into it */
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
