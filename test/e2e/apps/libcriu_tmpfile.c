/*
 * Drive --tmp-file through libcriu, the way a container runtime does.
 *
 *   libcriu_tmpfile CRIU dump PID IMAGES PATH...
 *	criu_dump() of PID into IMAGES with criu_add_tmp_file(PATH) (for
 *	"?PATH", criu_add_tmp_file_optional(PATH)); on failure, prints what
 *	criu_get_last_errmsg() says; for
 *	every PATH (the task is killed by the dump); with TMP_FILE_PRECOPY=1
 *	in the environment, also criu_set_tmp_file_precopy(true)
 *   libcriu_tmpfile CRIU restore IMAGES
 *	criu_restore() from IMAGES; prints "restored PID"
 *
 * CRIU is the criu binary that libcriu runs as "criu swrk". The log goes
 * to IMAGES/<action>.log at level 4. Exit code 0 on success; on failure
 * the return value of libcriu is printed and the exit code is 1.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "criu.h"

static int setup(const char *criu, const char *images, const char *log)
{
	int fd;

	if (criu_init_opts()) {
		fprintf(stderr, "criu_init_opts failed\n");
		return -1;
	}
	if (criu_set_service_binary(criu)) {
		fprintf(stderr, "criu_set_service_binary failed\n");
		return -1;
	}

	fd = open(images, O_DIRECTORY);
	if (fd < 0) {
		fprintf(stderr, "Can't open %s: %s\n", images, strerror(errno));
		return -1;
	}
	/* libcriu passes the fd number; criu opens it via /proc/PID/fd */
	criu_set_images_dir_fd(fd);
	criu_set_log_level(4);
	return criu_set_log_file(log);
}

static int do_dump(const char *criu, char *argv[], int argc)
{
	int i, ret;

	if (argc < 2) {
		fprintf(stderr, "dump: PID IMAGES PATH... expected\n");
		return 1;
	}
	if (setup(criu, argv[1], "dump.log"))
		return 1;
	criu_set_pid(atoi(argv[0]));
	if (getenv("TMP_FILE_PRECOPY"))
		criu_set_tmp_file_precopy(true);
	for (i = 2; i < argc; i++) {
		/* "?PATH": criu_add_tmp_file_optional(PATH) */
		ret = argv[i][0] == '?' ? criu_add_tmp_file_optional(argv[i] + 1) : criu_add_tmp_file(argv[i]);
		if (ret) {
			fprintf(stderr, "criu_add_tmp_file(%s) returned %d\n", argv[i], ret);
			return 1;
		}
	}

	ret = criu_dump();
	if (ret < 0) {
		fprintf(stderr, "criu_dump returned %d (errno %d): %s\n", ret, errno,
			criu_get_last_errmsg() ?: "(no message)");
		return 1;
	}
	printf("dumped\n");
	return 0;
}

static int do_restore(const char *criu, char *argv[], int argc)
{
	int ret;

	if (argc != 1) {
		fprintf(stderr, "restore: IMAGES expected\n");
		return 1;
	}
	if (setup(criu, argv[0], "restore.log"))
		return 1;

	ret = criu_restore();
	if (ret < 0) {
		fprintf(stderr, "criu_restore returned %d (errno %d)\n", ret, errno);
		return 1;
	}
	printf("restored %d\n", ret);
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc >= 3 && !strcmp(argv[2], "dump"))
		return do_dump(argv[1], argv + 3, argc - 3);
	if (argc >= 3 && !strcmp(argv[2], "restore"))
		return do_restore(argv[1], argv + 3, argc - 3);

	fprintf(stderr, "usage: %s CRIU dump PID IMAGES PATH... | CRIU restore IMAGES\n", argv[0]);
	return 2;
}
