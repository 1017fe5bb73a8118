/*
 * libFuzzer: the manifest image as restore reads it, before anything is
 * extracted: protobuf-c's unpack of tmp-files-manifest.img, the
 * compression name, tmp_files_check_manifest() (tmp-files-manifest.c),
 * then the lookups restore makes in the checked manifest
 * (tmp_files_sum_staged() for each member tar names) and the check of an
 * (empty) extracted tree against it (tmp_files_check_staged()). The
 * images are whoever wrote them.
 *
 * A manifest that passes must be what the check promises: saved paths
 * normalised, sorted, none inside another, each with an entry, and
 * entries sorted by path, none twice.
 */
#include <stdlib.h>

#include "tmp-files.c"

static int stage_fd = -1;
static char stage[] = "/tmp/fuzz-manifest.XXXXXX";

static void remove_stage(void)
{
	rmdir(stage);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* An empty staging directory, left empty */
	if (!mkdtemp(stage) || atexit(remove_stage))
		abort();
	stage_fd = open(stage, O_PATH | O_DIRECTORY);
	if (stage_fd < 0)
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
	for (i = 1; i < me->n_entries; i++)
		if (strcmp(me->entries[i - 1]->path, me->entries[i]->path) >= 0)
			abort();
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
	if ((me->compression && compressor_index(me->compression) < 0) || tmp_files_check_manifest(me))
		goto out;
	check_promises(me);
	sums = xzalloc(me->n_entries * sizeof(*sums) + 1);
	for (i = 0; i < me->n_entries; i++) {
		/* Named once: found; twice: refused */
		if (tmp_files_sum_staged(stage_fd, me, sums, me->entries[i]->path) ||
		    !tmp_files_sum_staged(stage_fd, me, sums, me->entries[i]->path))
			abort();
	}
	for (i = 0; i < me->n_paths; i++)
		tmp_files_sum_staged(stage_fd, me, sums, me->paths[i]);
	/* Nothing extracted: only a manifest without entries matches */
	if (!tmp_files_check_staged(stage, me, sums) != !me->n_entries)
		abort();
	xfree(sums);
out:
	tmp_files_manifest_entry__free_unpacked(me, NULL);
	return 0;
}
