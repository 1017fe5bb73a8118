/*
 * What the tmp-files objects need from the rest of criu, where they are
 * tested on their own: by tmp-files-unit.c (criu/Makefile,
 * UNIT-TMP-FILES) and by the fuzz harnesses of the project's test/fuzz.
 * The helpers the tested functions really call (logging, write_all,
 * xsprintf, __strlcpy, close_safe) are written here; the others are in
 * tmp-files-unreached.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cr_options.h"
#include "fault-injection.h"
#include "image.h"
#include "kerndat.h"
#include "log.h"
#include "namespaces.h"
#include "pstree.h"
#include "string.h"
#include "util.h"

struct cr_options opts;
struct cr_fd_desc_tmpl imgset_template[CR_FD_MAX];
struct kerndat_s kdat;
struct pstree_item *root_item;
unsigned long root_ns_mask;
struct ns_desc mnt_ns_desc;
enum faults fi_strategy;

/* What criu would log, on stderr with TMP_FILES_UNIT_LOG=1 */
void print_on_level(unsigned int loglevel, const char *format, ...)
{
	static int show = -1;
	char buf[4096];
	va_list args;

	/* Formatted always: a bad argument (an unterminated string) shows up under ASan */
	va_start(args, format);
	vsnprintf(buf, sizeof(buf), format, args);
	va_end(args);
	if (show < 0)
		show = getenv("TMP_FILES_UNIT_LOG") != NULL;
	if (show)
		fputs(buf, stderr);
}

int log_get_fd(void)
{
	return STDERR_FILENO;
}

ssize_t write_all(int fd, const void *buf, size_t size)
{
	size_t done = 0;

	while (done < size) {
		ssize_t n = write(fd, (const char *)buf + done, size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return done ? (ssize_t)done : n;
		done += n;
	}
	return done;
}

char *xsprintf(const char *fmt, ...)
{
	va_list args;
	char *s;
	int n;

	va_start(args, fmt);
	n = vasprintf(&s, fmt, args);
	va_end(args);
	return n < 0 ? NULL : s;
}

size_t __strlcpy(char *dest, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dest, src, n);
		dest[n] = '\0';
	}
	return len;
}

int close_safe(int *fd)
{
	int ret = 0;

	if (*fd > -1) {
		ret = close(*fd);
		*fd = -1;
	}
	return ret;
}
