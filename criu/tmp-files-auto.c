/*
 * --tmp-file-auto: the regular files on a tmpfs that the dumped tree has
 * open or mapped, found while CRIU dumps its files (files-reg.c), saved
 * with the --tmp-file paths, up to --tmp-file-limit.
 */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/list.h"
#include "cr_options.h"
#include "filesystems.h"
#include "log.h"
#include "mount.h"
#include "namespaces.h"
#include "tmp-files.h"
#include "tmp-files-auto.h"
#include "util.h"
#include "xmalloc.h"

#include "images/mnt.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

struct auto_file {
	struct list_head list;
	char *path;
	off_t size;
};

/* The paths the dump saves (set by tmp_files_auto_start()), and the files found */
static const struct tmp_files_set *dump_set;
static LIST_HEAD(auto_files);
static size_t nr_auto_files;
static size_t auto_files_size;

void tmp_files_auto_start(const struct tmp_files_set *s)
{
	dump_set = s;
}

/*
 * Called for every regular file the tree has open or mapped. A file on a
 * tmpfs is lost at reboot, unless CRIU saves the tmpfs itself (it does for
 * the mounts of a dumped mount namespace). Unlinked files are ghost files.
 */
int tmp_files_auto_add(struct mount_info *mi, const char *path, const struct stat *st)
{
	struct auto_file *af;
	char full[PATH_MAX];
	struct stat now;

	if (!dump_set || !opts.tmp_files_auto || !S_ISREG(st->st_mode) || st->st_nlink == 0)
		return 0;
	if (mi->fstype->code != FSTYPE__TMPFS || (root_ns_mask & CLONE_NEWNS))
		return 0;
	if (tmp_files_in_paths(dump_set->paths, dump_set->nr, path))
		return 0;
	list_for_each_entry(af, &auto_files, list)
		if (!strcmp(af->path, path))
			return 0;

	/* The path must still lead to this very file */
	snprintf(full, sizeof(full), "%s%s", dump_set->proc_root, path);
	if (stat(full, &now) || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		pr_info("--tmp-file-auto: %s is no longer at its path, not saved\n", path);
		return 0;
	}

	af = xzalloc(sizeof(*af));
	if (!af)
		return -1;
	af->path = xstrdup(path);
	if (!af->path) {
		xfree(af);
		return -1;
	}
	list_add_tail(&af->list, &auto_files);
	af->size = st->st_size;
	nr_auto_files++;
	auto_files_size += st->st_size;
	pr_info("--tmp-file-auto: saving %s (%lld bytes): in use by the tree, on the tmpfs at %s\n", path,
		(long long)st->st_size, mi->ns_mountpoint);
	return 0;
}

/* Largest first */
static int auto_file_size_cmp(const void *a, const void *b)
{
	const struct auto_file *x = *(const struct auto_file **)a, *y = *(const struct auto_file **)b;

	if (x->size == y->size)
		return 0;
	return x->size < y->size ? 1 : -1;
}

static void report_largest_auto_files(void)
{
	struct auto_file **all, *af;
	size_t i = 0;

	pr_err("--tmp-file-auto: the files to save take %zu bytes, over --tmp-file-limit %zu\n", auto_files_size,
	       opts.tmp_files_limit);
	all = xmalloc(nr_auto_files * sizeof(*all));
	if (all) {
		list_for_each_entry(af, &auto_files, list)
			all[i++] = af;
		qsort(all, nr_auto_files, sizeof(*all), auto_file_size_cmp);
		for (i = 0; i < nr_auto_files && i < 5; i++)
			pr_err("    %s: %lld bytes\n", all[i]->path, (long long)all[i]->size);
		xfree(all);
	}
	pr_err("Raise --tmp-file-limit, or name the files to save with --tmp-file\n");
}

int tmp_files_auto_collect(struct tmp_files_set *set, int names_fd)
{
	struct auto_file *af;

	/* Said at the default log level: runc users see what auto mode did */
	if (!opts.tmp_files_auto)
		return 0;
	if (root_ns_mask & CLONE_NEWNS) {
		pr_warn("--tmp-file-auto: the tree's mount namespace is dumped, and CRIU saves its tmpfs content itself: nothing to add\n");
		return 0;
	}
	if (!nr_auto_files) {
		pr_warn("--tmp-file-auto: no regular file of the tree is open or mapped on a tmpfs: nothing to add\n");
		return 0;
	}
	pr_warn("--tmp-file-auto: saving %zu file(s) of the tree on tmpfs, %zu bytes\n", nr_auto_files, auto_files_size);
	if (auto_files_size > opts.tmp_files_limit) {
		report_largest_auto_files();
		return -1;
	}
	if (xrealloc_safe(&set->paths, (set->nr + nr_auto_files) * sizeof(*set->paths)))
		return -1;
	list_for_each_entry(af, &auto_files, list) {
		if (write_all(names_fd, af->path + 1, strlen(af->path)) != strlen(af->path)) {
			pr_perror("Can't write the --tmp-file list");
			return -1;
		}
		set->paths[set->nr++] = af->path;
	}
	return 0;
}
