#ifndef CSYSTEM_H
#define CSYSTEM_H
/// System calls Swift's Glibc module does not import.

/// Atomically exchanges two existing paths (renameat2 with RENAME_EXCHANGE). Returns 0, or -1 with
/// errno set (EINVAL or ENOSYS where the file system or kernel cannot exchange).
int csystem_rename_exchange(const char *a, const char *b);

/// Takes an exclusive, non-blocking flock(2) on fd. Returns 0, or -1 with errno (EWOULDBLOCK when held).
int csystem_try_lock(int fd);

/// Creates (truncating) a file for writing with O_DIRECT (no page cache). Returns the fd, or -1
/// with errno (EINVAL where the file system refuses direct I/O).
int csystem_create_direct(const char *path);

/// Turns O_DIRECT off on fd (a file system that accepted the open but refuses direct writes).
int csystem_clear_direct(int fd);
#endif
