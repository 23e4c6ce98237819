/* The experimental API (ZSTD_compressSequences) is exported by libzstd.so; dsconv uses it to
 * entropy-code a plane as literals only. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>
