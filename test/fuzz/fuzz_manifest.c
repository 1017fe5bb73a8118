/*
 * libFuzzer: the manifest image as restore reads it, before anything is
 * extracted: protobuf-c's unpack of tmp-files-manifest.img, the
 * compression name, tmp_files_check_manifest() (tmp-files-manifest.c),
 * then tmp_files_check_member() as the archive's stream calls it for a
 * member named as each entry, and the check of an (empty) extracted
 * tree against the manifest (tmp_files_check_staged()). The images are
 * whoever wrote them.
 *
 * A manifest that passes must be what the check promises: saved paths
 * normalised, sorted, none inside another, each with an entry, and
 * entries normalised, inside the saved paths, sorted by path, none twice;
 * a member named as an entry is found, and refused the second time.
 */
#include <stdlib.h>

#include "tmp-files-restore.c"

static int stage_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char stage[] = "/tmp/fuzz-manifest.XXXXXX";

	/* An empty staging directory, left empty */
	if (!mkdtemp(stage))
		abort();
	stage_fd = open(stage, O_RDONLY | O_DIRECTORY);
	if (stage_fd < 0 || rmdir(stage))
		abort();
	return 0;
}
static void check_promises(TmpFilesManifestEntry *me)
{
	size_t i;

	for (i = 0; i < me->n_paths; i++) {
		char *p = me->paths[i], *norm = malloc(strlen(p) + 1);

		if (*p != '/' || tmp_files_normalise_path(p, norm) || strcmp(norm, p) || !*norm)
			abort();
		free(norm);
		if (i && (tmp_files_path_cmp(&me->paths[i - 1], &me->paths[i]) >= 0 ||
			  issubpath(me->paths[i], me->paths[i - 1])))
			abort();
	}
	for (i = 0; i < me->n_entries; i++) {
		char *p = me->entries[i]->path, *norm = malloc(strlen(p) + 1);

		if (*p != '/' || tmp_files_normalise_path(p, norm) || strcmp(norm, p) ||
		    !tmp_files_in_paths(me->paths, me->n_paths, p))
			abort();
		free(norm);
		if (i && strcmp(me->entries[i - 1]->path, p) >= 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	TmpFilesManifestEntry *me;
	struct tmp_files_sum *sums;
	size_t i;

	me = tmp_files_manifest_entry__unpack(NULL, size, data);
	if (!me)
		return 0;
	/* In restore_into()'s order */
	if (!tmp_files_compressor(me->compression) || tmp_files_check_manifest(me))
		goto out;
	check_promises(me);
	sums = xzalloc(me->n_entries * sizeof(*sums) + 1);
	for (i = 0; i < me->n_entries; i++) {
		static const char types[] = { [TMP_FILE_ENTRY__KIND__REG] = '0', [TMP_FILE_ENTRY__KIND__DIR] = '5', [TMP_FILE_ENTRY__KIND__SYMLINK] = '2', [TMP_FILE_ENTRY__KIND__HARDLINK] = '1', [TMP_FILE_ENTRY__KIND__FIFO] = '6' };
		TmpFileEntry *e = me->entries[i];
		struct tmp_files_tar_member m = {};
		size_t idx;

		/* The member tar would have for it (names relative to /) */
		snprintf(m.name, sizeof(m.name), "%s", e->path + 1);
		m.type = e->type < ARRAY_SIZE(types) && types[e->type] ? types[e->type] : 'V';
		m.size = e->type == TMP_FILE_ENTRY__KIND__REG ? e->size : 0;
		/* Found once, as the entry it is; refused the second time */
		if (!tmp_files_check_member(me, sums, &m, &idx) && (idx != i || !tmp_files_check_member(me, sums, &m, &idx)))
			abort();
		if (e->type == TMP_FILE_ENTRY__KIND__REG)
			tmp_files_check_member_sum(me, sums, i, 0);
	}
	/* Nothing extracted: only a manifest without entries matches */
	if (!tmp_files_check_staged(stage_fd, me, sums) != !me->n_entries)
		abort();
	xfree(sums);
out:
	tmp_files_manifest_entry__free_unpacked(me, NULL);
	return 0;
}
