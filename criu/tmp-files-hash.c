/*
 * --tmp-file: the checksums of the manifest entries (content_xxh64 and
 * xattrs in images/tmp-file.proto).
 */

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "common/compiler.h"
#include "common/err.h"
#include "log.h"
#include "tmp-files-hash.h"
#include "xmalloc.h"

#include "images/tmp-file.pb-c.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#define SUM_BLOCK (64 << 10)
/* Read in 1 MiB: a system call costs about 2.5 us on these VMs */
#define SUM_READ (16 * SUM_BLOCK)

static bool all_zeros(const char *buf, size_t len)
{
	return !len || (!buf[0] && !memcmp(buf, buf + 1, len - 1));
}

/*
 * XXH64 (https://github.com/Cyan4973/xxHash, doc/xxhash_spec.md): fast
 * enough to checksum the files while tar archives them, so that the
 * manifest costs no extra time with the tree frozen.
 */
#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL
#define XXH_P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* One load (a byte loop here made the checksum slower than tar) */
static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline uint64_t xxh64_round(uint64_t acc, uint64_t in)
{
	return rotl64(acc + in * XXH_P2, 31) * XXH_P1;
}

static inline uint64_t xxh64_merge(uint64_t acc, uint64_t v)
{
	return (acc ^ xxh64_round(0, v)) * XXH_P1 + XXH_P4;
}

uint64_t tmp_files_xxh64(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf, *end = p + len;
	uint64_t h;

	if (len >= 32) {
		uint64_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;

		for (; p + 32 <= end; p += 32) {
			v1 = xxh64_round(v1, get_le64(p));
			v2 = xxh64_round(v2, get_le64(p + 8));
			v3 = xxh64_round(v3, get_le64(p + 16));
			v4 = xxh64_round(v4, get_le64(p + 24));
		}
		h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
		h = xxh64_merge(xxh64_merge(xxh64_merge(xxh64_merge(h, v1), v2), v3), v4);
	} else {
		h = seed + XXH_P5;
	}
	h += len;

	for (; p + 8 <= end; p += 8)
		h = rotl64(h ^ xxh64_round(0, get_le64(p)), 27) * XXH_P1 + XXH_P4;
	if (p + 4 <= end) {
		h = rotl64(h ^ (uint64_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24) * XXH_P1, 23) * XXH_P2 +
		    XXH_P3;
		p += 4;
	}
	for (; p < end; p++)
		h = rotl64(h ^ *p * XXH_P5, 11) * XXH_P1;

	h ^= h >> 33;
	h *= XXH_P2;
	h ^= h >> 29;
	h *= XXH_P3;
	return h ^ (h >> 32);
}

/* Fold v into acc: XXH64 of the 16 little-endian bytes of acc and v */
static uint64_t xxh64_chain(uint64_t acc, uint64_t v)
{
	uint8_t le[16];
	int i;

	for (i = 0; i < 8; i++) {
		le[i] = acc >> (8 * i);
		le[8 + i] = v >> (8 * i);
	}
	return tmp_files_xxh64(le, sizeof(le), 0);
}

/* The next data segment at or after off: 1, or 0 when there is none, or -1 */
int tmp_files_next_data(int fd, off_t off, off_t *data, off_t *hole)
{
	*data = lseek(fd, off, SEEK_DATA);
	if (*data < 0 && errno == ENXIO)
		return 0;
	*hole = *data < 0 ? -1 : lseek(fd, *data, SEEK_HOLE);
	if (*hole < 0) {
		pr_perror("Can't seek for data");
		return -1;
	}
	return 1;
}

/*
 * Open the regular file path (relative to dfd) that st describes, for
 * reading: never through a symlink, never blocking (a fifo put there),
 * and only if it is still that inode.
 */
int tmp_files_open_seen(int dfd, const char *path, const struct stat *st)
{
	struct stat now;
	int fd;

	fd = openat(dfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("Can't open %s", path);
		return -1;
	}
	if (fstat(fd, &now) || !S_ISREG(now.st_mode) || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		pr_err("%s was replaced by another file while it was read\n", path);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The checksum of a regular file's content (content_xxh64 in
 * images/tmp-file.proto): XXH64 chained over the offset and content of
 * every non-zero SUM_BLOCK block, then the size. Holes are skipped
 * without reading them, and zero blocks count as holes, so it depends on
 * the content only, not on where a filesystem keeps holes.
 */

/* The same checksum of the size bytes at base in fd, read as they are (no holes) */
int tmp_files_content_sum_at(int fd, off_t base, off_t size, uint64_t *sum)
{
	uint64_t acc = 0;
	off_t off;
	char *buf;

	buf = xmalloc(SUM_BLOCK);
	if (!buf)
		return -1;
	for (off = 0; off < size; off += SUM_BLOCK) {
		ssize_t len = min_t(off_t, SUM_BLOCK, size - off);

		if (pread(fd, buf, len, base + off) != len) {
			pr_perror("Can't read");
			xfree(buf);
			return -1;
		}
		if (!all_zeros(buf, len))
			acc = xxh64_chain(xxh64_chain(acc, off), tmp_files_xxh64(buf, len, 0));
	}
	xfree(buf);
	*sum = xxh64_chain(acc, size);
	return 0;
}

int tmp_files_content_sum(int fd, off_t size, uint64_t *sum)
{
	uint64_t acc = 0;
	off_t off, n, next = 0;
	char *buf;
	int ret = -1;

	buf = xmalloc(SUM_READ);
	if (!buf)
		return -1;

	while (next < size) {
		off_t data, hole;

		ret = tmp_files_next_data(fd, next, &data, &hole);
		if (ret < 0)
			goto out;
		ret = -1;
		if (data < 0)
			break;
		/* Whole blocks, up to SUM_READ bytes a read */
		for (off = max(next, data - data % SUM_BLOCK); off < hole && off < size; off += n) {
			off_t b;

			n = min_t(off_t, SUM_READ, round_up(hole - off, SUM_BLOCK));
			n = min_t(off_t, n, size - off);
			if (pread(fd, buf, n, off) != n) {
				pr_perror("Can't read");
				goto out;
			}
			for (b = 0; b < n; b += SUM_BLOCK) {
				off_t len = min_t(off_t, SUM_BLOCK, n - b);

				if (!all_zeros(buf + b, len))
					acc = xxh64_chain(xxh64_chain(acc, off + b), tmp_files_xxh64(buf + b, len, 0));
			}
		}
		next = off;
	}
	*sum = xxh64_chain(acc, size);
	ret = 0;
out:
	xfree(buf);
	return ret;
}

/* The same checksum, of a file's bytes as they come (a tar stream) */
int tmp_files_sum_start(struct tmp_files_sum_ctx *c)
{
	c->acc = 0;
	c->off = 0;
	c->fill = 0;
	c->buf = xmalloc(SUM_BLOCK);
	return c->buf ? 0 : -1;
}

static void sum_block(struct tmp_files_sum_ctx *c, const char *block, size_t len)
{
	if (!all_zeros(block, len))
		c->acc = xxh64_chain(xxh64_chain(c->acc, c->off), tmp_files_xxh64(block, len, 0));
	c->off += len;
}

void tmp_files_sum_update(struct tmp_files_sum_ctx *c, const char *data, size_t len)
{
	while (len) {
		size_t n;

		if (!c->fill && len >= SUM_BLOCK) {
			sum_block(c, data, SUM_BLOCK);
			n = SUM_BLOCK;
		} else {
			n = min(len, SUM_BLOCK - c->fill);
			memcpy(c->buf + c->fill, data, n);
			c->fill += n;
			if (c->fill == SUM_BLOCK) {
				sum_block(c, c->buf, SUM_BLOCK);
				c->fill = 0;
			}
		}
		data += n;
		len -= n;
	}
}

uint64_t tmp_files_sum_end(struct tmp_files_sum_ctx *c)
{
	if (c->fill)
		sum_block(c, c->buf, c->fill);
	xfree(c->buf);
	c->buf = NULL;
	return xxh64_chain(c->acc, c->off);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char **)a, *(char **)b);
}

/* llistxattr() of path, or listxattr() with follow (a /proc/self/fd link) */
static ssize_t list_xattrs(const char *path, bool follow, char *list, size_t size)
{
	return follow ? listxattr(path, list, size) : llistxattr(path, list, size);
}

static ssize_t get_xattr(const char *path, bool follow, const char *name, void *val, size_t size)
{
	return follow ? getxattr(path, name, val, size) : lgetxattr(path, name, val, size);
}

/* The names of the xattrs of path, sorted, in *list (to free); NULL when none */
static char **xattr_names(const char *path, bool follow, char **list, size_t *nr)
{
	char **names, *n;
	ssize_t len;
	size_t i = 0;

	*list = NULL;
	*nr = 0;
	len = list_xattrs(path, follow, NULL, 0);
	if (len <= 0)
		return len < 0 && errno != ENOTSUP && errno != ENODATA ? ERR_PTR(-errno) : NULL;
	*list = xmalloc(len);
	/* Can be shorter than said: overlayfs hides its own xattrs only here */
	if (!*list || (len = list_xattrs(path, follow, *list, len)) < 0)
		goto err;
	if (!len) {
		xfree(*list);
		*list = NULL;
		return NULL;
	}
	for (n = *list; n < *list + len; n += strlen(n) + 1)
		(*nr)++;
	names = xmalloc(*nr * sizeof(*names));
	if (!names)
		goto err;
	for (n = *list; n < *list + len; n += strlen(n) + 1)
		names[i++] = n;
	qsort(names, *nr, sizeof(*names), name_cmp);
	return names;
err:
	xfree(*list);
	*list = NULL;
	return ERR_PTR(-EIO);
}

static int xattr_sum(const char *path, bool follow, const char *name, uint64_t *sum)
{
	ssize_t len = get_xattr(path, follow, name, NULL, 0);
	char *val;

	val = len < 0 ? NULL : xmalloc(len + 1);
	if (!val || get_xattr(path, follow, name, val, len) != len) {
		xfree(val);
		return -1;
	}
	*sum = tmp_files_xxh64(val, len, 0);
	xfree(val);
	return 0;
}

int tmp_files_get_xattrs_fd(int fd, const char *name, TmpFileEntry *e)
{
	char **names, *list, path[64];
	size_t nr, i;
	int ret = -1;

	/* The fd's link in /proc/self/fd, followed */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	names = xattr_names(path, true, &list, &nr);
	if (IS_ERR(names)) {
		pr_perror("Can't list the xattrs of %s", name);
		return -1;
	}
	if (!nr)
		return 0;
	e->xattrs = xzalloc(nr * sizeof(*e->xattrs));
	if (!e->xattrs)
		goto out;
	for (i = 0; i < nr; i++) {
		TmpFileXattr *x = xmalloc(sizeof(*x));

		if (!x)
			goto out;
		tmp_file_xattr__init(x);
		e->xattrs[e->n_xattrs++] = x;
		x->name = xstrdup(names[i]);
		if (!x->name || xattr_sum(path, true, names[i], &x->value_xxh64)) {
			pr_perror("Can't read xattr %s of %s", names[i], name);
			goto out;
		}
	}
	ret = 0;
out:
	xfree(names);
	xfree(list);
	return ret;
}

/* NULL when the xattrs of path are those of e, names and values */
const char *tmp_files_xattrs_differ(const char *path, const TmpFileEntry *e)
{
	const char *what = NULL;
	char **names, *list;
	size_t nr, i;

	names = xattr_names(path, false, &list, &nr);
	if (IS_ERR(names))
		return "xattrs";
	if (nr != e->n_xattrs)
		what = "xattrs";
	for (i = 0; !what && i < nr; i++) {
		uint64_t sum;

		if (strcmp(names[i], e->xattrs[i]->name) || xattr_sum(path, false, names[i], &sum) ||
		    sum != e->xattrs[i]->value_xxh64)
			what = "xattrs";
	}
	xfree(names);
	xfree(list);
	return what;
}
