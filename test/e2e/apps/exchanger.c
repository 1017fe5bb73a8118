/*
 * A hostile tree that swaps two of its names without end:
 *
 *   exchanger A B      (built static, run in a chroot)
 *
 * renameat2(RENAME_EXCHANGE) of A and B in a loop, the whole name
 * always there: a directory and a symlink to a host directory's name
 * take each other's place thousands of times a second, so a check by
 * criu before the freeze and what tar finds after it see either. Exits
 * 1, saying why, if an exchange fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: exchanger A B\n");
		return 2;
	}
	for (;;) {
		if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE)) {
			fprintf(stderr, "exchanger: %s, %s: %s\n", argv[1], argv[2], strerror(errno));
			return 1;
		}
	}
}
