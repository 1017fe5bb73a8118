/*
 * The --tmp-file setters of libcriu, global and criu_local_:
 * criu_add_tmp_file(), criu_set_tmp_file_compress(), criu_set_tmp_file_auto(),
 * criu_set_tmp_file_limit() and criu_set_tmp_file_precopy().
 *
 * A child keeps open a file in a directory of the test (DIR/saved/data)
 * and one on the tmpfs /dev/shm. Two dumps that criu must refuse show
 * that the global setters reach it (an unknown compression; the /dev/shm
 * file over a limit of 1 byte, found by the automatic mode); then a dump
 * with the criu_local_ setters (the directory, zstd, the automatic mode
 * under a limit of 1M, the pre-copy) archives both. Both files are
 * removed, and the restored child finds them back, content and all.
 *
 * Usage: test_tmp_file CRIU DIR
 */
#include "criu.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include "lib.h"

#define DATA "saved by --tmp-file\n"

static char saved[PATH_MAX + 8], data[PATH_MAX + 16], shm[64];
static int stop;

static void sh(int sig)
{
	stop = 1;
}

/* The file at path exists and holds DATA, read through fd and by path */
static int check_content(int fd, const char *path)
{
	char buf[64] = {};
	int pfd;

	if (pread(fd, buf, sizeof(buf) - 1, 0) != strlen(DATA) || strcmp(buf, DATA))
		return -1;
	pfd = open(path, O_RDONLY);
	if (pfd < 0)
		return -1;
	memset(buf, 0, sizeof(buf));
	if (read(pfd, buf, sizeof(buf) - 1) != strlen(DATA) || strcmp(buf, DATA)) {
		close(pfd);
		return -1;
	}
	close(pfd);
	return 0;
}

static int write_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, DATA, strlen(DATA)) != strlen(DATA)) {
		perror(path);
		return -1;
	}
	return fd;
}

static int dump_must_fail(const char *what, int pid)
{
	int ret = criu_dump();

	if (ret >= 0) {
		printf("   `- FAIL: the dump with %s succeeded\n", what);
		return -1;
	}
	if (kill(pid, 0)) {
		printf("   `- FAIL: the dump with %s killed the task\n", what);
		return -1;
	}
	printf("   `- Dump with %s refused (%d), the task runs on\n", what, ret);
	return 0;
}

int main(int argc, char **argv)
{
	int pid, ret, dir_fd, p[2];
	char dir[PATH_MAX], magic[4];
	criu_opts *opts = NULL; /* criu_local_init_opts() frees what it points to */

	if (argc != 3 || !realpath(argv[2], dir)) {
		fprintf(stderr, "Usage: %s CRIU DIR\n", argv[0]);
		return 1;
	}
	snprintf(saved, sizeof(saved), "%s/saved", dir);
	snprintf(data, sizeof(data), "%s/data", saved);
	snprintf(shm, sizeof(shm), "/dev/shm/criu-libcriu-test_tmp_file.%d", getpid());
	if (mkdir(saved, 0755) && errno != EEXIST) {
		perror(saved);
		return 1;
	}

	setvbuf(stdout, NULL, _IOLBF, 0); /* nothing buffered to fork */
	printf("--- Start the task ---\n");
	if (pipe(p))
		return 1;
	pid = fork();
	if (pid < 0) {
		perror("Can't fork");
		return 1;
	}
	if (!pid) {
		int fd, shm_fd;

		if (setsid() < 0 || signal(SIGUSR1, sh) == SIG_ERR)
			exit(1);
		close(0);
		close(1);
		close(2);
		close(p[0]);
		fd = write_file(data);
		shm_fd = write_file(shm);
		ret = (fd < 0 || shm_fd < 0) ? 1 : SUCC_ECODE;
		write(p[1], &ret, sizeof(ret));
		close(p[1]);
		while (!stop)
			sleep(1);
		/* Restored: both files are back at their paths */
		if (check_content(fd, data) || check_content(shm_fd, shm))
			exit(2);
		exit(SUCC_ECODE);
	}
	close(p[1]);
	ret = -1;
	read(p[0], &ret, sizeof(ret));
	close(p[0]);
	if (ret != SUCC_ECODE) {
		printf("Error starting the task\n");
		goto err;
	}

	dir_fd = open(dir, O_DIRECTORY);
	if (dir_fd < 0) {
		perror(dir);
		goto err;
	}

	printf("--- Dumps that criu refuses (global setters) ---\n");
	criu_init_opts();
	criu_set_service_binary(argv[1]);
	criu_set_pid(pid);
	criu_set_log_level(CRIU_LOG_DEBUG);
	criu_set_images_dir_fd(dir_fd);
	criu_set_log_file("dump-lz4.log");
	if (criu_add_tmp_file(saved) || criu_set_tmp_file_compress("lz4")) {
		printf("   `- FAIL: a global setter failed\n");
		goto err;
	}
	if (dump_must_fail("--tmp-file-compress lz4", pid))
		goto err;
	criu_set_log_file("dump-limit.log");
	criu_set_tmp_file_compress("gzip");
	criu_set_tmp_file_auto(true);
	criu_set_tmp_file_limit(1);
	criu_set_tmp_file_precopy(true);
	if (dump_must_fail("--tmp-file-auto over --tmp-file-limit 1", pid))
		goto err;

	printf("--- Dump (criu_local_ setters) ---\n");
	if (criu_local_init_opts(&opts))
		goto err;
	criu_local_set_service_binary(opts, argv[1]);
	criu_local_set_pid(opts, pid);
	criu_local_set_log_level(opts, CRIU_LOG_DEBUG);
	criu_local_set_log_file(opts, "dump.log");
	criu_local_set_images_dir_fd(opts, dir_fd);
	if (criu_local_add_tmp_file(opts, saved) || criu_local_set_tmp_file_compress(opts, "zstd")) {
		printf("   `- FAIL: a criu_local_ setter failed\n");
		goto err;
	}
	criu_local_set_tmp_file_auto(opts, true);
	criu_local_set_tmp_file_limit(opts, 1 << 20);
	criu_local_set_tmp_file_precopy(opts, true);
	ret = criu_local_dump(opts);
	criu_local_free_opts(opts);
	if (ret < 0) {
		what_err_ret_mean(ret);
		goto err;
	}
	printf("   `- Dump succeeded\n");
	waitpid(pid, NULL, 0);

	/* zstd's magic: the compression went through */
	ret = openat(dir_fd, "tmp-files.tar.img", O_RDONLY);
	if (ret < 0 || read(ret, magic, 4) != 4 || memcmp(magic, "\x28\xb5\x2f\xfd", 4)) {
		printf("   `- FAIL: tmp-files.tar.img is not a zstd archive\n");
		return 1;
	}
	close(ret);

	printf("--- Remove the files ---\n");
	if (unlink(data) || rmdir(saved) || unlink(shm)) {
		perror("Can't remove the saved files");
		return 1;
	}

	printf("--- Restore ---\n");
	criu_init_opts();
	criu_set_service_binary(argv[1]);
	criu_set_log_level(CRIU_LOG_DEBUG);
	criu_set_log_file("restore.log");
	criu_set_images_dir_fd(dir_fd);
	pid = criu_restore_child();
	if (pid <= 0) {
		what_err_ret_mean(pid);
		return 1;
	}
	printf("   `- Restore returned pid %d\n", pid);
	kill(pid, SIGUSR1);
	if (waitpid(pid, &ret, 0) < 0) {
		perror("   Can't wait for the task");
		return 1;
	}
	unlink(shm);
	return chk_exit(ret, SUCC_ECODE);
err:
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(shm);
	return 1;
}
