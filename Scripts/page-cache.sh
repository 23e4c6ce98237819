# Sourced by the benchmarks (Scripts/bench, Scripts/bench-llamacpp).

# Drops FILES from the page cache (after a sync): pages a writer left behind sit in small folios,
# which the kernel maps at 4 KB; read back (by `cat`, or by dsconv's mmap, which asks for huge
# pages) they come in as large folios mapped at 2 MB. Both sides of a comparison start this way.
evict() {
  sync
  python3 -c 'import os, sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)' "$@"
}
