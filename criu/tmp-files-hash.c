/*
 * --tmp-file: the content checksum of the manifest entries
 * (content_xxh64 in images/tmp-file.proto).
 */

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "log.h"
#include "tmp-files.h"
#include "xmalloc.h"

#undef LOG_PREFIX
#define LOG_PREFIX "tmp-files: "

#define SUM_BLOCK (64 << 10)

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

static uint64_t xxh64(const void *buf, size_t len, uint64_t seed)
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
	return xxh64(le, sizeof(le), 0);
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
 * The checksum of a regular file's content (content_xxh64 in
 * images/tmp-file.proto): XXH64 chained over the offset and content of
 * every non-zero SUM_BLOCK block, then the size. Holes are skipped
 * without reading them, and zero blocks count as holes, so it depends on
 * the content only, not on where a filesystem keeps holes.
 */
int tmp_files_content_sum(int fd, off_t size, uint64_t *sum)
{
	uint64_t acc = 0;
	off_t off, next = 0;
	char *buf;
	int ret = -1;

	buf = xmalloc(SUM_BLOCK);
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
		for (off = max(next, data - data % SUM_BLOCK); off < hole && off < size; off += SUM_BLOCK) {
			ssize_t len = min_t(off_t, SUM_BLOCK, size - off);

			if (pread(fd, buf, len, off) != len) {
				pr_perror("Can't read");
				goto out;
			}
			if (!all_zeros(buf, len))
				acc = xxh64_chain(xxh64_chain(acc, off), xxh64(buf, len, 0));
		}
		next = off;
	}
	*sum = xxh64_chain(acc, size);
	ret = 0;
out:
	xfree(buf);
	return ret;
}
