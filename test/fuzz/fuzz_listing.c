/*
 * libFuzzer: what restore reads from tar's stdout, in tmp-files.c.
 * listing_line() gets each line of "tar --list --verbose
 * --quoting-style=escape" (the bound on what extraction may write),
 * extraction_line() each of "tar --extract --verbose" (the member names,
 * unescaped by tar_unescape(), looked up in the manifest). The archive,
 * and so tar's output, is what whoever edits the images wrote.
 *
 * The input is tar's output, lines split at '\n' as tar_lines() does.
 * Also checked: tar_unescape() gives back the bytes of any name quoted
 * the way tar quotes it, and never writes past its buffer.
 */
#include <stdlib.h>

#include "tmp-files.c"

/* The manifest of the tree make-seeds.sh archives, sorted by path */
static const struct {
	const char *path;
	TmpFileEntry__Kind type;
	uint64_t size;
} manifest[] = {
	{ "/f", TMP_FILE_ENTRY__KIND__DIR },	     { "/f/a", TMP_FILE_ENTRY__KIND__REG, 6 },
	{ "/f/d", TMP_FILE_ENTRY__KIND__DIR },	     { "/f/d/x", TMP_FILE_ENTRY__KIND__REG, 0 },
	{ "/f/h", TMP_FILE_ENTRY__KIND__HARDLINK }, { "/f/l", TMP_FILE_ENTRY__KIND__SYMLINK },
	{ "/f/new\nline", TMP_FILE_ENTRY__KIND__REG, 6 }, { "/f/p", TMP_FILE_ENTRY__KIND__FIFO },
	{ "/f/s", TMP_FILE_ENTRY__KIND__REG, 1 << 20 },
};
#define NR (sizeof(manifest) / sizeof(manifest[0]))

static TmpFilesManifestEntry me = TMP_FILES_MANIFEST_ENTRY__INIT;
static TmpFileEntry entries[NR], *entry_ptrs[NR];
static int stage_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/fuzz-listing.XXXXXX";
	size_t i;

	/* An empty staging directory: the checksums find nothing to read */
	if (!mkdtemp(dir))
		abort();
	stage_fd = open(dir, O_PATH | O_DIRECTORY);
	if (stage_fd < 0 || rmdir(dir))
		abort();
	for (i = 0; i < NR; i++) {
		tmp_file_entry__init(&entries[i]);
		entries[i].path = (char *)manifest[i].path;
		entries[i].type = manifest[i].type;
		entries[i].has_size = manifest[i].type == TMP_FILE_ENTRY__KIND__REG;
		entries[i].size = manifest[i].size;
		entries[i].has_content_xxh64 = entries[i].has_size;
		entry_ptrs[i] = &entries[i];
	}
	me.n_entries = NR;
	me.entries = entry_ptrs;
	return 0;
}

/* As tar --quoting-style=escape prints a name */
static char *tar_escape(const char *s)
{
	static const char letters[] = "\aa\bb\ff\nn\rr\tt\vv\\\\";
	char *out = malloc(4 * strlen(s) + 1), *o = out;

	for (; *s; s++) {
		const char *l = strchr(letters, *s);
		unsigned char c = *s;

		if (l && (l - letters) % 2 == 0) {
			*o++ = '\\';
			*o++ = l[1];
		} else if (c < 0x20 || c >= 0x7f) {
			o += sprintf(o, "\\%03o", c);
		} else {
			*o++ = c;
		}
	}
	*o = '\0';
	return out;
}

static void check_unescape(const char *line)
{
	size_t len = strlen(line);
	char *esc = tar_escape(line), *back = malloc(len + 1), *small;

	/* Exactly the room it needs: must succeed, and give the bytes back */
	if (tar_unescape(esc, back, len + 1) || strcmp(back, line))
		abort();
	/* One byte less: must refuse, not overflow */
	small = malloc(len ?: 1);
	if (len && !tar_unescape(esc, small, len))
		abort();
	free(small);
	free(back);
	free(esc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct listing l = { .me = &me };
	struct extraction x = { .stage_fd = stage_fd, .me = &me };
	struct tmp_files_sum sums[NR] = {};
	bool listing_stopped = false;
	const uint8_t *p = data, *end = data + size;
	size_t i;

	for (i = 0; i < NR; i++)
		if (entries[i].type == TMP_FILE_ENTRY__KIND__REG)
			l.want_bytes += entries[i].size;
	x.sums = sums;

	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', end - p);
		size_t len = nl ? nl - p : end - p;
		char *line = malloc(len + 1), *out;

		/* As getline() leaves it, its '\n' cut */
		memcpy(line, p, len);
		line[len] = '\0';
		p += len + 1;

		if (!listing_stopped) {
			unsigned long long bytes = l.bytes;

			listing_stopped = listing_line(&l, line);
			/* What it let through is within the manifest's bound, and the count only grows */
			if (l.bytes < bytes || (!listing_stopped && (l.bytes > l.want_bytes || l.members > NR)))
				abort();
		}
		extraction_line(&x, line);

		/* With room for any name, or barely any */
		out = malloc(PATH_MAX);
		tar_unescape(line, out, PATH_MAX);
		free(out);
		out = malloc(4);
		tar_unescape(line, out, 4);
		free(out);
		check_unescape(line);
		free(line);
	}
	sum_done(&x);
	return 0;
}
