/*
 * --tmp-file: GNU tar. Its command lines and runs, and the archives it
 * makes: the listing of one in a file (the pre-copy reads back its own),
 * and, at restore, the archive as a stream, read by criu between the
 * decompressor and tar.
 *
 * Every member header is parsed (a ustar header, with the pax extended
 * header before it) and handed to a check before any of it reaches tar:
 * a member the check refuses stops the restore before its data is
 * written anywhere. The data of a regular member is checksummed as it
 * passes (tmp_files_sum_update()), so that the extracted files need not
 * be read again, and the archive is decompressed once. A regular member
 * that is not sparse and has no xattrs nor ACLs is not handed to tar at
 * all: the check gives a file to write its data into (check->open_data()),
 * which saves tar's read and write of every byte.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "common/compiler.h"
#include "criu-log.h"
#include "log.h"
#include "tmp-files-tar.h"
#include "util.h"
#include "xmalloc.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#define BLOCK	    TMP_FILES_TAR_BLOCK
#define STREAM_READ (1 << 20)
#define PAX_MAX	    (1 << 20)

/* The fields of a ustar header block (POSIX.1-2001, pax) */
struct ustar {
	char name[100];
	char mode[8];
	char uid[8];
	char gid[8];
	char size[12];
	char mtime[12];
	char chksum[8];
	char typeflag;
	char linkname[100];
	char magic[6];
	char version[2];
	char uname[32];
	char gname[32];
	char devmajor[8];
	char devminor[8];
	char prefix[155];
	char pad[12];
};

/* An octal field (or GNU base-256), -1 if it is neither */
static long long number(const char *field, size_t len)
{
	unsigned long long v = 0;
	size_t i = 0;

	if ((unsigned char)field[0] == 0x80) {
		for (i = 1; i < len; i++) {
			if (v >> 55)
				return -1;
			v = v << 8 | (unsigned char)field[i];
		}
		return v;
	}
	while (i < len && field[i] == ' ')
		i++;
	for (; i < len && field[i] >= '0' && field[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v * 8 + (field[i] - '0');
	}
	for (; i < len; i++)
		if (field[i] != ' ' && field[i])
			return -1;
	return v;
}

/*
 * A header block into m (on top of what a pax header put there): 0, 1 for
 * a zero block (the end of the archive), -1 if it is not a ustar header.
 */
int tmp_files_tar_header(const char *blk, struct tmp_files_tar_member *m)
{
	const struct ustar *h = (const struct ustar *)blk;
	long long sum, size;
	unsigned int i, s = 0;

	BUILD_BUG_ON(sizeof(struct ustar) != BLOCK);
	for (i = 0; i < BLOCK; i++)
		s += (unsigned char)blk[i];
	if (!s)
		return 1;
	/* The checksum counts its own field as spaces */
	for (i = 0; i < sizeof(h->chksum); i++)
		s -= (unsigned char)h->chksum[i] - ' ';
	sum = number(h->chksum, sizeof(h->chksum));
	size = number(h->size, sizeof(h->size));
	if (memcmp(h->magic, "ustar", 5) || sum != s || size < 0)
		return -1;

	m->type = h->typeflag ?: '0';
	if (!m->has_size)
		m->size = size;
	m->mode = number(h->mode, sizeof(h->mode));
	m->uid = number(h->uid, sizeof(h->uid));
	m->gid = number(h->gid, sizeof(h->gid));
	if (!m->has_mtime) {
		m->mtime.tv_sec = number(h->mtime, sizeof(h->mtime));
		m->mtime.tv_nsec = 0;
	}
	if (!m->name[0]) {
		if (h->prefix[0])
			snprintf(m->name, sizeof(m->name), "%.*s/%.*s", (int)sizeof(h->prefix), h->prefix,
				 (int)sizeof(h->name), h->name);
		else
			snprintf(m->name, sizeof(m->name), "%.*s", (int)sizeof(h->name), h->name);
	}
	if (!m->linkname[0])
		snprintf(m->linkname, sizeof(m->linkname), "%.*s", (int)sizeof(h->linkname), h->linkname);
	return 0;
}

/* "SEC[.FRACTION]" of a pax time record, digits only */
static int pax_time(const char *val, size_t len, struct timespec *ts)
{
	const char *end = val + len;
	long long sec = 0;
	long nsec = 0;
	int digits = 0;

	if (val == end || *val < '0' || *val > '9')
		return -1;
	for (; val < end && *val >= '0' && *val <= '9'; val++) {
		if (sec > (LLONG_MAX - 9) / 10)
			return -1;
		sec = sec * 10 + (*val - '0');
	}
	if (val < end && *val == '.')
		for (val++; val < end && *val >= '0' && *val <= '9'; val++)
			if (digits++ < 9)
				nsec = nsec * 10 + (*val - '0');
	for (; digits < 9; digits++)
		nsec *= 10;
	ts->tv_sec = sec;
	ts->tv_nsec = nsec;
	return val == end ? 0 : -1;
}

/* A decimal value of a pax record, digits only */
static int pax_number(const char *val, size_t len, unsigned long long *v)
{
	size_t i;

	*v = 0;
	if (!len)
		return -1;
	for (i = 0; i < len; i++) {
		if (val[i] < '0' || val[i] > '9' || *v > (~0ULL - 9) / 10)
			return -1;
		*v = *v * 10 + (val[i] - '0');
	}
	return 0;
}

static int pax_string(char *dst, size_t size, const char *val, size_t len)
{
	if (len >= size || memchr(val, '\0', len))
		return -1;
	memcpy(dst, val, len);
	dst[len] = '\0';
	return 0;
}

/*
 * The records of a pax extended header ("LEN KEY=VALUE\n", buf not
 * NUL-terminated) that say what the next member is: path, linkpath,
 * size, and GNU tar's sparse file records. -1 if a record is malformed.
 */
int tmp_files_tar_pax(const char *buf, size_t len, struct tmp_files_tar_member *m)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *key, *eq, *val, *rec_end;
		unsigned long long rlen = 0;
		size_t klen, vlen;

		for (key = p; key < end && *key >= '0' && *key <= '9'; key++) {
			rlen = rlen * 10 + (*key - '0');
			if (rlen > len)
				return -1;
		}
		if (key == p || key >= end || *key != ' ' || rlen > (unsigned long long)(end - p))
			return -1;
		rec_end = p + rlen;
		key++;
		if (key >= rec_end || rec_end[-1] != '\n')
			return -1;
		eq = memchr(key, '=', rec_end - 1 - key);
		if (!eq)
			return -1;
		klen = eq - key;
		val = eq + 1;
		vlen = rec_end - 1 - val;
#define KEY(k) (klen == sizeof(k) - 1 && !memcmp(key, k, klen))
		if (KEY("path")) {
			if (!m->sparse && pax_string(m->name, sizeof(m->name), val, vlen))
				return -1;
		} else if (KEY("linkpath")) {
			if (pax_string(m->linkname, sizeof(m->linkname), val, vlen))
				return -1;
		} else if (KEY("size")) {
			if (pax_number(val, vlen, &m->size))
				return -1;
			m->has_size = true;
		} else if (KEY("GNU.sparse.name")) {
			/* A sparse file's: its path is made up */
			if (pax_string(m->name, sizeof(m->name), val, vlen))
				return -1;
			m->sparse = true;
		} else if (KEY("GNU.sparse.realsize") || KEY("GNU.sparse.size")) {
			if (pax_number(val, vlen, &m->realsize))
				return -1;
			m->sparse = true;
		} else if (klen > 11 && !memcmp(key, "GNU.sparse.", 11)) {
			m->sparse = true;
		} else if (KEY("mtime")) {
			if (pax_time(val, vlen, &m->mtime))
				return -1;
			m->has_mtime = true;
		} else if (KEY("atime")) {
			if (pax_time(val, vlen, &m->atime))
				return -1;
			m->has_atime = true;
		} else if (!KEY("ctime")) {
			m->other_records = true;
		}
#undef KEY
		p = rec_end;
	}
	return 0;
}

/*
 * The archive tar wrote into fd. At dump, it was written from names that
 * the running tree controls: nothing in its headers is trusted.
 */
int tmp_files_tar_list(int fd, tmp_files_tar_list_fn fn, void *ctx)
{
	struct tmp_files_tar_entry e = {};
	off_t off = 0, size = lseek(fd, 0, SEEK_END);
	char hdr[BLOCK], *pax = NULL;
	int ret = -1;

	while (off + BLOCK <= size) {
		const struct ustar *h = (const struct ustar *)hdr;
		int r;

		if (pread(fd, hdr, BLOCK, off) != BLOCK)
			goto bad;
		if (h->typeflag == TMP_FILES_TAR_PAX) {
			struct tmp_files_tar_member scratch = {};

			/* Its data are the records of the member that follows */
			if (tmp_files_tar_header(hdr, &scratch) || scratch.size > PAX_MAX ||
			    off + BLOCK + (off_t)scratch.size > size)
				goto bad;
			xfree(pax);
			pax = xmalloc(scratch.size + 1);
			if (!pax || pread(fd, pax, scratch.size, off + BLOCK) != scratch.size ||
			    tmp_files_tar_pax(pax, scratch.size, &e.m))
				goto bad;
			off += BLOCK + round_up(scratch.size, BLOCK);
			continue;
		}
		r = tmp_files_tar_header(hdr, &e.m);
		if (r == 1 && !e.m.name[0] && !e.m.has_size)
			break; /* the end of the archive */
		if (r)
			goto bad;
		/* GNU tar makes nothing else with --format=posix */
		if (e.m.type < TMP_FILES_TAR_REG || e.m.type > TMP_FILES_TAR_FIFO)
			goto bad;
		off += BLOCK;
		e.data = off;
		if (e.m.type == TMP_FILES_TAR_REG) {
			/* The data, padded, must be in the archive: off must not run past it, nor wrap */
			if (e.m.size > round_down(size - off, BLOCK))
				goto bad;
			off += round_up(e.m.size, BLOCK);
		}
		e.end = off;
		if (fn(ctx, &e))
			goto out;
		memset(&e, 0, sizeof(e));
		e.start = off;
	}
	ret = 0;
	goto out;
bad:
	pr_err("Can't read the --tmp-file archive at byte %lld\n", (long long)off);
out:
	xfree(pax);
	return ret;
}

/* What is between the decompressor and tar */
struct stream {
	int out;
	const struct tmp_files_tar_check *check;
	struct tmp_files_tar_member m;
	char *pend;	 /* a header being read: a pax header, its data, the ustar header */
	size_t have;	 /* bytes in pend */
	size_t need;	 /* bytes pend must hold before it is parsed */
	bool in_pax;	 /* pend starts with a pax header */
	size_t pax_len;	 /* of its data */
	off_t data_left; /* of the member passing: data and padding */
	off_t file_left; /* of its data */
	int fd;		 /* the file criu writes the member into, or -1: tar does */
	bool made;	 /* the member is a directory criu made */
	bool summing;
	bool ended; /* the end of the archive was passed */
	struct tmp_files_sum_ctx sum;
	unsigned long long members, written;
	unsigned long long bytes, written_bytes; /* handed to tar, written by criu */
};

static int put(struct stream *s, const char *buf, size_t len)
{
	if (s->out < 0 && s->ended)
		return 0; /* no tar: its zero blocks and padding are nobody's */
	if (s->out < 0 && (s->out = s->check->start_tar(s->check->ctx)) < 0)
		return -1;
	if (write_all(s->out, buf, len) != len) {
		pr_perror("Can't hand the archive to tar");
		return -1;
	}
	s->bytes += len;
	return 0;
}

static int write_data(struct stream *s, const char *buf, size_t len)
{
	if (write_all(s->fd, buf, len) != len) {
		pr_perror("Can't write %s of the --tmp-file archive into the stage", s->m.name);
		return -1;
	}
	s->written_bytes += len;
	return 0;
}

/* The member's data has passed: its file and its checksum are done */
static int member_end(struct stream *s)
{
	int ret = 0;

	if (s->fd >= 0) {
		ret = s->check->data_done(s->check->ctx, &s->m, s->fd);
		s->fd = -1;
	}
	if (s->summing) {
		uint64_t sum = tmp_files_sum_end(&s->sum); /* ends the context, also after an error */

		s->summing = false;
		ret = ret ?: s->check->summed(s->check->ctx, &s->m, sum);
	}
	return ret;
}

/* Whether criu writes the member itself: tar is handed none of it, not even its headers */
static int member_start(struct stream *s)
{
	const struct tmp_files_tar_member *m = &s->m;

	s->data_left = round_up(m->size, BLOCK);
	s->file_left = m->size;
	s->summing = !m->sparse && !tmp_files_sum_start(&s->sum);
	if (s->check->open_data && !m->sparse && !m->other_records) {
		if (s->check->open_data(s->check->ctx, m, &s->fd))
			return -1;
		s->written += s->fd >= 0;
	}
	return 0;
}

/* pend holds a header block; or a pax header, its data and the header after it */
static int header_done(struct stream *s)
{
	struct tmp_files_tar_member scratch = {};
	char *hdr = s->pend + s->have - BLOCK;
	int ret;

	if (!s->in_pax && ((const struct ustar *)hdr)->typeflag == TMP_FILES_TAR_PAX) {
		/* A pax header: read its data and the header it is for */
		if (tmp_files_tar_header(hdr, &scratch) || scratch.size > PAX_MAX) {
			pr_err("The --tmp-file archive has a bad pax header after %llu members\n", s->members);
			return -1;
		}
		s->in_pax = true;
		s->pax_len = scratch.size;
		s->need = BLOCK + round_up(s->pax_len, BLOCK) + BLOCK;
		return 0;
	}
	memset(&s->m, 0, sizeof(s->m));
	if (s->in_pax && tmp_files_tar_pax(s->pend + BLOCK, s->pax_len, &s->m)) {
		pr_err("The --tmp-file archive has a bad pax header after %llu members\n", s->members);
		return -1;
	}
	ret = tmp_files_tar_header(hdr, &s->m);
	if (ret < 0 || (ret == 1 && s->in_pax)) {
		pr_err("The --tmp-file archive has a bad header after %llu members: refusing to extract it\n",
		       s->members);
		return -1;
	}
	s->made = false;
	if (ret == 1) {
		s->ended = true;
	} else {
		s->members++;
		if (s->check->member(s->check->ctx, &s->m))
			return -1;
		s->made = s->m.type == TMP_FILES_TAR_DIR && !s->m.other_records && s->check->make_dir;
		if (s->made && s->check->make_dir(s->check->ctx, &s->m))
			return -1;
		s->written += s->made;
		/* Only regular members carry data: check->member() refuses a size on any other */
		if (s->m.type == TMP_FILES_TAR_REG && member_start(s))
			return -1;
	}
	ret = s->fd >= 0 || s->made ? 0 : put(s, s->pend, s->have);
	s->have = 0;
	s->in_pax = false;
	s->need = BLOCK;
	/* No data to wait for: done now (the next member's start would leak the context) */
	if (!ret && s->m.type == TMP_FILES_TAR_REG && !s->data_left && (s->summing || s->fd >= 0))
		ret = member_end(s);
	return ret;
}

static int member_data(struct stream *s, const char *p, size_t len)
{
	size_t n = min_t(off_t, len, s->file_left);

	if (s->summing)
		tmp_files_sum_update(&s->sum, p, n);
	s->file_left -= n;
	s->data_left -= len;
	if (s->fd >= 0 ? write_data(s, p, n) : put(s, p, len))
		return -1;
	return s->data_left ? 0 : member_end(s);
}

static int feed(struct stream *s, const char *p, size_t len)
{
	while (len) {
		size_t n;

		if (s->ended)
			return put(s, p, len); /* the zero blocks and record padding */
		if (s->data_left) {
			n = min_t(off_t, len, s->data_left);
			if (member_data(s, p, n))
				return -1;
		} else {
			n = min(len, s->need - s->have);
			memcpy(s->pend + s->have, p, n);
			s->have += n;
			if (s->have == s->need && header_done(s))
				return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int stream_end(struct stream *s)
{
	if (!s->ended || s->data_left) {
		pr_err("The --tmp-file archive is truncated after %llu members\n", s->members);
		return -1;
	}
	pr_info("%llu members checked: %llu written by criu (%llu bytes), %llu handed to tar (%llu bytes)\n",
		s->members, s->written, s->written_bytes, s->members - s->written, s->bytes);
	return 0;
}

/* The archive from a pipe, in reads of STREAM_READ */
static int stream_read(struct stream *s, int in)
{
	char *buf = xmalloc(STREAM_READ);
	int ret = -1;

	while (buf) {
		ssize_t n = read(in, buf, STREAM_READ);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pr_perror("Can't read the --tmp-file archive");
			break;
		}
		if (!n) {
			ret = stream_end(s);
			break;
		}
		if (feed(s, buf, n))
			break;
	}
	xfree(buf);
	return ret;
}

/*
 * Copy the decompressed archive from in to out (tar's stdin), each member
 * checked by check->member() before any of it is written, and the data of
 * regular ones (not sparse) handed to check->summed() as its checksum; a
 * member check->open_data() gives a file for is written there instead,
 * none of it handed to tar.
 */
int tmp_files_tar_stream(int in, int out, const struct tmp_files_tar_check *check)
{
	struct stream s = { .out = out, .check = check, .need = BLOCK, .fd = -1 };
	struct sigaction pipe_ign = { .sa_handler = SIG_IGN }, old;
	int ret = -1;

	s.pend = xmalloc(BLOCK + PAX_MAX + BLOCK);
	/* A tar that stops reading is an EPIPE to report, not a signal */
	if (!s.pend || sigaction(SIGPIPE, &pipe_ign, &old))
		goto out;
	ret = stream_read(&s, in);
	sigaction(SIGPIPE, &old, NULL);
out:
	close_safe(&s.fd); /* half written: the stage is removed */
	if (s.summing)
		tmp_files_sum_end(&s.sum);
	xfree(s.pend);
	return ret;
}

char **tmp_files_tar_create_argv(const struct tmp_files_set *set, bool listed, bool frozen)
{
	static char *const head[] = {
		"tar", "--create", "--file=-", "--format=posix",
		/* 64 KiB writes: as fast as a plain copy, where tar's 10 KiB are not */
		"--record-size=64K", "--numeric-owner", "--preserve-permissions", "--sparse", "--xattrs",
		"--xattrs-include=*", "--acls",
		/* Names are literal, excludes are whole member names */
		"--no-wildcards", "--anchored"
	};
	/* After --directory and the excludes: tar applies them to the names that follow */
	static char *const tail[] = { "--null", "--no-unquote", "--files-from=-", NULL };
	char **argv;
	int n = ARRAY_SIZE(head), i;

	argv = xmalloc((n + 6 + set->nr_excludes + ARRAY_SIZE(tail)) * sizeof(*argv));
	if (!argv)
		return NULL;
	memcpy(argv, head, sizeof(head));
	if (listed)
		argv[n++] = "--no-recursion";
	if (!frozen) {
		/* An entry gone or changed is archived again while frozen */
		argv[n++] = "--ignore-failed-read";
		argv[n++] = "--warning=no-file-changed";
		argv[n++] = "--warning=no-failed-read";
	}
	argv[n++] = "--directory";
	argv[n++] = (char *)set->proc_root;
	for (i = 0; i < set->nr_excludes; i++)
		argv[n++] = set->excludes[i];
	memcpy(argv + n, tail, sizeof(tail));
	return argv;
}

/*
 * tar reads the archive in records of 1 MiB, not 10 KiB: every read and
 * write is a system call, and 512 MiB in 10 KiB records took 105,000 of
 * them, 0.3 s on a VM where one costs 2.5 us. From a pipe, it must wait
 * for whole records.
 */
#define TAR_READ_RECORD "--record-size=1M"

/* SIGCHLD is blocked by the caller: restore's handler must not reap it (as in cr_system()) */
pid_t tmp_files_spawn(char *const argv[], int in, int out, int cwd_fd)
{
	sigset_t mask;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		pr_perror("Can't run %s", argv[0]);
		return -1;
	}
	if (pid)
		return pid;
	sigemptyset(&mask);
	/* Nothing is expected there, and a restored mount namespace may have no /dev/null yet */
	if (out < 0)
		out = log_get_fd();
	if (sigprocmask(SIG_SETMASK, &mask, NULL) || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
	    dup2(log_get_fd(), 2) < 0 || (cwd_fd >= 0 && fchdir(cwd_fd)) || close_fds(3))
		_exit(1);
	execvp(argv[0], argv);
	_exit(1);
}

int tmp_files_reap(pid_t pid, const char *what, bool kill_it)
{
	int status;

	if (pid <= 0)
		return -1;
	if (kill_it)
		kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid) {
		pr_perror("Can't wait for %s", what);
		return -1;
	}
	if (kill_it)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		pr_err("%s %s %d\n", what, WIFEXITED(status) ? "exited with" : "was killed by signal",
		       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return -1;
	}
	return 0;
}

char *const *tmp_files_tar_extract_argv(void)
{
	/*
	 * Directory times and modes are set once every member is out: with
	 * a pre-copy, a member may come after members outside its directory.
	 */
	static char *const argv[] = { "tar", "--extract", "--file=-",
				      "--read-full-records", TAR_READ_RECORD,
				      "--numeric-owner", "--preserve-permissions",
				      "--same-owner", "--delay-directory-restore",
				      "--xattrs", "--xattrs-include=*",
				      "--acls", "--no-unquote",
				      "--no-wildcards", NULL };

	return argv;
}
