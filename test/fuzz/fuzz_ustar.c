/*
 * libFuzzer: the pre-copy's reading of its own archive, in
 * tmp-files-precopy.c: read_members() (tmp_files_tar_list() of
 * tmp-files-tar.c: ustar headers, pax headers, the names and link names
 * of the members), check_members() (the checksum of
 * each regular member's data at the offsets read_members() found) and
 * tmp_files_precopy_compact()/_end() (moving the kept members down).
 *
 * The archive is tar's, written from names the running tree controls, so
 * its headers are not trusted. The walk that the members must match is a
 * fixed tree under /f (the one make-seeds.sh archives for the seeds).
 * The last byte of the input picks the members kept.
 */
#include <sys/mman.h>

#include "tmp-files-precopy.c"

/* 120 n: a pax "path" record */
#define LONG_NAME "/f/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
/* 90 q, then 30 r: ustar's prefix field */
#define PREFIX_DIR  "/f/qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
#define SPARSE_SIZE (1 << 20)

/* The walked tree: must match make-seeds.sh */
static const struct walked {
	const char *path;
	mode_t mode;
	ino_t ino;
	const char *content; /* of a regular file; NULL: the sparse one */
} walked[] = {
	{ "/f", S_IFDIR | 0755, 1 },
	{ "/f/a", S_IFREG | 0644, 2, "hello\n" },
	{ "/f/d", S_IFDIR | 0755, 3 },
	{ "/f/d/x", S_IFREG | 0600, 4, "" },
	{ "/f/h", S_IFREG | 0644, 2, "hello\n" }, /* a hard link to /f/a */
	{ "/f/l", S_IFLNK | 0777, 5 },
	{ "/f/p", S_IFIFO | 0644, 6 },
	{ "/f/s", S_IFREG | 0644, 7, NULL },
	{ LONG_NAME, S_IFREG | 0644, 8, "hello\n" },
	{ PREFIX_DIR, S_IFDIR | 0755, 9 },
	{ PREFIX_DIR "/rrrrrrrrrrrrrrrrrrrrrrrrrrrrrr", S_IFREG | 0644, 10, "hello\n" },
};
#define NR_WALKED (sizeof(walked) / sizeof(walked[0]))

static int archive_fd = -1;
static struct precopy_sum sums[NR_WALKED];
static uint64_t walked_sum[NR_WALKED];

static uint64_t sum_of(const char *content)
{
	int fd = memfd_create("sum", 0);
	off_t size = content ? strlen(content) : SPARSE_SIZE;
	uint64_t sum;

	if (fd < 0 || (content ? pwrite(fd, content, size, 0) != size : pwrite(fd, "x", 1, size - 1) != 1) ||
	    tmp_files_content_sum(fd, size, &sum))
		abort();
	close(fd);
	return sum;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t i;

	archive_fd = memfd_create("archive", 0);
	if (archive_fd < 0)
		abort();
	for (i = 0; i < NR_WALKED; i++)
		if (S_ISREG(walked[i].mode))
			walked_sum[i] = sum_of(walked[i].content);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tmp_files_precopy *pc;
	size_t i;

	if (ftruncate(archive_fd, 0) || pwrite(archive_fd, data, size, 0) != size)
		abort();

	pc = xzalloc(sizeof(*pc));
	pc->fd = archive_fd;
	pc->sums_pid = -1;
	pc->files = xzalloc(NR_WALKED * sizeof(*pc->files));
	for (i = 0; i < NR_WALKED; i++) {
		struct precopied *f = &pc->files[i];

		tmp_file_entry__init(&f->xattrs);
		f->path = xstrdup(walked[i].path);
		f->st.st_mode = walked[i].mode;
		f->st.st_ino = walked[i].ino;
		f->st.st_dev = 1;
		if (S_ISREG(walked[i].mode))
			f->st.st_size = walked[i].content ? strlen(walked[i].content) : SPARSE_SIZE;
	}
	pc->nr = pc->size = NR_WALKED;
	qsort(pc->files, pc->nr, sizeof(*pc->files), file_cmp);
	/* As the checksum child left them, in the sorted order */
	for (i = 0; i < NR_WALKED; i++) {
		size_t j;

		for (j = 0; strcmp(walked[j].path, pc->files[i].path); j++)
			;
		sums[i].ok = S_ISREG(walked[j].mode);
		sums[i].sum = walked_sum[j];
	}
	pc->sums = sums;

	if (!read_members(pc) && !check_members(pc)) {
		unsigned char keep = size ? data[size - 1] : 0;

		for (i = 0; i < pc->nr_members; i++) {
			struct precopied *f = pc->members[i];

			/* Members are one after the other, inside the archive */
			if (f->start > f->end || f->end > (off_t)size || (i && pc->members[i - 1]->end != f->start))
				abort();
			f->kept = !(keep & (1 << (i % 8)));
		}
		if (!tmp_files_precopy_compact(pc))
			tmp_files_precopy_end(pc, false);
	}
	pc->sums = NULL; /* not mmap()ed here */
	tmp_files_precopy_free(pc);
	return 0;
}
