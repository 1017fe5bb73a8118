/*
 * libFuzzer: restore's reading of the archive on its way to tar
 * (tmp_files_tar_stream() of tmp-files-tar.c): ustar and pax headers
 * parsed from a stream that arrives in pieces, each member checked
 * against the manifest (member_ok()/member_summed() of tmp-files-restore.c, so
 * tmp_files_check_member() and _sum() of tmp-files-manifest.c) before
 * any of it is handed on, regular members checksummed as they pass. The
 * archive is whoever wrote the images.
 *
 * The input's first byte picks the sizes of the reads (the stream comes
 * through a SOCK_SEQPACKET socket, one packet a read), the rest is the
 * archive. The manifest is that of the tree make-seeds.sh archives.
 * Checked: what passes through is exactly the input; a stream accepted
 * had every member in the manifest, once.
 *
 * With an odd first byte, the regular members criu writes itself (issue
 * 22) go to files of their own (memfds) instead: each is as long as its
 * member says when it is done, none is left open, and tar gets no more
 * than the rest of the input.
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include "tmp-files-restore.c"

#define LONG_NAME   "/f/" N120
#define N10	    "nnnnnnnnnn"
#define N120	    N10 N10 N10 N10 N10 N10 N10 N10 N10 N10 N10 N10
#define Q10	    "qqqqqqqqqq"
#define PREFIX_DIR  "/f/" Q10 Q10 Q10 Q10 Q10 Q10 Q10 Q10 Q10
#define R30	    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"
#define SPARSE_SIZE (1 << 20)

static const struct {
	const char *path;
	TmpFileEntry__Kind type;
	const char *content; /* of a regular file; NULL: the sparse one */
} tree[] = {
	{ "/f", TMP_FILE_ENTRY__KIND__DIR },
	{ "/f/a", TMP_FILE_ENTRY__KIND__REG, "hello\n" },
	{ "/f/d", TMP_FILE_ENTRY__KIND__DIR },
	{ "/f/d/x", TMP_FILE_ENTRY__KIND__REG, "" },
	{ "/f/h", TMP_FILE_ENTRY__KIND__HARDLINK },
	{ "/f/l", TMP_FILE_ENTRY__KIND__SYMLINK },
	{ "/f/p", TMP_FILE_ENTRY__KIND__FIFO },
	{ "/f/s", TMP_FILE_ENTRY__KIND__REG, NULL },
	{ LONG_NAME, TMP_FILE_ENTRY__KIND__REG, "hello\n" },
	{ PREFIX_DIR, TMP_FILE_ENTRY__KIND__DIR },
	{ PREFIX_DIR "/" R30, TMP_FILE_ENTRY__KIND__REG, "hello\n" },
};
#define NR (sizeof(tree) / sizeof(tree[0]))

static TmpFilesManifestEntry me = TMP_FILES_MANIFEST_ENTRY__INIT;
static TmpFileEntry entries[NR], *entry_ptrs[NR];
static char *paths[] = { "/f" };
static int out_fd = -1;
static char *out_buf;

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

	for (i = 0; i < NR; i++) {
		TmpFileEntry *e = &entries[i];

		tmp_file_entry__init(e);
		e->path = (char *)tree[i].path;
		e->type = tree[i].type;
		if (e->type == TMP_FILE_ENTRY__KIND__REG) {
			e->has_size = true;
			e->size = tree[i].content ? strlen(tree[i].content) : SPARSE_SIZE;
			e->has_content_xxh64 = true;
			e->content_xxh64 = sum_of(tree[i].content);
		}
		if (e->type == TMP_FILE_ENTRY__KIND__HARDLINK)
			e->target = "/f/a";
		entry_ptrs[i] = e;
	}
	me.n_paths = 1;
	me.paths = paths;
	me.n_entries = NR;
	me.entries = entry_ptrs;
	/* As restore does first: checks it and sorts the entries */
	if (tmp_files_check_manifest(&me))
		abort();
	out_fd = memfd_create("tar-stdin", 0);
	out_buf = malloc(65536);
	if (out_fd < 0 || !out_buf)
		abort();
	return 0;
}

static unsigned int files_open;
static int last_file = -1;

static int open_file(void *ctx, const struct tmp_files_tar_member *m, int *fd)
{
	*fd = memfd_create("member", MFD_CLOEXEC);
	if (*fd < 0)
		abort();
	files_open++;
	last_file = *fd;
	return 0;
}

static int file_done(void *ctx, const struct tmp_files_tar_member *m, int fd)
{
	struct stat st;

	if (fstat(fd, &st) || st.st_size != (off_t)m->size || m->sparse || m->other_records)
		abort();
	close(fd);
	files_open--;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tmp_files_sum sums[NR] = {};
	struct extraction x = { .me = &me, .sums = sums };
	struct tmp_files_tar_check check = { .ctx = &x, .member = member_ok, .summed = member_summed };
	size_t piece, i;
	int sk[2], sndbuf = 8 << 20, ret;
	off_t out;

	if (!size)
		return 0;
	if (data[0] & 1) {
		check.open_data = open_file;
		check.data_done = file_done;
	}
	/* 1 to 256 bytes a read, or (0) all at once */
	piece = data[0] ? data[0] : size;
	data++;
	size--;
	if (size > 65536 || size / piece > 1024)
		return 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sk))
		abort();
	setsockopt(sk[1], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)); /* as root; else smaller */
	for (i = 0; i < size; i += piece) {
		/* Never blocks: an input that does not fit is skipped */
		if (send(sk[1], data + i, min(piece, size - i), MSG_DONTWAIT) != min(piece, size - i)) {
			close(sk[0]);
			close(sk[1]);
			return 0;
		}
	}
	close(sk[1]);
	if (ftruncate(out_fd, 0) || lseek(out_fd, 0, SEEK_SET))
		abort();
	files_open = 0;
	ret = tmp_files_tar_stream(sk[0], out_fd, &check);
	close(sk[0]);
	/* Every file done; or, on an error, the one being written closed by the stream */
	if ((!ret && files_open) || files_open > 1 || (files_open && fcntl(last_file, F_GETFD) != -1))
		abort();
	if (check.open_data) {
		if (lseek(out_fd, 0, SEEK_CUR) > (off_t)size)
			abort();
		return 0;
	}
	/* tar got the archive as it is, or (refused) a part of it, never a member refused */
	out = lseek(out_fd, 0, SEEK_CUR);
	if (out > (off_t)size || (!ret && out != (off_t)size) || pread(out_fd, out_buf, out, 0) != out ||
	    memcmp(out_buf, data, out))
		abort();
	if (!ret) {
		/* Every member named was in the manifest, once (check_member() refuses twice) */
		for (i = 0; i < NR; i++)
			if (sums[i].streamed && !sums[i].named)
				abort();
	}
	return 0;
}
