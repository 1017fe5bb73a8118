/*
 * --tmp-file: save files that the dumped tree uses and that may be gone
 * at restore time (a /tmp wiped at boot, a host that never had them).
 *
 * This file has the options: the option parser (config.c, cr-service.c)
 * only records the values; tmp_files_check_options() checks them once
 * the log is set up. The compressors of --tmp-file-compress, and the
 * check that tar and the compressor can run.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "cr_options.h"
#include "log.h"
#include "tmp-files.h"
#include "tmp-files-options.h"
#include "util.h"
#include "xmalloc.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

/* --tmp-file-compress */
enum {
	TMP_FILES_GZIP, /* the default */
	TMP_FILES_ZSTD,
	TMP_FILES_NONE,
};

static const struct tmp_files_compressor compressors[] = {
	/* busybox gzip (Alpine) may have no long options */
	[TMP_FILES_GZIP] = { "gzip", { "gzip", "-c", NULL }, { "gzip", "-d", "-c", NULL } },
	[TMP_FILES_ZSTD] = { "zstd", { "zstd", "-T0", "--quiet", "--stdout", NULL }, { "zstd", "-d", "-c", "-q", NULL } },
	[TMP_FILES_NONE] = { "none", { NULL }, { NULL } },
};

static int compressor_index(const char *name)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(compressors); i++)
		if (!strcmp(name, compressors[i].name))
			return i;
	return -1;
}

/*
 * The option parser only records the values: over RPC, options are parsed
 * before the log is set up, and an error raised then would reach neither
 * the log file nor cr_errmsg. tmp_files_check_options() checks them, from
 * check_options(), once it is.
 */
/* A struct of size bytes that starts with a struct tmp_file for path, at the end of list */
static struct tmp_file *new_tmp_file(const char *path, size_t size, struct list_head *list)
{
	struct tmp_file *tf;

	tf = xzalloc(size);
	if (!tf)
		return NULL;
	tf->path = xstrdup(path);
	if (!tf->path) {
		xfree(tf);
		return NULL;
	}
	list_add_tail(&tf->list, list);
	return tf;
}

int tmp_file_add(const char *path, bool optional)
{
	struct tmp_file *tf = new_tmp_file(path, sizeof(struct tmp_file), &opts.tmp_files);

	if (tf)
		tf->optional = optional;
	return tf ? 0 : -1;
}

static const char *option_of(const struct tmp_file *tf)
{
	return tf->optional ? "--tmp-file-optional" : "--tmp-file";
}

/* Make tf->path absolute and normalised, in place (it can only shrink) */
static int check_path_option(struct tmp_file *tf)
{
	char *norm;

	if (!*tf->path) {
		pr_err("%s: the path is empty\n", option_of(tf));
		return -1;
	}
	if (*tf->path != '/') {
		pr_err("%s %s: the path must be absolute\n", option_of(tf), tf->path);
		return -1;
	}
	norm = xmalloc(strlen(tf->path) + 1);
	if (!norm)
		return -1;
	if (tmp_files_normalise_path(tf->path, norm)) {
		pr_err("%s %s: \"..\" is not allowed in the path\n", option_of(tf), tf->path);
		goto err;
	}
	if (!*norm) {
		pr_err("%s %s: refusing to save the whole root\n", option_of(tf), tf->path);
		goto err;
	}
	xfree(tf->path);
	tf->path = norm;
	return 0;
err:
	xfree(norm);
	return -1;
}

/* A size as --ghost-limit takes it (64M), but anything else is an error */
static int parse_limit(const char *arg, size_t *size)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	/* Digits only: strtoull() would take " 12", "+12" and "-1" */
	if (*arg < '0' || *arg > '9')
		return -1;
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno)
		return -1;
	if (*end == 'K')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (*end || v > (SIZE_MAX >> shift))
		return -1;
	*size = (size_t)v << shift;
	return 0;
}

int tmp_files_check_options(void)
{
	struct tmp_file *tf;

	list_for_each_entry(tf, &opts.tmp_files, list)
		if (check_path_option(tf))
			return -1;

	if (opts.tmp_files_compress && compressor_index(opts.tmp_files_compress) < 0) {
		pr_err("--tmp-file-compress %s: must be gzip, zstd or none\n", opts.tmp_files_compress);
		return -1;
	}

	if (opts.tmp_files_limit_arg && parse_limit(opts.tmp_files_limit_arg, &opts.tmp_files_limit)) {
		pr_err("--tmp-file-limit %s: not a size (a number of bytes, or with K, M or G)\n",
		       opts.tmp_files_limit_arg);
		return -1;
	}
	return 0;
}

const struct tmp_files_compressor *tmp_files_dump_compressor(void)
{
	if (!opts.tmp_files_compress)
		return &compressors[TMP_FILES_GZIP];
	return &compressors[compressor_index(opts.tmp_files_compress)];
}

const struct tmp_files_compressor *tmp_files_compressor(const char *name)
{
	int i = name ? compressor_index(name) : TMP_FILES_NONE;

	return i < 0 ? NULL : &compressors[i];
}

/*
 * Run argv with nothing on stdin; its output goes into buf (if given).
 * A compressor is checked by compressing nothing, as the dump runs it:
 * busybox's gzip (Alpine's) has no --version.
 */
static int run_probe(char *const argv[], char *buf, size_t size)
{
	int in, fd, ret = -1;

	in = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		pr_perror("Can't open /dev/null");
		return -1;
	}
	fd = memfd_create("criu-probe", MFD_CLOEXEC);
	if (fd < 0) {
		pr_perror("Can't create a memfd");
		goto out;
	}
	ret = cr_system(in, fd, -1, argv[0], argv, CRS_CAN_FAIL);
	if (!ret && buf && pread(fd, buf, size - 1, 0) < 0)
		ret = -1;
	close(fd);
out:
	close(in);
	return ret;
}

int tmp_files_check_tar(bool restore)
{
	const char *who = restore ? "Restoring the --tmp-file archive" : "--tmp-file";
	char buf[128] = {};

	if (run_probe((char *[]){ "tar", "--version", NULL }, buf, sizeof(buf))) {
		pr_err("%s needs GNU tar, but \"tar --version\" failed (is tar in PATH?)\n", who);
		return -1;
	}
	if (!strstr(buf, "GNU tar")) {
		pr_err("%s needs GNU tar, but tar in PATH is not GNU tar\n", who);
		return -1;
	}
	return 0;
}

int tmp_files_check_programs(const struct tmp_files_compressor *c, bool restore)
{
	const char *who = restore ? "Restoring the --tmp-file archive" : "--tmp-file-compress";

	/* A restore runs tar only for a member criu does not write itself: it checks tar then */
	if (!restore && tmp_files_check_tar(false))
		return -1;
	if (c->argv[0] && run_probe(c->argv, NULL, 0)) {
		pr_err("%s: %s compression needs %s, but \"%s\" failed to compress nothing (is it in PATH?)\n", who,
		       c->name, c->argv[0], c->argv[0]);
		return -1;
	}
	return 0;
}
