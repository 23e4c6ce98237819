#ifndef CSYSTEM_H
#define CSYSTEM_H
/// System calls Swift's Glibc module does not import.

/// Atomically exchanges two existing paths (renameat2 with RENAME_EXCHANGE). Returns 0, or -1 with
/// errno set (EINVAL or ENOSYS where the file system or kernel cannot exchange).
int csystem_rename_exchange(const char *a, const char *b);

/// Takes an exclusive, non-blocking flock(2) on fd. Returns 0, or -1 with errno (EWOULDBLOCK when held).
int csystem_try_lock(int fd);
#endif
