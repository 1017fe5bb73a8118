#ifndef _CRIU_LINUX_RENAME_H
#define _CRIU_LINUX_RENAME_H

/*
 * renameat2(): glibc has it since 2.28, musl (Alpine) not in its 1.2
 * releases. The system call is there on every architecture CRIU builds
 * for (Linux 3.15+), so call it directly, as sys_openat2() does.
 */
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0) /* Don't overwrite target */
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1) /* Exchange source and dest */
#endif

static inline int sys_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
				unsigned int flags)
{
	return syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

#endif /* _CRIU_LINUX_RENAME_H */
