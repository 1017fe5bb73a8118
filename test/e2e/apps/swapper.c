/*
 * A hostile tree against the --tmp-file pre-copy: the moment the pre-copy
 * has read /data/sub/early (the file with the oldest ctime: the pre-copy's
 * tar reads the names in the order of their ctimes, and the checksum
 * child reads the files as tar does), swap /data/sub for a symlink to
 * HOST, the name of a host directory. The walk saw a directory; tar,
 * which reads the other names afterwards from /proc/PID/root, follows the
 * symlink out of the tree.
 *
 *   swapper HOST       (built static, run in a chroot with /data and /run)
 *
 * One swap per round: SIGUSR1 arms it (events queued meanwhile are
 * dropped: they are of the test's own reset or of a frozen pass); it
 * then swaps at the next close of the directory and waits for the next
 * SIGUSR1. /run/state says "armed N" or "swapped N" (N: rounds so far).
 * A failed call is printed into /run/errors and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static int state_fd;

static void die(const char *what)
{
	fprintf(stderr, "swapper: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void say(const char *what, int n)
{
	char buf[64];
	int len = snprintf(buf, sizeof(buf), "%s %d\n", what, n);

	if (ftruncate(state_fd, 0) || pwrite(state_fd, buf, len, 0) != len)
		die("write /run/state");
}

int main(int argc, char **argv)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	sigset_t usr1;
	int in, sig, n = 0;

	if (argc != 2)
		return 2;
	/* stderr: a file of the tree's, for the test to read */
	state_fd = open("/run/errors", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (state_fd < 0 || dup2(state_fd, 2) < 0)
		return 1;
	close(state_fd);
	state_fd = open("/run/state", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (state_fd < 0)
		die("open /run/state");
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL))
		die("sigprocmask");
	in = inotify_init1(IN_NONBLOCK);
	if (in < 0 || inotify_add_watch(in, "/data/sub", IN_CLOSE_NOWRITE) < 0)
		die("inotify /data/sub");
	say("ready", n);
	for (;;) {
		struct stat st;
		int armed = 0;

		if (sigwait(&usr1, &sig))
			die("sigwait");
		while (read(in, buf, sizeof(buf)) > 0)
			;
		if (errno != EAGAIN)
			die("read inotify");
		say("armed", ++n);
		while (!armed) {
			fd_set fds;
			ssize_t len;
			char *p;

			FD_ZERO(&fds);
			FD_SET(in, &fds);
			if (select(in + 1, &fds, NULL, NULL, NULL) < 0)
				die("select");
			len = read(in, buf, sizeof(buf));
			if (len < 0)
				die("read inotify");
			for (p = buf; p < buf + len; p += sizeof(struct inotify_event) + ((struct inotify_event *)p)->len) {
				struct inotify_event *ev = (struct inotify_event *)p;

				/* The pre-copy read its first file */
				if (ev->len && !strcmp(ev->name, "early") && (ev->mask & IN_CLOSE_NOWRITE))
					armed = 1;
			}
		}
		if (lstat("/data/sub", &st))
			die("lstat /data/sub");
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			die("/data/sub");
		}
		if (rename("/data/sub", "/data/sub.real"))
			die("rename /data/sub");
		if (symlink(argv[1], "/data/sub"))
			die("symlink /data/sub");
		say("swapped", n);
	}
}
