#define _GNU_SOURCE
#include "csystem.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int csystem_rename_exchange(const char *a, const char *b) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int csystem_try_lock(int fd) {
    return flock(fd, LOCK_EX | LOCK_NB);
}

int csystem_create_direct(const char *path) {
#ifdef O_DIRECT
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
#else
    errno = EINVAL;
    return -1;
#endif
}

int csystem_clear_direct(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
#ifdef O_DIRECT
    flags &= ~O_DIRECT;
#endif
    return fcntl(fd, F_SETFL, flags);
}
