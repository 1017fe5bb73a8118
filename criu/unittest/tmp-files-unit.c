/*
 * Unit tests of the --tmp-file code that reads what others wrote or that
 * decides what belongs where: the path normaliser and ordering, the
 * ustar and pax header parsers of the restore stream, and XXH64 with the
 * content checksum built on it (images/tmp-file.proto).
 *
 * Run by "make unittest" (criu/Makefile links the objects under test).
 * Each case reports "ok" or "not ok" and every failed check with its
 * line; the exit status is 1 if any failed. Arguments pick cases by name.
 * TMP_FILES_UNIT_LOG=1 shows what criu would have logged.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tmp-files-tree.h"
#include "tmp-files-hash.h"
#include "tmp-files-tar.h"

static unsigned int failed_checks;

#define CHECK(cond)                                                                                    \
	do {                                                                                           \
		if (!(cond)) {                                                                         \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, \
				#cond);                                                                \
			failed_checks++;                                                               \
		}                                                                                      \
	} while (0)

#define CHECK_STR(got, want)                                                                                    \
	do {                                                                                                    \
		if (strcmp(got, want)) {                                                                        \
			fprintf(stderr, "%s:%d: %s: \"%s\" is not \"%s\"\n", __FILE__, __LINE__, __func__, got, \
				want);                                                                          \
			failed_checks++;                                                                        \
		}                                                                                               \
	} while (0)

#define ARRAY(a) (sizeof(a) / sizeof((a)[0]))

/* The path normaliser: "" for "/", no empty or "." component, ".." and relative paths refused */
static void test_normalise_path(void)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
	} cases[] = {
		{ "/", "" },
		{ "//", "" },
		{ "/.", "" },
		{ "/./", "" },
		{ "/tmp", "/tmp" },
		{ "/tmp/", "/tmp" },
		{ "//tmp//app///", "/tmp/app" },
		{ "/tmp/./app/.", "/tmp/app" },
		{ "/tmp/.app", "/tmp/.app" },
		{ "/tmp/..app", "/tmp/..app" },
		{ "/tmp/app..", "/tmp/app.." },
		{ "/tmp/...", "/tmp/..." },
		{ "/tmp/a b/\xc3\xa9", "/tmp/a b/\xc3\xa9" },
		{ "/..", NULL },
		{ "/tmp/..", NULL },
		{ "/tmp/../etc", NULL },
		{ "/tmp/app/../../etc", NULL },
		{ "tmp", NULL },
		{ "./tmp", NULL },
		{ "", NULL },
	};
	size_t i;

	for (i = 0; i < ARRAY(cases); i++) {
		char out[PATH_MAX];
		int ret;

		memset(out, 'X', sizeof(out));
		ret = tmp_files_normalise_path(cases[i].in, out);
		if (!cases[i].out) {
			CHECK(ret == -1);
			continue;
		}
		CHECK(ret == 0);
		if (!ret) {
			CHECK_STR(out, cases[i].out);
			/* Callers allocate as much as the input */
			CHECK(strlen(out) <= strlen(cases[i].in));
		}
	}
}

static int cmp(const char *a, const char *b)
{
	return tmp_files_path_cmp(&a, &b);
}

/* '/' sorts before any other byte, so a directory's entries follow it directly */
static void test_path_order(void)
{
	/* In order; bytes are unsigned: 0xc3 after 'z' */
	static const char *const sorted[] = {
		"",
		"/a",
		"/a/b",
		"/a/b/c",
		"/a/c",
		"/a b",
		"/a-b",
		"/a.b",
		"/a0",
		"/ab",
		"/az",
		"/a\xc3\xa9",
		"/b",
		"/b/a",
		"/ba",
	};
	const char *shuffled[ARRAY(sorted)];
	size_t i, j;

	for (i = 0; i < ARRAY(sorted); i++)
		for (j = 0; j < ARRAY(sorted); j++) {
			int c = cmp(sorted[i], sorted[j]);

			if (i < j)
				CHECK(c < 0);
			else if (i > j)
				CHECK(c > 0);
			else
				CHECK(c == 0);
		}

	for (i = 0; i < ARRAY(sorted); i++)
		shuffled[i] = sorted[(i * 7 + 3) % ARRAY(sorted)];
	qsort(shuffled, ARRAY(shuffled), sizeof(shuffled[0]), tmp_files_path_cmp);
	for (i = 0; i < ARRAY(sorted); i++)
		CHECK_STR(shuffled[i], sorted[i]);
}

/* What a member belongs to: a saved path or anything under it, and nothing else */
static void test_in_paths(void)
{
	char *paths[] = { "/srv/x", "/tmp/app", "/tmp/app-2", "/var/tmp/a" };
	size_t nr = ARRAY(paths);

	qsort(paths, nr, sizeof(paths[0]), tmp_files_path_cmp);
	CHECK(tmp_files_in_paths(paths, nr, "/tmp/app"));
	CHECK(tmp_files_in_paths(paths, nr, "/tmp/app/x"));
	CHECK(tmp_files_in_paths(paths, nr, "/tmp/app/x/y"));
	CHECK(tmp_files_in_paths(paths, nr, "/tmp/app-2/x"));
	CHECK(tmp_files_in_paths(paths, nr, "/var/tmp/a"));
	CHECK(!tmp_files_in_paths(paths, nr, "/tmp"));
	CHECK(!tmp_files_in_paths(paths, nr, "/tmp/ap"));
	CHECK(!tmp_files_in_paths(paths, nr, "/tmp/appx"));
	CHECK(!tmp_files_in_paths(paths, nr, "/tmp/app-3"));
	CHECK(!tmp_files_in_paths(paths, nr, "/var/tmp/ab"));
	CHECK(!tmp_files_in_paths(paths, nr, "/"));
	CHECK(!tmp_files_in_paths(paths, 0, "/tmp/app"));

	CHECK(tmp_files_paths_lower_bound(paths, nr, "") == 0);
	CHECK(tmp_files_paths_lower_bound(paths, nr, "/tmp/app") == 1);
	CHECK(tmp_files_paths_lower_bound(paths, nr, "/tmp/app/z") == 2);
	CHECK(tmp_files_paths_lower_bound(paths, nr, "/zzz") == nr);
}

/* A ustar header block as GNU tar writes it (pax format), with its checksum */
struct hdr {
	const char *name, *prefix, *linkname, *size;
	char type;
};

static void ustar_block(char *blk, const struct hdr *h)
{
	unsigned int sum = 0, i;

	memset(blk, 0, 512);
	if (h->name)
		memcpy(blk, h->name, strnlen(h->name, 100));
	memcpy(blk + 100, "0000644", 8);
	memcpy(blk + 108, "0000000", 8);
	memcpy(blk + 116, "0000000", 8);
	memcpy(blk + 124, h->size ?: "00000000000", strnlen(h->size ?: "00000000000", 12));
	memcpy(blk + 136, "14712345670", 12);
	blk[156] = h->type;
	if (h->linkname)
		memcpy(blk + 157, h->linkname, strnlen(h->linkname, 100));
	memcpy(blk + 257, "ustar", 6);
	memcpy(blk + 263, "00", 2);
	memcpy(blk + 265, "root", 4);
	memcpy(blk + 297, "root", 4);
	if (h->prefix)
		memcpy(blk + 345, h->prefix, strnlen(h->prefix, 155));
	memset(blk + 148, ' ', 8);
	for (i = 0; i < 512; i++)
		sum += (unsigned char)blk[i];
	snprintf(blk + 148, 8, "%06o", sum);
}

static int parse_header(const char *blk, struct tmp_files_tar_member *m)
{
	memset(m, 0, sizeof(*m));
	return tmp_files_tar_header(blk, m);
}

static void test_tar_header(void)
{
	struct tmp_files_tar_member m;
	char blk[512], name100[101];
	unsigned int i;

	/* The end of the archive */
	memset(blk, 0, sizeof(blk));
	CHECK(parse_header(blk, &m) == 1);

	ustar_block(blk, &(struct hdr){ .name = "tmp/app/x", .size = "00000000144", .type = '0' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK_STR(m.name, "tmp/app/x");
	CHECK(m.type == '0');
	CHECK(m.size == 0144);
	CHECK_STR(m.linkname, "");

	/* An old header's type '\0' is a regular file */
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/y", .size = "00000000001", .type = '\0' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK(m.type == '0');
	CHECK(m.size == 1);

	/* A directory, a symlink, a hard link */
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/", .type = '5' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK_STR(m.name, "tmp/app/");
	CHECK(m.type == '5');
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/l", .linkname = "../../etc/passwd", .type = '2' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK(m.type == '2');
	CHECK_STR(m.linkname, "../../etc/passwd");
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/h", .linkname = "tmp/app/x", .type = '1' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK(m.type == '1');
	CHECK_STR(m.linkname, "tmp/app/x");

	/* prefix "/" name */
	ustar_block(blk, &(struct hdr){ .name = "file", .prefix = "tmp/a/deep/dir", .type = '0' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK_STR(m.name, "tmp/a/deep/dir/file");

	/* A name and a link name that fill their fields have no NUL */
	memset(name100, 'n', 100);
	name100[100] = '\0';
	ustar_block(blk, &(struct hdr){ .name = name100, .linkname = name100, .type = '2' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK(strlen(m.name) == 100);
	CHECK(strlen(m.linkname) == 100);

	/* Sizes: octal with leading spaces, GNU base-256 */
	ustar_block(blk, &(struct hdr){ .name = "big", .size = "   77777777", .type = '0' });
	CHECK(parse_header(blk, &m) == 0);
	CHECK(m.size == 077777777);
	ustar_block(blk, &(struct hdr){ .name = "huge", .type = '0' });
	memset(blk + 124, 0, 12);
	blk[124] = (char)0x80;
	blk[131] = 0x02; /* 2 << 32 */
	memset(blk + 148, ' ', 8);
	{
		unsigned int sum = 0;

		for (i = 0; i < 512; i++)
			sum += (unsigned char)blk[i];
		snprintf(blk + 148, 8, "%06o", sum);
	}
	CHECK(parse_header(blk, &m) == 0);
	CHECK(m.size == 2ULL << 32);

	/* A pax header's path and size win over the block's */
	ustar_block(blk, &(struct hdr){ .name = "short", .size = "00000000010", .type = '0' });
	memset(&m, 0, sizeof(m));
	strcpy(m.name, "tmp/app/a name longer than a ustar field");
	m.size = 5;
	m.has_size = true;
	CHECK(tmp_files_tar_header(blk, &m) == 0);
	CHECK_STR(m.name, "tmp/app/a name longer than a ustar field");
	CHECK(m.size == 5);

	/* Refused: a wrong checksum, no ustar magic, a size that is not a number */
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/x", .size = "00000000144", .type = '0' });
	blk[0] = 'T';
	CHECK(parse_header(blk, &m) == -1);
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/x", .size = "00000000144", .type = '0' });
	blk[150]++;
	CHECK(parse_header(blk, &m) == -1);
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/x", .size = "00000000144", .type = '0' });
	memcpy(blk + 257, "ustaR", 5);
	memset(blk + 148, ' ', 8);
	{
		unsigned int sum = 0;

		for (i = 0; i < 512; i++)
			sum += (unsigned char)blk[i];
		snprintf(blk + 148, 8, "%06o", sum);
	}
	CHECK(parse_header(blk, &m) == -1);
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/x", .size = "00000000899", .type = '0' });
	CHECK(parse_header(blk, &m) == -1);
	ustar_block(blk, &(struct hdr){ .name = "tmp/app/x", .size = "0000000014x", .type = '0' });
	CHECK(parse_header(blk, &m) == -1);
}

/* A pax record "LEN key=value\n" at the end of buf (len bytes used): the new length */
static size_t pax_record(char *buf, size_t len, const char *key, const char *val, size_t vlen)
{
	size_t body = 1 + strlen(key) + 1 + vlen + 1, rlen = body, digits;

	/* LEN counts its own digits */
	for (digits = 1;; digits++) {
		size_t n = body + digits, d = 0;

		for (; n; n /= 10)
			d++;
		if (d == digits) {
			rlen = body + digits;
			break;
		}
	}
	len += sprintf(buf + len, "%zu %s=", rlen, key);
	memcpy(buf + len, val, vlen);
	len += vlen;
	buf[len++] = '\n';
	return len;
}

#define REC(buf, len, key, val) pax_record(buf, len, key, val, strlen(val))

/* Parsed from a heap copy of exactly len bytes: nothing after the buffer is read */
static int parse_pax(const char *buf, size_t len, struct tmp_files_tar_member *m)
{
	char *copy = malloc(len ?: 1);
	int ret;

	if (!copy)
		abort();
	memcpy(copy, buf, len);
	memset(m, 0, sizeof(*m));
	ret = tmp_files_tar_pax(copy, len, m);
	free(copy);
	return ret;
}

static void test_tar_pax(void)
{
	static char buf[2 * PATH_MAX + 256], longpath[PATH_MAX + 1];
	struct tmp_files_tar_member m;
	size_t len;

	CHECK(parse_pax("", 0, &m) == 0);
	CHECK_STR(m.name, "");
	CHECK(!m.has_size && !m.sparse);

	len = REC(buf, 0, "path", "tmp/app/a name = with an equals sign");
	len = REC(buf, len, "linkpath", "tmp/app/target");
	len = REC(buf, len, "size", "123456789012");
	len = REC(buf, len, "mtime", "1733312345.123456789");
	len = REC(buf, len, "SCHILY.xattr.user.k", "v=1");
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK_STR(m.name, "tmp/app/a name = with an equals sign");
	CHECK_STR(m.linkname, "tmp/app/target");
	CHECK(m.has_size && m.size == 123456789012ULL);
	CHECK(!m.sparse);
	CHECK(m.has_mtime && m.mtime.tv_sec == 1733312345 && m.mtime.tv_nsec == 123456789);
	CHECK(m.other_records); /* the xattr: a directory member with one is not kept by the pre-copy */

	/* Times only: nothing else to say; a fraction shorter than ns, longer */
	len = REC(buf, 0, "mtime", "7.5");
	len = REC(buf, len, "atime", "8");
	len = REC(buf, len, "ctime", "9.0000000001");
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK(!m.other_records && m.mtime.tv_sec == 7 && m.mtime.tv_nsec == 500000000);
	/* The atime criu sets on a file it writes itself, as tar does */
	CHECK(m.has_atime && m.atime.tv_sec == 8 && m.atime.tv_nsec == 0);
	len = REC(buf, 0, "atime", "8x");
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "mtime", "7.1234567899");
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK(m.mtime.tv_nsec == 123456789);
	len = REC(buf, 0, "mtime", "-1");
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "mtime", "1.5x");
	CHECK(parse_pax(buf, len, &m) == -1);

	/* The record's length, not a newline, ends a value */
	len = REC(buf, 0, "path", "tmp/app/two\nlines");
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK_STR(m.name, "tmp/app/two\nlines");

	/* GNU tar's sparse files (format 1.0): the real name, not the made-up path */
	len = REC(buf, 0, "GNU.sparse.major", "1");
	len = REC(buf, len, "GNU.sparse.minor", "0");
	len = REC(buf, len, "GNU.sparse.name", "tmp/app/holey");
	len = REC(buf, len, "GNU.sparse.realsize", "1073741824");
	len = REC(buf, len, "path", "tmp/app/GNUSparseFile.0/holey");
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK(m.sparse);
	CHECK_STR(m.name, "tmp/app/holey");
	CHECK(m.realsize == 1ULL << 30);

	/* A path as long as a path can be, and one byte longer */
	memset(longpath, 'p', PATH_MAX - 1);
	longpath[PATH_MAX - 1] = '\0';
	len = REC(buf, 0, "path", longpath);
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK(strlen(m.name) == PATH_MAX - 1);
	longpath[PATH_MAX - 1] = 'p';
	longpath[PATH_MAX] = '\0';
	len = REC(buf, 0, "path", longpath);
	CHECK(parse_pax(buf, len, &m) == -1);

	/* Refused: a NUL in a name, sizes that are not decimal numbers or do not fit */
	len = pax_record(buf, 0, "path", "tmp/app/x\0y", 11);
	CHECK(parse_pax(buf, len, &m) == -1);
	len = pax_record(buf, 0, "linkpath", "a\0", 2);
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "size", "");
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "size", "12a");
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "size", "-1");
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "size", "9223372036854775807");
	CHECK(parse_pax(buf, len, &m) == 0);
	CHECK(m.size == INT64_MAX);
	len = REC(buf, 0, "size", "18446744073709551616");
	CHECK(parse_pax(buf, len, &m) == -1);
	len = REC(buf, 0, "GNU.sparse.realsize", "1e9");
	CHECK(parse_pax(buf, len, &m) == -1);

	/* Refused: records whose framing lies */
	CHECK(parse_pax("14 path=tmp/a\n", 14, &m) == 0);
	CHECK_STR(m.name, "tmp/a");
	CHECK(parse_pax("15 path=tmp/a\n", 14, &m) == -1); /* longer than the buffer */
	CHECK(parse_pax("13 path=tmp/a\n", 14, &m) == -1); /* ends before its newline */
	CHECK(parse_pax("14 path=tmp/a\n14 path=tmp/a", 27, &m) == -1);
	CHECK(parse_pax("14 pathXtmp/a\n", 14, &m) == -1); /* no '=' */
	CHECK(parse_pax("14_path=tmp/a\n", 14, &m) == -1);
	CHECK(parse_pax(" 14 path=tmp/\n", 14, &m) == -1);
	CHECK(parse_pax("0 \n", 3, &m) == -1);
	CHECK(parse_pax("3 \n", 3, &m) == -1);
	CHECK(parse_pax("99999999999999999999999 path=x\n", 31, &m) == -1);
	CHECK(parse_pax("13", 2, &m) == -1);
}

/* XXH64 against the reference (python3-xxhash 3.0.0: xxhash.xxh64(data, seed).intdigest()) */
static void pattern(unsigned char *buf, size_t len)
{
	size_t i;

	/* bytes((i * 7 + 3) & 255 for i in range(len)) */
	for (i = 0; i < len; i++)
		buf[i] = (i * 7 + 3) & 255;
}

static void test_xxh64(void)
{
	static const struct {
		size_t len;
		uint64_t seed, sum;
	} cases[] = {
		{ 0, 0x0ULL, 0xef46db3751d8e999ULL },
		{ 0, 0x9e3779b97f4a7c15ULL, 0xc4349fc93c010000ULL },
		{ 1, 0x0ULL, 0x1f25c8d0bc1f4bb6ULL },
		{ 1, 0x9e3779b97f4a7c15ULL, 0x79826bcd749d267aULL },
		{ 3, 0x0ULL, 0x31d2363f52e564c9ULL },
		{ 3, 0x9e3779b97f4a7c15ULL, 0x78efd77575e26575ULL },
		{ 4, 0x0ULL, 0x9bb64b7d66ee9fdaULL },
		{ 4, 0x9e3779b97f4a7c15ULL, 0x6f0a6c97d68bf353ULL },
		{ 5, 0x0ULL, 0xc7608efddb7051feULL },
		{ 5, 0x9e3779b97f4a7c15ULL, 0xa677b535c22b67a5ULL },
		{ 7, 0x0ULL, 0x9a7b149959ce60d8ULL },
		{ 7, 0x9e3779b97f4a7c15ULL, 0xd97ede93c9d66a0dULL },
		{ 8, 0x0ULL, 0xdab99d95c6f90092ULL },
		{ 8, 0x9e3779b97f4a7c15ULL, 0xa2f1e28437a78a1bULL },
		{ 9, 0x0ULL, 0x170bb6bf975b4c02ULL },
		{ 9, 0x9e3779b97f4a7c15ULL, 0x9c9a3cd83532d84fULL },
		{ 31, 0x0ULL, 0xa2aa5f33cc4a6119ULL },
		{ 31, 0x9e3779b97f4a7c15ULL, 0x755437271d1d0a84ULL },
		{ 32, 0x0ULL, 0x23c3c17ef790fd97ULL },
		{ 32, 0x9e3779b97f4a7c15ULL, 0xbf624b932c090428ULL },
		{ 33, 0x0ULL, 0x50a7cfc7ba588784ULL },
		{ 33, 0x9e3779b97f4a7c15ULL, 0x7aceaf1e9d34ea35ULL },
		{ 63, 0x0ULL, 0x5e3e54b431c7493cULL },
		{ 63, 0x9e3779b97f4a7c15ULL, 0x2c8ddce5c85d0d9dULL },
		{ 64, 0x0ULL, 0x0eb64b3ef6eeb01fULL },
		{ 64, 0x9e3779b97f4a7c15ULL, 0x4af341f14e3a6fc9ULL },
		{ 65, 0x0ULL, 0xa383b724b2bd12f1ULL },
		{ 65, 0x9e3779b97f4a7c15ULL, 0x8e9e580645400102ULL },
		{ 100, 0x0ULL, 0xa61f8d4c170fe531ULL },
		{ 100, 0x9e3779b97f4a7c15ULL, 0xf6d8f65c625abb4fULL },
		{ 1000, 0x0ULL, 0x5f235fa033f1a3fbULL },
		{ 1000, 0x9e3779b97f4a7c15ULL, 0x442acd0a822e86f6ULL },
	};
	unsigned char buf[1000 + 1];
	size_t i;

	for (i = 0; i < ARRAY(cases); i++) {
		uint64_t sum;

		/* Unaligned too: the loads must not care */
		pattern(buf, cases[i].len);
		sum = tmp_files_xxh64(buf, cases[i].len, cases[i].seed);
		if (sum != cases[i].sum)
			fprintf(stderr, "  xxh64 of %zu bytes, seed %#llx: %#llx\n", cases[i].len,
				(unsigned long long)cases[i].seed, (unsigned long long)sum);
		CHECK(sum == cases[i].sum);
		pattern(buf + 1, cases[i].len);
		CHECK(tmp_files_xxh64(buf + 1, cases[i].len, cases[i].seed) == cases[i].sum);
	}
	CHECK(tmp_files_xxh64("abc", 3, 0) == 0x44bc2cf5ad770999ULL);
	CHECK(tmp_files_xxh64(NULL, 0, 0) == 0xef46db3751d8e999ULL);
}

/*
 * content_xxh64 (images/tmp-file.proto) of 200,000 bytes of the pattern
 * whose second 64 KiB block is zeros, computed by test_dump.py's
 * content_xxh64() with python3-xxhash; of nothing; of 70,000 zeros.
 */
#define CONTENT_SUM	  0x7fdd79e883200c0aULL
#define CONTENT_SUM_EMPTY 0xaf09f71516247c32ULL
#define CONTENT_SUM_ZEROS 0x9a11061e3e94eeb0ULL
#define CONTENT_LEN	  200000

static void content(unsigned char *buf)
{
	pattern(buf, CONTENT_LEN);
	memset(buf + 65536, 0, 65536);
}

static uint64_t stream_sum(const unsigned char *buf, size_t len, const size_t *chunks, size_t nr)
{
	struct tmp_files_sum_ctx c;
	size_t off = 0, i = 0;

	if (tmp_files_sum_start(&c))
		abort();
	while (off < len) {
		size_t n = chunks[i++ % nr];

		if (n > len - off)
			n = len - off;
		tmp_files_sum_update(&c, (const char *)buf + off, n);
		off += n;
	}
	return tmp_files_sum_end(&c);
}

static void test_content_sum_stream(void)
{
	static const size_t whole[] = { CONTENT_LEN }, odd[] = { 1, 7, 65536 + 3, 4096, 65535 }, block[] = { 65536 };
	unsigned char *buf = malloc(CONTENT_LEN);
	struct tmp_files_sum_ctx c;

	if (!buf)
		abort();
	content(buf);
	CHECK(stream_sum(buf, CONTENT_LEN, whole, 1) == CONTENT_SUM);
	CHECK(stream_sum(buf, CONTENT_LEN, odd, ARRAY(odd)) == CONTENT_SUM);
	CHECK(stream_sum(buf, CONTENT_LEN, block, 1) == CONTENT_SUM);
	memset(buf, 0, 70000);
	CHECK(stream_sum(buf, 70000, odd, ARRAY(odd)) == CONTENT_SUM_ZEROS);
	CHECK(tmp_files_sum_start(&c) == 0);
	CHECK(tmp_files_sum_end(&c) == CONTENT_SUM_EMPTY);
	free(buf);
}

/* The same checksum read from a file, with the zero block a hole */
static void test_content_sum_file(void)
{
	unsigned char *buf = malloc(CONTENT_LEN);
	uint64_t sum = 0;
	int fd;

	if (!buf)
		abort();
	content(buf);
	fd = memfd_create("tmp-files-unit", 0);
	CHECK(fd >= 0);
	if (fd < 0) {
		free(buf);
		return;
	}
	CHECK(pwrite(fd, buf, 65536, 0) == 65536);
	CHECK(pwrite(fd, buf + 131072, CONTENT_LEN - 131072, 131072) == CONTENT_LEN - 131072);
	CHECK(tmp_files_content_sum(fd, CONTENT_LEN, &sum) == 0);
	CHECK(sum == CONTENT_SUM);
	CHECK(ftruncate(fd, 0) == 0);
	CHECK(tmp_files_content_sum(fd, 0, &sum) == 0);
	CHECK(sum == CONTENT_SUM_EMPTY);
	close(fd);
	free(buf);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "normalise_path", test_normalise_path },
	{ "path_order", test_path_order },
	{ "in_paths", test_in_paths },
	{ "tar_header", test_tar_header },
	{ "tar_pax", test_tar_pax },
	{ "xxh64", test_xxh64 },
	{ "content_sum_stream", test_content_sum_stream },
	{ "content_sum_file", test_content_sum_file },
};

static int wanted(const char *name, int argc, char **argv)
{
	int i;

	if (argc < 2)
		return 1;
	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned int failed = 0, run = 0;
	size_t i;

	for (i = 0; i < ARRAY(tests); i++) {
		unsigned int before = failed_checks;

		if (!wanted(tests[i].name, argc, argv))
			continue;
		tests[i].fn();
		run++;
		if (failed_checks != before)
			failed++;
		printf("%s %zu tmp-files %s\n", failed_checks == before ? "ok" : "not ok", i + 1, tests[i].name);
	}
	printf("tmp-files unit tests: %u run, %u failed\n", run, failed);
	return failed || !run ? 1 : 0;
}
