/*
 * A hostile tree against the --tmp-file pre-copy, which reads the saved
 * files by name while the tree runs, from /proc/PID/root, where an
 * absolute symlink leads out of the tree.
 *
 *   swapper HOST       (built static, run in a chroot with /data and /run)
 *
 * The pre-copy's tar reads the names in the order of their ctimes; its
 * checksum child reads the files in the order of their names. The moment
 * the pre-copy has read /data/sub/early (the oldest file), /data/sub is
 * swapped for a symlink to HOST, the name of a host directory: the walk
 * saw a directory, tar follows the symlink out of the tree for the files
 * it reads after, /data/sub/file among them. Once tar has opened
 * /data/0late (the newest entry, the last tar reads; a directory, which
 * the checksum child does not open, and the walk opened before), the
 * directory is put back: the
 * frozen pass finds /data/sub as the walk saw it, and only the check of
 * the members against what the checksum child read tells that tar's
 * member of /data/sub/file holds the host's bytes.
 *
 * One round per SIGUSR1 (events queued meanwhile are dropped). /run/state
 * says "armed N", "swapped N", "restored N" (N: rounds so far). A failed
 * call is printed into /run/errors and exits 1.
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

static int in;
static char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

/* Until an entry called name, watched or in a watched directory, is closed after a read */
static void wait_for(const char *name)
{
	for (;;) {
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

			if (ev->len && !strcmp(ev->name, name) && (ev->mask & IN_CLOSE_NOWRITE))
				return;
		}
	}
}

static void swap_dir(const char *host)
{
	struct stat st;

	if (lstat("/data/sub", &st))
		die("lstat /data/sub");
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		die("/data/sub");
	}
	if (rename("/data/sub", "/data/sub.real"))
		die("rename /data/sub");
	if (symlink(host, "/data/sub"))
		die("symlink /data/sub");
}

static void swap_back(void)
{
	if (unlink("/data/sub"))
		die("unlink /data/sub");
	if (rename("/data/sub.real", "/data/sub"))
		die("rename /data/sub.real");
}

int main(int argc, char **argv)
{
	sigset_t usr1;
	int sig, n = 0;

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
	if (in < 0 || inotify_add_watch(in, "/data/sub", IN_CLOSE_NOWRITE) < 0 ||
	    inotify_add_watch(in, "/data", IN_CLOSE_NOWRITE) < 0)
		die("inotify /data/sub");
	say("ready", n);
	for (;;) {
		if (sigwait(&usr1, &sig))
			die("sigwait");
		while (read(in, buf, sizeof(buf)) > 0)
			;
		if (errno != EAGAIN)
			die("read inotify");
		say("armed", ++n);
		wait_for("early");
		swap_dir(argv[1]);
		say("swapped", n);
		wait_for("0late");
		swap_back();
		say("restored", n);
	}
}
