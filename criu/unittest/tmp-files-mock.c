/*
 * What the objects under test in tmp-files-unit.c need from the rest of
 * criu (criu/Makefile, UNIT-TMP-FILES). The helpers the tested functions
 * really call (logging, write_all, xsprintf, close_safe) are written
 * here; the others are in tmp-files-unreached.c.
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
	va_list args;

	if (!getenv("TMP_FILES_UNIT_LOG"))
		return;
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
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

int close_safe(int *fd)
{
	int ret = 0;

	if (*fd > -1) {
		ret = close(*fd);
		*fd = -1;
	}
	return ret;
}
