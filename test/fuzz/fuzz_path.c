/*
 * libFuzzer: the path rules of tmp-files-tree.c. tmp_files_normalise_path()
 * (paths from the command line, RPC and config files at dump, from the
 * manifest at restore), tmp_files_path_cmp() and the sorted-set lookups
 * tmp_files_paths_lower_bound() and tmp_files_in_paths() that decide
 * whether a member belongs to a saved path.
 *
 * The input is paths separated by '\n'. Checked: the output fits in the
 * input's length (the documented contract: callers allocate that), is
 * normalised and stable, ".." is refused; the comparison is a strict
 * order; in_paths() agrees with a linear scan.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmp-files-tree.h"

#define MAX_PATHS 32

static bool has_dotdot(const char *p)
{
	while (*p) {
		size_t len;

		while (*p == '/')
			p++;
		len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += len;
	}
	return false;
}

static bool is_normal(const char *p)
{
	if (!*p)
		return true;
	if (*p != '/' || p[strlen(p) - 1] == '/' || strstr(p, "//") || strstr(p, "/./") || has_dotdot(p))
		return false;
	return strlen(p) < 2 || strcmp(p + strlen(p) - 2, "/.");
}

/* path is p, or inside p */
static bool under(const char *path, const char *p)
{
	size_t n = strlen(p);

	return !strncmp(path, p, n) && (path[n] == '\0' || path[n] == '/');
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

static void check_set(char **in, size_t nr_in)
{
	char *set[MAX_PATHS], *probe;
	size_t nr = 0, i, j;

	/* As dump keeps them: sorted, each once, none inside another */
	qsort(in, nr_in, sizeof(*in), tmp_files_path_cmp);
	for (i = 0; i < nr_in; i++) {
		for (j = 0; j < nr && !under(in[i], set[j]); j++)
			;
		if (j == nr)
			set[nr++] = in[i];
	}
	for (i = 0; i < nr; i++)
		for (j = 0; j < nr; j++) {
			int c = tmp_files_path_cmp(&set[i], &set[j]);

			if (sign(c) != -sign(tmp_files_path_cmp(&set[j], &set[i])) || (i < j && c >= 0))
				abort();
		}
	for (i = 0; i < nr_in; i++) {
		const char *probes[3] = { in[i] };
		char *child = malloc(strlen(in[i]) + 3), *parent = strdup(in[i]);
		size_t k;

		sprintf(child, "%s/x", in[i]);
		probes[1] = child;
		if (strrchr(parent, '/'))
			*strrchr(parent, '/') = '\0';
		probes[2] = parent;
		for (k = 0; k < 3; k++) {
			bool want = false;

			probe = (char *)probes[k];
			for (j = 0; j < nr; j++)
				want |= under(probe, set[j]);
			if (tmp_files_in_paths(set, nr, probe) != want)
				abort();
			j = tmp_files_paths_lower_bound(set, nr, probe);
			if (j > nr || (j < nr && tmp_files_path_cmp(&set[j], &probe) < 0) ||
			    (j > 0 && tmp_files_path_cmp(&set[j - 1], &probe) >= 0))
				abort();
		}
		free(child);
		free(parent);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *norm[MAX_PATHS];
	size_t nr = 0, i;
	const uint8_t *p = data, *end = data + size;

	while (p < end && nr < MAX_PATHS) {
		const uint8_t *nl = memchr(p, '\n', end - p);
		size_t len = nl ? nl - p : end - p;
		char *path = strndup((const char *)p, len), *out, *again;
		int ret;

		p += len + 1;
		len = strlen(path); /* up to a NUL in the input */
		out = malloc(len + 1);
		ret = tmp_files_normalise_path(path, out);
		if (ret != (has_dotdot(path) || *path != '/' ? -1 : 0))
			abort();
		if (!ret) {
			if (strlen(out) > len || !is_normal(out))
				abort();
			/* Stable ("" is "/": not a path to normalise again) */
			if (*out) {
				again = malloc(strlen(out) + 1);
				if (tmp_files_normalise_path(out, again) || strcmp(again, out))
					abort();
				free(again);
				norm[nr++] = strdup(out);
			}
		}
		free(out);
		free(path);
	}
	check_set(norm, nr);
	for (i = 0; i < nr; i++)
		free(norm[i]);
	return 0;
}
