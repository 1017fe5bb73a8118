#ifndef __CR_TMP_FILES_TAR_H__
#define __CR_TMP_FILES_TAR_H__

/*
 * --tmp-file (tmp-files-tar.c): GNU tar, its command lines and runs, and
 * the archive it makes: the ustar and pax header parsers, the listing of
 * an archive in a file, and the checked stream to tar at restore. Calls
 * tree and hash.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "tmp-files-hash.h"
#include "tmp-files-tree.h"

#define TMP_FILES_TAR_BLOCK 512

/* ustar member types (POSIX typeflag) */
#define TMP_FILES_TAR_REG  '0'
#define TMP_FILES_TAR_LNK  '1'
#define TMP_FILES_TAR_SYM  '2'
#define TMP_FILES_TAR_DIR  '5'
#define TMP_FILES_TAR_FIFO '6'
#define TMP_FILES_TAR_PAX  'x'

/* A member of the archive, from its headers */
struct tmp_files_tar_member {
	char name[PATH_MAX]; /* as in the archive: "tmp/app/x", "tmp/app/" */
	char linkname[PATH_MAX];
	char type;			   /* ustar typeflag, '0' for a regular file */
	unsigned long long size;	   /* of its data in the archive */
	bool has_size;			   /* size came from a pax record */
	bool sparse;			   /* GNU tar's pax sparse format */
	unsigned long long realsize;	   /* of a sparse file */
	unsigned long long mode, uid, gid; /* as the ustar header says */
	struct timespec mtime;		   /* the header's, or a pax record's to the ns */
	bool has_mtime;			   /* mtime came from a pax record */
	struct timespec atime;		   /* a pax record's */
	bool has_atime;
	bool other_records; /* pax records besides path, linkpath, size and times (xattrs, ACLs) */
};

/*
 * A header block into m (on top of what a pax header put there): 0, 1 for
 * a zero block (the end of the archive), -1 if it is not a ustar header.
 */
extern int tmp_files_tar_header(const char *blk, struct tmp_files_tar_member *m);
/* The records of a pax extended header (buf not NUL-terminated) into m */
extern int tmp_files_tar_pax(const char *buf, size_t len, struct tmp_files_tar_member *m);

/* A member of an archive in a file, where tmp_files_tar_list() found it */
struct tmp_files_tar_entry {
	struct tmp_files_tar_member m;
	off_t start; /* of its first header (its pax header) */
	off_t data;  /* of its data */
	off_t end;   /* after its data, padded */
};
/*
 * Every member of the archive in fd, in order, up to its end blocks or
 * the end of the file: fn returns 0 to go on. Only regular members may
 * have data, all of it in the file.
 */
typedef int (*tmp_files_tar_list_fn)(void *ctx, const struct tmp_files_tar_entry *e);
extern int tmp_files_tar_list(int fd, tmp_files_tar_list_fn fn, void *ctx);

/* Restore: the archive from in to tar (out), each member checked before any of it is written */
struct tmp_files_tar_check {
	void *ctx;
	/* Before any of the member is handed on: 0 to go on */
	int (*member)(void *ctx, const struct tmp_files_tar_member *m);
	/* A regular member (not sparse) has passed: the checksum of its data */
	int (*summed)(void *ctx, const struct tmp_files_tar_member *m, uint64_t sum);
	/*
	 * Optional: a regular member that tar need not see (not sparse, no
	 * xattrs nor ACLs), checked by member(): 0 with *fd a file criu
	 * writes its data into, or with *fd -1 to hand the member to tar.
	 */
	int (*open_data)(void *ctx, const struct tmp_files_tar_member *m, int *fd);
	/* Its data is written: owner, mode and times set, fd closed (also on error) */
	int (*data_done)(void *ctx, const struct tmp_files_tar_member *m, int fd);
	/* Optional: a directory member with no xattrs nor ACLs, checked: 0 if made, tar is not handed it */
	int (*make_dir)(void *ctx, const struct tmp_files_tar_member *m);
	/* Optional, with out -1: tar's stdin, started when a member needs tar (the end of the archive does not) */
	int (*start_tar)(void *ctx);
};
extern int tmp_files_tar_stream(int in, int out, const struct tmp_files_tar_check *check);

/*
 * tar --create of the names read from stdin, as set sees them. listed:
 * the names are every entry to archive, not paths to archive recursively;
 * frozen: the tree is frozen (not the pre-copy). xfree() the array only.
 */
extern char **tmp_files_tar_create_argv(const struct tmp_files_set *set, bool listed, bool frozen);
/* tar --extract of stdin into the working directory */
extern char *const *tmp_files_tar_extract_argv(void);

/*
 * Run argv with in as stdin, out as stdout (-1: the log), the log as
 * stderr and, if cwd_fd is not -1, that directory as its working
 * directory. SIGCHLD must be blocked by the caller.
 */
extern pid_t tmp_files_spawn(char *const argv[], int in, int out, int cwd_fd);
/* 0 if pid exited 0; killed first if kill_it */
extern int tmp_files_reap(pid_t pid, const char *what, bool kill_it);

#endif /* __CR_TMP_FILES_TAR_H__ */
